/* Batch normalization kernels: x[N,C,S] (S = H*W, or 1 for (N,C) input), statistics per
 * channel over the m = N*S values x[(i*C + c)*S + j]. Semantics in kernels.h and
 * ARCHITECTURE.md §4; plain double twins in batchnorm_ref.c.
 *
 * A thin driver over the normalization core (norm_core.h), with 32 lanes (nv = 4). Each
 * public entry point runs the per-channel phases below (moments, forward apply, backward
 * sums, backward apply) over fixed sample groups (S > 1 in training, bn_run_groups), over
 * channel ranges (S = 1), or over channels (S > 1 with given statistics). On one thread the
 * one-shot kernels run a channel's phases back to back (its second read hits cache); the
 * phase entry points (kernels.h, synchronized BN) run one phase over all channels.
 *
 * Numerics
 * - Statistics are accumulated in double around a per-channel shift K (the channel's first
 *   value in forward, the given mean in backward): one pass computes sum(x-K) and
 *   sum((x-K)^2), so 1e4 + N(0,1e-2) keeps its digits, and a constant channel gives exactly
 *   var = 0 (clamped at 0 in any case; NaN is kept so running_update can refuse it).
 * - Every reduction runs in an order fixed by the data layout, never by the thread count:
 *   S > 1: the samples are cut into min(N, NN_SAMPLE_GROUPS) fixed groups; a channel's sum
 *          over a group runs through LANES double accumulators picked by position in the
 *          plane (j % LANES), folded in a tree (nc_tree_sum); the groups' sums are then
 *          added in group order;
 *   S = 1: threads own contiguous channel ranges and sweep the rows; each channel is
 *          accumulated over rows i = 0..N-1 in order, whatever the ranges are.
 *   Results are therefore bitwise identical for any number of threads.
 * - The elementwise passes work in float on (x - K), with the double-precision offsets
 *   folded into one per-channel constant, so a mean of 1e4 does not cost y its digits.
 *
 * Memory traffic (ARCHITECTURE.md §7): forward_train reads x twice and writes y; forward_infer reads
 * x once and writes y; backward_train reads x, dy twice and writes dx; backward_infer reads
 * x, dy once and writes dx (the second look at a plane of dy hits L1); backward_train_act_pool2
 * reads the pool's gradient (a quarter of dy) instead of dy, forming each plane of dy in L1
 * (a max pool's argmax found again in z, which the activation's derivative reads anyway);
 * backward_train_act_gap reads one value per plane (a global average pool's gradient).
 * In-place use (y == x, dx == dy) is safe: every element is read before it is written.
 * Nothing here allocates: per-range scratch lives on the stack (S = 1: at most RBLK channels).
 */
#include "base/error.h"
#include "kernels/kernels.h"
#include "kernels/variant.h"
#include "kernels/norm_core.h"
#include "kernels/sample_groups.h"

#include <math.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* gcc defaults to 256-bit auto-vectorization on these CPUs; the S = 1 double accumulations
 * (omp simd loops) are compute-bound at that width: allow full-width vectors here. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#define NV 4     /* 8-lane accumulators per quantity: 32 lanes for S > 1 */
#define CUNIT 16 /* S = 1: channel ranges are multiples of 16 (one cache line) */
#define RBLK 256 /* S = 1: at most this many channels per range (stack scratch) */

static int bn_max_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/* S = 1: split C into nr ranges of *w channels (the last one shorter), about one per thread,
 * each a multiple of CUNIT and at most RBLK. Only the work split depends on the thread
 * count; no result does. */
static int bn_ranges(const nn_norm_geom *g, int *w) {
  const int t = nc_parallel(g->n, g->c, 1) ? bn_max_threads() : 1;
  const int units = (g->c + CUNIT - 1) / CUNIT;
  int per = (units + t - 1) / t;
  if (per > RBLK / CUNIT) per = RBLK / CUNIT;
  if (per < 1) per = 1;
  *w = per * CUNIT;
  return (g->c + *w - 1) / *w;
}

/* Width of range r of w channels. */
static inline int bn_range_width(const nn_norm_geom *g, int r, int w) {
  const int c0 = r * w;
  return g->c - c0 < w ? g->c - c0 : w;
}

/* S > 1: channels are independent work items when the tensor is large enough. */
static inline int bn_par_channels(const nn_norm_geom *g) { return nc_parallel(g->n, g->c, g->s) && g->c > 1; }

static inline size_t bn_plane(const nn_norm_geom *g) { return (size_t)g->c * (size_t)g->s; }

/* ---- one dispatcher for the entry points ----------------------------------------------------
 * Every public kernel fills a bn_io with its arrays and runs one item function per channel
 * (S > 1, item = channel ch, cw = 1) or per channel range (S = 1, [c0, c0+cw)); the
 * inference forward with S > 1, which needs no per-channel sums, splits its runs in memory
 * order instead (fwd_infer_runs). */

