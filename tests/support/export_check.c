/* Structural validators for exported ONNX and Keras files: see export_check.h. */
#include "export_check.h"

#include <hdf5.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "export/keras_layout.h"
#include "export/protobuf.h"

static int fail(char *why, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, len, fmt, ap);
  va_end(ap);
  return -1;
}

/* ================================ ONNX ================================================= */

typedef struct {
  char (*names)[64];
  int n, cap;
} nameset;

static int ns_has(const nameset *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->names[i], name)) return 1;
  return 0;
}

static int ns_add(nameset *s, const char *name) {
  if (ns_has(s, name)) return -1;
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->names = realloc(s->names, (size_t)s->cap * sizeof *s->names);
  }
  snprintf(s->names[s->n++], 64, "%s", name);
  return 0;
}

/* Keras's weights path of a Sequential's next layer of class cls: the class in snake case
 * (keras.src.utils.naming.to_snake_case: "_" before a capital starting a lower-case run that
 * follows any character, and between a lower-case letter and a capital), then _1, _2, ... for
 * the second, third of that class in order; `used` holds the paths taken so far. Not the
 * layer's configured name. */
static void keras_group(const char *cls, nameset *used, char out[64]) {
  char snake[48]; /* with room for "_N" in out */
  size_t o = 0;
  for (size_t i = 0; cls[i] && o + 2 < sizeof snake; i++) {
    const char c = cls[i], prev = i ? cls[i - 1] : 0, next = cls[i + 1];
    const int upper = c >= 'A' && c <= 'Z', lower_next = next >= 'a' && next <= 'z';
    if (i && upper && (lower_next || (prev >= 'a' && prev <= 'z'))) snake[o++] = '_';
    snake[o++] = upper ? (char)(c - 'A' + 'a') : c;
  }
  snake[o] = 0;
  snprintf(out, 64, "%s", snake);
  for (int k = 1; ns_has(used, out); k++) snprintf(out, 64, "%s_%d", snake, k);
  ns_add(used, out);
}

static void copy_str(char *dst, size_t cap, const nn_pb_field *f) {
  size_t n = f->len < cap - 1 ? f->len : cap - 1;
  memcpy(dst, f->data, n);
  dst[n] = 0;
}

/* "N,1,28,28" from a ValueInfoProto; 0 on success. */
static int value_info(const unsigned char *p, size_t n, char *name, char *dims, size_t dimslen) {
  nn_pb_reader r = {p, p + n}, rt, rtt, rs, rd;
  nn_pb_field f, g, h, k, d;
  int rc, have_type = 0;
  name[0] = dims[0] = 0;
  while ((rc = nn_pb_next(&r, &f)) == 1) {
    if (f.field == 1 && f.wire == NN_PB_LEN) copy_str(name, 64, &f);
    if (f.field != 2 || f.wire != NN_PB_LEN) continue;
    rt = (nn_pb_reader){f.data, f.data + f.len};
    while (nn_pb_next(&rt, &g) == 1) {
      if (g.field != 1 || g.wire != NN_PB_LEN) continue; /* tensor_type */
      rtt = (nn_pb_reader){g.data, g.data + g.len};
      while (nn_pb_next(&rtt, &h) == 1) {
        if (h.field == 1 && h.v != 1) return -1; /* elem_type FLOAT */
        if (h.field == 1) have_type = 1;
        if (h.field != 2 || h.wire != NN_PB_LEN) continue;
        rs = (nn_pb_reader){h.data, h.data + h.len};
        while (nn_pb_next(&rs, &k) == 1) {
          if (k.field != 1 || k.wire != NN_PB_LEN) continue;
          rd = (nn_pb_reader){k.data, k.data + k.len};
          while (nn_pb_next(&rd, &d) == 1) {
            size_t u = strlen(dims);
            if (d.field == 1) snprintf(dims + u, dimslen - u, "%s%lld", u ? "," : "", (long long)d.v);
            if (d.field == 2) {
              char pn[32];
              copy_str(pn, sizeof pn, &d);
              snprintf(dims + u, dimslen - u, "%s%s", u ? "," : "", pn);
            }
          }
        }
      }
    }
  }
  return rc == 0 && have_type && name[0] ? 0 : -1;
}

