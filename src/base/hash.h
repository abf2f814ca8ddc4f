/* A 64-bit FNV-1a digest, fed 8 bytes at a time (the tail a byte at a time): for comparing
 * copies of the same data between processes of one architecture (dist; words are read in
 * the machine's byte order), never stored and not a checksum against tampering. Internal. */
#ifndef NN_BASE_HASH_H
#define NN_BASE_HASH_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NN_HASH_START 0xcbf29ce484222325ull

static inline uint64_t nn_hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, sizeof w);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

/* A number's value (not its padding): integers as int64, reals as their double bits. */
static inline uint64_t nn_hash_i64(uint64_t h, int64_t v) { return nn_hash_bytes(h, &v, sizeof v); }
static inline uint64_t nn_hash_f64(uint64_t h, double v) { return nn_hash_bytes(h, &v, sizeof v); }

#endif
