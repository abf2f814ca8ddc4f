/* Layer kinds: a small common header (nn_layer) plus a per-kind config, dispatched through
 * a const table indexed by nn_layer_kind (ARCHITECTURE.md §3). Each kind lives in its own file
 * src/layers/<kind>.c with its config keys, shape rule, parameter/state declarations,
 * forward and backward side by side. Layers call only kernels/ and base/. */
#ifndef NN_LAYERS_LAYER_H
#define NN_LAYERS_LAYER_H
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "kernels/kernels.h"
#include "normnet.h"

/* nn_layer_kind (one per spec keyword) is public: include/normnet.h. */

/* Activation shape of one sample: rank 1 = (c) features, rank 3 = (c, h, w). */
typedef struct {
  int rank;
  int c, h, w;
} nn_shape;

static inline size_t nn_shape_size(nn_shape s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }
/* "6x24x24" or "120" */
void nn_shape_format(nn_shape s, char *buf, size_t len);

/* ---- per-kind configs -------------------------------------------------------------- */
typedef struct {
  int units;
  int bias;
} nn_dense_cfg;

typedef struct {
  int filters, kernel, stride, pad;
  int bias;
} nn_conv2d_cfg;

typedef struct {
  int size, stride; /* stride 0 in the spec means "= size" and is resolved at parse time */
} nn_pool_cfg;

typedef enum { NN_BN_PYTORCH = 0,
               NN_BN_KERAS = 1 } nn_bn_convention;
#define NN_BN_CUMULATIVE (-1.0)

typedef struct {
  int convention;  /* nn_bn_convention: meaning of momentum, default eps, variance kind */
  double momentum; /* as written in that convention: PyTorch = weight of the new batch,
                               Keras = weight of the old value (0.99 == PyTorch 0.1);
                               NN_BN_CUMULATIVE (< 0) = 1/num_batches_tracked (PyTorch None) */
  double eps;
  int affine;              /* learnable gamma/beta */
  int track_running_stats; /* off: batch statistics in eval too */
  int use_global_stats;    /* frozen: running statistics in training too, not updated */
  int freeze_affine;       /* frozen: gamma/beta not trained */
  int center, scale;       /* 0: beta stays 0 / gamma stays 1, never trained (Keras's center/scale) */
} nn_bn_cfg;

typedef struct {
  double rate; /* probability of zeroing a value in training */
} nn_dropout_cfg;

/* groupnorm, layernorm, instancenorm (one kernel, ARCHITECTURE.md §4) */
typedef struct {
  double eps;
  double momentum; /* instancenorm: weight of the new batch in the running average */
  int groups;      /* groupnorm only */
  int affine;
  int track_running_stats; /* instancenorm only */
} nn_groupnorm_cfg;

typedef union {
  nn_dropout_cfg dropout;
  nn_groupnorm_cfg gn;
  nn_dense_cfg dense;
  nn_conv2d_cfg conv;
  nn_pool_cfg pool;
  nn_bn_cfg bn;
} nn_layer_cfg;

/* One line of a model spec. */
typedef struct {
  nn_layer_kind kind;
  int line;
  nn_layer_cfg cfg;
} nn_layer_spec;

/* ---- spec keys: a table per kind drives both parsing and printing ------------------- */
typedef enum { NN_KEY_INT,
               NN_KEY_BOOL,
               NN_KEY_DOUBLE,
               NN_KEY_MOMENTUM,
               NN_KEY_CONVENTION } nn_key_type;
typedef struct {
  const char *name;
  nn_key_type type;
  size_t offset;   /* into nn_layer_cfg */
  double min, max; /* accepted range for numbers */
  int required;
} nn_key;

/* ---- a built layer ------------------------------------------------------------------ */
typedef struct {
  const char *suffix; /* "weight", "bias", "running_mean", "running_var" */
  int ndim;
  int dims[4];
  size_t count;
  size_t offset; /* from the layer's first param (or state) value; set by the model */
  int trainable; /* 0 for frozen gamma/beta */
} nn_tensor_decl;

