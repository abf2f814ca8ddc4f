/* Keras 3 ".keras" export (ARCHITECTURE.md §10): the zip Keras's own saving_lib writes,
 *
 *   metadata.json     {"keras_version": ..., "date_saved": ...}
 *   config.json       a keras.Sequential of Keras's own layers (serialized as Keras does:
 *                     module, class_name, config, registered_name, build_config)
 *   model.weights.h5  layers/<name>/vars/<i>, float32, in each layer's variable order
 *
 * Mapping (input NHWC in [0, 1]; weights transposed by export/keras_layout.h):
 *   input transform   Rescaling(scale = 1/std, offset = -mean/std), left out when {0, 1}
 *   dense             Dense(units, use_bias)                          kernel, bias
 *   conv2d            [ZeroPadding2D(pad)] Conv2D(filters, kernel, strides, "valid")
 *   batchnorm         BatchNormalization(axis=-1, momentum in Keras's convention, epsilon,
 *                     center/scale = affine)      gamma, beta, moving_mean, moving_variance
 *   relu/sigmoid/tanh Activation;  maxpool2d/avgpool2d MaxPooling2D/AveragePooling2D "valid"
 *   global_avgpool    GlobalAveragePooling2D;  flatten Flatten;  dropout Dropout(rate)
 *   groupnorm         GroupNormalization(groups, axis=-1)
 *   layernorm         LayerNormalization over the whole sample (axis [1,2,3] or [-1]);
 *                     gamma/beta [H,W,C]
 *   instancenorm      GroupNormalization(groups=C), or BatchNormalization when it tracks
 *                     running statistics (inference semantics are the same)
 *   end               Activation("softmax"), as the seeds' models end
 * Layer names follow Keras's automatic ones ("dense", "dense_1", ...). The bytes depend only
 * on the model: HDF5 object times are off, zip entries are stored with a fixed DOS date, and
 * metadata.json carries a fixed date_saved. HDF5 errors are collected, never printed. */
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "base/atomic_file.h"
#include "base/error.h"
#include "export/export.h"
#include "export/keras_layout.h"
#include "model/model.h"

#define KERAS_FORMAT_VERSION "3.0.0"
#define KERAS_FIXED_DATE "1980-01-01@00:00:00"

typedef struct {
  json_t *layers;
  hid_t file, layers_grp, gcpl, dcpl;
  const char *used[32]; /* class base names already used and their counts */
  int used_n[32], nused;
  nn_keras_flat flat; /* layout of the current flat features */
  int failed;
} kctx;

static json_t *shape_json(nn_shape s) {
  json_t *a = json_array();
  json_array_append_new(a, json_null());
  if (s.rank == 3) {
    json_array_append_new(a, json_integer(s.h));
    json_array_append_new(a, json_integer(s.w));
  }
  json_array_append_new(a, json_integer(s.c));
  return a;
}

static json_t *pair_json(int a, int b) { return json_pack("[ii]", a, b); }

/* Keras's automatic name: base, base_1, base_2, ... */
static void layer_name(kctx *k, const char *base, char *out, size_t len) {
  int i = 0;
  while (i < k->nused && strcmp(k->used[i], base)) i++;
  if (i == k->nused && k->nused < 32) {
    k->used[k->nused] = base;
    k->used_n[k->nused++] = 0;
  }
  int n = i < 32 ? k->used_n[i]++ : 0;
  if (n) snprintf(out, len, "%s_%d", base, n);
  else snprintf(out, len, "%s", base);
}

static void set_name_attr(kctx *k, hid_t obj, const char *name) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t a = H5Acreate2(obj, "name", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, t, &name) < 0) k->failed = 1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

/* layers/<name>/vars with the name attribute, as Keras's H5IOStore makes it. */
static hid_t vars_group(kctx *k, const char *name) {
  hid_t g = H5Gcreate2(k->layers_grp, name, H5P_DEFAULT, k->gcpl, H5P_DEFAULT);
  if (g < 0) {
    k->failed = 1;
    return -1;
  }
  hid_t v = H5Gcreate2(g, "vars", H5P_DEFAULT, k->gcpl, H5P_DEFAULT);
  H5Gclose(g);
  if (v < 0) {
    k->failed = 1;
    return -1;
  }
  set_name_attr(k, v, name);
  return v;
}

