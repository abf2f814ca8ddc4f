/* The public layer-kind and tensor-role enums that let the CLI ask "is this a norm / an
 * activation, is this gamma or a running mean" without matching strings:
 * - nn_layer_kind_is_norm / _is_activation agree with every kind's spec keyword;
 * - nn_layer_info.kind_id and nn_tensor_view.layer/role agree with the printed names for
 *   a spec with every kind that has tensors;
 * - the typed normalization choice and BN placement, and their CLI spellings;
 * - every buffer the kernels stream through starts on a 64-byte cache line (base/aligned.h),
 *   for batch sizes whose segments are not whole lines;
 * - a batch assembled in the model's own input buffer (the fit loop's, nn_evaluate's) is
 *   read there: the same logits and gradients as from a copy, and a batch larger than the
 *   buffer's plan is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "nn_test.h"
#include "model/model.h"
#include "normnet.h"

static void test_kind_families_match_keywords(void **state) {
  (void)state;
  int norms = 0, acts = 0;
  for (int k = 0; k < NN_LAYER__COUNT; k++) {
    const char *name = nn_layer_table[k]->name;
    int is_norm = strstr(name, "norm") != NULL;
    int is_act = !strcmp(name, "relu") || !strcmp(name, "sigmoid") || !strcmp(name, "tanh");
    if (nn_layer_kind_is_norm((nn_layer_kind)k) != is_norm) fail_msg("%s: is_norm is wrong", name);
    if (nn_layer_kind_is_activation((nn_layer_kind)k) != is_act) fail_msg("%s: is_activation is wrong", name);
    norms += is_norm, acts += is_act;
  }
  assert_int_equal(norms, 4);
  assert_int_equal(acts, 3);
}

static const char *const role_suffix[] = {
    [NN_TENSOR_WEIGHT] = "weight",
    [NN_TENSOR_BIAS] = "bias",
    [NN_TENSOR_RUNNING_MEAN] = "running_mean",
    [NN_TENSOR_RUNNING_VAR] = "running_var",
    [NN_TENSOR_BATCHES_TRACKED] = "num_batches_tracked",
};

static void test_info_and_tensor_roles(void **state) {
  (void)state;
  const char *text =
      "input shape=3x8x8\nconv2d filters=4 kernel=3\nbatchnorm\nrelu\ngroupnorm groups=2\n"
      "instancenorm affine=1 track_running_stats=1\nmaxpool2d size=2\nlayernorm\nflatten\n"
      "dense units=5\nsigmoid\ndropout rate=0.5\ndense units=3\n";
  nn_model *m = tu_model(text, 1);
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    assert_string_equal(nn_layer_table[li.kind_id]->name, li.kind);
  }
  int seen[5] = {0};
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    char want[48];
    snprintf(want, sizeof want, "%d.%s", v.layer, role_suffix[v.role]);
    assert_string_equal(v.name, want);
    assert_true(v.layer >= 0 && v.layer < nn_model_num_layers(m));
    seen[v.role]++;
  }
  for (int r = 0; r < 5; r++)
    if (!seen[r]) fail_msg("no tensor with role %s", role_suffix[r]);
  nn_model_free(m);
}

/* p on a cache line; layer i (< 0: the model's) at batch n (0: before any plan) */
static void assert_line(const void *p, const char *what, int i, int n) {
  const unsigned past = (unsigned)((uintptr_t)p % 64);
  if (past && i < 0) fail_msg("%s, batch %d: %u bytes past a cache line", what, n, past);
  if (past) fail_msg("%s of layer %d, batch %d: %u bytes past a cache line", what, i, n, past);
}

