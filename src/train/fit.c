/* The training loop: epochs of shuffled mini-batches (uint8 -> float per batch), the
 * optimizer step, and evaluation in eval mode. All buffers are allocated once before the
 * first step. A helper thread assembles batch b+1 while step b trains (base/async.h). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/aligned.h"
#include "base/async.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/rng.h"
#include "base/threads.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "model/model.h"
#include "train/fit.h"
#include "train/history.h"

nn_fit_config nn_fit_defaults(void) {
  return (nn_fit_config){.epochs = 10, .batch_size = 128, .shuffle = 1, .drop_last = 0, .seed = 0, .input_norm = {0.0f, 1.0f}, .eval_batch_size = 0, .divergence_factor = 1e4};
}

#define NN_SHUFFLE_STREAM 0x53485546464c4500ull /* "SHUFFLE" */

void nn_fit_seed_data_rng(nn_rng *r, uint64_t seed) { nn_rng_seed(r, seed ^ NN_SHUFFLE_STREAM); }

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Buffers for one batch: floats, labels and the sample order. */
typedef struct {
  float *x;
  int32_t *y;
  uint32_t *order;
} batch_buf;

/* input values per sample of that shape */
static size_t dims_values(nn_dims d) { return (size_t)d.c * (size_t)d.h * (size_t)d.w; }

static nn_status batch_buf_alloc(batch_buf *b, const nn_dataset *ds, int batch, nn_error *err) {
  int n = nn_dataset_count(ds);
  b->x = nn_alloc_floats((size_t)batch * dims_values(nn_dataset_shape(ds)), 0);
  b->y = malloc((size_t)batch * sizeof *b->y);
  b->order = malloc((size_t)(n ? n : 1) * sizeof *b->order);
  if (!b->x || !b->y || !b->order) return nn_err_set(err, NN_ERR_NOMEM, "out of memory for a batch of %d", batch);
  for (int i = 0; i < n; i++) b->order[i] = (uint32_t)i;
  return NN_OK;
}

static void batch_buf_free(batch_buf *b) {
  free(b->x);
  free(b->y);
  free(b->order);
}

/* 1 if a and b are the same shape */
static int dims_equal(nn_dims a, nn_dims b) { return a.c == b.c && a.h == b.h && a.w == b.w; }

nn_status nn_fit_check_shape(const nn_model *m, const nn_dataset *ds, const char *what, nn_error *err) {
  const nn_dims d = nn_dataset_shape(ds), in = nn_model_input_shape(m);
  const size_t values = dims_values(d);
  if (values != (size_t)nn_model_input_size(m))
    return nn_err_set(err, NN_ERR_SHAPE, "%s samples are %dx%dx%d (%zu values) but the model takes %d inputs", what,
                      d.c, d.h, d.w, values, nn_model_input_size(m));
  /* A model with a CxHxW input reads images of that shape: as many values in another shape
   * (14x56 for 28x28) are other pictures, and its convolutions would run on them. A flat
   * input ({1, 1, N}) takes any shape of N values. */
  if (!(in.c == 1 && in.h == 1) && !dims_equal(d, in))
    return nn_err_set(err, NN_ERR_SHAPE, "%s samples are %dx%dx%d but the model takes %dx%dx%d", what, d.c, d.h, d.w,
                      in.c, in.h, in.w);
  return NN_OK;
}

nn_status nn_fit_check_input(const nn_model *m, const nn_dataset *ds, const char *what, nn_error *err) {
  nn_status st = nn_fit_check_shape(m, ds, what, err);
  if (st) return st;
  if (nn_dataset_num_classes(ds) > nn_model_output_size(m))
    return nn_err_set(err, NN_ERR_SHAPE, "%s has %d classes but the model has %d outputs", what,
                      nn_dataset_num_classes(ds), nn_model_output_size(m));
  return NN_OK;
}

nn_status nn_model_check_data(const nn_model *m, const nn_dataset *ds, nn_error *err) {
  return nn_fit_check_input(m, ds, "the data set", err);
}

nn_status nn_fit_check_same_shape(const nn_dataset *train, const nn_dataset *eval, const char *what, nn_error *err) {
  /* a flat model takes both whatever their shapes: what it learnt on one shape is no measure on another */
  const nn_dims a = nn_dataset_shape(train), b = nn_dataset_shape(eval);
  if (!dims_equal(a, b))
    return nn_err_set(err, NN_ERR_SHAPE, "%s samples are %dx%dx%d but the training set's are %dx%dx%d", what, b.c,
                      b.h, b.w, a.c, a.h, a.w);
  return NN_OK;
}

/* Data parallel (comm != NULL): each rank evaluates its contiguous slice of every batch,
 * so batch-statistics layers see the same batches as one process; the sums are reduced. */
