/* The safetensors container (see safetensors.h). */
#include "io/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file_read.h"
#include "io/keras_import.h"

#define NN_ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

struct nn_st_file {
  char *path;
  unsigned char *file;       /* whole file */
  const unsigned char *data; /* data section */
  uint64_t data_size;
  json_t *root;
  json_t *meta; /* borrowed from root, may be NULL */
  nn_st_entry *ents;
  int nents;
  const nn_st_entry **by_name; /* ents sorted by name: nn_st_find in log time (a model's load
                                  looks up each of its tensors: 20k layers took 66 s) */
};

/* ---- little-endian encoding (independent of the host's byte order) ------------------ */
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Every dtype of the safetensors format, so that well-formed files with tensors we do not
 * use validate; which dtypes a tensor accepts is the caller's decision. */
static const struct {
  const char *name;
  int size;
} dtypes[] = {{"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8}};

static int dtype_size(const char *name) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (strcmp(dtypes[i].name, name) == 0) return dtypes[i].size;
  return 0;
}

void nn_st_format_shape(const int64_t *dims, int ndim, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < ndim && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)dims[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

/* ================================= read ================================================ */

void nn_st_close(nn_st_file *f) {
  if (!f) return;
  free(f->path);
  free(f->file);
  json_decref(f->root);
  free(f->ents);
  free(f->by_name);
  free(f);
}

const char *nn_st_path(const nn_st_file *f) { return f->path; }
int nn_st_count(const nn_st_file *f) { return f->nents; }
const nn_st_entry *nn_st_at(const nn_st_file *f, int i) { return &f->ents[i]; }
const unsigned char *nn_st_bytes(const nn_st_file *f, const nn_st_entry *e) { return f->data + e->begin; }

const char *nn_st_meta(const nn_st_file *f, const char *key) {
  json_t *v = f->meta ? json_object_get(f->meta, key) : NULL;
  return v ? json_string_value(v) : NULL;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const nn_st_entry *const *)a)->name, (*(const nn_st_entry *const *)b)->name);
}

const nn_st_entry *nn_st_find(const nn_st_file *f, const char *name) {
  const nn_st_entry key = {.name = name}, *k = &key;
  const nn_st_entry *const *e = f->nents ? bsearch(&k, f->by_name, (size_t)f->nents, sizeof(nn_st_entry *), // NOLINT(bugprone-sizeof-expression): an array of pointers
                                                   cmp_name)
                                         : NULL;
  return e ? *e : NULL;
}

static int int_in_json(const json_t *v, int64_t *out) {
  if (!json_is_integer(v)) return 0;
  *out = (int64_t)json_integer_value(v);
  return 1;
}

/* Check one tensor entry of the header. */
static nn_status parse_entry(const nn_st_file *c, const char *name, json_t *v, nn_st_entry *e, nn_error *err) {
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
    nn_st_format_shape(e->dims, e->ndim, shp, sizeof shp);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s': size mismatch: shape %s of %s needs %s%llu bytes, data_offsets hold %llu",
                      p, name, shp, e->dtype, overflow ? "over " : "",
                      overflow ? (unsigned long long)UINT64_MAX : (unsigned long long)(elems * (uint64_t)e->dsize),
                      (unsigned long long)(e->end - e->begin));
  }
  return NN_OK;
}

static int cmp_begin(const void *a, const void *b) {
  const nn_st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* No two tensors may share a byte. Zero-length tensors hold no bytes and are left out of the
 * comparison entirely: each non-empty tensor (sorted by begin) is compared with the one that
 * reaches furthest among all non-empty tensors before it, so an empty tensor placed between
 * two overlapping ones cannot hide the overlap. */
static nn_status check_overlaps(const nn_st_file *c, nn_error *err) {
  if (c->nents < 2) return NN_OK;
  nn_st_entry *s = malloc((size_t)c->nents * sizeof *s);
  if (!s) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", c->path);
  memcpy(s, c->ents, (size_t)c->nents * sizeof *s);
  qsort(s, (size_t)c->nents, sizeof *s, cmp_begin);
  const nn_st_entry *far = NULL; /* the non-empty tensor with the largest end so far */
  nn_status st = NN_OK;
  for (int i = 0; i < c->nents && !st; i++) {
    if (s[i].begin == s[i].end) continue;
    if (far && s[i].begin < far->end)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) have overlapping data_offsets",
                      c->path, far->name, (unsigned long long)far->begin, (unsigned long long)far->end, s[i].name,
                      (unsigned long long)s[i].begin, (unsigned long long)s[i].end);
    if (!far || s[i].end > far->end) far = &s[i];
  }
  free(s);
  return st;
}

