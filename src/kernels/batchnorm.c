/* Batch normalization kernels: x[N,C,S] (S = H*W, or 1 for (N,C) input), statistics per
 * channel over the m = N*S values x[(i*C + c)*S + j]. Semantics in kernels.h and
 * DESIGN §4; plain double twins in batchnorm_ref.c.
 *
 * Numerics
 * - Statistics are accumulated in double around a per-channel shift K (the channel's first
 *   value in forward, the given mean in backward): one pass computes sum(x-K) and
 *   sum((x-K)^2), so 1e4 + N(0,1e-2) keeps its digits, and a constant channel gives exactly
 *   var = 0 (clamped at 0 in any case; NaN is kept so running_update can refuse it).
 * - Every reduction runs in an order fixed by the data layout: one channel (or, for S = 1,
 *   one block of CBLK channels) is reduced by one thread, through LANES independent double
 *   accumulators picked by position (j % LANES, or row parity for S = 1), summed in lane
 *   order. Results are bitwise identical for any thread count.
 * - The elementwise passes work in float on (x - K), with the double-precision offsets
 *   folded into one per-channel constant, so a mean of 1e4 does not cost y its digits.
 *
 * Memory traffic (DESIGN §7): forward_train reads x twice and writes y; forward_infer reads
 * x once and writes y; backward_train reads x, dy twice and writes dx; backward_infer
 * reads them once per (sample, channel) plane (the second read hits L1).
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>

#define LANES 32            /* double accumulators per channel for S > 1 (4 zmm chains) */
#define CBLK 16             /* channels per block for S = 1 */
#define PAR_MIN_ELEMS 16384 /* below this a kernel stays on the calling thread */

static inline int bn_parallel(int n, int c, int s) {
  return (size_t)n * (size_t)c * (size_t)s >= PAR_MIN_ELEMS;
}

static inline int bn_nblocks(int c) { return (c + CBLK - 1) / CBLK; }

/* ---- forward, training --------------------------------------------------------------- */

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
  double a1[LANES] = {0}, a2[LANES] = {0};
  for (int i = 0; i < n; i++) {
    const float *p = x + (size_t)i * plane + (size_t)ch * s;
    int j = 0;
    for (; j + LANES <= s; j += LANES)
      for (int k = 0; k < LANES; k++) {
        double d = (double)p[j + k] - Kd;
        a1[k] += d;
        a2[k] += d * d;
      }
    for (int k = 0; j + k < s; k++) {
      double d = (double)p[j + k] - Kd;
      a1[k] += d;
      a2[k] += d * d;
    }
  }
  double s1 = 0, s2 = 0;
  for (int k = 0; k < LANES; k++) {
    s1 += a1[k];
    s2 += a2[k];
  }
  float sc, sh;
  bn_finish_stats(s1, s2, (double)n * s, K, gamma ? gamma[ch] : 1.0f, beta ? beta[ch] : 0.0f, eps,
                  &mean[ch], &var[ch], &invstd[ch], &sc, &sh);
  for (int i = 0; i < n; i++) {
    const float *p = x + (size_t)i * plane + (size_t)ch * s;
    float *q = y + (size_t)i * plane + (size_t)ch * s;
    for (int j = 0; j < s; j++) q[j] = (p[j] - K) * sc + sh;
  }
}

