/* Batch normalization kernels: x[N,C,S] (S = H*W, or 1 for (N,C) input), statistics per
 * channel over the m = N*S values x[(i*C + c)*S + j]. Semantics in kernels.h and
 * ARCHITECTURE.md §4; plain double twins in batchnorm_ref.c.
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
 * x, dy once and writes dx (the second look at a plane of dy hits L1).
 * In-place use (y == x, dx == dy) is safe: every element is read before it is written.
 * Nothing here allocates: per-range scratch lives on the stack (S = 1: at most RBLK channels).
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* gcc defaults to 256-bit auto-vectorization on these CPUs; the S = 1 double accumulations
 * (omp simd loops below) are compute-bound at that width: allow full-width vectors here. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#define LANES 32            /* double accumulators per channel for S > 1 (4 x 8) */
#define CUNIT 16            /* S = 1: channel ranges are multiples of 16 (one cache line) */
#define RBLK 256            /* S = 1: at most this many channels per range (stack scratch) */
#define PAR_MIN_ELEMS 16384 /* below this a kernel stays on the calling thread */

static inline int bn_parallel(int n, int c, int s) {
  return (size_t)n * (size_t)c * (size_t)s >= PAR_MIN_ELEMS;
}

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
static int bn_ranges(int n, int c, int *w) {
  const int t = bn_parallel(n, c, 1) ? bn_max_threads() : 1;
  const int units = (c + CUNIT - 1) / CUNIT;
  int per = (units + t - 1) / t;
  if (per > RBLK / CUNIT) per = RBLK / CUNIT;
  if (per < 1) per = 1;
  *w = per * CUNIT;
  return (c + *w - 1) / *w;
}

/* S > 1 reductions use GCC/Clang generic vectors so that the LANES accumulators stay in
 * registers (arrays indexed by a tail loop would live in memory). Lane l of the accumulators
 * always takes the elements j with j % LANES == l of every plane; a plane's last partial
 * chunk is padded with values contributing exactly 0 (x = K, dy = 0). The final sum runs
 * over lanes 0..LANES-1 in order. */
typedef float bn_v8f __attribute__((vector_size(32)));
typedef double bn_v8d __attribute__((vector_size(64)));

/* 8 floats -> 8 doubles (one instruction with AVX-512; gcc splits the generic form).
 * Vectors go through pointers, never by value: no ABI dependence on the target flags. */
static inline void bn_ld8(bn_v8d *out, const float *p) {
#ifdef __AVX512F__
  *out = (bn_v8d)_mm512_cvtps_pd(_mm256_loadu_ps(p));
#else
  bn_v8f v;
  memcpy(&v, p, sizeof v);
  *out = __builtin_convertvector(v, bn_v8d);
#endif
}

/* Four accumulators per quantity, kept as separate variables (registers). */
typedef struct {
  bn_v8d v0, v1, v2, v3;
} bn_acc;

static inline double bn_lane_sum(const bn_acc *a) {
  double s = 0;
  for (int l = 0; l < 8; l++) s += a->v0[l];
  for (int l = 0; l < 8; l++) s += a->v1[l];
  for (int l = 0; l < 8; l++) s += a->v2[l];
  for (int l = 0; l < 8; l++) s += a->v3[l];
  return s;
}

/* Apply BODY(q, vq) for the four 8-lane quarters of a 32-element chunk. */
#define BN_QUARTERS(BODY) BODY(0, v0) BODY(1, v1) BODY(2, v2) BODY(3, v3)

/* The chunk of plane p starting at j, or a copy padded with `fill` past s. */
static inline const float *bn_chunk(const float *p, int j, int s, float fill, float *pad) {
  if (j + LANES <= s) return p + j;
  for (int l = 0; l < LANES; l++) pad[l] = j + l < s ? p[j + l] : fill;
  return pad;
}

/* ---- forward, training ----------------------------------------------------------------- */

/* Finish one channel's statistics: K is the shift, s1 = sum(x-K), s2 = sum((x-K)^2).
 * Writes the outputs and the float constants of y = (x - K) * sc + sh. */
