/* Winograd F(2x2, 3x3) convolution for 3x3 stride-1 layers (conv2d_winograd.c); conv2d.c
 * chooses it by shape (nn_conv2d_algo, nn_conv2d_algo_data) and calls it. Internal to
 * src/kernels/. */
#ifndef NN_KERNELS_CONV2D_WINOGRAD_H
#define NN_KERNELS_CONV2D_WINOGRAD_H
#include <stddef.h>

#include "kernels/conv_epilogue.h"
#include "kernels/kernels.h"

/* 1 if the forward can run g: stride 1, a 3x3 kernel, OC a multiple of 16. */
int nn_conv2d_winograd_fits(const nn_conv_geom *g);
/* 1 if the dx pass can run g: stride 1, a 3x3 kernel, C a multiple of 16, pad <= 2. */
int nn_conv2d_winograd_data_fits(const nn_conv_geom *g);
/* Scratch floats for the passes that fit g on up to `nprocs` threads (0 if none fits). */
size_t nn_conv2d_winograd_workspace(const nn_conv_geom *g, int nprocs);
/* Compiled once per variant of the runtime dispatch (ARCHITECTURE.md §13); each variant of
 * conv2d.c calls its own, NN_V(name) (kernels/variant.h).
 * _forward: y = the epilogue e of conv(x, w), on at most `nthreads` threads.
 * _backward_data: dx = dL/dx (overwritten) from dy = dz * act'(z) (z unused for NN_ACT_NONE,
 *   dz = dy), on at most `nthreads` threads.
 * _backward_params: dw += dL/dw, db += dL/db (db may be NULL) from the same dy, for shapes
 *   where nn_conv2d_winograd_fits, on at most `nthreads` threads. */
#define NN_CONV2D_WINOGRAD_VARIANT(sfx)                                                                             \
  void nn_conv2d_winograd_forward##sfx(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w, \
                                       float *y, float *ws, int nthreads);                                          \
  void nn_conv2d_winograd_backward_data##sfx(const nn_conv_geom *g, nn_act act, const float *w, const float *z,     \
                                             const float *dz, float *dx, float *ws, int nthreads);                  \
  void nn_conv2d_winograd_backward_params##sfx(const nn_conv_geom *g, nn_act act, const float *x, const float *z,   \
                                               const float *dz, float *dw, float *db, float *ws, int nthreads);
NN_CONV2D_WINOGRAD_VARIANT(_generic)
NN_CONV2D_WINOGRAD_VARIANT(_avx2)
#undef NN_CONV2D_WINOGRAD_VARIANT

#endif