/* S = 1: channels [c0, c0+cb) together, rows split by parity into two accumulator sets. */
static void bn_fwd_train_block(const float *x, const float *gamma, const float *beta, float *y,
                               float *mean, float *var, float *invstd, int n, int c, int c0,
                               int cb, float eps) {
  float K[CBLK], sc[CBLK], sh[CBLK];
  double Kd[CBLK], a1[2][CBLK] = {{0}}, a2[2][CBLK] = {{0}};
  for (int k = 0; k < cb; k++) Kd[k] = K[k] = x[c0 + k];
  int i = 0;
  if (cb == CBLK) {
    for (; i + 2 <= n; i += 2)
      for (int r = 0; r < 2; r++) {
        const float *p = x + (size_t)(i + r) * c + c0;
        for (int k = 0; k < CBLK; k++) {
          double d = (double)p[k] - Kd[k];
          a1[r][k] += d;
          a2[r][k] += d * d;
        }
      }
  }
  for (; i < n; i++) {
    const float *p = x + (size_t)i * c + c0;
    for (int k = 0; k < cb; k++) {
      double d = (double)p[k] - Kd[k];
      a1[i & 1][k] += d;
      a2[i & 1][k] += d * d;
    }
  }
  for (int k = 0; k < cb; k++)
    bn_finish_stats(a1[0][k] + a1[1][k], a2[0][k] + a2[1][k], (double)n, K[k],
                    gamma ? gamma[c0 + k] : 1.0f, beta ? beta[c0 + k] : 0.0f, eps, &mean[c0 + k],
                    &var[c0 + k], &invstd[c0 + k], &sc[k], &sh[k]);
  for (i = 0; i < n; i++) {
    const float *p = x + (size_t)i * c + c0;
    float *q = y + (size_t)i * c + c0;
    for (int k = 0; k < cb; k++) q[k] = (p[k] - K[k]) * sc[k] + sh[k];
  }
}

void nn_bn_forward_train(const float *x, const float *gamma, const float *beta, float *y,
                         float *mean, float *var, float *invstd, int n, int c, int s, float eps) {
  if (s == 1) {
    const int nb = bn_nblocks(c);
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && nb > 1)
    for (int b = 0; b < nb; b++) {
      int c0 = b * CBLK, cb = c - c0 < CBLK ? c - c0 : CBLK;
      bn_fwd_train_block(x, gamma, beta, y, mean, var, invstd, n, c, c0, cb, eps);
    }
  } else {
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++)
      bn_fwd_train_channel(x, gamma, beta, y, mean, var, invstd, n, c, s, ch, eps);
  }
}

/* ---- forward, inference: y = (x - mean) * (gamma / sqrt(var + eps)) + beta ------------- */

static inline float bn_infer_scale(const float *gamma, const float *var, int ch, float eps) {
  return (float)((gamma ? (double)gamma[ch] : 1.0) / sqrt((double)var[ch] + (double)eps));
}

void nn_bn_forward_infer(const float *x, const float *gamma, const float *beta, const float *mean,
                         const float *var, float *y, int n, int c, int s, float eps) {
  if (s == 1) {
    const int nb = bn_nblocks(c);
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && nb > 1)
    for (int b = 0; b < nb; b++) {
      int c0 = b * CBLK, cb = c - c0 < CBLK ? c - c0 : CBLK;
      float mu[CBLK], sc[CBLK], sh[CBLK];
      for (int k = 0; k < cb; k++) {
        mu[k] = mean[c0 + k];
        sc[k] = bn_infer_scale(gamma, var, c0 + k, eps);
        sh[k] = beta ? beta[c0 + k] : 0.0f;
      }
      for (int i = 0; i < n; i++) {
        const float *p = x + (size_t)i * c + c0;
        float *q = y + (size_t)i * c + c0;
        for (int k = 0; k < cb; k++) q[k] = (p[k] - mu[k]) * sc[k] + sh[k];
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
        for (int j = 0; j < s; j++) q[j] = (p[j] - mu) * sc + sh;
      }
    }
  }
}

/* ---- backward, training ----------------------------------------------------------------
 * With K = mean[c] (float) as the shift, one pass gives sd = sum(x-K), sdy = sum(dy) and
 * sdyd = sum(dy*(x-K)) in double. The batch mean is K + sd/m: recomputed here in double from
 * the same x (the float mean[] alone loses digits when |mean| >> std), so
 * sum(dy*xhat) = invstd * (sdyd - (sd/m)*sdy) and
 *   dx = A*dy - k*(x-K) + B,  A = gamma*invstd, k = A*invstd*sum(dy*(x-mu))/m,
 *   B = -A*sdy/m + k*(mu-K). */

typedef struct {
  float A, k, B;
} bn_bwd_coef;

static inline bn_bwd_coef bn_bwd_finish(double sd, double sdy, double sdyd, double m, float g,
                                        float is, float *dgamma, float *dbeta) {
  double off = sd / m; /* mu - K */
  double sdyx = sdyd - off * sdy; /* sum(dy * (x - mu)) */
  if (dgamma) *dgamma += (float)(sdyx * (double)is);
  if (dbeta) *dbeta += (float)sdy;
  double A = (double)g * is, k = A * is * sdyx / m;
  bn_bwd_coef r = {(float)A, (float)k, (float)(-A * sdy / m + k * off)};
  return r;
}

