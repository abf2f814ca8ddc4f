/* Kernel throughput on the presets' shapes against what the machine can do.
 *
 *   bench_kernels [--threads T] [--seconds S] [--only pool|relu|sigmoid|conv|dense]
 *
 * Prints, per kernel and shape, the time per call and either GB/s (memory-bound kernels:
 * pooling, activations; bytes = tensors read + written once) or GFLOP/s (conv, dense GEMMs;
 * 2*M*N*K per GEMM), next to two references measured by the same program: the triad
 * bandwidth (a[i] = b[i] + s*c[i]) on arrays of the kernel's footprint, and the FMA peak
 * (independent vector FMA chains on registers). Convolutions also print each algorithm's
 * error against the double-precision reference twin (conv_accuracy). --only picks one group (pool, relu, sigmoid, conv, dense). Each figure is the median of 7 timed
 * repetitions of about --seconds/7 each. On one thread the clock is the process's CPU time
 * (time spent waiting for a core another process holds is not counted, so figures stay
 * comparable on a shared machine); on more threads it is wall time. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "bench_util.h"
#include "fma_peak.h"
#include "kernels/kernels.h"
#include "normnet.h"

#define REPS 7

static double g_seconds = 0.3;
static const char *g_only = NULL; /* --only: run one group of kernels */
static clockid_t g_clock = CLOCK_MONOTONIC;

