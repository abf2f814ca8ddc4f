/* Driver of bench/ab_objects.sh for src/kernels/batchnorm.c: batchnorm training forward and
 * backward with an activation (the presets' first and second layers), old_ against new_
 * objects, one thread, each the minimum of 40 calls taken in alternation. Prints one line per
 * kernel and shape with both times and old/new. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/kernels.h"

#define DECL(v)                                                                                                      \
  void v##_nn_bn_forward_train_act_generic(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,    \
                                           const float *beta, float *z, float *mean, float *var, float *invstd);     \
  void v##_nn_bn_backward_train_act_generic(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,   \
                                            const float *mean, const float *invstd, const float *z, const float *dz, \
                                            float *dx, float *dgamma, float *dbeta);                                 \
  void v##_nn_bn_backward_train_act_pool2_generic(                                                                   \
      const nn_norm_geom *g, int w, nn_act act, const float *x, const float *gamma, const float *mean,               \
      const float *invstd, const float *z, const float *dp, const int32_t *argmax, float *dx, float *dgamma,         \
      float *dbeta);
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

/* pool: 0 none, 1 a 2x2 average pool after the activation, 2 a max pool (the backward from
 * the pool's output gradient, nn_bn_backward_train_act_pool2, on planes of width w) */
static void shape(const char *name, int n, int c, int s, nn_act act, int pool, int w) {
  const nn_norm_geom g = {.n = n, .c = c, .s = s, .eps = 1e-5f};
  const size_t cnt = (size_t)n * c * s;
  float *x = fbuf(cnt), *z = fbuf(cnt), *dz = fbuf(cnt), *dx = fbuf(cnt);
  float *gamma = fbuf((size_t)c), *beta = fbuf((size_t)c), *mean = fbuf((size_t)c), *var = fbuf((size_t)c);
  float *invstd = fbuf((size_t)c), *dg = fbuf((size_t)c), *db = fbuf((size_t)c);
  int32_t *am = malloc(cnt / 4 * sizeof *am);
  if (!am) exit(1);
  for (size_t k = 0; pool && k < cnt / 4; k++) { /* a valid argmax: each window's top-left value */
    const size_t o = k % ((size_t)s / 4), ow = (size_t)w / 2;
    am[k] = (int32_t)((o / ow) * 2 * (size_t)w + (o % ow) * 2);
  }
  old_nn_bn_forward_train_act_generic(&g, act, x, gamma, beta, z, mean, var, invstd);
  for (int pass = 0; pass < 2; pass++) {
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 40; r++)
      for (int v = 0; v < 2; v++) {
        const double t0 = now();
        if (!pass)
          (v ? new_nn_bn_forward_train_act_generic : old_nn_bn_forward_train_act_generic)(&g, act, x, gamma, beta, z,
                                                                                          mean, var, invstd);
        else if (!pool)
          (v ? new_nn_bn_backward_train_act_generic : old_nn_bn_backward_train_act_generic)(
              &g, act, x, gamma, mean, invstd, z, dz, dx, dg, db);
        else
          (v ? new_nn_bn_backward_train_act_pool2_generic : old_nn_bn_backward_train_act_pool2_generic)(
              &g, w, act, x, gamma, mean, invstd, z, dz, pool == 2 ? am : NULL, dx, dg, db);
        const double t = now() - t0;
        if (t < best[v]) best[v] = t;
      }
    printf("bn %s%s %-34s old %8.1f us  new %8.1f us  old/new %.2f\n", pass ? "bwd" : "fwd", pass && pool ? (pool == 2 ? "+maxpool" : "+avgpool") : "", name, 1e6 * best[0],
           1e6 * best[1], best[0] / best[1]);
  }
  free(x), free(z), free(dz), free(dx), free(gamma), free(beta), free(mean), free(var), free(invstd), free(dg),
      free(db), free(am);
}

int main(void) {
  shape("lenet bn1 128x6x576 sigmoid", 128, 6, 576, NN_ACT_SIGMOID, 1, 24);
  shape("lenet bn2 128x16x64 sigmoid", 128, 16, 64, NN_ACT_SIGMOID, 0, 8);
  shape("lenet dense bn 128x120 sigmoid", 128, 120, 1, NN_ACT_SIGMOID, 0, 1);
  shape("cnn bn1 32x32x676 relu", 32, 32, 676, NN_ACT_RELU, 2, 26);
  shape("cnn bn2 32x64x121 relu", 32, 64, 121, NN_ACT_RELU, 0, 11);
  shape("mlp bn 128x512 relu", 128, 512, 1, NN_ACT_RELU, 0, 1);
  return 0;
}
