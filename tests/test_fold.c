/* nn_model_fold (ARCHITECTURE.md §4): batchnorm folded into the dense/conv2d before it.
 * - lenet (conv/dense with bias, PyTorch BN) and cifar-cnn (bias=0 before Keras BN), with
 *   random weights, random gamma/beta and running statistics moved by training forwards:
 *   eval-mode logits of the folded model equal the original's (rtol 1e-5, atol 1e-5);
 * - the folded model has no batchnorm, the expected parameter count, and a spec that
 *   round-trips through text;
 * - affine=0, use_global_stats, cumulative momentum and a trailing BN fold too;
 * - refusals name the layer: BN after an activation, BN first, track_running_stats=0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "normnet.h"

static nn_model *build(const char *text, nn_init init, uint64_t seed) {
  nn_error err = {0};
  nn_spec *s = NULL;
  nn_model *m = NULL;
  if (nn_spec_parse(text, "fold.spec", &s, &err) || nn_model_create(s, &m, &err)) fail_msg("%s", err.msg);
  nn_spec_free(s);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_model_init(m, init, &rng);
  return m;
}

static float *random_batch(nn_rng *r, int n, int in, double scale, double off) {
  float *x = malloc((size_t)n * (size_t)in * sizeof *x);
  assert_non_null(x);
  for (size_t i = 0; i < (size_t)n * (size_t)in; i++) x[i] = (float)(off + scale * nn_rng_normal(r));
  return x;
}

static int count_kind(const nn_model *m, const char *kind) {
  int k = 0;
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    k += strcmp(li.kind, kind) == 0;
  }
  return k;
}

/* Give every BN random gamma/beta and move its running statistics with training forwards. */
static void perturb_bn(nn_model *m, nn_rng *r) {
  int nt = nn_model_num_tensors(m);
  int layer_is_bn[256] = {0};
  for (int i = 0; i < nn_model_num_layers(m) && i < 256; i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    layer_is_bn[i] = strcmp(li.kind, "batchnorm") == 0;
  }
  for (int t = 0; t < nt; t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    int layer = atoi(v.name);
    if (!layer_is_bn[layer] || v.is_state || !v.data) continue;
    int is_weight = strstr(v.name, ".weight") != NULL;
    for (size_t i = 0; i < v.count; i++)
      v.data[i] = is_weight ? (float)(0.5 + nn_rng_uniform(r)) : (float)(nn_rng_uniform(r) - 0.5);
  }
  int in = nn_model_input_size(m);
  nn_error err = {0};
  for (int step = 0; step < 4; step++) {
    float *x = random_batch(r, 16, in, 0.8 + 0.3 * step, 0.2 * step - 0.3);
    if (nn_model_forward(m, x, NULL, 16, NN_MODE_TRAIN, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
    free(x);
  }
}

/* Number of BN parameters (gamma and beta, not the running statistics) of m. */
static size_t bn_params(nn_model *m) {
  size_t k = 0;
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    nn_layer_info li;
    nn_model_layer_info(m, atoi(v.name), &li);
    if (strcmp(li.kind, "batchnorm") == 0 && !v.is_state) k += v.count;
  }
  return k;
}

/* Fold m, check structure and equal eval logits; returns the max abs logit difference. */
static double fold_and_compare(nn_model *m, size_t added_biases, size_t bn_gamma_beta, uint64_t seed) {
  nn_error err = {0};
  nn_model *f = NULL;
  size_t orig_params = nn_model_param_count(m);
  float *before = malloc(orig_params * sizeof *before);
  assert_non_null(before);
  memcpy(before, nn_model_params(m), orig_params * sizeof *before);
  if (nn_model_fold(m, &f, &err)) fail_msg("fold failed: %s", err.msg);
  assert_non_null(f);
  assert_memory_equal(before, nn_model_params(m), orig_params * sizeof *before); /* m untouched */
  free(before);

  assert_int_equal(count_kind(f, "batchnorm"), 0);
  assert_int_equal(nn_model_num_layers(f), nn_model_num_layers(m) - count_kind(m, "batchnorm"));
  assert_int_equal(nn_model_param_count(f), orig_params - bn_gamma_beta + added_biases);
  assert_int_equal(nn_model_state_count(f), 0);
  assert_int_equal(nn_model_input_size(f), nn_model_input_size(m));
  assert_int_equal(nn_model_output_size(f), nn_model_output_size(m));

  /* the spec round-trips through text */
  char *text = nn_spec_to_text(nn_model_spec(f));
  nn_spec *s2 = NULL;
  nn_model *m2 = NULL;
  if (nn_spec_parse(text, "folded", &s2, &err) || nn_model_create(s2, &m2, &err))
    fail_msg("folded spec does not parse: %s\n%s", err.msg, text);
  char *text2 = nn_spec_to_text(s2);
  assert_string_equal(text, text2);
  assert_null(strstr(text, "batchnorm"));
  assert_int_equal(nn_model_param_count(m2), nn_model_param_count(f));
  free(text), free(text2);
  nn_spec_free(s2);
  nn_model_free(m2);

  nn_rng r;
  nn_rng_seed(&r, seed);
  int n = 37, k = nn_model_output_size(m), in = nn_model_input_size(m);
  float *x = random_batch(&r, n, in, 1.0, 0.0);
  const float *zm = NULL, *zf = NULL;
  if (nn_model_forward(m, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &zm, &err)) fail_msg("%s", err.msg);
  float *want = malloc((size_t)n * k * sizeof *want);
  assert_non_null(want);
  memcpy(want, zm, (size_t)n * k * sizeof *want);
  if (nn_model_forward(f, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &zf, &err)) fail_msg("%s", err.msg);
  double maxdiff = 0, maxabs = 0;
  for (int i = 0; i < n * k; i++) {
    double d = fabs((double)zf[i] - (double)want[i]);
    if (d > maxdiff) maxdiff = d;
    if (fabs((double)want[i]) > maxabs) maxabs = fabs((double)want[i]);
    if (!(d <= 1e-5 + 1e-5 * fabs((double)want[i])))
      fail_msg("logit %d: folded %.9g, original %.9g (diff %.3g)", i, (double)zf[i], (double)want[i], d);
  }
  print_message("fold: max |logit diff| %.3g (max |logit| %.3g) over %d x %d\n", maxdiff, maxabs, n, k);
  free(want);
  free(x);
  nn_model_free(f);
  return maxdiff;
}

static void test_fold_lenet(void **state) {
  (void)state;
  const nn_preset *p = nn_preset_find("lenet");
  assert_non_null(p);
  nn_model *m = build(p->spec, p->init, 11);
  nn_rng r;
  nn_rng_seed(&r, 12);
  perturb_bn(m, &r);
  /* lenet: BN after conv(6), conv(16), dense(120), dense(84); every one keeps its bias */
  size_t gb = 2 * (6 + 16 + 120 + 84);
  assert_int_equal(bn_params(m), gb);
  fold_and_compare(m, 0, gb, 13);
  nn_model_free(m);
}

static void test_fold_cifar_no_bias(void **state) {
  (void)state;
  const nn_preset *p = nn_preset_find("cifar-cnn");
  assert_non_null(p);
  nn_model *m = build(p->spec, NN_INIT_DEFAULT, 21);
  nn_rng r;
  nn_rng_seed(&r, 22);
  perturb_bn(m, &r);
  size_t gb = 2 * (32 + 64 + 64);
  assert_int_equal(bn_params(m), gb);
  fold_and_compare(m, 32 + 64 + 64, gb, 23);
  /* the layers BN was folded into gained bias=1 */
  nn_error err = {0};
  nn_model *f = NULL;
  if (nn_model_fold(m, &f, &err)) fail_msg("%s", err.msg);
  char *text = nn_spec_to_text(nn_model_spec(f));
  assert_null(strstr(text, "bias=0"));
  free(text);
  nn_model_free(f);
  nn_model_free(m);
}

static void test_fold_variants(void **state) {
  (void)state;
  /* affine=0, use_global_stats (irrelevant in eval), cumulative momentum, Keras eps, and a
   * BN as the very last layer */
  const char *spec =
      "input shape=2x9x9\n"
      "conv2d filters=5 kernel=3 bias=0\n"
      "batchnorm affine=0 momentum=0.3\n"
      "relu\n"
      "conv2d filters=4 kernel=3 stride=2 pad=1\n"
      "batchnorm momentum=cumulative eps=1e-3\n"
      "tanh\n"
      "flatten\n"
      "dense units=7\n"
      "batchnorm convention=keras\n"
      "sigmoid\n"
      "dense units=6 bias=0\n"
      "batchnorm affine=0 eps=0.01\n";
  nn_model *m = build(spec, NN_INIT_DEFAULT, 31);
  nn_rng r;
  nn_rng_seed(&r, 32);
  perturb_bn(m, &r);
  fold_and_compare(m, 5 + 6, 2 * (4 + 7), 33);
  nn_model_free(m);

  /* frozen BN (use_global_stats, freeze_affine): running stats given by hand */
  const char *frozen =
      "input shape=12\n"
      "dense units=8\n"
      "batchnorm use_global_stats=1 freeze_affine=1\n"
      "relu\n"
      "dense units=3\n";
  m = build(frozen, NN_INIT_DEFAULT, 41);
  float *st = nn_model_state(m);
  for (int i = 0; i < 8; i++) st[i] = (float)(0.1 * i - 0.3), st[8 + i] = (float)(0.05 + 0.4 * i);
  nn_rng_seed(&r, 42);
  perturb_bn(m, &r); /* running stats stay (use_global_stats); gamma/beta random */
  fold_and_compare(m, 0, 16, 43);
  nn_model_free(m);
}

static void expect_refusal(const char *spec, const char *needle1, const char *needle2) {
  nn_model *m = build(spec, NN_INIT_DEFAULT, 51);
  static char sentinel;
  nn_model *f = (nn_model *)(void *)&sentinel; /* must be reset to NULL */
  nn_error err = {0};
  nn_status st = nn_model_fold(m, &f, &err);
  if (st != NN_ERR_ARG) fail_msg("status %d (%s), want NN_ERR_ARG for:\n%s", st, err.msg, spec);
  assert_null(f);
  if (!strstr(err.msg, needle1)) fail_msg("message '%s' lacks '%s'", err.msg, needle1);
  if (needle2 && !strstr(err.msg, needle2)) fail_msg("message '%s' lacks '%s'", err.msg, needle2);
  nn_model_free(m);
}

static void test_fold_refusals(void **state) {
  (void)state;
  expect_refusal("input shape=10\ndense units=8\nrelu\nbatchnorm\ndense units=3\n", "layer 2 (batchnorm, line 4)",
                 "placed after relu; only BN right after dense/conv2d can be folded");
  expect_refusal(
      "input shape=1x8x8\nconv2d filters=3 kernel=3\nbatchnorm\nrelu\nmaxpool2d size=2\nbatchnorm\n"
      "flatten\ndense units=2\n",
      "layer 4 (batchnorm, line 6)", "placed after maxpool2d");
  expect_refusal("input shape=10\ndense units=8\nbatchnorm track_running_stats=0\nrelu\ndense units=3\n",
                 "layer 1 (batchnorm, line 3)", "track_running_stats=0");
  expect_refusal("input shape=10\n# leading BN\nbatchnorm\ndense units=3\n", "layer 0 (batchnorm, line 3)",
                 "first layer");
  expect_refusal("input shape=10\ndense units=8\nbatchnorm\nbatchnorm\ndense units=3\n", "layer 2 (batchnorm, line 4)",
                 "placed after batchnorm");
}

static void test_fold_without_bn(void **state) {
  (void)state;
  /* nothing to fold: an identical copy */
  nn_model *m = build("input shape=6\ndense units=5\nrelu\ndense units=3\n", NN_INIT_DEFAULT, 61);
  double d = fold_and_compare(m, 0, 0, 62);
  assert_true(d == 0.0);
  nn_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fold_lenet),
      cmocka_unit_test(test_fold_cifar_no_bias),
      cmocka_unit_test(test_fold_variants),
      cmocka_unit_test(test_fold_refusals),
      cmocka_unit_test(test_fold_without_bn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
