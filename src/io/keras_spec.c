/* The model spec of a Keras 3 Sequential's config.json (ARCHITECTURE.md §10): what lets a
 * .keras file written by Keras's model.save (or by normnet export) be evaluated, inspected or
 * fine-tuned without a spec beside it.
 *
 * A Sequential, or a functional model (keras.Model(inputs, outputs)) whose layers form one
 * chain from its input to its output in the config's order (seed 001 §10 builds one), layer
 * by layer in the reverse of the exporter's mapping (src/export/keras.c):
 *   InputLayer(batch_shape [None, H, W, C] or [None, F])   input shape=CxHxW | F
 *   ... or [None, H, W] before a Flatten                     input shape=1xHxW
 *   Rescaling (first)            nothing here: the loader makes it the input transform
 *   ZeroPadding2D(p) + Conv2D    conv2d ... pad=p (symmetric; "same": odd kernel, stride 1)
 *   Conv2D / Dense               conv2d filters kernel stride pad bias / dense units bias,
 *                                then their activation (relu, sigmoid, tanh) as a layer
 *   BatchNormalization           batchnorm convention=keras momentum eps [affine=0 | center=0 | scale=0]
 *   GroupNormalization           groupnorm groups eps affine
 *   LayerNormalization           layernorm eps affine (over the whole sample: axis -1 on
 *                                features, [1, 2, 3] on images)
 *   Activation / ReLU            relu, sigmoid, tanh; linear is nothing
 *   softmax (last layer only)    nothing: normnet's models end in logits, the loss and
 *                                predict apply the softmax
 *   Max/AveragePooling2D "valid" maxpool2d / avgpool2d size stride
 *   GlobalAveragePooling2D, Flatten, Dropout    global_avgpool, flatten, dropout rate
 *   RandomFlip, RandomRotation, ... (also nested in a Sequential)   nothing: the identity at
 *                                inference (normnet augments in its data pipeline, --augment)
 * Anything else (another layer class, channels_first, dilation, grouped convolutions, a Dense
 * on an image tensor, "same" pooling) is refused naming the Keras layer: its numbers would not
 * be Keras's. Shapes are checked afterwards by the spec parser and the weight loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "io/keras_json.h"
#include "io/keras_spec.h"

/* The activation named by a layer's "activation" (Dense, Conv2D, Activation): its spec line
 * ("" for linear and for a final softmax), or NULL if normnet has none there. */
static const char *activation_line(const char *act, int last) {
  if (!*act || !strcmp(act, "linear")) return "";
  if (!strcmp(act, "relu") || !strcmp(act, "sigmoid") || !strcmp(act, "tanh")) return act;
  if (!strcmp(act, "softmax") && last) return "";
  return NULL;
}

/* 1 for a layer that is the identity at inference, where a model normnet reads has none:
 * Keras's random augmentation layers (normnet augments in the data pipeline: --augment), and
 * a nested Sequential of them (seed 001 §13 prepends one). */
static int inference_identity(const json_t *L, int depth) {
  static const char *const random[] = {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                                       "RandomContrast", "RandomBrightness", "GaussianNoise"};
  const char *cls = kj_str(L, "class_name");
  for (size_t i = 0; i < sizeof random / sizeof *random; i++)
    if (!strcmp(cls, random[i])) return 1;
  if (strcmp(cls, "Sequential") || depth >= 4) return 0;
  const json_t *layers = json_object_get(json_object_get(L, "config"), "layers");
  if (!json_is_array(layers)) return 0;
  for (size_t i = 0; i < json_array_size(layers); i++) {
    const json_t *e = json_array_get(layers, i);
    if (strcmp(kj_str(e, "class_name"), "InputLayer") && !inference_identity(e, depth + 1)) return 0;
  }
  return 1;
}

/* The first of the integer keys the importer reads (either element of a pair) that c holds
 * with an invalid value (KJ_BAD_INT), or NULL: an out-of-range stride had been read as the
 * default 1, and the checks per layer would name it by a consequence ("strides that differ"). */
static const char *bad_int_key(const json_t *c) {
  static const char *const keys[] = {"filters", "kernel_size", "strides", "dilation_rate", "groups", "units", "pool_size"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
    for (int idx = 0; idx < 2; idx++)
      if (kj_int_at(c, keys[k], idx, 0) == KJ_BAD_INT) return keys[k];
  return NULL;
}

/* The symmetric padding of a ZeroPadding2D config (an integer, or ((t, b), (l, r)) all
 * equal), -1 otherwise. */
static int zero_padding(const json_t *c) {
  const json_t *p = json_object_get(c, "padding");
  if (json_is_integer(p)) return (int)json_integer_value(p) >= 0 && json_integer_value(p) < 4096 ? (int)json_integer_value(p) : -1;
  int v = -1;
  for (size_t i = 0; i < 2; i++)
    for (size_t j = 0; j < 2; j++) {
      const json_t *e = json_array_get(json_array_get(p, i), j);
      if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= 4096 ||
          (v >= 0 && json_integer_value(e) != v))
        return -1;
      v = (int)json_integer_value(e);
    }
  return v;
}