static void test_buffers_on_cache_lines(void **state) {
  (void)state;
  const char *text =
      "input shape=3x9x7\nconv2d filters=5 kernel=3\nbatchnorm\nrelu\ngroupnorm groups=5\n"
      "maxpool2d size=2\nlayernorm\nflatten\ndense units=7\nsigmoid\ndropout rate=0.5\ndense units=3\n";
  nn_error err = {0};
  nn_model *m = tu_model(text, 1);
  assert_line(m->params, "the parameters", -1, 0);
  assert_line(m->grads, "the gradients", -1, 0);
  assert_line(m->state, "the running statistics", -1, 0);
  static const int batches[] = {1, 3, 7, 33};
  for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
    const int n = batches[b];
    if (nn_model_plan(m, n, &err)) fail_msg("%s", err.msg);
    assert_line(m->act[0], "the input", -1, n);
    for (int i = 0; i < m->nlayers; i++) {
      assert_line(m->act[i + 1], "the output", i, n);
      assert_line(m->dact[i], "the input gradient", i, n);
      assert_line(m->layers[i].scratch, "the scratch", i, n);
    }
    assert_line(m->dact[m->nlayers], "the logits' gradient", -1, n);
    assert_line(m->probs, "the probabilities", -1, n);
    assert_line(m->labels, "the labels", -1, n);
  }
  nn_model_free(m);
}

/* One training forward and backward of n samples from x: the loss sum, the logits and the
 * gradients (zeroed first) copied out. */
static double train_pass(nn_model *m, const float *x, const int32_t *y, int n, float *logits, float *grads) {
  nn_error err = {0};
  double loss = 0;
  const float *z = NULL;
  nn_model_zero_grads(m);
  if (nn_model_forward(m, x, y, n, NN_MODE_TRAIN, &loss, NULL, &z, &err) || nn_model_backward(m, &err))
    fail_msg("%s", err.msg);
  memcpy(logits, z, (size_t)n * 3 * sizeof *logits);
  memcpy(grads, nn_model_grads(m), nn_model_param_count(m) * sizeof *grads);
  return loss;
}

static void test_input_in_place(void **state) {
  (void)state;
  const char *text = "input shape=2x6x6\nconv2d filters=4 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=3\n";
  enum { N = 5,
         IN = 2 * 6 * 6 };
  nn_model *m = tu_model(text, 3);
  nn_error err = {0};
  nn_rng r;
  nn_rng_seed(&r, 11);
  float *x = tu_fbuf((size_t)N * IN), *l1 = tu_fbuf(N * 3), *l2 = tu_fbuf(N * 3);
  const size_t np = nn_model_param_count(m);
  float *g1 = tu_fbuf(np), *g2 = tu_fbuf(np);
  tu_fill_normal(&r, x, (size_t)N * IN, 1.0, 0.0);
  int32_t y[N] = {0, 2, 1, 1, 0};
  if (nn_model_plan(m, N, &err)) fail_msg("%s", err.msg);
  /* the running statistics move with each training forward: both passes start from the same */
  float *st0 = tu_fbuf(m->nstate);
  memcpy(st0, m->state, m->nstate * sizeof *st0);
  const double a = train_pass(m, x, y, N, l1, g1);
  assert_true(memcmp(m->act[0], x, (size_t)N * IN * sizeof *x) == 0); /* copied there */
  memcpy(m->state, st0, m->nstate * sizeof *st0);
  tu_fill_f(m->act[0], (size_t)N * IN, 0.0f);
  memcpy(m->act[0], x, (size_t)N * IN * sizeof *x); /* assembled in place */
  const double b = train_pass(m, m->act[0], y, N, l2, g2);
  assert_true(a == b);
  assert_memory_equal(l1, l2, N * 3 * sizeof *l1);
  assert_memory_equal(g1, g2, np * sizeof *g1);
  /* more samples than the input buffer was planned for: refused, nothing planned anew */
  float *in = m->act[0];
  const nn_status st = nn_model_forward(m, in, NULL, N + 1, NN_MODE_EVAL, NULL, NULL, NULL, &err);
  assert_int_equal(st, NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "planned for 5"));
  assert_ptr_equal(m->act[0], in);
  assert_int_equal(m->plan_n, N);
  free(x), free(l1), free(l2), free(g1), free(g2), free(st0);
  nn_model_free(m);
}