static void put_var(kctx *k, hid_t vars, int idx, const float *data, const int *dims, int ndim) {
  if (vars < 0) return;
  hsize_t d[4];
  for (int i = 0; i < ndim; i++) d[i] = (hsize_t)dims[i];
  char nm[16];
  snprintf(nm, sizeof nm, "%d", idx);
  hid_t sp = H5Screate_simple(ndim, d, NULL);
  hid_t ds = H5Dcreate2(vars, nm, H5T_IEEE_F32LE, sp, H5P_DEFAULT, k->dcpl, H5P_DEFAULT);
  if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) k->failed = 1;
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
}

/* Append a layer to config.json, named `shown` (NULL: as its weight group), and make its
 * weight group, named by Keras's rule (base[_N]); returns the vars group (close it with
 * H5Gclose) and takes ownership of cfg. */
static hid_t add_layer_named(kctx *k, const char *cls, const char *base, const char *shown, json_t *cfg, nn_shape in) {
  char name[64];
  layer_name(k, base, name, sizeof name);
  json_t *c = json_object();
  json_object_set_new(c, "name", json_string(shown ? shown : name));
  json_object_set_new(c, "trainable", json_true());
  json_object_set_new(c, "dtype", json_string("float32"));
  json_object_update(c, cfg);
  json_decref(cfg);
  json_t *entry = json_pack("{s:s, s:s, s:o, s:n, s:{s:o}}", "module", "keras.layers", "class_name", cls, "config", c,
                            "registered_name", "build_config", "input_shape", shape_json(in));
  if (!entry || json_array_append_new(k->layers, entry)) k->failed = 1;
  return vars_group(k, name);
}

static hid_t add_layer(kctx *k, const char *cls, const char *base, json_t *cfg, nn_shape in) {
  return add_layer_named(k, cls, base, NULL, cfg, in);
}

static void close_vars(hid_t v) {
  if (v >= 0) H5Gclose(v);
}

static json_t *activation(const char *fn) { return json_pack("{s:s}", "activation", fn); }

/* A per-channel (or per-feature) vector as Keras orders it. */
static void put_channel_var(kctx *k, hid_t v, int idx, const float *src, const nn_layer *L, float *tmp) {
  const int c = L->in.c;
  if (L->in.rank == 1 && k->flat.h * k->flat.w > 1) {
    nn_keras_features(src, tmp, k->flat, 1);
    src = tmp;
  }
  const int dims[1] = {c};
  put_var(k, v, idx, src, dims, 1);
}

static void batchnorm_layer(kctx *k, const nn_layer *L, double momentum_keras, double eps, float *tmp) {
  int center, scale;
  nn_keras_center_scale(L, &center, &scale);
  json_t *cfg = json_pack("{s:i, s:f, s:f, s:b, s:b}", "axis", -1, "momentum", momentum_keras, "epsilon", eps, "center",
                          center, "scale", scale);
  hid_t v = add_layer(k, "BatchNormalization", "batch_normalization", cfg, L->in);
  int i = 0;
  if (scale) put_channel_var(k, v, i++, nn_param_ptr(L, L->p, 0), L, tmp);
  if (center) put_channel_var(k, v, i++, nn_param_ptr(L, L->p, 1), L, tmp);
  put_channel_var(k, v, i++, nn_state_ptr(L, 0), L, tmp);
  put_channel_var(k, v, i++, nn_state_ptr(L, 1), L, tmp);
  close_vars(v);
}

static void groupnorm_layer(kctx *k, const nn_layer *L, int groups, double eps, int affine, float *tmp) {
  json_t *cfg = json_pack("{s:i, s:i, s:f, s:b, s:b}", "groups", groups, "axis", -1, "epsilon", eps, "center", affine,
                          "scale", affine);
  hid_t v = add_layer(k, "GroupNormalization", "group_normalization", cfg, L->in);
  if (affine) {
    put_channel_var(k, v, 0, nn_param_ptr(L, L->p, 0), L, tmp);
    put_channel_var(k, v, 1, nn_param_ptr(L, L->p, 1), L, tmp);
  }
  close_vars(v);
}

