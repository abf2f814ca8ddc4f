/* Tensor layouts between normnet (NCHW) and Keras (NHWC): see keras_layout.h. */
#include "export/keras_layout.h"

size_t nn_keras_feature(nn_keras_flat f, size_t i) {
  size_t c = i % (size_t)f.c, hw = i / (size_t)f.c;
  return c * (size_t)f.h * (size_t)f.w + hw;
}

void nn_keras_dense_kernel(const float *src, float *dst, int in, int out, nn_keras_flat f, int to_keras) {
  for (size_t i = 0; i < (size_t)in; i++) {
    size_t our_i = nn_keras_feature(f, i);
    for (size_t o = 0; o < (size_t)out; o++) {
      size_t k = i * (size_t)out + o, w = o * (size_t)in + our_i;
      if (to_keras) dst[k] = src[w];
      else dst[w] = src[k];
    }
  }
}

void nn_keras_conv_kernel(const float *src, float *dst, int out, int in, int k, int to_keras) {
  for (size_t o = 0; o < (size_t)out; o++)
    for (size_t i = 0; i < (size_t)in; i++)
      for (size_t y = 0; y < (size_t)k; y++)
        for (size_t x = 0; x < (size_t)k; x++) {
          size_t ours = ((o * (size_t)in + i) * (size_t)k + y) * (size_t)k + x;
          size_t keras = ((y * (size_t)k + x) * (size_t)in + i) * (size_t)out + o;
          if (to_keras) dst[keras] = src[ours];
          else dst[ours] = src[keras];
        }
}

void nn_keras_chw(const float *src, float *dst, int c, int h, int w, int to_keras) {
  size_t hw = (size_t)h * (size_t)w;
  for (size_t ch = 0; ch < (size_t)c; ch++)
    for (size_t p = 0; p < hw; p++) {
      size_t ours = ch * hw + p, keras = p * (size_t)c + ch;
      if (to_keras) dst[keras] = src[ours];
      else dst[ours] = src[keras];
    }
}

void nn_keras_features(const float *src, float *dst, nn_keras_flat f, int to_keras) {
  nn_keras_chw(src, dst, f.c, f.h, f.w, to_keras);
}

void nn_keras_center_scale(const nn_layer *L, int *center, int *scale) {
  if (L->kind == NN_LAYER_BATCHNORM) {
    *center = L->cfg.bn.affine && L->cfg.bn.center;
    *scale = L->cfg.bn.affine && L->cfg.bn.scale;
  } else {
    *center = *scale = L->cfg.gn.affine;
  }
}
