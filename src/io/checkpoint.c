/* Checkpoints in safetensors format (ARCHITECTURE.md §6).
 *
 *     [u64 little-endian N][N bytes of JSON header, space-padded to a multiple of 8][data]
 *     header = {"__metadata__": {"format": "normnet/1", "normnet.spec": "<canonical spec>", ...},
 *               "0.weight": {"dtype": "F32", "shape": [6,1,5,5], "data_offsets": [0, 600]}, ...}
 *
 * Tensors are the model's named views in PyTorch state_dict order (nn_model_tensor), packed
 * contiguously; num_batches_tracked is a 0-d I64 as PyTorch writes it. A plain PyTorch
 * state_dict (safetensors.torch.save_file) loads too when the caller passes the spec.
 *
 * Loading trusts nothing in the file: the header length is bounded, the JSON parse is
 * length-bounded and rejects duplicate keys, every entry is checked (dtype, shape, offsets in
 * bounds, byte size == prod(shape) * dtype size, no two tensors overlap) before any data is
 * read, and every tensor the spec needs must be present with the exact dtype and shape.
 * Extra tensors are errors, except "optim.*" (reserved for optimizer state). F64 tensors
 * are accepted for float parameters and rounded to float32.
 *
 * Saving builds the whole file in memory and hands it to the atomic writer
 * (nn_file_write_atomic): on any failure PATH is untouched. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "io/keras_import.h"
#include "model/model.h"

#define NN_CKPT_FORMAT "normnet/1"
#define NN_CKPT_SPEC_KEY "normnet.spec"
#define NN_CKPT_RNG_KEY "normnet.layer_rng"       /* per-layer random streams */
#define NN_CKPT_STEPS_KEY "normnet.optimizer_steps" /* with optim.* tensors */
#define NN_CKPT_MAX_HEADER ((uint64_t)100 * 1024 * 1024)
#define NN_CKPT_OPTIM_PREFIX "optim."

/* ---- little-endian encoding (independent of the host's byte order) ------------------ */
static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* ---- dtypes ------------------------------------------------------------------------ */
/* Every dtype of the safetensors format, so that well-formed files with tensors we do not
 * use (e.g. "optim.*") validate; which dtypes a model tensor accepts is decided later. */
static const struct {
  const char *name;
  int size;
} dtypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
              {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
              {"I64", 8},  {"U64", 8}, {"F64", 8}};

static int dtype_size(const char *name) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (strcmp(dtypes[i].name, name) == 0) return dtypes[i].size;
  return 0;
}

/* "[6,1,5,5]" ("[]" for a scalar). */
static void format_shape(const int64_t *dims, int ndim, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < ndim && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)dims[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

/* ================================= save ================================================ */

/* The JSON header for model m (tensors in state_dict order, __metadata__ first). */
/* Every tensor a save writes: the model's in state_dict order, then the optimizer's. */
typedef struct {
  nn_tensor_view *v;
  int n;
} view_list;

static nn_status collect_views(nn_model *m, nn_optimizer *o, view_list *out, nn_error *err) {
  int nm = nn_model_num_tensors(m), no = o ? nn_optimizer_num_tensors(o, m) : 0;
  out->v = malloc((size_t)(nm + no + 1) * sizeof *out->v);
  if (!out->v) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < nm; i++) nn_model_tensor(m, i, &out->v[i]);
  for (int i = 0; i < no; i++) nn_optimizer_tensor(o, m, i, &out->v[nm + i]);
  out->n = nm + no;
  return NN_OK;
}

/* Per-layer random streams (dropout masks) as "index:s0,s1,s2,s3;..." (hex), so that a
 * resumed run draws the same masks. Layers without a stream are left out. */
static char *layer_rngs_text(const nn_model *m) {
  nn_strbuf b = nn_strbuf_new();
  for (int i = 0; i < m->nlayers; i++) {
    const uint64_t *st = m->layers[i].rng.s;
    if (!(st[0] | st[1] | st[2] | st[3])) continue;
    nn_strbuf_printf(&b, "%s%d:%llx,%llx,%llx,%llx", b.len ? ";" : "", i, (unsigned long long)st[0],
                     (unsigned long long)st[1], (unsigned long long)st[2], (unsigned long long)st[3]);
  }
  return b.buf;
}

