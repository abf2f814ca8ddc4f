/* Keras import (ARCHITECTURE.md §10): weights of a Keras 3 ".keras" archive or ".weights.h5" file into
 * a model of the same architecture, and recognition of files that are not checkpoints.
 *
 * Keras stores each layer's variables at layers/<name>/vars/<i> of model.weights.h5, in the
 * layer's variable order (Dense: kernel [in,out], bias; Conv2D: kernel [kh,kw,in,out], bias;
 * BatchNormalization: gamma, beta (if scale/center), moving_mean, moving_variance;
 * Group/LayerNormalization: gamma, beta). The layers with variables are matched, in order,
 * to the model's layers with tensors (dense, conv2d, batchnorm, groupnorm, layernorm,
 * instancenorm); every shape must fit exactly and is converted back from Keras's
 * channels-last layout by export/keras_layout.h (the exporter's own mapping, so the two
 * directions agree). From a .keras file the config is checked too: layer classes, units,
 * filters, kernel, strides, padding, BN epsilon and center/scale, and any activation folded
 * into a Dense/Conv2D must be the model's next layer; a leading Rescaling becomes the model's
 * input transform. A .weights.h5 file has no config: its
 * layers are found under Keras's automatic names (dense, dense_1, batch_normalization, ...)
 * in the model's order (Keras saves under those names, not the configured ones). A legacy Keras
 * HDF5 file (model.save("x.h5"), as seed 001 does) lists its layers in model_weights'
 * layer_names and each layer's datasets in its weight_names; its layers with weights are
 * matched in order the same way (shapes checked; its model_config is not read). Nothing is trusted: HDF5 errors are collected, never printed, and
 * every dataset is checked to be float with the expected shape before it is read. */
#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "base/error.h"
#include "base/file_read.h"
#include "export/keras_layout.h"
#include "io/keras_import.h"
#include "io/keras_json.h"
#include "io/keras_spec.h"
#include "model/model.h"

/* A safetensors file's start: its header's length (8 bytes, little-endian, under 4 GiB here)
 * and the header's '{'. A length of 640 + 256 k bytes (k = 0..3, mod 65536) begins 80 02..05,
 * a pickle's protocol mark: the '{' and the zero bytes tell them apart. */
static int safetensors_start(const unsigned char *head, size_t len) {
  return len >= 9 && head[8] == '{' && !head[4] && !head[5] && !head[6] && !head[7];
}

nn_file_kind nn_file_sniff(const unsigned char *head, size_t len) {
  static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (len >= 8 && !memcmp(head, hdf5, 8)) return NN_FILE_HDF5;
  if (len >= 4 && !memcmp(head, "PK\x03\x04", 4)) return NN_FILE_ZIP;
  if (len >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5 && !safetensors_start(head, len))
    return NN_FILE_PICKLE;
  return NN_FILE_OTHER;
}

int nn_checkpoint_uses_hdf5(const char *path) {
  nn_file_kind kind;
  nn_error ignored = {0};
  return !nn_file_kind_of(path, &kind, &ignored) && (kind == NN_FILE_HDF5 || kind == NN_FILE_ZIP);
}

nn_status nn_torch_refusal(const char *path, nn_error *err) {
  return nn_err_set(err, NN_ERR_FORMAT,
                    "%s: a PyTorch pickle (torch.save), not a safetensors checkpoint; convert it with "
                    "/usr/bin/python3 tools/torch_interop.py from-torch %s OUT.safetensors (a plain state_dict "
                    "also needs --spec SPEC)",
                    path, path);
}

nn_status nn_file_kind_of(const char *path, nn_file_kind *kind, nn_error *err) {
  *kind = NN_FILE_OTHER;
  FILE *f = nn_file_fopen_regular(path, NULL, err); /* never a FIFO, device or directory */
  if (!f) return NN_ERR_IO;
  unsigned char head[NN_FILE_SNIFF_BYTES];
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  *kind = nn_file_sniff(head, n);
  return NN_OK;
}

static int torch_zip(const char *path) {
  int ze = 0, torch = 0;
  zip_t *za = zip_open(path, ZIP_RDONLY, &ze);
  if (!za) return 0;
  zip_int64_t n = zip_get_num_entries(za, 0);
  for (zip_int64_t i = 0; i < n && !torch; i++) {
    const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
    size_t len = name ? strlen(name) : 0;
    torch = len >= 8 && !strcmp(name + len - 8, "data.pkl");
  }
  zip_discard(za);
  return torch;
}