long nn_keras_same_pad_total(long in, int k, int st) {
  const long out = (in + st - 1) / st, total = (out - 1) * st + k - in;
  return total > 0 ? total : 0;
}

/* The input's dims (after the batch's None): from the InputLayer, or from the first layer's
 * build_config when the model was built without keras.Input. 0 if there is none. */
static int input_dims(const json_t *layers, int *dims) {
  const json_t *first = json_array_get(layers, 0);
  const json_t *c = json_object_get(first, "config"), *shape = NULL;
  if (!strcmp(kj_str(first, "class_name"), "InputLayer")) {
    shape = json_object_get(c, "batch_shape");
    if (!shape) shape = json_object_get(c, "batch_input_shape");
  } else {
    shape = json_object_get(json_object_get(first, "build_config"), "input_shape");
  }
  size_t n = json_array_size(shape);
  if (n < 2 || n > 4) return 0;
  for (size_t i = 1; i < n; i++) {
    const json_t *d = json_array_get(shape, i);
    if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > (1 << 24)) return 0;
    dims[i - 1] = (int)json_integer_value(d);
  }
  if (n == 3) dims[2] = 1; /* a grey image without its channel axis: (H, W) as (H, W, 1) */
  return (int)n - 1;
}

/* 1 if a normalization's axis is the channels' (-1, or the last axis, alone or in a
 * one-element list). */
static int channel_axis(const json_t *c, int rank) {
  const json_t *a = json_object_get(c, "axis");
  if (json_is_array(a) && json_array_size(a) == 1) a = json_array_get(a, 0);
  return !a || (json_is_integer(a) && (json_integer_value(a) == -1 || json_integer_value(a) == rank));
}

/* 1 if a LayerNormalization's axis covers the whole sample of a rank-3 tensor. */
static int whole_image_axis(const json_t *c) {
  const json_t *a = json_object_get(c, "axis");
  if (json_array_size(a) != 3) return 0;
  int seen = 0;
  for (size_t i = 0; i < 3; i++) {
    const json_t *e = json_array_get(a, i);
    long long v = json_is_integer(e) ? json_integer_value(e) : 0;
    if (v < 0) v += 4;
    if (v >= 1 && v <= 3) seen |= 1 << v;
  }
  return seen == 0xe;
}

/* center and scale together (normnet's affine); -1 when they differ. */
static int affine_of(const json_t *c) {
  int center = kj_bool(c, "center", 1), scale = kj_bool(c, "scale", 1);
  return center == scale ? center : -1;
}

/* A BatchNormalization's affine as batchnorm keys: both, neither, or one kept fixed. */
static const char *bn_affine_keys(const json_t *c) {
  const int center = kj_bool(c, "center", 1), scale = kj_bool(c, "scale", 1);
  return center && scale ? "affine=1" : !center && !scale ? "affine=0"
                                    : center              ? "affine=1 scale=0"
                                                          : "affine=1 center=0";
}

/* The name of the layer a functional layer's single input comes from (Keras 3: the
 * keras_history of its one argument; Keras 2: [[[name, 0, 0, {}]]]), or NULL. */
static const char *inbound_name(const json_t *L) {
  const json_t *nodes = json_object_get(L, "inbound_nodes");
  if (json_array_size(nodes) != 1) return NULL;
  const json_t *node = json_array_get(nodes, 0), *h = NULL;
  if (json_is_object(node)) {
    const json_t *args = json_object_get(node, "args");
    if (json_array_size(args) != 1) return NULL;
    h = json_object_get(json_object_get(json_array_get(args, 0), "config"), "keras_history");
  } else if (json_array_size(node) == 1) {
    h = json_array_get(node, 0);
  }
  return json_string_value(json_array_get(h, 0));
}

/* The name of the layer a functional model's input_layers / output_layers entry names
 * ([name, 0, 0] or [[name, 0, 0]]), or "". */
static const char *end_name(const json_t *e) {
  if (json_array_size(e) == 1) e = json_array_get(e, 0);
  const char *s = json_string_value(json_array_get(e, 0));
  return s ? s : "";
}