/* seconds on the clock the thread count chose (one thread: process CPU time) */
static double clock_now(void) {
  struct timespec ts;
  clock_gettime(g_clock, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*kernel_fn)(void *ctx);

/* Median seconds per call. */
static double time_call(kernel_fn f, void *ctx) {
  f(ctx);
  double t0 = clock_now();
  int calls = 0;
  do {
    f(ctx);
    calls++;
  } while (clock_now() - t0 < 0.02);
  double per = (clock_now() - t0) / calls;
  int n = (int)(g_seconds / REPS / per);
  if (n < 1) n = 1;
  double t[REPS];
  for (int r = 0; r < REPS; r++) {
    double a = clock_now();
    for (int i = 0; i < n; i++) f(ctx);
    t[r] = (clock_now() - a) / n;
  }
  qsort(t, REPS, sizeof t[0], cmp_double);
  return t[REPS / 2];
}


/* ---- references ------------------------------------------------------------------------- */
typedef struct {
  float *a, *b, *c;
  size_t n;
} triad_ctx;

static void triad(void *p) {
  triad_ctx *t = p;
  float *a = t->a;
  const float *b = t->b, *c = t->c;
  const size_t n = t->n;
#pragma omp parallel for simd schedule(static) if (n >= ((size_t)1 << 15))
  for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5f * c[i];
}

/* triad GB/s on three arrays totalling `bytes` */
static double triad_gbs(size_t bytes) {
  size_t n = bytes / 12 + 16;
  triad_ctx t = {bench_fbuf(n), bench_fbuf(n), bench_fbuf(n), n};
  double s = time_call(triad, &t);
  free(t.a), free(t.b), free(t.c);
  return 12.0 * (double)n / s / 1e9;
}

/* ---- kernels ----------------------------------------------------------------------------- */
typedef struct {
  nn_pool_geom g;
  float *x, *y, *dy, *dx;
  int32_t *am;
} pool_ctx;

static void maxpool_fwd(void *p) {
  pool_ctx *c = p;
  nn_maxpool2d_forward(&c->g, c->x, c->y, c->am);
}
static void maxpool_bwd(void *p) {
  pool_ctx *c = p;
  nn_maxpool2d_backward(&c->g, c->dy, c->am, c->dx);
}
static void avgpool_fwd(void *p) {
  pool_ctx *c = p;
  nn_avgpool2d_forward(&c->g, c->x, c->y);
}
static void avgpool_bwd(void *p) {
  pool_ctx *c = p;
  nn_avgpool2d_backward(&c->g, c->dy, c->dx);
}

typedef struct {
  nn_conv_geom g;
  float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ws;
} conv_ctx;

static void conv_fwd(void *p) {
  conv_ctx *c = p;
  nn_conv2d_forward(&c->g, c->x, c->w, c->b, c->y, c->ws);
}
static void conv_bwd(void *p) {
  conv_ctx *c = p;
  nn_conv2d_backward(&c->g, c->x, c->w, c->dy, c->dx, c->dw, c->db, c->ws);
}

typedef struct {
  float *x, *y, *dy, *dx;
  size_t n;
} act_ctx;

static void relu_fwd(void *p) {
  act_ctx *c = p;
  nn_relu_forward(c->x, c->y, c->n);
}
static void relu_bwd(void *p) {
  act_ctx *c = p;
  nn_relu_backward(c->y, c->dy, c->dx, c->n);
}

static void sigmoid_fwd(void *p) {
  act_ctx *c = p;
  nn_sigmoid_forward(c->x, c->y, c->n);
}

static void report(const char *what, double sec, double bytes, double flops) {
  if (flops > 0)
    printf("%-64s %9.1f us %8.1f GFLOP/s\n", what, sec * 1e6, flops / sec / 1e9);
  else
    printf("%-44s %9.1f us %8.1f GB/s   (triad at this size %.1f GB/s)\n", what, sec * 1e6, bytes / sec / 1e9,
           triad_gbs((size_t)bytes));
}

typedef struct {
  int n, c, s;
  float *x, *y;
} gap_ctx;
static void gap_fwd(void *p) {
  gap_ctx *c = p;
  nn_global_avgpool_forward(c->x, c->y, c->n, c->c, c->s);
}
static void gap_bwd(void *p) {
  gap_ctx *c = p;
  nn_global_avgpool_backward(c->y, c->x, c->n, c->c, c->s);
}

/* global average pooling over S = h*w values per plane (bytes: x and y once) */
static void bench_gap(const char *name, int n, int c, int s) {
  gap_ctx gc = {.n = n, .c = c, .s = s};
  size_t nx = (size_t)n * c * s, ny = (size_t)n * c;
  gc.x = bench_fbuf(nx), gc.y = bench_fbuf(ny);
  char what[96];
  snprintf(what, sizeof what, "global avgpool fwd %s", name);
  report(what, time_call(gap_fwd, &gc), 4.0 * (double)(nx + ny), 0);
  snprintf(what, sizeof what, "global avgpool bwd %s", name);
  report(what, time_call(gap_bwd, &gc), 4.0 * (double)(nx + ny), 0);
  free(gc.x), free(gc.y);
}

static void bench_pool(const char *name, int n, int c, int h, int w, int avg) {
  pool_ctx pc = {.g = {.n = n, .c = c, .h = h, .w = w, .size = 2, .stride = 2}};
  nn_pool_geom_init(&pc.g);
  size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * pc.g.oh * pc.g.ow;
  pc.x = bench_fbuf(nx), pc.dx = bench_fbuf(nx), pc.y = bench_fbuf(ny), pc.dy = bench_fbuf(ny);
  pc.am = (int32_t *)(void *)bench_fbuf(ny);
  char what[96];
  if (avg) {
    snprintf(what, sizeof what, "avgpool fwd %s", name);
    report(what, time_call(avgpool_fwd, &pc), 4.0 * (double)(nx + ny), 0);
    snprintf(what, sizeof what, "avgpool bwd %s", name);
    report(what, time_call(avgpool_bwd, &pc), 4.0 * (double)(nx + ny), 0);
  } else {
    snprintf(what, sizeof what, "maxpool fwd %s", name);
    report(what, time_call(maxpool_fwd, &pc), 4.0 * (double)(nx + 2 * ny), 0);
    maxpool_fwd(&pc);
    snprintf(what, sizeof what, "maxpool bwd %s", name);
    report(what, time_call(maxpool_bwd, &pc), 4.0 * (double)(nx + 2 * ny), 0);
  }
  free(pc.x), free(pc.dx), free(pc.y), free(pc.dy), free(pc.am);
}

static void conv_bwd_params(void *p) {
  conv_ctx *c = p;
  nn_conv2d_backward(&c->g, c->x, c->w, c->dy, NULL, c->dw, c->db, c->ws);
}

static void conv_bwd_data(void *p) {
  conv_ctx *c = p;
  nn_conv2d_backward(&c->g, c->x, c->w, c->dy, c->dx, NULL, NULL, c->ws);
}

/* max |got - want| / max |want| */
static double rel_err(const float *got, const double *want, size_t n) {
  double e = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)got[i] - want[i]);
    if (d > e) e = d;
    if (fabs(want[i]) > m) m = fabs(want[i]);
  }
  return m > 0 ? e / m : e;
}

/* Each algorithm's error against the double-precision reference twin on 4 samples of the shape
 * (x in [0, 1), Glorot-uniform filters, dy in [-1, 1)): the largest error of y, dx and dW
 * relative to the largest reference value, after the timing (not timed). */