nn_status nn_not_safetensors(const char *path, nn_file_kind kind, nn_error *err) {
  if (kind == NN_FILE_PICKLE || (kind == NN_FILE_ZIP && torch_zip(path))) return nn_torch_refusal(path, err);
  return nn_err_set(err, NN_ERR_FORMAT,
                    "%s: a Keras %s file, not a safetensors checkpoint: load it with the spec of the model it holds "
                    "weights for (normnet: --checkpoint FILE --model PRESET|SPECFILE)",
                    path, kind == NN_FILE_ZIP ? ".keras" : ".weights.h5");
}

/* ---- reading --------------------------------------------------------------------------- */

typedef struct {
  const char *path;
  unsigned char *h5img; /* model.weights.h5 bytes from the archive */
  json_t *config;       /* NULL for a bare .weights.h5 */
  hid_t file;
  const char *legacy;    /* legacy Keras HDF5 (model.save("x.h5")): the group holding the layers */
  json_t *legacy_config; /* its root attribute model_config, if any */
} ksrc;

/* A string-array attribute (variable or fixed length) of obj: its count, and with out != NULL
 * its strings copied into out[i] (size len each). -1 if absent or not strings. */
static int string_attr(hid_t obj, const char *name, char (*out)[96], int max) {
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  int count = -1;
  if (H5Tget_class(ft) != H5T_STRING) {
    count = n == 0 ? 0 : -1; /* Keras writes an empty float array for a layer without weights */
  } else if (n >= 0 && n <= max) {
    count = (int)n;
    if (H5Tis_variable_str(ft) > 0) {
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      char **v = calloc((size_t)n + 1, sizeof *v);
      if (v && H5Aread(a, mt, v) >= 0) {
        for (int i = 0; i < count; i++) snprintf(out[i], 96, "%s", v[i] ? v[i] : "");
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v);
      } else {
        count = -1;
      }
      free(v);
      H5Tclose(mt);
    } else {
      size_t w = H5Tget_size(ft);
      char *v = calloc((size_t)n * w + 1, 1);
      if (v && H5Aread(a, ft, v) >= 0)
        for (int i = 0; i < count; i++) snprintf(out[i], 96, "%.*s", (int)(w < 95 ? w : 95), v + (size_t)i * w);
      else count = -1;
      free(v);
    }
  }
  H5Sclose(sp), H5Tclose(ft), H5Aclose(a);
  return count;
}

/* A scalar string attribute of obj (variable or fixed length, at most `limit` bytes),
 * malloc'd; NULL if absent or of another kind. */
static char *text_attr(hid_t obj, const char *name, size_t limit) {
  if (H5Aexists(obj, name) <= 0) return NULL;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t ft = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
  char *out = NULL;
  if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
    if (H5Tis_variable_str(ft) > 0) {
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      char *v = NULL;
      if (H5Aread(a, mt, &v) >= 0 && v) {
        size_t n = strnlen(v, limit + 1);
        if (n <= limit && (out = malloc(n + 1))) memcpy(out, v, n), out[n] = 0;
        H5free_memory(v);
      }
      H5Tclose(mt);
    } else {
      size_t w = H5Tget_size(ft);
      if (w > 0 && w <= limit && (out = calloc(w + 1, 1)) && H5Aread(a, ft, out) < 0) {
        free(out);
        out = NULL;
      }
    }
  }
  if (sp >= 0) H5Sclose(sp);
  if (ft >= 0) H5Tclose(ft);
  if (a >= 0) H5Aclose(a);
  return out;
}

/* Entry `name` of the archive za (the file at path), NUL-terminated, into *out (*len bytes).
 * NN_OK; -1 when there is no such entry (err untouched); else the error status, err
 * naming it. Its size, as the directory says, is checked before allocating: at most `limit`,
 * and above ZIP_SMALL at most ZIP_MAX_RATIO times its compressed size (Keras's weights are
 * floats, which deflate little: a 3 MB archive of 3 GB of zeros took 9 GB and 40 s). */
#define ZIP_SMALL ((zip_uint64_t)64 << 20)
#define ZIP_MAX_RATIO 20
static int zip_entry(zip_t *za, const char *path, const char *name, size_t limit, char **out, size_t *len,
                     nn_error *err) {
  *out = NULL;
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(za, name, 0, &st) != 0) return -1;
  const zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE;
  if ((st.valid & need) != need)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: %s: the archive's directory gives no size", path, name);
  if (st.size > limit || (st.size > ZIP_SMALL && st.size / ZIP_MAX_RATIO > st.comp_size))
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: %s would inflate from %llu to %llu bytes (over %s): refused before reading it", path, name,
                      (unsigned long long)st.comp_size, (unsigned long long)st.size,
                      st.size > limit ? "the limit for it" : "20 times its compressed size");
  zip_file_t *zf = zip_fopen(za, name, 0);
  char *buf = zf ? malloc((size_t)st.size + 1) : NULL;
  zip_int64_t got = buf ? zip_fread(zf, buf, st.size) : -1;
  if (zf) zip_fclose(zf);
  if (got != (zip_int64_t)st.size) {
    free(buf);
    return nn_err_set(err, zf && !buf ? NN_ERR_NOMEM : NN_ERR_FORMAT, "%s: %s: %s", path, name,
                      !zf    ? "cannot be opened (encrypted or of an unknown compression?)"
                      : !buf ? "out of memory"
                             : "shorter than the archive's directory says, or corrupt");
  }
  buf[st.size] = 0;
  *out = buf;
  *len = (size_t)st.size;
  return NN_OK;
}

