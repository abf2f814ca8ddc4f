/* SGD (momentum, nesterov, weight decay) and Adam/AdamW with PyTorch's update rules:
 * one loop over the flat parameter buffer, moments in parallel buffers of the same layout.
 * Frozen tensors (trainable = 0) are skipped entirely, so weight decay cannot move them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "base/aligned.h"
#include "model/model.h"

typedef struct {
  size_t offset, count;
} span;

struct nn_optimizer {
  nn_opt_config cfg;
  size_t nparams;
  float *m1, *m2; /* SGD: momentum buffer in m1; Adam: first and second moments */
  long step;
  span *spans; /* trainable ranges of the flat buffer */
  int nspans;
  struct {
    int layer, t;
  } * trainable; /* the model's trainable tensors in order: a tensor view by index in constant time
                   (a walk over the layers made saving a 40k-layer run quadratic: 33 s) */
  int ntrainable;
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
  o->m1 = nn_alloc_floats(m->nparams, 1);
  o->m2 = cfg->kind == NN_OPT_SGD ? NULL : nn_alloc_floats(m->nparams, 1);
  int nt = 0;
  for (int i = 0; i < m->nlayers; i++) nt += m->layers[i].nparam;
  o->spans = calloc((size_t)(nt ? nt : 1), sizeof *o->spans);
  o->trainable = calloc((size_t)(nt ? nt : 1), sizeof *o->trainable);
  if (!o->m1 || (cfg->kind != NN_OPT_SGD && !o->m2) || !o->spans || !o->trainable) {
    nn_optimizer_free(o);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory for optimizer state");
  }
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *L = &m->layers[i];
    for (int t = 0; t < L->nparam; t++) {
      if (!L->param[t].trainable) continue;
      o->trainable[o->ntrainable].layer = i, o->trainable[o->ntrainable++].t = t;
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
  free(o->trainable);
  free(o);
}

/* The update is elementwise, so splitting it over threads cannot change a result: spans are
 * cut into NN_PARAM_CHUNK-element pieces (model/model.h) dealt statically to the threads of
 * one parallel region, taken only when there is enough work to pay for waking the workers. */

typedef struct {
  float lr, wd, mu, b1, b2, eps, step_size, bc2_sqrt;
  int nesterov, first, decoupled, keras_eps;
} upd;

/* Keras's Adam (keras_eps) updates with denormal floats flushed to zero, as Keras computes it:
 * TensorFlow runs its CPU kernels with FTZ and DAZ set (a denormal result or operand is 0).
 * PyTorch keeps denormals, and so does every other configuration here. Flushing also keeps the
 * update fast: the first moment of a parameter whose gradient stopped (a dead unit) decays by
 * beta1 per step into the denormal range and stays there (0.9 of a few units in the last
 * place rounds back to them), and each vector instruction that meets a denormal takes a
 * microcode assist: Keras's MLP without BN spent 58 % of its steps in this update (run 24 of
 * docs/performance.md). x86 only (MXCSR); elsewhere denormals are kept. Each thread sets the
 * mode around its own chunks and restores its previous one. */
#define OPT_MXCSR_FTZ_DAZ 0x8040u /* flush to zero (bit 15), denormals are zero (bit 6) */

static unsigned opt_flush_begin(int flush) {
#if defined(__SSE__)
  const unsigned csr = _mm_getcsr();
  if (flush) _mm_setcsr(csr | OPT_MXCSR_FTZ_DAZ);
  return csr;
#else
  (void)flush;
  return 0;
#endif
}

static void opt_flush_end(unsigned csr) {
#if defined(__SSE__)
  _mm_setcsr(csr);
#else
  (void)csr;
#endif
}

/* The loops below are instantiated once per combination of their mode flags (compile-time
 * constants after inlining), so that no branch is left inside and each one vectorizes; a
 * branch on a loop-invariant flag kept GCC at -O2 from vectorizing the update at all. */
#define OPT_INLINE static inline __attribute__((always_inline))

/* torch.optim.SGD with momentum: g += wd*p; buf = mu*buf + g (buf = g at step 1);
 * g = nesterov ? g + mu*buf : buf. */
OPT_INLINE void sgd_momentum(const upd *u, float *p, const float *g, float *buf, size_t n, const int first,
                             const int nesterov) {
  const float lr = u->lr, wd = u->wd, mu = u->mu;
#pragma omp simd
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float b = first ? d : mu * buf[i] + d;
    buf[i] = b;
    d = nesterov ? d + mu * b : b;
    p[i] -= lr * d;
  }
}

