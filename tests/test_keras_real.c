/* normnet's Keras convention against real Keras 3 (fixtures from
 * tests/fixtures/gen_keras_fixtures.py, run with TensorFlow; CI only reads them):
 * - BatchNormalization() with Keras's defaults: outputs, moving mean/variance after each of
 *   three training steps, the gradients dx, dgamma, dbeta, and inference; the same case also
 *   runs (forward, moving statistics, inference) against the Keras documentation's formulas
 *   (tests/fixtures/gen_keras_bn_fixture.py: momentum 0.99 as the weight of the old value,
 *   eps 1e-3, biased moving variance), whose fixture has no gradients;
 * - three Adam steps (Keras defaults) of the seed-000 MLP with BN and of the seed-001 CIFAR
 *   CNN from the same initial weights and data: the loss of each step within 1e-5, then every
 *   weight, gamma, beta and moving statistic within 1e-4 relative (a bias right before a BN,
 *   whose true gradient is zero, is checked to stay at rounding-noise size on both sides).
 *   This needs Keras's form of Adam (eps outside the bias correction, keras_eps in the Keras
 *   presets): with PyTorch's form the first weight was already 6.6e-4 off after 3 steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "layers/layer.h"
#include "model/model.h"
#include "nn_test.h"
#include "normnet.h"

static nn_model *model_of(const char *text) {
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse(text, "keras", &spec, &err) || nn_model_create(spec, &m, &err)) fail_msg("%s", err.msg);
  nn_spec_free(spec);
  nn_rng r;
  nn_rng_seed(&r, 1);
  nn_model_init(m, NN_INIT_XAVIER_UNIFORM, &r);
  return m;
}

/* Case c of fixture fx; with_backward: the fixture also holds g, dx, dgamma, dbeta. */
static void bn_case(const nn_fixture *fx, const char *c, int with_backward) {
  char name[64], spec_text[256];
  snprintf(name, sizeof name, "%s.shape", c);
  const double *sh = fx_get(fx, name, NULL);
  int n = (int)sh[0], ch = (int)sh[1], h = (int)sh[2], w = (int)sh[3];
  if (!strcmp(c, "r2")) snprintf(spec_text, sizeof spec_text, "input shape=%d\nbatchnorm convention=keras\ndense units=2\n", ch);
  else
    snprintf(spec_text, sizeof spec_text,
             "input shape=%dx%dx%d\nbatchnorm convention=keras\nflatten\ndense units=2\n", ch, h, w);
  nn_model *m = model_of(spec_text);
  nn_layer *L = &m->layers[0];
  nn_error err = {0};
  snprintf(name, sizeof name, "%s.gamma", c);
  float *g = fx_floats(fx, name, (size_t)ch);
  snprintf(name, sizeof name, "%s.beta", c);
  float *b = fx_floats(fx, name, (size_t)ch);
  memcpy(L->p, g, (size_t)ch * sizeof *g);
  memcpy(L->p + ch, b, (size_t)ch * sizeof *b);
  size_t count = (size_t)n * ch * h * w;
  float *dx = tu_fbuf(count), *x1 = NULL;
  for (int k = 1; k <= 3; k++) {
    snprintf(name, sizeof name, "%s.x%d", c, k);
    float *x = fx_floats(fx, name, count);
    assert_int_equal(nn_model_forward(m, x, NULL, n, NN_MODE_TRAIN, NULL, NULL, NULL, &err), NN_OK);
    snprintf(name, sizeof name, "%s.y%d", c, k);
    fx_assert_close_fd(name, m->act[1], fx_get(fx, name, NULL), count, 1e-5, 1e-5);
    snprintf(name, sizeof name, "%s.mm%d", c, k);
    fx_assert_close_fd(name, nn_state_ptr(L, 0), fx_get(fx, name, NULL), (size_t)ch, 1e-5, 1e-6);
    snprintf(name, sizeof name, "%s.mv%d", c, k);
    fx_assert_close_fd(name, nn_state_ptr(L, 1), fx_get(fx, name, NULL), (size_t)ch, 1e-5, 1e-6);
    if (!with_backward) {
      if (k == 1) x1 = x;
      else free(x);
      continue;
    }
    /* backward of sum(y * g) through the layer alone */
    snprintf(name, sizeof name, "%s.g%d", c, k);
    float *up = fx_floats(fx, name, count);
    nn_model_zero_grads(m);
    nn_layer_table[L->kind]->backward(L, m->act[0], m->act[1], up, dx, n, NN_MODE_TRAIN);
    snprintf(name, sizeof name, "%s.dx%d", c, k);
    fx_assert_close_fd(name, dx, fx_get(fx, name, NULL), count, 1e-4, 1e-5);
    snprintf(name, sizeof name, "%s.dgamma%d", c, k);
    fx_assert_close_fd(name, L->g, fx_get(fx, name, NULL), (size_t)ch, 1e-4, 1e-5);
    snprintf(name, sizeof name, "%s.dbeta%d", c, k);
    fx_assert_close_fd(name, L->g + ch, fx_get(fx, name, NULL), (size_t)ch, 1e-4, 1e-5);
    free(up);
    if (k == 1) x1 = x;
    else free(x);
  }
  assert_int_equal(nn_model_forward(m, x1, NULL, n, NN_MODE_EVAL, NULL, NULL, NULL, &err), NN_OK);
  snprintf(name, sizeof name, "%s.yeval", c);
  fx_assert_close_fd(name, m->act[1], fx_get(fx, name, NULL), count, 1e-5, 1e-5);
  free(x1), free(g), free(b), free(dx);
  nn_model_free(m);
}