static nn_status evaluate(nn_model *m, const nn_dataset *ds, nn_input_norm norm, int batch, nn_mode mode,
                          const nn_comm *comm, batch_buf *b, double *loss, double *acc, nn_error *err) {
  int n = nn_dataset_count(ds);
  double sums[2] = {0, 0}; /* loss, correct */
  /* one process: each batch assembled in the model's input, which the forward then does not
   * copy */
  nn_status st = comm ? NN_OK : nn_model_plan(m, batch, err);
  float *x = comm || st ? b->x : m->act[0];
  for (int start = 0; start < n && !st; start += batch) {
    int cnt = n - start < batch ? n - start : batch;
    nn_range sl = nn_dist_slice(comm, cnt);
    int lo = sl.lo, hi = sl.hi;
    if (hi > lo)
      nn_dataset_batch_split(ds, b->order + start + lo, hi - lo, norm, x, b->y, nn_dataset_batch_parts(ds, hi - lo));
    double ls;
    int c;
    st = nn_model_forward_lean(m, x, b->y, hi - lo, mode, &ls, &c, NULL, err);
    if (!st) sums[0] += ls, sums[1] += c;
  }
  st = nn_dist_agree_sum(comm, st, sums, 2, err);
  if (st) return st;
  *loss = n ? sums[0] / n : 0;
  *acc = n ? sums[1] / n : 0;
  return NN_OK;
}

/* A digest of the model: its layer kinds, parameters and running statistics. */
static uint64_t model_hash(nn_model *m) {
  uint64_t h = nn_hash_i64(NN_HASH_START, m->nlayers);
  for (int i = 0; i < m->nlayers; i++) h = nn_hash_i64(h, m->layers[i].kind);
  h = nn_hash_bytes(h, nn_model_params(m), nn_model_param_count(m) * sizeof(float));
  return nn_hash_bytes(h, nn_model_state(m), nn_model_state_count(m) * sizeof(float));
}

/* Data parallel: every rank must hold the same model bits; a difference is reported, not hidden. */
static nn_status check_replicas(nn_model *m, const nn_comm *comm, nn_error *err) {
  uint64_t mine = model_hash(m), root = mine;
  comm->bcast(comm->ctx, &root, sizeof root, 0);
  nn_status st = root == mine ? NN_OK
                              : nn_err_set(err, NN_ERR_NUMERIC,
                                           "the model on this rank differs from rank 0's after "
                                           "training (the all-reduce gave ranks different bits)");
  return nn_dist_agree(comm, st, err);
}

static uint64_t data_hash(const nn_dataset *ds) {
  if (!ds) return 0;
  uint64_t h = nn_hash_i64(NN_HASH_START, ds->n);
  h = nn_hash_i64(nn_hash_i64(nn_hash_i64(nn_hash_i64(h, ds->c), ds->h), ds->w), ds->num_classes);
  h = nn_hash_bytes(h, ds->images, (size_t)ds->n * ds->sample_size);
  return nn_hash_bytes(h, ds->labels, (size_t)ds->n * sizeof *ds->labels);
}

static uint64_t optimizer_hash(const nn_optimizer *opt, const nn_model *m) {
  uint64_t h = nn_hash_f64(nn_hash_i64(NN_HASH_START, nn_optimizer_steps(opt)), nn_optimizer_lr(opt));
  for (int t = 0; t < nn_optimizer_num_tensors(opt, m); t++) {
    nn_tensor_view v;
    nn_optimizer_tensor(opt, m, t, &v);
    h = v.data ? nn_hash_bytes(h, v.data, v.count * sizeof(float)) : nn_hash_i64(h, v.count_value ? *v.count_value : 0);
  }
  return h;
}

/* the settings every rank must share (the optimizer's own in optimizer_hash) */
static uint64_t settings_hash(const nn_fit_config *c) {
  const int64_t ints[] = {c->batch_size, c->epochs, c->shuffle, c->drop_last, (int64_t)c->seed, c->eval_batch_size,
                          c->max_steps, c->accumulate, c->early_stop, c->nan_check, c->comm->sync_bn};
  uint64_t h = nn_hash_bytes(NN_HASH_START, ints, sizeof ints);
  const double reals[] = {c->input_norm.mean, c->input_norm.std, c->early_stop_delta, c->divergence_factor};
  h = nn_hash_bytes(h, reals, sizeof reals);
  const nn_augment *a = c->augment;
  h = a ? nn_hash_f64(nn_hash_i64(nn_hash_i64(h, a->flip), a->crop), a->rotate) : nn_hash_i64(h, -1);
  const nn_lr_schedule *l = c->lr_schedule;
  return l ? nn_hash_f64(nn_hash_i64(nn_hash_i64(nn_hash_i64(h, l->kind), l->step_epochs), l->warmup), l->gamma)
           : nn_hash_i64(h, -1);
}

static uint64_t position_hash(const nn_fit_config *c) {
  uint64_t h = nn_hash_i64(NN_HASH_START, c->first_epoch);
  if (c->data_rng) h = nn_hash_bytes(h, c->data_rng->s, sizeof c->data_rng->s);
  const nn_fit_position *p = c->position;
  if (!p || !p->batch) return h;
  const int64_t at[] = {p->batch, p->seen, p->correct};
  h = nn_hash_bytes(nn_hash_bytes(h, p->epoch_start.s, sizeof p->epoch_start.s), at, sizeof at);
  return nn_hash_f64(h, p->loss_sum);
}

