/* IDX reader (MNIST / Fashion-MNIST): u8 images 0x00000803 (N x H x W) and u8 labels
 * 0x00000801 (N), each raw or gzip-compressed. zlib's gzread reads raw files unchanged. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "base/error.h"
#include "data/dataset.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_NUM_CLASSES 10

/* gzerror's text is "path: message"; drop the path we print ourselves. */
static const char *gz_msg(gzFile f, const char *path, int *errnum) {
  const char *m = gzerror(f, errnum);
  size_t n = strlen(path);
  if (m && strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
  return m ? m : "unknown error";
}

/* Read the whole (decompressed) file into a malloc'd buffer. */
static nn_status read_all(const char *path, uint8_t **data, size_t *size, nn_error *err) {
  *data = NULL;
  *size = 0;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return nn_err_set(err, NN_ERR_IO, "%s: is a directory, not a data file", path);
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    return nn_err_set(err, NN_ERR_IO, "%s: cannot open: %s", path,
                      errno ? strerror(errno) : "out of memory");
  gzbuffer(f, 1u << 18);
  size_t cap = 1u << 20, n = 0;
  uint8_t *buf = malloc(cap);
  nn_status status = NN_OK;
  if (!buf) {
    status = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (;;) {
    if (n == cap) {
      uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        status = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory after %zu bytes", path, n);
        goto done;
      }
      buf = nb;
      cap *= 2;
    }
    size_t want = cap - n;
    if (want > (1u << 30)) want = 1u << 30;
    int got = gzread(f, buf + n, (unsigned)want);
    if (got < 0) {
      int errnum = 0;
      const char *m = gz_msg(f, path, &errnum);
      if (errnum == Z_ERRNO)
        status = nn_err_set(err, NN_ERR_IO, "%s: read error: %s", path, m);
      else
        status = nn_err_set(err, NN_ERR_FORMAT, "%s: corrupt gzip data: %s", path, m);
      goto done;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  {
    int errnum = 0;
    const char *m = gz_msg(f, path, &errnum);
    if (errnum == Z_BUF_ERROR) {
      status = nn_err_set(err, NN_ERR_FORMAT,
                          "%s: truncated gzip stream (%s) after %zu decompressed bytes", path, m,
                          n);
      goto done;
    }
    if (errnum != Z_OK) {
      status = nn_err_set(err, NN_ERR_IO, "%s: read error: %s", path, m);
      goto done;
    }
  }
done:;
  int rc = gzclose(f);
  if (!status && rc == Z_BUF_ERROR)
    status = nn_err_set(err, NN_ERR_FORMAT,
                        "%s: truncated gzip stream after %zu decompressed bytes", path, n);
  else if (!status && rc != Z_OK)
    status = nn_err_set(err, NN_ERR_IO, "%s: error closing file (zlib code %d)", path, rc);
  if (status) {
    free(buf);
    return status;
  }
  *data = buf;
  *size = n;
  return NN_OK;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

typedef struct {
  uint32_t dims[3];
  const uint8_t *data;  /* points into the file buffer */
  size_t bytes;         /* product of dims */
} idx_array;

/* Validate an IDX u8 array of `ndims` dimensions with the given magic. */
static nn_status idx_parse(const char *path, const uint8_t *buf, size_t size, uint32_t magic,
                           int ndims, idx_array *a, nn_error *err) {
  const char *kind = magic == IDX_MAGIC_IMAGES ? "u8 3-d images" : "u8 1-d labels";
  if (size < 4)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: file is %zu bytes, too short for an IDX header (4-byte magic)", path,
                      size);
  uint32_t got = be32(buf);
  if (got != magic) {
    const char *hint = "";
    if (magic == IDX_MAGIC_IMAGES && got == IDX_MAGIC_LABELS)
      hint = "; this is an IDX label file (images and labels swapped?)";
    else if (magic == IDX_MAGIC_LABELS && got == IDX_MAGIC_IMAGES)
      hint = "; this is an IDX image file (images and labels swapped?)";
    return nn_err_set(err, NN_ERR_FORMAT, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s)%s",
                      path, (unsigned)got, (unsigned)magic, kind, hint);
  }
  size_t header = 4 + 4 * (size_t)ndims;
  if (size < header)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: truncated header: file is %zu bytes, an IDX %d-d header needs %zu",
                      path, size, ndims, header);
  uint64_t prod = 1;
  char shape[64] = "";
  size_t len = 0;
  int overflow = 0;
  for (int k = 0; k < ndims; k++) {
    a->dims[k] = be32(buf + 4 + 4 * k);
    if (a->dims[k] == 0)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: dimension %d of the IDX header is 0", path, k);
    if (a->dims[k] > (uint32_t)INT_MAX)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: dimension %d is %u, more than %d", path, k,
                        (unsigned)a->dims[k], INT_MAX);
    if (prod > UINT64_MAX / a->dims[k]) overflow = 1;
    else prod *= a->dims[k];
    len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%u", k ? " x " : "",
                            (unsigned)a->dims[k]);
  }
  size_t have = size - header;
  if (overflow)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: truncated: the header says %s data bytes (more than 2^64) but the "
                      "file has %zu",
                      path, shape, have);
  if (prod > (uint64_t)have)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: truncated: the header says %s = %llu data bytes but the file has %zu",
                      path, shape, (unsigned long long)prod, have);
  if (prod < (uint64_t)have)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: %zu trailing bytes after the %llu data bytes of %s (file has %zu data "
                      "bytes)",
                      path, have - (size_t)prod, (unsigned long long)prod, shape, have);
  a->data = buf + header;
  a->bytes = (size_t)prod;
  return NN_OK;
}

