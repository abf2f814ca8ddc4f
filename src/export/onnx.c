/* ONNX export (ARCHITECTURE.md §10): a ModelProto written with our protobuf encoder.
 *
 *   input  "input"  float32 [N, C, H, W] (or [N, F] for a model whose spec input is flat),
 *                   raw pixels scaled to [0, 1]
 *   Sub/Div         the recorded input transform (x - mean) / std, left out when {0, 1}
 *   one or a few standard ops per layer (opset 17):
 *     dense         Gemm(transB=1) with "i.weight" [out, in], "i.bias"
 *     conv2d        Conv(kernel_shape, strides, pads)
 *     batchnorm     BatchNormalization(epsilon) with the running statistics (inference)
 *     relu/sigmoid/tanh, maxpool2d/avgpool2d (MaxPool/AveragePool, no padding, floor)
 *     global_avgpool GlobalAveragePool + Flatten;  flatten  Flatten(axis=1)
 *     dropout       nothing (identity in inference)
 *     layernorm     LayerNormalization(axis=1) over the whole sample
 *     groupnorm     Reshape [N, G, -1], InstanceNormalization, Reshape back, Mul/Add affine
 *     instancenorm  InstanceNormalization, or BatchNormalization when it tracks statistics
 *   output "logits" float32 [N, classes]
 * Initializers keep the state_dict names ("0.weight", "1.running_var"); constants made by the
 * exporter are named after their layer ("3.ones"). The file's metadata_props hold the spec
 * text and the input transform. Bytes depend only on the model: the same model gives the
 * same file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomic_file.h"
#include "base/error.h"
#include "export/export.h"
#include "export/protobuf.h"
#include "model/model.h"

enum { ONNX_FLOAT = 1,
       ONNX_INT64 = 7 };
enum { ATTR_FLOAT = 1,
       ATTR_INT = 2,
       ATTR_INTS = 7 };
#define ONNX_IR_VERSION 8
#define ONNX_OPSET 17
#define NAME_LEN 48

typedef struct {
  char op[32];
  char in[5][NAME_LEN];
  int nin;
  char out[NAME_LEN];
  nn_pb attrs; /* serialized AttributeProto fields (field 5 of NodeProto) */
} onode;

typedef struct {
  onode *nodes;
  int n, cap;
  nn_pb inits; /* serialized TensorProto fields (field 5 of GraphProto) */
  int tmp;
  char cur[NAME_LEN]; /* the tensor the next node reads */
  int oom;
} octx;

static onode *add_node(octx *c, const char *op) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 32;
    onode *p = realloc(c->nodes, (size_t)cap * sizeof *p);
    if (!p) {
      c->oom = 1;
      return NULL;
    }
    c->nodes = p;
    c->cap = cap;
  }
  onode *nd = &c->nodes[c->n++];
  memset(nd, 0, sizeof *nd);
  snprintf(nd->op, sizeof nd->op, "%s", op);
  return nd;
}

/* A node reading c->cur (plus extra inputs), writing a fresh tensor that becomes c->cur. */
static onode *chain(octx *c, const char *op, const char *in1, const char *in2, const char *in3, const char *in4) {
  onode *nd = add_node(c, op);
  if (!nd) return NULL;
  const char *ins[5] = {c->cur, in1, in2, in3, in4};
  for (int i = 0; i < 5 && ins[i]; i++) snprintf(nd->in[nd->nin++], NAME_LEN, "%s", ins[i]);
  snprintf(nd->out, NAME_LEN, "t%d", ++c->tmp);
  snprintf(c->cur, NAME_LEN, "%s", nd->out);
  return nd;
}

static void attr_head(nn_pb *a, const char *name) { nn_pb_string(a, 1, name); }

static void attr_int(onode *nd, const char *name, int64_t v) {
  if (!nd) return;
  nn_pb a = {0};
  attr_head(&a, name);
  nn_pb_int64(&a, 3, v);
  nn_pb_varint(&a, 20, ATTR_INT);
  nn_pb_message(&nd->attrs, 5, &a);
  nn_pb_free(&a);
}