static inline void bn_finish_stats(double s1, double s2, double m, float K, float g, float b,
                                   float eps, float *mean, float *var, float *invstd, float *sc,
                                   float *sh) {
  double off = s1 / m; /* mean - K */
  double v = s2 / m - off * off;
  if (v < 0) v = 0;
  double is = 1.0 / sqrt(v + (double)eps);
  double scale = (double)g * is;
  *mean = (float)((double)K + off);
  *var = (float)v;
  *invstd = (float)is;
  *sc = (float)scale;
  *sh = (float)((double)b - off * scale);
}

static void bn_fwd_train_channel(const float *x, const float *gamma, const float *beta, float *y,
                                 float *mean, float *var, float *invstd, int n, int c, int s,
                                 int ch, float eps) {
  const size_t plane = (size_t)c * (size_t)s;
  const float K = x[(size_t)ch * s];
  const double Kd = K;
  const bn_v8d Kv = (bn_v8d){0} + Kd;
  bn_acc a1 = {{0}, {0}, {0}, {0}}, a2 = a1;
  float pad[LANES];
  for (int i = 0; i < n; i++) {
    const float *p = x + (size_t)i * plane + (size_t)ch * s;
    for (int j = 0; j < s; j += LANES) {
      const float *v = bn_chunk(p, j, s, K, pad);
#define BN_FWD(q, vq)      \
  {                        \
    bn_v8d d;              \
    bn_ld8(&d, v + 8 * q); \
    d -= Kv;               \
    a1.vq += d;            \
    a2.vq += d * d;        \
  }
      BN_QUARTERS(BN_FWD)
#undef BN_FWD
    }
  }
  const double s1 = bn_lane_sum(&a1), s2 = bn_lane_sum(&a2);
  float sc, sh;
  bn_finish_stats(s1, s2, (double)n * s, K, gamma ? gamma[ch] : 1.0f, beta ? beta[ch] : 0.0f, eps,
                  &mean[ch], &var[ch], &invstd[ch], &sc, &sh);
  for (int i = 0; i < n; i++) {
    const float *p = x + (size_t)i * plane + (size_t)ch * s;
    float *q = y + (size_t)i * plane + (size_t)ch * s;
#pragma omp simd
    for (int j = 0; j < s; j++) q[j] = (p[j] - K) * sc + sh;
  }
}

/* S = 1: channels [c0, c0+cw) of every row. */
static void bn_fwd_train_rows(const float *x, const float *gamma, const float *beta, float *y,
                              float *mean, float *var, float *invstd, int n, int c, int c0, int cw,
                              float eps) {
  float K[RBLK], sc[RBLK], sh[RBLK];
  double Kd[RBLK], a1[RBLK], a2[RBLK];
  for (int k = 0; k < cw; k++) {
    Kd[k] = K[k] = x[c0 + k];
    a1[k] = a2[k] = 0;
  }
  for (int i = 0; i < n; i++) {
    const float *p = x + (size_t)i * c + c0;
#pragma omp simd
    for (int k = 0; k < cw; k++) {
      double d = (double)p[k] - Kd[k];
      a1[k] += d;
      a2[k] += d * d;
    }
  }
  for (int k = 0; k < cw; k++)
    bn_finish_stats(a1[k], a2[k], (double)n, K[k], gamma ? gamma[c0 + k] : 1.0f,
                    beta ? beta[c0 + k] : 0.0f, eps, &mean[c0 + k], &var[c0 + k], &invstd[c0 + k],
                    &sc[k], &sh[k]);
  for (int i = 0; i < n; i++) {
    const float *p = x + (size_t)i * c + c0;
    float *q = y + (size_t)i * c + c0;
#pragma omp simd
    for (int k = 0; k < cw; k++) q[k] = (p[k] - K[k]) * sc[k] + sh[k];
  }
}