/* config.json of the archive za (the .keras file at path), parsed. */
static nn_status zip_config(zip_t *za, const char *path, json_t **out, nn_error *err) {
  size_t clen = 0;
  char *cfg = NULL;
  const int got = zip_entry(za, path, "config.json", (size_t)64 << 20, &cfg, &clen, err);
  *out = NULL;
  if (got > 0) return (nn_status)got;
  if (got < 0) {
    if (torch_zip(path)) return nn_torch_refusal(path, err);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: a zip archive without config.json and model.weights.h5 (not a Keras 3 .keras file)", path);
  }
  json_error_t je;
  *out = json_loadb(cfg, clen, JSON_REJECT_DUPLICATES, &je);
  free(cfg);
  if (!*out) return nn_err_set(err, NN_ERR_FORMAT, "%s: config.json line %d: %s", path, je.line, je.text);
  return NN_OK;
}

static nn_status open_source(const char *path, nn_file_kind kind, ksrc *k, nn_error *err) {
  memset(k, 0, sizeof *k);
  k->path = path;
  k->file = -1;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) return nn_err_set(err, NN_ERR_IO, "%s: HDF5 is not usable", path);
  if (kind == NN_FILE_ZIP) {
    int ze = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &ze);
    if (!za) {
      H5Pclose(fapl);
      return nn_err_set(err, NN_ERR_FORMAT, "%s: not a readable zip archive", path);
    }
    size_t hlen = 0;
    nn_status st = zip_config(za, path, &k->config, err);
    char *img = NULL;
    const int got = st ? NN_OK : zip_entry(za, path, "model.weights.h5", (size_t)4 << 30, &img, &hlen, err);
    k->h5img = (unsigned char *)img;
    zip_discard(za);
    if (got > 0) st = (nn_status)got;
    else if (got < 0)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: a zip archive without config.json and model.weights.h5 (not a Keras 3 .keras file)", path);
    if (st) {
      H5Pclose(fapl);
      return st;
    }
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 || H5Pset_file_image(fapl, k->h5img, hlen) < 0) {
      H5Pclose(fapl);
      return nn_err_set(err, NN_ERR_IO, "%s: HDF5 cannot take the weights image", path);
    }
    k->file = H5Fopen(NN_H5_IMAGE_NAME, H5F_ACC_RDONLY, fapl);
  } else {
    k->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  }
  H5Pclose(fapl);
  if (k->file < 0) return nn_err_set(err, NN_ERR_FORMAT, "%s: model.weights.h5 is not a readable HDF5 file", path);
  if (kind == NN_FILE_HDF5 && H5Lexists(k->file, "layers", H5P_DEFAULT) <= 0) {
    if (H5Lexists(k->file, "model_weights", H5P_DEFAULT) > 0) k->legacy = "model_weights";
    else if (H5Aexists(k->file, "layer_names") > 0) k->legacy = "/";
    char *cfg = k->legacy ? text_attr(k->file, "model_config", (size_t)64 << 20) : NULL;
    if (cfg) k->legacy_config = json_loads(cfg, JSON_REJECT_DUPLICATES, NULL);
    free(cfg);
  }
  return NN_OK;
}

static void close_source(ksrc *k) {
  if (k->file >= 0) H5Fclose(k->file);
  json_decref(k->config);
  json_decref(k->legacy_config);
  free(k->h5img);
}