static void test_batchnorm_vs_keras(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("keras_real.txt");
  bn_case(fx, "r2", 1);
  bn_case(fx, "r4", 1);
  fx_free(fx);
}

static void test_batchnorm_vs_keras_formulas(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("keras_bn.txt");
  bn_case(fx, "r2", 0);
  bn_case(fx, "r4", 0);
  fx_free(fx);
}

/* gen_keras_fixtures.py XorShift.sym: uniform in [-1, 1) from the top 24 bits. */
static double sym(tu_rng *r) { return 2.0 * ((double)(tu_rng_next(r) >> 40) / 16777216.0) - 1.0; }

/* The generator's initial tensors, drawn in state_dict order and normnet's layout. */
static void init_like_generator(nn_model *m, uint64_t seed) {
  tu_rng r = {seed};
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    if (L->kind == NN_LAYER_DENSE || L->kind == NN_LAYER_CONV2D) {
      double fan = L->kind == NN_LAYER_DENSE ? (double)L->in.c + L->out.c
                                             : (double)(L->in.c + L->cfg.conv.filters) * L->cfg.conv.kernel *
                                                   L->cfg.conv.kernel;
      double lim = sqrt(6.0 / fan);
      float *wt = nn_param_ptr(L, L->p, 0);
      for (size_t j = 0; j < L->param[0].count; j++) wt[j] = (float)(lim * sym(&r));
      if (L->nparam > 1) memset(nn_param_ptr(L, L->p, 1), 0, L->param[1].count * sizeof(float));
    } else if (L->kind == NN_LAYER_BATCHNORM) {
      float *gamma = nn_param_ptr(L, L->p, 0), *beta = nn_param_ptr(L, L->p, 1);
      for (int j = 0; j < L->in.c; j++) gamma[j] = (float)(1.0 + 0.2 * sym(&r));
      for (int j = 0; j < L->in.c; j++) beta[j] = (float)(0.1 * sym(&r));
      for (int j = 0; j < L->in.c; j++) nn_state_ptr(L, 0)[j] = 0.0f, nn_state_ptr(L, 1)[j] = 1.0f;
    }
  }
}

static float *read_bin(size_t *count) {
  char path[4096];
  snprintf(path, sizeof path, "%s/keras_adam.bin", getenv("NN_FIXTURES"));
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  *count = (size_t)bytes / 4;
  unsigned char *raw = malloc((size_t)bytes);
  assert_int_equal(fread(raw, 1, (size_t)bytes, f), (size_t)bytes);
  fclose(f);
  float *v = malloc(*count * sizeof *v);
  for (size_t i = 0; i < *count; i++) {
    uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
                 (uint32_t)raw[4 * i + 3] << 24;
    memcpy(&v[i], &u, sizeof u);
  }
  free(raw);
  return v;
}

