/* Fold each batchnorm into the dense/conv2d layer right before it (ARCHITECTURE.md §4):
 *     scale_c = gamma_c / sqrt(running_var_c + eps)      (gamma = 1, beta = 0 without affine)
 *     W'[c, ...] = W[c, ...] * scale_c
 *     b'_c = (b_c - running_mean_c) * scale_c + beta_c   (b_c = 0 if the layer had no bias)
 * all in double, rounded once to float. The folded model's spec is the original one with the
 * batchnorm lines removed and bias=1 on the layers they were folded into; every other layer
 * keeps its parameters. Eval-mode outputs match the original's (use_global_stats and
 * freeze_affine only matter in training, so they do not prevent folding). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static int is_linear(nn_layer_kind k) { return k == NN_LAYER_DENSE || k == NN_LAYER_CONV2D; }

/* NN_OK if batchnorm layer i of m can be folded into layer i-1, else an NN_ERR_ARG naming it. */
static nn_status check_foldable(const nn_model *m, int i, nn_error *err) {
  const nn_layer *L = &m->layers[i];
  char name[96];
  nn_layer_name(L, name, sizeof name);
  if (i == 0)
    return nn_err_set(err, NN_ERR_ARG,
                      "%s: is the first layer; only BN right after dense/conv2d can be folded", name);
  const nn_layer *P = &m->layers[i - 1];
  if (!is_linear(P->kind))
    return nn_err_set(err, NN_ERR_ARG, "%s: placed after %s; only BN right after dense/conv2d can be folded", name,
                      nn_layer_table[P->kind]->name);
  if (!L->cfg.bn.track_running_stats)
    return nn_err_set(err, NN_ERR_ARG,
                      "%s: has no running statistics (track_running_stats=0) and normalizes with batch "
                      "statistics in eval mode too; it cannot be folded",
                      name);
  return NN_OK;
}

/* Write the folded weights and bias of linear layer P followed by batchnorm B into Q
 * (P's twin in the new model, with a bias). */
static void fold_pair(const nn_layer *P, const nn_layer *B, nn_layer *Q) {
  const nn_bn_cfg *bc = &B->cfg.bn;
  int has_bias = P->kind == NN_LAYER_DENSE ? P->cfg.dense.bias : P->cfg.conv.bias;
  size_t oc = (size_t)P->out.c;
  size_t wcount = P->param[0].count, per = wcount / oc;
  NN_ASSERT(Q->nparam == 2 && Q->param[0].count == wcount && Q->param[1].count == oc);
  NN_ASSERT((size_t)B->in.c == oc && per * oc == wcount);
  const float *w = P->p + P->param[0].offset;
  const float *b = has_bias ? P->p + P->param[1].offset : NULL;
  const float *gamma = bc->affine ? B->p + B->param[0].offset : NULL;
  const float *beta = bc->affine ? B->p + B->param[1].offset : NULL;
  const float *mean = B->st + B->state[0].offset;
  const float *var = B->st + B->state[1].offset;
  float *qw = Q->p + Q->param[0].offset, *qb = Q->p + Q->param[1].offset;
  for (size_t c = 0; c < oc; c++) {
    double scale = (gamma ? (double)gamma[c] : 1.0) / sqrt((double)var[c] + bc->eps);
    for (size_t j = 0; j < per; j++) qw[c * per + j] = (float)((double)w[c * per + j] * scale);
    double bias = b ? (double)b[c] : 0.0;
    qb[c] = (float)((bias - (double)mean[c]) * scale + (beta ? (double)beta[c] : 0.0));
  }
}

nn_status nn_model_fold(const nn_model *m, nn_model **out, nn_error *err) {
  *out = NULL;
  /* Check every batchnorm first: the first one that cannot be folded is reported. */
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].kind == NN_LAYER_BATCHNORM) {
      nn_status st = check_foldable(m, i, err);
      if (st) return st;
    }

  nn_spec *spec = nn_spec_copy(m->spec);
  int *src = malloc((size_t)(m->nlayers ? m->nlayers : 1) * sizeof *src); /* new index -> old index */
  if (!spec || !src) {
    nn_spec_free(spec);
    free(src);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory folding the model");
  }
  int n = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer_spec *ls = &m->spec->layers[i];
    if (ls->kind == NN_LAYER_BATCHNORM) {
      nn_layer_spec *prev = &spec->layers[n - 1];
      if (prev->kind == NN_LAYER_DENSE) prev->cfg.dense.bias = 1;
      else prev->cfg.conv.bias = 1;
      continue;
    }
    spec->layers[n] = *ls;
    src[n++] = i;
  }
  spec->n = n;

  nn_model *f = NULL;
  nn_status st = nn_model_create(spec, &f, err);
  nn_spec_free(spec);
  if (st) {
    free(src);
    return nn_err_prefix(err, st, "folding batchnorm: ");
  }
  for (int j = 0; j < n; j++) {
    const nn_layer *P = &m->layers[src[j]];
    nn_layer *Q = &f->layers[j];
    NN_ASSERT(P->kind == Q->kind);
    const nn_layer *B = src[j] + 1 < m->nlayers && m->layers[src[j] + 1].kind == NN_LAYER_BATCHNORM
                            ? &m->layers[src[j] + 1]
                            : NULL;
    if (B) {
      fold_pair(P, B, Q);
      continue;
    }
    NN_ASSERT(P->nparam == Q->nparam && P->nstate == Q->nstate);
    for (int t = 0; t < P->nparam; t++)
      memcpy(Q->p + Q->param[t].offset, P->p + P->param[t].offset, P->param[t].count * sizeof(float));
    for (int t = 0; t < P->nstate; t++)
      memcpy(Q->st + Q->state[t].offset, P->st + P->state[t].offset, P->state[t].count * sizeof(float));
    Q->batches_tracked = P->batches_tracked;
    Q->skipped_updates = P->skipped_updates;
    Q->rng = P->rng; /* dropout's stream continues where the original's is */
  }
  free(src);
  /* the folded model reads the same input */
  st = nn_model_set_input(f, m->has_input ? &m->input_norm : NULL, nn_model_data_source(m), err);
  if (st) {
    nn_model_free(f);
    return st;
  }
  *out = f;
  return NN_OK;
}
