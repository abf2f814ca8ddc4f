/* Results per class (src/train/metrics.c):
 * - the confusion matrix of a trained-from-seed model: it sums to the sample count, each
 *   row to the number of samples with that label, its diagonal to the correct count; loss
 *   and accuracy equal nn_evaluate's; per-class accuracy is the diagonal over the row;
 * - a model that always predicts class 1 (zero weights, bias favouring 1) puts every sample
 *   in column 1: class 1's accuracy is 1, the others' 0, an empty class's NaN;
 * - a data set that does not fit the model is refused;
 * - class names come with the data source and survive a validation split. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "data/dataset.h"
#include "nn_test.h"

#define N 97
#define K 4

static nn_dataset *make_data(int classes_used) {
  nn_dataset *ds = NULL;
  nn_error err = {0};
  assert_int_equal(nn_dataset_new(N, 1, 3, 3, K, "test", &ds, &err), NN_OK);
  tu_rng r = {12345};
  for (int i = 0; i < N; i++) {
    ds->labels[i] = (int32_t)(tu_rng_next(&r) % (uint64_t)classes_used);
    for (int p = 0; p < 9; p++) /* pixel p is bright for label p % K: learnable but noisy */
      ds->images[(size_t)i * 9 + p] = (uint8_t)((p % K == ds->labels[i] ? 150 : 0) + tu_rng_next(&r) % 100);
  }
  return ds;
}

static nn_model *make_model(void) {
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  assert_int_equal(nn_spec_parse("input shape=1x3x3\nflatten\ndense units=4\n", "t", &spec, &err), NN_OK);
  assert_int_equal(nn_model_create(spec, &m, &err), NN_OK);
  nn_spec_free(spec);
  nn_rng rng;
  nn_rng_seed(&rng, 7);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  return m;
}

static void test_sums_and_diagonal(void **state) {
  (void)state;
  nn_dataset *ds = make_data(K);
  nn_model *m = make_model();
  nn_input_norm norm = {0.5f, 0.5f};
  nn_confusion cm;
  nn_error err = {0};
  assert_int_equal(nn_model_first_bad_output(m, NULL, NULL), -1); /* before any forward (it aborted) */
  assert_int_equal(nn_evaluate_confusion(m, ds, norm, 10, NN_MODE_EVAL, &cm, &err), NN_OK);
  assert_int_equal(cm.classes, K);
  assert_int_equal(cm.samples, N);
  long total = 0, diag = 0, rows[K] = {0}, labels[K] = {0};
  for (int t = 0; t < K; t++)
    for (int p = 0; p < K; p++) {
      long v = cm.counts[t * K + p];
      assert_true(v >= 0);
      total += v, rows[t] += v;
      if (t == p) diag += v;
    }
  for (int i = 0; i < N; i++) labels[ds->labels[i]]++;
  assert_int_equal(total, N);
  for (int t = 0; t < K; t++) {
    assert_int_equal(rows[t], labels[t]);
    double want = rows[t] ? (double)cm.counts[t * K + t] / rows[t] : NAN;
    assert_true(rows[t] ? nn_confusion_class_accuracy(&cm, t) == want : isnan(nn_confusion_class_accuracy(&cm, t)));
  }
  double loss, acc;
  assert_int_equal(nn_evaluate(m, ds, norm, 10, NN_MODE_EVAL, &loss, &acc, &err), NN_OK);
  assert_true(fabs(acc - (double)diag / N) < 1e-12);
  assert_true(fabs(cm.accuracy - acc) < 1e-12);
  assert_true(fabs(cm.loss - loss) < 1e-9 * fabs(loss));
  assert_true(isnan(nn_confusion_class_accuracy(&cm, K)));
  nn_confusion_free(&cm);
  nn_confusion_free(NULL); /* as free(NULL) (it crashed) */
  /* indexes out of range give nothing (they aborted the process) */
  assert_int_equal(nn_dataset_label(ds, N), -1);
  assert_null(nn_dataset_image(ds, -1));
  nn_tensor_view v;
  nn_model_tensor(m, nn_model_num_tensors(m), &v);
  assert_null(v.data);
  assert_int_equal(v.count, 0);
  nn_model_free(m);
  nn_dataset_free(ds);
  /* a history's rows outside its count are NULL (a pointer past the rows came back) */
  nn_history *h = nn_history_create();
  nn_epoch_record rec = {.epoch = 1, .test_acc = 0.5};
  assert_null(nn_history_get(h, 0));
  assert_int_equal(nn_history_append(h, &rec, &err), NN_OK);
  assert_non_null(nn_history_get(h, 0));
  assert_null(nn_history_get(h, 1));
  assert_null(nn_history_get(h, -1));
  nn_history_free(h);
}