/* Data parallel, before the first step: every rank must start from rank 0's model,
 * optimizer, settings, data and place in the data (a run copied to each node, one copy out of
 * date; another --lr): otherwise the all-reduce mixes different models, or fails on
 * different sizes. The first difference is named; nothing has been trained. */
static nn_status check_start(nn_model *m, const nn_optimizer *opt, const nn_dataset *train,
                             const nn_dataset *test, const nn_fit_config *cfg, nn_error *err) {
  static const char *const what[] = {"the model (architecture, weights or statistics)",
                                     "the optimizer's state (steps, learning rate or moments)",
                                     "the training settings (batch, epochs, schedule, seed, ...)",
                                     "the training data",
                                     "the evaluation data",
                                     "the place in the data (epoch, batch or shuffling stream)"};
  const uint64_t mine[] = {model_hash(m), optimizer_hash(opt, m), settings_hash(cfg),
                           data_hash(train), data_hash(test), position_hash(cfg)};
  _Static_assert(sizeof what / sizeof what[0] == sizeof mine / sizeof mine[0], "one name per digest");
  return nn_dist_same(cfg->comm, mine, what, (int)(sizeof mine / sizeof mine[0]), err);
}

nn_status nn_evaluate(nn_model *m, const nn_dataset *ds, nn_input_norm norm, int batch_size, nn_mode mode,
                      double *loss, double *acc, nn_error *err) {
  if (batch_size < 1) return nn_err_set(err, NN_ERR_ARG, "batch size must be >= 1, got %d", batch_size);
  if (nn_input_norm_check(norm, err)) return NN_ERR_ARG;
  nn_status st = nn_fit_check_input(m, ds, "the data set", err);
  if (st) return st;
  batch_buf b = {0};
  st = batch_buf_alloc(&b, ds, batch_size, err);
  if (!st) st = evaluate(m, ds, norm, batch_size, mode, NULL, &b, loss, acc, err);
  batch_buf_free(&b);
  return st;
}

/* ---- the loop: one state, one function per step and per epoch -------------------------
 * A step is: batch -> (augment) -> this rank's slice -> forward -> zero grads -> backward ->
 * gradient all-reduce -> agreement on the status -> finite-loss check -> optimizer step ->
 * on_batch. An epoch is: permutation -> steps -> (running statistics from rank 0) ->
 * evaluation -> record -> on_epoch_end -> epoch_done. Per-step concerns (a learning rate per
 * step, gradient accumulation, divergence guards) go in fit_step; per-epoch ones
 * (schedules, early stopping) in fit_epoch / the epoch_done hook. */
/* A batch to assemble: batch b of the epoch's order into x, y. */
typedef struct assembly {
  struct fit_state *s;
  int b;
  float *x;
  int32_t *y;
} assembly;

typedef struct fit_state {
  nn_model *m;
  nn_optimizer *opt;
  const nn_dataset *train, *test;
  const nn_fit_config *cfg;
  const nn_fit_callbacks *cb;
  const nn_comm *comm; /* data parallel over comm->size processes, or NULL */
  batch_buf tb, eb;
  nn_rng *rng; /* shuffling/augmentation stream */
  float *aug_scratch;
  /* batch assembly ahead: the helper (NULL: none, every batch is assembled in its step)
   * fills the spare buffers with batch `ahead` (-1: none) while a step trains; the stream
   * as it was before that batch's draws, to undo them if it is never trained */
  nn_async *async;
  float *spare_x;
  int32_t *spare_y;
  int ahead;
  nn_rng before_ahead;
  assembly job; /* the helper's job (it reads it while the step runs) */
  int n, bs, ebs, batches;
  int first;      /* the first epoch of this call (it may start inside, at cfg->position) */
  nn_dims in;     /* sample shape */
  int accumulate; /* batches per optimizer step */
  long steps_per_epoch, total_steps;
  float base_lr;
  /* numeric guard: the first batch's mean loss and per-layer output magnitudes (the scale
   * that "exploded" is judged against), limits = divergence_factor x those */
  double loss_ref;
  double *out_ref, *out_limit;
  /* running sums of the current epoch */
  double loss_sum, epoch_lr;
  long correct, seen;
  int stop_asked; /* on_batch asked to stop: at the end of the accumulation group */
} fit_state;

/* Samples of the accumulation group holding batch b: its batches' total (the last batch of
 * an epoch may be short, the last group may hold fewer than K batches). */
static int group_samples(const fit_state *s, int b, int *last_in_group) {
  int g0 = b / s->accumulate * s->accumulate, g1 = g0 + s->accumulate;
  if (g1 > s->batches) g1 = s->batches;
  *last_in_group = b == g1 - 1;
  int end = g1 * s->bs < s->n ? g1 * s->bs : s->n;
  return end - g0 * s->bs;
}

/* The numeric guard after a step's forward/backward, before the optimizer may spread a bad
 * value into the weights: a non-finite loss, a mean loss above divergence_factor x the first
 * batch's, or (nan_check) any non-finite layer output stops training with the step and the
 * first layer whose output went non-finite or grew by that factor. */