typedef struct {
  const float *x, *dy, *gamma, *beta;
  const float *shift;                  /* forward phases: the per-channel shift */
  const float *cmean, *cvar, *cinvstd; /* given statistics (backward, inference) */
  float *y, *dx;                       /* the tensor written */
  float *mean, *var, *invstd;          /* statistics written by a training forward */
  float *dgamma, *dbeta;               /* accumulated, may be NULL */
  double *s1, *s2, *s3;                /* phase sums: (sum, sumsq) or (sd, sdy, sdyd) */
  const double *t1, *t2, *t3;          /* phase sums given */
  double count;                        /* values per channel behind the sums */
  nn_act act;                          /* fused activation: y is act(BN(x)); dy is dz, with z given */
  const float *z;
  const float *dp; /* backward, instead of dz: the gradient of a 2x2 stride-2 pool over z, or of
                      a global average pool (w = 0) */
  int max_pool;    /* with dp: a max pool (else an average pool) */
  int w;           /* with dp: the planes' width (2x2 pool) or 0 (global) */
} bn_io;

typedef void (*bn_item)(const nn_norm_geom *g, const bn_io *io, int c0, int cw);

/* S = 1: the channel ranges. A serial call never enters a parallel region (an inactive one
 * still costs ~0.7 us, as much as a whole small BN). */
static void bn_run_rows(const nn_norm_geom *g, const bn_io *io, bn_item rows) {
  int w;
  const int nr = bn_ranges(g, &w);
  if (nr == 1) {
    rows(g, io, 0, g->c);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int r = 0; r < nr; r++) rows(g, io, r * w, bn_range_width(g, r, w));
}

/* A pass with constant statistics: S = 1 by channel ranges, S > 1 by channels. */
static void bn_run(const nn_norm_geom *g, const bn_io *io, bn_item rows, bn_item channel) {
  if (g->s == 1) {
    bn_run_rows(g, io, rows);
  } else if (bn_par_channels(g)) {
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < g->c; ch++) channel(g, io, ch, 1);
  } else {
    for (int ch = 0; ch < g->c; ch++) channel(g, io, ch, 1);
  }
}

/* ---- forward phases ------------------------------------------------------------------------ */

/* From the finished statistics of a channel with shift K: its outputs and the float
 * constants of y = (x - K) * sc + sh. */
static inline void bn_fwd_consts(nc_stats st, float K, float gm, float bt, float *mean, float *var, float *invstd,
                                 float *sc, float *sh) {
  const double scale = (double)gm * st.invstd;
  *mean = (float)((double)K + st.off);
  *var = (float)st.var;
  *invstd = (float)st.invstd;
  *sc = (float)scale;
  *sh = (float)((double)bt - st.off * scale);
}

/* ---- S > 1 in training: fixed sample groups ----------------------------------------------
 * The N samples are cut into G = min(N, NN_SAMPLE_GROUPS) fixed groups (sample_groups.h). A
 * pass with sums runs three phases in one parallel region:
 *   sums:   each group's sums per channel (its lanes folded in a tree), groups split over
 *           the threads;
 *   finish: per channel, the group sums added in group order, then the channel's constants;
 *   apply:  y or dx of each group, the groups split over the threads as in `sums`.
 * A thread thereby reads and writes only its own samples, which are the ones the
 * convolutions, pools and activations around the layer give it (they split samples
 * statically, in the same contiguous ranges for G a multiple of the thread count); split by
 * channel, half of every tensor crossed between the cores twice per layer (docs/performance.md,
 * run 30). Only the small group sums cross threads. */

#define BN_CBLK 64 /* channels per round of group sums on the stack (4 x 64 x 3 doubles) */

static inline int bn_groups(const nn_norm_geom *g) { return nn_sample_groups(g->n, NN_SAMPLE_GROUPS); }

/* The first sample of group k (k = G: N). */
static inline int bn_group_start(const nn_norm_geom *g, int k) { return nn_group_start(g->n, bn_groups(g), k); }

/* A channel's constants: forward y = (x - K) * a + b; backward dx = a*dy - b*(x - K) + c. */
typedef struct {
  float K, a, b, c;
} bn_coef;

/* One pass over S > 1 in training, by its phases (NULL: the pass has none of it). sums writes
 * nq doubles for channel ch over samples [i0, i1); finish gets their totals over the batch. */
typedef struct {
  int nq;
  void (*sums)(const nn_norm_geom *g, const bn_io *io, int ch, int i0, int i1, double *q);
  void (*finish)(const nn_norm_geom *g, const bn_io *io, int ch, const double *q, bn_coef *cf);
  void (*apply)(const nn_norm_geom *g, const bn_io *io, int ch, int i0, int i1, const bn_coef *cf);
} bn_pass;

typedef struct {
  const nn_norm_geom *g;
  const bn_io *io;
  const bn_pass *ps;
  int c0, cw;
  double (*part)[BN_CBLK][3]; /* [group][channel - c0][quantity] */
  bn_coef *cf;                /* [channel - c0] */
} bn_round;

static void bn_round_sums(const bn_round *r, int k) {
  const int i0 = bn_group_start(r->g, k), i1 = bn_group_start(r->g, k + 1);
  for (int j = 0; j < r->cw; j++) r->ps->sums(r->g, r->io, r->c0 + j, i0, i1, r->part[k][j]);
}

