/* Training and inference throughput of the presets with and without BN, plus peak memory.
 *
 *   bench_train [--model P|all] [--norm batch|none|both] [--batch B] [--threads T]
 *               [--warmup W] [--steps N | --seconds S] [--reps R] [--augment A] [--layers]
 *
 * --model    a preset (lenet, mlp, cnn, cifar-cnn, cifar-gap) or all (default lenet)
 * --norm     batch (the preset), none (its twin without normalization) or both (default)
 * --batch    samples per step; default: the preset's own batch (lenet 128, the others 32)
 * --threads  OpenMP threads; default: the library's choice (threads=auto: per step, from
 *            timings, between 1 and all cores; see nn_set_threads)
 * --warmup   untimed steps before the first repetition (default 20)
 * --steps    timed steps per repetition; default: as many as fill --seconds
 * --seconds  target length of one repetition when --steps is not given (default 0.25)
 * --reps     timed repetitions; the median is reported (default 5)
 * --augment  augmentation (nn_augment_parse text) in each training step's batch assembly
 * --layers   also where the training steps' time goes, per layer (nn_model_set_timing): one
 *            line per layer that ran, after the variant's line:
 *              layer I KIND forward_us_per_step=F (P %) backward_us_per_step=B (Q %)
 *            (P, Q: shares of all layers' time in the timed training steps, warm-up and
 *            calibration excluded; a layer fused with the ones after it carries their time)
 *
 * A training step is what `normnet train` does per batch: zero the gradients, convert the
 * uint8 batch to normalized floats as the trainer does (nn_dataset_batch_split, over the
 * team), forward with the loss, backward, and the preset's own optimizer update (SGD lr 0.1
 * for lenet, Adam for the Keras presets), so the weights move as they do in training.
 * Inference is an eval-mode forward as the library's evaluation runs it
 * (nn_model_forward_lean: layers fused with their activations). Data: a data set of
 * BENCH_POOL random uint8 images of the preset's input shape, with random labels, drawn in
 * a shuffled order as an epoch draws them. Each variant runs in its own process so that
 * peak RSS is the variant's own (the pool included: 12.8 MB at 28x28, 50 MB at 3x32x32).
 * One line per variant:
 *   normnet lenet bn batch=128 threads=2 train_samples_per_s=N infer_samples_per_s=N
 *     train_min=N train_max=N peak_rss_mb=N train_cpu_samples_per_s=N assembly_pct=P
 *     train_mflop_per_sample=F train_gflops=G fma_peak_gflops=G peak_pct=P barrier_us=B
 * (train_min/max: the slowest and fastest repetition; train_cpu_samples_per_s: samples per
 * second of process CPU time, all threads together, median over the repetitions: at one
 * thread the figure a busy machine disturbs least; assembly_pct: the share of the training
 * steps' wall time spent converting the uint8 batch to floats; train_mflop_per_sample: the
 * multiply-adds of the conv2d and dense layers in a training step, 2 FLOPs each;
 * train_gflops: that times train_samples_per_s; fma_peak_gflops: the FMA peak this process
 * measures with its thread count (fma_peak.h, all cores under threads=auto); peak_pct: the
 * one over the other; barrier_us: what one barrier of the team costs, measured after the
 * variant (team_barrier.h; 0 at one thread): the development machine shows two states,
 * about 0.3 and 0.45 us, and two-thread figures lower in the second, however quiet the FMA
 * check; docs/performance.md, run 17). bench/peers.py runs this side by
 * side with PyTorch and Keras. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/rng.h"
#include "data/dataset.h"
#include "bench_util.h"
#include "fma_peak.h"
#include "team_barrier.h"
#include "model/model.h"
#include "normnet.h"

#define MAX_REPS 101
#define BENCH_POOL 16384 /* images in the benchmark's data set (or the batch, if larger) */

static const char usage[] =
    "usage: bench_train [--model P|all] [--norm batch|none|both] [--batch B] [--threads T]\n"
    "                   [--warmup W] [--steps N | --seconds S] [--reps R] [--augment A]\n"
    "  --model   preset name or all (default lenet)\n"
    "  --norm    batch, none or both (default both)\n"
    "  --batch   samples per step (default: the preset's own batch)\n"
    "  --threads OpenMP threads (default: the library's choice, printed as auto)\n"
    "  --warmup  untimed steps first (default 20)\n"
    "  --steps   timed steps per repetition (default: --seconds worth)\n"
    "  --seconds target seconds per repetition without --steps (default 0.25)\n"
    "  --reps    timed repetitions, median reported (default 5, at most 101)\n"
    "  --augment augmentation in each training step's batch assembly, e.g. flip,rotate=0.1,crop=4\n"
    "  --layers  also print each layer's share of the training steps' time\n";

