/* dropout layer (src/layers/dropout.c, PyTorch nn.Dropout):
 * - spec: default rate 0.5, range [0, 1), canonical text round trip, summary detail;
 * - eval mode is the identity;
 * - train mode zeroes a fraction ~ rate (100k values, 7-sigma bound), survivors are scaled by
 *   exactly 1/(1-rate), the mask lives in scratch;
 * - backward multiplies by the same mask (dx == dy * mask), identity in eval and for rate 0;
 * - successive forwards draw new masks; the same init seed gives the same masks;
 * - a model that was never initialised still drops (its stream is seeded on first use). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "layers/layer.h"
#include "model/model.h"
#include "normnet.h"

#define SPEC "input shape=100\ndropout rate=0.3\ndense units=2\n"
/* flatten of a flat input is a copy: dropout is layer 1, so its dx (dact[1]) is computed */
#define SPEC_MID "input shape=100\nflatten\ndropout rate=0.3\ndense units=2\n"

static nn_model *build(const char *text, uint64_t seed, int init) {
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse(text, "test", &spec, &err) || nn_model_create(spec, &m, &err)) fail_msg("build: %s", err.msg);
  nn_spec_free(spec);
  if (init) {
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_model_init(m, NN_INIT_DEFAULT, &r);
  }
  return m;
}

static float *make_input(int n, int d, uint64_t seed) {
  float *x = malloc((size_t)n * d * sizeof *x);
  assert_non_null(x);
  nn_rng r;
  nn_rng_seed(&r, seed);
  /* non-zero values, so a zero output means "dropped" */
  for (size_t i = 0; i < (size_t)n * d; i++) x[i] = 0.5f + nn_rng_uniform(&r) * (i % 2 ? 1.0f : -2.0f);
  for (size_t i = 0; i < (size_t)n * d; i++)
    if (x[i] == 0.0f) x[i] = 0.25f;
  return x;
}

static void forward(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode) {
  nn_error err = {0};
  if (nn_model_forward(m, x, labels, n, mode, NULL, NULL, NULL, &err)) fail_msg("forward: %s", err.msg);
}

/* ---- spec ---------------------------------------------------------------------------------- */

static void test_spec(void **state) {
  (void)state;
  nn_spec *s = NULL;
  nn_error err = {0};
  assert_int_equal(nn_spec_parse("input shape=4\ndropout\ndense units=2\n", "t", &s, &err), NN_OK);
  char *txt = nn_spec_to_text(s);
  assert_non_null(strstr(txt, "dropout rate=0.5\n"));
  free(txt);
  nn_spec_free(s);

  assert_int_equal(nn_spec_parse("input shape=1x4x4\ndropout rate=0.25\nflatten\ndense units=2\n", "t", &s, &err), NN_OK);
  txt = nn_spec_to_text(s);
  assert_non_null(strstr(txt, "dropout rate=0.25\n"));
  nn_spec *s2 = NULL;
  assert_int_equal(nn_spec_parse(txt, "t2", &s2, &err), NN_OK); /* round trip */
  char *txt2 = nn_spec_to_text(s2);
  assert_string_equal(txt, txt2);
  free(txt), free(txt2);
  nn_model *m = NULL;
  assert_int_equal(nn_model_create(s, &m, &err), NN_OK);
  nn_layer_info info;
  nn_model_layer_info(m, 0, &info);
  assert_string_equal(info.kind, "dropout");
  assert_int_equal(info.out_rank, 3);
  assert_int_equal(info.out_c * info.out_h * info.out_w, 16);
  assert_int_equal((int)info.trainable, 0);
  assert_non_null(strstr(info.detail, "rate=0.25"));
  assert_int_equal((int)nn_model_param_count(m), 4 * 4 * 2 + 2);
  nn_model_free(m);
  nn_spec_free(s), nn_spec_free(s2);

  assert_int_equal(nn_spec_parse("input shape=4\ndropout rate=0\ndense units=2\n", "t", &s, &err), NN_OK);
  nn_spec_free(s);
  const char *bad[] = {"input shape=4\ndropout rate=1\ndense units=2\n", "input shape=4\ndropout rate=-0.1\ndense units=2\n",
                       "input shape=4\ndropout rate=x\ndense units=2\n", "input shape=4\ndropout p=0.1\ndense units=2\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s = NULL;
    nn_status st = nn_spec_parse(bad[i], "t", &s, &err);
    if (st != NN_ERR_SPEC) fail_msg("'%s' accepted (status %d)", bad[i], (int)st);
    assert_null(s);
    assert_non_null(strstr(err.msg, "dropout"));
  }
}