static void conv_accuracy(const char *name, int c, int h, int w, int oc, int k) {
  nn_conv_geom g = {.n = 4, .c = c, .h = h, .w = w, .oc = oc, .kh = k, .kw = k, .stride = 1, .pad = 0};
  nn_conv_geom_init(&g);
  const size_t nx = (size_t)g.n * c * h * w, nw = (size_t)oc * c * k * k, ny = (size_t)g.n * oc * g.oh * g.ow;
  float *x = bench_fbuf(nx), *wt = bench_fbuf(nw), *dy = bench_fbuf(ny), *y = bench_fbuf(ny), *dx = bench_fbuf(nx), *dw = bench_fbuf(nw), *db = bench_fbuf(oc);
  double *xd = calloc(nx, sizeof *xd), *wd = calloc(nw, sizeof *wd), *dyd = calloc(ny, sizeof *dyd);
  double *yd = calloc(ny, sizeof *yd), *dxd = calloc(nx, sizeof *dxd), *dwd = calloc(nw, sizeof *dwd),
         *dbd = calloc((size_t)oc, sizeof *dbd);
  if (!xd || !wd || !dyd || !yd || !dxd || !dwd || !dbd) {
    fprintf(stderr, "bench_kernels: out of memory\n");
    exit(1);
  }
  nn_rng r;
  nn_rng_seed(&r, 7);
  const double bound = sqrt(6.0 / ((double)(c + oc) * k * k));
  for (size_t i = 0; i < nx + nw + ny; i++) {
    const double u = nn_rng_uniform(&r); /* [0, 1) */
    if (i < nx)
      x[i] = (float)u, xd[i] = x[i];
    else if (i < nx + nw)
      wt[i - nx] = (float)((2 * u - 1) * bound), wd[i - nx] = wt[i - nx];
    else
      dy[i - nx - nw] = (float)(2 * u - 1), dyd[i - nx - nw] = dy[i - nx - nw];
  }
  nn_ref_conv2d_forward(&g, xd, wd, NULL, yd);
  nn_ref_conv2d_backward(&g, xd, wd, dyd, dxd, dwd, dbd);
  for (int a = NN_CONV_IM2COL; a < NN_CONV_ALGO_COUNT; a++) {
    g.algo = (nn_conv_algo)a;
    if (nn_conv2d_algo(&g) != (nn_conv_algo)a) continue;
    float *ws = bench_fbuf(nn_conv2d_workspace(&g));
    memset(dw, 0, nw * sizeof *dw);
    memset(db, 0, (size_t)oc * sizeof *db);
    nn_conv2d_forward(&g, x, wt, NULL, y, ws);
    nn_conv2d_backward(&g, x, wt, dy, dx, dw, db, ws);
    printf("conv error %s [%s; dw %s, dx %s]: y %.2g, dx %.2g, dw %.2g (max |err| / max |ref|)\n", name,
           nn_conv2d_algo_name((nn_conv_algo)a), nn_conv2d_algo_name(nn_conv2d_algo_params(&g)),
           nn_conv2d_algo_name(nn_conv2d_algo_data(&g)), rel_err(y, yd, ny), rel_err(dx, dxd, nx),
           rel_err(dw, dwd, nw));
    free(ws);
  }
  free(x), free(wt), free(dy), free(y), free(dx), free(dw), free(db);
  free(xd), free(wd), free(dyd), free(yd), free(dxd), free(dwd), free(dbd);
}

/* Every algorithm on the shape, one after the other in the same process, each pass where the
 * algorithm applies (direct: stride 1, dx also unpadded whole-vector rows; Winograd: 3x3
 * stride 1, forward and dx); the algorithm the library picks by itself (nn_conv2d_algo for
 * the forward, nn_conv2d_algo_params for dw/db, nn_conv2d_algo_data for dx) is marked "*". */
