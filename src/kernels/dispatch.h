/* The dispatched kernels (runtime dispatch, variant.h): one line per entry point of
 * kernels.h that has a generic and an AVX2+FMA variant, as X(name, (parameters), (arguments)).
 * A new dispatched kernel adds its line here and names its definition NN_V(name); dispatch.c
 * then defines `name`. Internal to src/kernels/. */
#ifndef NN_KERNELS_DISPATCH_H
#define NN_KERNELS_DISPATCH_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define NN_DISPATCHED_KERNELS(X)                                                                                      \
  /* activation.c */                                                                                                  \
  X(nn_relu_forward, (const float *x, float *y, size_t count), (x, y, count))                                         \
  X(nn_relu_backward, (const float *y, const float *dy, float *dx, size_t count), (y, dy, dx, count))                 \
  X(nn_sigmoid_forward, (const float *x, float *y, size_t count), (x, y, count))                                      \
  X(nn_sigmoid_backward, (const float *y, const float *dy, float *dx, size_t count), (y, dy, dx, count))              \
  X(nn_tanh_forward, (const float *x, float *y, size_t count), (x, y, count))                                         \
  X(nn_tanh_backward, (const float *y, const float *dy, float *dx, size_t count), (y, dy, dx, count))                 \
  /* u8_normalize.c */                                                                                                \
  X(nn_u8_normalize, (const uint8_t *src, float *dst, size_t count, float mean, float std),                           \
    (src, dst, count, mean, std))                                                                                     \
  /* pool.c */                                                                                                        \
  X(nn_maxpool2d_forward, (const nn_pool_geom *g, const float *x, float *y, int32_t *argmax), (g, x, y, argmax))      \
  X(nn_maxpool2d_backward, (const nn_pool_geom *g, const float *dy, const int32_t *argmax, float *dx),                \
    (g, dy, argmax, dx))                                                                                              \
  X(nn_avgpool2d_forward, (const nn_pool_geom *g, const float *x, float *y), (g, x, y))                               \
  X(nn_avgpool2d_backward, (const nn_pool_geom *g, const float *dy, float *dx), (g, dy, dx))                          \
  X(nn_global_avgpool_forward, (const float *x, float *y, int n, int c, int s), (x, y, n, c, s))                      \
  X(nn_global_avgpool_backward, (const float *dy, float *dx, int n, int c, int s), (dy, dx, n, c, s))                 \
  /* dense.c */                                                                                                       \
  X(nn_dense_forward_epi, (const float *x, const float *w, const nn_epilogue *e, float *y, int n, int in, int out),   \
    (x, w, e, y, n, in, out))                                                                                         \
  X(nn_dense_backward,                                                                                                \
    (const float *x, const float *w, const float *dy, float *dx, float *dw, float *db, int n, int in, int out),       \
    (x, w, dy, dx, dw, db, n, in, out))                                                                               \
  /* conv2d.c (with conv2d_direct.c: each variant of conv2d.c calls its own) */                                       \
  X(nn_conv2d_forward_epi,                                                                                            \
    (const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w, float *y, float *ws),               \
    (g, e, x, w, y, ws))                                                                                              \
  X(nn_conv2d_backward_act,                                                                                           \
    (const nn_conv_geom *g, nn_act act, const float *x, const float *w, const float *z, const float *dz, float *dx,   \
     float *dw, float *db, float *ws),                                                                                \
    (g, act, x, w, z, dz, dx, dw, db, ws))                                                                            \
  /* batchnorm.c */                                                                                                   \
  X(nn_bn_forward_train_act,                                                                                          \
    (const nn_norm_geom *g, nn_act act, const float *x, const float *gamma, const float *beta, float *z, float *mean, \
     float *var, float *invstd),                                                                                      \
    (g, act, x, gamma, beta, z, mean, var, invstd))                                                                   \
  X(nn_bn_forward_infer_act,                                                                                          \
    (const nn_norm_geom *g, nn_act act, const float *x, const float *gamma, const float *beta, const float *mean,     \
     const float *var, float *z),                                                                                     \
    (g, act, x, gamma, beta, mean, var, z))                                                                           \
  X(nn_bn_backward_train_act,                                                                                         \
    (const nn_norm_geom *g, nn_act act, const float *x, const float *gamma, const float *mean, const float *invstd,   \
     const float *z, const float *dz, float *dx, float *dgamma, float *dbeta),                                        \
    (g, act, x, gamma, mean, invstd, z, dz, dx, dgamma, dbeta))                                                       \
  X(nn_bn_backward_train_act_pool2,                                                                                   \
    (const nn_norm_geom *g, int w, nn_act act, const float *x, const float *gamma, const float *mean,                 \
     const float *invstd, const float *z, const float *dp, int max_pool, float *dx, float *dgamma, float *dbeta),     \
    (g, w, act, x, gamma, mean, invstd, z, dp, max_pool, dx, dgamma, dbeta))                                          \
  X(nn_bn_backward_train_act_gap,                                                                                     \
    (const nn_norm_geom *g, nn_act act, const float *x, const float *gamma, const float *mean, const float *invstd,   \
     const float *z, const float *dp, float *dx, float *dgamma, float *dbeta),                                        \
    (g, act, x, gamma, mean, invstd, z, dp, dx, dgamma, dbeta))                                                       \
  X(nn_bn_backward_infer,                                                                                             \
    (const nn_norm_geom *g, const float *x, const float *gamma, const float *mean, const float *var,                  \
     const float *dy, float *dx, float *dgamma, float *dbeta),                                                        \
    (g, x, gamma, mean, var, dy, dx, dgamma, dbeta))                                                                  \
  X(nn_bn_moments, (const nn_norm_geom *g, const float *x, const float *shift, double *sum, double *sumsq),           \
    (g, x, shift, sum, sumsq))                                                                                        \
  X(nn_bn_forward_apply,                                                                                              \
    (const nn_norm_geom *g, const float *x, const float *gamma, const float *beta, const float *shift,                \
     const double *sum, const double *sumsq, double count, float *y, float *mean, float *var, float *invstd),         \
    (g, x, gamma, beta, shift, sum, sumsq, count, y, mean, var, invstd))                                              \
  X(nn_bn_backward_sums,                                                                                              \
    (const nn_norm_geom *g, const float *x, const float *dy, const float *mean, double *sd, double *sdy,              \
     double *sdyd),                                                                                                   \
    (g, x, dy, mean, sd, sdy, sdyd))                                                                                  \
  X(nn_bn_backward_apply,                                                                                             \
    (const nn_norm_geom *g, const float *x, const float *gamma, const float *mean, const float *invstd,               \
     const float *dy, const double *sd, const double *sdy, const double *sdyd, double count, float *dx,               \
     float *dgamma, float *dbeta),                                                                                    \
    (g, x, gamma, mean, invstd, dy, sd, sdy, sdyd, count, dx, dgamma, dbeta))                                         \
  /* groupnorm.c */                                                                                                   \
  X(nn_groupnorm_forward,                                                                                             \
    (const nn_norm_geom *g, const float *x, const float *gamma, const float *beta, float *y, float *mean,             \
     float *var, float *invstd),                                                                                      \
    (g, x, gamma, beta, y, mean, var, invstd))                                                                        \
  X(nn_groupnorm_backward,                                                                                            \
    (const nn_norm_geom *g, const float *x, const float *gamma, const float *mean, const float *invstd,               \
     const float *dy, float *dx, float *dgamma, float *dbeta, float *ws),                                             \
    (g, x, gamma, mean, invstd, dy, dx, dgamma, dbeta, ws))

#define NN_DECLARE_VARIANTS(name, params, args) \
  void name##_generic params;                   \
  void name##_avx2 params;
NN_DISPATCHED_KERNELS(NN_DECLARE_VARIANTS)
#undef NN_DECLARE_VARIANTS

#endif
