/* Group normalization kernel (src/kernels/groupnorm.c, LayerNorm = 1 group, InstanceNorm =
 * C groups) against
 * - the double reference twins (groupnorm_ref.c): every affine kind, several shapes incl.
 *   S = 1, one-value groups, constant / large-mean / eps-sized groups, in-place use;
 * - central finite differences (on the twins);
 * - bitwise-identical results for 1 and 2 OpenMP threads.
 * The layers and PyTorch's values: test_groupnorm_layers.c. */
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
#include "fixture.h"
#include "kernels/kernels.h"
#include "nn_test.h"
#include "layers/layer.h"
#include "model/model.h"
#include "normnet.h"

#define EPS 1e-5f
/* The kernels' geometry of x[N,C,S] in `groups` groups (eps = EPS). */
#define GN_GEOM(n_, c_, s_, groups_, affine_) \
  (&(nn_norm_geom){.n = (n_), .c = (c_), .s = (s_), .groups = (groups_), .affine = (affine_), .eps = EPS})
#define FX_TOL 1e-5

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *affine_name(nn_gn_affine a) {
  return a == NN_GN_AFFINE_NONE ? "none" : a == NN_GN_AFFINE_CHANNEL ? "channel"
                                                                     : "element";
}

static size_t param_count(nn_gn_affine a, int c, int s) { return a == NN_GN_AFFINE_ELEMENT ? (size_t)c * s : (size_t)c; }

/* ---- optimized kernel vs reference twin --------------------------------------------------- */

typedef struct {
  int n, c, s, groups;
} gshape;

static const gshape shapes[] = {
    {4, 6, 25, 1},
    {4, 6, 25, 3},
    {4, 6, 25, 6},
    {8, 5, 1, 1},
    {8, 6, 1, 3},
    {3, 12, 1, 12},
    {2, 16, 33, 4},
    {7, 3, 7, 3},
    {5, 4, 2, 2},
    {1, 4, 9, 1},
    {16, 32, 64, 8},
    {2, 64, 1024, 1},
    {64, 8, 49, 8},
    {3, 2, 17, 1},
    {4, 300, 1, 1},
    {6, 40, 1, 10},
    {2, 3, 1000, 3},
    {40, 600, 1, 1},
};