static void bench_conv(const char *name, int n, int c, int h, int w, int oc, int k) {
  conv_ctx cc = {.g = {.n = n, .c = c, .h = h, .w = w, .oc = oc, .kh = k, .kw = k, .stride = 1, .pad = 0}};
  nn_conv_geom_init(&cc.g);
  const nn_conv_algo chosen = nn_conv2d_algo(&cc.g), chosen_p = nn_conv2d_algo_params(&cc.g),
                     chosen_d = nn_conv2d_algo_data(&cc.g);
  size_t nx = (size_t)n * c * h * w, nw = (size_t)oc * c * k * k, ny = (size_t)n * oc * cc.g.oh * cc.g.ow;
  cc.x = bench_fbuf(nx), cc.dx = bench_fbuf(nx), cc.w = bench_fbuf(nw), cc.dw = bench_fbuf(nw), cc.b = bench_fbuf(oc), cc.db = bench_fbuf(oc);
  cc.y = bench_fbuf(ny), cc.dy = bench_fbuf(ny);
  double flops = 2.0 * n * oc * (double)c * k * k * cc.g.oh * cc.g.ow;
  for (int a = NN_CONV_IM2COL; a < NN_CONV_ALGO_COUNT; a++) {
    cc.g.algo = (nn_conv_algo)a;
    cc.ws = bench_fbuf(nn_conv2d_workspace(&cc.g));
    const char *an = nn_conv2d_algo_name((nn_conv_algo)a);
    char what[128];
    if (nn_conv2d_algo(&cc.g) == (nn_conv_algo)a) {
      snprintf(what, sizeof what, "conv fwd %s [%s%s]", name, an, a == (int)chosen ? "*" : "");
      report(what, time_call(conv_fwd, &cc), 0, flops);
    }
    if (nn_conv2d_algo_params(&cc.g) == (nn_conv_algo)a) {
      const char *mark_p = a == (int)chosen_p ? "*" : "";
      snprintf(what, sizeof what, "conv bwd (dx, dw, db) %s [%s%s, dx %s]", name, an, mark_p,
               nn_conv2d_algo_name(nn_conv2d_algo_data(&cc.g)));
      report(what, time_call(conv_bwd, &cc), 0, 2 * flops);
      snprintf(what, sizeof what, "conv bwd (dw, db) %s [%s%s]", name, an, mark_p);
      report(what, time_call(conv_bwd_params, &cc), 0, flops);
    }
    if (nn_conv2d_algo_data(&cc.g) == (nn_conv_algo)a) {
      snprintf(what, sizeof what, "conv bwd (dx) %s [%s%s]", name, an, a == (int)chosen_d ? "*" : "");
      report(what, time_call(conv_bwd_data, &cc), 0, flops);
    }
    free(cc.ws);
  }
  free(cc.x), free(cc.dx), free(cc.w), free(cc.dw), free(cc.b), free(cc.db), free(cc.y), free(cc.dy);
  conv_accuracy(name, c, h, w, oc, k);
}

static void bench_relu(const char *name, size_t count) {
  act_ctx a = {bench_fbuf(count), bench_fbuf(count), bench_fbuf(count), bench_fbuf(count), count};
  char what[96];
  snprintf(what, sizeof what, "relu fwd %s", name);
  report(what, time_call(relu_fwd, &a), 8.0 * (double)count, 0);
  snprintf(what, sizeof what, "relu bwd %s", name);
  report(what, time_call(relu_bwd, &a), 12.0 * (double)count, 0);
  free(a.x), free(a.y), free(a.dy), free(a.dx);
}

/* sigmoid forward: the staged exp and a division per value (act_inline.h), compute-bound */
static void bench_sigmoid(const char *name, size_t count) {
  act_ctx a = {bench_fbuf(count), bench_fbuf(count), NULL, NULL, count};
  char what[96];
  snprintf(what, sizeof what, "sigmoid fwd %s", name);
  const double sec = time_call(sigmoid_fwd, &a);
  report(what, sec, 8.0 * (double)count, 0);
  printf("%-64s %9.3f ns per value\n", what, sec * 1e9 / (double)count);
  free(a.x), free(a.y);
}

/* dense: y = x w^T + b; backward dx (unless first) + dw + db, as a training step runs them */
typedef struct {
  float *x, *w, *b, *y, *dy, *dx, *dw, *db;
  int n, in, out, first;
} dense_ctx;

static void dense_fwd(void *p) {
  dense_ctx *d = p;
  nn_dense_forward(d->x, d->w, d->b, d->y, d->n, d->in, d->out);
}

static void dense_bwd(void *p) {
  dense_ctx *d = p;
  nn_dense_backward(d->x, d->w, d->dy, d->first ? NULL : d->dx, d->dw, d->db, d->n, d->in, d->out);
}