typedef struct nn_layer nn_layer;
struct nn_layer {
  nn_layer_kind kind;
  int line;
  int index; /* position in the equivalent nn.Sequential: the state_dict prefix */
  nn_layer_cfg cfg;
  nn_shape in, out;
  int nparam;
  nn_tensor_decl param[2];
  int nstate;
  nn_tensor_decl state[2];
  int has_batches_tracked;
  int tensor_first; /* the model's index (state_dict order) of its first tensor: set by the model */
  int64_t batches_tracked;
  int skipped_updates; /* running-stat updates skipped for non-finite batch statistics */
  nn_rng rng;          /* per-layer random stream (dropout masks), seeded by init */
  /* bound by the model: */
  float *p, *g, *st;         /* this layer's params, grads, state (NULL if none) */
  float *scratch;            /* planned per batch size */
  const nn_comm *comm;       /* batchnorm: synchronize batch statistics over these ranks (SyncBN),
                             or NULL; set by nn_model_set_comm */
  double time_fwd, time_bwd; /* seconds, while the model's timing is on (nn_model_set_timing) */
};

typedef struct {
  const char *name; /* spec keyword */
  const nn_key *keys;
  void (*defaults)(nn_layer_cfg *cfg);
  /* Resolve dependent defaults after parsing; `given` has bit i set if keys[i] was written. */
  nn_status (*finalize)(nn_layer_cfg *cfg, unsigned given, nn_error *err);
  /* Output shape for an input shape; on failure writes the reason to why. */
  int (*shape)(const nn_layer_cfg *cfg, nn_shape in, nn_shape *out, char *why, size_t whylen);
  /* Fill param[]/state[] declarations (counts and dims; offsets are the model's). */
  void (*declare)(nn_layer *L);
  /* Scratch floats needed for a batch of n. */
  size_t (*scratch)(const nn_layer *L, int n);
  void (*init)(nn_layer *L, nn_init init, nn_rng *rng);
  nn_status (*forward)(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err);
  /* The forward (either mode) with the epilogue e of the layers after this one applied by the
   * kernel (kernels.h, nn_epilogue; e->bias is ignored, the layer sets its own): dense and
   * conv2d; NULL for kinds that have none (nn_layer_fuses). */
  void (*forward_epi)(nn_layer *L, const nn_epilogue *e, const float *x, float *z, int n);
  /* dx may be NULL (first layer). Parameter gradients accumulate into L->g. */
  void (*backward)(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n,
                   nn_mode mode);
  /* The backward (training) fused with the activation `act` after this layer, bit for bit the
   * activation's backward then this one's: z is the activation's output, dz the gradient
   * w.r.t. it, or (gap) the gradient of a global average pool's output over z, [N, C], whose
   * backward runs inside too (nn_layer_gap_fuses). conv2d; NULL for kinds that have none
   * (nn_layer_fuses). */
  void (*backward_act)(nn_layer *L, nn_act act, const float *x, const float *z, const float *dz, float *dx, int n,
                       int gap);
  /* Options and conventions in a few words, for `summary`. */
  void (*describe)(const nn_layer *L, char *buf, size_t len);
  /* 1 if the output is the input's bytes (a reshape: flatten): the model plans the output and
   * the input gradient as views of the input and the output gradient, so forward and
   * backward see equal pointers and copy nothing. */
  int view;
} nn_layer_ops;

/* Tensor i of a layer inside a params/grads (p, g) or state (st) block. */
static inline float *nn_param_ptr(const nn_layer *L, float *block, int i) {
  return block ? block + L->param[i].offset : NULL;
}
static inline float *nn_state_ptr(const nn_layer *L, int i) { return L->st + L->state[i].offset; }

extern const nn_layer_ops *const nn_layer_table[NN_LAYER__COUNT];

extern const nn_layer_ops nn_dense_ops, nn_conv2d_ops, nn_batchnorm_ops, nn_relu_ops, nn_sigmoid_ops,
    nn_tanh_ops, nn_maxpool2d_ops, nn_avgpool2d_ops, nn_global_avgpool_ops, nn_flatten_ops, nn_dropout_ops,
    nn_groupnorm_ops, nn_layernorm_ops, nn_instancenorm_ops;

/* BN + activation fusion (layers/batchnorm.c). nn_batchnorm_fuses: nonzero if layer L is a
 * batchnorm directly followed by `next`, a relu, sigmoid or tanh layer, that can run fused
 * in a forward of this mode: in training when it normalizes with (unsynchronized) batch
 * statistics; in eval always, except with synchronized batch statistics. Then the fused
 * calls replace both layers' forward (and, in training, backward) with bit-identical
 * results: z is next's output, dz the gradient w.r.t. it, and BN's own output is not stored.
 * The model fuses in eval only when it keeps no layer output (nn_model_forward_lean). */
int nn_batchnorm_fuses(const nn_layer *L, const nn_layer *next, nn_mode mode);
nn_status nn_batchnorm_forward_fused(nn_layer *L, const nn_layer *next, const float *x, float *z, int n,
                                     nn_mode mode, nn_error *err);
