/* Recalibrate BN running statistics: forget them and re-estimate them as the cumulative
 * average (PyTorch momentum=None) of the batch statistics of N training batches, with
 * the weights fixed. For models whose statistics are stale: a slow momentum (Keras 0.99)
 * early in training, or weights changed after the statistics were collected. */
#include <stdlib.h>

#include "base/error.h"
#include "base/rng.h"
#include "model/model.h"
#include "train/fit.h"

nn_status nn_model_recalibrate(nn_model *m, const nn_dataset *ds, nn_input_norm norm, const nn_recalibrate_config *cfg,
                               nn_error *err) {
  if (!cfg) return nn_err_set(err, NN_ERR_ARG, "recalibration needs its configuration (NULL given)");
  const int batch = cfg->batch_size, batches = cfg->batches;
  const nn_dims d = nn_dataset_shape(ds);
  const int n = nn_dataset_count(ds), c = d.c, h = d.h, w = d.w;
  if (batch < 2 || batches < 1)
    return nn_err_set(err, NN_ERR_ARG, "recalibration needs batch >= 2 and batches >= 1 (got %d, %d)", batch, batches);
  if (nn_input_norm_check(norm, err)) return NN_ERR_ARG;
  nn_status cst = nn_fit_check_shape(m, ds, "the data set", err); /* its shape, not only its value count */
  if (cst) return cst;
  if ((long)batch * batches > n)
    return nn_err_set(err, NN_ERR_ARG, "%d batches of %d need %ld samples, the data set has %d", batches, batch,
                      (long)batch * batches, n);
  float *x = malloc((size_t)batch * c * h * w * sizeof *x);
  uint32_t *order = malloc((size_t)n * sizeof *order);
  nn_bn_cfg *saved = malloc((size_t)m->nlayers * sizeof *saved);
  nn_status st = x && order && saved ? NN_OK : nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  int found = 0;
  for (int i = 0; !st && i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    if (L->kind != NN_LAYER_BATCHNORM || !L->cfg.bn.track_running_stats) continue;
    saved[i] = L->cfg.bn;
    L->cfg.bn.momentum = NN_BN_CUMULATIVE;
    L->cfg.bn.use_global_stats = 0;
    for (int k = 0; k < L->in.c; k++) L->st[k] = 0.0f, L->st[L->in.c + k] = 1.0f;
    L->batches_tracked = 0;
    found++;
  }
  if (!st && !found) st = nn_err_set(err, NN_ERR_ARG, "the model has no batchnorm with running statistics");
  if (!st) {
    nn_rng rng;
    nn_rng_seed(&rng, cfg->seed);
    for (int i = 0; i < n; i++) order[i] = (uint32_t)i;
    nn_rng_shuffle(&rng, order, (uint32_t)n);
    for (int b = 0; !st && b < batches; b++) {
      nn_dataset_batch(ds, order + (size_t)b * batch, batch, norm, x, NULL);
      st = nn_model_forward(m, x, NULL, batch, NN_MODE_TRAIN, NULL, NULL, NULL, err);
    }
  }
  for (int i = 0; saved && i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    if (L->kind == NN_LAYER_BATCHNORM && L->cfg.bn.track_running_stats) {
      L->cfg.bn.momentum = saved[i].momentum;
      L->cfg.bn.use_global_stats = saved[i].use_global_stats;
    }
  }
  free(x), free(order), free(saved);
  return st;
}
