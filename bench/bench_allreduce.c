/* The scaling model of ARCHITECTURE.md §9 (docs/scaling.md): what one training step costs in
 * compute and in communication, measured here, and what that predicts for more nodes.
 *
 *   mpirun -np 2 [--mca btl self,vader | --mca btl self,tcp] bench_allreduce [--reps 200]
 *       all-reduce (in-place float sum, through the library's nn_comm) time against message
 *       size, 4 B .. 16 MB: one line per size, printed by rank 0
 *   bench_allreduce --predict [--gbps 25] [--latency-us 10] [--steps 20] [--threads 2]
 *       one process: the compute time of a training step of each preset at every per-node
 *       batch ceil(B/N), N = 1..64 nodes, and the predicted step time and efficiency on a
 *       network of the given bandwidth and latency, with the preset's gradient size and its
 *       per-layer SyncBN messages
 * A program that prints figures, never a timed test. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "normnet.h"

/* ---- measured: all-reduce time against size ----------------------------------------- */
static int curve(const nn_comm *c, int reps) {
  if (c->size < 2) {
    fprintf(stderr, "bench_allreduce: run under mpirun -np 2 or more (or use --predict)\n");
    return 2;
  }
  size_t maxn = (size_t)4 << 20; /* 16 MB of floats */
  float *buf = malloc(maxn * sizeof *buf);
  double *t = malloc((size_t)reps * sizeof *t);
  if (!buf || !t) return 1;
  for (size_t i = 0; i < maxn; i++) buf[i] = 0.0f;
  if (c->rank == 0) printf("# ranks=%d reps=%d: bytes median_us min_us algbw_GBps (bytes/median)\n", c->size, reps);
  for (size_t n = 1; n <= maxn; n *= 4) {
    int r = n >= ((size_t)1 << 20) ? (reps < 20 ? reps : 20) : reps;
    for (int w = 0; w < 5; w++) c->sum_f32(c->ctx, buf, n);
    for (int k = 0; k < r; k++) {
      double t0 = now();
      c->sum_f32(c->ctx, buf, n);
      t[k] = now() - t0;
    }
    /* every rank's timing of a step is the same collective; rank 0's median is reported */
    qsort(t, (size_t)r, sizeof *t, cmp_double);
    if (c->rank == 0)
      printf("allreduce bytes=%zu median_us=%.2f min_us=%.2f algbw_GBps=%.3f\n", n * sizeof(float), t[r / 2] * 1e6,
             t[0] * 1e6, (double)(n * sizeof(float)) / t[r / 2] * 1e-9);
  }
  free(buf);
  free(t);
  return 0;
}

/* ---- predicted: steps on N nodes ----------------------------------------------------- */
/* Time of an all-reduce of `bytes` on n nodes, latency a (s) and bandwidth b (bytes/s):
 * recursive doubling for small messages, reduce-scatter + all-gather for large ones
 * (what Open MPI's tuned collectives choose between); the cheaper of the two. */
static double allreduce_time(double bytes, int n, double a, double b) {
  if (n <= 1) return 0;
  double lg = ceil(log2((double)n));
  double rd = lg * (a + bytes / b);
  double rs = 2 * lg * a + 2.0 * (n - 1) / n * bytes / b;
  return rd < rs ? rd : rs;
}

typedef struct {
  const nn_preset *p;
  nn_model *m;
  nn_optimizer *opt;
} bench_model;

/* Seconds of a full training step (forward, backward, optimizer) at batch b: the fastest of
 * `steps` (on a shared machine the median measures the neighbours). */
static double step_time(bench_model *bm, int b, int steps) {
  nn_error err = {0};
  int in = nn_model_input_size(bm->m), k = nn_model_output_size(bm->m);
  float *x = malloc((size_t)b * in * sizeof *x);
  int32_t *y = malloc((size_t)b * sizeof *y);
  double *t = malloc((size_t)steps * sizeof *t), best = NAN;
  nn_rng rng;
  nn_rng_seed(&rng, 7);
  if (!x || !y || !t) goto out;
  for (size_t i = 0; i < (size_t)b * in; i++) x[i] = nn_rng_uniform(&rng) * 2 - 1;
  for (int i = 0; i < b; i++) y[i] = (int32_t)(nn_rng_next(&rng) % (uint64_t)k);
  for (int s = -3; s < steps; s++) {
    double t0 = now();
    nn_model_zero_grads(bm->m);
    if (nn_model_forward(bm->m, x, y, b, NN_MODE_TRAIN, NULL, NULL, NULL, &err) || nn_model_backward(bm->m, &err)) {
      fprintf(stderr, "bench_allreduce: %s\n", err.msg);
      goto out;
    }
    nn_optimizer_step(bm->opt, bm->m);
    if (s >= 0) t[s] = now() - t0;
  }
  qsort(t, (size_t)steps, sizeof *t, cmp_double);
  best = t[0];
out:
  free(x), free(y), free(t);
  return best;
}