static void attr_ints2(onode *nd, const char *name, int64_t v, int count) {
  if (!nd) return;
  nn_pb a = {0};
  attr_head(&a, name);
  for (int i = 0; i < count; i++) nn_pb_int64(&a, 8, v);
  nn_pb_varint(&a, 20, ATTR_INTS);
  nn_pb_message(&nd->attrs, 5, &a);
  nn_pb_free(&a);
}

static void attr_float(onode *nd, const char *name, float v) {
  if (!nd) return;
  nn_pb a = {0};
  attr_head(&a, name);
  nn_pb_float(&a, 2, v);
  nn_pb_varint(&a, 20, ATTR_FLOAT);
  nn_pb_message(&nd->attrs, 5, &a);
  nn_pb_free(&a);
}

/* An initializer: float data (or NULL with fill) or int64 data. */
static void init_tensor(octx *c, const char *name, const int *dims, int ndim, const float *data, float fill,
                        const int64_t *i64) {
  nn_pb t = {0};
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    nn_pb_int64(&t, 1, dims[i]);
    count *= (size_t)dims[i];
  }
  nn_pb_varint(&t, 2, i64 ? ONNX_INT64 : ONNX_FLOAT);
  nn_pb_string(&t, 8, name);
  nn_pb raw = {0};
  for (size_t i = 0; i < count; i++) {
    if (i64) nn_pb_raw_i64(&raw, i64[i]);
    else nn_pb_raw_f32(&raw, data ? data[i] : fill);
  }
  nn_pb_message(&t, 9, &raw);
  nn_pb_message(&c->inits, 5, &t);
  if (t.oom || raw.oom) c->oom = 1;
  nn_pb_free(&raw);
  nn_pb_free(&t);
}

static void init_f32(octx *c, const char *name, const int *dims, int ndim, const float *data) {
  init_tensor(c, name, dims, ndim, data, 0, NULL);
}

/* "<layer index>.<suffix>" */
static void tname(char *buf, const nn_layer *L, const char *suffix) { snprintf(buf, NAME_LEN, "%d.%s", L->index, suffix); }

/* Parameter/state i of L as an initializer under its state_dict name, with the given dims
 * (a reshape of the declared ones); returns the name in buf. */
static void init_param(octx *c, const nn_layer *L, const nn_tensor_decl *d, const float *data, const int *dims,
                       int ndim, char *buf) {
  tname(buf, L, d->suffix);
  init_f32(c, buf, dims ? dims : d->dims, dims ? ndim : d->ndim, data);
}

/* Scale and shift for a normalization: the layer's affine parameters, or ones/zeros of the
 * same shape. */
static void affine_inputs(octx *c, const nn_layer *L, int affine, const int *dims, int ndim, char *scale, char *shift) {
  if (affine) {
    init_param(c, L, &L->param[0], nn_param_ptr(L, L->p, 0), dims, ndim, scale);
    init_param(c, L, &L->param[1], nn_param_ptr(L, L->p, 1), dims, ndim, shift);
  } else {
    tname(scale, L, "ones");
    tname(shift, L, "zeros");
    init_tensor(c, scale, dims, ndim, NULL, 1.0f, NULL);
    init_tensor(c, shift, dims, ndim, NULL, 0.0f, NULL);
  }
}

/* BatchNormalization in inference mode from running statistics (batchnorm, tracked
 * instancenorm). */
static void batchnorm_node(octx *c, const nn_layer *L, int affine, double eps) {
  char scale[NAME_LEN], shift[NAME_LEN], mean[NAME_LEN], var[NAME_LEN];
  const int dims[1] = {L->in.c};
  affine_inputs(c, L, affine, dims, 1, scale, shift);
  init_param(c, L, &L->state[0], nn_state_ptr(L, 0), NULL, 0, mean);
  init_param(c, L, &L->state[1], nn_state_ptr(L, 1), NULL, 0, var);
  attr_float(chain(c, "BatchNormalization", scale, shift, mean, var), "epsilon", (float)eps);
}

