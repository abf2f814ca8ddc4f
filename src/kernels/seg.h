/* Row segment helpers (internal to src/kernels/): copy, add and zero a run of 8..32 floats,
 * where a memcpy call or a vectorized loop with its prologue/epilogue costs more than the
 * data movement (im2col/col2im in conv2d.c, the direct convolution's output rows in
 * conv2d_direct.c). dst and src are distinct. */
#ifndef NN_KERNELS_SEG_H
#define NN_KERNELS_SEG_H
#if (defined(__AVX512F__) && defined(__AVX512VL__)) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* With AVX-512, 16- and 8-wide unmasked steps, then one masked 8-wide tail (masked-off lanes are
 * not accessed). The tail stays 8 wide: the footprint of a 16-wide masked store would
 * overlap the next row's load when rows are < 64 bytes apart, and loads cannot be
 * forwarded from masked stores (the load waits for the store to commit). */
#if defined(__AVX512F__) && defined(__AVX512VL__)
static inline __mmask8 tail_mask(int r) { return (__mmask8)((1u << r) - 1u); }
static inline void seg_copy(float *dst, const float *src, int len) {
  int q = 0;
  for (; q + 16 <= len; q += 16) _mm512_storeu_ps(dst + q, _mm512_loadu_ps(src + q));
  if (q + 8 <= len) _mm256_storeu_ps(dst + q, _mm256_loadu_ps(src + q)), q += 8;
  if (q < len) {
    __mmask8 m = tail_mask(len - q);
    _mm256_mask_storeu_ps(dst + q, m, _mm256_maskz_loadu_ps(m, src + q));
  }
}
static inline void seg_add(float *dst, const float *src, int len) {
  int q = 0;
  for (; q + 16 <= len; q += 16)
    _mm512_storeu_ps(dst + q, _mm512_add_ps(_mm512_loadu_ps(dst + q), _mm512_loadu_ps(src + q)));
  if (q + 8 <= len)
    _mm256_storeu_ps(dst + q, _mm256_add_ps(_mm256_loadu_ps(dst + q), _mm256_loadu_ps(src + q))), q += 8;
  if (q < len) {
    __mmask8 m = tail_mask(len - q);
    _mm256_mask_storeu_ps(dst + q, m, _mm256_add_ps(_mm256_maskz_loadu_ps(m, dst + q), _mm256_maskz_loadu_ps(m, src + q)));
  }
}
static inline void seg_zero(float *dst, int len) {
  int q = 0;
  for (; q + 16 <= len; q += 16) _mm512_storeu_ps(dst + q, _mm512_setzero_ps());
  if (q + 8 <= len) _mm256_storeu_ps(dst + q, _mm256_setzero_ps()), q += 8;
  if (q < len) _mm256_mask_storeu_ps(dst + q, tail_mask(len - q), _mm256_setzero_ps());
}
#elif defined(__AVX2__)
/* AVX2 (no masked stores worth using: vmaskmovps stores are slow on AMD): 8-wide steps,
 * and for a copy or a zero fill of >= 8 floats a last 8-wide step that ends at len and
 * overlaps the previous one (it writes the same values again). Adds keep a scalar tail. */
static inline void seg_copy(float *dst, const float *src, int len) {
  if (len < 8) {
    for (int q = 0; q < len; q++) dst[q] = src[q];
    return;
  }
  int q = 0;
  for (; q + 8 <= len; q += 8) _mm256_storeu_ps(dst + q, _mm256_loadu_ps(src + q));
  if (q < len) _mm256_storeu_ps(dst + len - 8, _mm256_loadu_ps(src + len - 8));
}
static inline void seg_add(float *dst, const float *src, int len) {
  int q = 0;
  for (; q + 8 <= len; q += 8)
    _mm256_storeu_ps(dst + q, _mm256_add_ps(_mm256_loadu_ps(dst + q), _mm256_loadu_ps(src + q)));
  for (; q < len; q++) dst[q] += src[q];
}
static inline void seg_zero(float *dst, int len) {
  if (len < 8) {
    for (int q = 0; q < len; q++) dst[q] = 0.0f;
    return;
  }
  int q = 0;
  for (; q + 8 <= len; q += 8) _mm256_storeu_ps(dst + q, _mm256_setzero_ps());
  if (q < len) _mm256_storeu_ps(dst + len - 8, _mm256_setzero_ps());
}
#else
static inline void seg_copy(float *dst, const float *src, int len) {
  for (int q = 0; q < len; q++) dst[q] = src[q];
}
static inline void seg_add(float *dst, const float *src, int len) {
  for (int q = 0; q < len; q++) dst[q] += src[q];
}
static inline void seg_zero(float *dst, int len) {
  for (int q = 0; q < len; q++) dst[q] = 0.0f;
}
#endif

#endif