static nn_status guard_step(fit_state *s, int epoch, int b, double loss, int local_n, nn_error *err) {
  const nn_fit_config *cfg = s->cfg;
  int L = nn_model_num_layers(s->m);
  const double factor = cfg->divergence_factor;
  if (factor > 0 && s->loss_ref < 0 && isfinite(loss)) {
    s->loss_ref = loss > 0 ? loss : 0;
    /* a rank with an empty slice ran no forward: it has no outputs to measure */
    if (local_n > 0) nn_model_output_maxabs(s->m, s->out_ref);
    else
      for (int i = 0; i < L; i++) s->out_ref[i] = 0;
    for (int i = 0; i < L; i++)
      s->out_limit[i] = isfinite(s->out_ref[i]) && s->out_ref[i] > 0 ? factor * s->out_ref[i] : INFINITY;
  }
  int diverged = factor > 0 && s->loss_ref > 0 && loss > factor * s->loss_ref;
  if (isfinite(loss) && !diverged && !cfg->nan_check) return NN_OK;
  double v = 0;
  int layer = local_n > 0 ? nn_model_first_bad_output(s->m, diverged ? s->out_limit : NULL, &v) : -1;
  if (isfinite(loss) && !diverged && layer < 0) return NN_OK;
  char where[160] = "";
  if (layer >= 0) {
    nn_layer_info li;
    nn_model_layer_info(s->m, layer, &li);
    snprintf(where, sizeof where, "; the first bad output is layer %d (%s, line %d): %s%g", layer, li.kind, li.line,
             isfinite(v) ? "magnitude " : "", isfinite(v) ? fabs(v) : v);
  }
  if (!isfinite(loss) || (layer >= 0 && !isfinite(v)))
    return nn_err_set(err, NN_ERR_NUMERIC,
                      "epoch %d, batch %d of %d (step %ld): %s%s; training stopped (try a lower learning rate)",
                      epoch, b + 1, s->batches, nn_optimizer_steps(s->opt) + 1,
                      isfinite(loss) ? "a layer output is not finite" : "the loss is not finite", where);
  return nn_err_set(err, NN_ERR_NUMERIC,
                    "epoch %d, batch %d of %d (step %ld): the loss %g is over %g times the first batch's %g: "
                    "training diverged%s; training stopped (try a lower learning rate, or --divergence-factor)",
                    epoch, b + 1, s->batches, nn_optimizer_steps(s->opt) + 1, loss, factor, s->loss_ref, where);
}

/* ---- batch assembly: uint8 -> float and augmentation, in batch order ---------------------
 * Batch b's augmentation draws follow batch b-1's in the one data stream whether it is
 * assembled in its step or ahead of it, so the batches, and training, are bitwise the same
 * either way. */

/* In `parts` slices of the batch (nn_dataset_batch_split); the augmentation after it, in
 * sample order (one random stream). */
static void assemble_parts(const assembly *a, int parts) {
  fit_state *s = a->s;
  const nn_fit_config *cfg = s->cfg;
  const int start = a->b * s->bs, cnt = s->n - start < s->bs ? s->n - start : s->bs;
  nn_dataset_batch_split(s->train, s->tb.order + start, cnt, cfg->input_norm, a->x, a->y, parts);
  if (cfg->augment) nn_augment_batch(cfg->augment, s->rng, a->x, cnt, s->in, s->aug_scratch);
}

/* the helper's job: one thread (the step's team is training meanwhile) */
static void assemble(void *arg) { assemble_parts(arg, 1); }

/* Batch b's samples (its labels in s->tb.y): the one assembled ahead (in s->tb.x), or
 * assembled now, in one process into the model's input (the fit plans the model for the
 * batch first), which the forward then does not copy. */
static float *batch_ready(fit_state *s, int b) {
  if (s->ahead == b) {
    nn_async_wait(s->async);
    float *x = s->tb.x;
    int32_t *y = s->tb.y;
    s->tb.x = s->spare_x, s->tb.y = s->spare_y;
    s->spare_x = x, s->spare_y = y;
    s->ahead = -1;
    return s->tb.x;
  }
  /* in the step the team waits for it, so it takes part */
  const assembly a = {s, b, s->comm ? s->tb.x : s->m->act[0], s->tb.y};
  assemble_parts(&a, nn_dataset_batch_parts(s->train, s->bs));
  return a.x;
}

/* Start assembling batch b into the spare buffers on the helper (nothing past the epoch's
 * last batch: the next epoch's permutation comes first in the stream). Only while the steps
 * leave a core free (the thread count in force is below the cores'): next to a team on
 * every core, the helper would take a core from a team member, and the team's next barrier
 * waits for it (measured: mlp at 2 threads on 2 cores 64-72k samples/s in half the epochs
 * against 100-115k). */
static void assemble_ahead(fit_state *s, int b) {
  if (!s->async || b >= s->batches || omp_get_max_threads() >= nn_cores()) return;
  s->before_ahead = *s->rng;
  s->ahead = b;
  s->job = (assembly){s, b, s->spare_x, s->spare_y};
  nn_async_run(s->async, assemble, &s->job);
}

/* The epoch ends before the batch assembled ahead trains (max_steps, a stop, an error):
 * its draws are undone, so the stream is where the last trained batch left it. */