static void bench_dense(const bench_dense_layer *l) {
  const int n = l->n, in = l->in, out = l->out, first = l->first;
  char name[64];
  snprintf(name, sizeof name, "%s %dx%dx%d", l->name, n, in, out);
  const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
  dense_ctx d = {bench_fbuf(nx), bench_fbuf(nw), bench_fbuf(out), bench_fbuf(ny), bench_fbuf(ny), bench_fbuf(nx), bench_fbuf(nw), bench_fbuf(out), n, in, out, first};
  const double gemm = 2.0 * n * in * out;
  char what[96];
  snprintf(what, sizeof what, "dense fwd %s", name);
  report(what, time_call(dense_fwd, &d), 0, gemm);
  snprintf(what, sizeof what, "dense bwd (%sdw, db) %s", first ? "" : "dx, ", name);
  report(what, time_call(dense_bwd, &d), 0, first ? gemm : 2 * gemm);
  free(d.x), free(d.w), free(d.b), free(d.y), free(d.dy), free(d.dx), free(d.dw), free(d.db);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 < argc && !strcmp(argv[i], "--threads")) {
      int t = atoi(argv[i + 1]);
      if (t < 1) {
        fprintf(stderr, "bench_kernels: --threads must be >= 1\n");
        return 2;
      }
      nn_set_threads(t);
    } else if (i + 1 < argc && !strcmp(argv[i], "--only")) {
      g_only = argv[i + 1];
    } else if (i + 1 < argc && !strcmp(argv[i], "--seconds")) {
      g_seconds = atof(argv[i + 1]);
      if (!(g_seconds > 0)) {
        fprintf(stderr, "bench_kernels: --seconds must be > 0\n");
        return 2;
      }
    } else {
      fprintf(stderr, "usage: bench_kernels [--threads T] [--seconds S] [--only pool|relu|sigmoid|conv|dense]\n");
      return 2;
    }
  }
  if (omp_get_max_threads() == 1) g_clock = CLOCK_PROCESS_CPUTIME_ID;
  printf("threads=%d clock=%s\n", omp_get_max_threads(), omp_get_max_threads() == 1 ? "process CPU time" : "wall");
  printf("FMA peak (AVX2 FMA, 10 chains per thread)         %8.1f GFLOP/s\n", fma_peak_gflops(clock_now));
  if (nn_cpu_detect() >= NN_CPU_AVX512)
    printf("FMA peak (AVX-512 FMA, 12 chains per thread)      %8.1f GFLOP/s\n", fma_peak512_gflops(clock_now));
  if (!g_only || !strcmp(g_only, "pool")) {
    bench_pool("cnn pool1 32x32x26x26", 32, 32, 26, 26, 0);
    bench_pool("cnn pool2 32x64x11x11", 32, 64, 11, 11, 0);
    bench_pool("cifar-cnn pool1 32x32x30x30", 32, 32, 30, 30, 0);
    bench_pool("lenet pool1 128x6x24x24", 128, 6, 24, 24, 1);
    bench_pool("lenet pool2 128x16x8x8", 128, 16, 8, 8, 1);
    bench_gap("cifar-gap 32x32x32x32", 32, 32, 32 * 32);
  }
  if (!g_only || !strcmp(g_only, "relu")) bench_relu("cnn conv1 out 692k", (size_t)32 * 32 * 26 * 26);
  if (!g_only || !strcmp(g_only, "sigmoid")) bench_sigmoid("lenet conv1 out 442k", (size_t)128 * 6 * 24 * 24);
  if (!g_only || !strcmp(g_only, "conv")) {
    bench_conv("lenet conv1 128x1x28x28 oc6 k5", 128, 1, 28, 28, 6, 5);
    bench_conv("lenet conv2 128x6x12x12 oc16 k5", 128, 6, 12, 12, 16, 5);
    bench_conv("cnn conv1 32x1x28x28 oc32 k3", 32, 1, 28, 28, 32, 3);
    bench_conv("cnn conv2 32x32x13x13 oc64 k3", 32, 32, 13, 13, 64, 3);
    bench_conv("cifar conv1 32x3x32x32 oc32 k3", 32, 3, 32, 32, 32, 3);
    bench_conv("cifar conv2 32x32x15x15 oc64 k3", 32, 32, 15, 15, 64, 3);
    /* where the shape rule stops giving 3x3 layers to Winograd (kernels.h): small planes */
    bench_conv("rule c128 6x6 oc128 k3", 32, 128, 6, 6, 128, 3);
    bench_conv("rule c64 8x8 oc64 k3", 32, 64, 8, 8, 64, 3);
    bench_conv("rule c16 10x10 oc32 k3", 32, 16, 10, 10, 32, 3);
    bench_conv("rule c32 12x12 oc32 k3", 32, 32, 12, 12, 32, 3);
    /* 27 taps on rows that are not whole vectors (AVX-512: direct only where FMAs run in halves) */
    bench_conv("rule c3 64x64 oc16 k3", 32, 3, 64, 64, 16, 3);
    bench_conv("rule c3 32x32 oc64 k3", 32, 3, 32, 32, 64, 3);
  }
  if (!g_only || !strcmp(g_only, "dense")) {
    for (int k = 0; k < BENCH_DENSE_LAYERS; k++) bench_dense(&bench_dense_layers[k]);
  }
  return 0;
}