static void layer_rngs_restore(nn_model *m, const char *text) {
  const char *p = text;
  while (p && *p) {
    int i, used = 0;
    unsigned long long a, b, c, d;
    if (sscanf(p, "%d:%llx,%llx,%llx,%llx%n", &i, &a, &b, &c, &d, &used) != 5 || used <= 0) return;
    if (i >= 0 && i < m->nlayers) {
      uint64_t *st = m->layers[i].rng.s;
      st[0] = a, st[1] = b, st[2] = c, st[3] = d;
    }
    p += used;
    if (*p == ';') p++;
  }
}

static nn_status build_header(nn_model *m, const view_list *views, long opt_steps, const nn_meta_pair *extra,
                              int nextra, json_t **out, uint64_t *data_size, nn_error *err) {
  *out = NULL;
  json_t *root = json_object(), *meta = json_object();
  if (!root || !meta) goto nomem;
  if (json_object_set_new(root, "__metadata__", meta)) {
    meta = NULL;
    goto nomem;
  }
  char *spec = nn_spec_to_text(nn_model_spec(m));
  if (!spec) goto nomem_meta;
  json_t *spec_s = json_string(spec);
  free(spec);
  /* json_object_set_new consumes the value even when it fails. */
  if (!spec_s || json_object_set_new(meta, NN_CKPT_SPEC_KEY, spec_s) ||
      json_object_set_new(meta, "format", json_string(NN_CKPT_FORMAT)))
    goto nomem_meta;
  char *rngs = layer_rngs_text(m);
  if (!rngs) goto nomem_meta;
  if (rngs[0] && json_object_set_new(meta, NN_CKPT_RNG_KEY, json_string(rngs))) {
    free(rngs);
    goto nomem_meta;
  }
  free(rngs);
  if (opt_steps >= 0) {
    char steps[32];
    snprintf(steps, sizeof steps, "%ld", opt_steps);
    if (json_object_set_new(meta, NN_CKPT_STEPS_KEY, json_string(steps))) goto nomem_meta;
  }
  for (int i = 0; i < nextra; i++) {
    const char *k = extra[i].key, *v = extra[i].value;
    if (!k || !v || !*k) {
      json_decref(root);
      return nn_err_set(err, NN_ERR_ARG, "checkpoint metadata pair %d has an empty key or a NULL value", i);
    }
    if (json_object_get(meta, k)) {
      json_decref(root);
      return nn_err_set(err, NN_ERR_ARG, "checkpoint metadata key '%s' is %s", k,
                        strcmp(k, "format") == 0 || strcmp(k, NN_CKPT_SPEC_KEY) == 0 ||
                                strcmp(k, NN_CKPT_RNG_KEY) == 0 || strcmp(k, NN_CKPT_STEPS_KEY) == 0
                            ? "reserved by normnet"
                                                                                    : "given twice");
    }
    json_t *ks = json_string(k), *vs = ks ? json_string(v) : NULL;
    json_decref(ks);
    if (!vs) {
      json_decref(root);
      return nn_err_set(err, NN_ERR_ARG, "checkpoint metadata '%s': the key or value is not valid UTF-8", k);
    }
    if (json_object_set_new(meta, k, vs)) goto nomem_meta;
  }
  uint64_t off = 0;
  for (int i = 0; i < views->n; i++) {
    const nn_tensor_view v = views->v[i];
    int is_count = v.data == NULL;
    uint64_t bytes = (uint64_t)v.count * (is_count ? 8u : 4u);
    json_t *shape = json_array(), *t = NULL;
    if (!shape) goto nomem_meta;
    for (int d = 0; d < v.ndim; d++)
      if (json_array_append_new(shape, json_integer(v.dims[d]))) {
        json_decref(shape);
        goto nomem_meta;
      }
    t = json_pack("{s:s, s:o, s:[I,I]}", "dtype", is_count ? "I64" : "F32", "shape", shape, "data_offsets",
                  (json_int_t)off, (json_int_t)off + (json_int_t)bytes);
    if (!t || json_object_set_new(root, v.name, t)) goto nomem_meta;
    off += bytes;
  }
  *out = root;
  *data_size = off;
  return NN_OK;
nomem_meta:
  json_decref(root);
  return nn_err_set(err, NN_ERR_NOMEM, "out of memory building the checkpoint header");
nomem:
  json_decref(root);
  json_decref(meta);
  return nn_err_set(err, NN_ERR_NOMEM, "out of memory building the checkpoint header");
}