void nn_bn_forward_train(const float *x, const float *gamma, const float *beta, float *y,
                         float *mean, float *var, float *invstd, int n, int c, int s, float eps) {
  if (s == 1) {
    int w;
    const int nr = bn_ranges(n, c, &w);
#pragma omp parallel for schedule(static) if (nr > 1)
    for (int r = 0; r < nr; r++) {
      int c0 = r * w, cw = c - c0 < w ? c - c0 : w;
      bn_fwd_train_rows(x, gamma, beta, y, mean, var, invstd, n, c, c0, cw, eps);
    }
  } else {
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++)
      bn_fwd_train_channel(x, gamma, beta, y, mean, var, invstd, n, c, s, ch, eps);
  }
}

/* ---- forward, inference: y = (x - mean) * (gamma / sqrt(var + eps)) + beta -------------- */

static inline float bn_infer_scale(const float *gamma, const float *var, int ch, float eps) {
  return (float)((gamma ? (double)gamma[ch] : 1.0) / sqrt((double)var[ch] + (double)eps));
}

void nn_bn_forward_infer(const float *x, const float *gamma, const float *beta, const float *mean,
                         const float *var, float *y, int n, int c, int s, float eps) {
  if (s == 1) {
    int w;
    const int nr = bn_ranges(n, c, &w);
#pragma omp parallel for schedule(static) if (nr > 1)
    for (int r = 0; r < nr; r++) {
      const int c0 = r * w, cw = c - c0 < w ? c - c0 : w;
      float mu[RBLK], sc[RBLK], sh[RBLK];
      for (int k = 0; k < cw; k++) {
        mu[k] = mean[c0 + k];
        sc[k] = bn_infer_scale(gamma, var, c0 + k, eps);
        sh[k] = beta ? beta[c0 + k] : 0.0f;
      }
      for (int i = 0; i < n; i++) {
        const float *p = x + (size_t)i * c + c0;
        float *q = y + (size_t)i * c + c0;
#pragma omp simd
        for (int k = 0; k < cw; k++) q[k] = (p[k] - mu[k]) * sc[k] + sh[k];
      }
    }
  } else {
    const size_t plane = (size_t)c * (size_t)s;
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++) {
      const float mu = mean[ch], sc = bn_infer_scale(gamma, var, ch, eps);
      const float sh = beta ? beta[ch] : 0.0f;
      for (int i = 0; i < n; i++) {
        const float *p = x + (size_t)i * plane + (size_t)ch * s;
        float *q = y + (size_t)i * plane + (size_t)ch * s;
#pragma omp simd
        for (int j = 0; j < s; j++) q[j] = (p[j] - mu) * sc + sh;
      }
    }
  }
}

/* ---- backward, training ------------------------------------------------------------------
 * With K = mean[c] (float) as the shift, one pass gives sd = sum(x-K), sdy = sum(dy) and
 * sdyd = sum(dy*(x-K)) in double. The batch mean mu = K + sd/m is thereby recomputed in double
 * from the same x (the float mean[] alone loses digits when |mean| >> std), so
 * sum(dy*xhat) = invstd * (sdyd - (sd/m)*sdy) and
 *   dx = A*dy - k*(x-K) + B,  A = gamma*invstd, k = A*invstd^2*sum(dy*(x-mu))/m,
 *   B = -A*sdy/m + k*(mu-K). */

typedef struct {
  float A, k, B;
} bn_bwd_coef;

static inline bn_bwd_coef bn_bwd_finish(double sd, double sdy, double sdyd, double m, float g,
                                        float is, float *dgamma, float *dbeta) {
  double off = sd / m;            /* mu - K */
  double sdyx = sdyd - off * sdy; /* sum(dy * (x - mu)) */
  if (dgamma) *dgamma += (float)(sdyx * (double)is);
  if (dbeta) *dbeta += (float)sdy;
  double A = (double)g * is, k = A * is * is * sdyx / m;
  bn_bwd_coef r = {(float)A, (float)k, (float)(-A * sdy / m + k * off)};
  return r;
}

