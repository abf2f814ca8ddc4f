/* Direct stride-1 convolution for layers with few input channels (conv2d_direct.c); conv2d.c
 * chooses it by shape (nn_conv2d_algo) and calls it. Internal to src/kernels/. */
#ifndef NN_KERNELS_CONV2D_DIRECT_H
#define NN_KERNELS_CONV2D_DIRECT_H
#include <stddef.h>

#include "kernels/conv_epilogue.h"
#include "kernels/kernels.h"

/* Scratch floats for up to `nprocs` threads (every pass, the dx pass included). */
size_t nn_conv2d_direct_workspace(const nn_conv_geom *g, int nprocs);
/* 1 if the direct dx pass can run g: stride 1, no padding, OW a multiple of 8,
 * KW <= NN_CONV_DIRECT_DX_MAX_KW and C*KH*KW <= NN_CONV_DIRECT_MAX_TAPS. */
int nn_conv2d_direct_data_fits(const nn_conv_geom *g);
/* Compiled once per variant of the runtime dispatch (ARCHITECTURE.md §13); each variant of
 * conv2d.c calls its own, NN_V(name) (kernels/variant.h).
 * _forward: y = the epilogue e of conv(x, w) (kernels.h, nn_epilogue), on at most `nthreads`
 *   threads (<= the workspace's nprocs).
 * _backward_params: dw += dL/dw, db += dL/db (either may be NULL) from dy = dz * act'(z) (z
 *   unused for NN_ACT_NONE, dz = dy), on at most `nthreads` threads.
 * _backward_data: dx = dL/dx (overwritten) from the same dy, for shapes where
 *   nn_conv2d_direct_data_fits, on at most `nthreads` threads. */
#define NN_CONV2D_DIRECT_VARIANT(sfx)                                                                             \
  void nn_conv2d_direct_forward##sfx(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w, \
                                     float *y, float *ws, int nthreads);                                          \
  void nn_conv2d_direct_backward_params##sfx(const nn_conv_geom *g, nn_act act, const float *x, const float *z,   \
                                             const float *dz, float *dw, float *db, float *ws, int nthreads);     \
  void nn_conv2d_direct_backward_data##sfx(const nn_conv_geom *g, nn_act act, const float *w, const float *z,     \
                                           const float *dz, float *dx, float *ws, int nthreads);
NN_CONV2D_DIRECT_VARIANT(_generic)
NN_CONV2D_DIRECT_VARIANT(_avx2)
#undef NN_CONV2D_DIRECT_VARIANT

#endif
