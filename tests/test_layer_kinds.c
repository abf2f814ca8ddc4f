/* The public layer-kind and tensor-role enums that let the CLI ask "is this a norm / an
 * activation, is this gamma or a running mean" without matching strings:
 * - nn_layer_kind_is_norm / _is_activation agree with every kind's spec keyword;
 * - nn_layer_info.kind_id and nn_tensor_view.layer/role agree with the printed names for
 *   a spec with every kind that has tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
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
  const char *text = "input shape=3x8x8\nconv2d filters=4 kernel=3\nbatchnorm\nrelu\ngroupnorm groups=2\n"
                     "instancenorm affine=1 track_running_stats=1\nmaxpool2d size=2\nlayernorm\nflatten\n"
                     "dense units=5\nsigmoid\ndropout rate=0.5\ndense units=3\n";
  nn_error err = {0};
  nn_spec *s = NULL;
  nn_model *m = NULL;
  if (nn_spec_parse(text, "kinds.spec", &s, &err) || nn_model_create(s, &m, &err)) fail_msg("%s", err.msg);
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
  nn_spec_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kind_families_match_keywords),
      cmocka_unit_test(test_info_and_tensor_roles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
