/* Elementwise activations relu, sigmoid, tanh: shape-preserving, no parameters. */
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

/* One forward/backward pair per activation, each a thin call of its kernel. */
#define NN_ACTIVATION(name)                                                                             \
  static nn_status name##_forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode,         \
                                  nn_error *err) {                                                      \
    (void)mode, (void)err;                                                                              \
    nn_##name##_forward(x, y, (size_t)n * nn_shape_size(L->in));                                        \
    return NN_OK;                                                                                       \
  }                                                                                                     \
  static void name##_backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, \
                              int n, nn_mode mode) {                                                    \
    (void)x, (void)mode;                                                                                \
    if (dx) nn_##name##_backward(y, dy, dx, (size_t)n * nn_shape_size(L->in));                         \
  }                                                                                                     \
  const nn_layer_ops nn_##name##_ops = {#name,                nn_no_keys,          nn_layer_no_defaults,   \
                                        NULL,                 nn_layer_same_shape, nn_layer_no_params,     \
                                        nn_layer_no_scratch,  nn_layer_no_init,    name##_forward,         \
                                        name##_backward,      nn_layer_no_detail};

NN_ACTIVATION(relu)
NN_ACTIVATION(sigmoid)
NN_ACTIVATION(tanh)
