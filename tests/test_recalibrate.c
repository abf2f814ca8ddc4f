/* nn_model_recalibrate: the running statistics become exactly the cumulative average of
 * the batch statistics (mean of batch means, mean of unbiased batch variances), weights
 * unchanged, conventions restored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/rng.h"
#include "data/dataset.h"
#include "normnet.h"

enum { N = 24,
       C = 3,
       BATCH = 6,
       BATCHES = 3 };

static void test_cumulative_statistics(void **state) {
  (void)state;
  nn_error err = {0};
  nn_dataset *ds = NULL;
  assert_int_equal(nn_dataset_new(N, C, 1, 1, 10, "synthetic", &ds, &err), NN_OK);
  for (int i = 0; i < N; i++) {
    ds->labels[i] = i % 10;
    for (int k = 0; k < C; k++) ds->images[(size_t)i * C + k] = (uint8_t)((i * 37 + k * 101) % 256);
  }
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  assert_int_equal(nn_spec_parse("input shape=3\nbatchnorm convention=keras\ndense units=2\n", "t", &spec, &err), NN_OK);
  assert_int_equal(nn_model_create(spec, &m, &err), NN_OK);
  nn_rng r;
  nn_rng_seed(&r, 3);
  nn_model_init(m, NN_INIT_DEFAULT, &r);
  /* stale statistics */
  float *st = nn_model_state(m);
  for (int k = 0; k < 2 * C; k++) st[k] = 5.0f + (float)k;
  size_t np = nn_model_param_count(m);
  float *before = malloc(np * sizeof *before);
  memcpy(before, nn_model_params(m), np * sizeof *before);
  nn_input_norm norm = {0.5f, 0.25f};
  const nn_recalibrate_config cfg = {.batch_size = BATCH, .batches = BATCHES, .seed = 9};
  assert_int_equal(nn_model_recalibrate(m, ds, norm, &cfg, &err), NN_OK);
  /* expected: replay the same shuffle and average the batch statistics in double */
  uint32_t order[N];
  for (int i = 0; i < N; i++) order[i] = (uint32_t)i;
  nn_rng_seed(&r, 9);
  nn_rng_shuffle(&r, order, N);
  double em[C] = {0}, ev[C] = {0};
  for (int b = 0; b < BATCHES; b++) {
    float x[BATCH * C];
    nn_dataset_batch(ds, order + b * BATCH, BATCH, norm, x, NULL);
    for (int k = 0; k < C; k++) {
      double s = 0, s2 = 0;
      for (int i = 0; i < BATCH; i++) s += x[i * C + k];
      double mu = s / BATCH;
      for (int i = 0; i < BATCH; i++) s2 += (x[i * C + k] - mu) * (x[i * C + k] - mu);
      em[k] += mu / BATCHES;
      ev[k] += s2 / (BATCH - 1) / BATCHES; /* cumulative averages use the unbiased variance... */
    }
  }
  /* ...except under the Keras convention, which keeps the biased one */
  for (int k = 0; k < C; k++) ev[k] *= (double)(BATCH - 1) / BATCH;
  for (int k = 0; k < C; k++) {
    if (fabs(st[k] - em[k]) > 1e-5 * (1 + fabs(em[k]))) fail_msg("running_mean[%d] %g, want %g", k, st[k], em[k]);
    if (fabs(st[C + k] - ev[k]) > 1e-5 * (1 + ev[k])) fail_msg("running_var[%d] %g, want %g", k, st[C + k], ev[k]);
  }
  assert_memory_equal(before, nn_model_params(m), np * sizeof *before);
  nn_tensor_view v;
  nn_model_tensor(m, 4, &v); /* 0.num_batches_tracked */
  assert_non_null(v.count_value);
  assert_int_equal(*v.count_value, BATCHES);
  char *text = nn_spec_to_text(nn_model_spec(m));
  assert_non_null(strstr(text, "momentum=0.99")); /* the convention survives */
  free(text);
  /* errors */
  const nn_recalibrate_config too_many = {.batch_size = BATCH, .batches = 100, .seed = 9};
  assert_int_equal(nn_model_recalibrate(m, ds, norm, &too_many, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "samples"));
  assert_int_equal(nn_model_recalibrate(m, ds, norm, NULL, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "configuration"));
  free(before);
  nn_model_free(m);
  nn_spec_free(spec);
  nn_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_cumulative_statistics)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
