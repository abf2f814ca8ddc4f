/* How a normnet tensor sits in Keras (NHWC, channels last) and back. Shared by the Keras
 * writer (src/export/keras.c) and reader (src/io/keras_import.c) so the two directions
 * cannot disagree.
 *   dense   ours W[out][in]            Keras kernel[in][out]   (rows in Keras's feature order)
 *   conv2d  ours W[out][in][kh][kw]    Keras kernel[kh][kw][in][out]
 *   per-sample tensors ours [C][H][W]  Keras [H][W][C]
 * After a Flatten of a CxHxW activation the feature order differs: Keras flattens NHWC
 * (feature (h*W + w)*C + c), we flatten NCHW (c*H*W + h*W + w). */
#ifndef NN_EXPORT_KERAS_LAYOUT_H
#define NN_EXPORT_KERAS_LAYOUT_H
#include <stddef.h>

#include "layers/layer.h"

/* The name HDF5 gets for an in-memory file image (core driver, no backing store). HDF5
 * refuses to open an image whose name exists as a file, so this is a path that cannot
 * exist on any POSIX system (/dev/null is not a directory). */
#define NN_H5_IMAGE_NAME "/dev/null/model.weights.h5"

/* The name of the Rescaling the writer puts first for the input transform (on [0, 1] pixels):
 * the reader takes it as written, whatever its scale, where a Rescaling of another name and a
 * scale that small is Keras's own raw-pixel idiom (nn_keras_rescaling_norm). */
#define NN_KERAS_INPUT_LAYER "normnet_input"

/* The layout of the features a flat layer sees: c, h, w of the flattened activation
 * (h = w = 1 when the features came in flat or through global pooling). */
typedef struct {
  int c, h, w;
} nn_keras_flat;

/* Our feature index of Keras feature i. */
size_t nn_keras_feature(nn_keras_flat f, size_t i);
/* to_keras = 1: ours -> Keras; 0: Keras -> ours. */
void nn_keras_dense_kernel(const float *src, float *dst, int in, int out, nn_keras_flat f, int to_keras);
void nn_keras_conv_kernel(const float *src, float *dst, int out, int in, int k, int to_keras);
void nn_keras_chw(const float *src, float *dst, int c, int h, int w, int to_keras);
/* A per-feature vector in flat layout f (e.g. BN gamma after a Flatten). */
void nn_keras_features(const float *src, float *dst, nn_keras_flat f, int to_keras);

/* Keras's center and scale of a normalization layer (whether its beta and gamma exist there):
 * a batchnorm's own under affine (scale=0 keeps gamma at 1: Keras has none), the other
 * kinds' affine for both. The variables Keras stores, in order: gamma if scale, beta if
 * center, then the moving statistics. */
void nn_keras_center_scale(const nn_layer *L, int *center, int *scale);

#endif