static void drop_ahead(fit_state *s) {
  if (s->ahead < 0) return;
  nn_async_wait(s->async);
  *s->rng = s->before_ahead;
  s->ahead = -1;
}

/* Step b (0-based) of `epoch`. *stop is set when max_steps is reached or on_batch asks. */
static nn_status fit_step(fit_state *s, int epoch, int b, int *stop, nn_error *err) {
  const nn_fit_config *cfg = s->cfg;
  const nn_comm *comm = s->comm;
  nn_model *m = s->m;
  int start = b * s->bs, cnt = s->n - start < s->bs ? s->n - start : s->bs;
  float *x = batch_ready(s, b);
  assemble_ahead(s, b + 1); /* the next batch, while this one trains */
  /* data parallel: every rank made the whole global batch (same stream); it trains on its slice */
  nn_range sl = nn_dist_slice(comm, cnt);
  int lo = sl.lo, hi = sl.hi;
  double ls = 0;
  int right = 0;
  /* accumulation: the gradient of the group's mean loss builds up over its K batches (each
   * batch's loss gradient divided by the group's sample count), one optimizer step at its end */
  int last, group = group_samples(s, b, &last);
  if (b % s->accumulate == 0) {
    nn_model_zero_grads(m);
    if (cfg->lr_schedule) {
      nn_lr_position at = {.step = nn_optimizer_steps(s->opt), .steps_per_epoch = s->steps_per_epoch, .total_steps = s->total_steps};
      double lr = nn_lr_schedule_at(cfg->lr_schedule, s->base_lr, at);
      nn_optimizer_set_lr(s->opt, (float)lr);
    }
    if (b == 0) s->epoch_lr = nn_optimizer_lr(s->opt);
  }
  m->loss_n = group;
  nn_status st = nn_model_forward(m, x + (size_t)lo * dims_values(s->in), s->tb.y + lo, hi - lo,
                                  NN_MODE_TRAIN, &ls, &right, NULL, err);
  if (!st) st = nn_model_backward(m, err);
  if (comm) {
    /* one all-reduce of the flat gradient per optimizer step (each rank's is already over the
     * global batch), then one small reduction of the loss and the statuses: all ranks go on or
     * stop together */
    if (last) comm->sum_f32(comm->ctx, nn_model_grads(m), nn_model_param_count(m));
    double v[2] = {ls, right};
    st = nn_dist_agree_sum(comm, st, v, 2, err);
    ls = v[0], right = (int)v[1];
  }
  if (st) return nn_err_prefix(err, st, "epoch %d, batch %d of %d: ", epoch, b + 1, s->batches);
  /* every rank has the same loss (agreed above); a rank-local bad output is agreed too */
  st = guard_step(s, epoch, b, cnt > 0 ? ls / cnt : 0, hi - lo, err);
  if (comm && cfg->nan_check) st = nn_dist_agree(comm, st, err);
  if (st) return st;
  if (last) nn_optimizer_step(s->opt, m);
  s->loss_sum += ls;
  s->correct += right;
  s->seen += cnt;
  if (last && cfg->max_steps > 0 && nn_optimizer_steps(s->opt) >= cfg->max_steps) *stop = 1;
  const nn_fit_callbacks *cb = s->cb;
  if (cb && cb->on_batch &&
      cb->on_batch(cb->user, epoch, b + 1, s->batches, s->loss_sum / s->seen, (double)s->correct / s->seen))
    s->stop_asked = 1;
  /* a stop asked on one rank alone (a signal, a clock) stops every rank after the same step;
   * every rank takes part, whether it has an on_batch or not (rank 0 alone may report) */
  if (comm && last) {
    double v = s->stop_asked;
    comm->sum_f64(comm->ctx, &v, 1);
    s->stop_asked = v > 0;
  }
  /* a stop inside a group would leave half a gradient no checkpoint holds: the group ends */
  if (s->stop_asked && last) *stop = 1;
  return NN_OK;
}

/* One epoch: its permutation, its steps (from its start or the resumed position, to its end
 * or to max_steps), evaluation in eval mode, the record. *complete: whether it reached its
 * last batch (a run that max_steps pauses inside an epoch records the part as the epoch's
 * row, and early stopping does not count it). */
