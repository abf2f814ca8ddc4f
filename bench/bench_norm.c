/* Batch-normalization kernels against the memory bandwidth of the cache level holding them.
 *
 *   bench_norm [--seconds 0.2] [--level all|l1|l2|l3|dram|model] [--threads 1] [--cold]
 *
 * For each level (L1, L2, L3, DRAM) one element count E is chosen so that three float
 * tensors of E elements fit in that level of one core (L1 32 KiB, L2 512 KiB, L3 32 MiB
 * shared; DRAM: 3 x 32 MiB). The program measures, on the same E and the same threads:
 *   triad    a[i] = b[i] + q*c[i]  (3 streams: 12 bytes per element)
 *   BN training forward    (x read twice, y written:      12 bytes per element)
 *   BN training backward   (x and dy read twice, dx written: 20 bytes per element)
 *   BN inference forward   (x read, y written:              8 bytes per element)
 * bytes counted as in docs/ARCHITECTURE.md §7, on two layouts per
 * level: conv-like (N,C,H*W) and dense-like (N,C). Then BN + ReLU in training, forward and
 * backward, run as two kernels (BN, then nn_relu_*) and fused (nn_bn_*_train_act): the time
 * of each and the speed-up. Level "model" adds the shapes of the presets' convolutional BN
 * layers at their batch size (cnn conv1 and conv2 at 32, lenet conv1 and conv2 at 128).
 * The triad uses the kernels' own threading rule (OpenMP over the elements when
 * E >= 16384, else one thread), so each ratio compares like with like. Each figure is the best of 9 interleaved slices of --seconds/9 each.
 * One thread by default, timed in process CPU time, so that other processes on a shared
 * machine do not enter the figures; with --threads N > 1 the clock is wall time.
 * --cold: before every call (the triad's too) a 64 MiB buffer is written, so that each call
 * finds its tensors outside the caches, as a training step finds a layer's (only the calls
 * are timed; a slice ends after --seconds/9 including the evictions, with at least 2 calls).
 * Output: one line per (level, layout, kernel) with GB/s and the fraction of the triad;
 * with --threads > 1 the time of a team barrier (team_barrier.h) first and last, the host
 * state the figures were measured in (docs/performance.md, run 17). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "kernels/kernels.h"
#include "team_barrier.h"

#define EPS 1e-5f
#define SLICES 9

static clockid_t bench_clock = CLOCK_PROCESS_CPUTIME_ID;
static unsigned char *evict_buf; /* --cold: written before every call */
#define EVICT_BYTES ((size_t)64 << 20)

static double bench_now(void) { /* bench_clock's seconds */
  struct timespec ts;
  clock_gettime(bench_clock, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  const char *level, *layout;
  int n, c, s;
} shape;

static const shape shapes[] = {
    {"l1", "conv", 2, 16, 32},
    {"l1", "dense", 16, 64, 1},
    {"l2", "conv", 8, 32, 128},
    {"l2", "dense", 128, 256, 1},
    {"l3", "conv", 32, 32, 1024},
    {"l3", "dense", 4096, 256, 1},
    {"dram", "conv", 64, 64, 2048},
    {"dram", "dense", 32768, 256, 1},
    /* the presets' own conv BNs (planes that are not a multiple of the 32 lanes) */
    {"model", "cnn-1", 32, 32, 676},
    {"model", "cnn-2", 32, 64, 121},
    {"model", "lenet-1", 128, 6, 576},
    {"model", "lenet-2", 128, 16, 64},
};

typedef struct {
  size_t e;
  nn_norm_geom g;
  float *x, *y, *z, *dz, *dy, *dx, *gamma, *beta, *mean, *var, *invstd, *dg, *db, *rm, *rv;
  float *ta, *tb, *tc;
} bench;

enum { K_TRIAD,
       K_FWD,
       K_BWD,
       K_INFER,
       K_BANDWIDTH,
       K_FWD_SEP = K_BANDWIDTH,
       K_FWD_FUSED,
       K_BWD_SEP,
       K_BWD_FUSED,
       K_COUNT };
static const char *const kname[K_COUNT] = {"triad", "bn_train_fwd", "bn_train_bwd",
                                           "bn_infer_fwd", "bn_relu_fwd", "bn_relu_fwd_fused",
                                           "bn_relu_bwd", "bn_relu_bwd_fused"};
static const double kbytes[K_BANDWIDTH] = {12, 12, 20, 8};

static void triad(float *a, const float *b, const float *c, size_t e) {
  const float q = 1.5f;
  const long ne = (long)e;
  if (ne < 16384) { /* as the kernels: no parallel region at all when serial */
#pragma omp simd
    for (long i = 0; i < ne; i++) a[i] = b[i] + q * c[i];
    return;
  }
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < ne; i++) a[i] = b[i] + q * c[i];
}