static void bn_round_finish(const bn_round *r, int j) {
  double q[3] = {0, 0, 0};
  if (r->ps->sums) {
    for (int t = 0; t < r->ps->nq; t++) q[t] = r->part[0][j][t];
    for (int k = 1; k < bn_groups(r->g); k++)
      for (int t = 0; t < r->ps->nq; t++) q[t] += r->part[k][j][t];
  }
  r->ps->finish(r->g, r->io, r->c0 + j, q, &r->cf[j]);
}

static void bn_round_apply(const bn_round *r, int k) {
  const int i0 = bn_group_start(r->g, k), i1 = bn_group_start(r->g, k + 1);
  for (int j = 0; j < r->cw; j++) r->ps->apply(r->g, r->io, r->c0 + j, i0, i1, &r->cf[j]);
}

/* Channels per round of a parallel pass: as many as keep the tensors' part each thread reads
 * twice (sums, then apply) about within BN_ROUND_BYTES, so that the second read hits its L2;
 * at most BN_CBLK. Only the rounds depend on it, no result. */
#define BN_ROUND_BYTES (512 * 1024)
static int bn_round_channels(const nn_norm_geom *g, int threads) {
  const size_t per = (size_t)g->n * (size_t)g->s * 2 * sizeof(float) / (size_t)(threads > 0 ? threads : 1);
  const size_t cw = BN_ROUND_BYTES / (per ? per : 1);
  if (cw < 1) return 1;
  return cw > BN_CBLK ? BN_CBLK : (int)cw;
}

static void bn_run_groups(const nn_norm_geom *g, const bn_io *io, const bn_pass *ps) {
  struct {
    double part[NN_SAMPLE_GROUPS][BN_CBLK][3]; /* written by the sums before finish reads them */
    bn_coef cf[BN_CBLK];                       /* written by finish before apply reads them */
  } sc;
  const int G = bn_groups(g);
  if (!nc_parallel(g->n, g->c, g->s) || G == 1) {
    /* one thread: a channel's phases back to back, its second read hitting cache; the same
     * sums in the same order as the rounds below, so the same results. A serial call never
     * enters a parallel region (see bn_run_rows). */
    for (int ch = 0; ch < g->c; ch++) {
      const bn_round r = {g, io, ps, ch, 1, sc.part, sc.cf};
      for (int k = 0; ps->sums && k < G; k++) bn_round_sums(&r, k);
      bn_round_finish(&r, 0);
      for (int k = 0; ps->apply && k < G; k++) bn_round_apply(&r, k);
    }
    return;
  }
  /* one parallel region, the rounds inside it (each phase ends at its loop's barrier: the
   * next round's sums and finish overwrite the scratch this round's phases read) */
  const int rc = bn_round_channels(g, bn_max_threads());
#pragma omp parallel
  for (int c0 = 0; c0 < g->c; c0 += rc) {
    const bn_round r = {g, io, ps, c0, g->c - c0 < rc ? g->c - c0 : rc, sc.part, sc.cf};
    if (ps->sums) {
#pragma omp for schedule(static)
      for (int k = 0; k < G; k++) bn_round_sums(&r, k);
    }
#pragma omp for schedule(static)
    for (int j = 0; j < r.cw; j++) bn_round_finish(&r, j);
    if (ps->apply) {
#pragma omp for schedule(static)
      for (int k = 0; k < G; k++) bn_round_apply(&r, k);
    }
  }
}

/* A training pass: S = 1 by channel ranges (rows), S > 1 by sample groups (ps). */
static void bn_run_train(const nn_norm_geom *g, const bn_io *io, bn_item rows, const bn_pass *ps) {
  if (g->s == 1)
    bn_run_rows(g, io, rows);
  else
    bn_run_groups(g, io, ps);
}

/* Offset of channel ch of sample i. */
static inline size_t bn_at(const nn_norm_geom *g, int i, int ch) {
  return (size_t)i * bn_plane(g) + (size_t)ch * (size_t)g->s;
}

/* ---- forward, S > 1 ---- */

/* The shift of channel ch: the given one (phases), else its first value. */
static inline float bn_fwd_shift(const nn_norm_geom *g, const bn_io *io, int ch) {
  return io->shift ? io->shift[ch] : io->x[(size_t)ch * g->s];
}

/* q = sum(x - K), sum((x - K)^2) over the planes of samples [i0, i1). */
static void fwd_sums(const nn_norm_geom *g, const bn_io *io, int ch, int i0, int i1, double *q) {
  nc_moments(io->x + bn_at(g, i0, ch), (size_t)(i1 - i0), bn_plane(g), (size_t)g->s, bn_fwd_shift(g, io, ch), NV,
             NC_FOLD_TREE, &q[0], &q[1]);
}

/* phase (a): the sums are the result */
static void fwd_keep_sums(const nn_norm_geom *g, const bn_io *io, int ch, const double *q, bn_coef *cf) {
  (void)g, (void)cf;
  io->s1[ch] = q[0];
  io->s2[ch] = q[1];
}

/* the statistics of io->count values from the sums (phase (b): the given ones), then y's
 * constants */