static void bn_bwd_train_channel(const float *x, const float *gamma, const float *mean,
                                 const float *invstd, const float *dy, float *dx, float *dgamma,
                                 float *dbeta, int n, int c, int s, int ch) {
  const size_t plane = (size_t)c * (size_t)s;
  const float K = mean[ch];
  const double Kd = K;
  const bn_v8d Kv = (bn_v8d){0} + Kd;
  bn_acc ad = {{0}, {0}, {0}, {0}}, ady = ad, adyd = ad;
  float padx[LANES], pady[LANES];
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * plane + (size_t)ch * s;
    for (int j = 0; j < s; j += LANES) {
      const float *v = bn_chunk(x + o, j, s, K, padx), *g = bn_chunk(dy + o, j, s, 0.0f, pady);
#define BN_BWD(q, vq)      \
  {                        \
    bn_v8d d, e;           \
    bn_ld8(&d, v + 8 * q); \
    bn_ld8(&e, g + 8 * q); \
    d -= Kv;               \
    ad.vq += d;            \
    ady.vq += e;           \
    adyd.vq += e * d;      \
  }
      BN_QUARTERS(BN_BWD)
#undef BN_BWD
    }
  }
  const double sd = bn_lane_sum(&ad), sdy = bn_lane_sum(&ady), sdyd = bn_lane_sum(&adyd);
  const bn_bwd_coef cf =
      bn_bwd_finish(sd, sdy, sdyd, (double)n * s, gamma ? gamma[ch] : 1.0f, invstd[ch],
                    dgamma ? &dgamma[ch] : NULL, dbeta ? &dbeta[ch] : NULL);
  if (!dx) return;
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * plane + (size_t)ch * s;
    const float *p = x + o, *g = dy + o;
    float *q = dx + o;
#pragma omp simd
    for (int j = 0; j < s; j++) q[j] = cf.A * g[j] - cf.k * (p[j] - K) + cf.B;
  }
}

/* S = 1: channels [c0, c0+cw) of every row. */
static void bn_bwd_train_rows(const float *x, const float *gamma, const float *mean,
                              const float *invstd, const float *dy, float *dx, float *dgamma,
                              float *dbeta, int n, int c, int c0, int cw) {
  float K[RBLK], A[RBLK], kk[RBLK], B[RBLK];
  double Kd[RBLK], ad[RBLK], ady[RBLK], adyd[RBLK];
  for (int k = 0; k < cw; k++) {
    Kd[k] = K[k] = mean[c0 + k];
    ad[k] = ady[k] = adyd[k] = 0;
  }
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * c + c0;
#pragma omp simd
    for (int k = 0; k < cw; k++) {
      double d = (double)x[o + k] - Kd[k], e = dy[o + k];
      ad[k] += d;
      ady[k] += e;
      adyd[k] += e * d;
    }
  }
  for (int k = 0; k < cw; k++) {
    bn_bwd_coef cf = bn_bwd_finish(ad[k], ady[k], adyd[k], (double)n, gamma ? gamma[c0 + k] : 1.0f,
                                   invstd[c0 + k], dgamma ? &dgamma[c0 + k] : NULL,
                                   dbeta ? &dbeta[c0 + k] : NULL);
    A[k] = cf.A, kk[k] = cf.k, B[k] = cf.B;
  }
  if (!dx) return;
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * c + c0;
#pragma omp simd
    for (int k = 0; k < cw; k++) dx[o + k] = A[k] * dy[o + k] - kk[k] * (x[o + k] - K[k]) + B[k];
  }
}

void nn_bn_backward_train(const float *x, const float *gamma, const float *mean, const float *invstd,
                          const float *dy, float *dx, float *dgamma, float *dbeta, int n, int c, int s) {
  if (!dx && !dgamma && !dbeta) return;
  if (s == 1) {
    int w;
    const int nr = bn_ranges(n, c, &w);
#pragma omp parallel for schedule(static) if (nr > 1)
    for (int r = 0; r < nr; r++) {
      int c0 = r * w, cw = c - c0 < w ? c - c0 : w;
      bn_bwd_train_rows(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, n, c, c0, cw);
    }
  } else {
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++)
      bn_bwd_train_channel(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, n, c, s, ch);
  }
}