static nn_status emit_layer(octx *c, const nn_layer *L, nn_error *err) {
  char w[NAME_LEN], b[NAME_LEN], name[64];
  const nn_layer_cfg *cfg = &L->cfg;
  onode *nd;
  switch (L->kind) {
    case NN_LAYER_DENSE:
      init_param(c, L, &L->param[0], nn_param_ptr(L, L->p, 0), NULL, 0, w);
      if (cfg->dense.bias) init_param(c, L, &L->param[1], nn_param_ptr(L, L->p, 1), NULL, 0, b);
      attr_int(chain(c, "Gemm", w, cfg->dense.bias ? b : NULL, NULL, NULL), "transB", 1);
      return NN_OK;
    case NN_LAYER_CONV2D:
      init_param(c, L, &L->param[0], nn_param_ptr(L, L->p, 0), NULL, 0, w);
      if (cfg->conv.bias) init_param(c, L, &L->param[1], nn_param_ptr(L, L->p, 1), NULL, 0, b);
      nd = chain(c, "Conv", w, cfg->conv.bias ? b : NULL, NULL, NULL);
      attr_ints2(nd, "kernel_shape", cfg->conv.kernel, 2);
      attr_ints2(nd, "pads", cfg->conv.pad, 4);
      attr_ints2(nd, "strides", cfg->conv.stride, 2);
      return NN_OK;
    case NN_LAYER_BATCHNORM:
      if (!cfg->bn.track_running_stats) {
        nn_layer_name(L, name, sizeof name);
        return nn_err_set(err, NN_ERR_ARG,
                          "%s: track_running_stats=0 normalizes with batch statistics at inference; "
                          "no exported inference graph can do that",
                          name);
      }
      batchnorm_node(c, L, cfg->bn.affine, cfg->bn.eps);
      return NN_OK;
    case NN_LAYER_RELU:
      chain(c, "Relu", NULL, NULL, NULL, NULL);
      return NN_OK;
    case NN_LAYER_SIGMOID:
      chain(c, "Sigmoid", NULL, NULL, NULL, NULL);
      return NN_OK;
    case NN_LAYER_TANH:
      chain(c, "Tanh", NULL, NULL, NULL, NULL);
      return NN_OK;
    case NN_LAYER_MAXPOOL2D:
    case NN_LAYER_AVGPOOL2D:
      nd = chain(c, L->kind == NN_LAYER_MAXPOOL2D ? "MaxPool" : "AveragePool", NULL, NULL, NULL, NULL);
      attr_ints2(nd, "kernel_shape", cfg->pool.size, 2);
      attr_ints2(nd, "strides", cfg->pool.stride, 2);
      return NN_OK;
    case NN_LAYER_GLOBAL_AVGPOOL:
      chain(c, "GlobalAveragePool", NULL, NULL, NULL, NULL);
      attr_int(chain(c, "Flatten", NULL, NULL, NULL, NULL), "axis", 1);
      return NN_OK;
    case NN_LAYER_FLATTEN:
      attr_int(chain(c, "Flatten", NULL, NULL, NULL, NULL), "axis", 1);
      return NN_OK;
    case NN_LAYER_DROPOUT:
      return NN_OK;
    case NN_LAYER_LAYERNORM: {
      int ndim = L->in.rank == 3 ? 3 : 1;
      const int dims[3] = {L->in.c, L->in.h, L->in.w};
      affine_inputs(c, L, cfg->gn.affine, dims, ndim, w, b);
      nd = chain(c, "LayerNormalization", w, b, NULL, NULL);
      attr_int(nd, "axis", 1);
      attr_float(nd, "epsilon", (float)cfg->gn.eps);
      return NN_OK;
    }
    case NN_LAYER_INSTANCENORM:
      if (cfg->gn.track_running_stats) {
        batchnorm_node(c, L, cfg->gn.affine, cfg->gn.eps);
        return NN_OK;
      }
      {
        const int dims[1] = {L->in.c};
        affine_inputs(c, L, cfg->gn.affine, dims, 1, w, b);
      }
      attr_float(chain(c, "InstanceNormalization", w, b, NULL, NULL), "epsilon", (float)cfg->gn.eps);
      return NN_OK;
    case NN_LAYER_GROUPNORM: {
      /* normalize each (sample, group) as one instance of a [N, G, -1] view */
      const int g = cfg->gn.groups, one[1] = {g}, three[1] = {3}, back_n[1] = {L->in.rank == 3 ? 4 : 2};
      const int64_t grouped[3] = {0, g, -1}, back[4] = {0, L->in.c, L->in.h, L->in.w};
      char shp[NAME_LEN], shp2[NAME_LEN], ones[NAME_LEN], zeros[NAME_LEN];
      tname(shp, L, "grouped_shape");
      tname(shp2, L, "shape");
      tname(ones, L, "group_ones");
      tname(zeros, L, "group_zeros");
      init_tensor(c, shp, three, 1, NULL, 0, grouped);
      init_tensor(c, shp2, back_n, 1, NULL, 0, back);
      init_tensor(c, ones, one, 1, NULL, 1.0f, NULL);
      init_tensor(c, zeros, one, 1, NULL, 0.0f, NULL);
      chain(c, "Reshape", shp, NULL, NULL, NULL);
      attr_float(chain(c, "InstanceNormalization", ones, zeros, NULL, NULL), "epsilon", (float)cfg->gn.eps);
      chain(c, "Reshape", shp2, NULL, NULL, NULL);
      if (cfg->gn.affine) {
        const int dims[3] = {L->in.c, 1, 1};
        int ndim = L->in.rank == 3 ? 3 : 1;
        init_param(c, L, &L->param[0], nn_param_ptr(L, L->p, 0), dims, ndim, w);
        init_param(c, L, &L->param[1], nn_param_ptr(L, L->p, 1), dims, ndim, b);
        chain(c, "Mul", w, NULL, NULL, NULL);
        chain(c, "Add", b, NULL, NULL, NULL);
      }
      return NN_OK;
    }
    case NN_LAYER__COUNT:
      break;
  }
  nn_layer_name(L, name, sizeof name);
  return nn_err_set(err, NN_ERR_ARG, "%s: no ONNX mapping for this layer kind", name);
}