typedef struct {
  int batch, threads, warmup, steps, reps;
  int layers; /* --layers: per-layer timing of the training steps */
  double seconds;
  const char *augment; /* nn_augment_parse text, or NULL */
} bench_opts;

typedef struct {
  const nn_preset *p;
  nn_model *m;
  nn_optimizer *opt;
  int batch, in;
  const nn_dataset *ds;
  const uint32_t *order; /* a shuffled order of ds's samples */
  int next;              /* the next batch's first position in it */
  int32_t *y;
  float *x;
  double assembly;     /* wall seconds spent in batch assembly */
  long steps;          /* training steps since the layer timing started (--layers) */
  const nn_augment *a; /* augmentation in the assembly, or NULL */
  nn_rng *rng;
  nn_dims dims;
  float *scratch;
} step_ctx;

static int train_step(step_ctx *c, nn_error *err) {
  nn_model_zero_grads(c->m);
  double t0 = now();
  if (c->next + c->batch > c->ds->n) c->next = 0; /* the pool again, in the same order */
  nn_dataset_batch_split(c->ds, c->order + c->next, c->batch, c->p->input_norm, c->x, c->y,
                         nn_dataset_batch_parts(c->ds, c->batch));
  c->next += c->batch;
  if (c->a) nn_augment_batch(c->a, c->rng, c->x, c->batch, c->dims, c->scratch);
  c->assembly += now() - t0;
  c->steps++;
  if (nn_model_forward(c->m, c->x, c->y, c->batch, NN_MODE_TRAIN, NULL, NULL, NULL, err) || nn_model_backward(c->m, err))
    return 1;
  nn_optimizer_step(c->opt, c->m);
  return 0;
}

static int infer_step(step_ctx *c, nn_error *err) {
  return nn_model_forward_lean(c->m, c->x, NULL, c->batch, NN_MODE_EVAL, NULL, NULL, NULL, err) != NN_OK;
}

/* Median samples/s over the repetitions; min/max into lo/hi; median samples per CPU second
 * into cpu; the share of the timed wall time spent in batch assembly into asm_share. */
static int measure(step_ctx *c, int (*step)(step_ctx *, nn_error *), const bench_opts *o, double *med, double *lo,
                   double *hi, double *cpu, double *asm_share, nn_error *err) {
  for (int s = 0; s < o->warmup; s++)
    if (step(c, err)) return 1;
  int steps = o->steps;
  if (steps <= 0) { /* calibrate: about o->seconds per repetition, at least 3 steps */
    double t0 = now();
    int k = 0;
    do {
      if (step(c, err)) return 1;
      k++;
    } while (now() - t0 < 0.2 * o->seconds);
    steps = (int)(o->seconds / ((now() - t0) / k));
    if (steps < 3) steps = 3;
  }
  double rate[MAX_REPS] = {0}, crate[MAX_REPS] = {0}, wall = 0.0;
  c->assembly = 0.0;
  if (o->layers && step == train_step) { /* the timed steps only: oneDNN JITs its kernels in the first ones */
    c->steps = 0;
    nn_model_set_timing(c->m, 1);
  }
  for (int r = 0; r < o->reps; r++) {
    double t0 = now(), c0 = cpu_now();
    for (int s = 0; s < steps; s++)
      if (step(c, err)) return 1;
    double t = now() - t0;
    wall += t;
    rate[r] = (double)steps * c->batch / t;
    crate[r] = (double)steps * c->batch / (cpu_now() - c0);
  }
  nn_model_set_timing(c->m, 0);
  *med = median_of(rate, o->reps);
  *lo = rate[0];
  *hi = rate[o->reps - 1];
  *cpu = median_of(crate, o->reps);
  *asm_share = c->assembly / wall;
  return 0;
}

/* Multiply-add FLOPs of one training sample (2 per multiply-add) in every conv2d and dense
 * layer: forward, weight gradient and input gradient (the first layer computes no input
 * gradient, as in nn_model_backward). Normalization, activations, pooling and the loss are
 * not counted. */
static double train_flops_per_sample(const nn_model *m) {
  double f = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const nn_layer *L = &m->layers[i];
    if (L->kind != NN_LAYER_CONV2D && L->kind != NN_LAYER_DENSE) continue;
    const double pixels = L->out.rank == 3 ? (double)L->out.h * L->out.w : 1.0;
    f += 2.0 * (double)L->param[0].count * pixels * (i ? 3 : 2);
  }
  return f;
}

