/* Elementwise activations relu, sigmoid, tanh: shape-preserving, no parameters. */
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

/* One forward/backward pair per activation, each a thin call of its kernel. */
#define NN_ACTIVATION(kind)                                                                            \
  static nn_status kind##_forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode,          \
                                  nn_error *err) {                                                     \
    (void)mode, (void)err;                                                                             \
    nn_##kind##_forward(x, y, (size_t)n *nn_shape_size(L->in));                                        \
    return NN_OK;                                                                                      \
  }                                                                                                    \
  static void kind##_backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, \
                              int n, nn_mode mode) {                                                   \
    (void)x, (void)mode;                                                                               \
    if (dx) nn_##kind##_backward(y, dy, dx, (size_t)n *nn_shape_size(L->in));                          \
  }                                                                                                    \
  const nn_layer_ops nn_##kind##_ops = {                                                               \
      .name = #kind,                                                                                   \
      .keys = nn_no_keys,                                                                              \
      .defaults = nn_layer_no_defaults,                                                                \
      .finalize = NULL,                                                                                \
      .shape = nn_layer_same_shape,                                                                    \
      .declare = nn_layer_no_params,                                                                   \
      .scratch = nn_layer_no_scratch,                                                                  \
      .init = nn_layer_no_init,                                                                        \
      .forward = kind##_forward,                                                                       \
      .backward = kind##_backward,                                                                     \
      .describe = nn_layer_no_detail,                                                                  \
  };

NN_ACTIVATION(relu)
NN_ACTIVATION(sigmoid)
NN_ACTIVATION(tanh)

nn_act nn_layer_act(const nn_layer *L) {
  switch (L->kind) {
    case NN_LAYER_RELU: return NN_ACT_RELU;
    case NN_LAYER_SIGMOID: return NN_ACT_SIGMOID;
    case NN_LAYER_TANH: return NN_ACT_TANH;
    default: return NN_ACT_NONE;
  }
}
