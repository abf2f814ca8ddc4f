/* Driver of bench/ab_objects.sh for src/kernels/pool.c: the 2x2 stride-2 max and average pool
 * forward and backward of the presets' shapes, old_ against new_ objects, one thread, each
 * the minimum of 60 calls taken in alternation. Prints one line per kernel and shape with
 * both times and old/new. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/kernels.h"

#define DECL(v)                                                                                                 \
  void v##_nn_maxpool2d_forward_generic(const nn_pool_geom *g, const float *x, float *y, int32_t *am);          \
  void v##_nn_maxpool2d_backward_generic(const nn_pool_geom *g, const float *dy, const int32_t *am, float *dx); \
  void v##_nn_avgpool2d_forward_generic(const nn_pool_geom *g, const float *x, float *y);                       \
  void v##_nn_avgpool2d_backward_generic(const nn_pool_geom *g, const float *dy, float *dx);
DECL(old)
DECL(new)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *fbuf(size_t n) {
  float *p = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
  if (!p) exit(1);
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  return p;
}

static void shape(const char *name, int n, int c, int h, int w, int avg) {
  nn_pool_geom g = {.n = n, .c = c, .h = h, .w = w, .size = 2, .stride = 2};
  if (nn_pool_geom_init(&g)) exit(1);
  const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * g.oh * g.ow;
  float *x = fbuf(nx), *y = fbuf(ny), *dy = fbuf(ny), *dx = fbuf(nx);
  int32_t *am = (int32_t *)(void *)fbuf(ny);
  old_nn_maxpool2d_forward_generic(&g, x, y, am); /* a valid argmax for the backward */
  for (int pass = 0; pass < 2; pass++) {
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 60; r++)
      for (int v = 0; v < 2; v++) {
        const double t0 = now();
        if (avg && !pass) v ? new_nn_avgpool2d_forward_generic(&g, x, y) : old_nn_avgpool2d_forward_generic(&g, x, y);
        if (avg && pass) v ? new_nn_avgpool2d_backward_generic(&g, dy, dx) : old_nn_avgpool2d_backward_generic(&g, dy, dx);
        if (!avg && !pass) v ? new_nn_maxpool2d_forward_generic(&g, x, y, am) : old_nn_maxpool2d_forward_generic(&g, x, y, am);
        if (!avg && pass) v ? new_nn_maxpool2d_backward_generic(&g, dy, am, dx) : old_nn_maxpool2d_backward_generic(&g, dy, am, dx);
        const double t = now() - t0;
        if (t < best[v]) best[v] = t;
      }
    printf("%s %s %-28s old %8.1f us  new %8.1f us  old/new %.2f\n", avg ? "avgpool" : "maxpool", pass ? "bwd" : "fwd",
           name, 1e6 * best[0], 1e6 * best[1], best[0] / best[1]);
  }
  free(x), free(y), free(dy), free(dx), free(am);
}

int main(void) {
  shape("cnn pool1 32x32x26x26", 32, 32, 26, 26, 0);
  shape("cnn pool2 32x64x11x11", 32, 64, 11, 11, 0);
  shape("cifar-cnn pool1 32x32x30x30", 32, 32, 30, 30, 0);
  shape("lenet pool1 128x6x24x24", 128, 6, 24, 24, 1);
  shape("lenet pool2 128x16x8x8", 128, 16, 8, 8, 1);
  return 0;
}