static void bn_bwd_train_channel(const float *x, const float *gamma, const float *mean,
                                 const float *invstd, const float *dy, float *dx, float *dgamma,
                                 float *dbeta, int n, int c, int s, int ch) {
  const size_t plane = (size_t)c * (size_t)s;
  const float K = mean[ch];
  const double Kd = K;
  double ad[LANES] = {0}, ady[LANES] = {0}, adyd[LANES] = {0};
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * plane + (size_t)ch * s;
    const float *p = x + o, *g = dy + o;
    int j = 0;
    for (; j + LANES <= s; j += LANES)
      for (int l = 0; l < LANES; l++) {
        double d = (double)p[j + l] - Kd, e = g[j + l];
        ad[l] += d;
        ady[l] += e;
        adyd[l] += e * d;
      }
    for (int l = 0; j + l < s; l++) {
      double d = (double)p[j + l] - Kd, e = g[j + l];
      ad[l] += d;
      ady[l] += e;
      adyd[l] += e * d;
    }
  }
  double sd = 0, sdy = 0, sdyd = 0;
  for (int l = 0; l < LANES; l++) {
    sd += ad[l];
    sdy += ady[l];
    sdyd += adyd[l];
  }
  bn_bwd_coef cf = bn_bwd_finish(sd, sdy, sdyd, (double)n * s, gamma ? gamma[ch] : 1.0f,
                                 invstd[ch], dgamma ? &dgamma[ch] : NULL, dbeta ? &dbeta[ch] : NULL);
  if (!dx) return;
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * plane + (size_t)ch * s;
    const float *p = x + o, *g = dy + o;
    float *q = dx + o;
    for (int j = 0; j < s; j++) q[j] = cf.A * g[j] - cf.k * (p[j] - K) + cf.B;
  }
}

static void bn_bwd_train_block(const float *x, const float *gamma, const float *mean,
                               const float *invstd, const float *dy, float *dx, float *dgamma,
                               float *dbeta, int n, int c, int c0, int cb) {
  float K[CBLK];
  double Kd[CBLK], ad[2][CBLK] = {{0}}, ady[2][CBLK] = {{0}}, adyd[2][CBLK] = {{0}};
  bn_bwd_coef cf[CBLK];
  for (int k = 0; k < cb; k++) Kd[k] = K[k] = mean[c0 + k];
  int i = 0;
  if (cb == CBLK) {
    for (; i + 2 <= n; i += 2)
      for (int r = 0; r < 2; r++) {
        const size_t o = (size_t)(i + r) * c + c0;
        for (int k = 0; k < CBLK; k++) {
          double d = (double)x[o + k] - Kd[k], e = dy[o + k];
          ad[r][k] += d;
          ady[r][k] += e;
          adyd[r][k] += e * d;
        }
      }
  }
  for (; i < n; i++) {
    const size_t o = (size_t)i * c + c0;
    for (int k = 0; k < cb; k++) {
      double d = (double)x[o + k] - Kd[k], e = dy[o + k];
      ad[i & 1][k] += d;
      ady[i & 1][k] += e;
      adyd[i & 1][k] += e * d;
    }
  }
  for (int k = 0; k < cb; k++)
    cf[k] = bn_bwd_finish(ad[0][k] + ad[1][k], ady[0][k] + ady[1][k], adyd[0][k] + adyd[1][k],
                          (double)n, gamma ? gamma[c0 + k] : 1.0f, invstd[c0 + k],
                          dgamma ? &dgamma[c0 + k] : NULL, dbeta ? &dbeta[c0 + k] : NULL);
  if (!dx) return;
  float A[CBLK], kk[CBLK], B[CBLK];
  for (int k = 0; k < cb; k++) {
    A[k] = cf[k].A;
    kk[k] = cf[k].k;
    B[k] = cf[k].B;
  }
  for (i = 0; i < n; i++) {
    const size_t o = (size_t)i * c + c0;
    for (int k = 0; k < cb; k++) dx[o + k] = A[k] * dy[o + k] - kk[k] * (x[o + k] - K[k]) + B[k];
  }
}

