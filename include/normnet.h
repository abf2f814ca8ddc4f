/* normnet.h — the one public header of normnet: neural networks with Batch Normalization
 * (and its relatives) in C11.
 *
 * Worked example: train BN-LeNet on Fashion-MNIST for one epoch and print test accuracy
 * (scripts/check-install.sh compiles and runs it against an installed normnet).
 *
 *     #include <normnet.h>
 *     #include <stdio.h>
 *     #include <stdlib.h>
 *
 *     int main(int argc, char **argv) {
 *       nn_error err = {0};
 *       nn_dataset *train = NULL, *test = NULL;
 *       nn_spec *spec = NULL;
 *       nn_model *model = NULL;
 *       nn_optimizer *opt = NULL;
 *       nn_history *hist = NULL;
 *       const nn_preset *p = nn_preset_find("lenet");
 *       if (nn_dataset_load_idx_dir("/usr/share/datasets/fashion-mnist", "train", &train, &err) ||
 *           nn_dataset_load_idx_dir("/usr/share/datasets/fashion-mnist", "t10k", &test, &err) ||
 *           nn_spec_parse(p->spec, "lenet", &spec, &err) ||
 *           nn_model_create(spec, &model, &err)) {
 *         fprintf(stderr, "%s\n", err.msg);
 *         return 1;
 *       }
 *       nn_rng rng;
 *       nn_rng_seed(&rng, 42);
 *       nn_model_init(model, NN_INIT_DEFAULT, &rng);
 *       nn_opt_config oc = p->opt;                   // SGD lr 0.1, as in seed 004
 *       nn_fit_config fc = nn_fit_defaults();
 *       fc.epochs = 1;
 *       fc.batch_size = p->batch_size;
 *       fc.input_norm = p->input_norm;               // (x - 0.5) / 0.5
 *       fc.max_steps = argc > 1 ? atol(argv[1]) : 0; // optional: stop after N steps
 *       if (nn_optimizer_create(&oc, model, &opt, &err) ||
 *           nn_fit(model, opt, train, test, &fc, NULL, &hist, &err)) {
 *         fprintf(stderr, "%s\n", err.msg);
 *         return 1;
 *       }
 *       printf("test accuracy %.4f\n", nn_history_get(hist, 0)->test_acc);
 *       nn_history_free(hist); nn_optimizer_free(opt); nn_model_free(model);
 *       nn_spec_free(spec); nn_dataset_free(train); nn_dataset_free(test);
 *       return 0;
 *     }
 *
 * Rules of the API
 * - Every call that can fail on user input returns nn_status and, when `err` is not NULL,
 *   a one-line message naming the file, line, layer or value. NN_OK is 0.
 * - The library never exits and never prints; progress reaches you through callbacks.
 * - No hidden globals: random state is an nn_rng you own; train/eval mode is an argument.
 *   The thread count is per model (nn_model_set_threads); nn_set_threads is only the
 *   process-wide default for models that leave it to the library.
 * - Objects are opaque handles created by nn_*_create/parse/load and released by nn_*_free
 *   (free functions accept NULL). Calls on different objects may run on different threads at
 *   once (the CLI trains runs side by side); nn_set_threads' default is the one shared setting.
 * - Choices are typed enums (nn_norm_choice, nn_bn_placement, nn_split, nn_layer_kind, ...);
 *   the CLI's spellings ("group:4", "after") have parsers (nn_norm_parse, ...).
 * - Values of one kind that travel together are a small struct written with field names
 *   (nn_dims {c, h, w}, nn_lr_position, nn_recalibrate_config, nn_range), not adjacent
 *   parameters of one type that a caller could swap without a warning.
 *
 * Sections, each using only those above it: version, errors, random numbers, threads, data
 * sets, augmentation, model spec, labels, model, optimizers, learning-rate schedules, files,
 * checkpoints, data-parallel training, training, results per class, reports, inference
 * transforms, export, presets, runs.
 */
#ifndef NORMNET_H
#define NORMNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NN_BUILDING_LIBRARY) && defined(__GNUC__)
#define NN_API __attribute__((visibility("default")))
#else
#define NN_API
#endif

/* ---- version ---------------------------------------------------------------------------- */
#define NN_VERSION_MAJOR 0
#define NN_VERSION_MINOR 3
#define NN_VERSION_PATCH 0
#define NN_VERSION_STR_(x) #x
#define NN_VERSION_STR(x) NN_VERSION_STR_(x)
/* "MAJOR.MINOR.PATCH" of this header; nn_version() gives the library's (compare the two to
 * catch a program built against one version and run with another). While MAJOR is 0, a
 * new MINOR may break callers (a signature or struct layout changed); a new PATCH only adds. */
#define NN_VERSION_STRING          \
  NN_VERSION_STR(NN_VERSION_MAJOR) \
  "." NN_VERSION_STR(NN_VERSION_MINOR) "." NN_VERSION_STR(NN_VERSION_PATCH)
NN_API const char *nn_version(void);
/* v as the shortest text that reads back to it (strtod, then a cast to float), as normnet
 * writes numbers in its files: a learning rate of 0.1 is "0.1", not %.9g's "0.100000001".
 * Into buf (len bytes), which it returns. Since 0.2.8. */
NN_API const char *nn_fmt_float(char *buf, size_t len, float v);

/* ---- status and errors ---------------------------------------------------------------- */
typedef enum {
  NN_OK = 0,
  NN_ERR_ARG,     /* an argument is out of range */
  NN_ERR_IO,      /* a file cannot be opened, read or written */
  NN_ERR_FORMAT,  /* a data file or checkpoint is malformed */
  NN_ERR_SPEC,    /* a model spec has an unknown layer/key or a bad value */
  NN_ERR_SHAPE,   /* shapes do not fit (spec, data or checkpoint) */
  NN_ERR_BATCH,   /* a batch that normalization cannot handle (e.g. 1 value per channel) */
  NN_ERR_NUMERIC, /* NaN or Inf in the loss */
  NN_ERR_NOMEM    /* allocation failed */
} nn_status;

typedef struct {
  nn_status code;
  char msg[512];
} nn_error;

/* Fill err (may be NULL) with a printf-style message as the library writes its own: every
 * byte outside printable ASCII becomes \xNN (a file name can carry no terminal escape or
 * newline into the one-line message), cut to the buffer. Returns code. For programs that
 * report their own errors in the library's form (the normnet CLI does). Since 0.2.4. */
