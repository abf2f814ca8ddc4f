#include "model/model.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "base/aligned.h"
#include "kernels/kernels.h"

/* Checked size arithmetic: 0 on success, -1 if the result does not fit 64 bits. */
static int add_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r) ? -1 : 0; }
static int mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r) ? -1 : 0; }

/* Values in a shape, or -1 if the product overflows. */
static int shape_values(nn_shape s, uint64_t *r) {
  uint64_t t;
  return mul_u64((uint64_t)s.c, (uint64_t)s.h, &t) || mul_u64(t, (uint64_t)s.w, r) ? -1 : 0;
}

static uint64_t max_params(const nn_spec *s) { return s->max_params ? s->max_params : NN_DEFAULT_MAX_PARAMS; }

/* Values one sample needs at most (kernels index a sample with int). */
static uint64_t max_values(const nn_spec *s) { return max_params(s) < INT_MAX ? max_params(s) : INT_MAX; }

#define SIZE_HINT "(the model-size limit; raise it with --max-params)"

/* Check the input shape, then before each layer's declarations: its output shape, each of
 * its tensors and the running totals of parameters and of activation values per sample,
 * all against the model-size limit, so a spec can neither wrap a count nor make
 * nn_model_create allocate more than the limit allows. */
static nn_status check_input(const nn_spec *spec, uint64_t *act, nn_error *err) {
  if (shape_values(spec->input, act) || *act > max_values(spec)) {
    char shp[64];
    nn_shape_format(spec->input, shp, sizeof shp);
    return nn_err_set(err, NN_ERR_ARG, "%s:%d: input shape=%s has more than %llu values per sample %s", spec->source,
                      spec->input_line, shp, (unsigned long long)max_values(spec), SIZE_HINT);
  }
  return NN_OK;
}

static nn_status check_layer(const nn_spec *spec, const nn_layer *L, uint64_t *params, uint64_t *act, nn_error *err) {
  const char *name = nn_layer_table[L->kind]->name;
  uint64_t out, scratch, t;
  if (shape_values(L->out, &out) || out > max_values(spec))
    return nn_err_set(err, NN_ERR_ARG, "%s:%d: layer %d (%s): an output of %dx%dx%d values per sample, above %llu %s",
                      spec->source, L->line, L->index, name, L->out.c, L->out.h, L->out.w,
                      (unsigned long long)max_values(spec), SIZE_HINT);
  scratch = nn_layer_table[L->kind]->scratch(L, 1);
  /* the arena holds per sample: the layer's input gradient, its output and its scratch */
  // NOLINTNEXTLINE(misc-redundant-expression): out is added twice on purpose (gradient and output)
  if (add_u64(*act, out, act) || add_u64(*act, out, act) || add_u64(*act, scratch, act) || *act > max_values(spec))
    return nn_err_set(err, NN_ERR_ARG,
                      "%s:%d: layer %d (%s): the model needs more than %llu activation values per sample %s",
                      spec->source, L->line, L->index, name, (unsigned long long)max_values(spec), SIZE_HINT);
  const nn_tensor_decl *d[4] = {&L->param[0], &L->param[1], &L->state[0], &L->state[1]};
  const int use[4] = {L->nparam > 0, L->nparam > 1, L->nstate > 0, L->nstate > 1};
  for (int k = 0; k < 4; k++) {
    if (!use[k]) continue;
    uint64_t count = 1;
    int bad = 0;
    for (int j = 0; j < d[k]->ndim; j++) bad |= mul_u64(count, (uint64_t)d[k]->dims[j], &count);
    NN_ASSERT(bad || count == d[k]->count);
    if (bad || add_u64(*params, count, &t) || t > max_params(spec)) {
      char dims[96] = "";
      for (int j = 0, o = 0; j < d[k]->ndim && o < (int)sizeof dims; j++)
        o += snprintf(dims + o, sizeof dims - (size_t)o, "%s%d", j ? "x" : "", d[k]->dims[j]);
      return nn_err_set(err, NN_ERR_ARG, "%s:%d: layer %d (%s): %s [%s] brings the model above %llu parameters %s",
                        spec->source, L->line, L->index, name, d[k]->suffix, dims,
                        (unsigned long long)max_params(spec), SIZE_HINT);
    }
    *params = t;
  }
  return NN_OK;
}

