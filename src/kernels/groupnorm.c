/* Group normalization kernel (LayerNorm = 1 group, GroupNorm = G groups, InstanceNorm = C
 * groups): x[N,C,S] viewed as N*G groups of m = (C/G)*S contiguous values. Semantics in
 * groupnorm.h and ARCHITECTURE.md §4; plain double twins in groupnorm_ref.c.
 *
 * Numerics
 * - Statistics are accumulated in double around a per-group shift K (the group's first value
 *   in forward, the given float mean in backward): one pass computes sum(x-K) and
 *   sum((x-K)^2), so 1e4 + N(0,1e-2) keeps its digits and a constant group gives exactly
 *   var = 0 (clamped at 0 in any case; NaN is kept so a running update can refuse it).
 *   The backward recomputes the exact mean offset mu - K in double from the same x.
 * - Reductions use LANES double accumulators, lane l taking the elements at positions
 *   j % LANES == l of a contiguous run (a padded last chunk contributes exactly 0), summed
 *   in lane order. Every group (forward, backward sums, dx) is handled by one thread; the
 *   parameter gradients are reduced per channel (or per element) over samples i = 0..N-1
 *   in order, by one thread each. Results are therefore bitwise identical for any number
 *   of threads.
 * - The elementwise passes work in float on (x - K), with the double offsets folded into
 *   per-group (or per-channel) constants.
 *
 * Backward runs in up to three phases: (1) per group, sums -> coefficients of
 *   dx = invstd*(dxhat - mean(dxhat)) - k*(x-K) + k*(mu-K),  k = invstd^3*sum(dxhat*(x-mu))/m,
 *   kept in ws (the mean of dxhat is subtracted before the multiplication by invstd, so a
 *   group of one value, or of constant dxhat, gets dx = 0 exactly rather than a rounding
 *   residue times 1/sqrt(eps)); with a per-channel affine this pass also leaves each
 *   (sample, channel)'s dgamma/dbeta terms in ws; (2) dgamma/dbeta: per channel the sum of
 *   those terms over samples, or per element a second read of x and dy over samples;
 * (3) dx. Phases 1 and 3 are fused per group (the group's second read hits cache) unless
 * dx == dy and parameter gradients are wanted: then dx is written only after phase 2 has
 * read dy, so in-place use is safe either way.
 * Nothing here allocates: per-block accumulators live on the stack. */
#include "kernels/groupnorm.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define LANES 16            /* double accumulators per quantity (2 x 8) */
#define EBLK 256            /* per-element parameter gradients: elements per work item */
#define PAR_MIN_ELEMS 16384 /* below this a kernel stays on the calling thread */
#define WS_PER_GROUP 4      /* backward workspace: mu - K, k, mean(dxhat), k*(mu - K) */

static inline int gn_parallel(int n, int c, int s) {
  return (size_t)n * (size_t)c * (size_t)s >= PAR_MIN_ELEMS;
}

typedef float gn_v8f __attribute__((vector_size(32)));
typedef double gn_v8d __attribute__((vector_size(64)));

/* 8 floats -> 8 doubles; vectors go through pointers, never by value. */
static inline void gn_ld8(gn_v8d *out, const float *p) {
  gn_v8f v;
  memcpy(&v, p, sizeof v);
  *out = __builtin_convertvector(v, gn_v8d);
}

typedef struct {
  gn_v8d lo, hi;
} gn_acc;

static inline double gn_lane_sum(const gn_acc *a) {
  double s = 0;
  for (int l = 0; l < 8; l++) s += a->lo[l];
  for (int l = 0; l < 8; l++) s += a->hi[l];
  return s;
}

/* The chunk of p starting at j, or a copy padded with `fill` past len. */
static inline const float *gn_chunk(const float *p, size_t j, size_t len, float fill, float *pad) {
  if (j + LANES <= len) return p + j;
  for (size_t l = 0; l < LANES; l++) pad[l] = j + l < len ? p[j + l] : fill;
  return pad;
}

/* Group t = i*G + g starts at x + t*m: (i*C + g*C/G)*S = (i*G + g)*m. */
static inline size_t gn_group_off(size_t t, size_t m) { return t * m; }

/* CHANNEL affine with S = 1 is ELEMENT affine (one value per channel = per element). */
static inline nn_gn_affine gn_kind(nn_gn_affine affine, int s) {
  return affine == NN_GN_AFFINE_CHANNEL && s == 1 ? NN_GN_AFFINE_ELEMENT : affine;
}

/* ---- forward -------------------------------------------------------------------------- */