static void fwd_finish(const nn_norm_geom *g, const bn_io *io, int ch, const double *q, bn_coef *cf) {
  const float K = bn_fwd_shift(g, io, ch);
  const double s1 = io->t1 ? io->t1[ch] : q[0], s2 = io->t1 ? io->t2[ch] : q[1];
  cf->K = K;
  bn_fwd_consts(nc_finish(s1, s2, io->count, g->eps), K, io->gamma ? io->gamma[ch] : 1.0f,
                io->beta ? io->beta[ch] : 0.0f, &io->mean[ch], &io->var[ch], &io->invstd[ch], &cf->a, &cf->b);
}

static void fwd_apply(const nn_norm_geom *g, const bn_io *io, int ch, int i0, int i1, const bn_coef *cf) {
  const float K = cf->K, sc = cf->a, sh = cf->b;
  for (int i = i0; i < i1; i++) {
    const float *p = io->x + bn_at(g, i, ch);
    float *q = io->y + bn_at(g, i, ch);
    if (io->act == NN_ACT_RELU) { /* in the same loop: one pass over the plane, not two */
#pragma omp simd
      for (int j = 0; j < g->s; j++) q[j] = relu1((p[j] - K) * sc + sh);
      continue;
    }
#pragma omp simd
    for (int j = 0; j < g->s; j++) q[j] = (p[j] - K) * sc + sh;
    act_n(io->act, q, (size_t)g->s);
  }
}

static const bn_pass bn_fwd_train = {2, fwd_sums, fwd_finish, fwd_apply};
static const bn_pass bn_fwd_moments = {2, fwd_sums, fwd_keep_sums, NULL};
static const bn_pass bn_fwd_apply = {0, NULL, fwd_finish, fwd_apply};

/* S = 1, channels [c0, c0+cw): a1/a2 = the sums around Kd over all rows. */
static inline void bn_moments_rows(const nn_norm_geom *g, const float *x, const double *Kd, int c0, int cw,
                                   double *a1, double *a2) {
  for (int k = 0; k < cw; k++) a1[k] = a2[k] = 0;
  nc_col_moments(x + c0, g->n, (size_t)g->c, cw, Kd, a1, a2);
}

/* S = 1, channels [c0, c0+cw) with shifts K[0..cw) and sums a1/a2: statistics, then y. */
static void bn_apply_rows(const nn_norm_geom *g, const bn_io *io, const float *K, const double *a1, const double *a2,
                          int c0, int cw) {
  float sc[RBLK], sh[RBLK];
  for (int k = 0; k < cw; k++)
    bn_fwd_consts(nc_finish(a1[k], a2[k], io->count, g->eps), K[k], io->gamma ? io->gamma[c0 + k] : 1.0f,
                  io->beta ? io->beta[c0 + k] : 0.0f, &io->mean[c0 + k], &io->var[c0 + k], &io->invstd[c0 + k],
                  &sc[k], &sh[k]);
  for (int i = 0; i < g->n; i++) {
    const float *p = io->x + (size_t)i * g->c + c0;
    float *q = io->y + (size_t)i * g->c + c0;
#pragma omp simd
    for (int k = 0; k < cw; k++) q[k] = (p[k] - K[k]) * sc[k] + sh[k];
    act_n(io->act, q, (size_t)cw);
  }
}

static void fwd_train_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  float K[RBLK];
  double Kd[RBLK], a1[RBLK], a2[RBLK];
  for (int k = 0; k < cw; k++) Kd[k] = K[k] = io->x[c0 + k];
  bn_moments_rows(g, io->x, Kd, c0, cw, a1, a2);
  bn_apply_rows(g, io, K, a1, a2, c0, cw);
}

static void moments_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  double Kd[RBLK];
  for (int k = 0; k < cw; k++) Kd[k] = io->shift[c0 + k];
  bn_moments_rows(g, io->x, Kd, c0, cw, io->s1 + c0, io->s2 + c0);
}

static void fwd_apply_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  bn_apply_rows(g, io, io->shift + c0, io->t1 + c0, io->t2 + c0, c0, cw);
}

#if NN_VARIANT_ONCE
void nn_bn_forward_train(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta, float *y,
                         float *mean, float *var, float *invstd) {
  nn_bn_forward_train_act(g, NN_ACT_NONE, x, gamma, beta, y, mean, var, invstd);
}
#endif

void NN_V(nn_bn_forward_train_act)(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                                   const float *beta, float *z, float *mean, float *var, float *invstd) {
  const bn_io io = {.x = x, .gamma = gamma, .beta = beta, .y = z, .mean = mean, .var = var, .invstd = invstd, .count = (double)g->n * g->s, .act = act};
  bn_run_train(g, &io, fwd_train_rows, &bn_fwd_train);
}

#if NN_VARIANT_ONCE
void nn_bn_shift(const nn_norm_geom *g, const float *x, float *shift) {
  for (int ch = 0; ch < g->c; ch++) shift[ch] = x[(size_t)ch * g->s];
}
#endif

void NN_V(nn_bn_moments)(const nn_norm_geom *g, const float *x, const float *shift, double *sum, double *sumsq) {
  const bn_io io = {.x = x, .shift = shift, .s1 = sum, .s2 = sumsq};
  bn_run_train(g, &io, moments_rows, &bn_fwd_moments);
}