NN_API nn_status nn_error_set(nn_error *err, nn_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Short name of a status ("bad model spec"). */
NN_API const char *nn_status_name(nn_status s);

/* ---- random numbers (explicit state, xoshiro256**) --------------------------------- */
typedef struct {
  uint64_t s[4];
} nn_rng;

/* Seed the generator; the same seed gives the same stream on every platform. */
NN_API void nn_rng_seed(nn_rng *r, uint64_t seed);
/* Next 64 random bits, and a uniform float in [0, 1) with 24 random bits. */
NN_API uint64_t nn_rng_next(nn_rng *r);
NN_API float nn_rng_uniform(nn_rng *r);

/* ---- threads -------------------------------------------------------------------------- */
/* The process-wide default number of worker threads for kernels and GEMM, for models whose
 * own count is not set (nn_model_set_threads takes precedence). 0 (the default, also when never
 * called) lets the library choose per model and step from timings, between 1 thread and all
 * cores (so a busy core elsewhere does not stall every step); it then sets the calling
 * thread's OpenMP thread count before each forward. OMP_NUM_THREADS also fixes the count.
 * Results are bitwise the same for any thread count. */
NN_API void nn_set_threads(int threads);
/* The most threads a model's steps use when its own count is not set, on the calling thread:
 * the count nn_set_threads or OMP_NUM_THREADS fixed, else the cores this process may run on.
 * For a program that trains several models at once and shares the threads out. */
NN_API int nn_threads_max(void);

/* ---- data sets -------------------------------------------------------------------------- */
typedef struct nn_dataset nn_dataset;
/* The shape of one sample or image: channels, height, width (CHW order; a flat input of N
 * values is {1, 1, N}). Write it with names, (nn_dims){.c = 1, .h = 28, .w = 28}, so the
 * three cannot be swapped. */
typedef struct {
  int c, h, w;
} nn_dims;
/* Which split of a data set to read. */
typedef enum { NN_SPLIT_TEST = 0,
               NN_SPLIT_TRAIN = 1 } nn_split;

/* Load an IDX image file (magic 0x00000803, u8, N x H x W) and its label file
 * (0x00000801, N labels < 10), each raw or gzip-compressed. Checks magic, dims against
 * file size, equal counts and label range; errors name the file. */
NN_API nn_status nn_dataset_load_idx(const char *images_path, const char *labels_path,
                                     nn_dataset **out, nn_error *err);
/* Load DIR/PREFIX-images-idx3-ubyte[.gz] and DIR/PREFIX-labels-idx1-ubyte[.gz]
 * (PREFIX is "train" or "t10k"). */
NN_API nn_status nn_dataset_load_idx_dir(const char *dir, const char *prefix, nn_dataset **out,
                                         nn_error *err);
/* Load CIFAR-10 binary batches from DIR: NN_SPLIT_TRAIN = data_batch_1..5.bin, NN_SPLIT_TEST =
 * test_batch.bin.
 * Each file is records of 1 label byte + 3072 bytes (3x32x32, CHW); the size must be a
 * multiple of 3073 and labels below 10. */
NN_API nn_status nn_dataset_load_cifar10(const char *dir, nn_split split, nn_dataset **out, nn_error *err);
/* Open a data set by source name: "fashion-mnist" (Debian's dataset-fashion-mnist),
 * "mnist:DIR" or "idx:DIR" (the four standard IDX files, raw or .gz), "cifar10:DIR". */
NN_API nn_status nn_dataset_open(const char *source, nn_split split, nn_dataset **out, nn_error *err);
/* Split off the last `fraction` (0 < f < 1) of ds into *val and the rest into *train
 * (copies; ds is unchanged). */
NN_API nn_status nn_dataset_split(const nn_dataset *ds, double fraction, nn_dataset **train,
                                  nn_dataset **val, nn_error *err);
NN_API void nn_dataset_free(nn_dataset *ds);
NN_API int nn_dataset_count(const nn_dataset *ds);
/* The shape of every sample ({0, 0, 0} for NULL). */
NN_API nn_dims nn_dataset_shape(const nn_dataset *ds);
NN_API int nn_dataset_num_classes(const nn_dataset *ds);
/* Name of class i as the source defines it ("T-shirt/top" for fashion-mnist, "airplane"
 * for cifar10, "0".."9" for mnist), or NULL (idx:DIR, or i out of range). */
NN_API const char *nn_dataset_class_name(const nn_dataset *ds, int i);
/* The same by source name (nn_dataset_open's), without opening it. */
NN_API const char *nn_data_source_class_name(const char *source, int i);
/* Sample i's label; -1 for i outside [0, nn_dataset_count). */
NN_API int nn_dataset_label(const nn_dataset *ds, int i);
/* Pointer to sample i's C*H*W bytes (CHW order); NULL for i out of range. */
NN_API const uint8_t *nn_dataset_image(const nn_dataset *ds, int i);

/* Per-pixel input transform: x = (u8 / 255 - mean) / std. {0, 1} keeps [0, 1];
 * {0.5, 0.5} is seed 004's Normalize((0.5,), (0.5,)). */
typedef struct {
  float mean, std;
} nn_input_norm;
/* The smallest input std accepted: a pixel step (1/255) over a smaller std is above 3900,
 * and a denormal std (1e-45) turns every input into an infinity. */
#define NN_INPUT_STD_MIN 1e-6f
/* NN_ERR_ARG unless norm is a usable transform: mean finite, std finite and at least
 * NN_INPUT_STD_MIN. The one rule nn_fit, nn_evaluate, nn_evaluate_confusion,
 * nn_model_recalibrate, nn_model_set_input (checkpoints), the recipe's input-norm and the
 * exporters apply. Since 0.3.0. */
NN_API nn_status nn_input_norm_check(nn_input_norm norm, nn_error *err);

/* Turn samples idx[0..count) into floats x[count, C*H*W] and labels[count]. */
NN_API void nn_dataset_batch(const nn_dataset *ds, const uint32_t *idx, int count,
                             nn_input_norm norm, float *x, int32_t *labels);

/* ---- augmentation (seed 001 section 13), training only ---------------------------------- */
typedef struct {
  int flip;     /* random horizontal flip with probability 0.5 */
  float rotate; /* max rotation as a fraction of 2*pi (Keras RandomRotation factor) */
  int crop;     /* zero-pad by `crop` pixels then crop back at a random offset */
} nn_augment;
/* Parse "flip,rotate=0.1,crop=4" (any subset, any order). */
NN_API nn_status nn_augment_parse(const char *text, nn_augment *out, nn_error *err);
/* Augment a float batch x[n, dims.c, dims.h, dims.w] in place with the given RNG (bilinear
 * rotation, zero fill). scratch holds c*h*w floats. */
NN_API void nn_augment_batch(const nn_augment *a, nn_rng *rng, float *x, int n, nn_dims dims, float *scratch);

/* ---- model spec ------------------------------------------------------------------------
 * Plain text, one layer per line, '#' comments, e.g.
 *     input shape=1x28x28
 *     conv2d filters=6 kernel=5
 *     batchnorm momentum=0.1 eps=1e-5
 *     sigmoid
 *     avgpool2d size=2
 *     flatten
 *     dense units=10
 * Unknown layers or keys and bad values are errors with the line number. */
typedef struct nn_spec nn_spec;

/* Parse spec text; `source` names it in error messages (a file name or preset name). */
NN_API nn_status nn_spec_parse(const char *text, const char *source, nn_spec **out, nn_error *err);
/* Read and parse a spec file. */
NN_API nn_status nn_spec_load(const char *path, nn_spec **out, nn_error *err);
NN_API void nn_spec_free(nn_spec *spec);
/* The normalization of a model: NN_NORM_BATCH keeps the spec; GROUP, LAYER and INSTANCE
 * replace each batchnorm by groupnorm (`groups` groups: it must divide the channels of every
 * batchnorm, else NN_ERR_SHAPE naming the layer), layernorm or instancenorm (CxHxW layers
 * only) with PyTorch's defaults; NONE removes every norm layer and gives the layer before
 * each its bias back (the "without BN" twin). */
typedef enum { NN_NORM_BATCH = 0,
               NN_NORM_GROUP,
               NN_NORM_LAYER,
               NN_NORM_INSTANCE,
               NN_NORM_NONE } nn_norm_kind;
typedef struct {
  nn_norm_kind kind;
  int groups; /* NN_NORM_GROUP only, >= 1 */
} nn_norm_choice;
NN_API nn_status nn_spec_apply_norm(nn_spec *spec, nn_norm_choice norm, nn_error *err);
/* The CLI's spelling: "batch", "group:G", "layer", "instance" or "none". */
NN_API nn_status nn_norm_parse(const char *text, nn_norm_choice *out, nn_error *err);
/* nn_norm_parse then nn_spec_apply_norm; "NORM@before" or "NORM@after" then also applies
 * that placement (nn_spec_set_bn_placement). */
NN_API nn_status nn_spec_set_norm(nn_spec *spec, const char *norm, nn_error *err);
/* Where normalization sits against the activation that follows it (seed 000's pitfall 2):
 * before (dense -> BN -> relu, the presets) or after (dense -> relu -> BN). */
typedef enum { NN_BN_BEFORE_ACTIVATION = 0,
               NN_BN_AFTER_ACTIVATION } nn_bn_placement;
NN_API void nn_spec_apply_bn_placement(nn_spec *spec, nn_bn_placement placement);
/* The CLI's spelling: "before" or "after". */
NN_API nn_status nn_bn_placement_parse(const char *text, nn_bn_placement *out, nn_error *err);
/* nn_bn_placement_parse then nn_spec_apply_bn_placement. */
NN_API nn_status nn_spec_set_bn_placement(nn_spec *spec, const char *placement, nn_error *err);
/* Frozen BN for fine-tuning (Keras trainable=False): every batchnorm uses its running
 * statistics in training too, without updating them, and keeps gamma/beta fixed. */
NN_API void nn_spec_freeze_bn(nn_spec *spec);
/* Print the spec back as canonical text (every key explicit). Returns a malloc'd string. */
NN_API char *nn_spec_to_text(const nn_spec *spec);
/* Model-size limit, checked by nn_model_create before anything is allocated: the total
 * parameter count and the activation values one sample needs (every layer's output and
 * scratch) must each be at most `limit`. Default NN_DEFAULT_MAX_PARAMS (2^30); larger sizes
 * are refused with NN_ERR_ARG naming the layer and the size asked for. */
#define NN_DEFAULT_MAX_PARAMS (1ull << 30)
NN_API void nn_spec_set_max_params(nn_spec *spec, unsigned long long limit);

/* ---- labels ------------------------------------------------------------------------------ */
/* Legend name of a normalization variant as the tutorials write it: "batch" -> "with BN",
 * "none" -> "without BN", "group:4" -> "GroupNorm (4)", "layer" -> "LayerNorm",
 * "batch@after" -> "with BN, after the activation"; anything else is copied. */
NN_API void nn_norm_label(const char *norm, char *buf, size_t len);

/* ---- model -------------------------------------------------------------------------- */
typedef struct nn_model nn_model;

typedef enum { NN_MODE_TRAIN = 0,
               NN_MODE_EVAL = 1 } nn_mode;
typedef enum {
  NN_INIT_DEFAULT = 0,   /* each layer's convention: PyTorch's kaiming-uniform(a=sqrt 5) */
  NN_INIT_XAVIER_UNIFORM /* Glorot-uniform weights, zero biases (Keras, d2l) */
} nn_init;

/* Build a model from a spec (infers every shape; errors name the line and layer). */
NN_API nn_status nn_model_create(const nn_spec *spec, nn_model **out, nn_error *err);
NN_API void nn_model_free(nn_model *m);
/* Initialise parameters and reset running statistics. */
NN_API void nn_model_init(nn_model *m, nn_init init, nn_rng *rng);
/* The spec the model was built from (owned by the model). */
NN_API const nn_spec *nn_model_spec(const nn_model *m);

NN_API int nn_model_num_layers(const nn_model *m);
/* Input size per sample (C*H*W) and number of outputs (classes). */
NN_API int nn_model_input_size(const nn_model *m);
/* Input shape per sample ({1, 1, N} for a flat input of N). */
NN_API nn_dims nn_model_input_shape(const nn_model *m);
NN_API int nn_model_output_size(const nn_model *m);
/* What the model reads: the input transform and the data source ("idx:DIR", ...) it was
 * trained on. nn_fit records the transform, nn_run both; checkpoints carry them,
 * nn_model_fold keeps them.
 * nn_model_input_norm returns 1 if the model carries a transform, 0 if unknown (then *out
 * is {0, 1}: e.g. a plain PyTorch state_dict). nn_model_data_source returns "" if unknown. */
NN_API int nn_model_input_norm(const nn_model *m, nn_input_norm *out);
NN_API const char *nn_model_data_source(const nn_model *m);
/* Record them (either may be NULL to keep the current one; "" clears the source). */
NN_API nn_status nn_model_set_input(nn_model *m, const nn_input_norm *norm, const char *data_source, nn_error *err);

/* Layer kinds, one per spec keyword. */
typedef enum {
  NN_LAYER_DENSE = 0,
  NN_LAYER_CONV2D,
  NN_LAYER_BATCHNORM,
  NN_LAYER_RELU,
  NN_LAYER_SIGMOID,
  NN_LAYER_TANH,
  NN_LAYER_MAXPOOL2D,
  NN_LAYER_AVGPOOL2D,
  NN_LAYER_GLOBAL_AVGPOOL,
  NN_LAYER_FLATTEN,
  NN_LAYER_DROPOUT,
  NN_LAYER_GROUPNORM,
  NN_LAYER_LAYERNORM,
  NN_LAYER_INSTANCENORM,
  NN_LAYER__COUNT
} nn_layer_kind;
/* 1 for the normalization kinds (batch, group, layer, instance norm), else 0. */
NN_API int nn_layer_kind_is_norm(nn_layer_kind kind);
/* 1 for the elementwise activations (relu, sigmoid, tanh), else 0. */
NN_API int nn_layer_kind_is_activation(nn_layer_kind kind);

typedef struct {
  const char *kind;      /* spec keyword, e.g. "batchnorm" */
  nn_layer_kind kind_id; /* the same as an enum */
  int line;              /* line in the spec */
  int out_rank;          /* 1: (C), 3: (C,H,W) */
  int out_c, out_h, out_w;
  size_t trainable;     /* parameters the optimizer updates */
  size_t non_trainable; /* BN running mean/var (as Keras counts them) */
  char detail[128];     /* layer options and conventions, e.g. "momentum=0.1 eps=1e-05 (pytorch)" */
  int skipped_updates;  /* running-stat updates skipped for non-finite batch statistics */
} nn_layer_info;
/* Layer i's description; i outside [0, nn_model_num_layers) gives an info zeroed, kind NULL. */
NN_API void nn_model_layer_info(const nn_model *m, int i, nn_layer_info *info);

/* Flat buffers: all parameters, their gradients (same layout), and the non-trainable
 * state (BN running statistics). */
NN_API size_t nn_model_param_count(const nn_model *m);
NN_API float *nn_model_params(nn_model *m);
NN_API float *nn_model_grads(nn_model *m);
NN_API size_t nn_model_state_count(const nn_model *m);
NN_API float *nn_model_state(nn_model *m);
NN_API void nn_model_zero_grads(nn_model *m);

/* What a tensor of a layer holds (the part of its name after the layer index). */
typedef enum {
  NN_TENSOR_WEIGHT = 0,     /* "weight": dense/conv weights, or a norm's gamma */
  NN_TENSOR_BIAS,           /* "bias": dense/conv bias, or a norm's beta */
  NN_TENSOR_RUNNING_MEAN,   /* "running_mean" */
  NN_TENSOR_RUNNING_VAR,    /* "running_var" */
  NN_TENSOR_BATCHES_TRACKED /* "num_batches_tracked" (int64, in count_value) */
} nn_tensor_role;

/* Named tensor views in PyTorch state_dict order and names ("0.weight", "1.running_mean",
 * ...). `data` points into the params or state buffer; num_batches_tracked has data NULL
 * and its value in `count_value`. */
typedef struct {
  char name[48];
  int layer; /* index of its layer (the number before the dot) */
  nn_tensor_role role;
  int ndim;
  int dims[4];
  size_t count;
  float *data;
  int is_state;
  int64_t *count_value;
} nn_tensor_view;
NN_API int nn_model_num_tensors(const nn_model *m);
/* View i; i outside [0, nn_model_num_tensors) gives a view zeroed (no name, data NULL). */
NN_API void nn_model_tensor(nn_model *m, int i, nn_tensor_view *view);

/* The number of worker threads this model's steps use: n > 0 fixes it; 0 (the default)
 * leaves it to nn_set_threads / OMP_NUM_THREADS or, when neither fixed it, to the library's
 * per-step choice from timings. Applied to the calling thread's OpenMP count at each forward
 * (so two models on two threads keep their own counts). Results are bitwise the same for
 * any count. */
NN_API void nn_model_set_threads(nn_model *m, int threads);

/* Forward a batch x[n, input_size]. In NN_MODE_TRAIN, normalization layers use batch
 * statistics and update running statistics; in NN_MODE_EVAL they use running statistics.
 * If labels is not NULL the softmax cross-entropy loss sum and the number of correct
 * argmax predictions are returned (either pointer may be NULL). `logits` (may be NULL)
 * receives a pointer to the [n, outputs] logits, valid until the next call. */
NN_API nn_status nn_model_forward(nn_model *m, const float *x, const int32_t *labels, int n,
                                  nn_mode mode, double *loss_sum, int *correct,
                                  const float **logits, nn_error *err);
/* Backward from the mean cross-entropy loss of the last forward (which must have had
 * labels); gradients are ACCUMULATED into nn_model_grads. */
NN_API nn_status nn_model_backward(nn_model *m, nn_error *err);
/* Output of layer i in the last forward, [n, layer output size]; *count receives n * size.
 * After an NN_MODE_TRAIN forward, a batchnorm directly followed by relu/sigmoid/tanh ran fused
 * with it and its own output was not kept; an NN_MODE_EVAL forward keeps every output. The
 * library's evaluations (nn_evaluate, nn_fit's, nn_evaluate_confusion) keep none: their eval
 * forwards fuse batchnorm and conv2d with the activation after them (same logits, bitwise).
 * NULL (*count 0) for an output not kept, before any forward, or for i out of range. */
NN_API const float *nn_model_layer_output(const nn_model *m, int i, size_t *count);
/* Numeric guard: the first layer whose output in the last forward holds a non-finite value
 * or, if limits is not NULL, a value of magnitude above limits[layer]; -1 if none. *value
 * (may be NULL) receives that value. A batchnorm fused with its activation is judged by the
 * activation's output (its own was not kept). -1 before any forward. */
NN_API int nn_model_first_bad_output(const nn_model *m, const double *limits, double *value);
/* Per layer, the largest magnitude in its output in the last forward (NaN if it holds a
 * non-finite value; -1 for a fused batchnorm's output, not kept, and for every layer before
 * any forward). */
NN_API void nn_model_output_maxabs(const nn_model *m, double *maxabs);
/* Class probabilities (softmax of the last forward's logits), [n, outputs]. */
NN_API const float *nn_model_probs(const nn_model *m);
/* Where a step's time goes, per layer (off by default). nn_model_set_timing(m, 1) zeroes the
 * counters and from then on adds the wall time of each layer's forward and backward to them
 * (two clock reads per layer and pass); 0 stops timing and keeps the counters. A layer that
 * runs fused with the ones after it (conv2d or batchnorm with its activation, the evaluation
 * epilogues: nn_model_layer_output; in training's backward also a 2x2 max or average pool
 * after a batchnorm's activation) carries their time, and those read 0.
 * nn_model_layer_time: layer i's seconds so far (either pointer may be NULL). */
NN_API void nn_model_set_timing(nn_model *m, int on);
NN_API void nn_model_layer_time(const nn_model *m, int i, double *forward_s, double *backward_s);

/* ---- optimizers -------------------------------------------------------------------- */
typedef struct nn_optimizer nn_optimizer;
typedef enum { NN_OPT_SGD = 0,
               NN_OPT_ADAM,
               NN_OPT_ADAMW } nn_opt_kind;
typedef struct {
  nn_opt_kind kind;
  float lr;
  float momentum;     /* SGD */
  int nesterov;       /* SGD */
  float weight_decay; /* SGD, Adam: L2 added to the gradient; AdamW: decoupled */
  float beta1, beta2; /* Adam */
  float eps;          /* Adam: 1e-8 (PyTorch), 1e-7 (Keras) */
  int keras_eps;      /* Adam: Keras's form p -= lr*sqrt(bc2)/bc1 * m / (sqrt(v) + eps), eps outside
                          the bias correction (PyTorch: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)),
                          computed as TensorFlow does with denormal floats flushed to zero (x86;
                          PyTorch's form keeps them) */
} nn_opt_config;
/* PyTorch's defaults for the kind (SGD lr 0.01; Adam lr 1e-3, betas 0.9/0.999, eps 1e-8). */
NN_API nn_opt_config nn_opt_defaults(nn_opt_kind kind);
/* "sgd", "adam", "adamw" -> kind; returns -1 if unknown. */
NN_API int nn_opt_kind_parse(const char *name);
NN_API const char *nn_opt_kind_name(nn_opt_kind kind);

NN_API nn_status nn_optimizer_create(const nn_opt_config *cfg, nn_model *m, nn_optimizer **out,
                                     nn_error *err);
NN_API void nn_optimizer_free(nn_optimizer *opt);
/* One update of every trainable parameter from nn_model_grads. */
NN_API void nn_optimizer_step(nn_optimizer *opt, nn_model *m);
/* Optimizer steps taken so far (Adam's bias correction and SGD's first momentum step use it). */
NN_API long nn_optimizer_steps(const nn_optimizer *opt);
NN_API void nn_optimizer_set_steps(nn_optimizer *opt, long steps);
/* The learning rate of the next step, and setting it (schedules). */
NN_API float nn_optimizer_lr(const nn_optimizer *opt);
NN_API void nn_optimizer_set_lr(nn_optimizer *opt, float lr);
/* Named views of the optimizer's moment buffers, for checkpoints: for each trainable
 * parameter tensor P, "optim.momentum_buffer.P" (SGD with momentum) or "optim.exp_avg.P"
 * and "optim.exp_avg_sq.P" (Adam, AdamW), PyTorch's state names. */
NN_API int nn_optimizer_num_tensors(const nn_optimizer *opt, const nn_model *m);
/* View i; i outside [0, nn_optimizer_num_tensors) gives a view zeroed (no name, data NULL). */
NN_API void nn_optimizer_tensor(const nn_optimizer *opt, const nn_model *m, int i, nn_tensor_view *view);

/* ---- learning-rate schedules (PyTorch's lr_scheduler formulas, per optimizer step) ------ */
typedef enum { NN_LR_CONSTANT = 0,
               NN_LR_STEP,
               NN_LR_COSINE,
               NN_LR_ONECYCLE } nn_lr_kind;
typedef struct {
  nn_lr_kind kind;
  int step_epochs; /* NN_LR_STEP: multiply by gamma every step_epochs epochs (StepLR) */
  double gamma;
  long warmup; /* linear warm-up steps: factor (t+1)/(warmup+1) for t < warmup (LinearLR) */
} nn_lr_schedule;
/* Parse "constant", "step:EPOCHS:GAMMA", "cosine" (CosineAnnealingLR over all steps) or
 * "onecycle" (OneCycleLR, max_lr = the base lr; refuses a warmup, it has its own). */
NN_API nn_status nn_lr_schedule_parse(const char *text, long warmup, nn_lr_schedule *out, nn_error *err);
/* The text form of a schedule (without the warmup), as parsed back. */
NN_API void nn_lr_schedule_format(const nn_lr_schedule *s, char *buf, size_t len);
/* Where a step stands in its run: optimizer step `step` (0-based) of a run of total_steps
 * steps with steps_per_epoch steps per epoch. Write it with names, (nn_lr_position){.step =
 * t, .steps_per_epoch = e, .total_steps = n}, so the three cannot be swapped. */
typedef struct {
  long step, steps_per_epoch, total_steps;
} nn_lr_position;
/* Learning rate of the step at `at`, from the base rate lr. */
NN_API double nn_lr_schedule_at(const nn_lr_schedule *s, double lr, nn_lr_position at);

/* ---- files: the one atomic writer ---------------------------------------------------
 * Every file normnet writes goes through here: a temporary ".NAME.tmp.PID.N" is created
 * next to PATH with O_CREAT|O_EXCL|O_NOFOLLOW (never an existing file, never through a
 * symlink), written, fsync'd and renamed over PATH, then the directory is fsync'd. A
 * symlink at PATH is replaced, its target never written. On any failure PATH is unchanged. */
NN_API nn_status nn_file_write_atomic(const char *path, const void *data, size_t len, nn_error *err);
/* Remove from dir the temporaries of writers that died mid-write (their PID is gone). */
NN_API nn_status nn_file_remove_stale_temps(const char *dir, nn_error *err);
/* Create dir and its missing parents (as mkdir -p); an existing directory is fine, anything
 * else at one of its components is an error naming it. */
NN_API nn_status nn_file_make_dirs(const char *dir, nn_error *err);

/* ---- checkpoints (safetensors, ARCHITECTURE.md §6) ------------------------------------------------
 * Tensors are named as PyTorch's state_dict of the equivalent nn.Sequential ("0.weight",
 * "1.running_mean", "1.num_batches_tracked" as int64); __metadata__ holds the spec text
 * ("normnet.spec"), the format version, the model's input transform and data source
 * (nn_model_input_norm, nn_model_data_source) and any extra string pairs given. Saving goes
 * through nn_file_write_atomic: on any error the previous file is untouched. */
typedef struct {
  const char *key, *value;
} nn_meta_pair;
NN_API nn_status nn_checkpoint_save(const nn_model *m, const char *path, const nn_meta_pair *extra, int nextra,
                                    nn_error *err);
/* Like nn_checkpoint_save, plus the optimizer's moments ("optim.*" tensors) and step
 * count, so that nn_checkpoint_read_optimizer can resume training exactly. */
NN_API nn_status nn_checkpoint_save_training(const nn_model *m, const nn_optimizer *opt, const char *path,
                                             const nn_meta_pair *extra, int nextra, nn_error *err);

/* Reading by handle: open reads the file and validates its header once (bounded length,
 * dtype x shape, offsets, overlaps, duplicate keys); the queries below use it. */
typedef struct nn_checkpoint nn_checkpoint;
NN_API nn_status nn_checkpoint_open(const char *path, nn_checkpoint **out, nn_error *err);
NN_API void nn_checkpoint_close(nn_checkpoint *c);
NN_API const char *nn_checkpoint_path(const nn_checkpoint *c);
/* A metadata value (owned by the handle), NULL if absent. */
NN_API const char *nn_checkpoint_get(const nn_checkpoint *c, const char *key);
/* Build the model. Its spec comes from the metadata, or from `spec` when given (required
 * for a plain PyTorch state_dict without normnet metadata). Every tensor the spec needs
 * must be present with the right dtype and shape; errors name the file and tensor. The
 * model carries the recorded input transform and data source. */
NN_API nn_status nn_checkpoint_read_model(const nn_checkpoint *c, const nn_spec *spec, nn_model **out,
                                          nn_error *err);
/* The spec recorded in the metadata ("normnet.spec"), parsed, for a caller that adjusts it
 * before nn_checkpoint_read_model (e.g. nn_spec_set_max_params); NN_ERR_FORMAT naming the
 * file if it has none. */
NN_API nn_status nn_checkpoint_read_spec(const nn_checkpoint *c, nn_spec **out, nn_error *err);
/* Fine-tuning: copy the file's weights and statistics into an existing model of the same
 * architecture (tensor names, dtypes and shapes must match; m is unchanged on error). */
NN_API nn_status nn_checkpoint_read_weights(const nn_checkpoint *c, nn_model *m, nn_error *err);
/* Restore the optimizer state saved by nn_checkpoint_save_training into opt (created for
 * the loaded model with the same optimizer kind). */
NN_API nn_status nn_checkpoint_read_optimizer(const nn_checkpoint *c, nn_model *m, nn_optimizer *opt, nn_error *err);

/* By path (open, one read, close). A Keras 3 .keras file, or a legacy Keras HDF5 file
 * (model.save("x.h5")), loads too: with `spec`, or (spec NULL) with the architecture its
 * config describes (a Sequential of Keras layers normnet has; a final softmax is left to the
 * loss, so the model's outputs are Keras's logits); a bare .weights.h5 needs the spec. */
NN_API nn_status nn_checkpoint_load(const char *path, const nn_spec *spec, nn_model **out, nn_error *err);
/* The spec of the model a file holds: a checkpoint's recorded one, or a Keras file's
 * architecture as nn_checkpoint_load reads it (for a caller that adjusts it, e.g.
 * nn_spec_set_max_params, before nn_checkpoint_load). */
NN_API nn_status nn_checkpoint_load_spec(const char *path, nn_spec **out, nn_error *err);
/* 1 if path is a regular file nn_checkpoint_load would read through the system's libhdf5 (a
 * Keras .h5, or a zip such as a .keras), which is not hardened against damaged or hostile
 * files (docs/robustness.md): a caller that must survive one reads it first in a separate
 * process, as the CLI does. 0 for anything else (a safetensors file: normnet's own reader).
 * Opened without blocking. Since 0.3.0. */
NN_API int nn_checkpoint_uses_hdf5(const char *path);
NN_API nn_status nn_checkpoint_load_optimizer(const char *path, nn_model *m, nn_optimizer *opt, nn_error *err);
/* Fine-tuning by path: nn_checkpoint_read_weights, or a Keras .keras / .weights.h5 file. */
NN_API nn_status nn_checkpoint_load_weights(const char *path, nn_model *m, nn_error *err);
/* Value of a metadata key of a checkpoint file (malloc'd string, NULL if absent). */
NN_API nn_status nn_checkpoint_meta(const char *path, const char *key, char **value, nn_error *err);

/* ---- data-parallel training over K processes (ARCHITECTURE.md §9) -----------------------
 * The library reaches other processes only through a communicator of callbacks, so this
 * header (and a build without MPI) stays MPI-free; nn_dist_init fills one from Open MPI.
 * Every callback is collective: all ranks call it in the same order with the same sizes,
 * and every rank receives the same result bits. A communication failure ends the job. */
typedef struct nn_comm {
  int rank, size; /* this process and the number of processes */
  int sync_bn;    /* 1: batchnorm statistics over the global batch (SyncBN);
                              0: each rank normalizes with its own slice (plain data parallel) */
  void *ctx;
  void (*sum_f32)(void *ctx, float *buf, size_t n); /* in-place elementwise sum over ranks */
  void (*sum_f64)(void *ctx, double *buf, size_t n);
  void (*bcast)(void *ctx, void *buf, size_t bytes, int root);
  void (*abort)(void *ctx, int code); /* end every process of the job */
  void (*finalize)(void *ctx);        /* leave the job (nn_dist_finalize) */
} nn_comm;
/* Join the job this process was started in by mpirun (loading libnormnet_mpi.so, the only
 * part of normnet linked with MPI), or, when it was not started by mpirun, a single-process
 * communicator. Fails if started by mpirun but the module cannot be loaded (a build without
 * MPI). sync_bn starts at 1. */
NN_API nn_status nn_dist_init(int *argc, char ***argv, nn_comm *comm, nn_error *err);
NN_API void nn_dist_finalize(nn_comm *comm);
/* 1 if this build can run over MPI. */
NN_API int nn_dist_available(void);
/* Collective: the status of the lowest rank whose `st` is not NN_OK, with that rank's
 * message prefixed "rank R: ", on every rank (NN_OK if none failed). */
NN_API nn_status nn_dist_agree(const nn_comm *comm, nn_status st, nn_error *err);
/* A half-open range [lo, hi) of items. */
typedef struct {
  int lo, hi;
} nn_range;
/* The contiguous slice of n items that this process (comm->rank of comm->size) takes
 * (uneven: the first n % size ranks take one more; empty slices when size > n); all n for a
 * NULL comm. */
NN_API nn_range nn_dist_slice(const nn_comm *comm, int n);
/* Bind a communicator to a model (NULL: single process): batchnorm layers synchronize
 * their batch statistics when comm->sync_bn and comm->size > 1. Kept by pointer. */
NN_API void nn_model_set_comm(nn_model *m, const nn_comm *comm);

/* ---- training ------------------------------------------------------------------------ */
/* Where training stands inside an epoch: what a training stopped by max_steps in the middle
 * of an epoch needs to go on exactly as if it had not stopped (nn_fit_config.position). */
typedef struct {
  int batch;           /* the epoch's next batch (0-based); 0: at an epoch boundary */
  nn_rng epoch_start;  /* the data stream when the epoch began (its permutation is drawn from it) */
  double loss_sum, lr; /* the epoch's summed loss so far; the lr of its first step */
  long correct, seen;  /* its right predictions and its samples so far */
  double seconds;      /* its training time so far (its samples/s and seconds go on from it) */
} nn_fit_position;

typedef struct {
  int epochs;
  int batch_size;
  int shuffle;   /* 1: reshuffle each epoch with the seeded RNG; 0: file order */
  int drop_last; /* 1: drop the last incomplete training batch */
  uint64_t seed; /* shuffling seed */
  nn_input_norm input_norm;
  int eval_batch_size;               /* 0: same as batch_size */
  const nn_augment *augment;         /* random augmentation of training batches (NULL: none) */
  long max_steps;                    /* stop after this many optimizer steps in total (0: no limit): a
                              pause, not the run's length (a schedule runs over the epochs'
                              steps; a part of an epoch is not an epoch of early stopping) */
  int first_epoch;                   /* 1, or k+1 when resuming after k epochs (k when inside epoch k) */
  nn_fit_position *position;         /* NULL, or in: where first_epoch starts (batch > 0: inside it,
                              data_rng then being the stream at that batch); out: set at every
                              epoch's end, before epoch_done (batch > 0 when max_steps stopped
                              it inside the epoch) */
  nn_rng *data_rng;                  /* shuffling/augmentation stream to use and advance (resume), or
                              NULL: a stream derived from seed */
  const nn_comm *comm;               /* data parallel over comm->size processes (NULL: one): batch_size
                              is the global batch, each rank takes its contiguous slice of it,
                              gradients and evaluation are summed; the result equals one
                              process up to float rounding (ARCHITECTURE.md §9) */
  const nn_lr_schedule *lr_schedule; /* NULL: the optimizer's lr throughout; else the lr of each
                              step, from the optimizer's lr when nn_fit starts (the base,
                              set back on return) */
  int accumulate;                    /* K > 1: one optimizer step per K batches, on the gradient of the
                              mean loss of all their samples; BN keeps its statistics per
                              batch of batch_size (as PyTorch) */
  int early_stop;                    /* patience P > 0: stop when the evaluation loss has not improved on
                              its best by more than early_stop_delta for P epochs, and put
                              back the weights of the best epoch (needs `test`) */
  double early_stop_delta;
  const struct nn_history *previous; /* resuming: the epochs trained before (first_epoch - 1 records; one
                              more, the partial epoch, when starting inside first_epoch), from
                              which early stopping goes on counting; NULL: none */
  nn_model *previous_best;           /* resuming with early stopping: a model holding the weights of the
                              lowest evaluation loss in `previous` when that is not its last
                              epoch (the weights to put back); NULL otherwise */
  double divergence_factor;          /* > 0: stop when a batch's mean loss exceeds this many times the
                              first batch's of this call (a run that explodes without ever
                              reaching NaN); the error names the first layer whose output
                              grew by that factor or went non-finite. 0: off. Default 1e4 */
  int nan_check;                     /* 1: check every layer's output for NaN/Inf after every step,
                              not only when the loss goes bad (costs one pass over them) */
  int assemble_in_step;              /* 0 (default): a helper thread assembles batch b+1 (uint8 -> float,
                              augmentation) while step b trains; 1: each step assembles its
                              own batch, no helper thread. The batches, and so the results,
                              are bitwise the same; data_rng runs up to one batch ahead while
                              nn_fit trains and is exact when it returns or calls epoch_done */
} nn_fit_config;
NN_API nn_fit_config nn_fit_defaults(void);
/* The shuffling/augmentation stream nn_fit derives from a seed (distinct from the stream
 * that initialises weights), for callers that keep it across runs (resume). */
NN_API void nn_fit_seed_data_rng(nn_rng *r, uint64_t seed);

typedef struct {
  int epoch; /* 1-based */
  double train_loss, train_acc;
  double test_loss, test_acc;
  double seconds;         /* wall time of the epoch (training + evaluation) */
  double samples_per_sec; /* training samples per second */
  double lr;              /* learning rate of the epoch's first optimizer step */
} nn_epoch_record;

typedef struct nn_history nn_history;
NN_API int nn_history_count(const nn_history *h);
/* Row i (0-based: epoch i + 1's); NULL outside [0, nn_history_count). */
NN_API const nn_epoch_record *nn_history_get(const nn_history *h, int i);
/* Write the CSV (nn_file_write_atomic). The evaluation columns are named val_loss, val_acc
 * when the records were measured on a validation split, test_loss, test_acc otherwise. */
NN_API nn_status nn_history_write_csv(const nn_history *h, const char *path, nn_error *err);
/* Read the first `epochs` rows of a history CSV written by nn_history_write_csv (either
 * header); errors name the file and line. */
NN_API nn_status nn_history_read_csv(const char *path, int epochs, nn_history **out, nn_error *err);
/* Whether test_loss/test_acc of the records are a validation split's (1) or the test set's (0). */
NN_API void nn_history_set_validation(nn_history *h, int validation);
NN_API int nn_history_validation(const nn_history *h);
/* One row of a run's activations.csv (written with --track-activations): a hidden layer's
 * pre-activation mean and standard deviation on the probe batch after an epoch. */
typedef struct {
  int epoch, layer;
  char kind[32]; /* the layer kind: [a-z0-9_] only */
  double mean, std;
  int line; /* in the file, for messages */
} nn_activation_row;
/* Read activations.csv: the header, then rows with epoch in [0, 10^7], layer in [0, 65535],
 * at most 2^20 rows, each (epoch, layer) once. Rows come back sorted by (epoch, layer).
 * Any other content is NN_ERR_FORMAT naming the line. *rows is malloc'd. */
NN_API nn_status nn_activations_read_csv(const char *path, nn_activation_row **rows, int *n, nn_error *err);
/* An empty history, and appending one record (for callers that keep their own). */
NN_API nn_history *nn_history_create(void);
NN_API nn_status nn_history_append(nn_history *h, const nn_epoch_record *rec, nn_error *err);
NN_API void nn_history_free(nn_history *h);

/* Progress callbacks (any may be NULL). Return non-zero from on_batch to stop early: after
 * that batch's optimizer step (with gradient accumulation over K batches, at the end of its
 * group of K: a stop inside one would leave a partial gradient that no checkpoint holds).
 * Data parallel (nn_fit_config.comm), a stop asked or an epoch_done failure on any one rank
 * stops every rank after the same step, each with the lowest such rank's error. */
typedef struct {
  void *user;
  void (*on_epoch_begin)(void *user, int epoch, int epochs, int batches);
  int (*on_batch)(void *user, int epoch, int batch, int batches, double loss, double acc);
  void (*on_epoch_end)(void *user, const nn_epoch_record *rec);
  /* After on_epoch_end: anything but NN_OK (with err filled) stops training with that error
   * (a run saves its checkpoint here). */
  nn_status (*epoch_done)(void *user, const nn_epoch_record *rec, nn_error *err);
} nn_fit_callbacks;

/* Train for cfg->epochs, evaluating on `test` (may be NULL) in eval mode after each
 * epoch. Stops with NN_ERR_NUMERIC naming the epoch and batch if the loss is not finite.
 * *history (may be NULL) receives the per-epoch records. */
NN_API nn_status nn_fit(nn_model *m, nn_optimizer *opt, const nn_dataset *train,
                        const nn_dataset *test, const nn_fit_config *cfg,
                        const nn_fit_callbacks *cb, nn_history **history, nn_error *err);

/* NN_ERR_SHAPE (naming both) unless the data set's samples fit the model: its input's shape
 * (a flat input takes any shape of as many values) and no more classes than its outputs. What
 * nn_fit, nn_evaluate and nn_evaluate_confusion check first (nn_model_recalibrate, which reads
 * no labels: the samples); for callers that feed records themselves (nn_dataset_batch).
 * Since 0.3.0. */
NN_API nn_status nn_model_check_data(const nn_model *m, const nn_dataset *ds, nn_error *err);

/* Mean loss and accuracy of the model on a data set in the given mode. */
NN_API nn_status nn_evaluate(nn_model *m, const nn_dataset *ds, nn_input_norm norm, int batch_size,
                             nn_mode mode, double *loss, double *acc, nn_error *err);

/* ---- results per class ------------------------------------------------------------------ */
typedef struct {
  int classes;  /* k = the model's outputs */
  long *counts; /* k x k, row = true label, column = predicted class (argmax) */
  long samples;
  double loss, accuracy; /* mean loss and accuracy of the same pass */
} nn_confusion;
/* Evaluate the model on every sample of ds in the given mode and count the confusion
 * matrix. On error *out is empty. Release with nn_confusion_free. */
NN_API nn_status nn_evaluate_confusion(nn_model *m, const nn_dataset *ds, nn_input_norm norm, int batch_size,
                                       nn_mode mode, nn_confusion *out, nn_error *err);
/* Accuracy on the samples of true class cls (its diagonal entry over its row); NaN if none. */
NN_API double nn_confusion_class_accuracy(const nn_confusion *cm, int cls);
NN_API void nn_confusion_free(nn_confusion *cm);

/* ---- reports ------------------------------------------------------------------------- */
/* Keras-style summary table (layer, output shape, parameters, trainable/non-trainable
 * split with BN running statistics counted as non-trainable) as a malloc'd string. */
NN_API char *nn_model_summary(const nn_model *m);

/* ---- inference transforms -------------------------------------------------------------- */
/* Fold each batchnorm into the dense/conv layer right before it (ARCHITECTURE.md §4, in double):
 * W' = W*gamma/sqrt(var+eps), b' = (b-mean)*gamma/sqrt(var+eps) + beta. The result has no
 * batchnorm layers and gives the same eval-mode outputs. Errors name a batchnorm that
 * cannot be folded (not after dense/conv, or without running statistics). */
NN_API nn_status nn_model_fold(const nn_model *m, nn_model **out, nn_error *err);

/* Read an image (PNG or binary/ASCII PGM) as uint8 CHW of the given shape (out holds
 * c*h*w bytes): grayscale is converted to dims.c channels or RGB to gray as needed; the size
 * must match dims.h x dims.w. */
NN_API nn_status nn_image_load(const char *path, nn_dims dims, uint8_t *out, nn_error *err);

/* How nn_model_recalibrate samples the training data. */
typedef struct {
  int batch_size; /* samples per batch */
  int batches;    /* batches whose statistics are averaged */
  uint64_t seed;  /* shuffling */
} nn_recalibrate_config;
/* Re-estimate every batchnorm's running statistics as the cumulative average of the batch
 * statistics of cfg->batches training batches of cfg->batch_size samples of ds (shuffled
 * with cfg->seed), weights unchanged (dropout is active during these forwards).
 * num_batches_tracked ends at cfg->batches. */
NN_API nn_status nn_model_recalibrate(nn_model *m, const nn_dataset *ds, nn_input_norm norm,
                                      const nn_recalibrate_config *cfg, nn_error *err);

/* ---- export to other runtimes (ARCHITECTURE.md §10) ---------------------------------------------
 * Both take raw pixels scaled to [0, 1] and carry the input transform `norm` inside the
 * model; a batchnorm exports with its running statistics (fold first for a BN-free file).
 * The same model gives the same bytes. Files are written atomically.
 * ONNX (opset 17): input "input" float32 [N, C, H, W] ([N, F] for a flat spec input), output
 * "logits" [N, classes]; each layer as its standard op.
 * Keras 3 ".keras" (zip of config.json, metadata.json, model.weights.h5): a Sequential of
 * Keras's own layers on NHWC input, the transform as Rescaling, ending in a softmax. */
NN_API nn_status nn_export_onnx(const nn_model *m, nn_input_norm norm, const char *path, nn_error *err);
NN_API nn_status nn_export_keras(const nn_model *m, nn_input_norm norm, const char *path, nn_error *err);

/* ---- presets (ARCHITECTURE.md §2): spec text plus the seed's recipe ------------------------------ */
typedef struct {
  const char *name; /* "lenet" */
  const char *seed; /* seed document and section it follows */
  const char *spec; /* model spec text */
  nn_init init;
  nn_opt_config opt;
  int batch_size;
  int epochs;
  nn_input_norm input_norm;
  const char *data; /* the data source it was made for ("fashion-mnist"), or NULL when
                              that data set has no fixed place (CIFAR-10: cifar10:DIR) */
} nn_preset;
NN_API const nn_preset *nn_preset_find(const char *name);
NN_API int nn_preset_count(void);
NN_API const nn_preset *nn_preset_at(int i);

/* ---- runs (ARCHITECTURE.md §8): recipe + model + optimizer + data stream + history ---------------
 * A run directory holds:
 *   model.safetensors  the commit point: weights, optimizer state, data stream, recipe and
 *                      every epoch's history row, replaced atomically once per epoch
 *   best.safetensors   the weights of the best evaluation accuracy so far (with early stopping:
 *                      of the epoch it would put back, the lowest evaluation loss)
 *   history.csv        the history rows as CSV (an export of the checkpoint's rows)
 *   spec.txt           the model spec, canonical text
 *   lock               the PID of the process training it (removed when it ends)
 * A kill at any instant leaves the run at epoch N or N+1, never in between. */
typedef struct {
  char model[512];       /* what the spec was built from: a preset name or a spec file */
  char norm[64];         /* "batch" keeps the spec; "group:G", "layer", "none"; "@before|@after" */
  char bn_placement[16]; /* "" keeps the spec's; "before" or "after" the activation */
  int freeze_bn;         /* nn_spec_freeze_bn */
  nn_init init;
  char init_from[1024]; /* "" or a checkpoint whose weights to start from (fine-tuning) */
  nn_opt_config opt;
  int batch_size, epochs;
  long max_steps; /* 0: no limit */
  uint64_t seed;  /* weights, shuffling, augmentation */
  int shuffle, drop_last;
  nn_input_norm input_norm;
  char augment[128];          /* "" or nn_augment_parse text */
  float val_split;            /* 0: evaluate on the test split; else on the last fraction of train */
  char data[1024];            /* data source, as nn_dataset_open takes it */
  nn_lr_schedule lr_schedule; /* "lr-schedule" and "warmup" (steps); constant by default */
  int accumulate;             /* "accumulate": batches per optimizer step (1: none) */
  int early_stop;             /* "early-stop" PATIENCE[:MIN_DELTA] on the evaluation loss (0: off) */
  double early_stop_delta;
  float divergence_factor; /* "divergence-factor" (nn_fit_config; 0: off) */
  int nan_check;           /* "nan-check" */
  int sync_bn;             /* "sync-bn": data parallel (nn_run_set_comm), batchnorm statistics over the
                              global batch (1, the default) or per process (0) */
} nn_recipe;
/* A preset's recipe (its optimizer, batch, epochs, input transform, init), data
 * "fashion-mnist", seed 42, shuffled, no augmentation. NULL: Adam's defaults, batch 32,
 * 10 epochs, inputs in [0, 1]. */
NN_API nn_recipe nn_recipe_default(const nn_preset *p);
/* Contradictions in a recipe, which nn_run_create refuses: momentum or nesterov with Adam/AdamW
 * (they would be ignored), freeze-bn without init-from (there are no trained statistics to
 * freeze), onecycle with a warmup, accumulate < 1. */
NN_API nn_status nn_recipe_check(const nn_recipe *r, nn_error *err);
/* Override one field by key with its text value, checked ("lr", "0.05"). Keys: model, norm,
 * bn-placement, freeze-bn, init, init-from, optimizer, lr, momentum, nesterov,
 * weight-decay, beta1, beta2, adam-eps, keras-eps, batch, epochs, max-steps, seed, shuffle,
 * drop-last, input-norm (MEAN,STD), augment, val-split, data, lr-schedule, warmup,
 * accumulate, early-stop, divergence-factor, nan-check, sync-bn. A new optimizer kind resets
 * its hyper-parameters to that kind's defaults: set "optimizer" before them. Errors start
 * with the key. */
NN_API nn_status nn_recipe_set(nn_recipe *r, const char *key, const char *value, nn_error *err);
/* The keys in order, and a field's value as text (what nn_recipe_set reads back). */
NN_API int nn_recipe_num_keys(void);
NN_API const char *nn_recipe_key(int k);
NN_API void nn_recipe_get(const nn_recipe *r, int k, char *buf, size_t len);

typedef struct nn_run nn_run;
/* A new run of `spec` (normalization choices of the recipe applied to a copy), initialised
 * from the seed or from recipe->init_from, with its data opened and checked against the
 * model. dir (NULL: nothing is written) is created if needed and locked; a directory that
 * already holds a run is refused unless overwrite (its files are then replaced as the new
 * run saves). Errors are one line naming the file, key or layer. */
NN_API nn_status nn_run_create(const nn_recipe *r, const nn_spec *spec, const char *dir, int overwrite,
                               nn_run **out, nn_error *err);
/* Reopen the run in dir (locked) exactly where it stopped: after its last finished epoch, or
 * inside an epoch where max_steps paused it or on_batch stopped it (at an optimizer step):
 * recipe, model, optimizer, data stream, history. Stale temporaries are removed. */
NN_API nn_status nn_run_resume(const char *dir, nn_run **out, nn_error *err);
/* The same state, read only: no lock, nothing written (the other processes of a data-parallel
 * training, whose rank 0 resumed the run with nn_run_resume). */
NN_API nn_status nn_run_resume_reader(const char *dir, nn_run **out, nn_error *err);
/* The same state to look at (plot, report, export): no lock, nothing written, and no data
 * set opened, so a run whose data is not on this machine opens, and opens at once.
 * nn_run_train_data and nn_run_eval_data return NULL until nn_run_load_data (nn_run_train
 * loads it itself). Since 0.2.5. */
NN_API nn_status nn_run_open_view(const char *dir, nn_run **out, nn_error *err);
/* Open and check the data of a run opened without it (nn_run_open_view); NN_OK at once when
 * the run has its data. Since 0.2.5. */
NN_API nn_status nn_run_load_data(nn_run *run, nn_error *err);
/* The same for the evaluation data alone (nn_run_eval_data: the test split, read without the
 * training set; a validation split is cut from the training set, which is then read too), for
 * an evaluation of a finished run. nn_run_load_data (or nn_run_train) reads the rest later.
 * Since 0.2.7. */
NN_API nn_status nn_run_load_eval_data(nn_run *run, nn_error *err);
/* Train data parallel over comm (nn_dist_init); NULL: one process. The run keeps a copy of
 * *comm whose sync_bn is the recipe's (the recorded choice, also on resume), whatever
 * comm->sync_bn says. */
NN_API void nn_run_set_comm(nn_run *run, const nn_comm *comm);
/* Extend (or shorten) a run: the only recipe fields a resumed run may change. Epochs cannot
 * change once a cosine or onecycle schedule has taken steps (their length is the epochs'
 * steps: the steps taken would have had other learning rates). */
NN_API nn_status nn_run_set_epochs(nn_run *run, int epochs, nn_error *err);
NN_API nn_status nn_run_set_max_steps(nn_run *run, long max_steps, nn_error *err);
/* Train from where the run is to its epochs / max steps, committing every epoch to the run
 * directory (before cb->on_epoch_end is called). */
NN_API nn_status nn_run_train(nn_run *run, const nn_fit_callbacks *cb, nn_error *err);
/* 1 if the run has nothing left to train (all epochs done, max steps reached, or early
 * stopping ended it). */
NN_API int nn_run_finished(const nn_run *run);
/* The epoch at which early stopping ended the run (its patience ran out), or 0. A resumed
 * run goes on counting from its history: the patience does not start over. */
NN_API int nn_run_stopped_early(const nn_run *run);
/* The epoch best.safetensors holds (1-based; 0 before any): the best evaluation accuracy, or
 * with early stopping the epoch it keeps (the lowest evaluation loss by its MIN_DELTA rule),
 * which is also the model's weights once early stopping has ended the run. */
NN_API int nn_run_best_epoch(const nn_run *run);
/* The epochs finished: the history's rows, less the last one when it is part of an epoch (a
 * run paused by max steps inside it, which a resume goes on from). Since 0.3.0. */
NN_API int nn_run_epochs_done(const nn_run *run);
NN_API const nn_recipe *nn_run_recipe(const nn_run *run);
NN_API nn_model *nn_run_model(nn_run *run);
NN_API const nn_history *nn_run_history(const nn_run *run);
NN_API long nn_run_steps(const nn_run *run);
/* The training data (NULL for a view before nn_run_load_data). */
NN_API const nn_dataset *nn_run_train_data(const nn_run *run);
/* The evaluation data: the validation split, or the test split (NULL as above). */
NN_API const nn_dataset *nn_run_eval_data(const nn_run *run);
NN_API const char *nn_run_dir(const nn_run *run);
/* Release the run (and its lock). */
NN_API void nn_run_free(nn_run *run);

#ifdef __cplusplus
}
#endif
#endif