typedef struct {
  char name[64];
  int64_t dims[8];
  int ndim;
  int64_t type;
  const unsigned char *raw;
  size_t rawlen;
} tensor_info;

static int tensor(const unsigned char *p, size_t n, tensor_info *t) {
  memset(t, 0, sizeof *t);
  nn_pb_reader r = {p, p + n};
  nn_pb_field f;
  int rc;
  while ((rc = nn_pb_next(&r, &f)) == 1) {
    if (f.field == 1 && f.wire == NN_PB_VARINT && t->ndim < 8) t->dims[t->ndim++] = (int64_t)f.v;
    else if (f.field == 2) t->type = (int64_t)f.v;
    else if (f.field == 8 && f.wire == NN_PB_LEN) copy_str(t->name, sizeof t->name, &f);
    else if (f.field == 9 && f.wire == NN_PB_LEN) t->raw = f.data, t->rawlen = f.len;
  }
  return rc;
}

static int node_check(const unsigned char *p, size_t n, nameset *defined, xc_onnx *s, char *why, size_t wl) {
  nn_pb_reader r = {p, p + n};
  nn_pb_field f;
  char op[64] = "", out[64] = "", in[64];
  int nout = 0, nin = 0, rc;
  nameset pending = {0};
  while ((rc = nn_pb_next(&r, &f)) == 1) {
    if (f.field == 1 && f.wire == NN_PB_LEN) {
      copy_str(in, sizeof in, &f);
      nin++;
      if (!ns_has(defined, in)) {
        free(pending.names);
        return fail(why, wl, "node input '%s' is not defined before it", in);
      }
    } else if (f.field == 2 && f.wire == NN_PB_LEN) {
      copy_str(out, sizeof out, &f);
      nout++;
    } else if (f.field == 4 && f.wire == NN_PB_LEN) {
      copy_str(op, sizeof op, &f);
    } else if (f.field == 5 && f.wire == NN_PB_LEN) {
      nn_pb_reader ra = {f.data, f.data + f.len};
      nn_pb_field a;
      int has_name = 0, has_type = 0, arc;
      while ((arc = nn_pb_next(&ra, &a)) == 1) {
        if (a.field == 1) has_name = 1;
        if (a.field == 20 && a.v > 0) has_type = 1;
      }
      if (arc < 0 || !has_name || !has_type) {
        free(pending.names);
        return fail(why, wl, "node %s: malformed attribute", op);
      }
    }
  }
  free(pending.names);
  if (rc < 0) return fail(why, wl, "malformed NodeProto");
  if (!op[0] || nout != 1 || nin < 1) return fail(why, wl, "node '%s' needs an op_type, inputs and one output", op);
  if (ns_add(defined, out)) return fail(why, wl, "tensor '%s' is defined twice", out);
  size_t u = strlen(s->ops);
  snprintf(s->ops + u, sizeof s->ops - u, "%s%s", u ? " " : "", op);
  return 0;
}