void NN_V(nn_bn_forward_apply)(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta,
                               const float *shift, const double *sum, const double *sumsq, double count, float *y,
                               float *mean, float *var, float *invstd) {
  const bn_io io = {.x = x, .gamma = gamma, .beta = beta, .shift = shift, .t1 = sum, .t2 = sumsq, .count = count, .y = y, .mean = mean, .var = var, .invstd = invstd};
  bn_run_train(g, &io, fwd_apply_rows, &bn_fwd_apply);
}

/* ---- forward, inference: y = (x - mean) * (gamma / sqrt(var + eps)) + beta -------------- */

static inline float bn_infer_scale(const float *gamma, const float *var, int ch, float eps) {
  return (float)((gamma ? (double)gamma[ch] : 1.0) / sqrt((double)var[ch] + (double)eps));
}

/* The constants of y = (x - mean) * sc + sh for channels [c0, c0 + cw), cw <= RBLK. */
static void bn_infer_consts(const nn_norm_geom *g, const bn_io *io, int c0, int cw, float *mu, float *sc, float *sh) {
  for (int k = 0; k < cw; k++) {
    mu[k] = io->cmean[c0 + k];
    sc[k] = bn_infer_scale(io->gamma, io->cvar, c0 + k, g->eps);
    sh[k] = io->beta ? io->beta[c0 + k] : 0.0f;
  }
}

static void fwd_infer_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  float mu[RBLK], sc[RBLK], sh[RBLK];
  bn_infer_consts(g, io, c0, cw, mu, sc, sh);
  for (int i = 0; i < g->n; i++) {
    const float *p = io->x + (size_t)i * g->c + c0;
    float *q = io->y + (size_t)i * g->c + c0;
#pragma omp simd
    for (int k = 0; k < cw; k++) q[k] = (p[k] - mu[k]) * sc[k] + sh[k];
    act_n(io->act, q, (size_t)cw);
  }
}

/* S > 1, samples [i0, i1) x channels [c0, c1): y in memory order, run after run of S floats
 * (the constants of RBLK channels at a time), rather than one channel's N runs a plane apart:
 * the same values. */
static void fwd_infer_runs(const nn_norm_geom *g, const bn_io *io, int i0, int i1, int c0, int c1) {
  float mu[RBLK], sc[RBLK], sh[RBLK];
  const size_t plane = bn_plane(g), s = (size_t)g->s;
  for (int b = c0; b < c1; b += RBLK) {
    const int cw = c1 - b < RBLK ? c1 - b : RBLK;
    bn_infer_consts(g, io, b, cw, mu, sc, sh);
    for (int i = i0; i < i1; i++)
      for (int k = 0; k < cw; k++) {
        const float *p = io->x + (size_t)i * plane + (size_t)(b + k) * s;
        float *q = io->y + (size_t)i * plane + (size_t)(b + k) * s;
        const float m = mu[k], a = sc[k], h = sh[k];
#pragma omp simd
        for (size_t j = 0; j < s; j++) q[j] = (p[j] - m) * a + h;
        act_n(io->act, q, s);
      }
  }
}

void NN_V(nn_bn_forward_infer_act)(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                                   const float *beta, const float *mean, const float *var, float *z) {
  const bn_io io = {.x = x, .gamma = gamma, .beta = beta, .cmean = mean, .cvar = var, .y = z, .act = act};
  if (g->s == 1) {
    bn_run(g, &io, fwd_infer_rows, NULL);
    return;
  }
  /* S > 1: split over samples, or over channels when there is one sample */
  const int over = g->n > 1 ? g->n : g->c, t = nc_parallel(g->n, g->c, g->s) ? bn_max_threads() : 1;
  const int parts = t < over ? t : over;
  if (parts == 1) {
    fwd_infer_runs(g, &io, 0, g->n, 0, g->c);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int r = 0; r < parts; r++) {
    const int lo = (int)((long)over * r / parts), hi = (int)((long)over * (r + 1) / parts);
    if (g->n > 1)
      fwd_infer_runs(g, &io, lo, hi, 0, g->c);
    else
      fwd_infer_runs(g, &io, 0, 1, lo, hi);
  }
}

#if NN_VARIANT_ONCE
void nn_bn_forward_infer(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta,
                         const float *mean, const float *var, float *y) {
  nn_bn_forward_infer_act(g, NN_ACT_NONE, x, gamma, beta, mean, var, y);
}

void nn_bn_infer_affine(const float *gamma, const float *beta, const float *var, float eps, int c, float *scale,
                        float *shift) {
  for (int ch = 0; ch < c; ch++) {
    scale[ch] = bn_infer_scale(gamma, var, ch, eps);
    shift[ch] = beta ? beta[ch] : 0.0f;
  }
}
#endif

/* ---- backward phases --------------------------------------------------------------------
 * With K = mean[c] (float) as the shift, one pass gives sd = sum(x-K), sdy = sum(dy) and
 * sdyd = sum(dy*(x-K)) in double. The batch mean mu = K + sd/m is thereby recomputed in double
 * from the same x (the float mean[] alone loses digits when |mean| >> std), so
 * sum(dy*xhat) = invstd * (sdyd - (sd/m)*sdy) and
 *   dx = A*dy - k*(x-K) + B,  A = gamma*invstd, k = A*invstd^2*sum(dy*(x-mu))/m,
 *   B = -A*sdy/m + k*(mu-K). */

