/* The safetensors container, independent of what the tensors mean (ARCHITECTURE.md §6):
 *
 *     [u64 little-endian N][N bytes of JSON header, space-padded to a multiple of 8][data]
 *     header = {"__metadata__": {"key": "string", ...},
 *               "name": {"dtype": "F32", "shape": [6,1,5,5], "data_offsets": [0, 600]}, ...}
 *
 * Reading trusts nothing: the header length is bounded, the JSON parse is length-bounded and
 * rejects duplicate keys, metadata values must be strings, and every entry is checked (known
 * dtype, shape, offsets in bounds, byte size == prod(shape) * dtype size, no two tensors
 * sharing a byte) when the file is opened, before any tensor is used. The header is parsed
 * once; queries and tensor reads then go through the handle. */
#ifndef NN_IO_SAFETENSORS_H
#define NN_IO_SAFETENSORS_H
#include <stdint.h>

#include "normnet.h"

typedef struct {
  const char *name; /* owned by the handle */
  char dtype[16];
  int dsize; /* bytes per element */
  int ndim;
  int64_t dims[8];
  uint64_t begin, end; /* byte offsets in the data section */
} nn_st_entry;

typedef struct nn_st_file nn_st_file;

/* Open, read and validate PATH. Errors name the file and the tensor. */
nn_status nn_st_open(const char *path, nn_st_file **out, nn_error *err);
void nn_st_close(nn_st_file *f);
const char *nn_st_path(const nn_st_file *f);
/* A metadata value (owned by the handle), or NULL if absent. */
const char *nn_st_meta(const nn_st_file *f, const char *key);
int nn_st_count(const nn_st_file *f);
const nn_st_entry *nn_st_at(const nn_st_file *f, int i);
const nn_st_entry *nn_st_find(const nn_st_file *f, const char *name);
/* The entry's bytes (entry->end - entry->begin of them), little-endian. */
const unsigned char *nn_st_bytes(const nn_st_file *f, const nn_st_entry *e);
/* "[6,1,5,5]" ("[]" for a scalar). */
void nn_st_format_shape(const int64_t *dims, int ndim, char *buf, size_t len);

/* ---- writing ---- */
/* One tensor to write: F32 from `f32` or I64 from `i64` (count elements), packed in order. */
typedef struct {
  const char *name;
  int ndim;
  int dims[4];
  size_t count;
  const float *f32;
  const int64_t *i64;
} nn_st_tensor;
/* Write the file atomically (nn_file_write_atomic): metadata pairs first (keys must be
 * distinct, values valid UTF-8), then the tensors' entries. */
nn_status nn_st_write(const char *path, const nn_meta_pair *meta, int nmeta, const nn_st_tensor *t, int nt,
                      nn_error *err);

#endif