static void gn_fwd_group(const float *x, const float *gamma, const float *beta, float *y, float *mean,
                         float *var, float *invstd, int c, int s, int groups, size_t t, float eps,
                         nn_gn_affine affine) {
  const int cg = c / groups, g = (int)(t % (size_t)groups);
  const size_t m = (size_t)cg * (size_t)s, o = gn_group_off(t, m);
  const float *p = x + o;
  float *q = y + o;
  const float K = p[0];
  const gn_v8d Kv = (gn_v8d){0} + (double)K;
  gn_acc a1 = {{0}, {0}}, a2 = a1;
  float pad[LANES];
  for (size_t j = 0; j < m; j += LANES) {
    const float *v = gn_chunk(p, j, m, K, pad);
    gn_v8d d0, d1;
    gn_ld8(&d0, v);
    gn_ld8(&d1, v + 8);
    d0 -= Kv;
    d1 -= Kv;
    a1.lo += d0;
    a1.hi += d1;
    a2.lo += d0 * d0;
    a2.hi += d1 * d1;
  }
  const double s1 = gn_lane_sum(&a1), s2 = gn_lane_sum(&a2);
  const double off = s1 / (double)m; /* mean - K */
  double v = s2 / (double)m - off * off;
  if (v < 0) v = 0;
  const double is = 1.0 / sqrt(v + (double)eps);
  mean[t] = (float)((double)K + off);
  if (var) var[t] = (float)v;
  invstd[t] = (float)is;
  switch (affine) {
  case NN_GN_AFFINE_NONE: {
    const float sc = (float)is, sh = (float)(-off * is);
#pragma omp simd
    for (size_t k = 0; k < m; k++) q[k] = (p[k] - K) * sc + sh;
    break;
  }
  case NN_GN_AFFINE_CHANNEL:
    for (int ch = 0; ch < cg; ch++) {
      const int cc = g * cg + ch;
      const double scd = (double)gamma[cc] * is;
      const float sc = (float)scd, sh = (float)((double)beta[cc] - off * scd);
      const float *pc = p + (size_t)ch * s;
      float *qc = q + (size_t)ch * s;
#pragma omp simd
      for (int j = 0; j < s; j++) qc[j] = (pc[j] - K) * sc + sh;
    }
    break;
  case NN_GN_AFFINE_ELEMENT: {
    const float *ga = gamma + (size_t)g * m, *be = beta + (size_t)g * m;
    const float a = (float)is, b = (float)(-off * is);
#pragma omp simd
    for (size_t k = 0; k < m; k++) q[k] = ((p[k] - K) * a + b) * ga[k] + be[k];
    break;
  }
  }
}

void nn_groupnorm_forward(const float *x, const float *gamma, const float *beta, float *y, float *mean,
                          float *var, float *invstd, int n, int c, int s, int groups, float eps,
                          nn_gn_affine affine) {
  affine = gn_kind(affine, s);
  const int ng = n * groups;
#pragma omp parallel for schedule(static) if (gn_parallel(n, c, s) && ng > 1)
  for (int t = 0; t < ng; t++)
    gn_fwd_group(x, gamma, beta, y, mean, var, invstd, c, s, groups, (size_t)t, eps, affine);
}

/* ---- backward ------------------------------------------------------------------------- */

size_t nn_groupnorm_workspace(int n, int c, int groups) {
  return (size_t)n * ((size_t)WS_PER_GROUP * (size_t)groups + 2 * (size_t)c);
}

/* Over a contiguous run of len values: sd += sum(x-K), se += sum(e), sed += sum(e*(x-K)) with
 * e = dy (gm == NULL) or dy*gm. Lanes as described at the top; runs shorter than LANES are
 * summed in order by one scalar loop. */
static inline void gn_run_sums(const float *p, const float *d, const float *gm, size_t len, float K, double *sd,
                               double *se, double *sed) {
  if (len < LANES) {
    double a = 0, b = 0, c = 0;
    for (size_t j = 0; j < len; j++) {
      double x = (double)p[j] - (double)K, e = d[j];
      if (gm) e *= gm[j];
      a += x;
      b += e;
      c += e * x;
    }
    *sd += a, *se += b, *sed += c;
    return;
  }
  const gn_v8d Kv = (gn_v8d){0} + (double)K;
  gn_acc ad = {{0}, {0}}, ae = ad, aed = ad;
  float padx[LANES], pady[LANES], padg[LANES];
  for (size_t j = 0; j < len; j += LANES) {
    const float *v = gn_chunk(p, j, len, K, padx), *e = gn_chunk(d, j, len, 0.0f, pady);
    gn_v8d x0, x1, e0, e1;
    gn_ld8(&x0, v);
    gn_ld8(&x1, v + 8);
    gn_ld8(&e0, e);
    gn_ld8(&e1, e + 8);
    if (gm) {
      const float *gv = gn_chunk(gm, j, len, 1.0f, padg);
      gn_v8d g0, g1;
      gn_ld8(&g0, gv);
      gn_ld8(&g1, gv + 8);
      e0 *= g0;
      e1 *= g1;
    }
    x0 -= Kv;
    x1 -= Kv;
    ad.lo += x0;
    ad.hi += x1;
    ae.lo += e0;
    ae.hi += e1;
    aed.lo += e0 * x0;
    aed.hi += e1 * x1;
  }
  *sd += gn_lane_sum(&ad), *se += gn_lane_sum(&ae), *sed += gn_lane_sum(&aed);
}

