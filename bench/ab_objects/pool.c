/* Driver of bench/ab_objects.sh for src/kernels/pool.c: the 2x2 stride-2 max and average pool
 * forward and backward of the presets' shapes, old_ against new_ objects, one thread, each
 * the minimum of 60 calls taken in alternation. */
#include <stdint.h>

#include "ab.h"
#include "kernels/kernels.h"

#define DECL(v)                                                                                                 \
  void v##_nn_maxpool2d_forward_generic(const nn_pool_geom *g, const float *x, float *y, int32_t *am);          \
  void v##_nn_maxpool2d_backward_generic(const nn_pool_geom *g, const float *dy, const int32_t *am, float *dx); \
  void v##_nn_avgpool2d_forward_generic(const nn_pool_geom *g, const float *x, float *y);                       \
  void v##_nn_avgpool2d_backward_generic(const nn_pool_geom *g, const float *dy, float *dx);
DECL(old)
DECL(new)

typedef struct {
  nn_pool_geom g;
  float *x, *y, *dy, *dx;
  int32_t *am;
  int avg, bwd;
} pool_ctx;

static void call(int v, void *p) {
  pool_ctx *c = p;
  if (c->avg && !c->bwd) (v ? new_nn_avgpool2d_forward_generic : old_nn_avgpool2d_forward_generic)(&c->g, c->x, c->y);
  if (c->avg && c->bwd) (v ? new_nn_avgpool2d_backward_generic : old_nn_avgpool2d_backward_generic)(&c->g, c->dy, c->dx);
  if (!c->avg && !c->bwd)
    (v ? new_nn_maxpool2d_forward_generic : old_nn_maxpool2d_forward_generic)(&c->g, c->x, c->y, c->am);
  if (!c->avg && c->bwd)
    (v ? new_nn_maxpool2d_backward_generic : old_nn_maxpool2d_backward_generic)(&c->g, c->dy, c->am, c->dx);
}

static void shape(const char *name, int n, int c, int h, int w, int avg) {
  pool_ctx pc = {.g = {.n = n, .c = c, .h = h, .w = w, .size = 2, .stride = 2}, .avg = avg};
  if (nn_pool_geom_init(&pc.g)) exit(1);
  const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * pc.g.oh * pc.g.ow;
  pc.x = bench_fbuf(nx), pc.y = bench_fbuf(ny), pc.dy = bench_fbuf(ny), pc.dx = bench_fbuf(nx);
  pc.am = (int32_t *)(void *)bench_fbuf(ny);
  old_nn_maxpool2d_forward_generic(&pc.g, pc.x, pc.y, pc.am); /* a valid argmax for the backward */
  char label[96];
  for (pc.bwd = 0; pc.bwd < 2; pc.bwd++) {
    snprintf(label, sizeof label, "%s %s %s", avg ? "avgpool" : "maxpool", pc.bwd ? "bwd" : "fwd", name);
    ab_time(label, call, &pc, 60);
  }
  free(pc.x), free(pc.y), free(pc.dy), free(pc.dx), free(pc.am);
}

int main(void) {
  shape("cnn pool1 32x32x26x26", 32, 32, 26, 26, 0);
  shape("cnn pool2 32x64x11x11", 32, 64, 11, 11, 0);
  shape("cifar-cnn pool1 32x32x30x30", 32, 32, 30, 30, 0);
  shape("lenet pool1 128x6x24x24", 128, 6, 24, 24, 1);
  shape("lenet pool2 128x16x8x8", 128, 16, 8, 8, 1);
  return 0;
}
