#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

nn_status nn_model_create(const nn_spec *spec, nn_model **out, nn_error *err) {
  *out = NULL;
  nn_model *m = calloc(1, sizeof *m);
  if (!m || !(m->spec = nn_spec_copy(spec)) || !(m->layers = calloc((size_t)spec->n, sizeof *m->layers))) {
    nn_model_free(m);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory building the model");
  }
  m->nlayers = spec->n;
  nn_shape in = spec->input;
  for (int i = 0; i < spec->n; i++) {
    nn_layer *L = &m->layers[i];
    const nn_layer_spec *ls = &spec->layers[i];
    const nn_layer_ops *ops = nn_layer_table[ls->kind];
    L->kind = ls->kind;
    L->line = ls->line;
    L->index = i;
    L->cfg = ls->cfg;
    L->in = in;
    char why[256];
    if (ops->shape(&L->cfg, in, &L->out, why, sizeof why)) {
      nn_model_free(m);
      return nn_err_set(err, NN_ERR_SHAPE, "%s:%d: layer %d (%s): %s", spec->source, ls->line, i, ops->name, why);
    }
    ops->declare(L);
    size_t off = 0;
    for (int t = 0; t < L->nparam; t++) L->param[t].offset = off, off += L->param[t].count;
    size_t soff = 0;
    for (int t = 0; t < L->nstate; t++) L->state[t].offset = soff, soff += L->state[t].count;
    m->nparams += off;
    m->nstate += soff;
    in = L->out;
  }
  if (in.rank != 1) {
    char shp[64];
    nn_shape_format(in, shp, sizeof shp);
    nn_model_free(m);
    return nn_err_set(err, NN_ERR_SHAPE, "%s: the last layer outputs %s; a classifier needs flat logits (end with dense)",
                      spec->source, shp);
  }
  if (in.c < 2) {
    nn_model_free(m);
    return nn_err_set(err, NN_ERR_SHAPE, "%s: the last layer outputs %d value; a classifier needs at least 2 classes",
                      spec->source, in.c);
  }
  m->params = calloc(m->nparams ? m->nparams : 1, sizeof(float));
  m->grads = calloc(m->nparams ? m->nparams : 1, sizeof(float));
  m->state = calloc(m->nstate ? m->nstate : 1, sizeof(float));
  if (!m->params || !m->grads || !m->state) {
    nn_model_free(m);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory for %zu parameters", m->nparams);
  }
  size_t poff = 0, soff = 0;
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    size_t pc = 0, sc = 0;
    for (int t = 0; t < L->nparam; t++) pc += L->param[t].count;
    for (int t = 0; t < L->nstate; t++) sc += L->state[t].count;
    L->p = pc ? m->params + poff : NULL;
    L->g = pc ? m->grads + poff : NULL;
    L->st = sc ? m->state + soff : NULL;
    poff += pc;
    soff += sc;
  }
  *out = m;
  return NN_OK;
}

void nn_model_free(nn_model *m) {
  if (!m) return;
  nn_spec_free(m->spec);
  free(m->layers);
  free(m->params);
  free(m->grads);
  free(m->state);
  free(m->arena);
  free(m->act);
  free(m->dact);
  free(m);
}

void nn_model_init(nn_model *m, nn_init init, nn_rng *rng) {
  for (int i = 0; i < m->nlayers; i++) nn_layer_table[m->layers[i].kind]->init(&m->layers[i], init, rng);
  nn_model_zero_grads(m);
}

const nn_spec *nn_model_spec(const nn_model *m) { return m->spec; }
int nn_model_num_layers(const nn_model *m) { return m->nlayers; }
int nn_model_input_size(const nn_model *m) { return (int)nn_shape_size(m->spec->input); }
void nn_model_input_shape(const nn_model *m, int *c, int *h, int *w) {
  nn_shape in = m->spec->input;
  *c = in.rank == 1 ? 1 : in.c, *h = in.h, *w = in.rank == 1 ? in.c : in.w;
}
int nn_model_output_size(const nn_model *m) { return m->layers[m->nlayers - 1].out.c; }
size_t nn_model_param_count(const nn_model *m) { return m->nparams; }
float *nn_model_params(nn_model *m) { return m->params; }
float *nn_model_grads(nn_model *m) { return m->grads; }
size_t nn_model_state_count(const nn_model *m) { return m->nstate; }
float *nn_model_state(nn_model *m) { return m->state; }
void nn_model_zero_grads(nn_model *m) { memset(m->grads, 0, m->nparams * sizeof *m->grads); }
const float *nn_model_probs(const nn_model *m) { return m->probs; }

const float *nn_model_layer_output(const nn_model *m, int i, size_t *count) {
  NN_ASSERT(i >= 0 && i < m->nlayers && m->last_n > 0);
  if (count) *count = (size_t)m->last_n * nn_shape_size(m->layers[i].out);
  return m->act[i + 1];
}

void nn_model_layer_info(const nn_model *m, int i, nn_layer_info *info) {
  const nn_layer *L = &m->layers[i];
  const nn_layer_ops *ops = nn_layer_table[L->kind];
  memset(info, 0, sizeof *info);
  info->kind = ops->name;
  info->line = L->line;
  info->out_rank = L->out.rank;
  info->out_c = L->out.c;
  info->out_h = L->out.h;
  info->out_w = L->out.w;
  for (int t = 0; t < L->nparam; t++) {
    if (L->param[t].trainable) info->trainable += L->param[t].count;
    else info->non_trainable += L->param[t].count;
  }
  for (int t = 0; t < L->nstate; t++) info->non_trainable += L->state[t].count;
  ops->describe(L, info->detail, sizeof info->detail);
  info->skipped_updates = L->skipped_updates;
}

