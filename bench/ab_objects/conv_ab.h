/* The shared half of the convolution drivers of bench/ab_objects.sh (conv2d_direct.c,
 * conv2d_winograd.c): a pass of one kernel file's forward (bias epilogue), dW/db or dx on a
 * shape, old_ against new_ entry points given as a table, one thread, each the minimum of 40
 * calls taken in alternation. */
#ifndef NN_BENCH_AB_CONV_H
#define NN_BENCH_AB_CONV_H
#include "ab.h"
#include "kernels/conv_epilogue.h"
#include "kernels/kernels.h"

/* One version's entry points (the generic variant's names after renaming) */
typedef struct {
  size_t (*workspace)(const nn_conv_geom *g, int nprocs);
  void (*forward)(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w, float *y, float *ws,
                  int nthreads);
  void (*params)(const nn_conv_geom *g, nn_act act, const float *x, const float *z, const float *dz, float *dw,
                 float *db, float *ws, int nthreads);
  void (*data)(const nn_conv_geom *g, nn_act act, const float *w, const float *z, const float *dz, float *dx,
               float *ws, int nthreads);
} conv_ab_fns;

/* The renamed entry points of src/kernels/conv2d_<kern>.c for version v (old or new): their
 * declarations, and a conv_ab_fns initializer */
#define CONV_AB_DECL(v, kern)                                                                                \
  size_t v##_nn_conv2d_##kern##_workspace(const nn_conv_geom *g, int nprocs);                                \
  void v##_nn_conv2d_##kern##_forward_generic(const nn_conv_geom *g, const nn_epilogue *e, const float *x,   \
                                              const float *w, float *y, float *ws, int nthreads);            \
  void v##_nn_conv2d_##kern##_backward_params_generic(const nn_conv_geom *g, nn_act act, const float *x,     \
                                                      const float *z, const float *dz, float *dw, float *db, \
                                                      float *ws, int nthreads);                              \
  void v##_nn_conv2d_##kern##_backward_data_generic(const nn_conv_geom *g, nn_act act, const float *w,       \
                                                    const float *z, const float *dz, float *dx, float *ws,   \
                                                    int nthreads);
#define CONV_AB_FNS(v, kern)                                                                         \
  {                                                                                                  \
    v##_nn_conv2d_##kern##_workspace, v##_nn_conv2d_##kern##_forward_generic,                        \
        v##_nn_conv2d_##kern##_backward_params_generic, v##_nn_conv2d_##kern##_backward_data_generic \
  }

typedef struct {
  const conv_ab_fns *fns; /* [old, new] */
  nn_conv_geom g;
  nn_epilogue e;
  int pass; /* 0 forward, 1 dW/db, 2 dx */
  float *x, *y, *dy, *dx, *w, *dw, *db, *ws;
} conv_ab_ctx;

static void conv_ab_call(int v, void *p) {
  conv_ab_ctx *c = p;
  const conv_ab_fns *f = &c->fns[v];
  if (c->pass == 0)
    f->forward(&c->g, &c->e, c->x, c->w, c->y, c->ws, 1);
  else if (c->pass == 1)
    f->params(&c->g, NN_ACT_NONE, c->x, NULL, c->dy, c->dw, c->db, c->ws, 1);
  else
    f->data(&c->g, NN_ACT_NONE, c->w, NULL, c->dy, c->dx, c->ws, 1);
}

/* Times the forward, dW/db and, with `data`, dx of an unpadded stride-1 k x k layer on n
 * samples of c x h x h with oc filters, labelled "<what> <pass> <name>". */
static void conv_ab_shape(const conv_ab_fns fns[2], const char *what, const char *name, int n, int c, int h, int oc,
                          int k, int data) {
  conv_ab_ctx b = {.fns = fns, .g = {.n = n, .c = c, .h = h, .w = h, .oc = oc, .kh = k, .kw = k, .stride = 1, .pad = 0}};
  if (nn_conv_geom_init(&b.g)) exit(1);
  const size_t nx = (size_t)n * c * h * h, ny = (size_t)n * oc * b.g.oh * b.g.ow, nw = (size_t)oc * c * k * k;
  const size_t wo = fns[0].workspace(&b.g, 1), wn = fns[1].workspace(&b.g, 1);
  b.x = bench_fbuf(nx), b.y = bench_fbuf(ny), b.dy = bench_fbuf(ny), b.dx = bench_fbuf(nx), b.w = bench_fbuf(nw);
  b.dw = bench_fbuf(nw), b.db = bench_fbuf((size_t)oc), b.ws = bench_fbuf(wo > wn ? wo : wn);
  b.e.bias = b.db;
  static const char *pn[] = {"fwd", "dW", "dx"};
  char label[96];
  for (b.pass = 0; b.pass < 2 + (data != 0); b.pass++) {
    snprintf(label, sizeof label, "%s %s %s", what, pn[b.pass], name);
    ab_time(label, conv_ab_call, &b, 40);
  }
  free(b.x), free(b.y), free(b.dy), free(b.dx), free(b.w), free(b.dw), free(b.db), free(b.ws);
}

#endif