static nn_status fit_epoch(fit_state *s, int epoch, nn_epoch_record *r, int *stop, int *complete, nn_error *err) {
  const nn_fit_config *cfg = s->cfg;
  const nn_fit_callbacks *cb = s->cb;
  const nn_comm *comm = s->comm;
  nn_fit_position *pos = cfg->position;
  double t0 = now_seconds();
  s->loss_sum = 0, s->correct = 0, s->seen = 0;
  /* Each epoch's permutation depends only on the stream, not on the previous one. Inside an
   * epoch (a resumed position) it is drawn again from the stream of the epoch's start, and
   * the stream goes on from where the position left it. */
  int b0 = pos && epoch == s->first ? pos->batch : 0;
  nn_rng start = b0 ? pos->epoch_start : *s->rng, now = *s->rng;
  *s->rng = start;
  for (int i = 0; i < s->n; i++) s->tb.order[i] = (uint32_t)i;
  if (cfg->shuffle) nn_rng_shuffle(s->rng, s->tb.order, (uint32_t)s->n);
  double before = 0; /* training seconds of the epoch before a resumed position */
  if (b0) {
    *s->rng = now;
    s->loss_sum = pos->loss_sum, s->correct = pos->correct, s->seen = pos->seen, s->epoch_lr = pos->lr;
    before = pos->seconds;
  }
  if (cb && cb->on_epoch_begin) cb->on_epoch_begin(cb->user, epoch, cfg->epochs, s->batches);
  nn_status st = NN_OK;
  int b = b0;
  for (; b < s->batches && !st && !*stop; b++) st = fit_step(s, epoch, b, stop, err);
  drop_ahead(s);
  if (st) return st;
  *complete = b == s->batches;
  const double t_train = before + (now_seconds() - t0);
  if (pos)
    *pos = b < s->batches ? (nn_fit_position){.batch = b, .epoch_start = start, .loss_sum = s->loss_sum, .lr = s->epoch_lr, .correct = s->correct, .seen = s->seen, .seconds = t_train}
                          : (nn_fit_position){0};
  /* --sync-bn off: each rank tracked its own slice's statistics; rank 0's are the model's
   * (what it saves), so every rank evaluates and continues with them */
  if (comm && !comm->sync_bn && nn_model_state_count(s->m))
    comm->bcast(comm->ctx, nn_model_state(s->m), nn_model_state_count(s->m) * sizeof(float), 0);
  *r = (nn_epoch_record){.epoch = epoch, .train_loss = s->seen ? s->loss_sum / s->seen : 0, .train_acc = s->seen ? (double)s->correct / s->seen : 0, .test_loss = NAN, .test_acc = NAN, .lr = s->epoch_lr};
  if (s->test && (st = evaluate(s->m, s->test, cfg->input_norm, s->ebs, NN_MODE_EVAL, comm, &s->eb, &r->test_loss,
                                &r->test_acc, err)))
    return st;
  r->seconds = before + (now_seconds() - t0);
  r->samples_per_sec = t_train > 0 ? s->seen / t_train : 0;
  return NN_OK;
}

/* ---- early stopping: the best epoch's weights, statistics and BN counters ------------- */
nn_early_stop_state nn_early_stop_start(void) { return (nn_early_stop_state){.best_loss = INFINITY}; }

int nn_early_stop_next(nn_early_stop_state *s, const nn_epoch_record *rec, double delta) {
  if (rec->test_loss < s->best_loss - delta) {
    s->best_loss = rec->test_loss, s->best_epoch = rec->epoch, s->wait = 0;
    return 1;
  }
  s->wait++;
  return 0;
}

int nn_early_stop_out(const nn_early_stop_state *s, int patience) {
  return patience > 0 && s->best_epoch > 0 && s->wait >= patience;
}

nn_early_stop_state nn_early_stop_replay(const nn_history *h, int n, int patience, double delta, int *stopped_at) {
  nn_early_stop_state s = nn_early_stop_start();
  if (stopped_at) *stopped_at = 0;
  for (int i = 0; i < n && i < nn_history_count(h); i++) {
    nn_early_stop_next(&s, nn_history_get(h, i), delta);
    if (stopped_at && !*stopped_at && nn_early_stop_out(&s, patience)) *stopped_at = nn_history_get(h, i)->epoch;
  }
  return s;
}

typedef struct {
  nn_early_stop_state s;
  float *params, *state;
  int64_t *counts;
  int ncounts;
} early_stop;

/* Copy the weights, statistics and BN counters of `from` as the best epoch's. */
static void early_stop_snapshot(early_stop *es, nn_model *from) {
  memcpy(es->params, nn_model_params(from), nn_model_param_count(from) * sizeof *es->params);
  memcpy(es->state, nn_model_state(from), nn_model_state_count(from) * sizeof *es->state);
  es->ncounts = 0;
  for (int t = 0; t < nn_model_num_tensors(from); t++) {
    nn_tensor_view v;
    nn_model_tensor(from, t, &v);
    if (v.count_value) es->counts[es->ncounts++] = *v.count_value;
  }
}

/* A resumed run (cfg->previous) continues its count: the best epoch and the epochs waited
 * since come from its history; the best weights are the model's own when that epoch is the
 * last one, else cfg->previous_best's. */