/* The whole file image: length, padded header, data. */
static nn_status build_image(nn_model *m, const view_list *views, long opt_steps, const nn_meta_pair *extra, int nextra,
                             unsigned char **out, size_t *out_len, nn_error *err) {
  json_t *root = NULL;
  uint64_t data_size = 0;
  nn_status st = build_header(m, views, opt_steps, extra, nextra, &root, &data_size, err);
  if (st) return st;
  char *hdr = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!hdr) return nn_err_set(err, NN_ERR_NOMEM, "out of memory writing the checkpoint header");
  size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
  size_t total = 8 + padded + (size_t)data_size;
  unsigned char *buf = malloc(total);
  if (!buf) {
    free(hdr);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory for a %zu-byte checkpoint", total);
  }
  put_u64(buf, padded);
  memcpy(buf + 8, hdr, hl);
  memset(buf + 8 + hl, ' ', padded - hl);
  free(hdr);
  unsigned char *p = buf + 8 + padded;
  for (int i = 0; i < views->n; i++) {
    const nn_tensor_view v = views->v[i];
    if (!v.data) {
      put_u64(p, (uint64_t)*v.count_value);
      p += 8;
      continue;
    }
    for (size_t j = 0; j < v.count; j++, p += 4) {
      uint32_t u;
      memcpy(&u, &v.data[j], 4);
      put_u32(p, u);
    }
  }
  NN_ASSERT(p == buf + total);
  *out = buf;
  *out_len = total;
  return NN_OK;
}

nn_status nn_checkpoint_save(nn_model *m, const char *path, const nn_meta_pair *extra, int nextra, nn_error *err) {
  return nn_checkpoint_save_training(m, NULL, path, extra, nextra, err);
}

nn_status nn_checkpoint_save_training(nn_model *m, nn_optimizer *opt, const char *path, const nn_meta_pair *extra,
                                     int nextra, nn_error *err) {
  if (!m || !path || !*path || nextra < 0 || (nextra > 0 && !extra))
    return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_save: invalid arguments");
  unsigned char *img = NULL;
  size_t len = 0;
  view_list views = {0};
  nn_status st = collect_views(m, opt, &views, err);
  if (!st) st = build_image(m, &views, opt ? nn_optimizer_steps(opt) : -1, extra, nextra, &img, &len, err);
  free(views.v);
  if (st) return nn_err_prefix(err, st, "%s: ", path);

  st = nn_file_write_atomic(path, img, len, err);
  free(img);
  return st;
}

/* ================================= load ================================================ */

typedef struct {
  const char *name; /* owned by the JSON header */
  char dtype[16];
  int dsize;
  int ndim;
  int64_t dims[8];
  uint64_t begin, end;
  int used;
} entry;

typedef struct {
  const char *path;
  unsigned char *file; /* whole file */
  size_t size;
  const unsigned char *data; /* data section */
  uint64_t data_size;
  json_t *root;
  json_t *meta; /* borrowed from root, may be NULL */
  entry *ents;
  int nents;
} ckpt_file;

static void ckpt_close(ckpt_file *c) {
  free(c->file);
  json_decref(c->root);
  free(c->ents);
  memset(c, 0, sizeof *c);
}

static int int_in_json(const json_t *v, int64_t *out) {
  if (!json_is_integer(v)) return 0;
  *out = (int64_t)json_integer_value(v);
  return 1;
}

/* Check one tensor entry of the header. */
static nn_status parse_entry(ckpt_file *c, const char *name, json_t *v, entry *e, nn_error *err) {
  const char *p = c->path;
  memset(e, 0, sizeof *e);
  e->name = name;
  if (!json_is_object(v)) return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", p, name);
  json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
  if (!json_is_string(dt)) return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", p, name);
  const char *ds = json_string_value(dt);
  if (!(e->dsize = dtype_size(ds)))
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.20s'", p, name, ds);
  snprintf(e->dtype, sizeof e->dtype, "%s", ds);
  if (!json_is_array(sh))
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': missing shape (an array of sizes)", p, name);
  size_t nd = json_array_size(sh);
  if (nd > sizeof e->dims / sizeof e->dims[0])
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': shape has %zu dimensions (at most 8 supported)", p, name, nd);
  e->ndim = (int)nd;
  uint64_t elems = 1;
  int overflow = 0;
  for (size_t i = 0; i < nd; i++) {
    int64_t d;
    if (!int_in_json(json_array_get(sh, i), &d) || d < 0)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': shape entry %zu is not a non-negative integer", p, name, i);
    e->dims[i] = d;
    if (d && elems > UINT64_MAX / (uint64_t)d) overflow = 1;
    elems *= (uint64_t)d;
  }
  int64_t b, en;
  if (!json_is_array(off) || json_array_size(off) != 2 || !int_in_json(json_array_get(off, 0), &b) ||
      !int_in_json(json_array_get(off, 1), &en) || b < 0 || en < 0)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': data_offsets must be two non-negative integers", p, name);
  e->begin = (uint64_t)b;
  e->end = (uint64_t)en;
  if (e->begin > e->end)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) end before they begin", p, name,
                      (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > c->data_size)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets [%llu, %llu) out of bounds of the %llu-byte data section "
                      "(file truncated?)",
                      p, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)c->data_size);
  if (overflow || elems > UINT64_MAX / (uint64_t)e->dsize || elems * (uint64_t)e->dsize != e->end - e->begin) {
    char shp[128];
    format_shape(e->dims, e->ndim, shp, sizeof shp);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': size mismatch: shape %s of %s needs %s%llu bytes, data_offsets hold %llu",
                      p, name, shp, e->dtype, overflow ? "over " : "",
                      overflow ? (unsigned long long)UINT64_MAX : (unsigned long long)(elems * (uint64_t)e->dsize),
                      (unsigned long long)(e->end - e->begin));
  }
  return NN_OK;
}