static int predict(double gbps, double lat_us, int steps) {
  static const int nodes[] = {1, 2, 4, 8, 16, 32, 64};
  const int nn = (int)(sizeof nodes / sizeof nodes[0]);
  double a = lat_us * 1e-6, bw = gbps * 1e9 / 8;
  printf(
      "# network: %.3g Gb/s, %.3g us latency; a node = this machine's measured step compute;\n"
      "# strong scaling: --batch B is global, each node computes ceil(B/N) samples;\n"
      "# weak scaling: each node computes B samples (global batch N*B)\n",
      gbps, lat_us);
  for (int i = 0; i < nn_preset_count(); i++) {
    const nn_preset *p = nn_preset_at(i);
    nn_error err = {0};
    nn_spec *spec = NULL;
    bench_model bm = {p, NULL, NULL};
    if (nn_spec_parse(p->spec, p->name, &spec, &err) || nn_model_create(spec, &bm.m, &err) ||
        nn_optimizer_create(&p->opt, bm.m, &bm.opt, &err)) {
      fprintf(stderr, "bench_allreduce: %s\n", err.msg);
      return 1;
    }
    nn_rng rng;
    nn_rng_seed(&rng, 1);
    nn_model_init(bm.m, p->init, &rng);
    /* SyncBN messages: forward (count, sum, sum of squares) and backward (sum dy,
     * sum dy*xhat) per channel, in double, one all-reduce each per BN layer */
    int nbn = 0;
    for (int l = 0; l < nn_model_num_layers(bm.m); l++) {
      nn_layer_info li;
      nn_model_layer_info(bm.m, l, &li);
      nbn += li.kind_id == NN_LAYER_BATCHNORM;
    }
    double grad_bytes = (double)nn_model_param_count(bm.m) * sizeof(float);
    int msgs = 2 * nbn + 2; /* + the gradient + the loss/status agreement */
    printf("\npreset %s: batch %d, gradient %.0f KB, %d BN layers -> %d all-reduces per step\n", p->name, p->batch_size,
           grad_bytes / 1024, nbn, msgs);
    printf("%5s %6s %11s %10s %10s %10s %11s %8s %8s\n", "nodes", "b/node", "compute_ms", "grad_ms", "bn_ms",
           "status_ms", "step_ms", "strong_E", "weak_E");
    double t1 = 0;
    for (int k = 0; k < nn; k++) {
      int n = nodes[k], b = (p->batch_size + n - 1) / n;
      /* one sample per node is timed as two (BN needs 2 values per channel on its own): an upper bound */
      double tc = step_time(&bm, b < 2 ? 2 : b, steps);
      double tg = allreduce_time(grad_bytes, n, a, bw), tb = 0;
      for (int l = 0; l < nn_model_num_layers(bm.m); l++) {
        nn_layer_info li;
        nn_model_layer_info(bm.m, l, &li);
        if (li.kind_id != NN_LAYER_BATCHNORM) continue;
        tb += allreduce_time((2.0 * li.out_c + 1) * 8, n, a, bw) + allreduce_time(2.0 * li.out_c * 8, n, a, bw);
      }
      double ts = allreduce_time((2.0 + n) * 8, n, a, bw);
      if (n == 1) t1 = tc;
      double strong = t1 / (n * (tc + tg + tb + ts)), weak = t1 / (t1 + tg + tb + ts);
      printf("%5d %6d %11.3f %10.3f %10.3f %10.3f %11.3f %8.2f %8.2f\n", n, b, tc * 1e3, tg * 1e3, tb * 1e3, ts * 1e3,
             (tc + tg + tb + ts) * 1e3, strong, weak);
    }
    nn_optimizer_free(bm.opt);
    nn_model_free(bm.m);
    nn_spec_free(spec);
  }
  return 0;
}

int main(int argc, char **argv) {
  nn_comm c;
  nn_error err = {0};
  if (nn_dist_init(&argc, &argv, &c, &err)) {
    fprintf(stderr, "bench_allreduce: %s\n", err.msg);
    return 1;
  }
  int reps = 200, steps = 20, threads = 0, do_predict = 0;
  double gbps = 25, lat_us = 10;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--predict")) do_predict = 1;
    else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--gbps")) gbps = atof(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--latency-us")) lat_us = atof(argv[++i]);
    else {
      fprintf(stderr,
              "usage: mpirun -np K bench_allreduce [--reps R]\n"
              "       bench_allreduce --predict [--gbps G] [--latency-us L] [--steps S] [--threads T]\n");
      nn_dist_finalize(&c);
      return 2;
    }
  }
  if (reps < 1 || steps < 1 || !(gbps > 0) || !(lat_us >= 0)) {
    fprintf(stderr, "bench_allreduce: --reps, --steps, --gbps must be positive\n");
    nn_dist_finalize(&c);
    return 2;
  }
  if (threads > 0) nn_set_threads(threads);
  int rc = do_predict ? predict(gbps, lat_us, steps) : curve(&c, reps);
  nn_dist_finalize(&c);
  return rc;
}
