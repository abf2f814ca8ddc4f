/* flatten: CxHxW -> C*H*W, PyTorch nn.Flatten (a view: NCHW is already contiguous). */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

static int flat_shape(const nn_layer_cfg *c, nn_shape in, nn_shape *out, char *why, size_t len) {
  (void)c;
  /* the flat width is an int: refuse what would not fit instead of truncating it */
  unsigned long long hw, chw;
  if (__builtin_mul_overflow((unsigned long long)in.h, (unsigned long long)in.w, &hw) ||
      __builtin_mul_overflow(hw, (unsigned long long)in.c, &chw) || chw > INT_MAX) {
    snprintf(why, len, "flattening %dx%dx%d gives more than %d values per sample", in.c, in.h, in.w, INT_MAX);
    return -1;
  }
  *out = (nn_shape){1, (int)chw, 1, 1};
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
    .view = 1,
};