/* layers/<name>/vars/<idx> into dst (count floats, Keras shape dims[nd]). */
static nn_status read_var(ksrc *k, const char *name, int idx, const int *dims, int nd, float *dst, const char *lname,
                          nn_error *err) {
  char path[320];
  snprintf(path, sizeof path, "layers/%s/vars/%d", name, idx);
  if (k->legacy) { /* <root>/<layer>/<weight_names[idx]> */
    char wn[8][96];
    hid_t g = H5Gopen2(k->file, k->legacy, H5P_DEFAULT);
    hid_t lg = g >= 0 ? H5Gopen2(g, name, H5P_DEFAULT) : -1;
    int nw = lg >= 0 ? string_attr(lg, "weight_names", wn, 8) : -1;
    if (lg >= 0) H5Gclose(lg);
    if (g >= 0) H5Gclose(g);
    if (nw <= idx) return nn_err_set(err, NN_ERR_FORMAT, "%s: %s: legacy Keras layer '%s' has no weight %d", k->path, lname, name, idx);
    snprintf(path, sizeof path, "%s/%s/%s", k->legacy, name, wn[idx]);
  } else if (H5Lexists(k->file, "layers", H5P_DEFAULT) <= 0 || H5Lexists(k->file, path, H5P_DEFAULT) <= 0) {
    char alt[256];
    snprintf(alt, sizeof alt, "layers/%s", name);
    if (H5Lexists(k->file, "layers", H5P_DEFAULT) <= 0 || H5Lexists(k->file, alt, H5P_DEFAULT) <= 0)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: %s: no Keras layer '%s' in the weights", k->path, lname, name);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: %s: Keras layer '%s' has no variable %d", k->path, lname, name, idx);
  }
  hid_t ds = H5Dopen2(k->file, path, H5P_DEFAULT);
  if (ds < 0) return nn_err_set(err, NN_ERR_FORMAT, "%s: %s: %s is not a dataset", k->path, lname, path);
  hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
  hsize_t d[8];
  int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1, ok = rank == nd && t >= 0 && H5Tget_class(t) == H5T_FLOAT;
  if (ok) {
    H5Sget_simple_extent_dims(sp, d, NULL);
    for (int i = 0; i < nd; i++) ok &= d[i] == (hsize_t)dims[i];
  }
  char want[64] = "", got[64] = "";
  for (int i = 0; i < nd; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "x" : "", dims[i]);
  for (int i = 0; rank > 0 && rank <= 8 && i < rank; i++) {
    if (i == 0) H5Sget_simple_extent_dims(sp, d, NULL);
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? "x" : "", (unsigned long long)d[i]);
  }
  nn_status st = NN_OK;
  if (!ok)
    st = nn_err_set(err, NN_ERR_SHAPE, "%s: %s: %s is %s%s, the model needs float %s", k->path, lname, path, got,
                    t >= 0 && H5Tget_class(t) != H5T_FLOAT ? " (not float)" : "", want);
  else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    st = nn_err_set(err, NN_ERR_IO, "%s: %s: cannot read %s", k->path, lname, path);
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(ds);
  return st;
}

/* ---- the config's layers with variables, in order ------------------------------------- */

typedef struct {
  const char *cls, *name; /* class and configured name */
  char path[96];          /* its group under layers/ in the weights file */
  json_t *cfg;
  int pad; /* a ZeroPadding2D right before it (symmetric), else 0 */
} klayer;

/* Keras saves a Sequential's layers under the snake_case of their class with a per-class
 * counter in model order ("dense", "dense_1", ...), not under their configured names. */
typedef struct {
  const char *cls[64];
  int n[64], count;
} class_counter;

static void auto_base(const char *cls, char *out, size_t len);

static void weights_name(class_counter *cc, const char *cls, char *out, size_t len) {
  char base[64];
  auto_base(cls, base, sizeof base);
  int u = 0;
  while (u < cc->count && strcmp(cc->cls[u], cls)) u++;
  if (u == cc->count && cc->count < 64) cc->cls[cc->count] = cls, cc->n[cc->count++] = 0;
  int nth = u < 64 ? cc->n[u]++ : 0;
  if (nth) snprintf(out, len, "%s_%d", base, nth);
  else snprintf(out, len, "%s", base);
}

static int weighted_class(const char *cls) {
  static const char *const names[] = {"Dense", "Conv2D", "BatchNormalization", "GroupNormalization",
                                      "LayerNormalization"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(cls, names[i])) return 1;
  return 0;
}

static const char *expected_class(const nn_layer *L) {
  switch (L->kind) {
    case NN_LAYER_DENSE: return "Dense";
    case NN_LAYER_CONV2D: return "Conv2D";
    case NN_LAYER_BATCHNORM: return "BatchNormalization";
    case NN_LAYER_GROUPNORM: return "GroupNormalization";
    case NN_LAYER_LAYERNORM: return "LayerNormalization";
    case NN_LAYER_INSTANCENORM: return L->cfg.gn.track_running_stats ? "BatchNormalization" : "GroupNormalization";
    default: return NULL;
  }
}

