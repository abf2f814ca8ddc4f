/* One plane of a 2x2 stride-2 pool, for kernels that pool a plane they have just written
 * (batchnorm.c's pooled forward); pool.c defines it with the kernels it shares. Internal to
 * src/kernels/. */
#ifndef NN_KERNELS_POOL_PLANE_H
#define NN_KERNELS_POOL_PLANE_H
#include <stdint.h>

#include "kernels/kernels.h"

/* Compiled once per variant of the runtime dispatch (variant.h); each variant calls its own,
 * NN_V(name). y[g->oh, g->ow] = the 2x2 stride-2 pool of the plane x[g->h, g->w] (g's n and c
 * unused): the max with its plane index in argmax, or the average with argmax NULL; bit for
 * bit one plane of nn_maxpool2d_forward / nn_avgpool2d_forward. */
#define NN_POOL_PLANE_VARIANT(sfx) \
  void nn_pool2_plane_forward##sfx(const nn_pool_geom *g, const float *x, float *y, int32_t *argmax);
NN_POOL_PLANE_VARIANT(_generic)
NN_POOL_PLANE_VARIANT(_avx2)
#undef NN_POOL_PLANE_VARIANT

#endif
