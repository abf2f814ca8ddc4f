/* flatten: CxHxW -> C*H*W, PyTorch nn.Flatten (a copy: NCHW is already contiguous). */
#include <stddef.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

static int flat_shape(const nn_layer_cfg *c, nn_shape in, nn_shape *out, char *why, size_t len) {
  (void)c, (void)why, (void)len;
  *out = (nn_shape){1, (int)nn_shape_size(in), 1, 1};
  return 0;
}

static nn_status flat_forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)mode, (void)err;
  nn_flatten_forward(x, y, (size_t)n * nn_shape_size(L->in));
  return NN_OK;
}

static void flat_backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)x, (void)y, (void)mode;
  if (dx) nn_flatten_backward(dy, dx, (size_t)n * nn_shape_size(L->in));
}

const nn_layer_ops nn_flatten_ops = {
    .name = "flatten",
    .keys = nn_no_keys,
    .defaults = nn_layer_no_defaults,
    .finalize = NULL,
    .shape = flat_shape,
    .declare = nn_layer_no_params,
    .scratch = nn_layer_no_scratch,
    .init = nn_layer_no_init,
    .forward = flat_forward,
    .backward = flat_backward,
    .describe = nn_layer_no_detail,
};