/* ---- forward ------------------------------------------------------------------------------- */

static void test_eval_identity(void **state) {
  (void)state;
  const int n = 50, d = 100;
  nn_model *m = build(SPEC, 1, 1);
  float *x = make_input(n, d, 2);
  forward(m, x, NULL, n, NN_MODE_EVAL);
  assert_memory_equal(m->act[1], x, (size_t)n * d * sizeof *x);
  free(x);
  nn_model_free(m);
}

static void test_train_statistics(void **state) {
  (void)state;
  const int n = 1000, d = 100;
  const double rate = 0.3;
  const float scale = (float)(1.0 / (1.0 - rate));
  nn_model *m = build(SPEC, 3, 1);
  float *x = make_input(n, d, 4);
  forward(m, x, NULL, n, NN_MODE_TRAIN);
  const float *y = m->act[1], *mask = m->layers[0].scratch;
  size_t zeros = 0, total = (size_t)n * d;
  for (size_t i = 0; i < total; i++) {
    if (y[i] == 0.0f) {
      zeros++;
      assert_true(mask[i] == 0.0f);
    } else {
      if (y[i] != x[i] * scale) fail_msg("survivor %zu: %.9g != %.9g * %.9g", i, (double)y[i], (double)x[i], (double)scale);
      assert_true(mask[i] == scale);
    }
  }
  /* binomial: sd = sqrt(0.3*0.7/1e5) = 0.00145; allow 7 sd */
  double frac = (double)zeros / (double)total;
  if (fabs(frac - rate) > 0.0102) fail_msg("dropped fraction %.5f, want %.2f", frac, rate);
  /* every sample and every feature gets some of both (no structure in the mask) */
  for (int i = 0; i < n; i += 97) {
    int z = 0;
    for (int j = 0; j < d; j++) z += y[(size_t)i * d + j] == 0.0f;
    assert_true(z > 5 && z < 60);
  }
  /* expected value preserved: mean(y) ~ mean(x) */
  double sx = 0, sy = 0;
  for (size_t i = 0; i < total; i++) sx += fabs((double)x[i]), sy += fabs((double)y[i]);
  assert_true(fabs(sy / sx - 1.0) < 0.02);
  free(x);
  nn_model_free(m);
}

static void test_masks_change_and_repeat(void **state) {
  (void)state;
  const int n = 20, d = 100;
  const size_t total = (size_t)n * d;
  nn_model *a = build(SPEC, 7, 1), *b = build(SPEC, 7, 1), *c = build(SPEC, 8, 1);
  float *x = make_input(n, d, 5);
  float *m1 = malloc(total * sizeof *m1), *m2 = malloc(total * sizeof *m2);
  assert_non_null(m1), assert_non_null(m2);
  forward(a, x, NULL, n, NN_MODE_TRAIN);
  memcpy(m1, a->layers[0].scratch, total * sizeof *m1);
  forward(a, x, NULL, n, NN_MODE_TRAIN);
  memcpy(m2, a->layers[0].scratch, total * sizeof *m2);
  size_t diff = 0;
  for (size_t i = 0; i < total; i++) diff += m1[i] != m2[i];
  if (diff < total / 5) fail_msg("successive masks differ in only %zu of %zu values", diff, total);
  /* an eval forward in between does not consume randomness nor touch the mask */
  forward(b, x, NULL, n, NN_MODE_TRAIN);
  assert_memory_equal(b->layers[0].scratch, m1, total * sizeof *m1);
  forward(b, x, NULL, n, NN_MODE_EVAL);
  assert_memory_equal(b->layers[0].scratch, m1, total * sizeof *m1);
  forward(b, x, NULL, n, NN_MODE_TRAIN);
  assert_memory_equal(b->layers[0].scratch, m2, total * sizeof *m2);
  /* same init seed -> same weights and masks; another seed -> another mask */
  assert_memory_equal(a->params, b->params, a->nparams * sizeof *a->params);
  forward(c, x, NULL, n, NN_MODE_TRAIN);
  assert_true(memcmp(c->layers[0].scratch, m1, total * sizeof *m1) != 0);
  free(x), free(m1), free(m2);
  nn_model_free(a), nn_model_free(b), nn_model_free(c);
}

/* ---- backward ------------------------------------------------------------------------------ */

