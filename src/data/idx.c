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
#include <unistd.h>
#include <zlib.h>

#include "base/error.h"
#include "base/file_read.h"
#include "data/dataset.h"

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

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

/* deflate never expands data more than 1032:1, so a gzip file of S bytes inflates to at
 * most 1032 S bytes (plus slack for headers): a header asking for more is refused before
 * anything is allocated or inflated. */
#define GZ_MAX_RATIO 1032u
#define TRAILING_PROBE 65536u /* trailing bytes counted at most, for the message */

/* One IDX file being read: the header first, then exactly the data it announces. */
typedef struct {
  const char *path;
  gzFile f;
  off_t file_size; /* on disk (compressed or not) */
  int raw;         /* not gzip: sizes are known from file_size */
  uint32_t dims[3];
  uint64_t bytes; /* data bytes announced by the header */
  char shape[64]; /* "N x H x W" */
} idx_file;

/* Read up to len bytes; returns the count (short only at the end) or -1 with err filled. */
static long long gz_read(idx_file *x, uint8_t *buf, uint64_t len, nn_error *err) {
  uint64_t n = 0;
  while (n < len) {
    uint64_t want = len - n < (1u << 30) ? len - n : (1u << 30);
    int got = gzread(x->f, buf + n, (unsigned)want);
    if (got < 0) {
      int errnum = 0;
      const char *m = gz_msg(x->f, x->path, &errnum);
      if (errnum == Z_ERRNO) nn_err_set(err, NN_ERR_IO, "%s: read error: %s", x->path, m);
      else if (errnum == Z_MEM_ERROR) nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory inflating", x->path);
      else nn_err_set(err, NN_ERR_FORMAT, "%s: corrupt gzip data: %s", x->path, m);
      return -1;
    }
    if (got == 0) {
      int errnum = 0;
      const char *m = gz_msg(x->f, x->path, &errnum);
      if (errnum == Z_BUF_ERROR) {
        nn_err_set(err, NN_ERR_FORMAT, "%s: truncated gzip stream (%s) after %llu decompressed bytes", x->path, m,
                   (unsigned long long)n);
        return -1;
      }
      break;
    }
    n += (unsigned)got;
  }
  return (long long)n;
}

static void idx_close(idx_file *x) {
  if (x->f) gzclose(x->f);
  x->f = NULL;
}

/* Open `path` (a regular file, raw or gzip) and read and check its header. */
static nn_status idx_open(idx_file *x, const char *path, uint32_t magic, int ndims, nn_error *err) {
  memset(x, 0, sizeof *x);
  x->path = path;
  int fd = nn_file_open_regular(path, &x->file_size, err);
  if (fd < 0) return NN_ERR_IO;
  x->f = gzdopen(fd, "rb");
  if (!x->f) {
    close(fd);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory opening", path);
  }
  gzbuffer(x->f, 1u << 16);
  uint8_t head[16];
  size_t header = 4 + 4 * (size_t)ndims;
  long long got = gz_read(x, head, header, err);
  if (got < 0) return err ? err->code : NN_ERR_FORMAT;
  x->raw = gzdirect(x->f);
  const char *kind = magic == IDX_MAGIC_IMAGES ? "u8 3-d images" : "u8 1-d labels";
  if (got < 4)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: file is %lld bytes, too short for an IDX header (4-byte magic)", path,
                      got);
  uint32_t m = be32(head);
  if (m != magic) {
    const char *hint = "";
    if (magic == IDX_MAGIC_IMAGES && m == IDX_MAGIC_LABELS)
      hint = "; this is an IDX label file (images and labels swapped?)";
    else if (magic == IDX_MAGIC_LABELS && m == IDX_MAGIC_IMAGES)
      hint = "; this is an IDX image file (images and labels swapped?)";
    return nn_err_set(err, NN_ERR_FORMAT, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s)%s", path, (unsigned)m,
                      (unsigned)magic, kind, hint);
  }
  if ((size_t)got < header)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated header: file is %lld bytes, an IDX %d-d header needs %zu",
                      path, got, ndims, header);
  uint64_t prod = 1;
  size_t len = 0;
  for (int k = 0; k < ndims; k++) {
    x->dims[k] = be32(head + 4 + 4 * k);
    if (x->dims[k] == 0)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: dimension %d of the IDX header is 0", path, k);
    if (x->dims[k] > (uint32_t)INT_MAX)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: dimension %d is %u, more than %d", path, k, (unsigned)x->dims[k],
                        INT_MAX);
    if (__builtin_mul_overflow(prod, (uint64_t)x->dims[k], &prod)) prod = UINT64_MAX; /* refused below */
    len += (size_t)snprintf(x->shape + len, sizeof x->shape - len, "%s%u", k ? " x " : "", (unsigned)x->dims[k]);
  }
  if (ndims == 3 && (uint64_t)x->dims[1] * x->dims[2] > (uint64_t)INT_MAX)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: images of %u x %u pixels are too large", path, (unsigned)x->dims[1],
                      (unsigned)x->dims[2]);
  x->bytes = prod;
  /* what the file can hold at most, known before reading any data */
  uint64_t disk = (uint64_t)x->file_size;
  if (x->raw && prod > disk - header)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated: the header says %s = %llu data bytes but the file has %llu",
                      path, x->shape, (unsigned long long)prod, (unsigned long long)(disk - header));
  if (!x->raw && prod / GZ_MAX_RATIO > disk)
    return nn_err_set(err, NN_ERR_FORMAT,
                      "%s: truncated: the header says %s = %llu data bytes but a %llu-byte gzip file inflates to at "
                      "most %llu",
                      path, x->shape, (unsigned long long)prod, (unsigned long long)disk,
                      (unsigned long long)disk * GZ_MAX_RATIO);
  return NN_OK;
}