static int cmp_begin(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Open and validate a checkpoint: header and every tensor entry. With header_only the data
 * section is not read (only its size is known from the file size). */
static nn_status ckpt_open(const char *path, int header_only, ckpt_file *c, nn_error *err) {
  memset(c, 0, sizeof *c);
  c->path = path;
  FILE *f = fopen(path, "rb");
  if (!f) return nn_err_set(err, NN_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) {
    int e = errno;
    fclose(f);
    return nn_err_set(err, NN_ERR_IO, "%s: cannot read checkpoint: %s", path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    fclose(f);
    return nn_err_set(err, NN_ERR_IO, "%s: cannot read checkpoint: %s", path,
                      S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
  }
  if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
    fclose(f);
    return nn_err_set(err, NN_ERR_IO, "%s: checkpoint too large for this machine", path);
  }
  size_t size = (size_t)sb.st_size;
  if (size < 8) {
    fclose(f);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: not a safetensors file: %zu bytes, too short for the 8-byte header length",
                      path, size);
  }
  unsigned char lenb[8];
  if (fread(lenb, 1, 8, f) != 8) {
    int e = errno;
    fclose(f);
    return nn_err_set(err, NN_ERR_IO, "%s: cannot read checkpoint: %s", path, e ? strerror(e) : "unexpected end of file");
  }
  /* a PyTorch pickle/zip or a Keras file: say what it is before trusting a header length */
  if (nn_file_sniff(lenb, 8) != NN_FILE_OTHER) {
    fclose(f);
    return nn_not_safetensors(path, nn_file_sniff(lenb, 8), err);
  }
  uint64_t hlen = get_u64(lenb);
  if (hlen > size - 8 || hlen > NN_CKPT_MAX_HEADER) {
    fclose(f);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: not a safetensors file: header length %llu %s", path,
                      (unsigned long long)hlen,
                      hlen > size - 8 ? "is larger than the file" : "is over the 100 MB limit");
  }
  size_t want = header_only ? 8 + (size_t)hlen : size;
  c->file = malloc(want ? want : 1);
  if (!c->file) {
    fclose(f);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory for %zu bytes", path, want);
  }
  memcpy(c->file, lenb, 8);
  size_t got = fread(c->file + 8, 1, want - 8, f);
  int e = errno;
  fclose(f);
  if (got != want - 8) {
    ckpt_close(c);
    return nn_err_set(err, NN_ERR_IO, "%s: cannot read checkpoint: %s", path,
                      e && got == 0 ? strerror(e) : "file shrank while reading");
  }
  c->size = want;
  c->data = c->file + 8 + hlen;
  c->data_size = (uint64_t)size - 8 - hlen;

  json_error_t je;
  c->root = json_loadb((const char *)c->file + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
  if (!c->root) {
    nn_status st = nn_err_set(err, NN_ERR_FORMAT, "%s: header is not valid JSON (%s at byte %d)", path, je.text,
                              je.position);
    ckpt_close(c);
    return st;
  }
  if (!json_is_object(c->root)) {
    ckpt_close(c);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: header is not a JSON object", path);
  }
  size_t n = json_object_size(c->root);
  c->ents = calloc(n ? n : 1, sizeof *c->ents);
  if (!c->ents) {
    ckpt_close(c);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  }
  const char *key;
  json_t *val;
  json_object_foreach(c->root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(val)) {
        ckpt_close(c);
        return nn_err_set(err, NN_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
      }
      const char *mk;
      json_t *mv;
      json_object_foreach(val, mk, mv) {
        if (!json_is_string(mv)) {
          nn_status st = nn_err_set(err, NN_ERR_FORMAT, "%s: __metadata__ value of '%.64s' is not a string", path, mk);
          ckpt_close(c);
          return st;
        }
      }
      c->meta = val;
      continue;
    }
    nn_status st = parse_entry(c, key, val, &c->ents[c->nents], err);
    if (st) {
      ckpt_close(c);
      return st;
    }
    c->nents++;
  }
  /* No two tensors may share bytes: sort a copy by begin and compare neighbours. */
  if (c->nents > 1) {
    entry *s = malloc((size_t)c->nents * sizeof *s);
    if (!s) {
      ckpt_close(c);
      return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(s, c->ents, (size_t)c->nents * sizeof *s);
    qsort(s, (size_t)c->nents, sizeof *s, cmp_begin);
    for (int i = 1; i < c->nents; i++) {
      if (s[i].begin < s[i - 1].end && s[i].begin < s[i].end) {
        nn_status st = nn_err_set(err, NN_ERR_FORMAT,
                                  "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) have overlapping data_offsets",
                                  path, s[i - 1].name, (unsigned long long)s[i - 1].begin,
                                  (unsigned long long)s[i - 1].end, s[i].name, (unsigned long long)s[i].begin,
                                  (unsigned long long)s[i].end);
        free(s);
        ckpt_close(c);
        return st;
      }
    }
    free(s);
  }
  return NN_OK;
}

static entry *find_entry(ckpt_file *c, const char *name) {
  for (int i = 0; i < c->nents; i++)
    if (strcmp(c->ents[i].name, name) == 0) return &c->ents[i];
  return NULL;
}

/* Copy one tensor into the model view after checking dtype and shape. */
static nn_status load_tensor(ckpt_file *c, const nn_tensor_view *v, entry *e, nn_error *err) {
  int is_count = v->data == NULL;
  if (is_count ? strcmp(e->dtype, "I64") != 0 : strcmp(e->dtype, "F32") != 0 && strcmp(e->dtype, "F64") != 0)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", c->path, v->name, e->dtype,
                      is_count ? "I64" : "F32");
  int same = e->ndim == v->ndim;
  for (int d = 0; same && d < v->ndim; d++) same = e->dims[d] == v->dims[d];
  if (!same) {
    int64_t want[4];
    for (int d = 0; d < v->ndim; d++) want[d] = v->dims[d];
    char got_s[128], want_s[64];
    format_shape(e->dims, e->ndim, got_s, sizeof got_s);
    format_shape(want, v->ndim, want_s, sizeof want_s);
    return nn_err_set(err, NN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model spec needs %s", c->path, v->name,
                      got_s, want_s);
  }
  const unsigned char *p = c->data + e->begin;
  if (is_count) {
    int64_t nbt = (int64_t)get_u64(p);
    if (nbt < 0)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s' is negative (%lld)", c->path, v->name, (long long)nbt);
    *v->count_value = nbt;
  } else if (e->dsize == 4) {
    for (size_t j = 0; j < v->count; j++, p += 4) {
      uint32_t u = get_u32(p);
      memcpy(&v->data[j], &u, 4);
    }
  } else {
    for (size_t j = 0; j < v->count; j++, p += 8) {
      uint64_t u = get_u64(p);
      double d;
      memcpy(&d, &u, 8);
      v->data[j] = (float)d;
    }
  }
  e->used = 1;
  return NN_OK;
}