static nn_status emit_layer(kctx *k, const nn_layer *L, float *tmp, nn_error *err) {
  const nn_layer_cfg *cfg = &L->cfg;
  char lname[64];
  nn_layer_name(L, lname, sizeof lname);
  hid_t v;
  switch (L->kind) {
    case NN_LAYER_DENSE: {
      v = add_layer(k, "Dense", "dense",
                    json_pack("{s:i, s:s, s:b}", "units", cfg->dense.units, "activation", "linear", "use_bias",
                              cfg->dense.bias),
                    L->in);
      nn_keras_dense_kernel(nn_param_ptr(L, L->p, 0), tmp, L->in.c, L->out.c, k->flat, 1);
      const int kd[2] = {L->in.c, L->out.c}, bd[1] = {L->out.c};
      put_var(k, v, 0, tmp, kd, 2);
      if (cfg->dense.bias) put_var(k, v, 1, nn_param_ptr(L, L->p, 1), bd, 1);
      close_vars(v);
      k->flat = (nn_keras_flat){L->out.c, 1, 1};
      return NN_OK;
    }
    case NN_LAYER_CONV2D: {
      const nn_conv2d_cfg *c = &cfg->conv;
      nn_shape in = L->in;
      if (c->pad > 0) {
        json_t *pad = json_pack("{s:[[ii][ii]], s:s}", "padding", c->pad, c->pad, c->pad, c->pad, "data_format",
                                "channels_last");
        close_vars(add_layer(k, "ZeroPadding2D", "zero_padding2d", pad, in));
        in.h += 2 * c->pad;
        in.w += 2 * c->pad;
      }
      json_t *jc = json_pack("{s:i, s:o, s:o, s:s, s:s, s:[ii], s:i, s:s, s:b}", "filters", c->filters, "kernel_size",
                             pair_json(c->kernel, c->kernel), "strides", pair_json(c->stride, c->stride), "padding",
                             "valid", "data_format", "channels_last", "dilation_rate", 1, 1, "groups", 1, "activation",
                             "linear", "use_bias", c->bias);
      v = add_layer(k, "Conv2D", "conv2d", jc, in);
      nn_keras_conv_kernel(nn_param_ptr(L, L->p, 0), tmp, c->filters, L->in.c, c->kernel, 1);
      const int kd[4] = {c->kernel, c->kernel, L->in.c, c->filters}, bd[1] = {c->filters};
      put_var(k, v, 0, tmp, kd, 4);
      if (c->bias) put_var(k, v, 1, nn_param_ptr(L, L->p, 1), bd, 1);
      close_vars(v);
      return NN_OK;
    }
    case NN_LAYER_BATCHNORM: {
      const nn_bn_cfg *b = &cfg->bn;
      if (!b->track_running_stats)
        return nn_err_set(err, NN_ERR_ARG,
                          "%s: track_running_stats=0 normalizes with batch statistics at inference; Keras's "
                          "BatchNormalization cannot",
                          lname);
      /* Keras's momentum is the weight of the old value; cumulative averaging has no Keras
       * equivalent and only matters for further training: Keras's default then. */
      double m = b->momentum < 0 ? 0.99 : b->convention == NN_BN_KERAS ? b->momentum
                                                                       : 1.0 - b->momentum;
      /* scale=0 / center=0 keep gamma at 1 / beta at 0, which Keras then does not store: a
       * checkpoint holding other values (edited, or set through the API) has no Keras form */
      for (int t = 0; b->affine && t < 2; t++) { /* t = 0: gamma (scale), 1: beta (center) */
        const float *p = nn_param_ptr(L, L->p, t), fixed = t ? 0.0f : 1.0f;
        for (int i = 0; !(t ? b->center : b->scale) && i < L->in.c; i++)
          if (p[i] != fixed)
            return nn_err_set(err, NN_ERR_ARG, "%s: %s=0 but its %s[%d] is %g, not %g: Keras's %s=False has none", lname,
                              t ? "center" : "scale", t ? "beta" : "gamma", i, (double)p[i], (double)fixed,
                              t ? "center" : "scale");
      }
      batchnorm_layer(k, L, m, b->eps, tmp);
      return NN_OK;
    }
    case NN_LAYER_RELU:
    case NN_LAYER_SIGMOID:
    case NN_LAYER_TANH: {
      const char *fn = L->kind == NN_LAYER_RELU ? "relu" : L->kind == NN_LAYER_SIGMOID ? "sigmoid"
                                                                                       : "tanh";
      close_vars(add_layer(k, "Activation", "activation", activation(fn), L->in));
      return NN_OK;
    }
    case NN_LAYER_MAXPOOL2D:
    case NN_LAYER_AVGPOOL2D: {
      int mx = L->kind == NN_LAYER_MAXPOOL2D;
      json_t *jc = json_pack("{s:o, s:s, s:o, s:s}", "pool_size", pair_json(cfg->pool.size, cfg->pool.size), "padding",
                             "valid", "strides", pair_json(cfg->pool.stride, cfg->pool.stride), "data_format",
                             "channels_last");
      close_vars(add_layer(k, mx ? "MaxPooling2D" : "AveragePooling2D", mx ? "max_pooling2d" : "average_pooling2d", jc,
                           L->in));
      return NN_OK;
    }
    case NN_LAYER_GLOBAL_AVGPOOL:
      close_vars(add_layer(k, "GlobalAveragePooling2D", "global_average_pooling2d",
                           json_pack("{s:s, s:b}", "data_format", "channels_last", "keepdims", 0), L->in));
      k->flat = (nn_keras_flat){L->out.c, 1, 1};
      return NN_OK;
    case NN_LAYER_FLATTEN:
      close_vars(add_layer(k, "Flatten", "flatten", json_pack("{s:s}", "data_format", "channels_last"), L->in));
      k->flat = (nn_keras_flat){L->in.c, L->in.h, L->in.w};
      return NN_OK;
    case NN_LAYER_DROPOUT:
      close_vars(add_layer(k, "Dropout", "dropout", json_pack("{s:f, s:n, s:n}", "rate", cfg->dropout.rate, "seed", "noise_shape"),
                           L->in));
      return NN_OK;
    case NN_LAYER_GROUPNORM:
      if (L->in.rank == 1 && k->flat.h * k->flat.w > 1)
        return nn_err_set(err, NN_ERR_ARG,
                          "%s: groups of flattened CxHxW features are not contiguous in Keras's channels-last order",
                          lname);
      groupnorm_layer(k, L, cfg->gn.groups, cfg->gn.eps, cfg->gn.affine, tmp);
      return NN_OK;
    case NN_LAYER_INSTANCENORM:
      if (cfg->gn.track_running_stats) batchnorm_layer(k, L, 1.0 - cfg->gn.momentum, cfg->gn.eps, tmp);
      else groupnorm_layer(k, L, L->in.c, cfg->gn.eps, cfg->gn.affine, tmp);
      return NN_OK;
    case NN_LAYER_LAYERNORM: {
      json_t *axis = L->in.rank == 3 ? json_pack("[iii]", 1, 2, 3) : json_pack("[i]", -1);
      json_t *jc = json_pack("{s:o, s:f, s:b, s:b}", "axis", axis, "epsilon", cfg->gn.eps, "center", cfg->gn.affine,
                             "scale", cfg->gn.affine);
      v = add_layer(k, "LayerNormalization", "layer_normalization", jc, L->in);
      for (int i = 0; cfg->gn.affine && i < 2; i++) {
        const float *p = nn_param_ptr(L, L->p, i);
        if (L->in.rank == 3) {
          nn_keras_chw(p, tmp, L->in.c, L->in.h, L->in.w, 1);
          const int d[3] = {L->in.h, L->in.w, L->in.c};
          put_var(k, v, i, tmp, d, 3);
        } else {
          put_channel_var(k, v, i, p, L, tmp);
        }
      }
      close_vars(v);
      return NN_OK;
    }
    case NN_LAYER__COUNT:
      break;
  }
  return nn_err_set(err, NN_ERR_ARG, "%s: no Keras mapping for this layer kind", lname);
}