static void test_constant_predictor(void **state) {
  (void)state;
  nn_dataset *ds = make_data(3); /* class 3 has no samples */
  nn_model *m = make_model();
  float *p = nn_model_params(m);
  memset(p, 0, nn_model_param_count(m) * sizeof *p);
  p[nn_model_param_count(m) - K + 1] = 1.0f; /* bias of output 1 */
  nn_confusion cm;
  nn_error err = {0};
  assert_int_equal(nn_evaluate_confusion(m, ds, (nn_input_norm){0, 1}, 64, NN_MODE_EVAL, &cm, &err), NN_OK);
  for (int t = 0; t < K; t++)
    for (int q = 0; q < K; q++)
      if (q != 1) assert_int_equal(cm.counts[t * K + q], 0);
  assert_true(nn_confusion_class_accuracy(&cm, 1) == 1.0);
  assert_true(nn_confusion_class_accuracy(&cm, 0) == 0.0);
  assert_true(nn_confusion_class_accuracy(&cm, 2) == 0.0);
  assert_true(isnan(nn_confusion_class_accuracy(&cm, 3)));
  nn_confusion_free(&cm);
  nn_model_free(m);
  nn_dataset_free(ds);
}

static void test_refusals(void **state) {
  (void)state;
  nn_dataset *ds = make_data(K);
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  assert_int_equal(nn_spec_parse("input shape=1x2x2\nflatten\ndense units=4\n", "t", &spec, &err), NN_OK);
  assert_int_equal(nn_model_create(spec, &m, &err), NN_OK);
  nn_confusion cm;
  assert_int_equal(nn_evaluate_confusion(m, ds, (nn_input_norm){0, 1}, 8, NN_MODE_EVAL, &cm, &err), NN_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "1x3x3"));
  assert_null(cm.counts);
  assert_int_equal(nn_evaluate_confusion(m, ds, (nn_input_norm){0, 1}, 0, NN_MODE_EVAL, &cm, &err), NN_ERR_ARG);
  nn_model_free(m);
  nn_spec_free(spec);
  nn_dataset_free(ds);
}

static void test_class_names(void **state) {
  (void)state;
  assert_string_equal(nn_data_source_class_name("fashion-mnist", 0), "T-shirt/top");
  assert_string_equal(nn_data_source_class_name("fashion-mnist", 9), "Ankle boot");
  assert_string_equal(nn_data_source_class_name("cifar10:/any", 9), "truck");
  assert_string_equal(nn_data_source_class_name("mnist:/any", 7), "7");
  assert_null(nn_data_source_class_name("idx:/any", 0));
  assert_null(nn_data_source_class_name("fashion-mnist", 10));
  assert_null(nn_data_source_class_name("fashion-mnist", -1));
  nn_dataset *ds = NULL, *tr = NULL, *va = NULL;
  nn_error err = {0};
  assert_int_equal(nn_dataset_open("fashion-mnist", NN_SPLIT_TEST, &ds, &err), NN_OK);
  assert_string_equal(nn_dataset_class_name(ds, 3), "Dress");
  assert_null(nn_dataset_class_name(ds, 10));
  assert_int_equal(nn_dataset_split(ds, 0.1, &tr, &va, &err), NN_OK);
  assert_string_equal(nn_dataset_class_name(va, 8), "Bag");
  nn_dataset_free(tr), nn_dataset_free(va), nn_dataset_free(ds);
  ds = make_data(K); /* made here, not by a named source */
  assert_null(nn_dataset_class_name(ds, 0));
  nn_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_class_names),
      cmocka_unit_test(test_sums_and_diagonal),
      cmocka_unit_test(test_constant_predictor),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
