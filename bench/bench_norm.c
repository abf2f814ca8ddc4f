/* Batch-normalization kernels against the memory bandwidth of the cache level holding them.
 *
 *   bench_norm [--seconds 0.1] [--level all|l1|l2|l3|dram]
 *
 * For each level (L1, L2, L3, DRAM) one element count E is chosen so that three float
 * tensors of E elements take about half of that level (L1/L2 per core, both cores; L3
 * shared; DRAM 8x L3's 32 MiB). The program measures, on the same E and the same threads:
 *   triad    a[i] = b[i] + q*c[i]  (3 streams: 12 bytes per element)
 *   BN training forward    (x read twice, y written:      12 bytes per element)
 *   BN training backward   (x and dy read twice, dx written: 20 bytes per element)
 *   BN inference forward   (x read, y written:              8 bytes per element)
 * bytes counted as in docs/ARCHITECTURE.md §7, on two layouts per
 * level: conv-like (N,C,H*W) and dense-like (N,C). The triad uses the kernels' own threading
 * rule (OpenMP over the elements when E >= 16384, else one thread), so each ratio compares
 * like with like. Each figure is the best of 5 interleaved slices of about --seconds each.
 * Output: one line per (level, layout, kernel) with GB/s and the fraction of the triad. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

#define EPS 1e-5f
#define SLICES 5

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  const char *level, *layout;
  int n, c, s;
} shape;

static const shape shapes[] = {
    {"l1", "conv", 2, 16, 32},      {"l1", "dense", 16, 64, 1},
    {"l2", "conv", 8, 32, 128},     {"l2", "dense", 128, 256, 1},
    {"l3", "conv", 32, 32, 1024},   {"l3", "dense", 4096, 256, 1},
    {"dram", "conv", 64, 64, 2048}, {"dram", "dense", 32768, 256, 1},
};

typedef struct {
  size_t e;
  nn_norm_geom g;
  float *x, *y, *dy, *dx, *gamma, *beta, *mean, *var, *invstd, *dg, *db, *rm, *rv;
  float *ta, *tb, *tc;
} bench;

enum { K_TRIAD, K_FWD, K_BWD, K_INFER, K_COUNT };
static const char *const kname[K_COUNT] = {"triad", "bn_train_fwd", "bn_train_bwd", "bn_infer_fwd"};
static const double kbytes[K_COUNT] = {12, 12, 20, 8};

static void triad(float *a, const float *b, const float *c, size_t e) {
  const float q = 1.5f;
  const long ne = (long)e;
#pragma omp parallel for schedule(static) if (ne >= 16384)
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
  double t0 = now(), t;
  do {
    for (int i = 0; i < 8; i++) run(B, k);
    iters += 8;
    t = now() - t0;
  } while (t < seconds);
  return t / (double)iters;
}

int main(int argc, char **argv) {
  double seconds = 0.1;
  const char *level = "all";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--level") && i + 1 < argc)
      level = argv[++i];
    else {
      fprintf(stderr, "usage: bench_norm [--seconds 0.1] [--level all|l1|l2|l3|dram]\n");
      return 2;
    }
  }
  if (!(seconds > 0)) {
    fprintf(stderr, "bench_norm: --seconds must be > 0\n");
    return 2;
  }
  printf("%-5s %-6s %-22s %-14s %9s %7s\n", "level", "layout", "shape", "kernel", "GB/s", "triad%");
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const shape *sh = &shapes[si];
    if (strcmp(level, "all") && strcmp(level, sh->level)) continue;
    bench B = {.g = {.n = sh->n, .c = sh->c, .s = sh->s, .eps = EPS}};
    B.e = (size_t)sh->n * (size_t)sh->c * (size_t)sh->s;
    B.x = fbuf(B.e, 1), B.y = fbuf(B.e, 2), B.dy = fbuf(B.e, 3), B.dx = fbuf(B.e, 4);
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
      const double gbs = kbytes[k] * (double)B.e / best[k] * 1e-9;
      printf("%-5s %-6s %-22s %-14s %9.1f %6.0f%%\n", sh->level, sh->layout, shp, kname[k], gbs,
             100.0 * gbs / triad_gbs);
    }
    fflush(stdout);
    float *bufs[] = {B.x, B.y, B.dy, B.dx, B.ta, B.tb, B.tc, B.gamma, B.beta, B.mean, B.var, B.invstd, B.dg, B.db, B.rm, B.rv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  }
  return 0;
}
