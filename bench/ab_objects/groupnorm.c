/* Driver of bench/ab_objects.sh for src/kernels/groupnorm.c: group norm forward and backward
 * (LayerNorm over a CNN activation, GroupNorm of 8 groups, InstanceNorm), old_ against new_
 * objects, one thread, each the minimum of 40 calls taken in alternation. */
#include <stdint.h>

#include "ab.h"
#include "kernels/kernels.h"

#define DECL(v)                                                                                               \
  void v##_nn_groupnorm_forward_generic(const nn_norm_geom *g, const float *x, const float *gamma,            \
                                        const float *beta, float *y, float *mean, float *var, float *invstd); \
  void v##_nn_groupnorm_backward_generic(const nn_norm_geom *g, const float *x, const float *gamma,           \
                                         const float *mean, const float *invstd, const float *dy, float *dx,  \
                                         float *dgamma, float *dbeta, float *ws);                             \
  size_t v##_nn_groupnorm_workspace(const nn_norm_geom *g);
DECL(old)
DECL(new)

typedef struct {
  nn_norm_geom g;
  int bwd;
  float *x, *y, *dy, *dx, *gamma, *beta, *mean, *var, *invstd, *dg, *db, *ws;
} gn_ctx;

static void call(int v, void *p) {
  gn_ctx *c = p;
  if (!c->bwd)
    (v ? new_nn_groupnorm_forward_generic : old_nn_groupnorm_forward_generic)(&c->g, c->x, c->gamma, c->beta, c->y,
                                                                              c->mean, c->var, c->invstd);
  else
    (v ? new_nn_groupnorm_backward_generic : old_nn_groupnorm_backward_generic)(&c->g, c->x, c->gamma, c->mean,
                                                                                c->invstd, c->dy, c->dx, c->dg, c->db,
                                                                                c->ws);
}

static void shape(const char *name, int n, int c, int s, int groups) {
  gn_ctx b = {.g = {.n = n, .c = c, .s = s, .groups = groups, .affine = NN_GN_AFFINE_CHANNEL, .eps = 1e-5f}};
  const size_t cnt = (size_t)n * c * s, ng = (size_t)n * groups;
  b.x = bench_fbuf(cnt), b.y = bench_fbuf(cnt), b.dy = bench_fbuf(cnt), b.dx = bench_fbuf(cnt), b.gamma = bench_fbuf((size_t)c);
  b.beta = bench_fbuf((size_t)c), b.mean = bench_fbuf(ng), b.var = bench_fbuf(ng), b.invstd = bench_fbuf(ng);
  b.dg = bench_fbuf((size_t)c), b.db = bench_fbuf((size_t)c);
  b.ws = bench_fbuf(old_nn_groupnorm_workspace(&b.g) + new_nn_groupnorm_workspace(&b.g));
  old_nn_groupnorm_forward_generic(&b.g, b.x, b.gamma, b.beta, b.y, b.mean, b.var, b.invstd);
  char label[96];
  for (b.bwd = 0; b.bwd < 2; b.bwd++) {
    snprintf(label, sizeof label, "gn %s %s", b.bwd ? "bwd" : "fwd", name);
    ab_time(label, call, &b, 40);
  }
  free(b.x), free(b.y), free(b.dy), free(b.dx), free(b.gamma), free(b.beta), free(b.mean), free(b.var);
  free(b.invstd), free(b.dg), free(b.db), free(b.ws);
}

int main(void) {
  shape("layer 32x32x676 (G=1)", 32, 32, 676, 1);
  shape("group 32x32x676 (G=8)", 32, 32, 676, 8);
  shape("instance 32x32x676 (G=C)", 32, 32, 676, 32);
  shape("instance 128x16x64 (G=C)", 128, 16, 64, 16);
  return 0;
}