/* --layers: each layer's time per training step and its share of all layers' time */
static void print_layers(const nn_model *m, long steps) {
  double total = 0.0;
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    double f, b;
    nn_model_layer_time(m, i, &f, &b);
    total += f + b;
  }
  for (int i = 0; i < nn_model_num_layers(m) && total > 0 && steps > 0; i++) {
    double f, b;
    nn_model_layer_time(m, i, &f, &b);
    if (f + b <= 0) continue; /* ran fused into the layer before it */
    nn_layer_info info;
    nn_model_layer_info(m, i, &info);
    printf("layer %d %s forward_us_per_step=%.1f (%.1f %%) backward_us_per_step=%.1f (%.1f %%)\n", i, info.kind,
           1e6 * f / (double)steps, 100.0 * f / total, 1e6 * b / (double)steps, 100.0 * b / total);
  }
}

static int run_variant(const char *preset, const char *norm, const bench_opts *o) {
  const nn_preset *p = nn_preset_find(preset);
  if (!p) {
    fprintf(stderr, "bench_train: unknown preset '%s'\n", preset);
    return 2;
  }
  nn_error err = {0};
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_optimizer *opt = NULL;
  int batch = o->batch > 0 ? o->batch : p->batch_size;
  int rc = 1;
  if (nn_spec_parse(p->spec, preset, &spec, &err) || nn_spec_set_norm(spec, norm, &err) ||
      nn_model_create(spec, &m, &err) || nn_optimizer_create(&p->opt, m, &opt, &err)) {
    fprintf(stderr, "bench_train: %s\n", err.msg);
    goto done;
  }
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  nn_model_init(m, p->init, &rng);
  int in = nn_model_input_size(m), k = nn_model_output_size(m);
  const nn_dims dims = nn_model_input_shape(m);
  const int pool = batch > BENCH_POOL ? batch : BENCH_POOL;
  float *x = bench_fbuf((size_t)batch * in); /* aligned, as the library's own batches (base/aligned.h) */
  int32_t *y = malloc((size_t)batch * sizeof *y);
  uint32_t *order = malloc((size_t)pool * sizeof *order);
  nn_dataset *ds = NULL;
  if (!x || !y || !order || nn_dataset_new(pool, dims.c, dims.h, dims.w, k, "bench_train's data set", &ds, &err)) {
    fprintf(stderr, "bench_train: %s\n", !x || !y || !order ? "out of memory for a batch" : err.msg);
    free(x), free(y), free(order), nn_dataset_free(ds);
    goto done;
  }
  for (size_t i = 0; i < (size_t)pool * in; i++) ds->images[i] = (uint8_t)nn_rng_below(&rng, 256);
  for (int i = 0; i < pool; i++) ds->labels[i] = (int32_t)nn_rng_below(&rng, (uint32_t)k);
  for (int i = 0; i < pool; i++) order[i] = (uint32_t)i;
  nn_rng_shuffle(&rng, order, (uint32_t)pool);
  nn_augment aug;
  float *scratch = malloc((size_t)in * sizeof *scratch);
  if (!scratch || (o->augment && nn_augment_parse(o->augment, &aug, &err))) {
    fprintf(stderr, "bench_train: %s\n", scratch ? err.msg : "out of memory");
    free(x), free(y), free(order), nn_dataset_free(ds), free(scratch);
    goto done;
  }
  step_ctx c = {p, m, opt, batch, in, ds, order, 0, y, x, 0.0, 0, o->augment ? &aug : NULL, &rng, dims, scratch};
  double train, tlo, thi, tcpu, tasm, infer, ilo, ihi, icpu, iasm;
  if (measure(&c, train_step, o, &train, &tlo, &thi, &tcpu, &tasm, &err) ||
      measure(&c, infer_step, o, &infer, &ilo, &ihi, &icpu, &iasm, &err)) {
    fprintf(stderr, "bench_train: %s\n", err.msg);
  } else {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char th[16] = "auto";
    if (o->threads > 0) snprintf(th, sizeof th, "%d", o->threads);
    const double flops = train_flops_per_sample(m), gflops = flops * train / 1e9, peak = fma_peak_gflops(now);
    const double barrier = team_barrier_us(now);
    printf(
        "normnet %s %s batch=%d threads=%s train_samples_per_s=%.0f infer_samples_per_s=%.0f train_min=%.0f "
        "train_max=%.0f peak_rss_mb=%.1f train_cpu_samples_per_s=%.0f assembly_pct=%.2f train_mflop_per_sample=%.2f "
        "train_gflops=%.1f fma_peak_gflops=%.1f peak_pct=%.1f barrier_us=%.2f\n",
        preset, strcmp(norm, "none") ? "bn" : "nobn", batch, th, train, infer, tlo, thi, ru.ru_maxrss / 1024.0, tcpu,
        100.0 * tasm, flops / 1e6, gflops, peak, 100.0 * gflops / peak, barrier);
    if (o->layers) print_layers(m, c.steps);
    rc = 0;
  }
  free(x), free(y), free(order), nn_dataset_free(ds), free(scratch);
done:
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_spec_free(spec);
  return rc;
}

