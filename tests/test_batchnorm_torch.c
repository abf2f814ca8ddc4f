/* Batch normalization kernels against PyTorch BatchNorm1d/2d fixtures
 * (tests/fixtures/bn_torch.txt, gen_bn_fixtures.py), driven the way a BN layer drives the
 * kernels: three training steps with running updates, backward, eval; a shifted and a
 * constant channel. The kernels against their twins: test_batchnorm.c. */
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

/* ---- PyTorch fixtures ---------------------------------------------------------------------- */

#define FX_TOL 1e-5

static void fx_shape(const nn_fixture *fx, const char *cs, int *n, int *c, int *s) {
  char name[256];
  snprintf(name, sizeof name, "%s.shape", cs);
  const double *sh = fx_get(fx, name, NULL);
  *n = (int)sh[0], *c = (int)sh[1], *s = (int)(sh[2] * sh[3]);
}

/* One case, driven like a BN layer: three training steps (forward_train + running update),
 * backward of step 3, then an eval forward/backward of x1. */
static void run_torch_case(const nn_fixture *fx, int rank, int cumulative, int affine, int track) {
  char cs[64], field[96];
  snprintf(cs, sizeof cs, "r%d_m%s_a%d_t%d", rank, cumulative ? "cum" : "0.1", affine, track);
  int n, c, s;
  fx_shape(fx, cs, &n, &c, &s);
  assert_int_equal(rank == 2 ? 1 : 30, s);
  const size_t cnt = (size_t)n * c * s;
  const long m = (long)n * s;
  float *gamma = affine ? fx_case_floats(fx, cs, "gamma", (size_t)c) : NULL;
  float *beta = affine ? fx_case_floats(fx, cs, "beta", (size_t)c) : NULL;
  if (!affine) {
    snprintf(field, sizeof field, "%s.gamma", cs);
    assert_null(fx_find(fx, field, NULL));
  }
  float *y = tu_fbuf(cnt), *dx = tu_fbuf(cnt), *x1 = NULL;
  float mean[16], var[16], invstd[16], rm[16], rv[16], dg[16], db[16];
  assert_true(c <= 16);
  for (int k = 0; k < c; k++) rm[k] = 0.0f, rv[k] = 1.0f; /* PyTorch's initial state */
  long nbt = 0;

  for (int step = 1; step <= 3; step++) {
    snprintf(field, sizeof field, "x%d", step);
    float *x = fx_case_floats(fx, cs, field, cnt);
    nn_bn_forward_train(BN_GEOM(n, c, s), x, gamma, beta, y, mean, var, invstd);
    snprintf(field, sizeof field, "y%d", step);
    fx_case_check(fx, cs, field, y, cnt, FX_TOL);
    if (track) {
      nbt++;
      double momentum = cumulative ? 1.0 / (double)nbt : 0.1;
      assert_int_equal(1, nn_bn_running_update(rm, rv, mean, var, c, m, momentum, 1));
      snprintf(field, sizeof field, "rm%d", step);
      fx_case_check(fx, cs, field, rm, (size_t)c, FX_TOL);
      snprintf(field, sizeof field, "rv%d", step);
      fx_case_check(fx, cs, field, rv, (size_t)c, FX_TOL);
      snprintf(field, sizeof field, "%s.nbt%d", cs, step);
      assert_int_equal((long)fx_get(fx, field, NULL)[0], nbt);
    } else {
      snprintf(field, sizeof field, "%s.rm%d", cs, step);
      assert_null(fx_find(fx, field, NULL));
    }
    if (step == 3) {
      float *dy = fx_case_floats(fx, cs, "dy3", cnt);
      for (int k = 0; k < c; k++) dg[k] = db[k] = 0.0f;
      tu_fill_f(dx, cnt, NAN);
      nn_bn_backward_train(BN_GEOM(n, c, s), x, gamma, mean, invstd, dy, dx, affine ? dg : NULL, affine ? db : NULL);
      fx_case_check(fx, cs, "dx3", dx, cnt, FX_TOL);
      if (affine) {
        fx_case_check(fx, cs, "dgamma3", dg, (size_t)c, FX_TOL);
        fx_case_check(fx, cs, "dbeta3", db, (size_t)c, FX_TOL);
      }
      free(dy);
    }
    if (step == 1)
      x1 = x;
    else
      free(x);
  }

  /* eval: running stats when tracked, batch statistics otherwise */
  float *dy = fx_case_floats(fx, cs, "dyeval", cnt);
  for (int k = 0; k < c; k++) dg[k] = db[k] = 0.0f;
  tu_fill_f(y, cnt, NAN);
  tu_fill_f(dx, cnt, NAN);
  float *dgp = affine ? dg : NULL, *dbp = affine ? db : NULL;
  if (track) {
    nn_bn_forward_infer(BN_GEOM(n, c, s), x1, gamma, beta, rm, rv, y);
    fx_case_check(fx, cs, "yeval", y, cnt, FX_TOL);
    nn_bn_backward_infer(BN_GEOM(n, c, s), x1, gamma, rm, rv, dy, dx, dgp, dbp);
  } else {
    nn_bn_forward_train(BN_GEOM(n, c, s), x1, gamma, beta, y, mean, var, invstd);
    fx_case_check(fx, cs, "yeval", y, cnt, FX_TOL);
    nn_bn_backward_train(BN_GEOM(n, c, s), x1, gamma, mean, invstd, dy, dx, dgp, dbp);
  }
  fx_case_check(fx, cs, "dxeval", dx, cnt, FX_TOL);
  if (affine) {
    fx_case_check(fx, cs, "dgammaeval", dg, (size_t)c, FX_TOL);
    fx_case_check(fx, cs, "dbetaeval", db, (size_t)c, FX_TOL);
  }
  free(dy), free(x1), free(y), free(dx), free(gamma), free(beta);
}