typedef struct {
  float A, k, B;
} bn_bwd_coef;

static inline bn_bwd_coef bn_bwd_finish(double sd, double sdy, double sdyd, double m, float g, float is,
                                        float *dgamma, float *dbeta) {
  double off = sd / m;            /* mu - K */
  double sdyx = sdyd - off * sdy; /* sum(dy * (x - mu)) */
  if (dgamma) *dgamma += (float)(sdyx * (double)is);
  if (dbeta) *dbeta += (float)sdy;
  double A = (double)g * is, k = A * is * is * sdyx / m;
  bn_bwd_coef r = {(float)A, (float)k, (float)(-A * sdy / m + k * off)};
  return r;
}

/* S > 1, channel ch: the three sums around K = mean over the planes of samples [i0, i1) (of
 * dy, or of e = dz*act'(z), which is then left in dx for bwd_apply when dx is wanted). */
static void bwd_sums(const nn_norm_geom *g, const bn_io *io, int ch, int i0, int i1, double *q) {
  const size_t o = bn_at(g, i0, ch), s = (size_t)g->s;
  /* with dp: the pool's output planes, (S / w / 2) x (w / 2) (floor), or one value (global) */
  size_t pp = 0;
  if (io->dp) pp = io->w ? (s / (size_t)io->w / 2) * (size_t)(io->w / 2) : 1;
  const size_t ps = (size_t)g->c * pp;
  const nc_up2 up = {io->dp ? io->dp + (size_t)i0 * ps + (size_t)ch * pp : NULL, ps, io->w, io->max_pool};
  nc_bwd_sums(io->x + o, io->dp ? NULL : io->dy + o, io->dp ? &up : NULL, NULL, io->z ? io->z + o : NULL, io->act,
              io->act && io->dx ? io->dx + o : NULL, (size_t)(i1 - i0), bn_plane(g), s, io->cmean[ch], NV, NC_FOLD_TREE, &q[0],
              &q[1], &q[2]);
}

/* phase (c): the sums are the result */
static void bwd_keep_sums(const nn_norm_geom *g, const bn_io *io, int ch, const double *q, bn_coef *cf) {
  (void)g, (void)cf;
  io->s1[ch] = q[0];
  io->s2[ch] = q[1];
  io->s3[ch] = q[2];
}

/* parameter gradients and dx's constants from the sums of io->count values (phase (d): the
 * given ones) */
static void bwd_finish(const nn_norm_geom *g, const bn_io *io, int ch, const double *q, bn_coef *cf) {
  (void)g;
  const double t[3] = {io->t1 ? io->t1[ch] : q[0], io->t1 ? io->t2[ch] : q[1], io->t1 ? io->t3[ch] : q[2]};
  const bn_bwd_coef b = bn_bwd_finish(t[0], t[1], t[2], io->count, io->gamma ? io->gamma[ch] : 1.0f,
                                      io->cinvstd[ch], io->dgamma ? &io->dgamma[ch] : NULL,
                                      io->dbeta ? &io->dbeta[ch] : NULL);
  *cf = (bn_coef){io->cmean[ch], b.A, b.k, b.B};
}

/* q = A*d - k*(p - K) + B over len values. */
static inline void bn_dx_run(const bn_bwd_coef *cf, float K, const float *p, const float *d, float *q, size_t len) {
  const float A = cf->A, k = cf->k, B = cf->B;
#pragma omp simd
  for (size_t j = 0; j < len; j++) q[j] = A * d[j] - k * (p[j] - K) + B;
}

/* dx of samples [i0, i1) (with an activation, from the e that bwd_sums left in dx, in place). */
static void bwd_apply(const nn_norm_geom *g, const bn_io *io, int ch, int i0, int i1, const bn_coef *cf) {
  const float *d = io->act ? io->dx : io->dy;
  const bn_bwd_coef b = {cf->a, cf->b, cf->c};
  for (int i = i0; i < i1; i++) {
    const size_t o = bn_at(g, i, ch);
    bn_dx_run(&b, cf->K, io->x + o, d + o, io->dx + o, (size_t)g->s);
  }
}

static const bn_pass bn_bwd_train = {3, bwd_sums, bwd_finish, bwd_apply};
static const bn_pass bn_bwd_train_nodx = {3, bwd_sums, bwd_finish, NULL};
static const bn_pass bn_bwd_sums = {3, bwd_sums, bwd_keep_sums, NULL};
static const bn_pass bn_bwd_apply = {0, NULL, bwd_finish, bwd_apply};
static const bn_pass bn_bwd_apply_nodx = {0, NULL, bwd_finish, NULL};

/* The sums of bn_bsums_rows over e = dz*act'(z), formed row by row (into dx when dx is
 * wanted: bn_bapply_rows then reads it there). */
static void bn_bsums_rows_act(const nn_norm_geom *g, const bn_io *io, int c0, int cw, const double *Kd, double *ad,
                              double *ady, double *adyd) {
  float tmp[RBLK] = {0}; /* only written before read; zeroed for cppcheck */
  for (int i = 0; i < g->n; i++) {
    const size_t o = (size_t)i * g->c + c0;
    float *e = io->dx ? io->dx + o : tmp;
    act_grad_n(io->act, io->z + o, io->dy + o, e, (size_t)cw);
    nc_col_bwd_sums(io->x + o, e, 1, 0, cw, Kd, ad, ady, adyd);
  }
}