int xc_onnx_check(const unsigned char *b, size_t n, xc_onnx *s, char *why, size_t wl) {
  memset(s, 0, sizeof *s);
  nn_pb_reader r = {b, b + n};
  nn_pb_field f;
  const unsigned char *graph = NULL;
  size_t glen = 0;
  int rc;
  while ((rc = nn_pb_next(&r, &f)) == 1) {
    if (f.field == 1) s->ir_version = (int64_t)f.v;
    if ((f.field == 2 || f.field == 3) && f.wire == NN_PB_LEN) {
      char *dst = f.field == 2 ? s->producer : s->producer_version;
      snprintf(dst, sizeof s->producer, "%.*s", (int)(f.len < sizeof s->producer ? f.len : sizeof s->producer - 1),
               (const char *)f.data);
    }
    if (f.field == 7 && f.wire == NN_PB_LEN) graph = f.data, glen = f.len;
    if (f.field == 8 && f.wire == NN_PB_LEN) {
      nn_pb_reader ro = {f.data, f.data + f.len};
      nn_pb_field o;
      int default_domain = 1;
      int64_t version = 0;
      while (nn_pb_next(&ro, &o) == 1) {
        if (o.field == 1 && o.len) default_domain = 0;
        if (o.field == 2) version = (int64_t)o.v;
      }
      if (default_domain) s->opset = version;
    }
  }
  if (rc < 0) return fail(why, wl, "ModelProto does not decode");
  if (s->ir_version < 8) return fail(why, wl, "ir_version %lld < 8", (long long)s->ir_version);
  if (s->opset < 17) return fail(why, wl, "default-domain opset %lld < 17", (long long)s->opset);
  if (!graph) return fail(why, wl, "no graph");

  nameset defined = {0};
  int ninputs = 0, noutputs = 0, ret = 0;
  char name[64];
  /* pass 1: inputs and initializers (defined before any node runs) */
  r = (nn_pb_reader){graph, graph + glen};
  while (!ret && (rc = nn_pb_next(&r, &f)) == 1) {
    if (f.field == 11 && f.wire == NN_PB_LEN) {
      if (value_info(f.data, f.len, name, s->input, sizeof s->input) || strcmp(name, "input"))
        ret = fail(why, wl, "graph input must be one float tensor 'input'");
      else ns_add(&defined, name);
      ninputs++;
    } else if (f.field == 5 && f.wire == NN_PB_LEN) {
      tensor_info t;
      if (tensor(f.data, f.len, &t) < 0 || !t.name[0]) {
        ret = fail(why, wl, "initializer %d does not decode or has no name", s->ninit);
        break;
      }
      size_t count = 1, esize = t.type == 1 ? 4 : t.type == 7 ? 8
                                                              : 0;
      for (int i = 0; i < t.ndim; i++) count *= (size_t)t.dims[i];
      if (!esize) ret = fail(why, wl, "initializer %s: data_type %lld", t.name, (long long)t.type);
      else if (t.rawlen != count * esize)
        ret = fail(why, wl, "initializer %s: %zu bytes of raw_data for %zu elements", t.name, t.rawlen, count);
      else if (ns_add(&defined, t.name)) ret = fail(why, wl, "initializer %s defined twice", t.name);
      s->ninit++;
    }
  }
  if (!ret && rc < 0) ret = fail(why, wl, "GraphProto does not decode");
  if (!ret && ninputs != 1) ret = fail(why, wl, "%d graph inputs", ninputs);
  /* pass 2: nodes in order, then outputs */
  r = (nn_pb_reader){graph, graph + glen};
  while (!ret && nn_pb_next(&r, &f) == 1)
    if (f.field == 1 && f.wire == NN_PB_LEN) ret = node_check(f.data, f.len, &defined, s, why, wl);
  r = (nn_pb_reader){graph, graph + glen};
  while (!ret && nn_pb_next(&r, &f) == 1) {
    if (f.field != 12 || f.wire != NN_PB_LEN) continue;
    noutputs++;
    if (value_info(f.data, f.len, name, s->output, sizeof s->output) || strcmp(name, "logits"))
      ret = fail(why, wl, "graph output must be one float tensor 'logits'");
    else if (!ns_has(&defined, "logits"))
      ret = fail(why, wl, "no node produces 'logits'");
  }
  if (!ret && noutputs != 1) ret = fail(why, wl, "%d graph outputs", noutputs);
  free(defined.names);
  return ret;
}

int xc_onnx_floats(const unsigned char *b, size_t n, const char *want, float **data, int64_t *dims, int *ndim) {
  nn_pb_reader r = {b, b + n}, rg;
  nn_pb_field f, g;
  while (nn_pb_next(&r, &f) == 1) {
    if (f.field != 7 || f.wire != NN_PB_LEN) continue;
    rg = (nn_pb_reader){f.data, f.data + f.len};
    while (nn_pb_next(&rg, &g) == 1) {
      tensor_info t;
      if (g.field != 5 || g.wire != NN_PB_LEN || tensor(g.data, g.len, &t) < 0 || strcmp(t.name, want) || t.type != 1)
        continue;
      size_t count = t.rawlen / 4;
      *data = malloc((count ? count : 1) * sizeof **data);
      for (size_t i = 0; i < count; i++) {
        uint32_t u = 0;
        for (int k = 0; k < 4; k++) u |= (uint32_t)t.raw[4 * i + k] << (8 * k);
        (*data)[i] = nn_pb_f32_of(u);
      }
      *ndim = t.ndim;
      memcpy(dims, t.dims, (size_t)t.ndim * sizeof *dims);
      return 0;
    }
  }
  return -1;
}

