/* Group normalization kernel (LayerNorm = 1 group, GroupNorm = G groups, InstanceNorm = C
 * groups): x[N,C,S] viewed as N*G groups of m = (C/G)*S contiguous values. Semantics in
 * kernels.h and ARCHITECTURE.md §4; plain double twins in groupnorm_ref.c. A thin driver over the
 * normalization core (norm_core.h) with 16 lanes (nv = 2): each group is one run.
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
#include "kernels/kernels.h"
#include "kernels/variant.h"
#include "kernels/norm_core.h"

#include <math.h>
#include <stddef.h>

#define NV 2 /* 8-lane accumulators per quantity: 16 lanes */
#define LANES (8 * NV)
#define EBLK 256       /* per-element parameter gradients: elements per work item */
#define WS_PER_GROUP 4 /* backward workspace: mu - K, k, mean(dxhat), k*(mu - K) */

/* Group t = i*G + g starts at x + t*m: (i*C + g*C/G)*S = (i*G + g)*m. */
static inline size_t gn_group_off(size_t t, size_t m) { return t * m; }

/* CHANNEL affine with S = 1 is ELEMENT affine (one value per channel = per element). */
static inline nn_gn_affine gn_kind(nn_gn_affine affine, int s) {
  return affine == NN_GN_AFFINE_CHANNEL && s == 1 ? NN_GN_AFFINE_ELEMENT : affine;
}

/* ---- forward -------------------------------------------------------------------------- */

static void gn_fwd_group(const nn_norm_geom *G, const float *x, const float *gamma, const float *beta, float *y,
                         float *mean, float *var, float *invstd, size_t t, nn_gn_affine affine) {
  const int s = G->s, cg = G->c / G->groups, g = (int)(t % (size_t)G->groups);
  const size_t m = (size_t)cg * (size_t)s, o = gn_group_off(t, m);
  const float *p = x + o;
  float *q = y + o;
  const float K = p[0];
  double s1, s2;
  nc_moments(p, 1, 0, m, K, NV, NC_FOLD_LANES, &s1, &s2);
  const nc_stats st = nc_finish(s1, s2, (double)m, G->eps);
  const double off = st.off, is = st.invstd; /* mean - K, 1/sqrt(var + eps) */
  mean[t] = (float)((double)K + off);
  if (var) var[t] = (float)st.var;
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

void NN_V(nn_groupnorm_forward)(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta, float *y,
                                float *mean, float *var, float *invstd) {
  const nn_gn_affine affine = gn_kind(g->affine, g->s);
  const int ng = g->n * g->groups;
#pragma omp parallel for schedule(static) if (nc_parallel(g->n, g->c, g->s) && ng > 1)
  for (int t = 0; t < ng; t++) gn_fwd_group(g, x, gamma, beta, y, mean, var, invstd, (size_t)t, affine);
}

/* ---- backward ------------------------------------------------------------------------- */

#if NN_VARIANT_ONCE
size_t nn_groupnorm_workspace(const nn_norm_geom *g) {
  return (size_t)g->n * ((size_t)WS_PER_GROUP * (size_t)g->groups + 2 * (size_t)g->c);
}
#endif

/* Over a contiguous run of len values: sd = sum(x-K), se = sum(e), sed = sum(e*(x-K)) with
 * e = dy (gm == NULL) or dy*gm. Lanes as described at the top; runs shorter than LANES are
 * summed in order by one scalar loop. */
static inline void gn_run_sums(const float *p, const float *d, const float *gm, size_t len, float K, double *sd,
                               double *se, double *sed) {
  if (len < LANES)
    nc_bwd_sums_seq(p, d, gm, len, K, sd, se, sed);
  else
    nc_bwd_sums(p, d, NULL, gm, NULL, NN_ACT_NONE, NULL, 1, 0, len, K, NV, NC_FOLD_LANES, sd, se, sed);
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
  const double sxm = sed - off * se;                          /* sum(dxhat * (x - mu)) */
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

void NN_V(nn_groupnorm_backward)(const nn_norm_geom *G, const float *x, const float *gamma, const float *mean,
                                 const float *invstd, const float *dy, float *dx, float *dgamma, float *dbeta, float *ws) {
  const int n = G->n, c = G->c, s = G->s, groups = G->groups;
  const nn_gn_affine affine = gn_kind(G->affine, s);
  const int params = affine != NN_GN_AFFINE_NONE && (dgamma || dbeta);
  if (!dx && !params) return;
  const int ng = n * groups, par = nc_parallel(n, c, s);
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

#if NN_VARIANT_ONCE
int nn_instnorm_running_update(const nn_norm_geom *g, float *run_mean, float *run_var, const float *mean,
                               const float *var, double momentum) {
  const int n = g->n, c = g->c, s = g->s;
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
    nc_ema(&run_mean[ch], bm, momentum);
    nc_ema(&run_var[ch], bv, momentum);
  }
  return 1;
}
#endif
