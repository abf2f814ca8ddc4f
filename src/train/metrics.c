/* Results per class: the confusion matrix of a model on a data set (rows: true label,
 * columns: predicted class, the argmax of the logits with the first maximum winning, as
 * nn_model_forward counts "correct"), with the mean loss and accuracy of the same pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/model.h"

nn_status nn_evaluate_confusion(nn_model *m, const nn_dataset *ds, nn_input_norm norm, int batch_size, nn_mode mode,
                                nn_confusion *out, nn_error *err) {
  memset(out, 0, sizeof *out);
  if (batch_size < 1) return nn_err_set(err, NN_ERR_ARG, "batch size must be >= 1, got %d", batch_size);
  if (nn_input_norm_check(norm, err)) return NN_ERR_ARG;
  nn_status cst = nn_model_check_data(m, ds, err); /* its shape, not only its value count */
  if (cst) return cst;
  nn_dims d = nn_dataset_shape(ds);
  int n = nn_dataset_count(ds), k = nn_model_output_size(m), c = d.c, h = d.h, w = d.w;
  int b = batch_size < n ? batch_size : (n ? n : 1);
  float *x = malloc((size_t)b * c * h * w * sizeof *x);
  int32_t *y = malloc((size_t)b * sizeof *y);
  uint32_t *idx = malloc((size_t)b * sizeof *idx);
  out->counts = calloc((size_t)k * k, sizeof *out->counts);
  nn_status st = x && y && idx && out->counts ? NN_OK : nn_err_set(err, NN_ERR_NOMEM, "out of memory for evaluation");
  double sum = 0;
  long right = 0;
  out->classes = k;
  for (int start = 0; !st && start < n; start += b) {
    int cnt = n - start < b ? n - start : b;
    for (int i = 0; i < cnt; i++) idx[i] = (uint32_t)(start + i);
    nn_dataset_batch(ds, idx, cnt, norm, x, y);
    double ls;
    const float *z;
    st = nn_model_forward_lean(m, x, y, cnt, mode, &ls, NULL, &z, err);
    if (st) break;
    sum += ls;
    for (int i = 0; i < cnt; i++) {
      int best = 0;
      for (int j = 1; j < k; j++)
        if (z[(size_t)i * k + j] > z[(size_t)i * k + best]) best = j;
      out->counts[(size_t)y[i] * k + best]++;
      right += best == y[i];
    }
  }
  free(x), free(y), free(idx);
  if (st) {
    nn_confusion_free(out);
    return st;
  }
  out->samples = n;
  out->loss = n ? sum / n : 0;
  out->accuracy = n ? (double)right / n : 0;
  return NN_OK;
}

double nn_confusion_class_accuracy(const nn_confusion *cm, int cls) {
  if (cls < 0 || cls >= cm->classes) return NAN;
  long row = 0;
  for (int j = 0; j < cm->classes; j++) row += cm->counts[(size_t)cls * cm->classes + j];
  return row ? (double)cm->counts[(size_t)cls * cm->classes + cls] / (double)row : NAN;
}

void nn_confusion_free(nn_confusion *cm) {
  if (!cm) return;
  free(cm->counts);
  memset(cm, 0, sizeof *cm);
}