/* config.json for the layer list. */
static char *config_text(const nn_model *m, json_t *layers) {
  const nn_layer *first = &m->layers[0];
  json_t *input = json_pack("{s:s, s:s, s:{s:o, s:s, s:b, s:b, s:s, s:b}, s:n}", "module", "keras.layers",
                            "class_name", "InputLayer", "config", "batch_shape", shape_json(first->in), "dtype",
                            "float32", "sparse", 0, "ragged", 0, "name", "input_layer", "optional", 0,
                            "registered_name");
  json_array_insert_new(layers, 0, input);
  json_t *root = json_pack("{s:s, s:s, s:{s:s, s:b, s:s, s:O}, s:n, s:{s:o}, s:{}}", "module", "keras", "class_name",
                           "Sequential", "config", "name", "sequential", "trainable", 1, "dtype", "float32", "layers",
                           layers, "registered_name", "build_config", "input_shape", shape_json(first->in),
                           "compile_config");
  char *text = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(root);
  return text;
}

/* HDF5 file in memory (core driver, no backing store): its bytes. */
static nn_status h5_image(hid_t file, unsigned char **out, size_t *len, nn_error *err) {
  *out = NULL;
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) return nn_err_set(err, NN_ERR_IO, "Keras export: HDF5 flush failed");
  ssize_t n = H5Fget_file_image(file, NULL, 0);
  if (n <= 0) return nn_err_set(err, NN_ERR_IO, "Keras export: HDF5 image size unavailable");
  *out = malloc((size_t)n);
  if (!*out) return nn_err_set(err, NN_ERR_NOMEM, "Keras export: out of memory");
  if (H5Fget_file_image(file, *out, (size_t)n) != n) {
    free(*out);
    *out = NULL;
    return nn_err_set(err, NN_ERR_IO, "Keras export: HDF5 image copy failed");
  }
  *len = (size_t)n;
  return NN_OK;
}