nn_status nn_dataset_load_idx(const char *images_path, const char *labels_path, nn_dataset **out,
                              nn_error *err) {
  if (out) *out = NULL;
  if (!images_path || !labels_path || !out)
    return nn_err_set(err, NN_ERR_ARG, "nn_dataset_load_idx: paths and output must not be NULL");
  uint8_t *ibuf = NULL, *lbuf = NULL;
  size_t isize = 0, lsize = 0;
  idx_array im = {{0}, NULL, 0}, lb = {{0}, NULL, 0};
  nn_status st = read_all(images_path, &ibuf, &isize, err);
  if (!st) st = idx_parse(images_path, ibuf, isize, IDX_MAGIC_IMAGES, 3, &im, err);
  if (!st) st = read_all(labels_path, &lbuf, &lsize, err);
  if (!st) st = idx_parse(labels_path, lbuf, lsize, IDX_MAGIC_LABELS, 1, &lb, err);
  if (!st && im.dims[0] != lb.dims[0])
    st = nn_err_set(err, NN_ERR_SHAPE, "%s has %u images but %s has %u labels", images_path,
                    (unsigned)im.dims[0], labels_path, (unsigned)lb.dims[0]);
  if (!st && (uint64_t)im.dims[1] * im.dims[2] > (uint64_t)INT_MAX)
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: images of %u x %u pixels are too large", images_path,
                    (unsigned)im.dims[1], (unsigned)im.dims[2]);
  for (uint32_t i = 0; !st && i < lb.dims[0]; i++)
    if (lb.data[i] >= IDX_NUM_CLASSES)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: label %u at index %u is out of range [0, %d)",
                      labels_path, (unsigned)lb.data[i], (unsigned)i, IDX_NUM_CLASSES);
  nn_dataset *ds = NULL;
  if (!st)
    st = nn_dataset_new((int)im.dims[0], 1, (int)im.dims[1], (int)im.dims[2], IDX_NUM_CLASSES,
                        images_path, &ds, err);
  if (!st) {
    memcpy(ds->images, im.data, im.bytes);
    for (int i = 0; i < ds->n; i++) ds->labels[i] = lb.data[i];
    *out = ds;
  }
  free(ibuf);
  free(lbuf);
  return st;
}

/* Find DIR/PREFIX-KIND-IDXN-ubyte[.gz] or DIR/PREFIX-KIND.IDXN-ubyte[.gz]; *path is malloc'd. */
static nn_status find_idx(const char *dir, const char *prefix, const char *kind, const char *idxn,
                          char **path, nn_error *err) {
  static const char *const forms[] = {"%s-%s-%s-ubyte", "%s-%s-%s-ubyte.gz", "%s-%s.%s-ubyte",
                                      "%s-%s.%s-ubyte.gz"};
  *path = NULL;
  for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
    char name[256];
    int len = snprintf(name, sizeof name, forms[k], prefix, kind, idxn);
    if (len < 0 || (size_t)len >= sizeof name)
      return nn_err_set(err, NN_ERR_ARG, "data set prefix \"%.64s...\" is too long", prefix);
    char *p = nn_data_join(dir, name);
    if (!p) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", dir);
    struct stat st;
    if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
      *path = p;
      return NN_OK;
    }
    free(p);
  }
  return nn_err_set(err, NN_ERR_IO,
                    "%s: no %s file for \"%s\": looked for %s-%s-%s-ubyte, %s-%s-%s-ubyte.gz, "
                    "%s-%s.%s-ubyte[.gz]",
                    dir, kind, prefix, prefix, kind, idxn, prefix, kind, idxn, prefix, kind, idxn);
}

nn_status nn_dataset_load_idx_dir(const char *dir, const char *prefix, nn_dataset **out,
                                  nn_error *err) {
  if (out) *out = NULL;
  if (!dir || !prefix || !out)
    return nn_err_set(err, NN_ERR_ARG,
                      "nn_dataset_load_idx_dir: directory, prefix and output must not be NULL");
  if (!prefix[0]) return nn_err_set(err, NN_ERR_ARG, "%s: empty data set prefix", dir);
  nn_status st = nn_data_check_dir(dir, err);
  if (st) return st;
  char *images = NULL, *labels = NULL;
  st = find_idx(dir, prefix, "images", "idx3", &images, err);
  if (!st) st = find_idx(dir, prefix, "labels", "idx1", &labels, err);
  if (!st) st = nn_dataset_load_idx(images, labels, out, err);
  free(images);
  free(labels);
  return st;
}
