/* The convolution kernels' epilogue on a run of one output channel, and the layout of their
 * fused backward's dz (conv2d.c, conv2d_direct.c, conv2d_winograd.c). Internal to
 * src/kernels/. */
#ifndef NN_KERNELS_CONV_EPILOGUE_H
#define NN_KERNELS_CONV_EPILOGUE_H
#include <stddef.h>

#include "kernels/act_inline.h"
#include "kernels/kernels.h"

/* dst = act(norm(src + b[oc])) over a run of output channel oc (nn_epilogue; dst == src is
 * fine): per value the additions and the multiply the separate kernels make, in their order. */
static inline void conv_epi_n(const nn_epilogue *e, int oc, const float *src, float *dst, size_t len) {
  const float bias = e->bias ? e->bias[oc] : 0.0f;
  if (e->mean) {
    const float mu = e->mean[oc], sc = e->scale[oc], sh = e->shift[oc];
#pragma omp simd
    for (size_t j = 0; j < len; j++) dst[j] = (src[j] + bias - mu) * sc + sh;
  } else {
#pragma omp simd
    for (size_t j = 0; j < len; j++) dst[j] = src[j] + bias;
  }
  act_n(e->act, dst, len);
}

/* act_grad_from's plane for a backward_act's dz: OH*OW where dz is a global average pool's
 * gradient, one value per plane (g->gap_dz), else 0 (dz laid out as z). */
static inline size_t conv_dz_plane(const nn_conv_geom *g) { return g->gap_dz ? (size_t)g->oh * (size_t)g->ow : 0; }

#endif