static void test_norm_choice_and_placement(void **state) {
  (void)state;
  nn_error err = {0};
  nn_norm_choice c;
  assert_int_equal(nn_norm_parse("group:4", &c, &err), NN_OK);
  assert_int_equal(c.kind, NN_NORM_GROUP);
  assert_int_equal(c.groups, 4);
  assert_int_equal(nn_norm_parse("none", &c, &err), NN_OK);
  assert_int_equal(c.kind, NN_NORM_NONE);
  assert_int_equal(nn_norm_parse("group:0", &c, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "group:0"));
  assert_int_equal(nn_norm_parse("batchnorm", &c, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "batchnorm"));
  nn_bn_placement p;
  assert_int_equal(nn_bn_placement_parse("after", &p, &err), NN_OK);
  assert_int_equal(p, NN_BN_AFTER_ACTIVATION);
  assert_int_equal(nn_bn_placement_parse("later", &p, &err), NN_ERR_ARG);

  /* the typed calls: the string ones are parse + apply, so both give the same spec */
  nn_spec *a = NULL, *b = NULL;
  const char *text = "input shape=1x8x8\nconv2d filters=4 kernel=3 bias=0\nbatchnorm\nrelu\nflatten\ndense units=3\n";
  assert_int_equal(nn_spec_parse(text, "a", &a, &err), NN_OK);
  assert_int_equal(nn_spec_parse(text, "b", &b, &err), NN_OK);
  assert_int_equal(nn_spec_apply_norm(a, (nn_norm_choice){.kind = NN_NORM_GROUP, .groups = 2}, &err), NN_OK);
  assert_int_equal(nn_spec_set_norm(b, "group:2", &err), NN_OK);
  nn_spec_apply_bn_placement(a, NN_BN_AFTER_ACTIVATION);
  assert_int_equal(nn_spec_set_bn_placement(b, "after", &err), NN_OK);
  char *ta = nn_spec_to_text(a), *tb = nn_spec_to_text(b);
  assert_string_equal(ta, tb);
  assert_true(strstr(ta, "relu") < strstr(ta, "groupnorm groups=2")); /* moved after the activation */
  /* the combined spelling NORM@PLACEMENT does both in one call */
  nn_spec *c2 = NULL;
  assert_int_equal(nn_spec_parse(text, "c", &c2, &err), NN_OK);
  assert_int_equal(nn_spec_set_norm(c2, "group:2@after", &err), NN_OK);
  char *tc = nn_spec_to_text(c2);
  assert_string_equal(ta, tc);
  free(tc);
  assert_int_equal(nn_spec_set_norm(c2, "group:2@later", &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "later"));
  assert_int_equal(nn_spec_set_norm(c2, "groupp:2@after", &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "groupp:2"));
  nn_spec_free(c2);
  free(ta), free(tb);
  assert_int_equal(nn_spec_apply_norm(a, (nn_norm_choice){.kind = NN_NORM_GROUP, .groups = 0}, &err), NN_ERR_ARG);
  /* a kind none of the enum's is refused, the spec unchanged (it fell through to "none" and
   * removed every BatchNorm) */
  char *before = nn_spec_to_text(a), *after = NULL;
  assert_int_equal(nn_spec_apply_norm(a, (nn_norm_choice){.kind = (nn_norm_kind)77}, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "kind 77"));
  after = nn_spec_to_text(a);
  assert_string_equal(before, after);
  free(before), free(after);
  nn_spec_free(a), nn_spec_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kind_families_match_keywords),
      cmocka_unit_test(test_info_and_tensor_roles),
      cmocka_unit_test(test_norm_choice_and_placement),
      cmocka_unit_test(test_buffers_on_cache_lines),
      cmocka_unit_test(test_input_in_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
