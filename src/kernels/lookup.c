/* lookup: dst[j] = table[src[j]] for j < count; src[count] bytes, table[256], dst[count].
 * The batch assembly's uint8 -> float (data/dataset.c builds the table from the input
 * transform). Where the variant has AVX2, 8 values per gather, the bytes widened to 32-bit
 * indices; a lookup copies a float, so every variant writes the same bits. One thread. */
#include <stddef.h>
#include <stdint.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "kernels/kernels.h"
#include "kernels/variant.h"

void NN_V(nn_u8_lookup)(const float *table, const uint8_t *src, float *dst, size_t count) {
  size_t j = 0;
#ifdef __AVX2__
  for (; j + 8 <= count; j += 8) {
    const __m256i i = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(src + j)));
    _mm256_storeu_ps(dst + j, _mm256_i32gather_ps(table, i, 4));
  }
#endif
  for (; j < count; j++) dst[j] = table[src[j]];
}