/* ValueInfoProto: float32 tensor with a symbolic batch dimension "N". */
static void value_info(nn_pb *g, int field, const char *name, const int *dims, int ndim) {
  nn_pb shape = {0}, tensor = {0}, type = {0}, vi = {0}, dim = {0};
  nn_pb_string(&dim, 2, "N");
  nn_pb_message(&shape, 1, &dim);
  for (int i = 0; i < ndim; i++) {
    nn_pb_free(&dim);
    nn_pb_int64(&dim, 1, dims[i]);
    nn_pb_message(&shape, 1, &dim);
  }
  nn_pb_varint(&tensor, 1, ONNX_FLOAT);
  nn_pb_message(&tensor, 2, &shape);
  nn_pb_message(&type, 1, &tensor);
  nn_pb_string(&vi, 1, name);
  nn_pb_message(&vi, 2, &type);
  nn_pb_message(g, field, &vi);
  nn_pb_free(&dim), nn_pb_free(&shape), nn_pb_free(&tensor), nn_pb_free(&type), nn_pb_free(&vi);
}

static void meta_prop(nn_pb *m, const char *key, const char *value) {
  nn_pb e = {0};
  nn_pb_string(&e, 1, key);
  nn_pb_string(&e, 2, value);
  nn_pb_message(m, 14, &e);
  nn_pb_free(&e);
}

