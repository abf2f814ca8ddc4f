/* dense: y[N,O] = x[N,I] @ W[O,I]^T + b — PyTorch nn.Linear. */
#include <stddef.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

static const nn_key keys[] = {
    {"units", NN_KEY_INT, offsetof(nn_layer_cfg, dense.units), 1, 1 << 24, 1},
    {"bias", NN_KEY_BOOL, offsetof(nn_layer_cfg, dense.bias), 0, 1, 0},
    {0},
};

static void defaults(nn_layer_cfg *c) { c->dense = (nn_dense_cfg){.units = 0, .bias = 1}; }

static int shape(const nn_layer_cfg *c, nn_shape in, nn_shape *out, char *why, size_t len) {
  if (in.rank != 1) {
    char s[64];
    nn_shape_format(in, s, sizeof s);
    snprintf(why, len, "dense needs a flat input but gets %s: add 'flatten' before it", s);
    return -1;
  }
  *out = (nn_shape){1, c->dense.units, 1, 1};
  return 0;
}

static void declare(nn_layer *L) {
  L->nparam = L->cfg.dense.bias ? 2 : 1;
  L->param[0] = (nn_tensor_decl){"weight", 2, {L->out.c, L->in.c}, (size_t)L->out.c * L->in.c, 0, 1};
  L->param[1] = (nn_tensor_decl){"bias", 1, {L->out.c}, (size_t)L->out.c, 0, 1};
}

static size_t scratch(const nn_layer *L, int n) {
  (void)L, (void)n;
  return 0;
}

static float *bias_of(const nn_layer *L, float *block) {
  return L->cfg.dense.bias ? nn_param_ptr(L, block, 1) : NULL;
}

static void init(nn_layer *L, nn_init init, nn_rng *rng) {
  nn_layer_init_weights(L->p, L->param[0].count, bias_of(L, L->p), L->param[1].count, L->in.c, L->out.c,
                        init, rng);
}


static nn_status forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)mode, (void)err;
  nn_dense_forward(x, L->p, bias_of(L, L->p), y, n, L->in.c, L->out.c);
  return NN_OK;
}

static void forward_epi(nn_layer *L, const nn_epilogue *e, const float *x, float *z, int n) {
  nn_epilogue own = *e;
  own.bias = bias_of(L, L->p);
  nn_dense_forward_epi(x, L->p, &own, z, n, L->in.c, L->out.c);
}

static void backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)y, (void)mode;
  nn_dense_backward(x, L->p, dy, dx, L->g, bias_of(L, L->g), n, L->in.c, L->out.c);
}

static void describe(const nn_layer *L, char *buf, size_t len) {
  snprintf(buf, len, "units=%d bias=%d", L->cfg.dense.units, L->cfg.dense.bias);
}

const nn_layer_ops nn_dense_ops = {
    .name = "dense",
    .keys = keys,
    .defaults = defaults,
    .finalize = NULL,
    .shape = shape,
    .declare = declare,
    .scratch = scratch,
    .init = init,
    .forward = forward,
    .forward_epi = forward_epi,
    .backward = backward,
    .describe = describe,
};