/* ---- backward, inference (statistics are constants) ---------------------------------------
 * dx = dy * gamma * invstd; dgamma += invstd * sum(dy * (x - mean)); dbeta += sum(dy). */

void nn_bn_backward_infer(const float *x, const float *gamma, const float *mean, const float *var,
                          const float *dy, float *dx, float *dgamma, float *dbeta, int n, int c, int s,
                          float eps) {
  const int red = dgamma || dbeta;
  if (!dx && !red) return;
  if (s == 1) {
    int w;
    const int nr = bn_ranges(n, c, &w);
#pragma omp parallel for schedule(static) if (nr > 1)
    for (int r = 0; r < nr; r++) {
      const int c0 = r * w, cw = c - c0 < w ? c - c0 : w;
      double mu[RBLK], ady[RBLK], adyd[RBLK];
      float A[RBLK];
      for (int k = 0; k < cw; k++) {
        mu[k] = mean[c0 + k];
        A[k] = bn_infer_scale(gamma, var, c0 + k, eps);
        ady[k] = adyd[k] = 0;
      }
      for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * c + c0;
        if (red) {
#pragma omp simd
          for (int k = 0; k < cw; k++) {
            double e = dy[o + k];
            ady[k] += e;
            adyd[k] += e * ((double)x[o + k] - mu[k]);
          }
        }
        if (dx) {
#pragma omp simd
          for (int k = 0; k < cw; k++) dx[o + k] = dy[o + k] * A[k];
        }
      }
      if (red)
        for (int k = 0; k < cw; k++) {
          double is = 1.0 / sqrt((double)var[c0 + k] + (double)eps);
          if (dgamma) dgamma[c0 + k] += (float)(is * adyd[k]);
          if (dbeta) dbeta[c0 + k] += (float)ady[k];
        }
    }
  } else {
    const size_t plane = (size_t)c * (size_t)s;
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++) {
      const bn_v8d mu = (bn_v8d){0} + (double)mean[ch];
      const float A = bn_infer_scale(gamma, var, ch, eps);
      bn_acc ady = {{0}, {0}, {0}, {0}}, adyd = ady;
      float padx[LANES], pady[LANES];
      for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * plane + (size_t)ch * s;
        if (red)
          for (int j = 0; j < s; j += LANES) {
            const float *v = bn_chunk(x + o, j, s, mean[ch], padx), *g = bn_chunk(dy + o, j, s, 0.0f, pady);
#define BN_BWDI(q, vq)       \
  {                          \
    bn_v8d d, e;             \
    bn_ld8(&d, v + 8 * q);   \
    bn_ld8(&e, g + 8 * q);   \
    ady.vq += e;             \
    adyd.vq += e * (d - mu); \
  }
            BN_QUARTERS(BN_BWDI)
#undef BN_BWDI
          }
        if (dx) {
          const float *g = dy + o;
          float *q = dx + o;
#pragma omp simd
          for (int j = 0; j < s; j++) q[j] = g[j] * A;
        }
      }
      if (red) {
        const double sdy = bn_lane_sum(&ady), sdyd = bn_lane_sum(&adyd);
        double is = 1.0 / sqrt((double)var[ch] + (double)eps);
        if (dgamma) dgamma[ch] += (float)(is * sdyd);
        if (dbeta) dbeta[ch] += (float)sdy;
      }
    }
  }
}

/* ---- running statistics --------------------------------------------------------------------- */

int nn_bn_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int c,
                         long m, double momentum, int unbiased) {
  /* The unbiased variance of fewer than 2 values is not finite either. */
  if (unbiased && m < 2) return 0;
  for (int k = 0; k < c; k++)
    if (!isfinite(mean[k]) || !isfinite(var[k])) return 0;
  const double f = unbiased ? (double)m / (double)(m - 1) : 1.0;
  for (int k = 0; k < c; k++) {
    run_mean[k] = (float)((1.0 - momentum) * run_mean[k] + momentum * mean[k]);
    run_var[k] = (float)((1.0 - momentum) * run_var[k] + momentum * ((double)var[k] * f));
  }
  return 1;
}
