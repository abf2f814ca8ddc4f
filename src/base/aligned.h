/* Buffers the kernels stream through, at a cache-line boundary (64 bytes: one AVX-512
 * vector). A large block from malloc starts 16 bytes past one (glibc's mmap'd chunks), and
 * then every 64-byte vector load straddles two lines: LeNet conv2's direct dx ran 1.35x
 * slower from such a workspace (run 29). Blocks come from C11's aligned_alloc, freed by free().
 * Static inline: no state. */
#ifndef NN_BASE_ALIGNED_H
#define NN_BASE_ALIGNED_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NN_ALIGN_BYTES 64
#define NN_ALIGN_FLOATS ((uint64_t)(NN_ALIGN_BYTES / sizeof(float)))

/* n floats rounded up to whole lines, for sizes a plan already bounds (the kernels' scratch) */
static inline size_t nn_line_floats(size_t n) {
  return (size_t)((n + NN_ALIGN_FLOATS - 1) / NN_ALIGN_FLOATS * NN_ALIGN_FLOATS);
}

/* *r = n floats rounded up to whole lines; -1 on overflow (sizes from input) */
static inline int nn_align_floats(uint64_t n, uint64_t *r) {
  if (n > UINT64_MAX - (NN_ALIGN_FLOATS - 1) || n > SIZE_MAX - (NN_ALIGN_FLOATS - 1)) return -1;
  *r = nn_line_floats((size_t)n);
  return 0;
}

/* n floats (at least one line) at a line boundary, zeroed if `zero`; NULL when out of memory
 * or too large */
static inline float *nn_alloc_floats(size_t n, int zero) {
  uint64_t r;
  if (nn_align_floats(n ? n : 1, &r) || r > SIZE_MAX / sizeof(float)) return NULL;
  float *p = aligned_alloc(NN_ALIGN_BYTES, (size_t)r * sizeof(float));
  if (p && zero) memset(p, 0, (size_t)r * sizeof(float));
  return p;
}

#endif