void nn_batchnorm_backward_fused(nn_layer *L, const nn_layer *next, const float *x, const float *z,
                                 const float *dz, float *dx, int n);
/* ... and, in training, with a 2x2 stride-2 max or average pool or a global average pool
 * after the activation (nn_batchnorm_pool_fuses: its planes have 100 to 1024 values): one
 * backward for the three layers from dp, the gradient of the pool's output, bit for bit the
 * pool's backward then nn_batchnorm_backward_fused, without the pool's input gradient (its
 * forward runs on its own). */
int nn_batchnorm_pool_fuses(const nn_layer *L, const nn_layer *next, const nn_layer *pool, nn_mode mode);
void nn_batchnorm_backward_fused_pool(nn_layer *L, const nn_layer *next, const nn_layer *pool, const float *x,
                                      const float *z, const float *dp, float *dx, int n);
/* A max pool's forward without its argmax (the values only), for a forward that no pool
 * backward of its own follows: an evaluation that keeps no layer output, or a pool whose
 * backward a batchnorm's takes over (that one finds each argmax again in the pool's input). */
void nn_maxpool2d_forward_values(nn_layer *L, const float *x, float *y, int n);

/* A batchnorm applied in the epilogue of the layer before it (nn_layer_fuses).
 * nn_batchnorm_is_affine: nonzero if L is a batchnorm that normalizes with its running
 * statistics in this mode, a per-channel affine map. nn_batchnorm_epilogue: sets e's mean,
 * scale and shift to that map (scale and shift in L's scratch, computed now from the current
 * parameters and statistics). */
int nn_batchnorm_is_affine(const nn_layer *L, nn_mode mode);
void nn_batchnorm_epilogue(nn_layer *L, nn_epilogue *e);

/* The activation a relu, sigmoid or tanh layer computes; NN_ACT_NONE for other kinds
 * (layers/activation.c). */
nn_act nn_layer_act(const nn_layer *L);

/* Dense and conv2d fused with the layers after them (layers/layer.c): their forward kernel
 * applies those layers to each piece of output it writes (forward_epi, kernels.h nn_epilogue),
 * bit for bit the layers' own forwards; only the last output is stored.
 * nn_layer_fuses: the number of layers after L (`next`, then `after`, NULL past the model's
 * end) that run inside L's forward in this mode; the model fuses in eval only in a forward
 * that keeps no layer output:
 *   - a relu, sigmoid or tanh `next`: 1 in eval; in training too for a kind whose backward
 *     runs fused with the activation (backward_act: conv2d);
 *   - in eval, a batchnorm `next` with fixed statistics (nn_batchnorm_is_affine): 1, or 2
 *     with an activation `after` (in training BN's backward needs its input).
 * nn_layer_epilogue: e = the epilogue of the `span` layers from `next` (no bias). */
int nn_layer_fuses(const nn_layer *L, const nn_layer *next, const nn_layer *after, nn_mode mode);
/* Nonzero if, in a training step of this mode, L's backward fused with its activation `next`
 * also runs the backward of `pool`, a global average pool after it (backward_act's gap): each
 * plane's gradient is formed where the kernel forms dz * act'(z), and never written. */
int nn_layer_gap_fuses(const nn_layer *L, const nn_layer *next, const nn_layer *pool, nn_mode mode);
void nn_layer_epilogue(nn_layer *next, int span, nn_epilogue *e);

/* Shared hooks for kinds without keys, parameters, scratch or options. */
extern const nn_key nn_no_keys[];
void nn_layer_no_defaults(nn_layer_cfg *cfg);
void nn_layer_no_params(nn_layer *L);
size_t nn_layer_no_scratch(const nn_layer *L, int n);
void nn_layer_no_init(nn_layer *L, nn_init init, nn_rng *rng);
void nn_layer_no_detail(const nn_layer *L, char *buf, size_t len);
int nn_layer_same_shape(const nn_layer_cfg *cfg, nn_shape in, nn_shape *out, char *why, size_t whylen);

/* Look a kind up by spec keyword; returns -1 if unknown. */
int nn_layer_kind_find(const char *name);
/* "layer 3 (batchnorm, line 7)" */
void nn_layer_name(const nn_layer *L, char *buf, size_t len);
/* Weight init shared by dense and conv: PyTorch default kaiming-uniform(a=sqrt 5) with
 * bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), or Xavier-uniform with zero bias. */
void nn_layer_init_weights(float *w, size_t wcount, float *b, size_t bcount, int fan_in, int fan_out,
                           nn_init init, nn_rng *rng);

#endif
