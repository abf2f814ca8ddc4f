/* dropout: PyTorch nn.Dropout(p=rate), any input shape.
 *
 * Train: each value is zeroed with probability `rate` and survivors are scaled by
 * 1/(1-rate) (inverted dropout), so eval needs no rescaling. Eval: identity.
 * Backward multiplies dy by the same mask (0 or 1/(1-rate)) the forward used.
 *
 * The mask is kept in the layer's scratch (n * size floats). Its random bits come from the
 * layer's own stream L->rng, seeded in init from one draw of the model's init RNG, so a run
 * is reproducible from the init seed and independent of the data-shuffling stream. A model
 * that was never initialised (e.g. loaded from a checkpoint) seeds the stream from its layer
 * index on the first training forward.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/rng.h"
#include "layers/layer.h"

static const nn_key keys[] = {
    {"rate", NN_KEY_DOUBLE, offsetof(nn_layer_cfg, dropout.rate), 0, 1, 0},
    {0},
};

static double get_rate(const nn_layer_cfg *c) { return c->dropout.rate; }

static void defaults(nn_layer_cfg *c) { c->dropout = (nn_dropout_cfg){.rate = 0.5}; /* PyTorch's default p */ }

static nn_status finalize(nn_layer_cfg *c, unsigned given, nn_error *err) {
  (void)given;
  double r = get_rate(c);
  if (!(r >= 0.0 && r < 1.0))
    return nn_err_set(err, NN_ERR_SPEC, "rate must be in [0, 1) (the probability of zeroing a value), got %g", r);
  return NN_OK;
}

/* scratch: the mask of the last training forward, 0 or 1/(1-rate) per value */
static size_t scratch(const nn_layer *L, int n) { return (size_t)n * nn_shape_size(L->in); }

static void init(nn_layer *L, nn_init init, nn_rng *rng) {
  (void)init;
  nn_rng_seed(&L->rng, nn_rng_next(rng));
}

static int rng_unseeded(const nn_rng *r) { return !(r->s[0] | r->s[1] | r->s[2] | r->s[3]); }

static nn_status forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  (void)err;
  const size_t count = (size_t)n * nn_shape_size(L->in);
  const double rate = get_rate(&L->cfg);
  if (mode != NN_MODE_TRAIN || rate == 0.0) {
    if (y != x) memcpy(y, x, count * sizeof *y);
    return NN_OK;
  }
  if (rng_unseeded(&L->rng)) nn_rng_seed(&L->rng, 0x9E3779B97F4A7C15ull ^ (uint64_t)L->index);
  const float scale = (float)(1.0 / (1.0 - rate));
  float *mask = L->scratch;
  /* Keep a value when a 24-bit uniform u in [0, 1) is >= rate: P(drop) = ceil(rate*2^24)/2^24. */
  const float thr = (float)rate;
  for (size_t i = 0; i < count; i++) {
    mask[i] = nn_rng_uniform(&L->rng) < thr ? 0.0f : scale;
    y[i] = x[i] * mask[i];
  }
  return NN_OK;
}

static void backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)x, (void)y;
  if (!dx) return;
  const size_t count = (size_t)n * nn_shape_size(L->in);
  if (mode != NN_MODE_TRAIN || get_rate(&L->cfg) == 0.0) {
    if (dx != dy) memcpy(dx, dy, count * sizeof *dx);
    return;
  }
  const float *mask = L->scratch;
  for (size_t i = 0; i < count; i++) dx[i] = dy[i] * mask[i];
}

static void describe(const nn_layer *L, char *buf, size_t len) { snprintf(buf, len, "rate=%g", get_rate(&L->cfg)); }

const nn_layer_ops nn_dropout_ops = {
    .name = "dropout",
    .keys = keys,
    .defaults = defaults,
    .finalize = finalize,
    .shape = nn_layer_same_shape,
    .declare = nn_layer_no_params,
    .scratch = scratch,
    .init = init,
    .forward = forward,
    .backward = backward,
    .describe = describe,
};