static void run(bench *B, int k) {
  switch (k) {
    case K_TRIAD:
      triad(B->ta, B->tb, B->tc, B->e);
      break;
    case K_FWD:
      nn_bn_forward_train(&B->g, B->x, B->gamma, B->beta, B->y, B->mean, B->var, B->invstd);
      break;
    case K_BWD:
      nn_bn_backward_train(&B->g, B->x, B->gamma, B->mean, B->invstd, B->dy, B->dx, B->dg, B->db);
      break;
    case K_INFER:
      nn_bn_forward_infer(&B->g, B->x, B->gamma, B->beta, B->rm, B->rv, B->y);
      break;
    case K_FWD_SEP:
      nn_bn_forward_train(&B->g, B->x, B->gamma, B->beta, B->y, B->mean, B->var, B->invstd);
      nn_relu_forward(B->y, B->z, B->e);
      break;
    case K_FWD_FUSED:
      nn_bn_forward_train_act(&B->g, NN_ACT_RELU, B->x, B->gamma, B->beta, B->z, B->mean, B->var, B->invstd);
      break;
    case K_BWD_SEP:
      nn_relu_backward(B->z, B->dz, B->dy, B->e);
      nn_bn_backward_train(&B->g, B->x, B->gamma, B->mean, B->invstd, B->dy, B->dx, B->dg, B->db);
      break;
    case K_BWD_FUSED:
      nn_bn_backward_train_act(&B->g, NN_ACT_RELU, B->x, B->gamma, B->mean, B->invstd, B->z, B->dz, B->dx, B->dg,
                               B->db);
      break;
  }
}

static float *fbuf(size_t n, unsigned seed) {
  float *p = malloc(n * sizeof *p);
  if (!p) {
    fprintf(stderr, "bench_norm: out of memory\n");
    exit(1);
  }
  unsigned v = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    v = v * 1664525u + 1013904223u;
    p[i] = (float)(v >> 8) / 16777216.0f - 0.5f;
  }
  return p;
}

/* Seconds per call: calls repeated until about `seconds` have passed. */
static double time_kernel(bench *B, int k, double seconds) {
  long iters = 0;
  double t0 = bench_now(), t;
  if (evict_buf) {
    double calls = 0;
    do {
      for (size_t i = 0; i < EVICT_BYTES; i += 64) evict_buf[i]++;
      const double c0 = bench_now();
      run(B, k);
      calls += bench_now() - c0;
      iters++;
    } while (iters < 2 || bench_now() - t0 < seconds);
    return calls / (double)iters;
  }
  do {
    for (int i = 0; i < 8; i++) run(B, k);
    iters += 8;
    t = bench_now() - t0;
  } while (t < seconds);
  return t / (double)iters;
}

