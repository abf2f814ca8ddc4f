/* Helpers shared by the benchmark programs (header-only: every bench C file is one program). */
#ifndef NN_BENCH_UTIL_H
#define NN_BENCH_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Monotonic seconds. */
static inline double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds of CPU time used by the whole process (all its threads). */
static inline double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort comparator for doubles, ascending. */
static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of v[0..n) (n >= 1; sorts v) */
static inline double median_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* n floats, 64-byte aligned, filled with a fixed pattern in [-1, 1); exits on no memory. */
static inline float *bench_fbuf(size_t n) {
  float *p = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
  if (!p) {
    fprintf(stderr, "out of memory for %zu floats\n", n);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  return p;
}

/* The presets' dense layers at their training batches: y[N,O] = x[N,I] w[O,I]^T; `first`: the
 * model's first layer (its backward has no dx). bench_kernels times the layer's kernels on
 * them, bench_gemm_blocks oneDNN's sgemm in blocks. */
typedef struct {
  const char *name;
  int n, in, out, first;
} bench_dense_layer;
static const bench_dense_layer bench_dense_layers[] = {
    {"mlp dense1", 32, 784, 128, 1},
    {"mlp dense2", 32, 128, 64, 0},
    {"cnn dense1", 32, 1600, 64, 0},
    {"cifar-cnn dense1", 32, 2304, 64, 0},
    {"lenet dense1", 128, 256, 120, 0},
    {"lenet dense2", 128, 120, 84, 0},
};
#define BENCH_DENSE_LAYERS (int)(sizeof bench_dense_layers / sizeof bench_dense_layers[0])

#endif