/* Phase 1 for group t (sample i, group g): sd = sum(x-K), se = sum(dxhat),
 * sed = sum(dxhat*(x-K)) with dxhat = dy*gamma and K = the float mean; writes
 * coef[4t..4t+3] = {mu-K, k, se/m, k*(mu-K)}. CHANNEL affine also leaves this sample's
 * per-channel parameter-gradient terms in part[2*(i*C + ch) ..]:
 * {invstd*sum(dy*(x-mu)), sum(dy)} over the channel's S values. */
static void gn_bwd_sums(const float *x, const float *gamma, const float *mean, const float *invstd,
                        const float *dy, float *coef, float *part, int c, int s, int groups, size_t t,
                        nn_gn_affine affine) {
  const int cg = c / groups, g = (int)(t % (size_t)groups);
  const size_t m = (size_t)cg * (size_t)s, o = gn_group_off(t, m);
  const float *p = x + o, *d = dy + o;
  const float K = mean[t];
  double sd = 0, se = 0, sed = 0;
  float *pc = part + 2 * (t * (size_t)cg); /* = 2*(i*C + g*cg) */
  switch (affine) {
  case NN_GN_AFFINE_NONE:
    gn_run_sums(p, d, NULL, m, K, &sd, &se, &sed);
    break;
  case NN_GN_AFFINE_ELEMENT:
    gn_run_sums(p, d, gamma + (size_t)g * m, m, K, &sd, &se, &sed);
    break;
  case NN_GN_AFFINE_CHANNEL:
    for (int ch = 0; ch < cg; ch++) {
      double cd = 0, cdy = 0, cdyd = 0, gc = gamma[g * cg + ch];
      gn_run_sums(p + (size_t)ch * s, d + (size_t)ch * s, NULL, (size_t)s, K, &cd, &cdy, &cdyd);
      sd += cd;
      se += gc * cdy;
      sed += gc * cdyd;
      pc[2 * ch] = (float)cdyd; /* finished below, once mu is known */
      pc[2 * ch + 1] = (float)cdy;
    }
    break;
  }
  const double md = (double)m, is = invstd[t], off = sd / md; /* mu - K */
  const double sxm = sed - off * se;                            /* sum(dxhat * (x - mu)) */
  const double k = is * is * is * sxm / md;
  float *w = coef + WS_PER_GROUP * t;
  w[0] = (float)off;
  w[1] = (float)k;
  w[2] = (float)(se / md);
  w[3] = (float)(k * off);
  if (affine == NN_GN_AFFINE_CHANNEL)
    for (int ch = 0; ch < cg; ch++) pc[2 * ch] = (float)(is * ((double)pc[2 * ch] - off * (double)pc[2 * ch + 1]));
}

/* Phase 3 for group t: dx = invstd*(dxhat - mean(dxhat)) - k*(x-K) + k*(mu-K). */
static void gn_bwd_dx(const float *x, const float *gamma, const float *mean, const float *invstd,
                      const float *dy, float *dx, const float *coef, int c, int s, int groups, size_t t,
                      nn_gn_affine affine) {
  const int cg = c / groups, g = (int)(t % (size_t)groups);
  const size_t m = (size_t)cg * (size_t)s, o = gn_group_off(t, m);
  const float *p = x + o, *d = dy + o;
  float *q = dx + o;
  const float *w = coef + WS_PER_GROUP * t;
  const float K = mean[t], A = invstd[t], k = w[1], c0 = w[2], B = w[3];
  switch (affine) {
  case NN_GN_AFFINE_NONE:
#pragma omp simd
    for (size_t j = 0; j < m; j++) q[j] = A * (d[j] - c0) - k * (p[j] - K) + B;
    break;
  case NN_GN_AFFINE_CHANNEL:
    for (int ch = 0; ch < cg; ch++) {
      const float gc = gamma[g * cg + ch];
      const size_t b = (size_t)ch * s;
#pragma omp simd
      for (int j = 0; j < s; j++) q[b + j] = A * (gc * d[b + j] - c0) - k * (p[b + j] - K) + B;
    }
    break;
  case NN_GN_AFFINE_ELEMENT: {
    const float *ga = gamma + (size_t)g * m;
#pragma omp simd
    for (size_t j = 0; j < m; j++) q[j] = A * (d[j] * ga[j] - c0) - k * (p[j] - K) + B;
    break;
  }
  }
}