/* Keras's automatic base name for a class ("BatchNormalization" -> "batch_normalization"). */
static void auto_base(const char *cls, char *out, size_t len) {
  size_t o = 0;
  for (size_t i = 0; cls[i] && o + 2 < len; i++) {
    char c = cls[i];
    if (c >= 'A' && c <= 'Z') {
      int digit_before = i > 0 && cls[i - 1] >= '0' && cls[i - 1] <= '9';
      if (i > 0 && !digit_before && !(cls[i - 1] >= 'A' && cls[i - 1] <= 'Z')) out[o++] = '_';
      c = (char)(c - 'A' + 'a');
    }
    out[o++] = c;
  }
  out[o] = 0;
}

static int close_to(double a, double b) { return a == b || (a - b) * (a - b) <= 1e-18 * (a * a + b * b); }

/* Check a Keras layer's config against our layer (from a .keras file). */
static nn_status check_config(const ksrc *k, const klayer *kl, const nn_model *m, int li, const char *lname,
                              nn_error *err) {
  const nn_layer *L = &m->layers[li];
  json_t *c = kl->cfg;
  const char *why = NULL;
  char buf[160];
  if (L->kind == NN_LAYER_DENSE) {
    if (kj_int_at(c, "units", 0, -1) != L->out.c) why = "units differ";
    else if (kj_bool(c, "use_bias", 1) != L->cfg.dense.bias) why = "use_bias differs from bias";
  } else if (L->kind == NN_LAYER_CONV2D) {
    const nn_conv2d_cfg *cc = &L->cfg.conv;
    const char *pad = kj_str(c, "padding");
    /* "same": TensorFlow's padding, when it is alike on every side (keras_spec.c) */
    const long th = nn_keras_same_pad_total(L->in.h, cc->kernel, cc->stride),
               tw = nn_keras_same_pad_total(L->in.w, cc->kernel, cc->stride);
    const int same_pad = strcmp(pad, "same") ? -1 : th == tw && th % 2 == 0 ? (int)(th / 2)
                                                                            : -2;
    if (kj_int_at(c, "filters", 0, -1) != cc->filters) why = "filters differ";
    else if (kj_int_at(c, "kernel_size", 0, -1) != cc->kernel || kj_int_at(c, "kernel_size", 1, -1) != cc->kernel)
      why = "kernel_size differs";
    else if (kj_int_at(c, "strides", 0, 1) != cc->stride || kj_int_at(c, "strides", 1, 1) != cc->stride)
      why = "strides differ";
    else if (kj_bool(c, "use_bias", 1) != cc->bias) why = "use_bias differs from bias";
    else if (strcmp(kj_str(c, "data_format"), "channels_first") == 0) why = "data_format channels_first is not supported";
    else if (!(same_pad != -1 ? same_pad == cc->pad && kl->pad == 0 : !strcmp(pad, "valid") && kl->pad == cc->pad))
      why = "padding differs from pad";
  } else if (L->kind == NN_LAYER_BATCHNORM || (L->kind == NN_LAYER_INSTANCENORM && L->cfg.gn.track_running_stats)) {
    int center, scale;
    nn_keras_center_scale(L, &center, &scale);
    double eps = L->kind == NN_LAYER_BATCHNORM ? L->cfg.bn.eps : L->cfg.gn.eps;
    if (kj_bool(c, "center", 1) != center || kj_bool(c, "scale", 1) != scale) why = "center/scale differ from affine";
    else if (!close_to(kj_num(c, "epsilon", 1e-3), eps)) {
      snprintf(buf, sizeof buf, "epsilon %g differs from eps %g", kj_num(c, "epsilon", 1e-3), eps);
      why = buf;
    }
  } else if (L->kind == NN_LAYER_GROUPNORM || L->kind == NN_LAYER_INSTANCENORM || L->kind == NN_LAYER_LAYERNORM) {
    int groups = L->kind == NN_LAYER_GROUPNORM ? L->cfg.gn.groups : L->in.c;
    if (L->kind != NN_LAYER_LAYERNORM && kj_int_at(c, "groups", 0, 32) != groups) why = "groups differ";
    else if (kj_bool(c, "center", 1) != L->cfg.gn.affine || kj_bool(c, "scale", 1) != L->cfg.gn.affine)
      why = "center/scale differ from affine";
    else if (!close_to(kj_num(c, "epsilon", 1e-3), L->cfg.gn.eps)) why = "epsilon differs from eps";
  }
  if (!why && (L->kind == NN_LAYER_DENSE || L->kind == NN_LAYER_CONV2D)) {
    const char *act = kj_str(c, "activation");
    nn_layer_kind want = !strcmp(act, "relu") ? NN_LAYER_RELU : !strcmp(act, "sigmoid") ? NN_LAYER_SIGMOID
                                                            : !strcmp(act, "tanh")      ? NN_LAYER_TANH
                                                                                        : NN_LAYER__COUNT;
    const int final_softmax = !strcmp(act, "softmax") && li + 1 == m->nlayers; /* the model's logits, Keras's softmax */
    if (*act && strcmp(act, "linear") && !final_softmax &&
        (want == NN_LAYER__COUNT || li + 1 >= m->nlayers || m->layers[li + 1].kind != want)) {
      snprintf(buf, sizeof buf, "activation '%s' inside the layer is not the model's next layer", act);
      why = buf;
    }
  }
  if (why) return nn_err_set(err, NN_ERR_SHAPE, "%s: %s: Keras layer '%s' (%s): %s", k->path, lname, kl->name, kl->cls, why);
  return NN_OK;
}