void nn_bn_backward_train(const float *x, const float *gamma, const float *mean, const float *invstd,
                          const float *dy, float *dx, float *dgamma, float *dbeta, int n, int c, int s) {
  if (!dx && !dgamma && !dbeta) return;
  if (s == 1) {
    const int nb = bn_nblocks(c);
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && nb > 1)
    for (int b = 0; b < nb; b++) {
      int c0 = b * CBLK, cb = c - c0 < CBLK ? c - c0 : CBLK;
      bn_bwd_train_block(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, n, c, c0, cb);
    }
  } else {
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++)
      bn_bwd_train_channel(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, n, c, s, ch);
  }
}

/* ---- backward, inference (statistics are constants) -------------------------------------
 * dx = dy * gamma * invstd; dgamma += invstd * sum(dy * (x - mean)); dbeta += sum(dy). */

void nn_bn_backward_infer(const float *x, const float *gamma, const float *mean, const float *var,
                          const float *dy, float *dx, float *dgamma, float *dbeta, int n, int c, int s,
                          float eps) {
  const int red = dgamma || dbeta;
  if (!dx && !red) return;
  if (s == 1) {
    const int nb = bn_nblocks(c);
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && nb > 1)
    for (int b = 0; b < nb; b++) {
      int c0 = b * CBLK, cb = c - c0 < CBLK ? c - c0 : CBLK;
      double mu[CBLK], ady[2][CBLK] = {{0}}, adyd[2][CBLK] = {{0}};
      float A[CBLK];
      for (int k = 0; k < cb; k++) {
        mu[k] = mean[c0 + k];
        A[k] = bn_infer_scale(gamma, var, c0 + k, eps);
      }
      for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * c + c0;
        if (red)
          for (int k = 0; k < cb; k++) {
            double e = dy[o + k];
            ady[i & 1][k] += e;
            adyd[i & 1][k] += e * ((double)x[o + k] - mu[k]);
          }
        if (dx)
          for (int k = 0; k < cb; k++) dx[o + k] = dy[o + k] * A[k];
      }
      if (red)
        for (int k = 0; k < cb; k++) {
          double is = 1.0 / sqrt((double)var[c0 + k] + (double)eps);
          if (dgamma) dgamma[c0 + k] += (float)(is * (adyd[0][k] + adyd[1][k]));
          if (dbeta) dbeta[c0 + k] += (float)(ady[0][k] + ady[1][k]);
        }
    }
  } else {
    const size_t plane = (size_t)c * (size_t)s;
#pragma omp parallel for schedule(static) if (bn_parallel(n, c, s) && c > 1)
    for (int ch = 0; ch < c; ch++) {
      const double mu = mean[ch];
      const float A = bn_infer_scale(gamma, var, ch, eps);
      double ady[LANES] = {0}, adyd[LANES] = {0};
      for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * plane + (size_t)ch * s;
        const float *p = x + o, *g = dy + o;
        if (red) {
          int j = 0;
          for (; j + LANES <= s; j += LANES)
            for (int l = 0; l < LANES; l++) {
              double e = g[j + l];
              ady[l] += e;
              adyd[l] += e * ((double)p[j + l] - mu);
            }
          for (int l = 0; j + l < s; l++) {
            double e = g[j + l];
            ady[l] += e;
            adyd[l] += e * ((double)p[j + l] - mu);
          }
        }
        if (dx) {
          float *q = dx + o;
          for (int j = 0; j < s; j++) q[j] = g[j] * A;
        }
      }
      if (red) {
        double sdy = 0, sdyd = 0;
        for (int l = 0; l < LANES; l++) {
          sdy += ady[l];
          sdyd += adyd[l];
        }
        double is = 1.0 / sqrt((double)var[ch] + (double)eps);
        if (dgamma) dgamma[ch] += (float)(is * sdyd);
        if (dbeta) dbeta[ch] += (float)sdy;
      }
    }
  }
}

/* ---- running statistics ------------------------------------------------------------------ */

int nn_bn_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int c,
                         long m, double momentum, int unbiased) {
  /* An unbiased variance needs m >= 2; with fewer values it is not finite either. */
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