static void check_vs_ref(const gshape *sh, nn_gn_affine affine, nn_rng *r) {
  const int n = sh->n, c = sh->c, s = sh->s, G = sh->groups;
  const size_t cnt = (size_t)n * c * s, ng = (size_t)n * G, pc = param_count(affine, c, s);
  char what[160], tag[96];
  snprintf(tag, sizeof tag, "(%d,%d,%d) G=%d affine=%s", n, c, s, G, affine_name(affine));
  float *x = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *y = tu_fbuf(cnt), *dx = tu_fbuf(cnt), *buf = tu_fbuf(cnt);
  float *gamma = tu_fbuf(pc), *beta = tu_fbuf(pc), *dg = tu_fbuf(pc), *db = tu_fbuf(pc), *dg2 = tu_fbuf(pc), *db2 = tu_fbuf(pc);
  float *mean = tu_fbuf(ng), *var = tu_fbuf(ng), *invstd = tu_fbuf(ng), *ws = tu_fbuf(nn_groupnorm_workspace(GN_GEOM(n, c, s, G, affine)));
  double *xd = tu_dbuf(cnt), *dyd = tu_dbuf(cnt), *yr = tu_dbuf(cnt), *dxr = tu_dbuf(cnt), *gd = tu_dbuf(pc), *bd = tu_dbuf(pc);
  double *dgr = tu_dbuf(pc), *dbr = tu_dbuf(pc), *mr = tu_dbuf(ng), *vr = tu_dbuf(ng), *isr = tu_dbuf(ng);
  tu_fill_grouped(r, x, n, c, s, G, 1);
  tu_fill_normal(r, dy, cnt, 1.0, 0.3);
  for (size_t k = 0; k < pc; k++) {
    gamma[k] = 0.5f + nn_rng_uniform(r);
    beta[k] = (float)nn_rng_normal(r);
  }
  tu_to_double(x, xd, cnt);
  tu_to_double(dy, dyd, cnt);
  tu_to_double(gamma, gd, pc);
  tu_to_double(beta, bd, pc);
  const int aff = affine != NN_GN_AFFINE_NONE;
  const float *g = aff ? gamma : NULL, *b = aff ? beta : NULL;

  /* forward */
  tu_fill_f(y, cnt, NAN);
  nn_groupnorm_forward(GN_GEOM(n, c, s, G, affine), x, g, b, y, mean, var, invstd);
  nn_ref_groupnorm_forward(GN_GEOM(n, c, s, G, affine), xd, aff ? gd : NULL, aff ? bd : NULL, yr, mr, vr);
  for (size_t t = 0; t < ng; t++) isr[t] = 1.0 / sqrt(vr[t] + EPS);
  snprintf(what, sizeof what, "forward y %s", tag);
  fx_assert_rel_fd(what, y, yr, cnt, 1e-4);
  snprintf(what, sizeof what, "forward mean %s", tag);
  fx_assert_close_fd(what, mean, mr, ng, 1e-6, 1e-6);
  snprintf(what, sizeof what, "forward var %s", tag);
  fx_assert_close_fd(what, var, vr, ng, 1e-4, 1e-12);
  snprintf(what, sizeof what, "forward invstd %s", tag);
  fx_assert_close_fd(what, invstd, isr, ng, 1e-4, 0);
  /* var may be skipped; in place (y == x) gives the same bits */
  memcpy(buf, x, cnt * sizeof *x);
  nn_groupnorm_forward(GN_GEOM(n, c, s, G, affine), buf, g, b, buf, mean, NULL, invstd);
  snprintf(what, sizeof what, "forward in place %s", tag);
  fx_assert_same_bits(what, buf, y, cnt);

  /* backward: dx overwritten, dgamma/dbeta accumulated */
  tu_fill_f(dx, cnt, NAN);
  tu_fill_f(dg, pc, 0.25f), tu_fill_f(db, pc, 0.25f);
  for (size_t k = 0; k < pc; k++) dgr[k] = dbr[k] = 0.25;
  nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, dy, dx, dg, db, ws);
  nn_ref_groupnorm_backward(GN_GEOM(n, c, s, G, affine), xd, aff ? gd : NULL, dyd, dxr, dgr, dbr);
  snprintf(what, sizeof what, "backward dx %s", tag);
  fx_assert_rel_fd(what, dx, dxr, cnt, 1e-4);
  if (aff) {
    snprintf(what, sizeof what, "backward dgamma %s", tag);
    fx_assert_rel_fd(what, dg, dgr, pc, 1e-4);
    snprintf(what, sizeof what, "backward dbeta %s", tag);
    fx_assert_rel_fd(what, db, dbr, pc, 1e-4);
  }
  /* parts: dx only, then parameter grads only, then in place (dx == dy): the same bits */
  tu_fill_f(buf, cnt, NAN);
  nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, dy, buf, NULL, NULL, ws);
  snprintf(what, sizeof what, "backward dx alone %s", tag);
  fx_assert_same_bits(what, buf, dx, cnt);
  if (aff) {
    tu_fill_f(dg2, pc, 0.25f), tu_fill_f(db2, pc, 0.25f);
    nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, dy, NULL, dg2, db2, ws);
    snprintf(what, sizeof what, "backward dgamma alone %s", tag);
    fx_assert_same_bits(what, dg2, dg, pc);
    snprintf(what, sizeof what, "backward dbeta alone %s", tag);
    fx_assert_same_bits(what, db2, db, pc);
  }
  memcpy(buf, dy, cnt * sizeof *dy);
  tu_fill_f(dg2, pc, 0.25f), tu_fill_f(db2, pc, 0.25f);
  nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, buf, buf, aff ? dg2 : NULL, aff ? db2 : NULL, ws);
  snprintf(what, sizeof what, "backward in place dx %s", tag);
  fx_assert_same_bits(what, buf, dx, cnt);
  if (aff) {
    snprintf(what, sizeof what, "backward in place dgamma %s", tag);
    fx_assert_same_bits(what, dg2, dg, pc);
  }
  free(x), free(dy), free(y), free(dx), free(buf), free(gamma), free(beta), free(dg), free(db), free(dg2);
  free(db2), free(mean), free(var), free(invstd), free(ws), free(xd), free(dyd), free(yr), free(dxr), free(gd);
  free(bd), free(dgr), free(dbr), free(mr), free(vr), free(isr);
}