/* S = 1, channels [c0, c0+cw): the three sums around the float means over all rows (of dy,
 * or of dz*act'(z)). */
static inline void bn_bsums_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw, double *ad, double *ady,
                                 double *adyd) {
  double Kd[RBLK];
  for (int k = 0; k < cw; k++) {
    Kd[k] = io->cmean[c0 + k];
    ad[k] = ady[k] = adyd[k] = 0;
  }
  if (io->act)
    bn_bsums_rows_act(g, io, c0, cw, Kd, ad, ady, adyd);
  else
    nc_col_bwd_sums(io->x + c0, io->dy + c0, g->n, (size_t)g->c, cw, Kd, ad, ady, adyd);
}

/* One row of S = 1: dx = A*dy - kk*(x - K) + B per channel. */
static inline void bn_dx_cols(const float *A, const float *kk, const float *B, const float *K, const float *x,
                              const float *dy, float *dx, int cw) {
#pragma omp simd
  for (int k = 0; k < cw; k++) dx[k] = A[k] * dy[k] - kk[k] * (x[k] - K[k]) + B[k];
}

/* S = 1, channels [c0, c0+cw) from the sums: gradients, dx (with an activation, from the e
 * that bn_bsums_rows left in dx, in place). */
static void bn_bapply_rows(const nn_norm_geom *g, const bn_io *io, const double *ad, const double *ady,
                           const double *adyd, int c0, int cw) {
  float A[RBLK], kk[RBLK], B[RBLK];
  for (int k = 0; k < cw; k++) {
    bn_bwd_coef cf = bn_bwd_finish(ad[k], ady[k], adyd[k], io->count, io->gamma ? io->gamma[c0 + k] : 1.0f,
                                   io->cinvstd[c0 + k], io->dgamma ? &io->dgamma[c0 + k] : NULL,
                                   io->dbeta ? &io->dbeta[c0 + k] : NULL);
    A[k] = cf.A, kk[k] = cf.k, B[k] = cf.B;
  }
  if (!io->dx) return;
  const int c = g->c;
  const float *K = io->cmean + c0, *d = io->act ? io->dx : io->dy;
  for (int i = 0; i < g->n; i++) {
    const size_t o = (size_t)i * c + c0;
    bn_dx_cols(A, kk, B, K, io->x + o, d + o, io->dx + o, cw);
  }
}

static void bwd_train_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  double ad[RBLK], ady[RBLK], adyd[RBLK];
  bn_bsums_rows(g, io, c0, cw, ad, ady, adyd);
  bn_bapply_rows(g, io, ad, ady, adyd, c0, cw);
}

static void bwd_sums_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  bn_bsums_rows(g, io, c0, cw, io->s1 + c0, io->s2 + c0, io->s3 + c0);
}

static void bwd_apply_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  bn_bapply_rows(g, io, io->t1 + c0, io->t2 + c0, io->t3 + c0, c0, cw);
}

#if NN_VARIANT_ONCE
void nn_bn_backward_train(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                          const float *invstd, const float *dy, float *dx, float *dgamma, float *dbeta) {
  nn_bn_backward_train_act(g, NN_ACT_NONE, x, gamma, mean, invstd, NULL, dy, dx, dgamma, dbeta);
}
#endif

void NN_V(nn_bn_backward_train_act)(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                                    const float *mean, const float *invstd, const float *z, const float *dz, float *dx,
                                    float *dgamma, float *dbeta) {
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dy = dz, .z = z, .act = act, .gamma = gamma, .cmean = mean, .cinvstd = invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta, .count = (double)g->n * g->s};
  bn_run_train(g, &io, bwd_train_rows, dx ? &bn_bwd_train : &bn_bwd_train_nodx);
}

void NN_V(nn_bn_backward_train_act_pool2)(const nn_norm_geom *g, int w, nn_act act, const float *x, const float *gamma,
                                          const float *mean, const float *invstd, const float *z, const float *dp,
                                          int max_pool, float *dx, float *dgamma, float *dbeta) {
  NN_ASSERT(nn_bn_pool2_fits(g, w) && act != NN_ACT_NONE);
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dp = dp, .max_pool = max_pool, .w = w, .z = z, .act = act, .gamma = gamma, .cmean = mean, .cinvstd = invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta, .count = (double)g->n * g->s};
  bn_run_train(g, &io, bwd_train_rows, dx ? &bn_bwd_train : &bn_bwd_train_nodx);
}

void NN_V(nn_bn_backward_train_act_gap)(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                                        const float *mean, const float *invstd, const float *z, const float *dp,
                                        float *dx, float *dgamma, float *dbeta) {
  NN_ASSERT(nn_bn_gap_fits(g) && act != NN_ACT_NONE);
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dp = dp, .w = 0, .z = z, .act = act, .gamma = gamma, .cmean = mean, .cinvstd = invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta, .count = (double)g->n * g->s};
  bn_run_train(g, &io, bwd_train_rows, dx ? &bn_bwd_train : &bn_bwd_train_nodx);
}