/* Phase 2, ELEMENT affine: elements [e0, e0+len) of group g (len <= EBLK) over samples
 * i = 0..N-1 in order: dgamma += sum(dy * invstd * (x - mu)), dbeta += sum(dy). */
static void gn_bwd_param_element(const float *x, const float *mean, const float *invstd, const float *dy,
                                 const float *coef, float *dgamma, float *dbeta, int n, int c, int s, int groups,
                                 int g, size_t e0, int len) {
  const size_t cs = (size_t)c * (size_t)s;
  double ag[EBLK], ab[EBLK];
  for (int k = 0; k < len; k++) ag[k] = ab[k] = 0;
  for (int i = 0; i < n; i++) {
    const size_t t = (size_t)i * groups + g, o = (size_t)i * cs + e0;
    const double K = mean[t], off = coef[WS_PER_GROUP * t], is = invstd[t];
    const float *p = x + o, *d = dy + o;
#pragma omp simd
    for (int k = 0; k < len; k++) {
      double e = d[k];
      ag[k] += (e * is) * (((double)p[k] - K) - off);
      ab[k] += e;
    }
  }
  for (int k = 0; k < len; k++) {
    if (dgamma) dgamma[e0 + k] += (float)ag[k];
    if (dbeta) dbeta[e0 + k] += (float)ab[k];
  }
}

void nn_groupnorm_backward(const float *x, const float *gamma, const float *mean, const float *invstd,
                           const float *dy, float *dx, float *dgamma, float *dbeta, float *ws, int n, int c,
                           int s, int groups, nn_gn_affine affine) {
  affine = gn_kind(affine, s);
  const int params = affine != NN_GN_AFFINE_NONE && (dgamma || dbeta);
  if (!dx && !params) return;
  const int ng = n * groups, par = gn_parallel(n, c, s);
  const int fuse = dx && !(params && dx == dy);
  float *coef = ws, *part = ws + (size_t)WS_PER_GROUP * (size_t)ng;
#pragma omp parallel for schedule(static) if (par && ng > 1)
  for (int t = 0; t < ng; t++) {
    gn_bwd_sums(x, gamma, mean, invstd, dy, coef, part, c, s, groups, (size_t)t, affine);
    if (fuse) gn_bwd_dx(x, gamma, mean, invstd, dy, dx, coef, c, s, groups, (size_t)t, affine);
  }
  if (params && affine == NN_GN_AFFINE_CHANNEL) {
    /* per channel, the samples' terms in order i = 0..N-1 */
    for (int ch = 0; ch < c; ch++) {
      double sg = 0, sb = 0;
      for (int i = 0; i < n; i++) {
        const float *pc = part + 2 * ((size_t)i * c + ch);
        sg += pc[0];
        sb += pc[1];
      }
      if (dgamma) dgamma[ch] += (float)sg;
      if (dbeta) dbeta[ch] += (float)sb;
    }
  } else if (params) {
    const size_t m = (size_t)(c / groups) * (size_t)s;
    const int nb = (int)((m + EBLK - 1) / EBLK), items = groups * nb;
#pragma omp parallel for schedule(static) if (par && items > 1)
    for (int it = 0; it < items; it++) {
      const int g = it / nb, b = it % nb;
      const size_t first = (size_t)b * EBLK;
      const int len = m - first < EBLK ? (int)(m - first) : EBLK;
      gn_bwd_param_element(x, mean, invstd, dy, coef, dgamma, dbeta, n, c, s, groups, g, (size_t)g * m + first,
                           len);
    }
  }
  if (dx && !fuse) {
#pragma omp parallel for schedule(static) if (par && ng > 1)
    for (int t = 0; t < ng; t++) gn_bwd_dx(x, gamma, mean, invstd, dy, dx, coef, c, s, groups, (size_t)t, affine);
  }
}

/* ---- InstanceNorm running statistics --------------------------------------------------- */

int nn_instnorm_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int n,
                               int c, int s, double momentum) {
  if (s < 2 || n < 1) return 0;
  const size_t nc = (size_t)n * (size_t)c;
  for (size_t k = 0; k < nc; k++)
    if (!isfinite(mean[k]) || !isfinite(var[k])) return 0;
  const double f = (double)s / (double)(s - 1);
  for (int ch = 0; ch < c; ch++) {
    double bm = 0, bv = 0;
    for (int i = 0; i < n; i++) {
      bm += mean[(size_t)i * c + ch];
      bv += (double)var[(size_t)i * c + ch] * f;
    }
    bm /= n;
    bv /= n;
    run_mean[ch] = (float)((1.0 - momentum) * run_mean[ch] + momentum * bm);
    run_var[ch] = (float)((1.0 - momentum) * run_var[ch] + momentum * bv);
  }
  return 1;
}