int nn_keras_is_chain(const json_t *config) {
  const json_t *c = json_object_get(config, "config"), *layers = json_object_get(c, "layers");
  const char *cls = kj_str(config, "class_name");
  if (!json_is_array(layers) || json_array_size(layers) < 2) return 0;
  if (!strcmp(cls, "Sequential")) return 1;
  if (strcmp(cls, "Functional") && strcmp(cls, "Model")) return 0;
  /* functional: a chain from the one input to the one output, in the list's order */
  const json_t *first = json_array_get(layers, 0), *last = json_array_get(layers, json_array_size(layers) - 1);
  if (strcmp(kj_str(first, "class_name"), "InputLayer") || strcmp(end_name(json_object_get(c, "input_layers")), kj_str(json_object_get(first, "config"), "name")) ||
      strcmp(end_name(json_object_get(c, "output_layers")), kj_str(json_object_get(last, "config"), "name")))
    return 0;
  for (size_t i = 1; i < json_array_size(layers); i++) {
    const char *from = inbound_name(json_array_get(layers, i));
    if (!from || strcmp(from, kj_str(json_object_get(json_array_get(layers, i - 1), "config"), "name"))) return 0;
  }
  return 1;
}

nn_status nn_keras_config_spec(const json_t *config, const char *path, char **text, nn_error *err) {
  *text = NULL;
  const json_t *layers = json_object_get(json_object_get(config, "config"), "layers");
  if (!nn_keras_is_chain(config))
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: config.json is not a keras.Sequential or a functional model whose layers form one chain "
                      "(class %s)",
                      path, kj_str(config, "class_name"));
  int dims[3] = {1, 1, 1}, rank = input_dims(layers, dims);
  if (!rank)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: the model's config gives no input shape normnet reads (batch_shape [None, F], [None, H, W] "
                      "or [None, H, W, C])",
                      path);
  const int flat_image = rank == 2; /* (H, W): only Flatten may take it (Keras's Dense would go row by row) */
  nn_strbuf b = nn_strbuf_new();
  nn_strbuf_printf(&b, "# from the Keras model in %s\n", path);
  if (rank == 1) nn_strbuf_printf(&b, "input shape=%d\n", dims[0]);
  else nn_strbuf_printf(&b, "input shape=%dx%dx%d\n", dims[2], dims[0], dims[1]);
  rank = rank == 1 ? 1 : 3;
  const size_t n = json_array_size(layers);
  int pad = 0, started = 0;
  long h = dims[0], w = dims[1], ch = dims[2]; /* an image's height, width and channels so far (rank 3) */
  int hwc_flat = 0;                            /* flattened from an image of several pixels and channels: features in Keras's HWC order */
  const char *why = NULL;
  size_t i = 0;
  char buf[320], n1[32], n2[32];
  for (; i < n; i++) {
    const json_t *L = json_array_get(layers, i), *c = json_object_get(L, "config");
    const char *cls = kj_str(L, "class_name");
    const int last = i + 1 == n;
    if (!strcmp(cls, "InputLayer") || inference_identity(L, 0)) continue;
    const char *bad = bad_int_key(c);
    if (bad) {
      snprintf(buf, sizeof buf, "%s is not an integer in [-2^30, 2^30] (nor a list of them)", bad);
      why = buf;
      break;
    }
    if (pad && strcmp(cls, "Conv2D")) {
      why = "ZeroPadding2D is not followed by a Conv2D";
      break;
    }
    if (!strcmp(cls, "Rescaling")) {
      if (started || !(kj_num(c, "scale", 0) > 0)) {
        why = "a Rescaling other than the first layer's scalar x * scale + offset";
        break;
      }
      continue; /* the loader makes it the input transform */
    }
    if (flat_image && !started && strcmp(cls, "Flatten")) {
      snprintf(buf, sizeof buf, "a 2-D input (%d, %d) that is not flattened first (give it a channel axis: Input((%d, %d, 1)))",
               dims[0], dims[1], dims[0], dims[1]);
      why = buf;
      break;
    }
    started = 1;
    if (!strcmp(cls, "ZeroPadding2D")) {
      if ((pad = zero_padding(c)) < 0) why = "padding that is not the same on every side";
    } else if (!strcmp(cls, "Conv2D")) {
      const int k = kj_int_at(c, "kernel_size", 0, -1), s = kj_int_at(c, "strides", 0, 1);
      const char *padding = *kj_str(c, "padding") ? kj_str(c, "padding") : "valid"; /* Keras's default */
      const char *act = activation_line(kj_str(c, "activation"), last);
      if (rank != 3) why = "a Conv2D after Flatten";
      else if (kj_int_at(c, "filters", 0, 0) < 1) why = "no filters";
      else if (!strcmp(kj_str(c, "data_format"), "channels_first")) why = "data_format channels_first";
      else if (k < 1 || kj_int_at(c, "kernel_size", 1, -1) != k) why = "a kernel that is not square";
      else if (s < 1 || kj_int_at(c, "strides", 1, 1) != s) why = "strides that differ between the axes";
      else if (kj_int_at(c, "dilation_rate", 0, 1) != 1 || kj_int_at(c, "dilation_rate", 1, 1) != 1) why = "dilation";
      else if (kj_int_at(c, "groups", 0, 1) != 1) why = "a grouped convolution";
      else if (strcmp(padding, "same") && strcmp(padding, "valid")) why = "padding other than 'valid' or 'same'";
      else if (!act) {
        snprintf(buf, sizeof buf, "activation '%.64s', which normnet does not have there (softmax only as the last layer)",
                 kj_str(c, "activation"));
        why = buf;
      }
      const int same = !why && !strcmp(padding, "same");
      const long th = same ? nn_keras_same_pad_total(h, k, s) : 0, tw = same ? nn_keras_same_pad_total(w, k, s) : 0;
      if (same && (pad || th != tw || th % 2)) {
        snprintf(buf, sizeof buf,
                 "padding 'same' on a %ldx%ld input with kernel %d, stride %d pads %ld and %ld rows and columns, more "
                 "after than before (normnet pads every side alike)",
                 h, w, k, s, th, tw);
        why = buf;
      }
      if (why) break;
      const int p = same ? (int)(th / 2) : pad;
      if (h + 2 * p < k || w + 2 * p < k) {
        snprintf(buf, sizeof buf, "a %dx%d kernel on a %ldx%ld input (padded by %d)", k, k, h, w, p);
        why = buf;
        break;
      }
      h = (h + 2 * p - k) / s + 1, w = (w + 2 * p - k) / s + 1, ch = kj_int_at(c, "filters", 0, -1);
      nn_strbuf_printf(&b, "conv2d filters=%d kernel=%d stride=%d pad=%d bias=%d\n", kj_int_at(c, "filters", 0, -1), k,
                       s, p, kj_bool(c, "use_bias", 1));
      if (*act) nn_strbuf_printf(&b, "%s\n", act);
      pad = 0;
    } else if (!strcmp(cls, "Dense")) {
      const char *act = activation_line(kj_str(c, "activation"), last);
      if (rank != 1) why = "a Dense on an image tensor (Keras applies it to each pixel; add Flatten)";
      else if (kj_int_at(c, "units", 0, 0) < 1) why = "no units";
      else if (!act) {
        snprintf(buf, sizeof buf, "activation '%.64s', which normnet does not have there (softmax only as the last layer)",
                 kj_str(c, "activation"));
        why = buf;
      }
      if (why) break;
      nn_strbuf_printf(&b, "dense units=%d bias=%d\n", kj_int_at(c, "units", 0, -1), kj_bool(c, "use_bias", 1));
      hwc_flat = 0; /* its units are in one order in both */
      if (*act) nn_strbuf_printf(&b, "%s\n", act);
    } else if (!strcmp(cls, "BatchNormalization")) {
      if (!channel_axis(c, rank)) why = "an axis other than the channels'";
      if (why) break;
      nn_strbuf_printf(&b, "batchnorm convention=keras momentum=%s eps=%s %s\n",
                       nn_fmt_double(n1, sizeof n1, kj_num(c, "momentum", 0.99)), nn_fmt_double(n2, sizeof n2, kj_num(c, "epsilon", 1e-3)),
                       bn_affine_keys(c));
    } else if (!strcmp(cls, "GroupNormalization")) {
      const int affine = affine_of(c);
      if (!channel_axis(c, rank)) why = "an axis other than the channels'";
      else if (affine < 0) why = "center and scale differ";
      else if (hwc_flat)
        why =
            "groups of a flattened image's features (Keras groups them in its HxWxC order, normnet's flatten is "
            "CxHxW)";
      if (why) break;
      nn_strbuf_printf(&b, "groupnorm groups=%d eps=%s affine=%d\n", kj_int_at(c, "groups", 0, 32),
                       nn_fmt_double(n1, sizeof n1, kj_num(c, "epsilon", 1e-3)), affine);
    } else if (!strcmp(cls, "LayerNormalization")) {
      const int affine = affine_of(c);
      if (rank == 1 ? !channel_axis(c, 1) : !whole_image_axis(c))
        why = "an axis other than the whole sample's (normnet's layernorm normalizes each sample as a whole)";
      else if (affine < 0) why = "center and scale differ";
      if (why) break;
      nn_strbuf_printf(&b, "layernorm eps=%s affine=%d\n", nn_fmt_double(n1, sizeof n1, kj_num(c, "epsilon", 1e-3)), affine);
    } else if (!strcmp(cls, "Activation") || !strcmp(cls, "Softmax") || !strcmp(cls, "ReLU")) {
      const char *act = !strcmp(cls, "Activation") ? kj_str(c, "activation") : !strcmp(cls, "ReLU") ? "relu"
                                                                                                    : "softmax";
      if (!strcmp(cls, "ReLU") && (kj_num(c, "negative_slope", 0) != 0 || kj_num(c, "threshold", 0) != 0 ||
                                   json_is_number(json_object_get(c, "max_value"))))
        why = "a ReLU with a slope, threshold or maximum";
      else if (!(act = activation_line(act, last))) {
        snprintf(buf, sizeof buf, "activation '%.64s', which normnet does not have there (softmax only as the last layer)",
                 !strcmp(cls, "Activation") ? kj_str(c, "activation") : cls);
        why = buf;
      }
      if (why) break;
      if (*act) nn_strbuf_printf(&b, "%s\n", act);
    } else if (!strcmp(cls, "MaxPooling2D") || !strcmp(cls, "AveragePooling2D")) {
      const int p = kj_int_at(c, "pool_size", 0, 2);
      const json_t *st = json_object_get(c, "strides");
      const int s = json_is_null(st) || !st ? p : kj_int_at(c, "strides", 0, -1);
      if (rank != 3) why = "pooling after Flatten";
      else if (p < 1 || s < 1) why = "a pool or stride below 1";
      else if (kj_int_at(c, "pool_size", 1, 2) != p || (json_is_array(st) && kj_int_at(c, "strides", 1, -1) != s))
        why = "a pool or stride that is not square";
      else if (!strcmp(kj_str(c, "data_format"), "channels_first")) why = "data_format channels_first";
      else if (!strcmp(kj_str(c, "padding"), "same")) {
        /* 'same' that pads nothing is 'valid' (a 2x2 pool of even sides) */
        if (nn_keras_same_pad_total(h, p, s) || nn_keras_same_pad_total(w, p, s)) {
          snprintf(buf, sizeof buf, "padding 'same' that pads a %ldx%ld input (pool %d, stride %d); normnet pools do not pad", h,
                   w, p, s);
          why = buf;
        }
      } else if (strcmp(kj_str(c, "padding"), "valid") && *kj_str(c, "padding")) why = "padding other than 'valid' or 'same'";
      if (!why && (h < p || w < p)) {
        snprintf(buf, sizeof buf, "a %dx%d pool on a %ldx%ld input", p, p, h, w);
        why = buf;
      }
      if (why) break;
      h = (h - p) / s + 1, w = (w - p) / s + 1;
      nn_strbuf_printf(&b, "%s size=%d stride=%d\n", cls[0] == 'M' ? "maxpool2d" : "avgpool2d", p, s);
    } else if (!strcmp(cls, "GlobalAveragePooling2D")) {
      if (rank != 3) why = "global pooling after Flatten";
      else if (kj_bool(c, "keepdims", 0)) why = "keepdims";
      else if (!strcmp(kj_str(c, "data_format"), "channels_first")) why = "data_format channels_first";
      if (why) break;
      nn_strbuf_printf(&b, "global_avgpool\n");
      rank = 1;
    } else if (!strcmp(cls, "Flatten")) {
      if (rank == 3) nn_strbuf_printf(&b, "flatten\n");
      hwc_flat = rank == 3 && h * w > 1 && ch > 1;
      rank = 1;
    } else if (!strcmp(cls, "Dropout")) {
      nn_strbuf_printf(&b, "dropout rate=%s\n", nn_fmt_double(n1, sizeof n1, kj_num(c, "rate", 0)));
    } else {
      snprintf(buf, sizeof buf, "a %s, which normnet does not have", cls);
      why = buf;
    }
    if (why) break;
  }
  if (why) {
    free(b.buf);
    const json_t *L = json_array_get(layers, i < n ? i : n - 1);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: Keras layer %zu '%s' (%s): %s", path, i,
                      kj_str(json_object_get(L, "config"), "name"), kj_str(L, "class_name"), why);
  }
  if (!b.buf) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  *text = b.buf;
  return NN_OK;
}