nn_status nn_model_create(const nn_spec *spec, nn_model **out, nn_error *err) {
  *out = NULL;
  nn_model *m = calloc(1, sizeof *m);
  if (!m || !(m->spec = nn_spec_copy(spec)) || !(m->layers = calloc((size_t)spec->n, sizeof *m->layers))) {
    nn_model_free(m);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory building the model");
  }
  m->nlayers = spec->n;
  m->input_norm = (nn_input_norm){0.0f, 1.0f};
  nn_shape in = spec->input;
  uint64_t params = 0, act = 0;
  nn_status st = check_input(spec, &act, err);
  if (st) {
    nn_model_free(m);
    return st;
  }
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
    if ((st = check_layer(spec, L, &params, &act, err))) {
      nn_model_free(m);
      return st;
    }
    size_t off = 0;
    for (int t = 0; t < L->nparam; t++) L->param[t].offset = off, off += L->param[t].count;
    size_t soff = 0;
    for (int t = 0; t < L->nstate; t++) L->state[t].offset = soff, soff += L->state[t].count;
    m->nparams += off;
    m->nstate += soff;
    L->tensor_first = m->ntensors;
    m->ntensors += L->nparam + L->nstate + L->has_batches_tracked;
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
  m->params = nn_alloc_floats(m->nparams, 1);
  m->grads = nn_alloc_floats(m->nparams, 1);
  m->state = nn_alloc_floats(m->nstate, 1);
  if (!m->params || !m->grads || !m->state) {
    size_t nparams = m->nparams;
    nn_model_free(m);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory for %zu parameters", nparams);
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
  free(m->data_source);
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

int nn_model_input_norm(const nn_model *m, nn_input_norm *out) {
  *out = m->input_norm;
  return m->has_input;
}

const char *nn_model_data_source(const nn_model *m) { return m->data_source ? m->data_source : ""; }

nn_status nn_model_set_input(nn_model *m, const nn_input_norm *norm, const char *data_source, nn_error *err) {
  if (norm && nn_input_norm_check(*norm, err)) return NN_ERR_ARG;
  if (data_source) {
    char *d = *data_source ? strdup(data_source) : NULL;
    if (*data_source && !d) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
    free(m->data_source);
    m->data_source = d;
  }
  if (norm) m->input_norm = *norm, m->has_input = 1;
  return NN_OK;
}
int nn_model_num_layers(const nn_model *m) { return m->nlayers; }
int nn_model_input_size(const nn_model *m) { return (int)nn_shape_size(m->spec->input); }
nn_dims nn_model_input_shape(const nn_model *m) {
  nn_shape in = m->spec->input;
  return in.rank == 1 ? (nn_dims){.c = 1, .h = in.h, .w = in.c} : (nn_dims){.c = in.c, .h = in.h, .w = in.w};
}
int nn_model_output_size(const nn_model *m) { return m->layers[m->nlayers - 1].out.c; }
size_t nn_model_param_count(const nn_model *m) { return m->nparams; }
float *nn_model_params(nn_model *m) { return m->params; }
float *nn_model_grads(nn_model *m) { return m->grads; }
size_t nn_model_state_count(const nn_model *m) { return m->nstate; }
float *nn_model_state(nn_model *m) { return m->state; }
/* Over the team in NN_PARAM_CHUNK pieces, as the optimizer deals them (model.h): each thread
 * clears, in its own cache, mostly the gradients it will update, instead of one thread pulling
 * them all into its cache for the other to fetch back. */
void nn_model_zero_grads(nn_model *m) {
  const size_t n = m->nparams;
  const long chunks = (long)((n + NN_PARAM_CHUNK - 1) / NN_PARAM_CHUNK);
#pragma omp parallel for schedule(static) if (n >= NN_PARAM_PAR_ELEMS)
  for (long k = 0; k < chunks; k++) {
    const size_t a = (size_t)k * NN_PARAM_CHUNK;
    memset(m->grads + a, 0, (n - a < NN_PARAM_CHUNK ? n - a : NN_PARAM_CHUNK) * sizeof *m->grads);
  }
}
const float *nn_model_probs(const nn_model *m) { return m->probs; }

/* The number of layers after layer i that run inside its forward call in a forward of this
 * mode (0: layer i runs alone; layers/layer.h): batchnorm + relu/sigmoid/tanh, conv2d + one of
 * them, and in eval dense or conv2d + an activation, or + batchnorm with fixed statistics (+ an
 * activation). In training always; in eval only in a lean forward (a plain one keeps every
 * layer output for inspection). */
static int fused_span(const nn_model *m, int i, nn_mode mode, int lean) {
  if (i + 1 >= m->nlayers || (mode != NN_MODE_TRAIN && !lean)) return 0;
  const nn_layer *L = &m->layers[i], *next = &m->layers[i + 1];
  if (nn_batchnorm_fuses(L, next, mode)) return 1;
  return nn_layer_fuses(L, next, i + 2 < m->nlayers ? &m->layers[i + 2] : NULL, mode);
}

/* After layer i (-1: before the first), the next whose output the last forward kept: the last
 * layer of each fused run stores its output, the others none. */
static int next_kept(const nn_model *m, int i) { return i + 1 + fused_span(m, i + 1, m->last_mode, m->last_lean); }

/* Kept layer i's output of the last forward and its count. */
static const float *output_of(const nn_model *m, int i, size_t *cnt) {
  *cnt = (size_t)m->last_n * nn_shape_size(m->layers[i].out);
  return m->act[i + 1];
}

/* Layer i's output of the last forward, or NULL if a fused forward did not keep it, or if
 * there was no forward yet. */
static const float *kept_output(const nn_model *m, int i, size_t *cnt) {
  if (m->last_n <= 0) return NULL;
  int end = -1;
  while (end < i) end = next_kept(m, end);
  return end == i ? output_of(m, i, cnt) : NULL;
}

const float *nn_model_layer_output(const nn_model *m, int i, size_t *count) {
  size_t cnt = 0;
  const float *y = i >= 0 && i < m->nlayers ? kept_output(m, i, &cnt) : NULL;
  if (count) *count = y ? cnt : 0;
  return y;
}

/* Every loop over the kept outputs walks the fused runs once (kept_output per layer made them
 * quadratic in the layers: 100k layers took a minute a step with --nan-check). */
int nn_model_first_bad_output(const nn_model *m, const double *limits, double *value) {
  for (int i = m->last_n > 0 ? next_kept(m, -1) : m->nlayers; i < m->nlayers; i = next_kept(m, i)) {
    size_t cnt;
    const float *y = output_of(m, i, &cnt);
    for (size_t k = 0; k < cnt; k++)
      if (!isfinite(y[k]) || (limits && fabs((double)y[k]) > limits[i])) {
        if (value) *value = y[k];
        return i;
      }
  }
  return -1;
}

void nn_model_output_maxabs(const nn_model *m, double *maxabs) {
  int kept = m->last_n > 0 ? next_kept(m, -1) : m->nlayers;
  for (int i = 0; i < m->nlayers; i++) {
    size_t cnt = 0;
    const float *y = i == kept ? output_of(m, i, &cnt) : NULL;
    if (i == kept) kept = next_kept(m, i);
    double mx = y ? 0 : -1;
    for (size_t k = 0; y && k < cnt; k++) {
      double v = fabs((double)y[k]);
      if (!isfinite(v)) {
        mx = NAN;
        break;
      }
      if (v > mx) mx = v;
    }
    maxabs[i] = mx;
  }
}

void nn_model_layer_info(const nn_model *m, int i, nn_layer_info *info) {
  memset(info, 0, sizeof *info);
  if (i < 0 || i >= m->nlayers) return;
  const nn_layer *L = &m->layers[i];
  const nn_layer_ops *ops = nn_layer_table[L->kind];
  info->kind = ops->name;
  info->kind_id = L->kind;
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
int nn_model_num_tensors(const nn_model *m) { return m->ntensors; }

/* The role of a declared tensor from its state_dict suffix (set by the layer's declare). */
static nn_tensor_role tensor_role(const char *suffix) {
  if (!strcmp(suffix, "bias")) return NN_TENSOR_BIAS;
  if (!strcmp(suffix, "running_mean")) return NN_TENSOR_RUNNING_MEAN;
  if (!strcmp(suffix, "running_var")) return NN_TENSOR_RUNNING_VAR;
  NN_ASSERT(!strcmp(suffix, "weight"));
  return NN_TENSOR_WEIGHT;
}

/* Fill v for tensor idx (count_value left NULL); returns the layer of a num_batches_tracked
 * view, -1 for a float tensor. */
static int locate_tensor(const nn_model *m, int idx, nn_tensor_view *v) {
  memset(v, 0, sizeof *v);
  if (idx < 0 || idx >= m->ntensors) return -1; /* out of range: the view stays zeroed */
  /* the last layer whose first tensor is at or before idx (layers without tensors share their
   * successor's tensor_first: the last of equals holds it); a walk over the layers made every
   * loop over the tensors quadratic (a checkpoint of 20k layers: 66 s) */
  int lo = 0, hi = m->nlayers - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (m->layers[mid].tensor_first <= idx) lo = mid;
    else hi = mid - 1;
  }
  const nn_layer *L = &m->layers[lo];
  idx -= L->tensor_first;
  const nn_tensor_decl *d = NULL;
  v->layer = L->index;
  if (idx < L->nparam) {
    d = &L->param[idx];
    v->data = L->p + d->offset;
  } else if (idx < L->nparam + L->nstate) {
    d = &L->state[idx - L->nparam];
    v->data = L->st + d->offset;
    v->is_state = 1;
  } else {
    snprintf(v->name, sizeof v->name, "%d.num_batches_tracked", L->index);
    v->role = NN_TENSOR_BATCHES_TRACKED;
    v->ndim = 0;
    v->count = 1;
    v->is_state = 1;
    return lo;
  }
  snprintf(v->name, sizeof v->name, "%d.%s", L->index, d->suffix);
  v->role = tensor_role(d->suffix);
  v->ndim = d->ndim;
  memcpy(v->dims, d->dims, sizeof v->dims);
  v->count = d->count;
  return -1;
}

void nn_model_tensor(nn_model *m, int idx, nn_tensor_view *v) {
  int i = locate_tensor(m, idx, v);
  if (i >= 0) v->count_value = &m->layers[i].batches_tracked;
}

void nn_model_tensor_read(const nn_model *m, int idx, nn_tensor_view *v, int64_t *count) {
  int i = locate_tensor(m, idx, v);
  *count = i >= 0 ? m->layers[i].batches_tracked : 0;
}

/* ---- activation arena ---------------------------------------------------------------- */
/* Address space the kernels take without a way to report failure: oneDNN's GEMM packing
 * buffers (it crashes on a failed allocation) and the stacks of the OpenMP threads
 * (libgomp exits on a failed thread creation). Probed by allocating and freeing it right
 * after the arena, so that under a memory limit training is refused with NN_ERR_NOMEM up
 * front instead of dying in the first step. */
#define KERNEL_HEADROOM_BASE ((size_t)16 << 20)
#define KERNEL_HEADROOM_PER_THREAD ((size_t)8 << 20)

static int headroom_available(void) {
  size_t want = KERNEL_HEADROOM_BASE + (size_t)omp_get_max_threads() * KERNEL_HEADROOM_PER_THREAD;
  void *p = malloc(want);
  free(p);
  return p != NULL;
}

/* The next arena segment, of a*b floats rounded up to whole cache lines (aligned.h), at *off
 * floats from base (NULL: counting only; then NULL); *bad on overflow */
static float *segment(float *base, uint64_t *off, uint64_t a, uint64_t b, int *bad) {
  uint64_t v, r;
  const uint64_t at = *off;
  if (mul_u64(a, b, &v) || nn_align_floats(v, &r) || add_u64(*off, r, off)) *bad = 1;
  return base && !*bad ? base + at : NULL;
}

/* The arena's segments in order: the input, each layer's input gradient, output and scratch
 * (a view kind's are its neighbours'), dlogits, probs, labels (int32 slots). *total = their
 * floats; with base (an arena of that many floats), also placed from it.
 * One walk for both, so the count and the places cannot disagree. -1 on overflow. */
static int arena_walk(nn_model *m, int n, float *base, uint64_t *total) {
  const uint64_t N = (uint64_t)n, k = (uint64_t)nn_model_output_size(m);
  uint64_t off = 0;
  int bad = 0;
  float *in = segment(base, &off, N, nn_shape_size(m->spec->input), &bad);
  if (base) m->act[0] = in;
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    if (nn_layer_table[L->kind]->view) {
      /* a reshape (nn_layer_ops.view): the output is the input and the input gradient the
       * output gradient (set below, once that is placed) */
      if (base) m->act[i + 1] = m->act[i];
    } else {
      float *d = segment(base, &off, N, nn_shape_size(L->in), &bad);
      float *o = segment(base, &off, N, nn_shape_size(L->out), &bad);
      if (base) m->dact[i] = d, m->act[i + 1] = o;
    }
    float *sc = segment(base, &off, 1, nn_layer_table[L->kind]->scratch(L, n), &bad);
    if (base) L->scratch = sc;
  }
  float *dl = segment(base, &off, N, k, &bad), *pr = segment(base, &off, N, k, &bad);
  float *lb = segment(base, &off, N, 1, &bad);
  if (base) {
    m->dact[m->nlayers] = dl;
    for (int i = m->nlayers - 1; i >= 0; i--)
      if (nn_layer_table[m->layers[i].kind]->view) m->dact[i] = m->dact[i + 1];
    m->probs = pr;
    m->labels = (int32_t *)(void *)lb;
  }
  *total = off;
  return bad || off > SIZE_MAX / sizeof(float) ? -1 : 0;
}

nn_status nn_model_plan(nn_model *m, int n, nn_error *err) {
  if (n <= m->plan_n) return NN_OK;
  uint64_t total;
  if (arena_walk(m, n, NULL, &total))
    return nn_err_set(err, NN_ERR_NOMEM, "the activations of a batch of %d do not fit in memory (size overflow)", n);
  float *arena = nn_alloc_floats((size_t)total, 0);
  float **act = malloc((size_t)(m->nlayers + 1) * sizeof *act);
  float **dact = malloc((size_t)(m->nlayers + 1) * sizeof *dact);
  if (!arena || !act || !dact) {
    free(arena), free(act), free(dact);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory planning activations for batch %d (%llu floats)", n,
                      (unsigned long long)total);
  }
  if (!headroom_available()) {
    free(arena), free(act), free(dact);
    return nn_err_set(err, NN_ERR_NOMEM,
                      "out of memory: the activations of batch %d fit (%llu floats) but not the %zu MiB more the "
                      "kernels and threads need",
                      n, (unsigned long long)total,
                      (KERNEL_HEADROOM_BASE + (size_t)omp_get_max_threads() * KERNEL_HEADROOM_PER_THREAD) >> 20);
  }
  free(m->arena), free(m->act), free(m->dact);
  m->arena = arena, m->act = act, m->dact = dact;
  uint64_t placed;
  const int bad = arena_walk(m, n, arena, &placed);
  NN_ASSERT(!bad && placed == total);
  m->plan_n = n;
  return NN_OK;
}

