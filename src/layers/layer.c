/* The layer-kind table and helpers shared by every kind. */
#include "layers/layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/rng.h"

const nn_layer_ops *const nn_layer_table[NN_LAYER__COUNT] = {
    [NN_LAYER_DENSE] = &nn_dense_ops,
    [NN_LAYER_CONV2D] = &nn_conv2d_ops,
    [NN_LAYER_BATCHNORM] = &nn_batchnorm_ops,
    [NN_LAYER_RELU] = &nn_relu_ops,
    [NN_LAYER_SIGMOID] = &nn_sigmoid_ops,
    [NN_LAYER_TANH] = &nn_tanh_ops,
    [NN_LAYER_MAXPOOL2D] = &nn_maxpool2d_ops,
    [NN_LAYER_AVGPOOL2D] = &nn_avgpool2d_ops,
    [NN_LAYER_GLOBAL_AVGPOOL] = &nn_global_avgpool_ops,
    [NN_LAYER_FLATTEN] = &nn_flatten_ops,
    [NN_LAYER_DROPOUT] = &nn_dropout_ops,
    [NN_LAYER_GROUPNORM] = &nn_groupnorm_ops,
    [NN_LAYER_LAYERNORM] = &nn_layernorm_ops,
    [NN_LAYER_INSTANCENORM] = &nn_instancenorm_ops,
};
/* Fails when a kind is added to nn_layer_kind: give it its entry above, then bump the count
 * (the table's size is NN_LAYER__COUNT, so comparing the two sizes could never fail). */
_Static_assert(NN_LAYER__COUNT == 14, "nn_layer_kind changed: update nn_layer_table and this count");

/* Switches without a default: -Wswitch names a new kind that is missing here. */
int nn_layer_kind_is_norm(nn_layer_kind kind) {
  switch (kind) {
    case NN_LAYER_BATCHNORM:
    case NN_LAYER_GROUPNORM:
    case NN_LAYER_LAYERNORM:
    case NN_LAYER_INSTANCENORM: return 1;
    case NN_LAYER_DENSE:
    case NN_LAYER_CONV2D:
    case NN_LAYER_RELU:
    case NN_LAYER_SIGMOID:
    case NN_LAYER_TANH:
    case NN_LAYER_MAXPOOL2D:
    case NN_LAYER_AVGPOOL2D:
    case NN_LAYER_GLOBAL_AVGPOOL:
    case NN_LAYER_FLATTEN:
    case NN_LAYER_DROPOUT:
    case NN_LAYER__COUNT: return 0;
  }
  return 0;
}

int nn_layer_kind_is_activation(nn_layer_kind kind) {
  switch (kind) {
    case NN_LAYER_RELU:
    case NN_LAYER_SIGMOID:
    case NN_LAYER_TANH: return 1;
    case NN_LAYER_DENSE:
    case NN_LAYER_CONV2D:
    case NN_LAYER_BATCHNORM:
    case NN_LAYER_MAXPOOL2D:
    case NN_LAYER_AVGPOOL2D:
    case NN_LAYER_GLOBAL_AVGPOOL:
    case NN_LAYER_FLATTEN:
    case NN_LAYER_DROPOUT:
    case NN_LAYER_GROUPNORM:
    case NN_LAYER_LAYERNORM:
    case NN_LAYER_INSTANCENORM:
    case NN_LAYER__COUNT: return 0;
  }
  return 0;
}

int nn_layer_kind_find(const char *name) {
  for (int k = 0; k < NN_LAYER__COUNT; k++)
    if (strcmp(nn_layer_table[k]->name, name) == 0) return k;
  return -1;
}

void nn_layer_name(const nn_layer *L, char *buf, size_t len) {
  snprintf(buf, len, "layer %d (%s, line %d)", L->index, nn_layer_table[L->kind]->name, L->line);
}

void nn_shape_format(nn_shape s, char *buf, size_t len) {
  if (s.rank == 1)
    snprintf(buf, len, "%d", s.c);
  else
    snprintf(buf, len, "%dx%dx%d", s.c, s.h, s.w);
}

void nn_layer_init_weights(float *w, size_t wcount, float *b, size_t bcount, int fan_in, int fan_out,
                           nn_init init, nn_rng *rng) {
  if (init == NN_INIT_XAVIER_UNIFORM) {
    double bound = sqrt(6.0 / (double)(fan_in + fan_out));
    for (size_t i = 0; i < wcount; i++) w[i] = (float)((2.0 * nn_rng_uniform(rng) - 1.0) * bound);
    if (b) memset(b, 0, bcount * sizeof *b);
    return;
  }
  /* PyTorch: kaiming_uniform_(a=sqrt(5)) gives bound = gain*sqrt(3/fan_in) with
   * gain = sqrt(2/(1+5)), i.e. 1/sqrt(fan_in); the bias uses the same bound. */
  double bound = 1.0 / sqrt((double)fan_in);
  for (size_t i = 0; i < wcount; i++) w[i] = (float)((2.0 * nn_rng_uniform(rng) - 1.0) * bound);
  /* Draw the bias values even for a layer without bias, so that a model and its twin
   * without normalization (where such a layer regains its bias) consume the stream alike
   * and every layer they share starts from the same weights. */
  for (size_t i = 0; i < bcount; i++) {
    float v = (float)((2.0 * nn_rng_uniform(rng) - 1.0) * bound);
    if (b) b[i] = v;
  }
}

const nn_key nn_no_keys[] = {{0}};
void nn_layer_no_defaults(nn_layer_cfg *cfg) { (void)cfg; }
void nn_layer_no_params(nn_layer *L) { L->nparam = 0; }
size_t nn_layer_no_scratch(const nn_layer *L, int n) {
  (void)L, (void)n;
  return 0;
}
void nn_layer_no_init(nn_layer *L, nn_init init, nn_rng *rng) { (void)L, (void)init, (void)rng; }
void nn_layer_no_detail(const nn_layer *L, char *buf, size_t len) {
  (void)L;
  if (len) buf[0] = 0;
}
int nn_layer_same_shape(const nn_layer_cfg *cfg, nn_shape in, nn_shape *out, char *why, size_t whylen) {
  (void)cfg, (void)why, (void)whylen;
  *out = in;
  return 0;
}

int nn_layer_fuses(const nn_layer *L, const nn_layer *next, const nn_layer *after, nn_mode mode) {
  if (!nn_layer_table[L->kind]->forward_epi) return 0;
  if (nn_layer_act(next) != NN_ACT_NONE) return mode == NN_MODE_EVAL || nn_layer_table[L->kind]->backward_act;
  if (mode != NN_MODE_EVAL || !nn_batchnorm_is_affine(next, mode)) return 0;
  return after && nn_layer_act(after) != NN_ACT_NONE ? 2 : 1;
}

int nn_layer_gap_fuses(const nn_layer *L, const nn_layer *next, const nn_layer *pool, nn_mode mode) {
  return mode == NN_MODE_TRAIN && nn_layer_table[L->kind]->backward_act && nn_layer_act(next) != NN_ACT_NONE &&
         pool->kind == NN_LAYER_GLOBAL_AVGPOOL;
}

void nn_layer_epilogue(nn_layer *next, int span, nn_epilogue *e) {
  *e = (nn_epilogue){.act = NN_ACT_NONE};
  const int bn = next->kind == NN_LAYER_BATCHNORM;
  if (bn) nn_batchnorm_epilogue(next, e);
  if (span > bn) e->act = nn_layer_act(&next[bn]);
}
