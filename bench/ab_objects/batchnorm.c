/* Driver of bench/ab_objects.sh for src/kernels/batchnorm.c: batchnorm training forward and
 * backward with an activation (the presets' first and second layers; the first ones' backward
 * from the pool's output gradient, 2x2 or global, as the model runs it), old_ against new_
 * objects, one thread, each the minimum of 40 calls taken in alternation. */
#include <stdint.h>

#include "ab.h"
#include "kernels/kernels.h"

#define DECL(v)                                                                                                      \
  void v##_nn_bn_forward_train_act_generic(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,    \
                                           const float *beta, float *z, float *mean, float *var, float *invstd);     \
  void v##_nn_bn_backward_train_act_generic(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,   \
                                            const float *mean, const float *invstd, const float *z, const float *dz, \
                                            float *dx, float *dgamma, float *dbeta);                                 \
  void v##_nn_bn_backward_train_act_pool2_generic(                                                                   \
      const nn_norm_geom *g, int w, nn_act act, const float *x, const float *gamma, const float *mean,               \
      const float *invstd, const float *z, const float *dp, int max_pool, float *dx, float *dgamma, float *dbeta);   \
  void v##_nn_bn_backward_train_act_gap_generic(const nn_norm_geom *g, nn_act act, const float *x,                   \
                                                const float *gamma, const float *mean, const float *invstd,          \
                                                const float *z, const float *dp, float *dx, float *dgamma,           \
                                                float *dbeta);
DECL(old)
DECL(new)

typedef struct {
  nn_norm_geom g;
  nn_act act;
  int pool, w, bwd; /* pool: 0 none, 1 a 2x2 average pool after the activation, 2 a max pool, 3 global */
  float *x, *z, *dz, *dx, *gamma, *beta, *mean, *var, *invstd, *dg, *db;
} bn_ctx;

static void call(int v, void *p) {
  bn_ctx *c = p;
  if (!c->bwd)
    (v ? new_nn_bn_forward_train_act_generic : old_nn_bn_forward_train_act_generic)(
        &c->g, c->act, c->x, c->gamma, c->beta, c->z, c->mean, c->var, c->invstd);
  else if (!c->pool)
    (v ? new_nn_bn_backward_train_act_generic : old_nn_bn_backward_train_act_generic)(
        &c->g, c->act, c->x, c->gamma, c->mean, c->invstd, c->z, c->dz, c->dx, c->dg, c->db);
  else if (c->pool == 3)
    (v ? new_nn_bn_backward_train_act_gap_generic : old_nn_bn_backward_train_act_gap_generic)(
        &c->g, c->act, c->x, c->gamma, c->mean, c->invstd, c->z, c->dz, c->dx, c->dg, c->db);
  else
    (v ? new_nn_bn_backward_train_act_pool2_generic : old_nn_bn_backward_train_act_pool2_generic)(
        &c->g, c->w, c->act, c->x, c->gamma, c->mean, c->invstd, c->z, c->dz, c->pool == 2, c->dx,
        c->dg, c->db);
}

static void shape(const char *name, int n, int c, int s, nn_act act, int pool, int w) {
  bn_ctx b = {.g = {.n = n, .c = c, .s = s, .eps = 1e-5f}, .act = act, .pool = pool, .w = w};
  const size_t cnt = (size_t)n * c * s;
  b.x = bench_fbuf(cnt), b.z = bench_fbuf(cnt), b.dz = bench_fbuf(cnt), b.dx = bench_fbuf(cnt), b.gamma = bench_fbuf((size_t)c);
  b.beta = bench_fbuf((size_t)c), b.mean = bench_fbuf((size_t)c), b.var = bench_fbuf((size_t)c);
  b.invstd = bench_fbuf((size_t)c), b.dg = bench_fbuf((size_t)c), b.db = bench_fbuf((size_t)c);
  old_nn_bn_forward_train_act_generic(&b.g, act, b.x, b.gamma, b.beta, b.z, b.mean, b.var, b.invstd);
  char label[96];
  for (b.bwd = 0; b.bwd < 2; b.bwd++) {
    snprintf(label, sizeof label, "bn %s%s %s", b.bwd ? "bwd" : "fwd",
             b.bwd && pool ? (pool == 3 ? "+gap" : pool == 2 ? "+maxpool"
                                                             : "+avgpool")
                           : "",
             name);
    ab_time(label, call, &b, 40);
  }
  free(b.x), free(b.z), free(b.dz), free(b.dx), free(b.gamma), free(b.beta), free(b.mean), free(b.var);
  free(b.invstd), free(b.dg), free(b.db);
}

int main(void) {
  shape("lenet bn1 128x6x576 sigmoid", 128, 6, 576, NN_ACT_SIGMOID, 1, 24);
  shape("lenet bn2 128x16x64 sigmoid", 128, 16, 64, NN_ACT_SIGMOID, 0, 8);
  shape("lenet dense bn 128x120 sigmoid", 128, 120, 1, NN_ACT_SIGMOID, 0, 1);
  shape("cnn bn1 32x32x676 relu", 32, 32, 676, NN_ACT_RELU, 2, 26);
  shape("cnn bn2 32x64x121 relu", 32, 64, 121, NN_ACT_RELU, 0, 11);
  shape("cifar-cnn bn1 32x32x900 relu", 32, 32, 900, NN_ACT_RELU, 2, 30);
  shape("cifar-cnn bn2 32x64x169 relu", 32, 64, 169, NN_ACT_RELU, 2, 13);
  shape("cifar-gap bn 32x32x900 relu", 32, 32, 900, NN_ACT_RELU, 3, 30);
  shape("mlp bn 128x512 relu", 128, 512, 1, NN_ACT_RELU, 0, 1);
  return 0;
}