/* Read exactly the announced data into buf (x->bytes long), then make sure nothing follows. */
static nn_status idx_read_data(idx_file *x, uint8_t *buf, nn_error *err) {
  long long got = gz_read(x, buf, x->bytes, err);
  if (got < 0) return err ? err->code : NN_ERR_FORMAT;
  if ((uint64_t)got < x->bytes)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated: the header says %s = %llu data bytes but the file has %lld",
                      x->path, x->shape, (unsigned long long)x->bytes, got);
  /* trailing data: counted up to TRAILING_PROBE bytes, never inflated further */
  uint8_t probe[4096];
  uint64_t extra = 0;
  while (extra < TRAILING_PROBE) {
    long long t = gz_read(x, probe, sizeof probe, err);
    if (t < 0) return err ? err->code : NN_ERR_FORMAT;
    if (t == 0) break;
    extra += (uint64_t)t;
  }
  if (extra)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: %s%llu trailing bytes after the %llu data bytes of %s", x->path,
                      extra >= TRAILING_PROBE ? "at least " : "", (unsigned long long)extra,
                      (unsigned long long)x->bytes, x->shape);
  int rc = gzclose(x->f);
  x->f = NULL;
  if (rc == Z_BUF_ERROR)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated gzip stream after %llu decompressed bytes", x->path,
                      (unsigned long long)x->bytes);
  if (rc != Z_OK) return nn_err_set(err, NN_ERR_IO, "%s: error closing file (zlib code %d)", x->path, rc);
  return NN_OK;
}

nn_status nn_dataset_load_idx(const char *images_path, const char *labels_path, nn_dataset **out,
                              nn_error *err) {
  if (out) *out = NULL;
  if (!images_path || !labels_path || !out)
    return nn_err_set(err, NN_ERR_ARG, "nn_dataset_load_idx: paths and output must not be NULL");
  idx_file im, lb = {.f = NULL}; /* all of lb zeroed: idx_close(&lb) runs on every path */
  nn_dataset *ds = NULL;
  uint8_t *labels = NULL;
  /* both headers first: nothing is allocated for data that cannot be right */
  nn_status st = idx_open(&im, images_path, IDX_MAGIC_IMAGES, 3, err);
  if (!st) st = idx_open(&lb, labels_path, IDX_MAGIC_LABELS, 1, err);
  if (!st && im.dims[0] != lb.dims[0])
    st = nn_err_set(err, NN_ERR_SHAPE, "%s has %u images but %s has %u labels", images_path,
                    (unsigned)im.dims[0], labels_path, (unsigned)lb.dims[0]);
  if (!st)
    st = nn_dataset_new((int)im.dims[0], 1, (int)im.dims[1], (int)im.dims[2], IDX_NUM_CLASSES, images_path, &ds, err);
  if (!st) st = idx_read_data(&im, ds->images, err);
  if (!st && !(labels = malloc(lb.bytes))) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", labels_path);
  if (!st) st = idx_read_data(&lb, labels, err);
  for (uint32_t i = 0; !st && i < lb.dims[0]; i++) {
    if (labels[i] >= IDX_NUM_CLASSES)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: label %u at index %u is out of range [0, %d)", labels_path,
                      (unsigned)labels[i], (unsigned)i, IDX_NUM_CLASSES);
    else
      ds->labels[i] = labels[i];
  }
  idx_close(&im);
  idx_close(&lb);
  free(labels);
  if (st) {
    nn_dataset_free(ds);
    return st;
  }
  *out = ds;
  return NN_OK;
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

int nn_idx_dir_holds(const char *dir) {
  static const char *const prefixes[] = {"train", "t10k"};
  for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
    char *p = NULL;
    if (find_idx(dir, prefixes[k], "images", "idx3", &p, NULL) == NN_OK) {
      free(p);
      return 1;
    }
  }
  return 0;
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
