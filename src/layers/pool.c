/* Pooling: maxpool2d and avgpool2d (window `size`, step `stride`, default stride = size,
 * no padding, floor) and global_avgpool (CxHxW -> C). Flatten is in flatten.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

static const nn_key pool_keys[] = {
    {"size", NN_KEY_INT, offsetof(nn_layer_cfg, pool.size), 1, 1024, 0},
    {"stride", NN_KEY_INT, offsetof(nn_layer_cfg, pool.stride), 0, 1024, 0},
    {0},
};

static void pool_defaults(nn_layer_cfg *c) { c->pool = (nn_pool_cfg){.size = 2, .stride = 0}; }

static nn_status pool_finalize(nn_layer_cfg *c, unsigned given, nn_error *err) {
  (void)given, (void)err;
  if (c->pool.stride == 0) c->pool.stride = c->pool.size;
  return NN_OK;
}

/* The kernel geometry for a batch of n; returns nn_pool_geom_init's status. */
static int pool_geom(const nn_layer_cfg *c, nn_shape in, int n, nn_pool_geom *g) {
  *g = (nn_pool_geom){.n = n, .c = in.c, .h = in.h, .w = in.w, .size = c->pool.size, .stride = c->pool.stride};
  return nn_pool_geom_init(g);
}

static nn_pool_geom geom(const nn_layer *L, int n) {
  nn_pool_geom g;
  pool_geom(&L->cfg, L->in, n, &g);
  return g;
}

static int pool_shape(const nn_layer_cfg *c, nn_shape in, nn_shape *out, char *why, size_t len) {
  char s[64];
  nn_shape_format(in, s, sizeof s);
  if (in.rank != 3) {
    snprintf(why, len, "pooling needs a CxHxW input but gets %s", s);
    return -1;
  }
  nn_pool_geom g;
  if (pool_geom(c, in, 1, &g) != 0) {
    snprintf(why, len, "input %s is smaller than the %dx%d window", s, c->pool.size, c->pool.size);
    return -1;
  }
  *out = (nn_shape){3, in.c, g.oh, g.ow};
  return 0;
}

static void pool_describe(const nn_layer *L, char *buf, size_t len) {
  snprintf(buf, len, "size=%d stride=%d", L->cfg.pool.size, L->cfg.pool.stride);
}

/* ---- maxpool2d ----------------------------------------------------------------------- */
/* scratch: the argmax of every output (int32 slots), written by the forward unless the model
 * runs it as nn_maxpool2d_forward_values (when no backward of its own follows) */
static size_t max_scratch(const nn_layer *L, int n) { return (size_t)n * nn_shape_size(L->out); }

static nn_status max_forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)mode, (void)err;
  nn_pool_geom g = geom(L, n);
  nn_maxpool2d_forward(&g, x, y, (int32_t *)(void *)L->scratch);
  return NN_OK;
}

void nn_maxpool2d_forward_values(nn_layer *L, const float *x, float *y, int n) {
  nn_pool_geom g = geom(L, n);
  nn_maxpool2d_forward(&g, x, y, NULL);
}

static void max_backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)x, (void)y, (void)mode;
  if (!dx) return;
  nn_pool_geom g = geom(L, n);
  nn_maxpool2d_backward(&g, dy, (const int32_t *)(const void *)L->scratch, dx);
}

const nn_layer_ops nn_maxpool2d_ops = {
    .name = "maxpool2d",
    .keys = pool_keys,
    .defaults = pool_defaults,
    .finalize = pool_finalize,
    .shape = pool_shape,
    .declare = nn_layer_no_params,
    .scratch = max_scratch,
    .init = nn_layer_no_init,
    .forward = max_forward,
    .backward = max_backward,
    .describe = pool_describe,
};

/* ---- avgpool2d ----------------------------------------------------------------------- */
static nn_status avg_forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)mode, (void)err;
  nn_pool_geom g = geom(L, n);
  nn_avgpool2d_forward(&g, x, y);
  return NN_OK;
}

static void avg_backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)x, (void)y, (void)mode;
  if (!dx) return;
  nn_pool_geom g = geom(L, n);
  nn_avgpool2d_backward(&g, dy, dx);
}

const nn_layer_ops nn_avgpool2d_ops = {
    .name = "avgpool2d",
    .keys = pool_keys,
    .defaults = pool_defaults,
    .finalize = pool_finalize,
    .shape = pool_shape,
    .declare = nn_layer_no_params,
    .scratch = nn_layer_no_scratch,
    .init = nn_layer_no_init,
    .forward = avg_forward,
    .backward = avg_backward,
    .describe = pool_describe,
};

/* ---- global_avgpool: CxHxW -> C --------------------------------------------------------- */

static int gap_shape(const nn_layer_cfg *c, nn_shape in, nn_shape *out, char *why, size_t len) {
  (void)c;
  if (in.rank != 3) {
    char s[64];
    nn_shape_format(in, s, sizeof s);
    snprintf(why, len, "global_avgpool needs a CxHxW input but gets %s", s);
    return -1;
  }
  *out = (nn_shape){1, in.c, 1, 1};
  return 0;
}

static nn_status gap_forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)mode, (void)err;
  nn_global_avgpool_forward(x, y, n, L->in.c, L->in.h * L->in.w);
  return NN_OK;
}

static void gap_backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)x, (void)y, (void)mode;
  if (dx) nn_global_avgpool_backward(dy, dx, n, L->in.c, L->in.h * L->in.w);
}

const nn_layer_ops nn_global_avgpool_ops = {
    .name = "global_avgpool",
    .keys = nn_no_keys,
    .defaults = nn_layer_no_defaults,
    .finalize = NULL,
    .shape = gap_shape,
    .declare = nn_layer_no_params,
    .scratch = nn_layer_no_scratch,
    .init = nn_layer_no_init,
    .forward = gap_forward,
    .backward = gap_backward,
    .describe = nn_layer_no_detail,
};