void nn_model_set_threads(nn_model *m, int threads) { m->threads = threads > 0 ? threads : 0; }

void nn_model_set_comm(nn_model *m, const nn_comm *comm) {
  m->comm = comm && comm->size > 1 ? comm : NULL;
  for (int i = 0; i < m->nlayers; i++)
    m->layers[i].comm = m->comm && m->comm->sync_bn && m->layers[i].kind == NN_LAYER_BATCHNORM ? m->comm : NULL;
}

void nn_model_set_timing(nn_model *m, int on) {
  if (on)
    for (int i = 0; i < m->nlayers; i++) m->layers[i].time_fwd = m->layers[i].time_bwd = 0.0;
  m->timing = on != 0;
}

void nn_model_layer_time(const nn_model *m, int i, double *forward_s, double *backward_s) {
  const int ok = i >= 0 && i < m->nlayers;
  if (forward_s) *forward_s = ok ? m->layers[i].time_fwd : 0.0;
  if (backward_s) *backward_s = ok ? m->layers[i].time_bwd : 0.0;
}

/* An empty slice of a global batch (data parallel): only synchronized batchnorm layers take
 * part, contributing nothing, so every rank makes the same collective calls. */
static nn_status forward_empty(nn_model *m, nn_mode mode, int lean, double *loss_sum, int *correct, nn_error *err) {
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    if (!L->comm) continue;
    nn_status st = nn_layer_table[L->kind]->forward(L, m->act[i], m->act[i + 1], 0, mode, err);
    if (st) return st;
  }
  if (loss_sum) *loss_sum = 0;
  if (correct) *correct = 0;
  m->last_n = 0;
  m->last_mode = mode;
  m->last_has_labels = 1;
  m->last_lean = lean;
  return NN_OK;
}