/* What a file of `size` bytes starting with head[0..n) must be before it is read whole: long
 * enough for the header length, not a PyTorch or Keras file, a header length that fits the
 * file and the limit (a 4 GB file of junk was read into memory before its first 8 bytes said
 * it was none). */
static nn_status check_start(const char *path, const unsigned char *head, size_t n, uint64_t size, nn_error *err) {
  if (size < 8 || n < 8)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: not a safetensors file: %llu bytes, too short for the 8-byte header length",
                      path, (unsigned long long)size);
  /* a PyTorch pickle/zip or a Keras file: say what it is before trusting a header length */
  nn_file_kind kind = nn_file_sniff(head, n);
  if (kind != NN_FILE_OTHER) return nn_not_safetensors(path, kind, err);
  uint64_t hlen = get_u64(head);
  if (hlen > size - 8 || hlen > NN_ST_MAX_HEADER)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: not a safetensors file: header length %llu %s", path,
                      (unsigned long long)hlen,
                      hlen > size - 8 ? "is larger than the file" : "is over the 100 MB limit");
  return NN_OK;
}

static nn_status read_file(const char *path, unsigned char **out, size_t *out_size, nn_error *err) {
  off_t fsize = 0;
  FILE *f = nn_file_fopen_regular(path, &fsize, err); /* never a FIFO, device or directory */
  if (!f) return NN_ERR_IO;
  unsigned char head[NN_FILE_SNIFF_BYTES];
  nn_status st = check_start(path, head, fread(head, 1, sizeof head, f), (uint64_t)fsize, err);
  if (!st && (uint64_t)fsize > (uint64_t)SIZE_MAX) st = nn_err_set(err, NN_ERR_IO, "%s: checkpoint too large for this machine", path);
  if (!st && fseek(f, 0, SEEK_SET) != 0) st = nn_err_set(err, NN_ERR_IO, "%s: cannot read checkpoint: %s", path, strerror(errno));
  if (st) {
    fclose(f);
    return st;
  }
  size_t size = (size_t)fsize;
  unsigned char *buf = malloc(size ? size : 1);
  if (!buf) {
    fclose(f);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
  }
  size_t got = fread(buf, 1, size, f);
  int e = errno;
  fclose(f);
  if (got != size) {
    free(buf);
    return nn_err_set(err, NN_ERR_IO, "%s: cannot read checkpoint: %s", path,
                      e && got == 0 ? strerror(e) : "file shrank while reading");
  }
  *out = buf;
  *out_size = size;
  return NN_OK;
}

static nn_status parse(nn_st_file *c, size_t size, nn_error *err) {
  const char *path = c->path;
  /* again on the bytes read (read_file checked the file's first ones: it may have changed since) */
  nn_status st = check_start(path, c->file, size < NN_FILE_SNIFF_BYTES ? size : NN_FILE_SNIFF_BYTES, size, err);
  if (st) return st;
  uint64_t hlen = get_u64(c->file);
  c->data = c->file + 8 + hlen;
  c->data_size = (uint64_t)size - 8 - hlen;
  json_error_t je;
  c->root = json_loadb((const char *)c->file + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
  if (!c->root)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: header is not valid JSON (%s at byte %d)", path, je.text, je.position);
  if (!json_is_object(c->root)) return nn_err_set(err, NN_ERR_FORMAT, "%s: header is not a JSON object", path);
  size_t n = json_object_size(c->root);
  if (!(c->ents = calloc(n ? n : 1, sizeof *c->ents))) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  const char *key;
  json_t *val;
  json_object_foreach(c->root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(val)) return nn_err_set(err, NN_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
      const char *mk;
      json_t *mv;
      json_object_foreach(val, mk, mv) {
        if (!json_is_string(mv))
          return nn_err_set(err, NN_ERR_FORMAT, "%s: __metadata__ value of '%.64s' is not a string", path, mk);
      }
      c->meta = val;
      continue;
    }
    if ((st = parse_entry(c, key, val, &c->ents[c->nents], err))) return st;
    c->nents++;
  }
  if (!(c->by_name = malloc((size_t)(c->nents ? c->nents : 1) * sizeof(nn_st_entry *)))) // NOLINT(bugprone-sizeof-expression): pointers
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  for (int i = 0; i < c->nents; i++) c->by_name[i] = &c->ents[i];
  /* names are unique (JSON_REJECT_DUPLICATES) */
  qsort(c->by_name, (size_t)c->nents, sizeof(nn_st_entry *), cmp_name); // NOLINT(bugprone-sizeof-expression): pointers
  return check_overlaps(c, err);
}

