/* Batch normalization kernels: x[N,C,S] (S = H*W, or 1 for (N,C) input), statistics per
 * channel over the m = N*S values x[(i*C + c)*S + j]. Semantics in kernels.h and
 * ARCHITECTURE.md §4; plain double twins in batchnorm_ref.c.
 *
 * A thin driver over the normalization core (norm_core.h), with 32 lanes (nv = 4). Each
 * public entry point is a loop over channels (S > 1) or channel ranges (S = 1) of the
 * per-channel phases below: moments, forward apply, backward sums, backward apply. The
 * one-shot kernels run a channel's phases back to back (its second read hits cache); the
 * phase entry points (kernels.h, synchronized BN) run one phase over all channels.
 *
 * Numerics
 * - Statistics are accumulated in double around a per-channel shift K (the channel's first
 *   value in forward, the given mean in backward): one pass computes sum(x-K) and
 *   sum((x-K)^2), so 1e4 + N(0,1e-2) keeps its digits, and a constant channel gives exactly
 *   var = 0 (clamped at 0 in any case; NaN is kept so running_update can refuse it).
 * - Every reduction runs in an order fixed by the data layout, never by the thread count:
 *   S > 1: one channel is reduced by one thread through LANES double accumulators picked by
 *          position in the plane (j % LANES), summed in lane order at the end;
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
 * (a max pool's argmax found again in z, which the activation's derivative reads anyway).
 * In-place use (y == x, dx == dy) is safe: every element is read before it is written.
 * Nothing here allocates: per-range scratch lives on the stack (S = 1: at most RBLK channels).
 */
#include "base/error.h"
#include "kernels/kernels.h"
#include "kernels/variant.h"
#include "kernels/norm_core.h"

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
  const float *dp; /* backward, instead of dz: the gradient of a 2x2 stride-2 pool over z */
  int max_pool;    /* with dp: a max pool (else an average pool) */
  int w;           /* with dp: the planes' width */
} bn_io;

typedef void (*bn_item)(const nn_norm_geom *g, const bn_io *io, int c0, int cw);

/* A serial call never enters a parallel region (an inactive one still costs ~0.7 us, as much
 * as a whole small BN). */
static void bn_run(const nn_norm_geom *g, const bn_io *io, bn_item rows, bn_item channel) {
  if (g->s == 1) {
    int w;
    const int nr = bn_ranges(g, &w);
    if (nr == 1) {
      rows(g, io, 0, g->c);
      return;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < nr; r++) rows(g, io, r * w, bn_range_width(g, r, w));
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

/* S > 1, channel ch: s1 = sum(x - K), s2 = sum((x - K)^2) over its N planes. */
static inline void bn_moments_ch(const nn_norm_geom *g, const float *x, float K, int ch, double *s1, double *s2) {
  nc_moments(x + (size_t)ch * g->s, (size_t)g->n, bn_plane(g), (size_t)g->s, K, NV, s1, s2);
}

/* S > 1, channel ch: statistics of io->count values from its sums, then y. */
static void bn_apply_ch(const nn_norm_geom *g, const bn_io *io, float K, double s1, double s2, int ch) {
  float sc, sh;
  bn_fwd_consts(nc_finish(s1, s2, io->count, g->eps), K, io->gamma ? io->gamma[ch] : 1.0f,
                io->beta ? io->beta[ch] : 0.0f, &io->mean[ch], &io->var[ch], &io->invstd[ch], &sc, &sh);
  const size_t plane = bn_plane(g);
  for (int i = 0; i < g->n; i++) {
    const float *p = io->x + (size_t)i * plane + (size_t)ch * g->s;
    float *q = io->y + (size_t)i * plane + (size_t)ch * g->s;
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

/* one-shot: the channel's first value as shift, moments, apply */
static void fwd_train_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  const float K = io->x[(size_t)ch * g->s];
  double s1, s2;
  bn_moments_ch(g, io->x, K, ch, &s1, &s2);
  bn_apply_ch(g, io, K, s1, s2, ch);
}

static void fwd_train_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  float K[RBLK];
  double Kd[RBLK], a1[RBLK], a2[RBLK];
  for (int k = 0; k < cw; k++) Kd[k] = K[k] = io->x[c0 + k];
  bn_moments_rows(g, io->x, Kd, c0, cw, a1, a2);
  bn_apply_rows(g, io, K, a1, a2, c0, cw);
}

static void moments_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  bn_moments_ch(g, io->x, io->shift[ch], ch, &io->s1[ch], &io->s2[ch]);
}

static void moments_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  double Kd[RBLK];
  for (int k = 0; k < cw; k++) Kd[k] = io->shift[c0 + k];
  bn_moments_rows(g, io->x, Kd, c0, cw, io->s1 + c0, io->s2 + c0);
}

