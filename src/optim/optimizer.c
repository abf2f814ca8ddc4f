/* SGD (momentum, nesterov, weight decay) and Adam/AdamW with PyTorch's update rules:
 * one loop over the flat parameter buffer, moments in parallel buffers of the same layout.
 * Frozen tensors (trainable = 0) are skipped entirely, so weight decay cannot move them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

typedef struct {
  size_t offset, count;
} span;

struct nn_optimizer {
  nn_opt_config cfg;
  size_t nparams;
  float *m1, *m2;  /* SGD: momentum buffer in m1; Adam: first and second moments */
  long step;
  span *spans;     /* trainable ranges of the flat buffer */
  int nspans;
};

nn_opt_config nn_opt_defaults(nn_opt_kind kind) {
  nn_opt_config c = {.kind = kind, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
  if (kind == NN_OPT_SGD) c.lr = 0.01f;
  if (kind == NN_OPT_ADAMW) c.weight_decay = 0.01f;
  return c;
}

static const char *const kind_names[] = {"sgd", "adam", "adamw"};

int nn_opt_kind_parse(const char *name) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(name, kind_names[i])) return i;
  return -1;
}

const char *nn_opt_kind_name(nn_opt_kind kind) { return (unsigned)kind < 3 ? kind_names[kind] : "?"; }

nn_status nn_optimizer_create(const nn_opt_config *cfg, nn_model *m, nn_optimizer **out, nn_error *err) {
  *out = NULL;
  if ((unsigned)cfg->kind > NN_OPT_ADAMW) return nn_err_set(err, NN_ERR_ARG, "unknown optimizer kind %d", cfg->kind);
  if (!(cfg->lr > 0) || !isfinite(cfg->lr)) return nn_err_set(err, NN_ERR_ARG, "learning rate must be > 0, got %g", cfg->lr);
  if (cfg->momentum < 0 || cfg->momentum >= 1)
    return nn_err_set(err, NN_ERR_ARG, "momentum must be in [0, 1), got %g", cfg->momentum);
  if (cfg->nesterov && cfg->momentum <= 0)
    return nn_err_set(err, NN_ERR_ARG, "nesterov needs momentum > 0");
  if (cfg->weight_decay < 0) return nn_err_set(err, NN_ERR_ARG, "weight decay must be >= 0, got %g", cfg->weight_decay);
  if (cfg->kind != NN_OPT_SGD &&
      (cfg->beta1 < 0 || cfg->beta1 >= 1 || cfg->beta2 < 0 || cfg->beta2 >= 1 || !(cfg->eps > 0)))
    return nn_err_set(err, NN_ERR_ARG, "Adam needs 0 <= beta1, beta2 < 1 and eps > 0");
  nn_optimizer *o = calloc(1, sizeof *o);
  if (!o) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  o->cfg = *cfg;
  o->nparams = m->nparams;
  size_t bytes = (m->nparams ? m->nparams : 1) * sizeof(float);
  o->m1 = calloc(1, bytes);
  o->m2 = cfg->kind == NN_OPT_SGD ? NULL : calloc(1, bytes);
  int nt = 0;
  for (int i = 0; i < m->nlayers; i++) nt += m->layers[i].nparam;
  o->spans = calloc((size_t)(nt ? nt : 1), sizeof *o->spans);
  if (!o->m1 || (cfg->kind != NN_OPT_SGD && !o->m2) || !o->spans) {
    nn_optimizer_free(o);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory for optimizer state");
  }
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *L = &m->layers[i];
    for (int t = 0; t < L->nparam; t++) {
      if (!L->param[t].trainable) continue;
      span s = {(size_t)(L->p - m->params) + L->param[t].offset, L->param[t].count};
      if (o->nspans && o->spans[o->nspans - 1].offset + o->spans[o->nspans - 1].count == s.offset)
        o->spans[o->nspans - 1].count += s.count; /* merge adjacent ranges */
      else
        o->spans[o->nspans++] = s;
    }
  }
  *out = o;
  return NN_OK;
}