/* The weights file's bytes and config.json for model m. */
static nn_status build_parts(const nn_model *m, nn_input_norm norm, unsigned char **h5, size_t *h5len, char **config,
                             nn_error *err) {
  kctx k = {0};
  k.file = k.layers_grp = k.gcpl = k.dcpl = -1;
  nn_status st = NN_OK;
  size_t maxp = 2 * (size_t)nn_model_input_size(m) + 16;
  for (int i = 0; i < m->nlayers; i++)
    for (int j = 0; j < m->layers[i].nparam; j++)
      if (2 * m->layers[i].param[j].count + 16 > maxp) maxp = 2 * m->layers[i].param[j].count + 16;
  for (int i = 0; i < m->nlayers; i++)
    if (2 * nn_shape_size(m->layers[i].in) + 16 > maxp) maxp = 2 * nn_shape_size(m->layers[i].in) + 16;
  float *tmp = malloc(maxp * sizeof *tmp);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  k.gcpl = H5Pcreate(H5P_GROUP_CREATE);
  k.dcpl = H5Pcreate(H5P_DATASET_CREATE);
  k.layers = json_array();
  if (!tmp || !k.layers) st = nn_err_set(err, NN_ERR_NOMEM, "Keras export: out of memory");
  if (!st && (fapl < 0 || k.gcpl < 0 || k.dcpl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
              H5Pset_obj_track_times(k.gcpl, 0) < 0 || H5Pset_obj_track_times(k.dcpl, 0) < 0))
    st = nn_err_set(err, NN_ERR_IO, "Keras export: HDF5 property lists failed");
  if (!st) {
    k.file = H5Fcreate(NN_H5_IMAGE_NAME, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (k.file >= 0) k.layers_grp = H5Gcreate2(k.file, "layers", H5P_DEFAULT, k.gcpl, H5P_DEFAULT);
    hid_t top = k.file >= 0 ? H5Gcreate2(k.file, "vars", H5P_DEFAULT, k.gcpl, H5P_DEFAULT) : -1;
    if (top >= 0) {
      set_name_attr(&k, top, "sequential");
      H5Gclose(top);
    }
    if (k.file < 0 || k.layers_grp < 0 || top < 0) st = nn_err_set(err, NN_ERR_IO, "Keras export: HDF5 create failed");
  }
  const nn_layer *first = m->layers;
  k.flat = (nn_keras_flat){first->in.c, 1, 1};
  if (!st && (norm.mean != 0.0f || norm.std != 1.0f)) {
    /* x' = x * (1/std) + (-mean/std) = (x - mean) / std */
    double scale = 1.0 / (double)norm.std, offset = -(double)norm.mean / (double)norm.std;
    close_vars(add_layer_named(&k, "Rescaling", "rescaling", NN_KERAS_INPUT_LAYER, json_pack("{s:f, s:f}", "scale", scale, "offset", offset),
                               first->in));
  }
  for (int i = 0; !st && i < m->nlayers; i++) st = emit_layer(&k, &m->layers[i], tmp, err);
  if (!st) {
    nn_shape out = {1, nn_model_output_size(m), 1, 1};
    close_vars(add_layer(&k, "Activation", "activation", activation("softmax"), out));
  }
  if (!st && k.failed) st = nn_err_set(err, NN_ERR_IO, "Keras export: writing the HDF5 weights failed");
  if (k.layers_grp >= 0) H5Gclose(k.layers_grp);
  if (!st) st = h5_image(k.file, h5, h5len, err);
  if (!st) {
    *config = config_text(m, k.layers);
    if (!*config) st = nn_err_set(err, NN_ERR_NOMEM, "Keras export: out of memory");
  }
  json_decref(k.layers);
  if (k.file >= 0) H5Fclose(k.file);
  if (fapl >= 0) H5Pclose(fapl);
  if (k.gcpl >= 0) H5Pclose(k.gcpl);
  if (k.dcpl >= 0) H5Pclose(k.dcpl);
  free(tmp);
  if (st) {
    free(*h5);
    *h5 = NULL;
  }
  return st;
}

/* Zip of the three parts, in memory, entries stored with a fixed DOS date (1980-01-01). */
static nn_status zip_parts(const char *const *names, const void *const *data, const size_t *lens, int n,
                           unsigned char **out, size_t *outlen, nn_error *err) {
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
  zip_t *za = src ? zip_open_from_source(src, ZIP_TRUNCATE, &ze) : NULL;
  nn_status st = NN_OK;
  if (!za) {
    st = nn_err_set(err, NN_ERR_IO, "Keras export: zip: %s", zip_error_strerror(&ze));
    if (src) zip_source_free(src);
    zip_error_fini(&ze);
    return st;
  }
  zip_source_keep(src);
  for (int i = 0; i < n && !st; i++) {
    zip_source_t *s = zip_source_buffer(za, data[i], lens[i], 0);
    zip_int64_t idx = s ? zip_file_add(za, names[i], s, ZIP_FL_ENC_UTF_8) : -1;
    if (idx < 0) {
      if (s) zip_source_free(s);
      st = nn_err_set(err, NN_ERR_IO, "Keras export: zip %s: %s", names[i], zip_strerror(za));
    } else if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) ||
               zip_file_set_dostime(za, (zip_uint64_t)idx, 0, (1 << 5) | 1, 0)) {
      st = nn_err_set(err, NN_ERR_IO, "Keras export: zip %s: %s", names[i], zip_strerror(za));
    }
  }
  if (st) {
    zip_discard(za);
  } else if (zip_close(za) != 0) {
    st = nn_err_set(err, NN_ERR_IO, "Keras export: zip: %s", zip_strerror(za));
    zip_discard(za);
  }
  if (!st) {
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_source_stat(src, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE) || zip_source_open(src) != 0) {
      st = nn_err_set(err, NN_ERR_IO, "Keras export: zip: cannot read the archive back");
    } else {
      *out = malloc(zs.size ? zs.size : 1);
      if (!*out) st = nn_err_set(err, NN_ERR_NOMEM, "Keras export: out of memory");
      else if (zip_source_read(src, *out, zs.size) != (zip_int64_t)zs.size)
        st = nn_err_set(err, NN_ERR_IO, "Keras export: zip: short read of the archive");
      *outlen = (size_t)zs.size;
      zip_source_close(src);
    }
  }
  zip_source_free(src);
  zip_error_fini(&ze);
  return st;
}