static void fwd_apply_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  bn_apply_ch(g, io, io->shift[ch], io->t1[ch], io->t2[ch], ch);
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
  bn_run(g, &io, fwd_train_rows, fwd_train_ch);
}

#if NN_VARIANT_ONCE
void nn_bn_shift(const nn_norm_geom *g, const float *x, float *shift) {
  for (int ch = 0; ch < g->c; ch++) shift[ch] = x[(size_t)ch * g->s];
}
#endif

void NN_V(nn_bn_moments)(const nn_norm_geom *g, const float *x, const float *shift, double *sum, double *sumsq) {
  const bn_io io = {.x = x, .shift = shift, .s1 = sum, .s2 = sumsq};
  bn_run(g, &io, moments_rows, moments_ch);
}

void NN_V(nn_bn_forward_apply)(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta,
                               const float *shift, const double *sum, const double *sumsq, double count, float *y,
                               float *mean, float *var, float *invstd) {
  const bn_io io = {.x = x, .gamma = gamma, .beta = beta, .shift = shift, .t1 = sum, .t2 = sumsq, .count = count, .y = y, .mean = mean, .var = var, .invstd = invstd};
  bn_run(g, &io, fwd_apply_rows, fwd_apply_ch);
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

/* S > 1, channel ch: the three sums around K over its N planes (of dy, or of
 * e = dz*act'(z), which is then left in dx for bn_bapply_ch when dx is wanted). */
static inline void bn_bsums_ch(const nn_norm_geom *g, const bn_io *io, int ch, double *sd, double *sdy,
                               double *sdyd) {
  const size_t o = (size_t)ch * g->s, plane = bn_plane(g), s = (size_t)g->s;
  const float K = io->cmean[ch];
  /* with dp: the pool's output planes, (S / w / 2) x (w / 2) (floor) */
  const size_t pp = io->dp ? (s / (size_t)io->w / 2) * (size_t)(io->w / 2) : 0;
  const nc_up2 up = {io->dp ? io->dp + (size_t)ch * pp : NULL, (size_t)g->c * pp, io->w, io->max_pool};
  nc_bwd_sums(io->x + o, io->dp ? NULL : io->dy + o, io->dp ? &up : NULL, NULL, io->z ? io->z + o : NULL, io->act,
              io->act && io->dx ? io->dx + o : NULL, (size_t)g->n, plane, s, K, NV, sd, sdy, sdyd);
}

/* q = A*d - k*(p - K) + B over len values. */
static inline void bn_dx_run(const bn_bwd_coef *cf, float K, const float *p, const float *d, float *q, size_t len) {
  const float A = cf->A, k = cf->k, B = cf->B;
#pragma omp simd
  for (size_t j = 0; j < len; j++) q[j] = A * d[j] - k * (p[j] - K) + B;
}

/* S > 1, channel ch: parameter gradients and dx from the sums of io->count values (with an
 * activation, from the e that bn_bsums_ch left in dx, in place). */
static void bn_bapply_ch(const nn_norm_geom *g, const bn_io *io, double sd, double sdy, double sdyd, int ch) {
  const float K = io->cmean[ch];
  const bn_bwd_coef cf =
      bn_bwd_finish(sd, sdy, sdyd, io->count, io->gamma ? io->gamma[ch] : 1.0f, io->cinvstd[ch],
                    io->dgamma ? &io->dgamma[ch] : NULL, io->dbeta ? &io->dbeta[ch] : NULL);
  if (!io->dx) return;
  const size_t plane = bn_plane(g), s = (size_t)g->s;
  const float *d = io->act ? io->dx : io->dy;
  for (int i = 0; i < g->n; i++) {
    const size_t o = (size_t)i * plane + (size_t)ch * s;
    bn_dx_run(&cf, K, io->x + o, d + o, io->dx + o, s);
  }
}

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

static void bwd_train_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  double sd, sdy, sdyd;
  bn_bsums_ch(g, io, ch, &sd, &sdy, &sdyd);
  bn_bapply_ch(g, io, sd, sdy, sdyd, ch);
}