static void test_kernel_vs_reference(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 31);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int a = 0; a < 3; a++) check_vs_ref(&shapes[i], (nn_gn_affine)a, &r);
}

/* A group of one value normalizes to 0 (y = beta), with finite gradients. */
static void test_degenerate_groups(void **state) {
  (void)state;
  const int n = 2, c = 4, s = 1;
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 1e4f}, y[8], mean[8], var[8], is[8], dy[8] = {1, -2, 3, 4, 5, 6, 7, 8};
  float gamma[4] = {2, 2, 2, 2}, beta[4] = {0.5f, -1, 2, 3}, dx[8], dg[4] = {0}, db[4] = {0}, ws[64];
  assert_true(nn_groupnorm_workspace(GN_GEOM(n, c, s, c, NN_GN_AFFINE_CHANNEL)) <= 64);
  nn_groupnorm_forward(GN_GEOM(n, c, s, c, NN_GN_AFFINE_CHANNEL), x, gamma, beta, y, mean, var, is);
  for (int i = 0; i < 8; i++) {
    assert_true(var[i] == 0.0f);
    assert_true(mean[i] == x[i]);
    assert_true(y[i] == beta[i % 4]);
  }
  nn_groupnorm_backward(GN_GEOM(n, c, s, c, NN_GN_AFFINE_CHANNEL), x, gamma, mean, is, dy, dx, dg, db, ws);
  for (int i = 0; i < 8; i++) assert_true(dx[i] == 0.0f);
  for (int k = 0; k < 4; k++) {
    assert_true(dg[k] == 0.0f);
    assert_true(db[k] == dy[k] + dy[k + 4]);
  }
}

/* ---- finite differences on the reference twins --------------------------------------------
 * L = sum(w .* y); the twins' backward with dy = w must be dL/dx, dL/dgamma, dL/dbeta. */

typedef struct {
  int n, c, s, groups;
  nn_gn_affine affine;
  const double *x, *gamma, *beta, *w;
  double *y;
} fd_ctx;

static double fd_loss(const void *ctx) {
  const fd_ctx *f = ctx;
  nn_ref_groupnorm_forward(GN_GEOM(f->n, f->c, f->s, f->groups, f->affine), f->x, f->gamma, f->beta, f->y, NULL, NULL);
  size_t cnt = (size_t)f->n * f->c * f->s;
  double l = 0;
  for (size_t i = 0; i < cnt; i++) l += f->w[i] * f->y[i];
  return l;
}

static void fd_check(const char *what, fd_ctx *f, double *v, size_t len, const double *an) {
  tu_fd_check(what, fd_loss, f, v, len, an, 1e-5, 1e-6);
}

static void fd_case(int n, int c, int s, int groups, nn_gn_affine affine, nn_rng *r) {
  const size_t cnt = (size_t)n * c * s, pc = param_count(affine, c, s);
  const int aff = affine != NN_GN_AFFINE_NONE;
  double *x = tu_dbuf(cnt), *w = tu_dbuf(cnt), *y = tu_dbuf(cnt), *dx = tu_dbuf(cnt);
  double *gamma = tu_dbuf(pc), *beta = tu_dbuf(pc), *dg = tu_dbuf(pc), *db = tu_dbuf(pc);
  float *xf = tu_fbuf(cnt);
  char what[128];
  tu_fill_grouped(r, xf, n, c, s, groups, 0);
  tu_to_double(xf, x, cnt);
  for (size_t i = 0; i < cnt; i++) w[i] = nn_rng_normal(r);
  for (size_t k = 0; k < pc; k++) {
    gamma[k] = 0.5 + nn_rng_uniform(r);
    beta[k] = nn_rng_normal(r);
    dg[k] = db[k] = 0;
  }
  fd_ctx f = {n, c, s, groups, affine, x, aff ? gamma : NULL, aff ? beta : NULL, w, y};
  nn_ref_groupnorm_backward(GN_GEOM(n, c, s, groups, affine), x, f.gamma, w, dx, dg, db);
  snprintf(what, sizeof what, "ref dx (%d,%d,%d) G=%d %s", n, c, s, groups, affine_name(affine));
  fd_check(what, &f, x, cnt, dx);
  if (aff) {
    snprintf(what, sizeof what, "ref dgamma (%d,%d,%d) G=%d %s", n, c, s, groups, affine_name(affine));
    fd_check(what, &f, gamma, pc, dg);
    snprintf(what, sizeof what, "ref dbeta (%d,%d,%d) G=%d %s", n, c, s, groups, affine_name(affine));
    fd_check(what, &f, beta, pc, db);
  }
  free(x), free(w), free(y), free(dx), free(gamma), free(beta), free(dg), free(db), free(xf);
}

