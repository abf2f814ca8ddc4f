/* oneDNN's sgemm on the dense layers' forward, y[N,O] = x[N,I] w[O,I]^T, cut into blocks of
 * rows (samples) and columns (units) in the ways the layer could cut it (src/kernels/dense.c),
 * one thread, so that the layer's blocks are chosen from measurements (run 31: blocks of 16 or
 * 32 rows of a few columns ran at half the speed of one call, blocks of 8 rows at about its
 * speed).
 *
 *   bench_gemm_blocks [--reps R]
 *
 * Per layer (bench_util.h's bench_dense_layers), the time of the whole product done as one
 * call and as blocks of 32, 16 and 8 rows by all columns, and by 64 and 32 columns: each block
 * one nn_gemm call (the layer's, on oneDNN's sgemm), the blocks one after another. Each figure
 * is the minimum over R repetitions (default 11) of a timed loop of about 2 ms, the variants
 * interleaved within each repetition. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/kernels.h"

/* the row x column blocks tried; 0 = all */
static const int blocks[][2] = {{0, 0}, {32, 0}, {16, 0}, {8, 0}, {32, 64}, {8, 64}, {32, 32}, {8, 32}};
#define NVARIANTS (int)(sizeof blocks / sizeof blocks[0])

static void product(const bench_dense_layer *s, const float *x, const float *w, float *y, int rb, int cb) {
  if (!rb) rb = s->n;
  if (!cb) cb = s->out;
  for (int c = 0; c < s->out; c += cb)
    for (int r = 0; r < s->n; r += rb) {
      const int m = s->n - r < rb ? s->n - r : rb, k = s->out - c < cb ? s->out - c : cb;
      nn_gemm(0, 1, m, k, s->in, 1.0f, x + (size_t)r * s->in, s->in, w + (size_t)c * s->in, s->in, 0.0f,
              y + (size_t)r * s->out + c, s->out);
    }
}

int main(int argc, char **argv) {
  int reps = 11;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc && atoi(argv[i + 1]) > 0) {
      reps = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: bench_gemm_blocks [--reps R]\n");
      return 2;
    }
  }
  omp_set_num_threads(1); /* oneDNN (and so nn_gemm) threads with OpenMP */
  printf("y = x w^T by oneDNN's sgemm, one thread, us per product (minimum of %d), in blocks of rows x columns (all: -)\n",
         reps);
  printf("%-18s %-14s", "layer", "N x I by O");
  for (int v = 0; v < NVARIANTS; v++) {
    char head[16];
    if (!blocks[v][0] && !blocks[v][1]) snprintf(head, sizeof head, "one call");
    else if (!blocks[v][1]) snprintf(head, sizeof head, "%dx-", blocks[v][0]);
    else snprintf(head, sizeof head, "%dx%d", blocks[v][0], blocks[v][1]);
    printf(" %9s", head);
  }
  printf("\n");
  for (int k = 0; k < BENCH_DENSE_LAYERS; k++) {
    const bench_dense_layer *s = &bench_dense_layers[k];
    float *x = bench_fbuf((size_t)s->n * s->in), *w = bench_fbuf((size_t)s->out * s->in);
    float *y = bench_fbuf((size_t)s->n * s->out);
    double t0 = now();
    product(s, x, w, y, 0, 0);
    const double one = now() - t0;
    const int loops = one > 2e-3 ? 1 : (int)(2e-3 / (one > 1e-7 ? one : 1e-7)) + 1;
    double best[NVARIANTS];
    for (int v = 0; v < NVARIANTS; v++) best[v] = 1e30;
    for (int r = 0; r < reps; r++)
      for (int v = 0; v < NVARIANTS; v++) {
        t0 = now();
        for (int l = 0; l < loops; l++) product(s, x, w, y, blocks[v][0], blocks[v][1]);
        const double t = (now() - t0) / loops;
        if (t < best[v]) best[v] = t;
      }
    char dims[32];
    snprintf(dims, sizeof dims, "%dx%d by %d", s->n, s->in, s->out);
    printf("%-18s %-14s", s->name, dims);
    for (int v = 0; v < NVARIANTS; v++) printf(" %9.1f", 1e6 * best[v]);
    printf("\n");
    free(x), free(w), free(y);
  }
  return 0;
}