#if NN_VARIANT_ONCE
int nn_bn_pool2_fits(const nn_norm_geom *g, int w) {
  return w >= 2 && g->s % w == 0 && g->s / w >= 2 && g->s <= NC_EBLK;
}
int nn_bn_gap_fits(const nn_norm_geom *g) { return g->s >= 2 && g->s <= NC_EBLK; }
#endif

void NN_V(nn_bn_backward_sums)(const nn_norm_geom *g, const float *x, const float *dy, const float *mean, double *sd,
                               double *sdy, double *sdyd) {
  const bn_io io = {.x = x, .dy = dy, .cmean = mean, .s1 = sd, .s2 = sdy, .s3 = sdyd};
  bn_run_train(g, &io, bwd_sums_rows, &bn_bwd_sums);
}

void NN_V(nn_bn_backward_apply)(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                                const float *invstd, const float *dy, const double *sd, const double *sdy,
                                const double *sdyd, double count, float *dx, float *dgamma, float *dbeta) {
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dy = dy, .gamma = gamma, .cmean = mean, .cinvstd = invstd, .t1 = sd, .t2 = sdy, .t3 = sdyd, .count = count, .dx = dx, .dgamma = dgamma, .dbeta = dbeta};
  bn_run_train(g, &io, bwd_apply_rows, dx ? &bn_bwd_apply : &bn_bwd_apply_nodx);
}

/* ---- backward, inference (statistics are constants) ---------------------------------------
 * dx = dy * gamma * invstd; dgamma += invstd * sum(dy * (x - mean)); dbeta += sum(dy). */

static void bwd_infer_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  const int red = io->dgamma || io->dbeta, c = g->c;
  const float *x = io->x, *dy = io->dy;
  float *dx = io->dx;
  double mu[RBLK], ady[RBLK], adyd[RBLK];
  float A[RBLK];
  for (int k = 0; k < cw; k++) {
    mu[k] = io->cmean[c0 + k];
    A[k] = bn_infer_scale(io->gamma, io->cvar, c0 + k, g->eps);
    ady[k] = adyd[k] = 0;
  }
  for (int i = 0; i < g->n; i++) {
    const size_t o = (size_t)i * c + c0;
    if (red) nc_col_bwd_sums(x + o, dy + o, 1, 0, cw, mu, NULL, ady, adyd);
    if (dx) {
#pragma omp simd
      for (int k = 0; k < cw; k++) dx[o + k] = dy[o + k] * A[k];
    }
  }
  if (red)
    for (int k = 0; k < cw; k++) {
      double is = 1.0 / sqrt((double)io->cvar[c0 + k] + (double)g->eps);
      if (io->dgamma) io->dgamma[c0 + k] += (float)(is * adyd[k]);
      if (io->dbeta) io->dbeta[c0 + k] += (float)ady[k];
    }
}

static void bwd_infer_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  const int red = io->dgamma || io->dbeta, s = g->s;
  const size_t plane = bn_plane(g);
  const float K = io->cmean[ch], A = bn_infer_scale(io->gamma, io->cvar, ch, g->eps);
  nc_v8d Kv;
  nc_splat(&Kv, (double)K);
  nc_acc ady, adyd;
  nc_acc_zero(&ady);
  nc_acc_zero(&adyd);
  for (int i = 0; i < g->n; i++) {
    const size_t o = (size_t)i * plane + (size_t)ch * s;
    if (red) nc_bwd_run(NULL, &ady, &adyd, io->x + o, 0, io->dy + o, 0, NULL, 1, (size_t)s, 1, K, &Kv, NV);
    if (io->dx) {
      const float *d = io->dy + o;
      float *q = io->dx + o;
#pragma omp simd
      for (int j = 0; j < s; j++) q[j] = d[j] * A;
    }
  }
  if (red) {
    const double sdy = nc_lane_sum(&ady, NV), sdyd = nc_lane_sum(&adyd, NV);
    double is = 1.0 / sqrt((double)io->cvar[ch] + (double)g->eps);
    if (io->dgamma) io->dgamma[ch] += (float)(is * sdyd);
    if (io->dbeta) io->dbeta[ch] += (float)sdy;
  }
}

void NN_V(nn_bn_backward_infer)(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                                const float *var, const float *dy, float *dx, float *dgamma, float *dbeta) {
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dy = dy, .gamma = gamma, .cmean = mean, .cvar = var, .dx = dx, .dgamma = dgamma, .dbeta = dbeta};
  bn_run(g, &io, bwd_infer_rows, bwd_infer_ch);
}

/* ---- running statistics --------------------------------------------------------------------- */

#if NN_VARIANT_ONCE
int nn_bn_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int c, long m,
                         double momentum, int unbiased) {
  /* The unbiased variance of fewer than 2 values is not finite either. */
  if (unbiased && m < 2) return 0;
  for (int k = 0; k < c; k++)
    if (!isfinite(mean[k]) || !isfinite(var[k])) return 0;
  const double f = unbiased ? (double)m / (double)(m - 1) : 1.0;
  for (int k = 0; k < c; k++) {
    nc_ema(&run_mean[k], (double)mean[k], momentum);
    nc_ema(&run_var[k], (double)var[k] * f, momentum);
  }
  return 1;
}
#endif