int main(int argc, char **argv) {
  double seconds = 0.2;
  int threads = 1;
  const char *level = "all";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--level") && i + 1 < argc)
      level = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--cold") && !evict_buf) {
      evict_buf = calloc(EVICT_BYTES, 1);
      if (!evict_buf) {
        fprintf(stderr, "bench_norm: out of memory\n");
        return 1;
      }
    } else {
      fprintf(stderr, "usage: bench_norm [--seconds 0.2] [--level all|l1|l2|l3|dram|model] [--threads 1] [--cold]\n");
      return 2;
    }
  }
  if (!(seconds > 0) || threads < 1) {
    fprintf(stderr, "bench_norm: --seconds must be > 0 and --threads >= 1\n");
    return 2;
  }
  omp_set_num_threads(threads);
  if (threads > 1) bench_clock = CLOCK_MONOTONIC;
  printf("threads=%d clock=%s caches=%s barrier_us=%.2f\n", threads, threads > 1 ? "wall" : "process-cpu",
         evict_buf ? "cold" : "warm", team_barrier_us(bench_now));
  printf("%-5s %-7s %-14s %-18s %9s %7s %11s\n", "level", "layout", "shape", "kernel", "GB/s", "triad%", "us/call");
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const shape *sh = &shapes[si];
    if (strcmp(level, "all") && strcmp(level, sh->level)) continue;
    bench B = {.g = {.n = sh->n, .c = sh->c, .s = sh->s, .eps = EPS}};
    B.e = (size_t)sh->n * (size_t)sh->c * (size_t)sh->s;
    B.x = fbuf(B.e, 1), B.y = fbuf(B.e, 2), B.dy = fbuf(B.e, 3), B.dx = fbuf(B.e, 4);
    B.z = fbuf(B.e, 17), B.dz = fbuf(B.e, 18);
    B.ta = fbuf(B.e, 5), B.tb = fbuf(B.e, 6), B.tc = fbuf(B.e, 7);
    B.gamma = fbuf((size_t)B.g.c, 8), B.beta = fbuf((size_t)B.g.c, 9), B.mean = fbuf((size_t)B.g.c, 10);
    B.var = fbuf((size_t)B.g.c, 11), B.invstd = fbuf((size_t)B.g.c, 12), B.dg = fbuf((size_t)B.g.c, 13);
    B.db = fbuf((size_t)B.g.c, 14), B.rm = fbuf((size_t)B.g.c, 15), B.rv = fbuf((size_t)B.g.c, 16);
    for (int ch = 0; ch < B.g.c; ch++) B.rv[ch] = 1.0f + B.rv[ch] * B.rv[ch];
    run(&B, K_FWD); /* mean/invstd for the backward */
    double best[K_COUNT];
    for (int k = 0; k < K_COUNT; k++) best[k] = INFINITY;
    for (int sl = 0; sl < SLICES; sl++)
      for (int k = 0; k < K_COUNT; k++) {
        double t = time_kernel(&B, k, seconds / SLICES);
        if (t < best[k]) best[k] = t;
      }
    char shp[48];
    snprintf(shp, sizeof shp, "%dx%dx%d", sh->n, sh->c, sh->s);
    const double triad_gbs = kbytes[K_TRIAD] * (double)B.e / best[K_TRIAD] * 1e-9;
    for (int k = 0; k < K_COUNT; k++) {
      if (k < K_BANDWIDTH) {
        const double gbs = kbytes[k] * (double)B.e / best[k] * 1e-9;
        printf("%-5s %-7s %-14s %-18s %9.1f %6.0f%% %11.2f\n", sh->level, sh->layout, shp, kname[k], gbs,
               100.0 * gbs / triad_gbs, best[k] * 1e6);
      } else {
        printf("%-5s %-7s %-14s %-18s %9s %7s %11.2f", sh->level, sh->layout, shp, kname[k], "", "", best[k] * 1e6);
        if (k == K_FWD_FUSED || k == K_BWD_FUSED) printf("  fused speed-up %.2fx", best[k - 1] / best[k]);
        printf("\n");
      }
    }
    fflush(stdout);
    float *bufs[] = {B.x, B.y, B.z, B.dz, B.dy, B.dx, B.ta, B.tb, B.tc, B.gamma, B.beta, B.mean, B.var, B.invstd, B.dg, B.db, B.rm, B.rv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  }
  free(evict_buf);
  if (threads > 1) printf("barrier_us=%.2f at the end\n", team_barrier_us(bench_now));
  return 0;
}