/* ================================ Keras ================================================ */

typedef struct {
  zip_t *za;
  zip_source_t *src;
  char *config, *metadata;
  unsigned char *h5;
  size_t h5len;
  hid_t file;
} karchive;

static char *zip_read(zip_t *za, const char *name, size_t *len) {
  zip_stat_t st;
  if (zip_stat(za, name, 0, &st) != 0) return NULL;
  zip_file_t *zf = zip_fopen(za, name, 0);
  if (!zf) return NULL;
  char *buf = malloc(st.size + 1);
  zip_int64_t got = zip_fread(zf, buf, st.size);
  zip_fclose(zf);
  if (got != (zip_int64_t)st.size) {
    free(buf);
    return NULL;
  }
  buf[st.size] = 0;
  if (len) *len = st.size;
  return buf;
}

static void ka_close(karchive *k) {
  if (k->file >= 0) H5Fclose(k->file);
  if (k->za) zip_discard(k->za);
  free(k->config), free(k->metadata), free(k->h5);
}

static int ka_open(const unsigned char *b, size_t n, karchive *k, char *why, size_t wl) {
  memset(k, 0, sizeof *k);
  k->file = -1;
  zip_error_t ze;
  zip_error_init(&ze);
  k->src = zip_source_buffer_create(b, n, 0, &ze);
  k->za = k->src ? zip_open_from_source(k->src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
  zip_error_fini(&ze);
  if (!k->za) {
    if (k->src) zip_source_free(k->src);
    return fail(why, wl, "not a zip archive");
  }
  if (zip_get_num_entries(k->za, 0) != 3) return fail(why, wl, "%lld zip entries, expected 3",
                                                      (long long)zip_get_num_entries(k->za, 0));
  k->config = zip_read(k->za, "config.json", NULL);
  k->metadata = zip_read(k->za, "metadata.json", NULL);
  k->h5 = (unsigned char *)zip_read(k->za, "model.weights.h5", &k->h5len);
  if (!k->config || !k->metadata || !k->h5) return fail(why, wl, "missing config.json, metadata.json or model.weights.h5");
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, 1 << 16, 0);
  H5Pset_file_image(fapl, k->h5, k->h5len);
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  k->file = H5Fopen(NN_H5_IMAGE_NAME, H5F_ACC_RDONLY, fapl);
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  H5Pclose(fapl);
  if (k->file < 0) return fail(why, wl, "model.weights.h5 is not an HDF5 file");
  return 0;
}

/* Dims of dataset path, or -1 if absent. */
static int h5_dims(hid_t file, const char *path, int *dims) {
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  int nd = -1;
  if (H5Lexists(file, path, H5P_DEFAULT) > 0) {
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds >= 0) {
      hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
      hsize_t d[8];
      nd = H5Sget_simple_extent_ndims(sp);
      if (nd > 8 || H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) nd = -2;
      else H5Sget_simple_extent_dims(sp, d, NULL);
      for (int i = 0; i < nd; i++) dims[i] = (int)d[i];
      H5Tclose(t), H5Sclose(sp), H5Dclose(ds);
    }
  }
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  return nd;
}

static int h5_count(hid_t file, const char *path) {
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  int count = -1;
  if (H5Lexists(file, path, H5P_DEFAULT) > 0) {
    hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
    H5G_info_t info;
    if (g >= 0 && H5Gget_info(g, &info) >= 0) count = (int)info.nlinks;
    if (g >= 0) H5Gclose(g);
  }
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  return count;
}