static nn_status early_stop_init(early_stop *es, nn_model *m, const nn_fit_config *cfg, int first, nn_error *err) {
  es->params = malloc((nn_model_param_count(m) + 1) * sizeof *es->params);
  es->state = malloc((nn_model_state_count(m) + 1) * sizeof *es->state);
  es->counts = malloc(((size_t)nn_model_num_tensors(m) + 1) * sizeof *es->counts);
  if (!es->params || !es->state || !es->counts) return nn_err_set(err, NN_ERR_NOMEM, "out of memory for early stopping");
  es->s = nn_early_stop_start();
  if (!cfg->previous) return NN_OK;
  int inside = cfg->position && cfg->position->batch > 0;
  if (nn_history_count(cfg->previous) != first - 1 + inside)
    return nn_err_set(err, NN_ERR_ARG, "early stopping: the previous history has %d epochs, training starts at epoch %d",
                      nn_history_count(cfg->previous), first);
  int stopped = 0;
  es->s = nn_early_stop_replay(cfg->previous, first - 1, cfg->early_stop, cfg->early_stop_delta, &stopped);
  if (stopped)
    return nn_err_set(err, NN_ERR_ARG, "early stopping already ended this run at epoch %d (patience %d)", stopped,
                      cfg->early_stop);
  if (!es->s.best_epoch) return NN_OK;
  nn_model *from = es->s.best_epoch == first - 1 && !inside ? m : cfg->previous_best;
  if (!from)
    return nn_err_set(err, NN_ERR_ARG,
                      "early stopping: the weights of the best epoch so far (%d) are needed to go on (previous_best)",
                      es->s.best_epoch);
  if (nn_model_param_count(from) != nn_model_param_count(m) || nn_model_state_count(from) != nn_model_state_count(m) ||
      nn_model_num_tensors(from) != nn_model_num_tensors(m))
    return nn_err_set(err, NN_ERR_SHAPE, "early stopping: the best epoch's model is not this model's architecture");
  early_stop_snapshot(es, from);
  return NN_OK;
}

static void early_stop_free(early_stop *es) {
  free(es->params), free(es->state), free(es->counts);
}

/* Keep the weights of an improved epoch; 1 when the patience has run out. */
static int early_stop_update(early_stop *es, nn_model *m, const nn_epoch_record *r, int patience, double delta) {
  if (nn_early_stop_next(&es->s, r, delta)) early_stop_snapshot(es, m);
  return nn_early_stop_out(&es->s, patience);
}

static void early_stop_restore(const early_stop *es, nn_model *m) {
  memcpy(nn_model_params(m), es->params, nn_model_param_count(m) * sizeof *es->params);
  memcpy(nn_model_state(m), es->state, nn_model_state_count(m) * sizeof *es->state);
  int k = 0;
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    if (v.count_value) *v.count_value = es->counts[k++];
  }
}

/* The arguments nn_fit checks on each rank before any rank trains. */
static nn_status fit_check_args(nn_model *m, const nn_dataset *train, const nn_dataset *test,
                                const nn_fit_config *cfg, nn_error *err) {
  if (cfg->batch_size < 1) return nn_err_set(err, NN_ERR_ARG, "batch size must be >= 1, got %d", cfg->batch_size);
  if (cfg->epochs < 0) return nn_err_set(err, NN_ERR_ARG, "epochs must be >= 0, got %d", cfg->epochs);
  if (nn_input_norm_check(cfg->input_norm, err)) return NN_ERR_ARG;
  if (cfg->accumulate < 0) return nn_err_set(err, NN_ERR_ARG, "accumulate must be >= 1, got %d", cfg->accumulate);
  if (cfg->early_stop < 0 || !(cfg->early_stop_delta >= 0))
    return nn_err_set(err, NN_ERR_ARG, "early stopping needs patience >= 1 and min delta >= 0");
  if (cfg->early_stop && !test)
    return nn_err_set(err, NN_ERR_ARG, "early stopping watches the evaluation loss: it needs evaluation data");
  nn_status st = nn_fit_check_input(m, train, "the training set", err);
  if (!st && test) st = nn_fit_check_input(m, test, "the test set", err);
  if (!st && test) st = nn_fit_check_same_shape(train, test, "the test set", err);
  return st;
}

