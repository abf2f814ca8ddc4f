/* Direct stride-1 convolution for layers with few input channels (conv2d_direct.c); conv2d.c
 * chooses it by shape (nn_conv2d_algo) and calls it. Internal to src/kernels/. */
#ifndef NN_KERNELS_CONV2D_DIRECT_H
#define NN_KERNELS_CONV2D_DIRECT_H
#include <stddef.h>

#include "kernels/kernels.h"

/* Scratch floats for up to `nprocs` threads. */
size_t nn_conv2d_direct_workspace(const nn_conv_geom *g, int nprocs);
/* y = conv(x, w) + b (b may be NULL), on at most `nthreads` threads (<= the workspace's nprocs). */
void nn_conv2d_direct_forward(const nn_conv_geom *g, const float *x, const float *w, const float *b, float *y,
                              float *ws, int nthreads);
/* dw += dL/dw, db += dL/db (either may be NULL), on at most `nthreads` threads. */
void nn_conv2d_direct_backward_params(const nn_conv_geom *g, const float *x, const float *dy, float *dw, float *db,
                                      float *ws, int nthreads);

#endif