/* ---- one layer's tensors ---------------------------------------------------------------- */

static nn_status load_layer(ksrc *k, const char *kname, nn_layer *L, nn_keras_flat flat, float *tmp, const char *lname,
                            nn_error *err) {
  nn_status st = NN_OK;
  if (L->kind == NN_LAYER_DENSE) {
    const int kd[2] = {L->in.c, L->out.c}, bd[1] = {L->out.c};
    st = read_var(k, kname, 0, kd, 2, tmp, lname, err);
    if (!st) nn_keras_dense_kernel(tmp, nn_param_ptr(L, L->p, 0), L->in.c, L->out.c, flat, 0);
    if (!st && L->cfg.dense.bias) st = read_var(k, kname, 1, bd, 1, nn_param_ptr(L, L->p, 1), lname, err);
    return st;
  }
  if (L->kind == NN_LAYER_CONV2D) {
    const nn_conv2d_cfg *c = &L->cfg.conv;
    const int kd[4] = {c->kernel, c->kernel, L->in.c, c->filters}, bd[1] = {c->filters};
    st = read_var(k, kname, 0, kd, 4, tmp, lname, err);
    if (!st) nn_keras_conv_kernel(tmp, nn_param_ptr(L, L->p, 0), c->filters, L->in.c, c->kernel, 0);
    if (!st && c->bias) st = read_var(k, kname, 1, bd, 1, nn_param_ptr(L, L->p, 1), lname, err);
    return st;
  }
  /* normalizations: per-channel (or per-feature / per-element) vectors */
  int permute = L->in.rank == 1 && flat.h * flat.w > 1;
  int idx = 0;
  float *dst[4];
  int n = 0;
  for (int i = 0; i < L->nparam; i++) dst[n++] = nn_param_ptr(L, L->p, i);
  for (int i = 0; i < L->nstate; i++) dst[n++] = nn_state_ptr(L, i);
  int center = 1, scale = 1;
  if (L->nparam) nn_keras_center_scale(L, &center, &scale);
  for (int i = 0; !st && i < n; i++) {
    const nn_tensor_decl *d = i < L->nparam ? &L->param[i] : &L->state[i - L->nparam];
    if (i < L->nparam && !(i == 0 ? scale : center)) { /* not in Keras: gamma 1, beta 0 */
      for (size_t j = 0; j < d->count; j++) dst[i][j] = i == 0 ? 1.0f : 0.0f;
      continue;
    }
    if (d->ndim == 3) { /* layernorm over CxHxW: Keras [H,W,C] */
      const int kd[3] = {d->dims[1], d->dims[2], d->dims[0]};
      st = read_var(k, kname, idx++, kd, 3, tmp, lname, err);
      if (!st) nn_keras_chw(tmp, dst[i], d->dims[0], d->dims[1], d->dims[2], 0);
    } else {
      const int kd[1] = {(int)d->count};
      st = read_var(k, kname, idx++, kd, 1, permute ? tmp : dst[i], lname, err);
      if (!st && permute) nn_keras_features(tmp, dst[i], flat, 0);
    }
  }
  return st;
}

static int has_tensors(const nn_layer *L) { return L->nparam + L->nstate > 0; }

/* A Rescaling's input is what the model is fed: pixels in [0, 1] (u8/255) as normnet's
 * exporter writes it, x * scale + offset = (x - mean) / std; but in a model from elsewhere
 * (raw = 1: not the exporter's NN_KERAS_INPUT_LAYER) a scale below NN_KERAS_RAW_SCALE is
 * Keras's own idiom, Rescaling(1./255) or (1./127.5, offset=-1) on raw 0-255 pixels:
 * u8 * scale + offset = (u8/255 - mean) / std with std = 1 / (255 scale). */
