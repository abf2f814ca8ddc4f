/* conv2d: y[N,F,OH,OW] = conv(x[N,C,H,W], W[F,C,K,K]) + b, zero padding — PyTorch nn.Conv2d. */
#include <stddef.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

static const nn_key keys[] = {
    {"filters", NN_KEY_INT, offsetof(nn_layer_cfg, conv.filters), 1, 1 << 20, 1},
    {"kernel", NN_KEY_INT, offsetof(nn_layer_cfg, conv.kernel), 1, 1024, 1},
    {"stride", NN_KEY_INT, offsetof(nn_layer_cfg, conv.stride), 1, 1024, 0},
    {"pad", NN_KEY_INT, offsetof(nn_layer_cfg, conv.pad), 0, 1024, 0},
    {"bias", NN_KEY_BOOL, offsetof(nn_layer_cfg, conv.bias), 0, 1, 0},
    {0},
};

static void defaults(nn_layer_cfg *c) { c->conv = (nn_conv2d_cfg){.filters = 0, .kernel = 0, .stride = 1, .pad = 0, .bias = 1}; }

/* The kernel geometry for a batch of n; returns nn_conv_geom_init's status. */
static int geom(const nn_layer_cfg *c, nn_shape in, int n, nn_conv_geom *g) {
  *g = (nn_conv_geom){.n = n, .c = in.c, .h = in.h, .w = in.w, .oc = c->conv.filters, .kh = c->conv.kernel, .kw = c->conv.kernel, .stride = c->conv.stride, .pad = c->conv.pad};
  return nn_conv_geom_init(g);
}

static int shape(const nn_layer_cfg *c, nn_shape in, nn_shape *out, char *why, size_t len) {
  char s[64];
  nn_shape_format(in, s, sizeof s);
  if (in.rank != 3) {
    snprintf(why, len, "conv2d needs a CxHxW input but gets %s", s);
    return -1;
  }
  nn_conv_geom g;
  if (geom(c, in, 1, &g) != 0) {
    snprintf(why, len, "input %s (padded by %d) is smaller than the %dx%d kernel", s, c->conv.pad, c->conv.kernel,
             c->conv.kernel);
    return -1;
  }
  *out = (nn_shape){3, c->conv.filters, g.oh, g.ow};
  return 0;
}

static void declare(nn_layer *L) {
  const nn_conv2d_cfg *c = &L->cfg.conv;
  L->nparam = c->bias ? 2 : 1;
  L->param[0] = (nn_tensor_decl){"weight", 4, {c->filters, L->in.c, c->kernel, c->kernel}, (size_t)c->filters * L->in.c * c->kernel * c->kernel, 0, 1};
  L->param[1] = (nn_tensor_decl){"bias", 1, {c->filters}, (size_t)c->filters, 0, 1};
}

static size_t scratch(const nn_layer *L, int n) {
  nn_conv_geom g;
  geom(&L->cfg, L->in, n, &g);
  return nn_conv2d_workspace(&g);
}

static float *bias_of(const nn_layer *L, float *block) { return L->cfg.conv.bias ? nn_param_ptr(L, block, 1) : NULL; }

static void init(nn_layer *L, nn_init init, nn_rng *rng) {
  int k2 = L->cfg.conv.kernel * L->cfg.conv.kernel;
  nn_layer_init_weights(L->p, L->param[0].count, bias_of(L, L->p), L->param[1].count, L->in.c * k2,
                        L->cfg.conv.filters * k2, init, rng);
}

static nn_status forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)mode, (void)err;
  nn_conv_geom g;
  geom(&L->cfg, L->in, n, &g);
  nn_conv2d_forward(&g, x, L->p, bias_of(L, L->p), y, L->scratch);
  return NN_OK;
}

static void forward_epi(nn_layer *L, const nn_epilogue *e, const float *x, float *z, int n) {
  nn_conv_geom g;
  geom(&L->cfg, L->in, n, &g);
  nn_epilogue own = *e;
  own.bias = bias_of(L, L->p);
  nn_conv2d_forward_epi(&g, &own, x, L->p, z, L->scratch);
}

static void backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)y, (void)mode;
  nn_conv_geom g;
  geom(&L->cfg, L->in, n, &g);
  nn_conv2d_backward(&g, x, L->p, dy, dx, L->g, bias_of(L, L->g), L->scratch);
}

static void backward_act(nn_layer *L, nn_act act, const float *x, const float *z, const float *dz, float *dx,
                         int n, int gap) {
  nn_conv_geom g;
  geom(&L->cfg, L->in, n, &g);
  g.gap_dz = gap;
  nn_conv2d_backward_act(&g, act, x, L->p, z, dz, dx, L->g, bias_of(L, L->g), L->scratch);
}

/* Options, then the kernels' algorithm for the forward, dw/db and dx (chosen by shape, the
 * same for every batch size; a model's first layer computes no dx: "-"). */
static void describe(const nn_layer *L, char *buf, size_t len) {
  const nn_conv2d_cfg *c = &L->cfg.conv;
  nn_conv_geom g;
  geom(&L->cfg, L->in, 1, &g);
  snprintf(buf, len, "filters=%d kernel=%d stride=%d pad=%d bias=%d fwd=%s dw=%s dx=%s", c->filters, c->kernel,
           c->stride, c->pad, c->bias, nn_conv2d_algo_name(nn_conv2d_algo(&g)),
           nn_conv2d_algo_name(nn_conv2d_algo_params(&g)), L->index ? nn_conv2d_algo_name(nn_conv2d_algo_data(&g)) : "-");
}

const nn_layer_ops nn_conv2d_ops = {
    .name = "conv2d",
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
    .backward_act = backward_act,
    .describe = describe,
};
