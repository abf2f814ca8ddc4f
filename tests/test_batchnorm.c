/* Batch normalization kernels (src/kernels/batchnorm.c) against
 * - their double reference twins (batchnorm_ref.c), several shapes incl. S = 1 and odd sizes;
 * - central finite differences (on the twins);
 * - hard numerics: large mean / small spread, constant channels, non-finite running updates;
 * - the phases of synchronized BN;
 * - BN + activation fused kernels and models equal to the separate steps;
 * - bitwise-identical results for 1 and 2 OpenMP threads.
 * PyTorch's values: test_batchnorm_torch.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/threads.h"
#include "fixture.h"
#include "nn_test.h"
#include "kernels/kernels.h"
#include "layers/layer.h"
#include "model/model.h"
#include "normnet.h"

#define EPS 1e-5f
/* The kernels' geometry of x[N,C,S] (eps = EPS). */
#define BN_GEOM(n_, c_, s_) (&(nn_norm_geom){.n = (n_), .c = (c_), .s = (s_), .eps = EPS})
#define MAXC 1024 /* largest channel count used below */

/* ---- helpers ------------------------------------------------------------------------------ */

/* x[N,C,S]: channel ch ~ offset[ch] + scale[ch] * N(0,1), both drawn per channel. With
 * `tiny`, every 4th channel has a spread of 3e-3 (variance ~ eps, so eps matters). */
static void fill_bn_input(nn_rng *r, float *x, int n, int c, int s, int tiny) {
  for (int ch = 0; ch < c; ch++) {
    double off = 4.0 * (nn_rng_uniform(r) - 0.5), sc = 0.2 + 2.0 * nn_rng_uniform(r);
    if (tiny && ch % 4 == 3) sc = 3e-3;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < s; j++) x[((size_t)i * c + ch) * s + j] = (float)(off + sc * nn_rng_normal(r));
  }
}

/* ---- optimized kernels vs reference twins ------------------------------------------------- */

typedef struct {
  int n, c, s;
} shape3;

static const shape3 shapes[] = {
    {8, 5, 1},
    {7, 3, 1},
    {3, 37, 1},
    {33, 19, 1},
    {256, 100, 1},
    {2, 6, 576},
    {4, 3, 30},
    {5, 7, 33},
    {3, 4, 7},
    {16, 17, 2},
    {2, 1, 1000},
    {128, 6, 576},
    {4, 3, 31},
    {9, 2, 65},
    {2, 16, 1},
    {64, 3, 100},
    {40, 600, 1},
    {3, 300, 1},
};

