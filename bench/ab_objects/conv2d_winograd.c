/* Driver of bench/ab_objects.sh for src/kernels/conv2d_winograd.c: the Winograd F(2x2, 3x3)
 * forward (bias epilogue), dW/db and dx on the presets' second layers and two of
 * bench_kernels' "rule" shapes with more channels, old_ against new_ objects, one thread,
 * each the minimum of 40 calls taken in alternation. */
#include <stdint.h>

#include "ab.h"
#include "kernels/conv_epilogue.h"
#include "kernels/kernels.h"

#define DECL(v)                                                                                              \
  size_t v##_nn_conv2d_winograd_workspace(const nn_conv_geom *g, int nprocs);                                \
  void v##_nn_conv2d_winograd_forward_generic(const nn_conv_geom *g, const nn_epilogue *e, const float *x,   \
                                              const float *w, float *y, float *ws, int nthreads);            \
  void v##_nn_conv2d_winograd_backward_params_generic(const nn_conv_geom *g, nn_act act, const float *x,     \
                                                      const float *z, const float *dz, float *dw, float *db, \
                                                      float *ws, int nthreads);                              \
  void v##_nn_conv2d_winograd_backward_data_generic(const nn_conv_geom *g, nn_act act, const float *w,       \
                                                    const float *z, const float *dz, float *dx, float *ws,   \
                                                    int nthreads);
DECL(old)
DECL(new)

typedef struct {
  nn_conv_geom g;
  nn_epilogue e;
  int pass; /* 0 forward, 1 dW/db, 2 dx */
  float *x, *y, *dy, *dx, *w, *dw, *db, *ws;
} conv_ctx;

static void call(int v, void *p) {
  conv_ctx *c = p;
  if (c->pass == 0)
    (v ? new_nn_conv2d_winograd_forward_generic : old_nn_conv2d_winograd_forward_generic)(&c->g, &c->e, c->x, c->w,
                                                                                          c->y, c->ws, 1);
  else if (c->pass == 1)
    (v ? new_nn_conv2d_winograd_backward_params_generic : old_nn_conv2d_winograd_backward_params_generic)(
        &c->g, NN_ACT_NONE, c->x, NULL, c->dy, c->dw, c->db, c->ws, 1);
  else
    (v ? new_nn_conv2d_winograd_backward_data_generic : old_nn_conv2d_winograd_backward_data_generic)(
        &c->g, NN_ACT_NONE, c->w, NULL, c->dy, c->dx, c->ws, 1);
}

static void shape(const char *name, int n, int c, int h, int oc) {
  conv_ctx b = {.g = {.n = n, .c = c, .h = h, .w = h, .oc = oc, .kh = 3, .kw = 3, .stride = 1, .pad = 0}};
  if (nn_conv_geom_init(&b.g)) exit(1);
  const size_t nx = (size_t)n * c * h * h, ny = (size_t)n * oc * b.g.oh * b.g.ow, nw = (size_t)oc * c * 9;
  const size_t wo = old_nn_conv2d_winograd_workspace(&b.g, 1), wn = new_nn_conv2d_winograd_workspace(&b.g, 1);
  b.x = bench_fbuf(nx), b.y = bench_fbuf(ny), b.dy = bench_fbuf(ny), b.dx = bench_fbuf(nx), b.w = bench_fbuf(nw);
  b.dw = bench_fbuf(nw), b.db = bench_fbuf((size_t)oc), b.ws = bench_fbuf(wo > wn ? wo : wn);
  b.e.bias = b.db;
  static const char *pn[] = {"fwd", "dW", "dx"};
  char label[96];
  for (b.pass = 0; b.pass < 3; b.pass++) {
    snprintf(label, sizeof label, "winograd %s %s", pn[b.pass], name);
    ab_time(label, call, &b, 40);
  }
  free(b.x), free(b.y), free(b.dy), free(b.dx), free(b.w), free(b.dw), free(b.db), free(b.ws);
}

int main(void) {
  shape("cnn conv2 32x32x13x13 oc64", 32, 32, 13, 64);
  shape("cifar conv2 32x32x15x15 oc64", 32, 32, 15, 64);
  shape("rule c64 8x8 oc64", 32, 64, 8, 64);
  shape("rule c128 6x6 oc128", 32, 128, 6, 128);
  return 0;
}