static void test_reference_finite_differences(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 32);
  for (int a = 0; a < 3; a++) {
    fd_case(3, 6, 4, 1, (nn_gn_affine)a, &r);
    fd_case(2, 6, 5, 3, (nn_gn_affine)a, &r);
    fd_case(2, 4, 6, 4, (nn_gn_affine)a, &r);
    fd_case(4, 5, 1, 1, (nn_gn_affine)a, &r);
    fd_case(3, 6, 1, 2, (nn_gn_affine)a, &r);
  }
}

/* ---- thread-count independence ---------------------------------------------------------------- */

static void run_threads_case(int n, int c, int s, int G, nn_gn_affine affine, nn_rng *r) {
  const size_t cnt = (size_t)n * c * s, ng = (size_t)n * G, pc = param_count(affine, c, s);
  float *x = tu_fbuf(cnt), *dy = tu_fbuf(cnt), *gamma = tu_fbuf(pc), *beta = tu_fbuf(pc), *ws = tu_fbuf(nn_groupnorm_workspace(GN_GEOM(n, c, s, G, affine)));
  float *y[2], *dx[2], *dg[2], *db[2], *mean[2], *var[2], *is[2];
  tu_fill_grouped(r, x, n, c, s, G, 1);
  tu_fill_normal(r, dy, cnt, 1.0, 0.1);
  for (size_t k = 0; k < pc; k++) gamma[k] = 0.5f + nn_rng_uniform(r), beta[k] = (float)nn_rng_normal(r);
  for (int t = 0; t < 2; t++) {
    y[t] = tu_fbuf(cnt), dx[t] = tu_fbuf(cnt), dg[t] = tu_fbuf(pc), db[t] = tu_fbuf(pc);
    mean[t] = tu_fbuf(ng), var[t] = tu_fbuf(ng), is[t] = tu_fbuf(ng);
    tu_fill_f(dg[t], pc, 0), tu_fill_f(db[t], pc, 0);
    omp_set_num_threads(t + 1);
    nn_groupnorm_forward(GN_GEOM(n, c, s, G, affine), x, gamma, beta, y[t], mean[t], var[t], is[t]);
    nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, gamma, mean[t], is[t], dy, dx[t], dg[t], db[t], ws);
  }
  omp_set_num_threads(2);
  char what[96];
  snprintf(what, sizeof what, "(%d,%d,%d) G=%d %s 1 vs 2 threads", n, c, s, G, affine_name(affine));
  fx_assert_same_bits(what, y[0], y[1], cnt);
  fx_assert_same_bits(what, mean[0], mean[1], ng);
  fx_assert_same_bits(what, var[0], var[1], ng);
  fx_assert_same_bits(what, is[0], is[1], ng);
  fx_assert_same_bits(what, dx[0], dx[1], cnt);
  fx_assert_same_bits(what, dg[0], dg[1], pc);
  fx_assert_same_bits(what, db[0], db[1], pc);
  for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dg[t]), free(db[t]), free(mean[t]), free(var[t]), free(is[t]);
  free(x), free(dy), free(gamma), free(beta), free(ws);
}

static void test_threads_bitwise(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 43);
  for (int a = 0; a < 3; a++) {
    run_threads_case(32, 16, 64, 4, (nn_gn_affine)a, &r);  /* GroupNorm */
    run_threads_case(8, 16, 576, 1, (nn_gn_affine)a, &r);  /* LayerNorm over CxHxW */
    run_threads_case(16, 32, 49, 32, (nn_gn_affine)a, &r); /* InstanceNorm */
    run_threads_case(64, 512, 1, 1, (nn_gn_affine)a, &r);  /* LayerNorm over C */
    run_threads_case(64, 32, 9, 8, (nn_gn_affine)a, &r);   /* GroupNorm, S < 16 */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel_vs_reference),
      cmocka_unit_test(test_degenerate_groups),
      cmocka_unit_test(test_reference_finite_differences),
      cmocka_unit_test(test_threads_bitwise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
