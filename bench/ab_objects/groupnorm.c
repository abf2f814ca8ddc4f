/* Driver of bench/ab_objects.sh for src/kernels/groupnorm.c: group norm forward and backward
 * (LayerNorm over a CNN activation, GroupNorm of 8 groups, InstanceNorm), old_ against new_
 * objects, one thread, each the minimum of 40 calls taken in alternation. Prints one line per
 * kernel and shape with both times and old/new. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

static void shape(const char *name, int n, int c, int s, int groups) {
  const nn_norm_geom g = {.n = n, .c = c, .s = s, .groups = groups, .affine = NN_GN_AFFINE_CHANNEL, .eps = 1e-5f};
  const size_t cnt = (size_t)n * c * s, ng = (size_t)n * groups;
  float *x = fbuf(cnt), *y = fbuf(cnt), *dy = fbuf(cnt), *dx = fbuf(cnt), *gamma = fbuf((size_t)c);
  float *beta = fbuf((size_t)c), *mean = fbuf(ng), *var = fbuf(ng), *invstd = fbuf(ng), *dg = fbuf((size_t)c);
  float *db = fbuf((size_t)c), *ws = fbuf(old_nn_groupnorm_workspace(&g) + new_nn_groupnorm_workspace(&g));
  old_nn_groupnorm_forward_generic(&g, x, gamma, beta, y, mean, var, invstd);
  for (int pass = 0; pass < 2; pass++) {
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 40; r++)
      for (int v = 0; v < 2; v++) {
        const double t0 = now();
        if (!pass)
          (v ? new_nn_groupnorm_forward_generic : old_nn_groupnorm_forward_generic)(&g, x, gamma, beta, y, mean, var,
                                                                                    invstd);
        else
          (v ? new_nn_groupnorm_backward_generic : old_nn_groupnorm_backward_generic)(&g, x, gamma, mean, invstd, dy,
                                                                                      dx, dg, db, ws);
        const double t = now() - t0;
        if (t < best[v]) best[v] = t;
      }
    printf("gn %s %-30s old %8.1f us  new %8.1f us  old/new %.2f\n", pass ? "bwd" : "fwd", name, 1e6 * best[0],
           1e6 * best[1], best[0] / best[1]);
  }
  free(x), free(y), free(dy), free(dx), free(gamma), free(beta), free(mean), free(var), free(invstd), free(dg),
      free(db), free(ws);
}

int main(void) {
  shape("layer 32x32x676 (G=1)", 32, 32, 676, 1);
  shape("group 32x32x676 (G=8)", 32, 32, 676, 8);
  shape("instance 32x32x676 (G=C)", 32, 32, 676, 32);
  shape("instance 128x16x64 (G=C)", 128, 16, 64, 16);
  return 0;
}