nn_status nn_checkpoint_load(const char *path, const nn_spec *spec, nn_model **out, nn_error *err) {
  nn_file_kind kind = NN_FILE_OTHER;
  if (path && out && nn_file_kind_of(path, &kind, NULL) == NN_OK && (kind == NN_FILE_ZIP || kind == NN_FILE_HDF5))
    return nn_keras_load(path, kind, spec, out, err); /* a Keras .keras / .weights.h5 (or a PyTorch zip) */
  if (!out) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_load: out is NULL");
  *out = NULL;
  if (!path) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_load: path is NULL");
  ckpt_file c;
  nn_status st = ckpt_open(path, 0, &c, err);
  if (st) return st;

  nn_spec *own = NULL;
  nn_model *m = NULL;
  /* Another producer's "format" (e.g. PyTorch's "pt") is fine; a newer normnet one is not. */
  json_t *fmt = c.meta ? json_object_get(c.meta, "format") : NULL;
  if (fmt && strncmp(json_string_value(fmt), "normnet/", 8) == 0 && strcmp(json_string_value(fmt), NN_CKPT_FORMAT) != 0) {
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: unsupported checkpoint format '%.32s' (this build reads %s)", path,
                    json_string_value(fmt), NN_CKPT_FORMAT);
    goto done;
  }
  if (!spec) {
    json_t *t = c.meta ? json_object_get(c.meta, NN_CKPT_SPEC_KEY) : NULL;
    if (!t) {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: has no normnet metadata; pass the model spec (--model)", path);
      goto done;
    }
    if ((st = nn_spec_parse(json_string_value(t), NN_CKPT_SPEC_KEY, &own, err))) {
      st = nn_err_prefix(err, NN_ERR_FORMAT, "%s: ", path);
      goto done;
    }
    spec = own;
  }
  if ((st = nn_model_create(spec, &m, err))) {
    st = nn_err_prefix(err, own ? NN_ERR_FORMAT : st, "%s: ", path);
    goto done;
  }
  int nt = nn_model_num_tensors(m);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    entry *e = find_entry(&c, v.name);
    if (!e) {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: missing tensor '%s' (%d tensors in the file, the model spec needs %d)",
                      path, v.name, c.nents, nt);
      goto done;
    }
    if ((st = load_tensor(&c, &v, e, err))) goto done;
  }
  json_t *rngs = c.meta ? json_object_get(c.meta, NN_CKPT_RNG_KEY) : NULL;
  if (rngs) layer_rngs_restore(m, json_string_value(rngs));
  /* Anything left over means the file describes a different model. */
  {
    char list[256];
    size_t used = 0;
    int extra = 0;
    list[0] = 0;
    for (int i = 0; i < c.nents; i++) {
      if (c.ents[i].used || strncmp(c.ents[i].name, NN_CKPT_OPTIM_PREFIX, strlen(NN_CKPT_OPTIM_PREFIX)) == 0) continue;
      if (extra < 4 && used < sizeof list)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s'%.48s'", extra ? ", " : "", c.ents[i].name);
      extra++;
    }
    if (extra) {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: %d unexpected tensor%s not in the model spec: %s%s", path, extra,
                      extra > 1 ? "s" : "", list, extra > 4 ? ", ..." : "");
      goto done;
    }
  }
  *out = m;
  m = NULL;
  st = NN_OK;
