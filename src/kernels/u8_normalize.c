/* u8_normalize: dst[j] = ((float)src[j] / 255 - mean) / std for j < count; src[count] bytes,
 * dst[count]. The batch assembly's uint8 -> float (data/dataset.c), PyTorch's ToTensor then
 * Normalize in float32: two correctly rounded divisions and a subtraction, each an IEEE
 * operation with one rounding, so every variant (8 values per vector where it has AVX2)
 * writes the same bits as the one-value formula. Computed rather than looked up in a
 * 256-entry table: an AVX2 gather took 9.2 us for a batch of 32 Fashion-MNIST images on the
 * Zen 4 host of run 33 against 5.1 us for the divisions (a scratch program, in cache). One
 * thread. */
#include <stddef.h>
#include <stdint.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "kernels/kernels.h"
#include "kernels/variant.h"

void NN_V(nn_u8_normalize)(const uint8_t *src, float *dst, size_t count, float mean, float std) {
  size_t j = 0;
#ifdef __AVX2__
  const __m256 k = _mm256_set1_ps(255.0f), m = _mm256_set1_ps(mean), s = _mm256_set1_ps(std);
  for (; j + 8 <= count; j += 8) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(src + j)));
    const __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(b), k);
    _mm256_storeu_ps(dst + j, _mm256_div_ps(_mm256_sub_ps(v, m), s));
  }
#endif
  for (; j < count; j++) {
    const float v = (float)src[j] / 255.0f;
    dst[j] = (v - mean) / std;
  }
}