/* Three Adam steps; returns the number of floats compared from want. */
static size_t adam_case(const nn_fixture *fx, const char *label, const char *preset, uint64_t seed, const float *want,
                        size_t avail) {
  const nn_preset *p = nn_preset_find(preset);
  nn_model *m = model_of(p->spec);
  init_like_generator(m, seed);
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  if (nn_optimizer_create(&p->opt, m, &opt, &err)) fail_msg("%s", err.msg);
  int n = 32;
  nn_dims in = nn_model_input_shape(m);
  size_t per = (size_t)in.c * in.h * in.w;
  float *x = tu_fbuf((size_t)n * per);
  int32_t labels[32];
  tu_rng data = {seed + 1};
  char name[64];
  snprintf(name, sizeof name, "%s.losses", label);
  const double *losses = fx_get(fx, name, NULL);
  for (int step = 0; step < 3; step++) {
    for (size_t i = 0; i < (size_t)n * per; i++) x[i] = (float)(tu_rng_next(&data) >> 56) / 255.0f;
    for (int i = 0; i < n; i++) labels[i] = (int32_t)((tu_rng_next(&data) >> 32) % 10);
    double loss_sum = 0;
    nn_model_zero_grads(m);
    assert_int_equal(nn_model_forward(m, x, labels, n, NN_MODE_TRAIN, &loss_sum, NULL, NULL, &err), NN_OK);
    assert_int_equal(nn_model_backward(m, &err), NN_OK);
    nn_optimizer_step(opt, m);
    double loss = loss_sum / n;
    if (fabs(loss - losses[step]) > 1e-5 * fabs(losses[step]))
      fail_msg("%s step %d: loss %.9g, Keras %.9g", label, step + 1, loss, losses[step]);
  }
  nn_model *m0 = model_of(p->spec); /* the initial tensors again, to compare updates */
  init_like_generator(m0, seed);
  size_t off = 0;
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v, v0;
    nn_model_tensor(m, t, &v);
    nn_model_tensor(m0, t, &v0);
    if (!v.data) continue;
    assert_true(off + v.count <= avail);
    double *ref = tu_dbuf(v.count);
    for (size_t i = 0; i < v.count; i++) ref[i] = want[off + i];
    char what[96];
    snprintf(what, sizeof what, "%s %s after 3 Adam steps", label, v.name);
    char *dot;
    long li = strtol(v.name, &dot, 10);
    if (!strcmp(dot, ".bias") && li + 1 < m->nlayers && m->layers[li + 1].kind == NN_LAYER_BATCHNORM) {
      /* The bias of a dense right before a batchnorm has a zero gradient in exact arithmetic
       * (BN subtracts the batch mean); both sides move it only by rounding noise that Adam
       * scales up to about lr * noise / eps per step: noise on both sides, checked to stay
       * that small rather than equal. */
      for (size_t i = 0; i < v.count; i++) {
        assert_true(fabs((double)v.data[i]) < 1e-4);
        assert_true(fabs(ref[i]) < 1e-4);
      }
    } else if (v.is_state) {
      fx_assert_close_fd(what, v.data, ref, v.count, 1e-4, 1e-6);
    } else {
      /* Each tensor's 3-step update within 1e-4 relative (L2), and no element off by more
       * than 1e-4 relative + 2e-5 (2% of one step of lr 1e-3: elements whose gradient is
       * near Adam's eps move by amounts that depend on summation order). */
      double num = 0, den = 0;
      for (size_t i = 0; i < v.count; i++) {
        double du = (double)v.data[i] - v0.data[i], dk = ref[i] - v0.data[i];
        num += (du - dk) * (du - dk);
        den += dk * dk;
      }
      assert_true(den > 0);
      if (sqrt(num / den) > 1e-4) fail_msg("%s: update differs from Keras's by %.3g (relative L2)", what, sqrt(num / den));
      fx_assert_close_fd(what, v.data, ref, v.count, 1e-4, 2e-5);
    }
    free(ref);
    off += v.count;
  }
  nn_model_free(m0);
  snprintf(name, sizeof name, "%s.count", label);
  assert_int_equal((size_t)fx_get(fx, name, NULL)[0], off);
  free(x);
  nn_optimizer_free(opt);
  nn_model_free(m);
  return off;
}

static void test_adam_steps_vs_keras(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("keras_real.txt");
  size_t avail;
  float *want = read_bin(&avail);
  size_t used = adam_case(fx, "mlp", "mlp", 1000, want, avail);
  used += adam_case(fx, "cifar", "cifar-cnn", 2000, want + used, avail - used);
  assert_int_equal(used, avail);
  free(want);
  fx_free(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_batchnorm_vs_keras),
                                     cmocka_unit_test(test_batchnorm_vs_keras_formulas),
                                     cmocka_unit_test(test_adam_steps_vs_keras)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
