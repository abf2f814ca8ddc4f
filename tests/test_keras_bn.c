/* batchnorm convention=keras against the Keras documentation's formulas (fixture from
 * tests/fixtures/gen_keras_bn_fixture.py): momentum 0.99 as the weight of the old value,
 * eps 1e-3, biased moving variance; driven through the layer in a model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fixture.h"
#include "model/model.h"
#include "normnet.h"

static void run_case(const nn_fixture *fx, const char *c) {
  char name[64], spec_text[256];
  snprintf(name, sizeof name, "%s.shape", c);
  const double *sh = fx_get(fx, name, NULL);
  int n = (int)sh[0], ch = (int)sh[1], h = (int)sh[2], w = (int)sh[3];
  int flat = !strcmp(c, "r2");
  if (flat) snprintf(spec_text, sizeof spec_text, "input shape=%d\nbatchnorm convention=keras\ndense units=2\n", ch);
  else snprintf(spec_text, sizeof spec_text, "input shape=%dx%dx%d\nbatchnorm convention=keras\nflatten\ndense units=2\n", ch, h, w);
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse(spec_text, c, &spec, &err) || nn_model_create(spec, &m, &err)) fail_msg("%s", err.msg);
  nn_rng r;
  nn_rng_seed(&r, 1);
  nn_model_init(m, NN_INIT_DEFAULT, &r);
  snprintf(name, sizeof name, "%s.gamma", c);
  float *g = fx_floats(fx, name, (size_t)ch);
  snprintf(name, sizeof name, "%s.beta", c);
  float *b = fx_floats(fx, name, (size_t)ch);
  memcpy(m->layers[0].p, g, (size_t)ch * sizeof *g);
  memcpy(m->layers[0].p + ch, b, (size_t)ch * sizeof *b);
  size_t count = (size_t)n * ch * h * w;
  float *x1 = NULL;
  for (int k = 1; k <= 3; k++) {
    snprintf(name, sizeof name, "%s.x%d", c, k);
    float *x = fx_floats(fx, name, count);
    assert_int_equal(nn_model_forward(m, x, NULL, n, NN_MODE_TRAIN, NULL, NULL, NULL, &err), NN_OK);
    snprintf(name, sizeof name, "%s.y%d", c, k);
    fx_assert_close_fd(name, m->act[1], fx_get(fx, name, NULL), count, 1e-5, 1e-5);
    snprintf(name, sizeof name, "%s.mm%d", c, k);
    fx_assert_close_fd(name, m->layers[0].st, fx_get(fx, name, NULL), (size_t)ch, 1e-5, 1e-6);
    snprintf(name, sizeof name, "%s.mv%d", c, k);
    fx_assert_close_fd(name, m->layers[0].st + ch, fx_get(fx, name, NULL), (size_t)ch, 1e-5, 1e-6);
    if (k == 1) x1 = x;
    else free(x);
  }
  assert_int_equal(nn_model_forward(m, x1, NULL, n, NN_MODE_EVAL, NULL, NULL, NULL, &err), NN_OK);
  snprintf(name, sizeof name, "%s.yeval", c);
  fx_assert_close_fd(name, m->act[1], fx_get(fx, name, NULL), count, 1e-5, 1e-5);
  free(x1), free(g), free(b);
  nn_model_free(m);
  nn_spec_free(spec);
}

static void test_keras_formulas(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("keras_bn.txt");
  run_case(fx, "r2");
  run_case(fx, "r4");
  fx_free(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_keras_formulas)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