/* Layer i is a pool whose backward, after a forward of this mode, runs inside the fused pair
 * of layers before it: a batchnorm and its activation (a 2x2 or global pool,
 * nn_batchnorm_pool_fuses), or a conv2d and its activation (a global average pool,
 * nn_layer_gap_fuses). */
static int pool_in_backward(const nn_model *m, int i, nn_mode mode) {
  if (i < 2 || !fused_span(m, i - 2, mode, 0)) return 0;
  const nn_layer *L = &m->layers[i - 2];
  return nn_batchnorm_pool_fuses(L, L + 1, L + 2, mode) || nn_layer_gap_fuses(L, L + 1, L + 2, mode);
}

static nn_status forward(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode, int lean,
                         double *loss_sum, int *correct, const float **logits, nn_error *err) {
  if (mode != NN_MODE_TRAIN && mode != NN_MODE_EVAL)
    return nn_err_set(err, NN_ERR_ARG, "mode %d is neither NN_MODE_TRAIN nor NN_MODE_EVAL", (int)mode);
  if (n == 0 && m->comm) return forward_empty(m, mode, lean, loss_sum, correct, err);
  if (n < 1) return nn_err_set(err, NN_ERR_ARG, "batch size must be >= 1, got %d", n);
  if (!x) return nn_err_set(err, NN_ERR_ARG, "no input (x is NULL)");
  /* x assembled in the model's own input buffer is read there, not copied */
  const int in_place = m->act && x == m->act[0];
  if (in_place && n > m->plan_n)
    return nn_err_set(err, NN_ERR_ARG, "a batch of %d in the model's input, planned for %d", n, m->plan_n);
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
  if (m->threads > 0) omp_set_num_threads(m->threads);
  else nn_threads_step(&m->tuner[mode == NN_MODE_EVAL], &m->tuner[mode != NN_MODE_EVAL], n);
  if (!in_place) memcpy(m->act[0], x, (size_t)n * nn_shape_size(m->spec->input) * sizeof *x);
  for (int i = 0; i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    const int span = fused_span(m, i, mode, lean);
    const double t0 = m->timing ? nn_now() : 0.0;
    if (span) {
      /* layers i..i+span in one pass; only the last one's output act[i+span+1] is stored */
      if (L->kind == NN_LAYER_BATCHNORM) {
        st = nn_batchnorm_forward_fused(L, &m->layers[i + 1], m->act[i], m->act[i + 2], n, mode, err);
      } else {
        nn_epilogue e;
        nn_layer_epilogue(&m->layers[i + 1], span, &e);
        nn_layer_table[L->kind]->forward_epi(L, &e, m->act[i], m->act[i + span + 1], n);
      }
      i += span;
    } else if (L->kind == NN_LAYER_MAXPOOL2D && (lean || pool_in_backward(m, i, mode))) {
      nn_maxpool2d_forward_values(L, m->act[i], m->act[i + 1], n); /* no backward reads an argmax */
    } else {
      st = nn_layer_table[L->kind]->forward(L, m->act[i], m->act[i + 1], n, mode, err);
    }
    if (m->timing) L->time_fwd += nn_now() - t0; /* L: the span's first layer */
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
  m->last_lean = lean;
  return NN_OK;
}

nn_status nn_model_forward(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode, double *loss_sum,
                           int *correct, const float **logits, nn_error *err) {
  return forward(m, x, labels, n, mode, 0, loss_sum, correct, logits, err);
}

nn_status nn_model_forward_lean(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode,
                                double *loss_sum, int *correct, const float **logits, nn_error *err) {
  return forward(m, x, labels, n, mode, 1, loss_sum, correct, logits, err);
}

/* The number of layers before layer i that run inside one backward call ending at it (0:
 * layer i runs alone): 1 where the last forward fused the pair (training: batchnorm or conv2d
 * with its activation), 2 for those two and a pool whose backward they take over
 * (pool_in_backward). */
static int backward_span(const nn_model *m, int i) {
  if (pool_in_backward(m, i, m->last_mode)) return 2;
  return i > 0 && fused_span(m, i - 1, m->last_mode, 0) ? 1 : 0;
}

nn_status nn_model_backward(nn_model *m, nn_error *err) {
  if ((!m->last_n && !m->comm) || !m->last_has_labels)
    return nn_err_set(err, NN_ERR_ARG, "backward needs a preceding forward with labels");
  if (m->last_lean)
    return nn_err_set(err, NN_ERR_ARG, "backward cannot follow an evaluation forward that kept no layer outputs");
  int n = m->last_n, k = nn_model_output_size(m);
  if (n) nn_softmax_xent_backward(m->probs, m->labels, m->dact[m->nlayers], n, k, 1.0f / (float)(m->loss_n ? m->loss_n : n));
  for (int i = m->nlayers - 1; i >= 0; i--) {
    nn_layer *L = &m->layers[i];
    if (!n && !L->comm) continue; /* empty slice: only synchronized batchnorm takes part */
    const double t0 = m->timing ? nn_now() : 0.0;
    const int span = backward_span(m, i);
    i -= span; /* layers i..i+span in one call, timed on layer i */
    nn_layer *F = &m->layers[i];
    float *dx = i ? m->dact[i] : NULL;
    if (span == 2 && F->kind == NN_LAYER_BATCHNORM) /* batchnorm + activation + pool, from the pool's output gradient */
      nn_batchnorm_backward_fused_pool(F, &m->layers[i + 1], L, m->act[i], m->act[i + 2], m->dact[i + 3], dx, n);
    else if (span == 1 && F->kind == NN_LAYER_BATCHNORM)
      nn_batchnorm_backward_fused(F, L, m->act[i], m->act[i + 2], m->dact[i + 2], dx, n);
    else if (span) /* conv2d + activation (+ global average pool, from its output gradient) */
      nn_layer_table[F->kind]->backward_act(F, nn_layer_act(&m->layers[i + 1]), m->act[i], m->act[i + 2],
                                            m->dact[i + 1 + span], dx, n, span == 2);
    else
      nn_layer_table[L->kind]->backward(L, m->act[i], m->act[i + 1], m->dact[i + 1], dx, n, m->last_mode);
    if (m->timing) F->time_bwd += nn_now() - t0;
  }
  return NN_OK;
}