static int int_arg(const char *name, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
    fprintf(stderr, "bench_train: %s must be an integer in [%d, %d], got '%s'\n", name, lo, hi, v);
    return -1;
  }
  *out = (int)x;
  return 0;
}

int main(int argc, char **argv) {
  const char *preset = "lenet", *norm = "both", *variant = NULL;
  bench_opts o = {
      .batch = 0,
      .threads = 0,
      .warmup = 20,
      .steps = 0,
      .reps = 5,
      .layers = 0,
      .seconds = 0.25,
      .augment = NULL};
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int bad = 0;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    }
    if (!strcmp(a, "--layers")) { /* a flag: no value */
      o.layers = 1;
      i--;
      continue;
    }
    if (!v) bad = 1; // NOLINT(bugprone-branch-clone): a missing value, not an unknown option
    else if (!strcmp(a, "--model")) preset = v;
    else if (!strcmp(a, "--norm")) norm = v;
    else if (!strcmp(a, "--variant")) variant = v; /* internal: one variant in this process */
    else if (!strcmp(a, "--batch")) bad = int_arg(a, v, 2, 1 << 20, &o.batch);
    else if (!strcmp(a, "--threads")) bad = int_arg(a, v, 1, 1024, &o.threads);
    else if (!strcmp(a, "--warmup")) bad = int_arg(a, v, 0, 1 << 20, &o.warmup);
    else if (!strcmp(a, "--steps")) bad = int_arg(a, v, 1, 1 << 24, &o.steps);
    else if (!strcmp(a, "--reps")) bad = int_arg(a, v, 1, MAX_REPS, &o.reps);
    else if (!strcmp(a, "--augment")) o.augment = v;
    else if (!strcmp(a, "--seconds")) {
      char *end;
      o.seconds = strtod(v, &end);
      if (*end != '\0' || !(o.seconds >= 0.01 && o.seconds <= 600)) {
        fprintf(stderr, "bench_train: --seconds must be a number in [0.01, 600], got '%s'\n", v);
        bad = -1;
      }
    } else bad = 1;
    if (bad) {
      if (bad > 0) fprintf(stderr, "bench_train: unknown or incomplete option '%s'\n", a);
      fputs(usage, stderr);
      return 2;
    }
  }
  if (strcmp(norm, "batch") && strcmp(norm, "none") && strcmp(norm, "both")) {
    fprintf(stderr, "bench_train: --norm must be batch, none or both, got '%s'\n", norm);
    return 2;
  }
  if (strcmp(preset, "all") && !nn_preset_find(preset)) {
    fprintf(stderr, "bench_train: unknown preset '%s' (lenet, mlp, cnn, cifar-cnn, cifar-gap or all)\n", preset);
    return 2;
  }
  if (o.threads > 0) nn_set_threads(o.threads);
  if (variant) return run_variant(preset, variant, &o);
  /* one process per variant so that peak RSS is the variant's own */
  int rc = 0;
  const char *norms[] = {"batch", "none"};
  for (int i = 0; i < nn_preset_count(); i++) {
    const char *name = nn_preset_at(i)->name;
    if (strcmp(preset, "all") && strcmp(preset, name)) continue;
    for (int v = 0; v < 2; v++) {
      if (strcmp(norm, "both") && strcmp(norm, norms[v])) continue;
      char cmd[4096], opt[128] = "";
      if (o.batch > 0) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), " --batch %d", o.batch);
      if (o.threads > 0) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), " --threads %d", o.threads);
      if (o.steps > 0) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), " --steps %d", o.steps);
      if (o.augment) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), " --augment '%s'", o.augment);
      if (o.layers) snprintf(opt + strlen(opt), sizeof opt - strlen(opt), " --layers");
      snprintf(cmd, sizeof cmd, "'%s' --model %s --variant %s --warmup %d --reps %d --seconds %g%s", argv[0], name,
               norms[v], o.warmup, o.reps, o.seconds, opt);
      fflush(stdout);
      rc |= system(cmd);
    }
  }
  return rc ? 1 : 0;
}