static void bwd_train_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  double ad[RBLK], ady[RBLK], adyd[RBLK];
  bn_bsums_rows(g, io, c0, cw, ad, ady, adyd);
  bn_bapply_rows(g, io, ad, ady, adyd, c0, cw);
}

static void bwd_sums_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  bn_bsums_ch(g, io, ch, &io->s1[ch], &io->s2[ch], &io->s3[ch]);
}

static void bwd_sums_rows(const nn_norm_geom *g, const bn_io *io, int c0, int cw) {
  bn_bsums_rows(g, io, c0, cw, io->s1 + c0, io->s2 + c0, io->s3 + c0);
}

static void bwd_apply_ch(const nn_norm_geom *g, const bn_io *io, int ch, int cw) {
  (void)cw;
  bn_bapply_ch(g, io, io->t1[ch], io->t2[ch], io->t3[ch], ch);
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
  bn_run(g, &io, bwd_train_rows, bwd_train_ch);
}

void NN_V(nn_bn_backward_train_act_pool2)(const nn_norm_geom *g, int w, nn_act act, const float *x, const float *gamma,
                                          const float *mean, const float *invstd, const float *z, const float *dp,
                                          int max_pool, float *dx, float *dgamma, float *dbeta) {
  NN_ASSERT(nn_bn_pool2_fits(g, w) && act != NN_ACT_NONE);
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dp = dp, .max_pool = max_pool, .w = w, .z = z, .act = act, .gamma = gamma, .cmean = mean, .cinvstd = invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta, .count = (double)g->n * g->s};
  bn_run(g, &io, bwd_train_rows, bwd_train_ch);
}

#if NN_VARIANT_ONCE
int nn_bn_pool2_fits(const nn_norm_geom *g, int w) {
  return w >= 2 && g->s % w == 0 && g->s / w >= 2 && g->s <= NC_EBLK;
}
#endif

void NN_V(nn_bn_backward_sums)(const nn_norm_geom *g, const float *x, const float *dy, const float *mean, double *sd,
                               double *sdy, double *sdyd) {
  const bn_io io = {.x = x, .dy = dy, .cmean = mean, .s1 = sd, .s2 = sdy, .s3 = sdyd};
  bn_run(g, &io, bwd_sums_rows, bwd_sums_ch);
}

void NN_V(nn_bn_backward_apply)(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                                const float *invstd, const float *dy, const double *sd, const double *sdy,
                                const double *sdyd, double count, float *dx, float *dgamma, float *dbeta) {
  if (!dx && !dgamma && !dbeta) return;
  const bn_io io = {.x = x, .dy = dy, .gamma = gamma, .cmean = mean, .cinvstd = invstd, .t1 = sd, .t2 = sdy, .t3 = sdyd, .count = count, .dx = dx, .dgamma = dgamma, .dbeta = dbeta};
  bn_run(g, &io, bwd_apply_rows, bwd_apply_ch);
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