nn_status nn_export_keras_bytes(const nn_model *m, nn_input_norm norm, unsigned char **out, size_t *len, nn_error *err) {
  *out = NULL;
  *len = 0;
  if (nn_input_norm_check(norm, err)) return nn_err_prefix(err, NN_ERR_ARG, "Keras export: ");
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  unsigned char *h5 = NULL;
  size_t h5len = 0;
  char *config = NULL;
  nn_status st = build_parts(m, norm, &h5, &h5len, &config, err);
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  if (!st) {
    static const char metadata[] =
        "{\"keras_version\": \"" KERAS_FORMAT_VERSION "\", \"date_saved\": \"" KERAS_FIXED_DATE "\"}";
    const char *names[3] = {"metadata.json", "config.json", "model.weights.h5"};
    const void *parts[3] = {metadata, config, h5};
    const size_t lens[3] = {sizeof metadata - 1, strlen(config), h5len};
    st = zip_parts(names, parts, lens, 3, out, len, err);
  }
  free(h5);
  free(config);
  return st;
}

nn_status nn_export_keras(const nn_model *m, nn_input_norm norm, const char *path, nn_error *err) {
  if (!m || !path || !*path) return nn_err_set(err, NN_ERR_ARG, "nn_export_keras: invalid arguments");
  unsigned char *buf;
  size_t len;
  nn_status st = nn_export_keras_bytes(m, norm, &buf, &len, err);
  if (st) return nn_err_prefix(err, st, "%s: ", path);
  st = nn_file_write_atomic(path, buf, len, err);
  free(buf);
  return st;
}