nn_status nn_fit(nn_model *m, nn_optimizer *opt, const nn_dataset *train, const nn_dataset *test,
                 const nn_fit_config *cfg, const nn_fit_callbacks *cb, nn_history **history, nn_error *err) {
  if (history) *history = NULL;
  nn_status st = fit_check_args(m, train, test, cfg, err);
  if (cfg->comm && cfg->comm->size > 1) { /* every rank goes on, or none */
    st = nn_dist_agree(cfg->comm, st, err);
    if (!st) st = check_start(m, opt, train, test, cfg, err);
  }
  if (!st) st = nn_model_set_input(m, &cfg->input_norm, NULL, err); /* what the model now reads */
  if (st) return st;
  fit_state s = {.m = m, .opt = opt, .train = train, .test = test, .cfg = cfg, .cb = cb, .loss_ref = -1};
  s.n = nn_dataset_count(train), s.bs = cfg->batch_size;
  s.batches = cfg->drop_last ? s.n / s.bs : (s.n + s.bs - 1) / s.bs;
  if (s.batches == 0)
    return nn_err_set(err, NN_ERR_ARG, "no training batch: %d samples, batch size %d with drop_last", s.n, s.bs);
  s.ebs = cfg->eval_batch_size > 0 ? cfg->eval_batch_size : s.bs;
  s.accumulate = cfg->accumulate > 1 ? cfg->accumulate : 1;
  s.steps_per_epoch = (s.batches + s.accumulate - 1) / s.accumulate;
  /* a schedule's length is the epochs' steps; max_steps only pauses (a resumed run goes on
   * along the same curve) */
  s.total_steps = (long)cfg->epochs * s.steps_per_epoch;
  s.base_lr = nn_optimizer_lr(opt);
  s.epoch_lr = s.base_lr;
  const nn_comm *comm = s.comm = cfg->comm && cfg->comm->size > 1 ? cfg->comm : NULL;
  for (int i = 0; comm && i < m->nlayers; i++)
    if (m->layers[i].kind == NN_LAYER_DROPOUT)
      return nn_err_set(err, NN_ERR_ARG,
                        "layer %d (dropout, line %d) cannot train over %d processes: its masks "
                        "would differ from one process's",
                        i, m->layers[i].line, comm->size);
  nn_model_set_comm(m, comm);
  nn_history *h = nn_history_create();
  if (!h) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  st = batch_buf_alloc(&s.tb, train, s.bs, err);
  if (!st && test) st = batch_buf_alloc(&s.eb, test, s.ebs, err);
  int kk = comm ? comm->size : 1, plan = (s.bs + kk - 1) / kk, eplan = (s.ebs + kk - 1) / kk;
  if (!st) st = nn_model_plan(m, plan > eplan ? plan : eplan, err);
  s.out_ref = malloc(2 * ((size_t)m->nlayers + 1) * sizeof *s.out_ref);
  s.out_limit = s.out_ref ? s.out_ref + m->nlayers + 1 : NULL;
  if (!s.out_ref && !st) st = nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  /* The data stream (shuffling, augmentation) is derived from the seed but differs from
   * the stream that initialised the weights (nn_model_init with the same seed), so the
   * first permutation is not a function of the initial weights. A resumed run passes the
   * stream as it was at the end of the last finished epoch. */
  nn_rng own_rng;
  s.rng = cfg->data_rng;
  if (!s.rng) {
    nn_fit_seed_data_rng(&own_rng, cfg->seed);
    s.rng = &own_rng;
  }
  s.in = nn_dataset_shape(train);
  s.aug_scratch = cfg->augment ? malloc(dims_values(s.in) * sizeof *s.aug_scratch) : NULL;
  if (cfg->augment && !s.aug_scratch && !st) st = nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  /* assembly ahead needs a second batch buffer and a helper thread; without either, each
   * step assembles its own batch (the same batches, only slower) */
  s.ahead = -1;
  if (!st && s.batches > 1 && !cfg->assemble_in_step) {
    s.spare_x = nn_alloc_floats((size_t)s.bs * dims_values(s.in), 0);
    s.spare_y = malloc((size_t)s.bs * sizeof *s.spare_y);
    if (s.spare_x && s.spare_y) s.async = nn_async_create();
  }
  int first = s.first = cfg->first_epoch > 0 ? cfg->first_epoch : 1;
  const nn_fit_position *pos = cfg->position;
  if (!st && pos && pos->batch && (pos->batch < 0 || pos->batch >= s.batches || pos->batch % s.accumulate || pos->seen < 0 || pos->seen > (long)pos->batch * s.bs || pos->correct < 0 || pos->correct > pos->seen))
    st = nn_err_set(err, NN_ERR_ARG,
                    "the position inside epoch %d (batch %d, %ld samples, %ld right) does not fit %d batches of %d "
                    "in groups of %d",
                    first, pos->batch, pos->seen, pos->correct, s.batches, s.bs, s.accumulate);
  int stop = cfg->max_steps > 0 && nn_optimizer_steps(opt) >= cfg->max_steps;
  early_stop es = {0};
  if (!st && cfg->early_stop) st = early_stop_init(&es, m, cfg, first, err);
  for (int epoch = first; !st && !stop && epoch <= cfg->epochs; epoch++) {
    nn_epoch_record r;
    int complete = 0;
    if ((st = fit_epoch(&s, epoch, &r, &stop, &complete, err))) break;
    st = nn_history_append(h, &r, err);
    /* every rank sees the same evaluation loss, so all stop and restore together; a part
     * of an epoch is not an epoch of patience */
    int patience_out = !st && cfg->early_stop && complete &&
                       early_stop_update(&es, m, &r, cfg->early_stop, cfg->early_stop_delta);
    if (patience_out) early_stop_restore(&es, m);
    if (!st && cb && cb->on_epoch_end) cb->on_epoch_end(cb->user, &r);
    if (!st && cb && cb->epoch_done) st = cb->epoch_done(cb->user, &r, err);
    /* the record or the hook may fail on one rank alone (rank 0 saves the run): all stop
     * together, or the others would wait in the next step's reduction for a rank that left */
    if (comm) st = nn_dist_agree(comm, st, err);
    if (patience_out) stop = 1;
  }
  early_stop_free(&es);
  if (cfg->lr_schedule) nn_optimizer_set_lr(opt, s.base_lr);
  if (comm && !st) st = check_replicas(m, comm, err);
  m->loss_n = 0;
  nn_model_set_comm(m, NULL);
  nn_async_free(s.async);
  free(s.spare_x);
  free(s.spare_y);
  free(s.aug_scratch);
  free(s.out_ref);
  batch_buf_free(&s.tb);
  batch_buf_free(&s.eb);
  if (history && (!st || h->n)) *history = h; /* on error: the epochs that finished */
  else nn_history_free(h);
  return st;
}