/* ---- named tensors in state_dict order ---------------------------------------------- */
int nn_model_num_tensors(const nn_model *m) {
  int n = 0;
  for (int i = 0; i < m->nlayers; i++)
    n += m->layers[i].nparam + m->layers[i].nstate + m->layers[i].has_batches_tracked;
  return n;
}

void nn_model_tensor(nn_model *m, int idx, nn_tensor_view *v) {
  memset(v, 0, sizeof *v);
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    int k = L->nparam + L->nstate + L->has_batches_tracked;
    if (idx >= k) {
      idx -= k;
      continue;
    }
    const nn_tensor_decl *d = NULL;
    if (idx < L->nparam) {
      d = &L->param[idx];
      v->data = L->p + d->offset;
    } else if (idx < L->nparam + L->nstate) {
      d = &L->state[idx - L->nparam];
      v->data = L->st + d->offset;
      v->is_state = 1;
    } else {
      snprintf(v->name, sizeof v->name, "%d.num_batches_tracked", L->index);
      v->ndim = 0;
      v->count = 1;
      v->is_state = 1;
      v->count_value = &L->batches_tracked;
      return;
    }
    snprintf(v->name, sizeof v->name, "%d.%s", L->index, d->suffix);
    v->ndim = d->ndim;
    memcpy(v->dims, d->dims, sizeof v->dims);
    v->count = d->count;
    return;
  }
  NN_ASSERT(!"tensor index out of range");
}

/* ---- activation arena ---------------------------------------------------------------- */
nn_status nn_model_plan(nn_model *m, int n, nn_error *err) {
  if (n <= m->plan_n) return NN_OK;
  size_t total = 0, k = (size_t)nn_model_output_size(m);
  total += (size_t)n * nn_shape_size(m->spec->input);
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    /* dact[i], act[i+1], scratch */
    total += (size_t)n * nn_shape_size(L->in) + (size_t)n * nn_shape_size(L->out) + nn_layer_table[L->kind]->scratch(L, n);
  }
  total += 2 * (size_t)n * k + (size_t)n; /* dlogits, probs, labels (int32 slots) */
  float *arena = malloc(total * sizeof(float));
  float **act = malloc((size_t)(m->nlayers + 1) * sizeof *act);
  float **dact = malloc((size_t)(m->nlayers + 1) * sizeof *dact);
  if (!arena || !act || !dact) {
    free(arena), free(act), free(dact);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory planning activations for batch %d (%zu floats)", n, total);
  }
  free(m->arena), free(m->act), free(m->dact);
  m->arena = arena, m->act = act, m->dact = dact;
  float *p = arena;
  act[0] = p, p += (size_t)n * nn_shape_size(m->spec->input);
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    dact[i] = p, p += (size_t)n * nn_shape_size(L->in);
    act[i + 1] = p, p += (size_t)n * nn_shape_size(L->out);
    L->scratch = p, p += nn_layer_table[L->kind]->scratch(L, n);
  }
  dact[m->nlayers] = p, p += (size_t)n * k;
  m->probs = p, p += (size_t)n * k;
  m->labels = (int32_t *)(void *)p, p += n;
  NN_ASSERT((size_t)(p - arena) == total);
  m->plan_n = n;
  return NN_OK;
}

nn_status nn_model_forward(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode, double *loss_sum,
                           int *correct, const float **logits, nn_error *err) {
  if (n < 1) return nn_err_set(err, NN_ERR_ARG, "batch size must be >= 1, got %d", n);
  nn_status st = nn_model_plan(m, n, err);
  if (st) return st;
  int k = nn_model_output_size(m);
  if (labels) {
    for (int i = 0; i < n; i++)
      if (labels[i] < 0 || labels[i] >= k)
        return nn_err_set(err, NN_ERR_ARG, "label %d of sample %d is out of range for %d classes", labels[i], i, k);
    memcpy(m->labels, labels, (size_t)n * sizeof *labels);
  } else {
    memset(m->labels, 0, (size_t)n * sizeof *m->labels);
  }
  nn_threads_step(&m->tuner[mode == NN_MODE_EVAL], &m->tuner[mode != NN_MODE_EVAL], n);
  memcpy(m->act[0], x, (size_t)n * nn_shape_size(m->spec->input) * sizeof *x);
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    st = nn_layer_table[L->kind]->forward(L, m->act[i], m->act[i + 1], n, mode, err);
    if (st) return st;
  }
  const float *z = m->act[m->nlayers];
  double sum = nn_softmax_xent_forward(z, m->labels, m->probs, n, k);
  if (loss_sum) *loss_sum = labels ? sum : 0.0;
  if (correct) {
    int c = 0;
    for (int i = 0; i < n; i++) {
      int best = 0;
      for (int j = 1; j < k; j++)
        if (z[(size_t)i * k + j] > z[(size_t)i * k + best]) best = j;
      c += labels && best == labels[i];
    }
    *correct = c;
  }
  if (logits) *logits = z;
  m->last_n = n;
  m->last_mode = mode;
  m->last_has_labels = labels != NULL;
  return NN_OK;
}

nn_status nn_model_backward(nn_model *m, nn_error *err) {
  if (!m->last_n || !m->last_has_labels)
    return nn_err_set(err, NN_ERR_ARG, "backward needs a preceding forward with labels");
  int n = m->last_n, k = nn_model_output_size(m);
  nn_softmax_xent_backward(m->probs, m->labels, m->dact[m->nlayers], n, k, 1.0f / (float)n);
  for (int i = m->nlayers - 1; i >= 0; i--) {
    nn_layer *L = &m->layers[i];
    nn_layer_table[L->kind]->backward(L, m->act[i], m->act[i + 1], m->dact[i + 1], i ? m->dact[i] : NULL, n,
                                      m->last_mode);
  }
  return NN_OK;
}