void nn_optimizer_free(nn_optimizer *o) {
  if (!o) return;
  free(o->m1);
  free(o->m2);
  free(o->spans);
  free(o);
}

/* torch.optim.SGD: g += wd*p; buf = mu*buf + g (buf = g at step 1); g = nesterov ? g + mu*buf : buf. */
static void sgd(const nn_opt_config *c, long step, float *p, const float *g, float *buf, size_t n) {
  const float lr = c->lr, wd = c->weight_decay, mu = c->momentum;
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    if (mu > 0) {
      buf[i] = step == 1 ? d : mu * buf[i] + d;
      d = c->nesterov ? d + mu * buf[i] : buf[i];
    }
    p[i] -= lr * d;
  }
}

/* torch.optim.Adam/AdamW: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). */
static void adam(const nn_opt_config *c, long step, float *p, const float *g, float *m1, float *m2, size_t n) {
  const float b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
  const float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
  const float step_size = c->lr / bc1, bc2_sqrt = sqrtf(bc2);
  const int decoupled = c->kind == NN_OPT_ADAMW;
  for (size_t i = 0; i < n; i++) {
    float d = g[i];
    if (decoupled) p[i] *= 1.0f - c->lr * wd;
    else d += wd * p[i];
    m1[i] = b1 * m1[i] + (1.0f - b1) * d;
    m2[i] = b2 * m2[i] + (1.0f - b2) * d * d;
    p[i] -= step_size * m1[i] / (sqrtf(m2[i]) / bc2_sqrt + eps);
  }
}

void nn_optimizer_step(nn_optimizer *o, nn_model *m) {
  NN_ASSERT(m->nparams == o->nparams);
  o->step++;
  for (int s = 0; s < o->nspans; s++) {
    size_t off = o->spans[s].offset, n = o->spans[s].count;
    if (o->cfg.kind == NN_OPT_SGD)
      sgd(&o->cfg, o->step, m->params + off, m->grads + off, o->m1 + off, n);
    else
      adam(&o->cfg, o->step, m->params + off, m->grads + off, o->m1 + off, o->m2 + off, n);
  }
}

long nn_optimizer_steps(const nn_optimizer *o) { return o->step; }
void nn_optimizer_set_steps(nn_optimizer *o, long steps) { o->step = steps; }

/* Moment buffers per trainable tensor, in PyTorch's state names. */
static int buffers_per_tensor(const nn_optimizer *o) {
  if (o->cfg.kind == NN_OPT_SGD) return o->cfg.momentum > 0 ? 1 : 0;
  return 2;
}

int nn_optimizer_num_tensors(const nn_optimizer *o, const nn_model *m) {
  int n = 0;
  for (int i = 0; i < m->nlayers; i++)
    for (int t = 0; t < m->layers[i].nparam; t++) n += m->layers[i].param[t].trainable;
  return n * buffers_per_tensor(o);
}

void nn_optimizer_tensor(nn_optimizer *o, nn_model *m, int idx, nn_tensor_view *v) {
  int per = buffers_per_tensor(o);
  NN_ASSERT(per > 0 && idx >= 0);
  int which = idx % per, k = idx / per;
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    for (int t = 0; t < L->nparam; t++) {
      if (!L->param[t].trainable || k-- > 0) continue;
      const nn_tensor_decl *d = &L->param[t];
      size_t off = (size_t)(L->p - m->params) + d->offset;
      const char *name = o->cfg.kind == NN_OPT_SGD ? "momentum_buffer" : which ? "exp_avg_sq" : "exp_avg";
      memset(v, 0, sizeof *v);
      snprintf(v->name, sizeof v->name, "optim.%s.%d.%s", name, L->index, d->suffix);
      v->ndim = d->ndim;
      memcpy(v->dims, d->dims, sizeof v->dims);
      v->count = d->count;
      v->data = (which ? o->m2 : o->m1) + off;
      v->is_state = 1;
      return;
    }
  }
  NN_ASSERT(!"optimizer tensor index out of range");
}