#define NN_KERAS_RAW_SCALE 0.05
nn_input_norm nn_keras_rescaling_norm(double scale, double offset, int raw) {
  if (raw && scale < NN_KERAS_RAW_SCALE) scale *= 255.0;                         /* raw pixels: the same map on u8/255 */
  return (nn_input_norm){(float)(-offset / scale) + 0.0f, (float)(1.0 / scale)}; /* + 0: no -0 */
}

/* A Rescaling before the config's first layer with weights becomes the model's input
 * transform (nn_keras_rescaling_norm); one it cannot be is named with the file and layer. */
static nn_status rescaling_input(const json_t *config, const char *path, nn_model *m, nn_error *err) {
  const json_t *layers = json_object_get(json_object_get(config, "config"), "layers");
  for (size_t i = 0; i < json_array_size(layers); i++) {
    const json_t *L = json_array_get(layers, i), *c = json_object_get(L, "config");
    const char *cls = kj_str(L, "class_name");
    if (weighted_class(cls)) break;
    if (!strcmp(cls, "Rescaling") && kj_num(c, "scale", 0) > 0) {
      nn_input_norm norm =
          nn_keras_rescaling_norm(kj_num(c, "scale", 1), kj_num(c, "offset", 0), strcmp(kj_str(c, "name"), NN_KERAS_INPUT_LAYER) != 0);
      nn_status st = nn_model_set_input(m, &norm, NULL, err);
      return st ? nn_err_prefix(err, st, "%s: Keras layer %zu '%.64s' (Rescaling): ", path, i, kj_str(c, "name")) : NN_OK;
    }
  }
  return NN_OK;
}

nn_status nn_keras_load_into(const char *path, nn_file_kind kind, nn_model *m, nn_error *err) {
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  ksrc k;
  nn_status st = open_source(path, kind, &k, err);
  klayer *kl = NULL;
  int nk = 0;
  if (!st && k.config) {
    json_t *layers = json_object_get(json_object_get(k.config, "config"), "layers");
    if (!nn_keras_is_chain(k.config))
      st = nn_err_set(err, NN_ERR_FORMAT,
                      "%s: config.json is not a keras.Sequential or a functional model whose layers form one chain "
                      "(class %s)",
                      path, kj_str(k.config, "class_name"));
    kl = st ? NULL : calloc(json_array_size(layers) + 1, sizeof *kl);
    if (!st && !kl) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
    int pad = 0;
    class_counter cc = {0};
    for (size_t i = 0; !st && i < json_array_size(layers); i++) {
      json_t *L = json_array_get(layers, i), *c = json_object_get(L, "config");
      const char *cls = kj_str(L, "class_name");
      char wname[96];
      if (strcmp(cls, "InputLayer")) weights_name(&cc, cls, wname, sizeof wname);
      if (!strcmp(cls, "ZeroPadding2D")) {
        json_t *p = json_object_get(c, "padding");
        pad = json_is_integer(p) ? (int)json_integer_value(p)
                                 : (int)json_integer_value(json_array_get(json_array_get(p, 0), 0));
        continue;
      }
      if (!weighted_class(cls)) continue;
      if (strcmp(cls, "BatchNormalization") && strcmp(cls, "Dense") && strcmp(cls, "Conv2D") && !kj_bool(c, "center", 1) &&
          !kj_bool(c, "scale", 1))
        continue; /* a normalization without variables */
      kl[nk] = (klayer){cls, kj_str(c, "name"), "", c, pad};
      snprintf(kl[nk++].path, sizeof kl[0].path, "%s", wname);
      pad = 0;
    }
  }
  if (!st && (k.config || k.legacy_config)) st = rescaling_input(k.config ? k.config : k.legacy_config, path, m, err);
  int ki = 0, nours = 0;
  for (int i = 0; i < m->nlayers; i++) nours += has_tensors(&m->layers[i]);
  char(*legacy)[96] = NULL; /* legacy HDF5: the layers with weights, in the file's order */
  int nlegacy = 0;
  if (!st && k.legacy) {
    hid_t g = H5Gopen2(k.file, k.legacy, H5P_DEFAULT);
    char(*names)[96] = calloc(1024, sizeof *names);
    legacy = calloc(1024, sizeof *legacy);
    int nn = g >= 0 && names && legacy ? string_attr(g, "layer_names", names, 1024) : -1;
    for (int i = 0; i < nn; i++) {
      char wn[8][96];
      hid_t lg = H5Gopen2(g, names[i], H5P_DEFAULT);
      int nw = lg >= 0 ? string_attr(lg, "weight_names", wn, 8) : -1;
      if (lg >= 0) H5Gclose(lg);
      if (nw > 0) snprintf(legacy[nlegacy++], 96, "%s", names[i]);
    }
    if (g >= 0) H5Gclose(g);
    free(names);
    if (nn < 0) st = nn_err_set(err, NN_ERR_FORMAT, "%s: a legacy Keras HDF5 file without a readable layer_names list", path);
    else if (nlegacy != nours)
      st = nn_err_set(err, NN_ERR_SHAPE, "%s: %d legacy Keras layers with weights, the model has %d layers with tensors",
                      path, nlegacy, nours);
  }
  if (!st && k.config && nk != nours)
    st = nn_err_set(err, NN_ERR_SHAPE, "%s: %d Keras layers with weights, the model has %d layers with tensors", path, nk,
                    nours);
  size_t maxc = 16;
  for (int i = 0; i < m->nlayers; i++)
    for (int j = 0; j < m->layers[i].nparam; j++)
      if (m->layers[i].param[j].count > maxc) maxc = m->layers[i].param[j].count;
  float *tmp = st ? NULL : malloc(maxc * sizeof *tmp);
  if (!st && !tmp) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  nn_keras_flat flat = {m->layers[0].in.c, 1, 1};
  class_counter cc = {0};
  for (int i = 0; !st && i < m->nlayers; i++) {
    nn_layer *L = &m->layers[i];
    char lname[96], kname[96];
    nn_layer_name(L, lname, sizeof lname);
    if (L->kind == NN_LAYER_FLATTEN) flat = (nn_keras_flat){L->in.c, L->in.h, L->in.w};
    if (!has_tensors(L)) {
      if (L->kind == NN_LAYER_GLOBAL_AVGPOOL) flat = (nn_keras_flat){L->out.c, 1, 1};
      continue;
    }
    const char *want = expected_class(L);
    if (!want) st = nn_err_set(err, NN_ERR_SHAPE, "%s: %s has no Keras counterpart", path, lname);
    else if (k.config) {
      const klayer *x = &kl[ki++];
      if (strcmp(x->cls, want))
        st = nn_err_set(err, NN_ERR_SHAPE, "%s: %s: Keras layer '%s' is a %s, the model needs a %s", path, lname,
                        x->name, x->cls, want);
      else st = check_config(&k, x, m, i, lname, err);
      snprintf(kname, sizeof kname, "%s", x->path);
    } else if (k.legacy) {
      snprintf(kname, sizeof kname, "%s", legacy[ki++]);
    } else {
      weights_name(&cc, want, kname, sizeof kname); /* per class, in the model's order */
    }
    if (!st) st = load_layer(&k, kname, L, flat, tmp, lname, err);
    if (L->kind == NN_LAYER_DENSE) flat = (nn_keras_flat){L->out.c, 1, 1};
  }
  free(tmp);
  free(kl);
  free(legacy);
  close_source(&k);
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  return st;
}