static void test_torch_fixtures(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("bn_torch.txt");
  int cases = 0;
  for (int rank = 2; rank <= 4; rank += 2)
    for (int cum = 0; cum <= 1; cum++)
      for (int affine = 0; affine <= 1; affine++)
        for (int track = 0; track <= 1; track++, cases++) run_torch_case(fx, rank, cum, affine, track);
  assert_int_equal(16, cases);
  fx_free(fx);
}

/* shift.* (1e4 + 1e-2 N(0,1)) and const.* (one constant channel): forward train and backward. */
static void run_torch_special(const nn_fixture *fx, const char *cs) {
  int n, c, s;
  fx_shape(fx, cs, &n, &c, &s);
  const size_t cnt = (size_t)n * c * s;
  float *x = fx_case_floats(fx, cs, "x", cnt), *dy = fx_case_floats(fx, cs, "dy", cnt);
  float *gamma = fx_case_floats(fx, cs, "gamma", (size_t)c), *beta = fx_case_floats(fx, cs, "beta", (size_t)c);
  float *y = tu_fbuf(cnt), *dx = tu_fbuf(cnt);
  float mean[16], var[16], invstd[16], dg[16], db[16];
  char name[64];
  assert_true(c <= 16);
  nn_bn_forward_train(BN_GEOM(n, c, s), x, gamma, beta, y, mean, var, invstd);
  fx_assert_all_finite(cs, y, cnt);
  fx_case_check(fx, cs, "y", y, cnt, FX_TOL);
  snprintf(name, sizeof name, "%s.mean", cs);
  fx_assert_close_fd(name, mean, fx_get(fx, name, NULL), (size_t)c, 1e-7, 0);
  snprintf(name, sizeof name, "%s.var", cs);
  fx_assert_close_fd(name, var, fx_get(fx, name, NULL), (size_t)c, 1e-6, 0);
  for (int k = 0; k < c; k++) dg[k] = db[k] = 0.0f;
  nn_bn_backward_train(BN_GEOM(n, c, s), x, gamma, mean, invstd, dy, dx, dg, db);
  fx_assert_all_finite(cs, dx, cnt);
  snprintf(name, sizeof name, "%s.dx", cs);
  const double *want = fx_get(fx, name, NULL);
  fx_assert_close_fd(name, dx, want, cnt, FX_TOL, FX_TOL * tu_maxabs_d(want, cnt));
  fx_case_check(fx, cs, "dgamma", dg, (size_t)c, FX_TOL);
  fx_case_check(fx, cs, "dbeta", db, (size_t)c, FX_TOL);
  free(x), free(dy), free(gamma), free(beta), free(y), free(dx);
}

static void test_torch_shift_and_constant(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("bn_torch.txt");
  run_torch_special(fx, "shift");
  run_torch_special(fx, "const");
  /* the constant channel really has variance 0 and outputs beta */
  assert_true(fx_get(fx, "const.var", NULL)[1] == 0.0);
  fx_free(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torch_fixtures),
      cmocka_unit_test(test_torch_shift_and_constant),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