static void sgd(const upd *u, float *p, const float *g, float *buf, size_t n) {
  if (u->mu > 0) {
    if (u->first)
      u->nesterov ? sgd_momentum(u, p, g, buf, n, 1, 1) : sgd_momentum(u, p, g, buf, n, 1, 0);
    else
      u->nesterov ? sgd_momentum(u, p, g, buf, n, 0, 1) : sgd_momentum(u, p, g, buf, n, 0, 0);
  } else {
    const float lr = u->lr, wd = u->wd;
#pragma omp simd
    for (size_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
  }
}

/* torch.optim.Adam/AdamW: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps);
 * Keras's Adam (keras_eps): p -= lr*sqrt(bc2)/bc1 * m / (sqrt(v) + eps). The two differ only in
 * where eps sits: Keras's is not scaled by 1/sqrt(bc2), about 30x larger at step 1. Keras's
 * skips the division by sqrt(bc2) (keras_eps a constant here): dividing by 1 would be exact, but
 * a vector division costs as much as the square root (whole mlp steps 1.05x at one thread,
 * 1.02-1.04x at two: docs/performance.md run 31). */
OPT_INLINE void adam_loop(const upd *u, float *p, const float *g, float *m1, float *m2, size_t n,
                          const int decoupled, const int keras_eps) {
  const float b1 = u->b1, b2 = u->b2, eps = u->eps, wd = u->wd, step_size = u->step_size;
  const float div = u->bc2_sqrt;
  const float keep = 1.0f - u->lr * wd;
#pragma omp simd
  for (size_t i = 0; i < n; i++) {
    float d = g[i];
    float pi = p[i];
    if (decoupled) pi *= keep;
    else d += wd * pi;
    float a = b1 * m1[i] + (1.0f - b1) * d;
    float v = b2 * m2[i] + (1.0f - b2) * d * d;
    m1[i] = a;
    m2[i] = v;
    const float r = sqrtf(v);
    p[i] = pi - step_size * a / ((keras_eps ? r : r / div) + eps);
  }
}

/* adam_loop compiled for each (decoupled, keras_eps): both constants inside its loop */
static void adam(const upd *u, float *p, const float *g, float *m1, float *m2, size_t n) {
  if (u->decoupled && u->keras_eps)
    adam_loop(u, p, g, m1, m2, n, 1, 1);
  else if (u->decoupled)
    adam_loop(u, p, g, m1, m2, n, 1, 0);
  else if (u->keras_eps)
    adam_loop(u, p, g, m1, m2, n, 0, 1);
  else
    adam_loop(u, p, g, m1, m2, n, 0, 0);
}

/* This thread's chunks of every span (an orphaned `omp for`: static over the team of the
 * caller's region, or all of them on one thread). Not inlined, so that none of its
 * arithmetic can move across the caller's changes of the floating-point mode. */
static __attribute__((noinline)) void update_spans(const nn_optimizer *o, nn_model *m, const upd *u) {
  for (int s = 0; s < o->nspans; s++) {
    const size_t off = o->spans[s].offset, n = o->spans[s].count;
    const long chunks = (long)((n + NN_PARAM_CHUNK - 1) / NN_PARAM_CHUNK);
#pragma omp for schedule(static) nowait
    for (long k = 0; k < chunks; k++) {
      size_t a = off + (size_t)k * NN_PARAM_CHUNK, len = n - (size_t)k * NN_PARAM_CHUNK;
      if (len > NN_PARAM_CHUNK) len = NN_PARAM_CHUNK;
      if (o->cfg.kind == NN_OPT_SGD)
        sgd(u, m->params + a, m->grads + a, o->m1 + a, len);
      else
        adam(u, m->params + a, m->grads + a, o->m1 + a, o->m2 + a, len);
    }
  }
}

void nn_optimizer_step(nn_optimizer *o, nn_model *m) {
  NN_ASSERT(m->nparams == o->nparams);
  o->step++;
  const nn_opt_config *c = &o->cfg;
  upd u = {.lr = c->lr, .wd = c->weight_decay, .mu = c->momentum, .b1 = c->beta1, .b2 = c->beta2, .eps = c->eps, .nesterov = c->nesterov, .first = o->step == 1, .decoupled = c->kind == NN_OPT_ADAMW, .keras_eps = c->keras_eps};
  if (c->kind != NN_OPT_SGD) {
    const float bc1 = 1.0f - powf(c->beta1, (float)o->step), bc2 = 1.0f - powf(c->beta2, (float)o->step);
    u.step_size = c->keras_eps ? c->lr * sqrtf(bc2) / bc1 : c->lr / bc1;
    u.bc2_sqrt = sqrtf(bc2);
  }
  size_t total = 0;
  for (int s = 0; s < o->nspans; s++) total += o->spans[s].count;
  const int flush = c->kind != NN_OPT_SGD && c->keras_eps;
#pragma omp parallel if (total >= NN_PARAM_PAR_ELEMS)
  {
    const unsigned csr = opt_flush_begin(flush);
    update_spans(o, m, &u);
    opt_flush_end(csr);
  }
}

long nn_optimizer_steps(const nn_optimizer *o) { return o->step; }
float nn_optimizer_lr(const nn_optimizer *o) { return o->cfg.lr; }
void nn_optimizer_set_lr(nn_optimizer *o, float lr) { o->cfg.lr = lr; }
void nn_optimizer_set_steps(nn_optimizer *o, long steps) { o->step = steps; }

/* Moment buffers per trainable tensor, in PyTorch's state names. */
static int buffers_per_tensor(const nn_optimizer *o) {
  if (o->cfg.kind == NN_OPT_SGD) return o->cfg.momentum > 0 ? 1 : 0;
  return 2;
}

int nn_optimizer_num_tensors(const nn_optimizer *o, const nn_model *m) {
  (void)m; /* the model it was created for */
  return o->ntrainable * buffers_per_tensor(o);
}

void nn_optimizer_tensor(const nn_optimizer *o, const nn_model *m, int idx, nn_tensor_view *v) {
  int per = buffers_per_tensor(o);
  memset(v, 0, sizeof *v); /* what an index out of range gets */
  if (per <= 0 || idx < 0) return;
  int which = idx % per, k = idx / per;
  if (k >= o->ntrainable) return;
  const nn_layer *L = &m->layers[o->trainable[k].layer];
  const nn_tensor_decl *d = &L->param[o->trainable[k].t];
  size_t off = (size_t)(L->p - m->params) + d->offset;
  const char *name = o->cfg.kind == NN_OPT_SGD ? "momentum_buffer" : which ? "exp_avg_sq"
                                                                           : "exp_avg";
  snprintf(v->name, sizeof v->name, "optim.%s.%d.%s", name, L->index, d->suffix);
  v->ndim = d->ndim;
  memcpy(v->dims, d->dims, sizeof v->dims);
  v->count = d->count;
  v->data = (which ? o->m2 : o->m1) + off;
  v->is_state = 1;
}