static int jint(json_t *o, const char *key, int idx) {
  json_t *v = json_object_get(o, key);
  if (json_is_array(v)) v = json_array_get(v, (size_t)idx);
  return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

static const char *jstr(json_t *o, const char *key) {
  const char *v = json_string_value(json_object_get(o, key));
  return v ? v : "";
}

static int jbool(json_t *o, const char *key, int dflt) {
  json_t *v = json_object_get(o, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* Expected variable shapes of one layer for input shape `in` (rank r, batch excluded);
 * updates `in` to the output shape. Returns the number of variables, -1 if unknown. */
static int layer_vars(const char *cls, json_t *c, int *in, int *r, int vdims[4][4], int *vnd) {
  int last = in[*r - 1];
  if (!strcmp(cls, "Dense")) {
    int u = jint(c, "units", 0);
    vnd[0] = 2, vdims[0][0] = last, vdims[0][1] = u;
    vnd[1] = 1, vdims[1][0] = u;
    in[*r - 1] = u;
    return jbool(c, "use_bias", 1) ? 2 : 1;
  }
  if (!strcmp(cls, "Conv2D")) {
    int f = jint(c, "filters", 0), kh = jint(c, "kernel_size", 0), kw = jint(c, "kernel_size", 1);
    int sh = jint(c, "strides", 0), sw = jint(c, "strides", 1);
    vnd[0] = 4, vdims[0][0] = kh, vdims[0][1] = kw, vdims[0][2] = last, vdims[0][3] = f;
    vnd[1] = 1, vdims[1][0] = f;
    in[0] = (in[0] - kh) / sh + 1, in[1] = (in[1] - kw) / sw + 1, in[2] = f;
    return jbool(c, "use_bias", 1) ? 2 : 1;
  }
  if (!strcmp(cls, "BatchNormalization") || !strcmp(cls, "GroupNormalization") ||
      !strcmp(cls, "LayerNormalization")) {
    int nv = 0, pd[3] = {last}, pn = 1;
    json_t *axis = json_object_get(c, "axis");
    if (!strcmp(cls, "LayerNormalization") && json_array_size(axis) == 3) pn = 3, memcpy(pd, in, 3 * sizeof *in);
    int count = jbool(c, "scale", 1) + jbool(c, "center", 1) + (!strcmp(cls, "BatchNormalization") ? 2 : 0);
    for (; nv < count; nv++) {
      vnd[nv] = pn;
      memcpy(vdims[nv], pd, sizeof pd);
    }
    return count;
  }
  if (!strcmp(cls, "ZeroPadding2D")) {
    json_t *p = json_object_get(c, "padding");
    in[0] += (int)json_integer_value(json_array_get(json_array_get(p, 0), 0)) +
             (int)json_integer_value(json_array_get(json_array_get(p, 0), 1));
    in[1] += (int)json_integer_value(json_array_get(json_array_get(p, 1), 0)) +
             (int)json_integer_value(json_array_get(json_array_get(p, 1), 1));
    return 0;
  }
  if (!strcmp(cls, "MaxPooling2D") || !strcmp(cls, "AveragePooling2D")) {
    int k = jint(c, "pool_size", 0), st = jint(c, "strides", 0);
    in[0] = (in[0] - k) / st + 1, in[1] = (in[1] - k) / st + 1;
    return 0;
  }
  if (!strcmp(cls, "GlobalAveragePooling2D")) {
    in[0] = in[2], *r = 1;
    return 0;
  }
  if (!strcmp(cls, "Flatten")) {
    int p = 1;
    for (int i = 0; i < *r; i++) p *= in[i];
    in[0] = p, *r = 1;
    return 0;
  }
  if (!strcmp(cls, "Activation") || !strcmp(cls, "Dropout") || !strcmp(cls, "Rescaling")) return 0;
  return -1;
}

int xc_keras_check(const unsigned char *b, size_t n, xc_keras *s, char *why, size_t wl) {
  memset(s, 0, sizeof *s);
  karchive k;
  json_error_t je;
  json_t *root = NULL, *meta = NULL;
  int ret = ka_open(b, n, &k, why, wl);
  if (!ret && !(meta = json_loads(k.metadata, 0, &je))) ret = fail(why, wl, "metadata.json: %s", je.text);
  if (!ret && !json_is_string(json_object_get(meta, "keras_version")))
    ret = fail(why, wl, "metadata.json has no keras_version");
  if (!ret && !(root = json_loads(k.config, JSON_REJECT_DUPLICATES, &je))) ret = fail(why, wl, "config.json: %s", je.text);
  json_t *layers = root ? json_object_get(json_object_get(root, "config"), "layers") : NULL;
  if (!ret && (strcmp(jstr(root, "class_name"), "Sequential") ||
               !json_is_array(layers) || json_array_size(layers) < 2))
    ret = fail(why, wl, "config.json is not a Sequential with layers");
  int shape[4] = {0}, rank = 0;
  if (!ret) {
    json_t *in = json_array_get(layers, 0), *bs = json_object_get(json_object_get(in, "config"), "batch_shape");
    if (strcmp(jstr(in, "class_name"), "InputLayer") || !json_is_array(bs) ||
        json_array_size(bs) < 2 || json_array_size(bs) > 4 || !json_is_null(json_array_get(bs, 0)))
      ret = fail(why, wl, "the first layer is not an InputLayer with batch_shape [null, ...]");
    for (size_t i = 1; !ret && i < json_array_size(bs); i++) shape[rank++] = (int)json_integer_value(json_array_get(bs, i));
  }
  nameset names = {0}, groups = {0};
  for (size_t i = 0; !ret && i < json_array_size(layers); i++) {
    json_t *L = json_array_get(layers, i), *c = json_object_get(L, "config");
    const char *cls = json_string_value(json_object_get(L, "class_name"));
    const char *name = json_string_value(json_object_get(c, "name"));
    if (!cls || !name) {
      ret = fail(why, wl, "layer %zu has no class_name or name", i);
      break;
    }
    size_t u = strlen(s->classes);
    snprintf(s->classes + u, sizeof s->classes - u, "%s%s", u ? " " : "", cls);
    s->nlayers++;
    if (ns_add(&names, name)) ret = fail(why, wl, "layer name %s used twice", name);
    if (i == 0 || ret) continue;
    int vd[4][4], vnd[4];
    int nv = layer_vars(cls, c, shape, &rank, vd, vnd);
    if (nv < 0) {
      ret = fail(why, wl, "layer %s: unexpected class %s", name, cls);
      break;
    }
    char path[256], group[64];
    keras_group(cls, &groups, group);
    snprintf(path, sizeof path, "layers/%s/vars", group);
    int have = h5_count(k.file, path);
    if (have != nv) {
      ret = fail(why, wl, "%s (%s): %d variables in %s, Keras makes %d", name, cls, have, path, nv);
      break;
    }
    for (int v = 0; v < nv && !ret; v++) {
      int dims[8];
      snprintf(path, sizeof path, "layers/%s/vars/%d", group, v);
      int nd = h5_dims(k.file, path, dims);
      if (nd != vnd[v] || memcmp(dims, vd[v], (size_t)nd * sizeof *dims))
        ret = fail(why, wl, "%s: shape of %s does not fit a %s on its input", name, path, cls);
      s->nvars++;
    }
  }
  free(names.names);
  free(groups.names);
  json_decref(root);
  json_decref(meta);
  ka_close(&k);
  return ret;
}

int xc_keras_var(const unsigned char *b, size_t n, const char *name, int idx, float **data, int *dims, int *ndim) {
  karchive k;
  char why[256], path[256];
  if (ka_open(b, n, &k, why, sizeof why)) {
    ka_close(&k);
    return -1;
  }
  snprintf(path, sizeof path, "layers/%s/vars/%d", name, idx);
  int nd = h5_dims(k.file, path, dims), ret = -1;
  if (nd >= 0) {
    size_t count = 1;
    for (int i = 0; i < nd; i++) count *= (size_t)dims[i];
    *data = malloc((count ? count : 1) * sizeof **data);
    hid_t ds = H5Dopen2(k.file, path, H5P_DEFAULT);
    if (ds >= 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) >= 0) ret = 0;
    if (ds >= 0) H5Dclose(ds);
    *ndim = nd;
  }
  ka_close(&k);
  return ret;
}

const char xc_every_kind[] =
    "input shape=3x12x12\n"
    "conv2d filters=8 kernel=3 pad=1\n"
    "groupnorm groups=4\n"
    "tanh\n"
    "conv2d filters=8 kernel=3 bias=0\n"
    "instancenorm affine=1\n"
    "relu\n"
    "avgpool2d size=2\n"
    "instancenorm affine=1 track_running_stats=1\n"
    "layernorm\n"
    "batchnorm affine=0\n"
    "sigmoid\n"
    "maxpool2d size=2 stride=1\n"
    "dropout rate=0.25\n"
    "flatten\n"
    "batchnorm convention=keras\n"
    "dense units=12\n"
    "layernorm\n"
    "groupnorm groups=3\n"
    "dense units=5\n";