nn_status nn_st_open(const char *path, nn_st_file **out, nn_error *err) {
  *out = NULL;
  nn_st_file *c = calloc(1, sizeof *c);
  if (!c || !(c->path = strdup(path))) {
    free(c);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  }
  size_t size = 0;
  nn_status st = read_file(path, &c->file, &size, err);
  if (!st) st = parse(c, size, err);
  if (st) {
    nn_st_close(c);
    return st;
  }
  *out = c;
  return NN_OK;
}

/* ================================= write =============================================== */

static nn_status build_header(const nn_meta_pair *meta, int nmeta, const nn_st_tensor *t, int nt, char **out,
                              uint64_t *data_size, nn_error *err) {
  json_t *root = json_object(), *m = json_object();
  if (!root || !m || json_object_set_new(root, "__metadata__", m)) {
    json_decref(root);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory building the safetensors header");
  }
  for (int i = 0; i < nmeta; i++) {
    const char *k = meta[i].key, *v = meta[i].value;
    nn_status st = NN_OK;
    if (!k || !v || !*k) st = nn_err_set(err, NN_ERR_ARG, "metadata pair %d has an empty key or a NULL value", i);
    else if (json_object_get(m, k)) st = nn_err_set(err, NN_ERR_ARG, "metadata key '%s' is given twice", k);
    json_t *ks = st ? NULL : json_string(k), *vs = ks ? json_string(v) : NULL;
    json_decref(ks);
    if (!st && !vs) st = nn_err_set(err, NN_ERR_ARG, "metadata '%s': the key or value is not valid UTF-8", k);
    if (!st && json_object_set_new(m, k, vs)) st = nn_err_set(err, NN_ERR_NOMEM, "out of memory");
    if (st) {
      json_decref(root);
      return st;
    }
  }
  uint64_t off = 0;
  for (int i = 0; i < nt; i++) {
    uint64_t bytes = (uint64_t)t[i].count * (t[i].i64 ? 8u : 4u);
    json_t *shape = json_array(), *e = NULL;
    int bad = !shape;
    for (int d = 0; !bad && d < t[i].ndim; d++) bad = json_array_append_new(shape, json_integer(t[i].dims[d])) != 0;
    if (!bad)
      e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", t[i].i64 ? "I64" : "F32", "shape", shape, "data_offsets",
                    (json_int_t)off, (json_int_t)off + (json_int_t)bytes);
    else json_decref(shape);
    if (!e || json_object_get(root, t[i].name) || json_object_set_new(root, t[i].name, e)) {
      json_decref(root);
      return nn_err_set(err, e ? NN_ERR_ARG : NN_ERR_NOMEM, "tensor '%s': %s", t[i].name,
                        e ? "name given twice" : "out of memory");
    }
    off += bytes;
  }
  *out = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!*out) return nn_err_set(err, NN_ERR_NOMEM, "out of memory writing the safetensors header");
  *data_size = off;
  return NN_OK;
}

nn_status nn_st_write(const char *path, const nn_meta_pair *meta, int nmeta, const nn_st_tensor *t, int nt,
                      nn_error *err) {
  char *hdr = NULL;
  uint64_t data_size = 0;
  nn_status st = build_header(meta, nmeta, t, nt, &hdr, &data_size, err);
  if (st) return nn_err_prefix(err, st, "%s: ", path);
  size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
  size_t total = 8 + padded + (size_t)data_size;
  unsigned char *buf = malloc(total);
  if (!buf) {
    free(hdr);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory for a %zu-byte file", path, total);
  }
  put_u64(buf, padded);
  memcpy(buf + 8, hdr, hl);
  memset(buf + 8 + hl, ' ', padded - hl);
  free(hdr);
  unsigned char *p = buf + 8 + padded;
  for (int i = 0; i < nt; i++)
    for (size_t j = 0; j < t[i].count; j++) {
      if (t[i].i64) {
        put_u64(p, (uint64_t)t[i].i64[j]);
        p += 8;
      } else {
        uint32_t u;
        memcpy(&u, &t[i].f32[j], 4);
        for (int b = 0; b < 4; b++) *p++ = (unsigned char)(u >> (8 * b));
      }
    }
  NN_ASSERT(p == buf + total);
  st = nn_file_write_atomic(path, buf, total, err);
  free(buf);
  return st;
}
