/* Driver of bench/ab_objects.sh for src/kernels/conv2d_direct.c: the direct convolution's
 * forward (plain epilogue), dW/db and dx on the presets' shapes that run direct, old_ against
 * new_ objects, one thread, each the minimum of 40 calls taken in alternation. Prints one line
 * per pass and shape with both times and old/new. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/conv_epilogue.h"
#include "kernels/kernels.h"

#define DECL(v)                                                                                            \
  size_t v##_nn_conv2d_direct_workspace(const nn_conv_geom *g, int nprocs);                                \
  void v##_nn_conv2d_direct_forward_generic(const nn_conv_geom *g, const nn_epilogue *e, const float *x,   \
                                            const float *w, float *y, float *ws, int nthreads);            \
  void v##_nn_conv2d_direct_backward_params_generic(const nn_conv_geom *g, nn_act act, const float *x,     \
                                                    const float *z, const float *dz, float *dw, float *db, \
                                                    float *ws, int nthreads);                              \
  void v##_nn_conv2d_direct_backward_data_generic(const nn_conv_geom *g, nn_act act, const float *w,       \
                                                  const float *z, const float *dz, float *dx, float *ws,   \
                                                  int nthreads);
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

/* data: 0 no dx pass (a first layer) */
static void shape(const char *name, int n, int c, int h, int oc, int k, int data) {
  nn_conv_geom g = {.n = n, .c = c, .h = h, .w = h, .oc = oc, .kh = k, .kw = k, .stride = 1, .pad = 0};
  if (nn_conv_geom_init(&g)) exit(1);
  const size_t nx = (size_t)n * c * h * h, ny = (size_t)n * oc * g.oh * g.ow, nw = (size_t)oc * c * k * k;
  size_t wsz = old_nn_conv2d_direct_workspace(&g, 1), wsn = new_nn_conv2d_direct_workspace(&g, 1);
  float *x = fbuf(nx), *y = fbuf(ny), *dy = fbuf(ny), *dx = fbuf(nx), *w = fbuf(nw), *dw = fbuf(nw);
  float *b = fbuf((size_t)oc), *db = fbuf((size_t)oc), *ws = fbuf(wsz > wsn ? wsz : wsn);
  const nn_epilogue e = {.bias = b};
  for (int pass = 0; pass < 2 + data; pass++) {
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 40; r++)
      for (int v = 0; v < 2; v++) {
        const double t0 = now();
        if (pass == 0)
          (v ? new_nn_conv2d_direct_forward_generic : old_nn_conv2d_direct_forward_generic)(&g, &e, x, w, y, ws, 1);
        else if (pass == 1)
          (v ? new_nn_conv2d_direct_backward_params_generic
             : old_nn_conv2d_direct_backward_params_generic)(&g, NN_ACT_NONE, x, NULL, dy, dw, db, ws, 1);
        else
          (v ? new_nn_conv2d_direct_backward_data_generic
             : old_nn_conv2d_direct_backward_data_generic)(&g, NN_ACT_NONE, w, NULL, dy, dx, ws, 1);
        const double t = now() - t0;
        if (t < best[v]) best[v] = t;
      }
    static const char *pn[] = {"fwd", "dW", "dx"};
    printf("conv %-3s %-34s old %8.1f us  new %8.1f us  old/new %.2f\n", pn[pass], name, 1e6 * best[0],
           1e6 * best[1], best[0] / best[1]);
  }
  free(x), free(y), free(dy), free(dx), free(w), free(dw), free(b), free(db), free(ws);
}

int main(void) {
  shape("lenet conv1 128x1x28x28 oc6 k5", 128, 1, 28, 6, 5, 0);
  shape("lenet conv2 128x6x12x12 oc16 k5", 128, 6, 12, 16, 5, 1);
  shape("cnn conv1 32x1x28x28 oc32 k3", 32, 1, 28, 32, 3, 0);
  return 0;
}