nn_status nn_export_onnx_bytes(const nn_model *m, nn_input_norm norm, unsigned char **out, size_t *len, nn_error *err) {
  *out = NULL;
  *len = 0;
  if (nn_input_norm_check(norm, err)) return nn_err_prefix(err, NN_ERR_ARG, "ONNX export: ");
  octx c = {0};
  snprintf(c.cur, sizeof c.cur, "input");
  nn_status st = NN_OK;
  if (norm.mean != 0.0f || norm.std != 1.0f) {
    const int one[1] = {1};
    init_f32(&c, "input_mean", one, 1, &norm.mean);
    init_f32(&c, "input_std", one, 1, &norm.std);
    chain(&c, "Sub", "input_mean", NULL, NULL, NULL);
    chain(&c, "Div", "input_std", NULL, NULL, NULL);
  }
  for (int i = 0; !st && i < m->nlayers; i++) st = emit_layer(&c, &m->layers[i], err);
  if (!st && c.n == 0) chain(&c, "Identity", NULL, NULL, NULL, NULL);
  if (!st && !c.oom) snprintf(c.nodes[c.n - 1].out, NAME_LEN, "logits");

  nn_pb graph = {0}, model = {0}, opset = {0};
  if (!st) {
    for (int i = 0; i < c.n; i++) {
      onode *nd = &c.nodes[i];
      nn_pb node = {0};
      for (int k = 0; k < nd->nin; k++) nn_pb_string(&node, 1, nd->in[k]);
      nn_pb_string(&node, 2, nd->out);
      char nname[64];
      snprintf(nname, sizeof nname, "%s_%d", nd->op, i);
      nn_pb_string(&node, 3, nname);
      nn_pb_string(&node, 4, nd->op);
      nn_pb_raw(&node, nd->attrs.buf, nd->attrs.len);
      if (nd->attrs.oom) node.oom = 1;
      nn_pb_message(&graph, 1, &node);
      nn_pb_free(&node);
    }
    nn_pb_string(&graph, 2, "normnet");
    nn_pb_raw(&graph, c.inits.buf, c.inits.len);
    const nn_layer *first = &m->layers[0];
    const int in_dims[3] = {first->in.c, first->in.h, first->in.w}, out_dims[1] = {nn_model_output_size(m)};
    value_info(&graph, 11, "input", in_dims, first->in.rank == 3 ? 3 : 1);
    value_info(&graph, 12, "logits", out_dims, 1);

    nn_pb_int64(&model, 1, ONNX_IR_VERSION);
    nn_pb_string(&model, 2, "normnet");
    nn_pb_string(&model, 3, nn_version());
    nn_pb_message(&model, 7, &graph);
    nn_pb_int64(&opset, 2, ONNX_OPSET);
    nn_pb_message(&model, 8, &opset);
    char *spec = nn_spec_to_text(m->spec), num[32];
    if (spec) meta_prop(&model, "normnet.spec", spec);
    else c.oom = 1;
    free(spec);
    snprintf(num, sizeof num, "%.9g", norm.mean);
    meta_prop(&model, "normnet.input_mean", num);
    snprintf(num, sizeof num, "%.9g", norm.std);
    meta_prop(&model, "normnet.input_std", num);
    if (c.oom || c.inits.oom || graph.oom || model.oom) st = nn_err_set(err, NN_ERR_NOMEM, "ONNX export: out of memory");
  }
  for (int i = 0; i < c.n; i++) nn_pb_free(&c.nodes[i].attrs);
  free(c.nodes);
  nn_pb_free(&c.inits);
  nn_pb_free(&graph);
  nn_pb_free(&opset);
  if (st) {
    nn_pb_free(&model);
    return st;
  }
  *out = model.buf;
  *len = model.len;
  return NN_OK;
}

nn_status nn_export_onnx(const nn_model *m, nn_input_norm norm, const char *path, nn_error *err) {
  if (!m || !path || !*path) return nn_err_set(err, NN_ERR_ARG, "nn_export_onnx: invalid arguments");
  unsigned char *buf;
  size_t len;
  nn_status st = nn_export_onnx_bytes(m, norm, &buf, &len, err);
  if (st) return nn_err_prefix(err, st, "%s: ", path);
  st = nn_file_write_atomic(path, buf, len, err);
  free(buf);
  return st;
}