static void check_vs_ref(const shape3 *sh, int affine, nn_rng *r) {
  const int n = sh->n, c = sh->c, s = sh->s;
  const size_t cnt = (size_t)n * c * s;
  char what[128];
  float *x = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *y = tu_fbuf(cnt), *dx = tu_fbuf(cnt);
  float gamma[MAXC], beta[MAXC], mean[MAXC], var[MAXC], invstd[MAXC], dg[MAXC], db[MAXC], rmean[MAXC], rvar[MAXC];
  double *xs = tu_dbuf(cnt), *dyd = tu_dbuf(cnt), *yr = tu_dbuf(cnt), *dxr = tu_dbuf(cnt);
  double gd[MAXC], bd[MAXC], mr[MAXC], vr[MAXC], isr[MAXC], dgr[MAXC], dbr[MAXC], rmd[MAXC], rvd[MAXC];
  assert_true(c <= MAXC);
  fill_bn_input(r, x, n, c, s, 1);
  tu_fill_normal(r, dy, cnt, 1.0, 0.3);
  for (int k = 0; k < c; k++) {
    gamma[k] = 0.5f + nn_rng_uniform(r);
    beta[k] = (float)nn_rng_normal(r);
    rmean[k] = (float)nn_rng_normal(r);
    rvar[k] = k % 3 == 0 ? 2e-5f * (0.5f + nn_rng_uniform(r)) : 0.1f + 2.0f * nn_rng_uniform(r);
  }
  const float *g = affine ? gamma : NULL, *b = affine ? beta : NULL;
  tu_to_double(x, xs, cnt);
  tu_to_double(dy, dyd, cnt);
  tu_to_double(gamma, gd, (size_t)c);
  tu_to_double(beta, bd, (size_t)c);
  tu_to_double(rmean, rmd, (size_t)c);
  tu_to_double(rvar, rvd, (size_t)c);
  const double *gr = affine ? gd : NULL, *br = affine ? bd : NULL;
  const char *tag = affine ? "affine" : "plain";

  /* forward train */
  tu_fill_f(y, cnt, NAN);
  nn_bn_forward_train(BN_GEOM(n, c, s), x, g, b, y, mean, var, invstd);
  nn_ref_bn_forward_train(BN_GEOM(n, c, s), xs, gr, br, yr, mr, vr);
  for (int k = 0; k < c; k++) isr[k] = 1.0 / sqrt(vr[k] + EPS);
  snprintf(what, sizeof what, "fwd_train y (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, y, yr, cnt, 1e-4);
  snprintf(what, sizeof what, "fwd_train mean (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, mean, mr, (size_t)c, 1e-4);
  snprintf(what, sizeof what, "fwd_train var (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_close_fd(what, var, vr, (size_t)c, 1e-4, 0);
  snprintf(what, sizeof what, "fwd_train invstd (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_close_fd(what, invstd, isr, (size_t)c, 1e-4, 0);

  /* backward train: dx overwritten, dgamma/dbeta accumulated */
  tu_fill_f(dx, cnt, NAN);
  for (int k = 0; k < c; k++) {
    dg[k] = db[k] = 0.25f;
    dgr[k] = dbr[k] = 0.25;
  }
  nn_bn_backward_train(BN_GEOM(n, c, s), x, g, mean, invstd, dy, dx, dg, db);
  nn_ref_bn_backward_train(BN_GEOM(n, c, s), xs, gr, dyd, dxr, dgr, dbr);
  snprintf(what, sizeof what, "bwd_train dx (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dx, dxr, cnt, 1e-4);
  snprintf(what, sizeof what, "bwd_train dgamma (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dg, dgr, (size_t)c, 1e-4);
  snprintf(what, sizeof what, "bwd_train dbeta (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, db, dbr, (size_t)c, 1e-4);
  /* partial outputs: dx only, then parameter grads only */
  tu_fill_f(dx, cnt, NAN);
  nn_bn_backward_train(BN_GEOM(n, c, s), x, g, mean, invstd, dy, dx, NULL, NULL);
  snprintf(what, sizeof what, "bwd_train dx-only (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dx, dxr, cnt, 1e-4);
  for (int k = 0; k < c; k++) dg[k] = db[k] = 0.25f;
  nn_bn_backward_train(BN_GEOM(n, c, s), x, g, mean, invstd, dy, NULL, dg, db);
  snprintf(what, sizeof what, "bwd_train dgamma-only (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dg, dgr, (size_t)c, 1e-4);
  snprintf(what, sizeof what, "bwd_train dbeta-only (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, db, dbr, (size_t)c, 1e-4);

  /* forward infer with running statistics */
  tu_fill_f(y, cnt, NAN);
  nn_bn_forward_infer(BN_GEOM(n, c, s), x, g, b, rmean, rvar, y);
  nn_ref_bn_forward_infer(BN_GEOM(n, c, s), xs, gr, br, rmd, rvd, yr);
  snprintf(what, sizeof what, "fwd_infer y (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, y, yr, cnt, 1e-4);

  /* backward infer */
  tu_fill_f(dx, cnt, NAN);
  for (int k = 0; k < c; k++) {
    dg[k] = db[k] = -0.5f;
    dgr[k] = dbr[k] = -0.5;
  }
  nn_bn_backward_infer(BN_GEOM(n, c, s), x, g, rmean, rvar, dy, dx, dg, db);
  nn_ref_bn_backward_infer(BN_GEOM(n, c, s), xs, gr, rmd, rvd, dyd, dxr, dgr, dbr);
  snprintf(what, sizeof what, "bwd_infer dx (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dx, dxr, cnt, 1e-4);
  snprintf(what, sizeof what, "bwd_infer dgamma (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dg, dgr, (size_t)c, 1e-4);
  snprintf(what, sizeof what, "bwd_infer dbeta (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, db, dbr, (size_t)c, 1e-4);
  tu_fill_f(dx, cnt, NAN);
  nn_bn_backward_infer(BN_GEOM(n, c, s), x, g, rmean, rvar, dy, dx, NULL, NULL);
  snprintf(what, sizeof what, "bwd_infer dx-only (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dx, dxr, cnt, 1e-4);
  for (int k = 0; k < c; k++) dg[k] = db[k] = -0.5f;
  nn_bn_backward_infer(BN_GEOM(n, c, s), x, g, rmean, rvar, dy, NULL, dg, db);
  snprintf(what, sizeof what, "bwd_infer dgamma-only (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, dg, dgr, (size_t)c, 1e-4);
  snprintf(what, sizeof what, "bwd_infer dbeta-only (%d,%d,%d %s)", n, c, s, tag);
  fx_assert_rel_fd(what, db, dbr, (size_t)c, 1e-4);

  free(x), free(dy), free(y), free(dx), free(xs), free(dyd), free(yr), free(dxr);
}

static void test_optimized_vs_reference(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 11);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    check_vs_ref(&shapes[i], 1, &r);
    check_vs_ref(&shapes[i], 0, &r);
  }
}

/* ---- finite differences on the reference twins --------------------------------------------
 * L = sum(w .* y); the twins' backward with dy = w must be dL/dx, dL/dgamma, dL/dbeta. */

typedef struct {
  int n, c, s, train;
  const double *x, *gamma, *beta, *mean, *var, *w;
  double *y;
} fd_ctx;

static double fd_loss(const void *ctx) {
  const fd_ctx *f = ctx;
  if (f->train)
    nn_ref_bn_forward_train(BN_GEOM(f->n, f->c, f->s), f->x, f->gamma, f->beta, f->y, NULL, NULL);
  else
    nn_ref_bn_forward_infer(BN_GEOM(f->n, f->c, f->s), f->x, f->gamma, f->beta, f->mean, f->var, f->y);
  size_t cnt = (size_t)f->n * f->c * f->s;
  double l = 0;
  for (size_t i = 0; i < cnt; i++) l += f->w[i] * f->y[i];
  return l;
}

static void fd_check(const char *what, fd_ctx *f, double *v, size_t len, const double *an) {
  tu_fd_check(what, fd_loss, f, v, len, an, 1e-5, 1e-6);
}

static void fd_case(int n, int c, int s, int train, nn_rng *r) {
  size_t cnt = (size_t)n * c * s;
  double *x = tu_dbuf(cnt), *w = tu_dbuf(cnt), *y = tu_dbuf(cnt), *dx = tu_dbuf(cnt);
  double gamma[8], beta[8], mean[8], var[8], dg[8], db[8];
  float *xf = tu_fbuf(cnt);
  char what[96];
  assert_true(c <= 8);
  fill_bn_input(r, xf, n, c, s, 0);
  tu_to_double(xf, x, cnt);
  for (size_t i = 0; i < cnt; i++) w[i] = nn_rng_normal(r);
  for (int k = 0; k < c; k++) {
    gamma[k] = 0.5 + nn_rng_uniform(r);
    beta[k] = nn_rng_normal(r);
    mean[k] = nn_rng_normal(r);
    var[k] = 0.2 + nn_rng_uniform(r);
    dg[k] = db[k] = 0;
  }
  fd_ctx f = {n, c, s, train, x, gamma, beta, mean, var, w, y};
  if (train)
    nn_ref_bn_backward_train(BN_GEOM(n, c, s), x, gamma, w, dx, dg, db);
  else
    nn_ref_bn_backward_infer(BN_GEOM(n, c, s), x, gamma, mean, var, w, dx, dg, db);
  const char *kind = train ? "ref backward_train" : "ref backward_infer";
  snprintf(what, sizeof what, "%s dx (%d,%d,%d)", kind, n, c, s);
  fd_check(what, &f, x, cnt, dx);
  snprintf(what, sizeof what, "%s dgamma (%d,%d,%d)", kind, n, c, s);
  fd_check(what, &f, gamma, (size_t)c, dg);
  snprintf(what, sizeof what, "%s dbeta (%d,%d,%d)", kind, n, c, s);
  fd_check(what, &f, beta, (size_t)c, db);
  free(x), free(w), free(y), free(dx), free(xf);
}

static void test_reference_finite_differences(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 22);
  for (int train = 0; train <= 1; train++) {
    fd_case(6, 3, 1, train, &r);
    fd_case(3, 2, 7, train, &r);
    fd_case(2, 4, 5, train, &r);
  }
}

/* ---- hard numerics --------------------------------------------------------------------------- */

/* 1e4 + 1e-2 N(0,1): the naive E[x^2] - E[x]^2 in float (or even double without a shift
 * on larger batches) loses the variance entirely. Checked on both code paths (S = 1, S > 1). */
static void test_large_mean_small_spread(void **state) {
  (void)state;
  static const shape3 sh[] = {{16, 4, 64}, {2048, 3, 1}, {512, 20, 1}};
  nn_rng r;
  nn_rng_seed(&r, 33);
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int n = sh[t].n, c = sh[t].c, s = sh[t].s;
    const size_t cnt = (size_t)n * c * s;
    float *x = tu_fbuf(cnt), *y = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *dx = tu_fbuf(cnt);
    double *xd = tu_dbuf(cnt), *yr = tu_dbuf(cnt), *dyd = tu_dbuf(cnt), *dxr = tu_dbuf(cnt);
    float mean[32], var[32], invstd[32];
    double mr[32], vr[32];
    tu_fill_normal(&r, x, cnt, 1e-2, 1e4);
    tu_fill_normal(&r, dy, cnt, 1.0, 0.0);
    tu_to_double(x, xd, cnt);
    tu_to_double(dy, dyd, cnt);
    nn_bn_forward_train(BN_GEOM(n, c, s), x, NULL, NULL, y, mean, var, invstd);
    nn_ref_bn_forward_train(BN_GEOM(n, c, s), xd, NULL, NULL, yr, mr, vr);
    fx_assert_all_finite("large-mean y", y, cnt);
    for (int k = 0; k < c; k++) assert_true(vr[k] > 5e-5 && vr[k] < 2e-4); /* the data is what we think */
    fx_assert_close_fd("large-mean var", var, vr, (size_t)c, 1e-5, 0);
    fx_assert_close_fd("large-mean mean", mean, mr, (size_t)c, 1e-7, 0);
    fx_assert_close_fd("large-mean y", y, yr, cnt, 1e-4, 1e-4);
    nn_bn_backward_train(BN_GEOM(n, c, s), x, NULL, mean, invstd, dy, dx, NULL, NULL);
    nn_ref_bn_backward_train(BN_GEOM(n, c, s), xd, NULL, dyd, dxr, NULL, NULL);
    fx_assert_rel_fd("large-mean dx", dx, dxr, cnt, 1e-4);
    free(x), free(y), free(dy), free(dx), free(xd), free(yr), free(dyd), free(dxr);
  }
}

/* A constant channel: var exactly 0, mean exact, y == beta, everything finite. */
static void test_constant_channel(void **state) {
  (void)state;
  static const shape3 sh[] = {{8, 3, 10}, {32, 20, 1}, {5, 17, 1}};
  nn_rng r;
  nn_rng_seed(&r, 44);
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int n = sh[t].n, c = sh[t].c, s = sh[t].s;
    const size_t cnt = (size_t)n * c * s;
    float *x = tu_fbuf(cnt), *y = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *dx = tu_fbuf(cnt);
    double *xd = tu_dbuf(cnt), *dyd = tu_dbuf(cnt), *dxr = tu_dbuf(cnt);
    float gamma[32], beta[32], mean[32], var[32], invstd[32], dg[32] = {0}, db[32] = {0};
    double gd[32];
    fill_bn_input(&r, x, n, c, s, 1);
    tu_fill_normal(&r, dy, cnt, 1.0, 0.0);
    const int consts[2] = {1, c - 1}; /* constant channels (c - 1: the last, partial block) */
    for (int q = 0; q < 2; q++)
      for (int i = 0; i < n; i++)
        for (int j = 0; j < s; j++) x[((size_t)i * c + consts[q]) * s + j] = q ? -0.1f : 7.3f;
    for (int k = 0; k < c; k++) {
      gamma[k] = 0.5f + nn_rng_uniform(&r);
      beta[k] = (float)nn_rng_normal(&r);
    }
    nn_bn_forward_train(BN_GEOM(n, c, s), x, gamma, beta, y, mean, var, invstd);
    fx_assert_all_finite("const y", y, cnt);
    for (int k = 0; k < c; k++) assert_true(var[k] >= 0.0f);
    for (int q = 0; q < 2; q++) {
      const int cc = consts[q];
      assert_true(var[cc] == 0.0f);
      assert_true(mean[cc] == (q ? -0.1f : 7.3f));
      assert_true(fabs(invstd[cc] - 1.0 / sqrt((double)EPS)) < 1e-6 / sqrt((double)EPS));
      for (int i = 0; i < n; i++)
        for (int j = 0; j < s; j++) assert_true(y[((size_t)i * c + cc) * s + j] == beta[cc]);
    }
    nn_bn_backward_train(BN_GEOM(n, c, s), x, gamma, mean, invstd, dy, dx, dg, db);
    fx_assert_all_finite("const dx", dx, cnt);
    tu_to_double(x, xd, cnt);
    tu_to_double(dy, dyd, cnt);
    tu_to_double(gamma, gd, (size_t)c);
    nn_ref_bn_backward_train(BN_GEOM(n, c, s), xd, gd, dyd, dxr, NULL, NULL);
    fx_assert_rel_fd("const dx", dx, dxr, cnt, 1e-4);
    for (int q = 0; q < 2; q++) assert_true(fabs((double)dg[consts[q]]) < 1e-6); /* xhat = 0 there */
    free(x), free(y), free(dy), free(dx), free(xd), free(dyd), free(dxr);
  }
}

/* A sample group's 32 lanes folded as the kernel folds them: the four 8-lane units added
 * lane-wise, (u0 + u1) + (u2 + u3), then ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)). */
static double tree32(const double *l) {
  double v[8];
  for (int i = 0; i < 8; i++) v[i] = (l[i] + l[8 + i]) + (l[16 + i] + l[24 + i]);
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* The order contract of batchnorm.c and norm_core.h, bit for bit: for S > 1 the samples are
 * cut into min(N, 4) groups, group k = samples [k*N/G, (k+1)*N/G); in each, the sums over a
 * channel run in 32 double lanes, lane l adding the (x - K) etc. at positions j % 32 == l of
 * every plane in sample order, the lanes then folded in a tree (tree32); the groups' sums are
 * added in group order. Written here as the plain loop, on planes
 * shorter than a chunk, of a partial last chunk, and longer than a reduction group, batches
 * of fewer samples than groups and of groups of unequal sizes, of values
 * whose magnitudes span 2^40 (the double sums round, so any other order shows in their bits):
 * the phase kernels' double sums (forward around the channel's first value, backward around
 * the float mean), and what the one-shot kernels make of the same sums (the statistics as
 * nc_finish and bn_fwd_consts say; dbeta the float of sum(dy); dgamma that of (sum(dy*(x-K)) -
 * (sum(x-K)/m) sum(dy)) * invstd with a gradient that is mostly one constant, so that it is the
 * rounding residue of the two terms and follows their order). A change of the lanes' order,
 * which every tolerance test would pass, fails here. */
static void test_lane_order(void **state) {
  (void)state;
  /* the last two large enough for threads: each shape runs at one thread and at two */
  static const shape3 sh[] = {{5, 3, 20}, {7, 2, 121}, {4, 3, 64}, {3, 2, 676}, {2, 2, 2100}, {13, 2, 121}, {10, 3, 64}, {10, 2, 1000}, {128, 2, 64}};
  const int saved = omp_get_max_threads();
  nn_rng r;
  nn_rng_seed(&r, 77);
  for (size_t t = 0; t < 2 * (sizeof sh / sizeof sh[0]); t++) {
    const int n = sh[t / 2].n, c = sh[t / 2].c, s = sh[t / 2].s;
    omp_set_num_threads(1 + (int)(t % 2));
    const size_t cnt = (size_t)n * c * s;
    const double m = (double)n * s;
    float *x = tu_fbuf(cnt), *y = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *dx = tu_fbuf(cnt);
    float shift[4], mean[4], var[4], invstd[4], dg[4] = {0}, db[4] = {0};
    double p1[4], p2[4], pd[4], pe[4], ped[4];
    for (size_t k = 0; k < cnt; k++) {
      x[k] = (float)ldexp(nn_rng_uniform(&r) - 0.5, (int)nn_rng_below(&r, 41) - 20);
      dy[k] = k % 97 ? 0.7f : (float)ldexp(nn_rng_uniform(&r) - 0.5, (int)nn_rng_below(&r, 41) - 20);
    }
    nn_bn_forward_train(BN_GEOM(n, c, s), x, NULL, NULL, y, mean, var, invstd);
    nn_bn_backward_train(BN_GEOM(n, c, s), x, NULL, mean, invstd, dy, dx, dg, db);
    nn_bn_shift(BN_GEOM(n, c, s), x, shift);
    nn_bn_moments(BN_GEOM(n, c, s), x, shift, p1, p2);
    nn_bn_backward_sums(BN_GEOM(n, c, s), x, dy, mean, pd, pe, ped);
    const int groups = n < 4 ? n : 4;
    for (int ch = 0; ch < c; ch++) {
      const double K = x[(size_t)ch * s], Kb = mean[ch];
      assert_true(shift[ch] == x[(size_t)ch * s]);
      double s1 = 0, s2 = 0, sd = 0, se = 0, sed = 0;
      for (int k = 0; k < groups; k++) {
        double l1[32] = {0}, l2[32] = {0}, ld[32] = {0}, le[32] = {0}, led[32] = {0};
        for (int i = k * n / groups; i < (k + 1) * n / groups; i++)
          for (int j = 0; j < s; j++) {
            const size_t at = ((size_t)i * c + ch) * s + j;
            const double d = (double)x[at] - K, db_ = (double)x[at] - Kb, e = dy[at];
            l1[j % 32] += d;
            l2[j % 32] += d * d;
            ld[j % 32] += db_;
            le[j % 32] += e;
            led[j % 32] += e * db_;
          }
        const double g1 = tree32(l1), g2 = tree32(l2), gd = tree32(ld), ge = tree32(le), ged = tree32(led);
        if (k == 0)
          s1 = g1, s2 = g2, sd = gd, se = ge, sed = ged;
        else
          s1 += g1, s2 += g2, sd += gd, se += ge, sed += ged;
      }
      if (memcmp(&p1[ch], &s1, sizeof s1) || memcmp(&p2[ch], &s2, sizeof s2) || memcmp(&pd[ch], &sd, sizeof sd) ||
          memcmp(&pe[ch], &se, sizeof se) || memcmp(&ped[ch], &sed, sizeof sed))
        fail_msg("%dx%dx%d at %d threads, channel %d, sums (kernel/lanes): %a/%a %a/%a; backward %a/%a %a/%a %a/%a", n, c, s,
                 omp_get_max_threads(), ch, p1[ch], s1, p2[ch], s2, pd[ch], sd, pe[ch], se, ped[ch], sed);
      const double off = s1 / m;
      double v = s2 / m - off * off;
      if (v < 0) v = 0;
      const float want_mean = (float)(K + off), want_var = (float)v, want_invstd = (float)(1.0 / sqrt(v + (double)EPS));
      const float want_db = (float)se, want_dg = (float)((sed - sd / m * se) * (double)invstd[ch]);
      if (memcmp(&mean[ch], &want_mean, sizeof(float)) || memcmp(&var[ch], &want_var, sizeof(float)) ||
          memcmp(&invstd[ch], &want_invstd, sizeof(float)) || memcmp(&db[ch], &want_db, sizeof(float)) ||
          memcmp(&dg[ch], &want_dg, sizeof(float)))
        fail_msg("%dx%dx%d channel %d: mean %a/%a var %a/%a invstd %a/%a dbeta %a/%a dgamma %a/%a (kernel/lanes)", n, c,
                 s, ch, mean[ch], want_mean, var[ch], want_var, invstd[ch], want_invstd, db[ch], want_db, dg[ch], want_dg);
    }
    free(x), free(y), free(dy), free(dx);
  }
  omp_set_num_threads(saved);
}

static void test_running_update(void **state) {
  (void)state;
  enum { C = 5 };
  const float rm0[C] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, rv0[C] = {1.0f, 0.25f, 2.0f, 4.0f, 0.5f};
  const float mean[C] = {1.5f, 0.25f, -2.0f, 0.125f, 3.5f}, var[C] = {0.5f, 2.0f, 1.25f, 0.0f, 8.0f};
  float rm[C], rv[C];
  const long m = 10;
  for (int unb = 0; unb <= 1; unb++)
    for (int t = 0; t < 2; t++) {
      const double mom = t ? 1.0 : 0.1; /* 1.0 = first step of the cumulative average */
      memcpy(rm, rm0, sizeof rm);
      memcpy(rv, rv0, sizeof rv);
      assert_int_equal(1, nn_bn_running_update(rm, rv, mean, var, C, m, mom, unb));
      double wm[C], wv[C];
      for (int k = 0; k < C; k++) {
        wm[k] = (1 - mom) * rm0[k] + mom * mean[k];
        wv[k] = (1 - mom) * rv0[k] + mom * var[k] * (unb ? (double)m / (m - 1) : 1.0);
      }
      fx_assert_close_fd("running mean", rm, wm, C, 1e-7, 1e-7);
      fx_assert_close_fd("running var", rv, wv, C, 1e-7, 1e-7);
    }
  /* non-finite batch statistics: refused, running stats untouched bitwise */
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int b = 0; b < 3; b++)
    for (int which = 0; which < 2; which++)
      for (int pos = 0; pos < C; pos += C - 1) {
        float mb[C], vb[C];
        memcpy(mb, mean, sizeof mb);
        memcpy(vb, var, sizeof vb);
        (which ? vb : mb)[pos] = bad[b];
        memcpy(rm, rm0, sizeof rm);
        memcpy(rv, rv0, sizeof rv);
        assert_int_equal(0, nn_bn_running_update(rm, rv, mb, vb, C, m, 0.1, 1));
        assert_memory_equal(rm, rm0, sizeof rm);
        assert_memory_equal(rv, rv0, sizeof rv);
      }
  /* m = 1: the unbiased variance is not finite -> refused; the biased (Keras) one is fine */
  memcpy(rm, rm0, sizeof rm);
  memcpy(rv, rv0, sizeof rv);
  assert_int_equal(0, nn_bn_running_update(rm, rv, mean, var, C, 1, 0.1, 1));
  assert_memory_equal(rm, rm0, sizeof rm);
  assert_memory_equal(rv, rv0, sizeof rv);
  assert_int_equal(1, nn_bn_running_update(rm, rv, mean, var, C, 1, 0.5, 0));
  for (int k = 0; k < C; k++) assert_true(rv[k] == (float)(0.5 * rv0[k] + 0.5 * var[k]));
  /* a NaN batch from the forward kernel itself (NaN input) is refused too */
  float x[4 * C], y[4 * C], bm[C], bv[C], bi[C];
  for (int i = 0; i < 4 * C; i++) x[i] = (float)i;
  x[2 * C + 3] = NAN;
  nn_bn_forward_train(BN_GEOM(4, C, 1), x, NULL, NULL, y, bm, bv, bi);
  assert_true(isnan(bm[3]) || isnan(bv[3]));
  memcpy(rm, rm0, sizeof rm);
  memcpy(rv, rv0, sizeof rv);
  assert_int_equal(0, nn_bn_running_update(rm, rv, bm, bv, C, 4, 0.1, 1));
  assert_memory_equal(rm, rm0, sizeof rm);
  assert_memory_equal(rv, rv0, sizeof rv);
}

/* ---- phases (synchronized BN) ----------------------------------------------------------------
 * (1) The phases with the local count give the one-shot kernels' outputs bit for bit.
 * (2) A batch split over two simulated processes (shared shift, summed moments and backward
 *     sums) gives the statistics and gradients of the whole batch: both "processes" get the
 *     same mean/var/invstd and parameter gradients, and y, dx match the reference twin. */

typedef struct {
  float mean[MAXC], var[MAXC], invstd[MAXC], dg[MAXC], db[MAXC];
} bn_stats;

static void test_phases(void **state) {
  (void)state;
  static const shape3 sh[] = {{64, 6, 49}, {33, 19, 1}, {40, 300, 1}, {5, 7, 33}, {9, 2, 65}};
  nn_rng r;
  nn_rng_seed(&r, 77);
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int n = sh[t].n, c = sh[t].c, s = sh[t].s;
    const size_t cnt = (size_t)n * c * s, cs = (size_t)c * s;
    const double m = (double)n * s;
    float *x = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *y1 = tu_fbuf(cnt), *y2 = tu_fbuf(cnt), *dx1 = tu_fbuf(cnt), *dx2 = tu_fbuf(cnt);
    float gamma[MAXC], beta[MAXC], shift[MAXC];
    double s1[MAXC], s2[MAXC], sd[MAXC], sdy[MAXC], sdyd[MAXC];
    double t1[MAXC], t2[MAXC], td[MAXC], tdy[MAXC], tdyd[MAXC];
    bn_stats one, ph, part[2];
    memset(&one, 0, sizeof one), memset(&ph, 0, sizeof ph), memset(part, 0, sizeof part);
    fill_bn_input(&r, x, n, c, s, 1);
    tu_fill_normal(&r, dy, cnt, 1.0, 0.2);
    for (int k = 0; k < c; k++) gamma[k] = 0.5f + nn_rng_uniform(&r), beta[k] = (float)nn_rng_normal(&r);
    const nn_norm_geom *g = BN_GEOM(n, c, s);

    /* (1) bitwise against one-shot */
    nn_bn_forward_train(g, x, gamma, beta, y1, one.mean, one.var, one.invstd);
    nn_bn_backward_train(g, x, gamma, one.mean, one.invstd, dy, dx1, one.dg, one.db);
    nn_bn_shift(g, x, shift);
    nn_bn_moments(g, x, shift, s1, s2);
    nn_bn_forward_apply(g, x, gamma, beta, shift, s1, s2, m, y2, ph.mean, ph.var, ph.invstd);
    nn_bn_backward_sums(g, x, dy, ph.mean, sd, sdy, sdyd);
    nn_bn_backward_apply(g, x, gamma, ph.mean, ph.invstd, dy, sd, sdy, sdyd, m, dx2, ph.dg, ph.db);
    assert_memory_equal(y1, y2, cnt * sizeof(float));
    assert_memory_equal(dx1, dx2, cnt * sizeof(float));
    assert_memory_equal(&one, &ph, sizeof one);

    /* (2) two processes: samples [0, n0) and [n0, n) */
    const int n0 = n / 3 > 0 ? n / 3 : 1, np[2] = {n0, n - n0};
    const float *xp[2] = {x, x + (size_t)n0 * cs}, *dyp[2] = {dy, dy + (size_t)n0 * cs};
    float *yp[2] = {y2, y2 + (size_t)n0 * cs}, *dxp[2] = {dx2, dx2 + (size_t)n0 * cs};
    nn_bn_shift(BN_GEOM(np[0], c, s), xp[0], shift); /* "broadcast from rank 0" */
    for (int k = 0; k < c; k++) t1[k] = t2[k] = td[k] = tdy[k] = tdyd[k] = 0;
    for (int p = 0; p < 2; p++) {
      nn_bn_moments(BN_GEOM(np[p], c, s), xp[p], shift, s1, s2);
      for (int k = 0; k < c; k++) t1[k] += s1[k], t2[k] += s2[k]; /* all-reduce */
    }
    for (int p = 0; p < 2; p++)
      nn_bn_forward_apply(BN_GEOM(np[p], c, s), xp[p], gamma, beta, shift, t1, t2, m, yp[p], part[p].mean,
                          part[p].var, part[p].invstd);
    for (int p = 0; p < 2; p++) {
      nn_bn_backward_sums(BN_GEOM(np[p], c, s), xp[p], dyp[p], part[p].mean, sd, sdy, sdyd);
      for (int k = 0; k < c; k++) td[k] += sd[k], tdy[k] += sdy[k], tdyd[k] += sdyd[k];
    }
    for (int p = 0; p < 2; p++)
      nn_bn_backward_apply(BN_GEOM(np[p], c, s), xp[p], gamma, part[p].mean, part[p].invstd, dyp[p], td, tdy, tdyd,
                           m, dxp[p], part[p].dg, part[p].db);
    assert_memory_equal(&part[0], &part[1], sizeof part[0]);

    double *xd = tu_dbuf(cnt), *dyd = tu_dbuf(cnt), *yr = tu_dbuf(cnt), *dxr = tu_dbuf(cnt);
    double gd[MAXC], bd[MAXC], mr[MAXC], vr[MAXC], dgr[MAXC], dbr[MAXC];
    tu_to_double(x, xd, cnt);
    tu_to_double(dy, dyd, cnt);
    tu_to_double(gamma, gd, (size_t)c);
    tu_to_double(beta, bd, (size_t)c);
    for (int k = 0; k < c; k++) dgr[k] = dbr[k] = 0;
    nn_ref_bn_forward_train(g, xd, gd, bd, yr, mr, vr);
    nn_ref_bn_backward_train(g, xd, gd, dyd, dxr, dgr, dbr);
    char what[96];
    snprintf(what, sizeof what, "split y (%d,%d,%d)", n, c, s);
    fx_assert_rel_fd(what, y2, yr, cnt, 1e-4);
    snprintf(what, sizeof what, "split mean (%d,%d,%d)", n, c, s);
    fx_assert_rel_fd(what, part[0].mean, mr, (size_t)c, 1e-4);
    snprintf(what, sizeof what, "split var (%d,%d,%d)", n, c, s);
    fx_assert_close_fd(what, part[0].var, vr, (size_t)c, 1e-4, 0);
    snprintf(what, sizeof what, "split dx (%d,%d,%d)", n, c, s);
    fx_assert_rel_fd(what, dx2, dxr, cnt, 1e-4);
    snprintf(what, sizeof what, "split dgamma (%d,%d,%d)", n, c, s);
    fx_assert_rel_fd(what, part[0].dg, dgr, (size_t)c, 1e-4);
    snprintf(what, sizeof what, "split dbeta (%d,%d,%d)", n, c, s);
    fx_assert_rel_fd(what, part[0].db, dbr, (size_t)c, 1e-4);
    free(xd), free(dyd), free(yr), free(dxr);
    free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2);
  }
}

/* ---- BN + activation fusion ---------------------------------------------------------------
 * The fused kernels against BN then the activation kernel (forward) and the activation's
 * backward then BN's (backward): bitwise, every activation, S = 1 and S > 1 (incl. planes
 * longer than one fused block, and more planes than one group of the reductions holds),
 * parameter gradients with and without dx, and dx in place of dz (the fused backward keeps
 * dz*act'(z) in dx between its two passes). */

static void act_forward(nn_act act, const float *x, float *y, size_t cnt) {
  if (act == NN_ACT_RELU) nn_relu_forward(x, y, cnt);
  if (act == NN_ACT_SIGMOID) nn_sigmoid_forward(x, y, cnt);
  if (act == NN_ACT_TANH) nn_tanh_forward(x, y, cnt);
}

static void act_backward(nn_act act, const float *y, const float *dy, float *dx, size_t cnt) {
  if (act == NN_ACT_RELU) nn_relu_backward(y, dy, dx, cnt);
  if (act == NN_ACT_SIGMOID) nn_sigmoid_backward(y, dy, dx, cnt);
  if (act == NN_ACT_TANH) nn_tanh_backward(y, dy, dx, cnt);
}

static void test_fused_activation(void **state) {
  (void)state;
  static const shape3 sh[] = {{32, 6, 49}, {33, 19, 1}, {64, 300, 1}, {3, 2, 1500}, {5, 7, 33}, {40, 3, 121}};
  nn_rng r;
  nn_rng_seed(&r, 91);
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int n = sh[t].n, c = sh[t].c, s = sh[t].s;
    const size_t cnt = (size_t)n * c * s;
    const nn_norm_geom *g = BN_GEOM(n, c, s);
    float *x = tu_fbuf(cnt), *dz = tu_fbuf(cnt), *y = tu_fbuf(cnt), *z1 = tu_fbuf(cnt), *z2 = tu_fbuf(cnt), *dy = tu_fbuf(cnt);
    float *dx1 = tu_fbuf(cnt), *dx2 = tu_fbuf(cnt), gamma[MAXC], beta[MAXC];
    bn_stats a, b;
    fill_bn_input(&r, x, n, c, s, 0);
    tu_fill_normal(&r, dz, cnt, 1.0, 0.1);
    for (int k = 0; k < c; k++) gamma[k] = 0.5f + nn_rng_uniform(&r), beta[k] = (float)nn_rng_normal(&r);
    for (int act = NN_ACT_RELU; act <= NN_ACT_TANH; act++) {
      memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
      nn_bn_forward_train(g, x, gamma, beta, y, a.mean, a.var, a.invstd);
      act_forward((nn_act)act, y, z1, cnt);
      act_backward((nn_act)act, z1, dz, dy, cnt);
      nn_bn_backward_train(g, x, gamma, a.mean, a.invstd, dy, dx1, a.dg, a.db);
      nn_bn_forward_train_act(g, (nn_act)act, x, gamma, beta, z2, b.mean, b.var, b.invstd);
      nn_bn_backward_train_act(g, (nn_act)act, x, gamma, b.mean, b.invstd, z2, dz, dx2, b.dg, b.db);
      assert_memory_equal(z1, z2, cnt * sizeof(float));
      assert_memory_equal(dx1, dx2, cnt * sizeof(float));
      assert_memory_equal(&a, &b, sizeof a);
      memset(b.dg, 0, sizeof b.dg), memset(b.db, 0, sizeof b.db);
      nn_bn_backward_train_act(g, (nn_act)act, x, gamma, b.mean, b.invstd, z2, dz, NULL, b.dg, b.db);
      assert_memory_equal(&a, &b, sizeof a);
      memset(b.dg, 0, sizeof b.dg), memset(b.db, 0, sizeof b.db);
      memcpy(dx2, dz, cnt * sizeof(float));
      nn_bn_backward_train_act(g, (nn_act)act, x, gamma, b.mean, b.invstd, z2, dx2, dx2, b.dg, b.db);
      assert_memory_equal(dx1, dx2, cnt * sizeof(float));
      assert_memory_equal(&a, &b, sizeof a);
      /* inference with the batch's statistics as running ones: fused = BN then act */
      nn_bn_forward_infer(g, x, gamma, beta, a.mean, a.var, y);
      act_forward((nn_act)act, y, z1, cnt);
      nn_bn_forward_infer_act(g, (nn_act)act, x, gamma, beta, a.mean, a.var, z2);
      assert_memory_equal(z1, z2, cnt * sizeof(float));
    }
    free(x), free(dz), free(y), free(z1), free(z2), free(dy), free(dx1), free(dx2);
  }
}

/* A model whose BNs the forward fuses with relu, tanh and sigmoid (and one it cannot fuse):
 * a training step gives the logits, gradients and running statistics of the same model run
 * layer by layer, unfused, bit for bit; in eval, the lean forward (BN and conv fused with
 * their activations) gives the plain forward's logits bit for bit. */
/* nn_model_set_timing: off by default; on, every layer that ran has time and the layers fused
 * into the one before them read 0 (in the forward and the backward), the forward's layer
 * times fit inside its wall time, off keeps the counters, on again zeroes them. */
static void test_layer_timing(void **state) {
  (void)state;
  nn_model *m = tu_model(
      "input shape=3x16x16\n"
      "conv2d filters=16 kernel=3\nrelu\n"
      "conv2d filters=16 kernel=3\nbatchnorm\nrelu\n"
      "flatten\ndense units=10\n",
      3);
  nn_error err = {0};
  nn_rng r;
  nn_rng_seed(&r, 4);
  const int n = 8, in = nn_model_input_size(m), nl = nn_model_num_layers(m);
  float *x = tu_fbuf((size_t)n * in);
  int32_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  tu_fill_normal(&r, x, (size_t)n * in, 0.0, 1.0);
  double f, b;
  if (nn_model_forward(m, x, labels, n, NN_MODE_TRAIN, NULL, NULL, NULL, &err) || nn_model_backward(m, &err))
    fail_msg("%s", err.msg);
  for (int i = 0; i < nl; i++) {
    nn_model_layer_time(m, i, &f, &b);
    assert_true(f == 0.0 && b == 0.0); /* off by default */
  }
  nn_model_set_timing(m, 1);
  double wall = 0.0;
  for (int s = 0; s < 3; s++) {
    const double t0 = nn_now();
    if (nn_model_forward(m, x, labels, n, NN_MODE_TRAIN, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
    wall += nn_now() - t0;
    if (nn_model_backward(m, &err)) fail_msg("%s", err.msg);
  }
  double sum = 0.0;
  for (int i = 0; i < nl; i++) {
    nn_model_layer_time(m, i, &f, &b);
    const int fused = i == 1 || i == 4; /* relu after conv2d, relu after batchnorm: fused in training */
    if (fused)
      assert_true(f == 0.0 && b == 0.0);
    else if (!(f > 0.0 && b > 0.0))
      fail_msg("layer %d ran but has forward %g s, backward %g s", i, f, b);
    sum += f;
  }
  if (sum > wall) fail_msg("the layers' forward times (%g s) exceed the forwards' wall time (%g s)", sum, wall);
  double f0, b0;
  nn_model_layer_time(m, 0, &f0, &b0);
  nn_model_set_timing(m, 0); /* off: the counters stay and stop */
  if (nn_model_forward(m, x, labels, n, NN_MODE_TRAIN, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
  nn_model_layer_time(m, 0, &f, &b);
  assert_true(f == f0 && b == b0);
  nn_model_layer_time(m, nl, &f, &b); /* out of range: zeros; NULL pointers allowed */
  assert_true(f == 0.0 && b == 0.0);
  nn_model_layer_time(m, 0, NULL, NULL);
  nn_model_set_timing(m, 1); /* on again: zeroed */
  nn_model_layer_time(m, 0, &f, &b);
  assert_true(f == 0.0 && b == 0.0);
  free(x);
  nn_model_free(m);
}

/* A training step of `fused` (the model's forward and backward, fusing what they fuse) and of
 * u, the same model run layer by layer with every layer's own forward and backward: the
 * logits, gradients and running statistics bit for bit. Returns fused's logits. */
static const float *step_vs_unfused(nn_model *fused, nn_model *u, const float *x, const int32_t *labels, int n) {
  nn_error err = {0};
  const int in = nn_model_input_size(u), k = nn_model_output_size(u), nl = u->nlayers;
  const float *logits = NULL;
  if (nn_model_forward(fused, x, labels, n, NN_MODE_TRAIN, NULL, NULL, &logits, &err) || nn_model_backward(fused, &err))
    fail_msg("%s", err.msg);
  if (nn_model_plan(u, n, &err)) fail_msg("%s", err.msg);
  memcpy(u->act[0], x, (size_t)n * in * sizeof *x);
  for (int i = 0; i < nl; i++)
    if (nn_layer_table[u->layers[i].kind]->forward(&u->layers[i], u->act[i], u->act[i + 1], n, NN_MODE_TRAIN, &err))
      fail_msg("%s", err.msg);
  nn_softmax_xent_forward(u->act[nl], labels, u->probs, n, k);
  nn_softmax_xent_backward(u->probs, labels, u->dact[nl], n, k, 1.0f / (float)n);
  for (int i = nl - 1; i >= 0; i--)
    nn_layer_table[u->layers[i].kind]->backward(&u->layers[i], u->act[i], u->act[i + 1], u->dact[i + 1],
                                                i ? u->dact[i] : NULL, n, NN_MODE_TRAIN);
  assert_memory_equal(logits, u->act[nl], (size_t)n * k * sizeof(float));
  assert_memory_equal(nn_model_grads(fused), nn_model_grads(u), nn_model_param_count(u) * sizeof(float));
  assert_memory_equal(nn_model_state(fused), nn_model_state(u), nn_model_state_count(u) * sizeof(float));
  return logits;
}

/* step_vs_unfused on n random inputs (tu_fill_normal's scale and offset) and labels below
 * `classes`, with fused's layer timing on (for the caller's checks of which layers ran inside
 * others). */
static void random_step_vs_unfused(nn_model *fused, nn_model *u, nn_rng *r, int n, int classes, double scale,
                                   double off) {
  const int in = nn_model_input_size(u);
  float *x = tu_fbuf((size_t)n * in);
  int32_t *labels = malloc((size_t)n * sizeof *labels);
  assert_non_null(labels);
  tu_fill_normal(r, x, (size_t)n * in, scale, off);
  for (int i = 0; i < n; i++) labels[i] = (int32_t)nn_rng_below(r, (uint32_t)classes);
  nn_model_set_timing(fused, 1);
  step_vs_unfused(fused, u, x, labels, n);
  free(x), free(labels);
}

static void test_model_fusion(void **state) {
  (void)state;
  const char *text =
      "input shape=3x10x10\n"
      "conv2d filters=8 kernel=3\nbatchnorm\nrelu\n"
      "conv2d filters=4 kernel=3\nbatchnorm affine=0\ntanh\n"
      "batchnorm\nmaxpool2d size=2\nconv2d filters=6 kernel=1\nsigmoid\nflatten\n"
      "dense units=40\nbatchnorm\nsigmoid\n"
      "dense units=12\nrelu\n"
      "dense units=8\nbatchnorm track_running_stats=0\nrelu\n"
      "dense units=5\n";
  nn_error err = {0};
  nn_model *m[2] = {tu_model(text, 5), tu_model(text, 5)};
  const int n = 16, in = nn_model_input_size(m[0]), k = nn_model_output_size(m[0]), nl = m[0]->nlayers;
  nn_rng r;
  nn_rng_seed(&r, 6);
  float *x = tu_fbuf((size_t)n * in);
  int32_t labels[16];
  tu_fill_normal(&r, x, (size_t)n * in, 1.0, 0.5);
  for (int i = 0; i < n; i++) labels[i] = (int32_t)nn_rng_below(&r, (uint32_t)k);
  assert_true(nn_batchnorm_fuses(&m[0]->layers[1], &m[0]->layers[2], NN_MODE_TRAIN));
  assert_true(nn_batchnorm_fuses(&m[0]->layers[1], &m[0]->layers[2], NN_MODE_EVAL));   /* in a lean forward */
  assert_false(nn_batchnorm_fuses(&m[0]->layers[6], &m[0]->layers[7], NN_MODE_TRAIN)); /* BN, maxpool */
  assert_false(nn_batchnorm_fuses(&m[0]->layers[6], &m[0]->layers[7], NN_MODE_EVAL));
  const nn_layer *L = m[0]->layers;
  assert_int_equal(nn_layer_fuses(&L[0], &L[1], &L[2], NN_MODE_TRAIN), 0);   /* BN's backward needs its input */
  assert_int_equal(nn_layer_fuses(&L[0], &L[1], &L[2], NN_MODE_EVAL), 2);    /* conv, BN, relu */
  assert_int_equal(nn_layer_fuses(&L[0], &L[1], &L[3], NN_MODE_EVAL), 1);    /* conv, BN (then a conv) */
  assert_int_equal(nn_layer_fuses(&L[8], &L[9], &L[10], NN_MODE_TRAIN), 1);  /* conv, sigmoid */
  assert_int_equal(nn_layer_fuses(&L[11], &L[12], &L[13], NN_MODE_EVAL), 2); /* dense, BN, sigmoid */
  assert_int_equal(nn_layer_fuses(&L[11], &L[12], &L[13], NN_MODE_TRAIN), 0);
  assert_int_equal(nn_layer_fuses(&L[14], &L[15], &L[16], NN_MODE_EVAL), 1);  /* dense, relu */
  assert_int_equal(nn_layer_fuses(&L[14], &L[15], &L[16], NN_MODE_TRAIN), 0); /* no fused dense backward */
  assert_int_equal(nn_layer_fuses(&L[1], &L[2], &L[3], NN_MODE_EVAL), 0);     /* batchnorm: nn_batchnorm_fuses */
  assert_int_equal(nn_layer_fuses(&L[16], &L[17], &L[18], NN_MODE_EVAL), 0);  /* batch statistics in eval too */
  assert_true(nn_batchnorm_fuses(&L[17], &L[18], NN_MODE_EVAL));

  const float *logits = step_vs_unfused(m[0], m[1], x, labels, n);

  /* eval: the lean forward (fused, the library's evaluation) gives the logits, loss and count
   * of the plain one (every layer on its own, outputs kept) bit for bit; no backward after it */
  double loss[2];
  int right[2];
  float *plain = tu_fbuf((size_t)n * k), *p = nn_model_params(m[0]);
  for (size_t i = 0; i < nn_model_param_count(m[0]); i++) p[i] += 0.25f * (float)nn_rng_normal(&r); /* gamma, beta != 1, 0 */
  if (nn_model_forward(m[0], x, labels, n, NN_MODE_EVAL, &loss[0], &right[0], &logits, &err)) fail_msg("%s", err.msg);
  memcpy(plain, logits, (size_t)n * k * sizeof(float));
  size_t cnt = 0;
  assert_non_null(nn_model_layer_output(m[0], 1, &cnt)); /* BN's own output is kept */
  if (nn_model_forward_lean(m[0], x, labels, n, NN_MODE_EVAL, &loss[1], &right[1], &logits, &err))
    fail_msg("%s", err.msg);
  assert_memory_equal(plain, logits, (size_t)n * k * sizeof(float));
  assert_memory_equal(&loss[0], &loss[1], sizeof loss[0]);
  assert_int_equal(right[0], right[1]);
  /* the lean forward kept only the last output of each fused run: conv+BN+relu, conv+BN+tanh,
   * BN, maxpool, conv+sigmoid, flatten, dense+BN+sigmoid, dense+relu, dense, BN+relu, dense */
  static const int kept[] = {0, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1};
  assert_int_equal(nl, (int)(sizeof kept / sizeof *kept));
  /* an output not kept is NULL (it returned the plain forward's stale values), as is a layer
   * out of range */
  for (int i = -1; i <= nl; i++) {
    cnt = 1;
    const float *y = nn_model_layer_output(m[0], i, &cnt);
    if ((y != NULL) != (i >= 0 && i < nl && kept[i]) || (!y && cnt))
      fail_msg("layer %d: output %p, count %zu", i, (const void *)y, cnt);
  }
  nn_layer_info info;
  nn_model_layer_info(m[0], nl, &info);
  assert_null(info.kind);
  /* a mode that is neither, and no input, are refused (mode 5 ran as eval; x NULL crashed) */
  assert_int_equal(nn_model_forward(m[0], x, NULL, n, (nn_mode)5, NULL, NULL, NULL, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "mode 5"));
  assert_int_equal(nn_model_forward(m[0], NULL, NULL, n, NN_MODE_EVAL, NULL, NULL, NULL, &err), NN_ERR_ARG);
  double mx[sizeof kept / sizeof *kept];
  nn_model_output_maxabs(m[0], mx);
  for (int i = 0; i < nl; i++) assert_int_equal(mx[i] >= 0, kept[i]);
  assert_int_equal(nn_model_backward(m[0], &err), NN_ERR_ARG);
  free(plain);
  free(x);
  nn_model_free(m[0]), nn_model_free(m[1]);
}

/* The fused pool backward kernels' cases: dp, gamma and beta drawn once per shape; x normal
 * (q = 0) or of the four values {-1, 0, 1, 2} (q = 1: ties in most max-pool windows, and z = 0
 * often where relu' is 0); the training forward with act into z and a's statistics, which bs
 * gets too (a's and bs's gradients zeroed), for the unfused and the fused backward. */
static void pool_case_params(nn_rng *r, float *dp, size_t pcnt, float *gamma, float *beta, int c) {
  tu_fill_normal(r, dp, pcnt, 1.0, 0.1);
  for (int k = 0; k < c; k++) gamma[k] = 0.5f + nn_rng_uniform(r), beta[k] = (float)nn_rng_normal(r);
}
static void pool_case_input(nn_rng *r, float *x, int n, int c, int s, int q) {
  fill_bn_input(r, x, n, c, s, 0);
  for (size_t i = 0; q && i < (size_t)n * c * s; i++) x[i] = (float)nn_rng_below(r, 4) - 1.0f;
}
static void pool_case_forward(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                              const float *beta, float *z, bn_stats *a, bn_stats *bs) {
  memset(a, 0, sizeof *a), memset(bs, 0, sizeof *bs);
  nn_bn_forward_train_act(g, act, x, gamma, beta, z, a->mean, a->var, a->invstd);
  memcpy(bs->mean, a->mean, sizeof a->mean), memcpy(bs->var, a->var, sizeof a->var);
  memcpy(bs->invstd, a->invstd, sizeof a->invstd);
}

/* batchnorm + activation + 2x2 average or max pool: in training the backward runs the three
 * from the pool's output gradient (nn_batchnorm_backward_fused_pool) where the pool's input
 * planes have 100 to 1024 values (31x31 and 15x15 here: odd sides, which the pool floors),
 * and pool by pool where not (7x7: too small to gain), bit for bit the layers one by one (the
 * fused max pool's forward writes no argmax, the unfused one's does); the kernel alone against
 * the pool's backward then the fused BN backward, with and without dx, on LeNet's planes, 2x2,
 * 4x6 and odd-sided ones and odd channel counts, on normal inputs and on inputs of four values
 * (ties in most max-pool windows, where the activation's derivative is not 0). */
static void test_pool_fusion(void **state) {
  (void)state;
  const char *text =
      "input shape=2x33x33\n"
      "conv2d filters=3 kernel=3\nbatchnorm\nsigmoid\navgpool2d size=2\n"
      "conv2d filters=4 kernel=1\nbatchnorm\nrelu\nmaxpool2d size=2\n"
      "conv2d filters=3 kernel=1\nbatchnorm\ntanh\nmaxpool2d size=2\n"
      "flatten\ndense units=5\n";
  nn_model *m[2] = {tu_model(text, 8), tu_model(text, 8)};
  const nn_layer *L = m[0]->layers;
  assert_true(nn_batchnorm_pool_fuses(&L[1], &L[2], &L[3], NN_MODE_TRAIN));
  assert_false(nn_batchnorm_pool_fuses(&L[1], &L[2], &L[3], NN_MODE_EVAL));    /* no backward */
  assert_true(nn_batchnorm_pool_fuses(&L[5], &L[6], &L[7], NN_MODE_TRAIN));    /* max pool */
  assert_false(nn_batchnorm_pool_fuses(&L[9], &L[10], &L[11], NN_MODE_TRAIN)); /* 7x7 planes */
  nn_rng r;
  nn_rng_seed(&r, 9);
  random_step_vs_unfused(m[0], m[1], &r, 12, 5, 1.0, 0.5);
  double f, b;
  nn_model_layer_time(m[0], 3, &f, &b);
  assert_true(f > 0.0 && b == 0.0); /* the first two pools' backward ran inside the batchnorms' */
  nn_model_layer_time(m[0], 7, &f, &b);
  assert_true(f > 0.0 && b == 0.0);
  nn_model_layer_time(m[0], 11, &f, &b);
  assert_true(f > 0.0 && b > 0.0); /* the third's on its own */
  nn_model_free(m[0]), nn_model_free(m[1]);

  /* planes 24x24, 2x2, 4x6, and odd sides the pool floors: 11x11 (the CNN's second), 5x7, 3x5,
   * 2x3 */
  static const shape3 sh[] = {{16, 6, 576}, {5, 7, 4}, {9, 3, 24}, {6, 5, 121}, {3, 4, 35}, {4, 3, 15}, {3, 2, 6}};
  static const int widths[] = {24, 2, 6, 11, 7, 5, 3};
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int nn = sh[t].n, c = sh[t].c, s = sh[t].s, w = widths[t];
    const size_t cnt = (size_t)nn * c * s, pcnt = cnt / 4;
    const nn_norm_geom *g = BN_GEOM(nn, c, s);
    assert_true(nn_bn_pool2_fits(g, w));
    const nn_pool_geom pg0 = {.n = nn, .c = c, .h = s / w, .w = w, .size = 2, .stride = 2};
    nn_pool_geom pg = pg0;
    assert_int_equal(nn_pool_geom_init(&pg), 0);
    float *xx = tu_fbuf(cnt), *z = tu_fbuf(cnt), *dp = tu_fbuf(pcnt), *dz = tu_fbuf(cnt), *dx1 = tu_fbuf(cnt), *dx2 = tu_fbuf(cnt);
    float *pooled = tu_fbuf(pcnt);
    int32_t *am = malloc(pcnt * sizeof *am);
    assert_non_null(am);
    float gamma[MAXC], beta[MAXC];
    bn_stats a, bs;
    pool_case_params(&r, dp, pcnt, gamma, beta, c);
    for (int q = 0; q < 2; q++) {
      pool_case_input(&r, xx, nn, c, s, q);
      for (int act = NN_ACT_RELU; act <= NN_ACT_TANH; act++)
        for (int mx = 0; mx < 2; mx++) {
          pool_case_forward(g, (nn_act)act, xx, gamma, beta, z, &a, &bs);
          if (mx) {
            nn_maxpool2d_forward(&pg, z, pooled, am);
            nn_maxpool2d_backward(&pg, dp, am, dz);
          } else {
            nn_avgpool2d_backward(&pg, dp, dz);
          }
          nn_bn_backward_train_act(g, (nn_act)act, xx, gamma, a.mean, a.invstd, z, dz, dx1, a.dg, a.db);
          nn_bn_backward_train_act_pool2(g, w, (nn_act)act, xx, gamma, bs.mean, bs.invstd, z, dp, mx, dx2, bs.dg, bs.db);
          assert_memory_equal(dx1, dx2, cnt * sizeof(float));
          assert_memory_equal(&a, &bs, sizeof a);
          memset(bs.dg, 0, sizeof bs.dg), memset(bs.db, 0, sizeof bs.db);
          nn_bn_backward_train_act_pool2(g, w, (nn_act)act, xx, gamma, bs.mean, bs.invstd, z, dp, mx, NULL, bs.dg, bs.db);
          assert_memory_equal(&a, &bs, sizeof a);
        }
    }
    assert_false(nn_bn_pool2_fits(g, w + 1));
    free(xx), free(z), free(dp), free(dz), free(dx1), free(dx2), free(pooled), free(am);
  }
  assert_false(nn_bn_pool2_fits(BN_GEOM(2, 3, 32), 32));   /* one row */
  assert_false(nn_bn_pool2_fits(BN_GEOM(2, 3, 1088), 34)); /* more than 1024 values */
}

/* batchnorm or conv2d + activation + global average pool: in training the backward runs the
 * three from the pool's output gradient (nn_batchnorm_pool_fuses, nn_bn_backward_train_act_gap;
 * nn_layer_gap_fuses, conv2d's backward_act) where the batchnorm's planes have 100 to 1024
 * values (11x11 here) and pool by pool where not (4x4), and always after a conv2d (with and
 * without its dx), bit for bit the layers one by one; the BN kernel alone against
 * nn_global_avgpool_backward then the fused BN backward, with and without dx, on cifar-gap's
 * 30x30 planes, the limits 2 and 1024, and odd sizes, on normal inputs and on inputs of four
 * values (z = 0 often: relu' = 0). (The conv2d kernels: test_kernels' test_conv_act_fused.) */
static void test_gap_fusion(void **state) {
  (void)state;
  static const struct {
    const char *spec;
    int pool, fused; /* the pool's layer index; whether its backward runs inside the two before */
  } models[] = {
      {"input shape=3x13x13\nconv2d filters=5 kernel=3 bias=0\nbatchnorm convention=keras\nrelu\nglobal_avgpool\n"
       "dense units=4\n",
       3, 1},
      {"input shape=3x6x6\nconv2d filters=5 kernel=3\nbatchnorm\nsigmoid\nglobal_avgpool\ndense units=4\n", 3, 0},
      {"input shape=3x12x12\nconv2d filters=6 kernel=3\nrelu\nglobal_avgpool\ndense units=4\n", 2, 1},
      {"input shape=2x10x10\nconv2d filters=3 kernel=3\nconv2d filters=5 kernel=3 pad=1\ntanh\nglobal_avgpool\n"
       "dense units=4\n",
       3, 1},
  };
  nn_rng r;
  nn_rng_seed(&r, 11);
  for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
    nn_model *m[2] = {tu_model(models[t].spec, 8), tu_model(models[t].spec, 8)};
    const nn_layer *P = &m[0]->layers[models[t].pool - 2];
    const int bn = P->kind == NN_LAYER_BATCHNORM;
    assert_int_equal(bn ? nn_batchnorm_pool_fuses(P, P + 1, P + 2, NN_MODE_TRAIN)
                        : nn_layer_gap_fuses(P, P + 1, P + 2, NN_MODE_TRAIN),
                     models[t].fused);
    /* no backward in eval */
    assert_false(bn ? nn_batchnorm_pool_fuses(P, P + 1, P + 2, NN_MODE_EVAL)
                    : nn_layer_gap_fuses(P, P + 1, P + 2, NN_MODE_EVAL));
    random_step_vs_unfused(m[0], m[1], &r, 7, 4, 0.5, 1.0);
    double f, b;
    nn_model_layer_time(m[0], models[t].pool, &f, &b);
    assert_true(f > 0.0 && (models[t].fused ? b == 0.0 : b > 0.0)); /* fused: inside the two before */
    nn_model_free(m[0]), nn_model_free(m[1]);
  }

  static const shape3 sh[] = {{32, 5, 900}, {3, 4, 2}, {2, 3, 1024}, {5, 7, 37}, {9, 2, 121}};
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int nn = sh[t].n, c = sh[t].c, s = sh[t].s;
    const size_t cnt = (size_t)nn * c * s, pcnt = (size_t)nn * c;
    const nn_norm_geom *g = BN_GEOM(nn, c, s);
    assert_true(nn_bn_gap_fits(g));
    float *xx = tu_fbuf(cnt), *z = tu_fbuf(cnt), *dp = tu_fbuf(pcnt), *dz = tu_fbuf(cnt), *dx1 = tu_fbuf(cnt), *dx2 = tu_fbuf(cnt);
    float gamma[MAXC], beta[MAXC];
    bn_stats a, bs;
    pool_case_params(&r, dp, pcnt, gamma, beta, c);
    for (int q = 0; q < 2; q++) {
      pool_case_input(&r, xx, nn, c, s, q);
      for (int act = NN_ACT_RELU; act <= NN_ACT_TANH; act++) {
        pool_case_forward(g, (nn_act)act, xx, gamma, beta, z, &a, &bs);
        nn_global_avgpool_backward(dp, dz, nn, c, s);
        nn_bn_backward_train_act(g, (nn_act)act, xx, gamma, a.mean, a.invstd, z, dz, dx1, a.dg, a.db);
        nn_bn_backward_train_act_gap(g, (nn_act)act, xx, gamma, bs.mean, bs.invstd, z, dp, dx2, bs.dg, bs.db);
        assert_memory_equal(dx1, dx2, cnt * sizeof(float));
        assert_memory_equal(&a, &bs, sizeof a);
        memset(bs.dg, 0, sizeof bs.dg), memset(bs.db, 0, sizeof bs.db);
        nn_bn_backward_train_act_gap(g, (nn_act)act, xx, gamma, bs.mean, bs.invstd, z, dp, NULL, bs.dg, bs.db);
        assert_memory_equal(&a, &bs, sizeof a);
      }
    }
    free(xx), free(z), free(dp), free(dz), free(dx1), free(dx2);
  }
  assert_false(nn_bn_gap_fits(BN_GEOM(2, 3, 1)));
  assert_false(nn_bn_gap_fits(BN_GEOM(2, 3, 1025)));
}

/* ---- thread-count independence -------------------------------------------------------------- */

typedef struct {
  float *y, *yi, *dx, *dxi, mean[MAXC], var[MAXC], invstd[MAXC], dg[MAXC], db[MAXC], dgi[MAXC], dbi[MAXC];
} bn_outs;

static void run_all(const float *x, const float *dy, const float *gamma, const float *beta, const float *rm,
                    const float *rv, int n, int c, int s, bn_outs *o) {
  memset(o->dg, 0, sizeof o->dg), memset(o->db, 0, sizeof o->db);
  memset(o->dgi, 0, sizeof o->dgi), memset(o->dbi, 0, sizeof o->dbi);
  nn_bn_forward_train(BN_GEOM(n, c, s), x, gamma, beta, o->y, o->mean, o->var, o->invstd);
  nn_bn_forward_infer(BN_GEOM(n, c, s), x, gamma, beta, rm, rv, o->yi);
  nn_bn_backward_train(BN_GEOM(n, c, s), x, gamma, o->mean, o->invstd, dy, o->dx, o->dg, o->db);
  nn_bn_backward_infer(BN_GEOM(n, c, s), x, gamma, rm, rv, dy, o->dxi, o->dgi, o->dbi);
}

static void test_threads_bitwise(void **state) {
  (void)state;
  /* inference splits samples over threads, unevenly for 3; one sample splits channels;
   * training S > 1 splits sample groups (fewer groups than 4 samples: {3, 5, 2000}) in rounds
   * of channels (at two threads: one channel a round for LeNet's first BN, two then one for {64, 3, 1000},
   * 64 then 16 for {16, 80, 16}) */
  static const shape3 sh[] = {{128, 6, 576}, {512, 100, 1}, {64, 3, 1000}, {1024, 17, 1}, {64, 600, 1}, {3, 5, 2000}, {1, 40, 1024}, {16, 80, 16}};
  const int saved = omp_get_max_threads();
  nn_rng r;
  nn_rng_seed(&r, 55);
  for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
    const int n = sh[t].n, c = sh[t].c, s = sh[t].s;
    const size_t cnt = (size_t)n * c * s;
    float *x = tu_fbuf(cnt), *dy = tu_fbuf(cnt), gamma[MAXC], beta[MAXC], rm[MAXC], rv[MAXC];
    bn_outs o[3];
    fill_bn_input(&r, x, n, c, s, 1);
    tu_fill_normal(&r, dy, cnt, 1.0, 0.1);
    for (int k = 0; k < c; k++) {
      gamma[k] = 0.5f + nn_rng_uniform(&r);
      beta[k] = (float)nn_rng_normal(&r);
      rm[k] = (float)nn_rng_normal(&r);
      rv[k] = 0.5f + nn_rng_uniform(&r);
    }
    for (int th = 0; th < 3; th++) {
      o[th].y = tu_fbuf(cnt), o[th].yi = tu_fbuf(cnt), o[th].dx = tu_fbuf(cnt), o[th].dxi = tu_fbuf(cnt);
      omp_set_num_threads(th + 1);
      assert_int_equal(th + 1, omp_get_max_threads());
      run_all(x, dy, gamma, beta, rm, rv, n, c, s, &o[th]);
    }
    omp_set_num_threads(saved);
    for (int th = 1; th < 3; th++) {
      assert_memory_equal(o[0].y, o[th].y, cnt * sizeof(float));
      assert_memory_equal(o[0].yi, o[th].yi, cnt * sizeof(float));
      assert_memory_equal(o[0].dx, o[th].dx, cnt * sizeof(float));
      assert_memory_equal(o[0].dxi, o[th].dxi, cnt * sizeof(float));
      assert_memory_equal(o[0].mean, o[th].mean, (size_t)c * sizeof(float));
      assert_memory_equal(o[0].var, o[th].var, (size_t)c * sizeof(float));
      assert_memory_equal(o[0].invstd, o[th].invstd, (size_t)c * sizeof(float));
      assert_memory_equal(o[0].dg, o[th].dg, (size_t)c * sizeof(float));
      assert_memory_equal(o[0].db, o[th].db, (size_t)c * sizeof(float));
      assert_memory_equal(o[0].dgi, o[th].dgi, (size_t)c * sizeof(float));
      assert_memory_equal(o[0].dbi, o[th].dbi, (size_t)c * sizeof(float));
    }
    for (int th = 0; th < 3; th++) free(o[th].y), free(o[th].yi), free(o[th].dx), free(o[th].dxi);
    free(x), free(dy);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_optimized_vs_reference),
      cmocka_unit_test(test_reference_finite_differences),
      cmocka_unit_test(test_large_mean_small_spread),
      cmocka_unit_test(test_constant_channel),
      cmocka_unit_test(test_lane_order),
      cmocka_unit_test(test_running_update),
      cmocka_unit_test(test_phases),
      cmocka_unit_test(test_fused_activation),
      cmocka_unit_test(test_model_fusion),
      cmocka_unit_test(test_pool_fusion),
      cmocka_unit_test(test_gap_fusion),
      cmocka_unit_test(test_layer_timing),
      cmocka_unit_test(test_threads_bitwise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