nn_status nn_keras_read_spec(const char *path, nn_file_kind kind, nn_spec **out, nn_error *err) {
  *out = NULL;
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  ksrc k;
  json_t *own = NULL; /* a .keras file: its config alone, not the weights */
  nn_status st = NN_OK;
  if (kind == NN_FILE_ZIP) {
    memset(&k, 0, sizeof k);
    k.file = -1;
    int ze = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &ze);
    if (!za) st = nn_err_set(err, NN_ERR_FORMAT, "%s: not a readable zip archive", path);
    else st = zip_config(za, path, &own, err), zip_discard(za);
  } else {
    st = open_source(path, kind, &k, err);
  }
  const json_t *config = st ? NULL : own ? own
                                         : k.legacy_config;
  char *text = NULL;
  if (!st && !config) st = nn_not_safetensors(path, kind, err); /* weights only: the spec must be given */
  if (!st) st = nn_keras_config_spec(config, path, &text, err);
  if (!st) st = nn_spec_parse(text, path, out, err);
  free(text);
  json_decref(own);
  close_source(&k);
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  return st;
}

nn_status nn_keras_load(const char *path, nn_file_kind kind, const nn_spec *spec, nn_model **out, nn_error *err) {
  *out = NULL;
  nn_spec *own = NULL;
  if (!spec) { /* the architecture in the file's config */
    nn_status st = nn_keras_read_spec(path, kind, &own, err);
    if (st) return st;
    spec = own;
  }
  nn_model *m = NULL;
  nn_status st = nn_model_create(spec, &m, err);
  nn_spec_free(own);
  if (st) return st;
  nn_rng rng;
  nn_rng_seed(&rng, 0);
  nn_model_init(m, NN_INIT_DEFAULT, &rng); /* running statistics reset; every tensor is then read */
  st = nn_keras_load_into(path, kind, m, err);
  if (st) {
    nn_model_free(m);
    return st;
  }
  *out = m;
  return NN_OK;
}