done:
  nn_model_free(m);
  nn_spec_free(own);
  ckpt_close(&c);
  return st;
}

nn_status nn_checkpoint_meta(const char *path, const char *key, char **value, nn_error *err) {
  if (!value) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_meta: value is NULL");
  *value = NULL;
  if (!path || !key) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_meta: path or key is NULL");
  ckpt_file c;
  nn_status st = ckpt_open(path, 1, &c, err);
  if (st) return st;
  json_t *v = c.meta ? json_object_get(c.meta, key) : NULL;
  if (v) {
    *value = strdup(json_string_value(v));
    if (!*value) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  }
  ckpt_close(&c);
  return st;
}

nn_status nn_checkpoint_load_optimizer(const char *path, nn_model *m, nn_optimizer *opt, nn_error *err) {
  if (!path || !m || !opt) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_load_optimizer: invalid arguments");
  ckpt_file c;
  nn_status st = ckpt_open(path, 0, &c, err);
  if (st) return st;
  json_t *steps = c.meta ? json_object_get(c.meta, NN_CKPT_STEPS_KEY) : NULL;
  long n = -1;
  if (!steps || sscanf(json_string_value(steps), "%ld", &n) != 1 || n < 0) {
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: no optimizer state (metadata '%s'); it was not saved for resuming", path,
                    NN_CKPT_STEPS_KEY);
    goto done;
  }
  int nt = nn_optimizer_num_tensors(opt, m);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_optimizer_tensor(opt, m, i, &v);
    entry *e = find_entry(&c, v.name);
    if (!e) {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: missing optimizer tensor '%s' (was it saved with another optimizer?)", path,
                      v.name);
      goto done;
    }
    if ((st = load_tensor(&c, &v, e, err))) goto done;
  }
  nn_optimizer_set_steps(opt, n);
done:
  ckpt_close(&c);
  return st;
}