static void test_backward_mask(void **state) {
  (void)state;
  const int n = 64, d = 100;
  const size_t total = (size_t)n * d;
  nn_model *m = build(SPEC_MID, 11, 1);
  float *x = make_input(n, d, 12);
  int32_t labels[64];
  for (int i = 0; i < n; i++) labels[i] = i % 2;
  nn_error err = {0};
  for (int mode = NN_MODE_TRAIN; mode <= NN_MODE_EVAL; mode++) {
    forward(m, x, labels, n, (nn_mode)mode);
    nn_model_zero_grads(m);
    assert_int_equal(nn_model_backward(m, &err), NN_OK);
    const float *dy = m->dact[2], *dx = m->dact[1], *mask = m->layers[1].scratch;
    const float *xin = m->act[1], *y = m->act[2];
    size_t nonzero = 0;
    for (size_t i = 0; i < total; i++) {
      float want = mode == NN_MODE_TRAIN ? dy[i] * mask[i] : dy[i];
      if (dx[i] != want) fail_msg("mode %d: dx[%zu] = %g, want %g", mode, i, (double)dx[i], (double)want);
      if (mode == NN_MODE_TRAIN) {
        assert_true(y[i] == xin[i] * mask[i]);
        if (mask[i] == 0.0f) assert_true(dx[i] == 0.0f);
      }
      nonzero += dy[i] != 0.0f;
    }
    assert_true(nonzero > total / 2);
  }
  free(x);
  nn_model_free(m);
}

static void test_rate_zero_identity(void **state) {
  (void)state;
  const int n = 16, d = 100;
  const size_t total = (size_t)n * d;
  nn_model *m = build("input shape=100\nflatten\ndropout rate=0\ndense units=2\n", 13, 1);
  float *x = make_input(n, d, 14);
  int32_t labels[16] = {0};
  nn_error err = {0};
  forward(m, x, labels, n, NN_MODE_TRAIN);
  assert_memory_equal(m->act[2], x, total * sizeof *x);
  assert_int_equal(nn_model_backward(m, &err), NN_OK);
  assert_memory_equal(m->dact[1], m->dact[2], total * sizeof *x);
  free(x);
  nn_model_free(m);
}

/* Dropout's gradient through the whole model, one sample: the dense weight columns of the
 * dropped inputs get exactly zero gradient, the kept ones the dense gradient of x * scale. */
static void test_dense_grad_sees_mask(void **state) {
  (void)state;
  const int d = 100;
  const float scale = (float)(1.0 / (1.0 - 0.3));
  nn_model *m = build(SPEC, 21, 1);
  float *x = make_input(1, d, 22);
  int32_t label = 1;
  nn_error err = {0};
  forward(m, x, &label, 1, NN_MODE_TRAIN);
  nn_model_zero_grads(m);
  assert_int_equal(nn_model_backward(m, &err), NN_OK);
  const float *y = m->act[1], *dz = m->dact[2];
  const float *gw = m->grads; /* dense weight [2, 100], dropout has no parameters */
  int dropped = 0;
  for (int j = 0; j < d; j++) {
    if (y[j] == 0.0f) {
      dropped++;
      assert_true(gw[j] == 0.0f && gw[d + j] == 0.0f);
    } else {
      for (int k = 0; k < 2; k++) {
        double want = (double)dz[k] * (double)(x[j] * scale);
        if (fabs(gw[k * d + j] - want) > 1e-6 * (1 + fabs(want))) fail_msg("dW[%d][%d] = %g, want %g", k, j, (double)gw[k * d + j], want);
      }
    }
  }
  assert_true(dropped > 10 && dropped < 55);
  free(x);
  nn_model_free(m);
}

static void test_uninitialised_model(void **state) {
  (void)state;
  const int n = 100, d = 100;
  nn_model *m = build(SPEC, 0, 0); /* e.g. a model about to receive a checkpoint */
  float *x = make_input(n, d, 31);
  forward(m, x, NULL, n, NN_MODE_TRAIN);
  size_t zeros = 0, total = (size_t)n * d;
  for (size_t i = 0; i < total; i++) zeros += m->act[1][i] == 0.0f;
  double frac = (double)zeros / (double)total;
  if (fabs(frac - 0.3) > 0.04) fail_msg("uninitialised model dropped %.4f", frac);
  free(x);
  nn_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec),
      cmocka_unit_test(test_eval_identity),
      cmocka_unit_test(test_train_statistics),
      cmocka_unit_test(test_masks_change_and_repeat),
      cmocka_unit_test(test_backward_mask),
      cmocka_unit_test(test_rate_zero_identity),
      cmocka_unit_test(test_dense_grad_sees_mask),
      cmocka_unit_test(test_uninitialised_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
