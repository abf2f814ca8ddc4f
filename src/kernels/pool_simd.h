/* The 2x2 stride-2 max pool's window rule, one window at a time and in vectors, written once
 * (internal to src/kernels/): pool.c's forward, and the pool-fused batchnorm backward
 * (norm_core.h's nc_up2_run) that finds each window's argmax again in the pool's input
 * instead of reading one the forward wrote. Both compare with these, so they agree bit for
 * bit by construction.
 *
 * A window's values a b (top row) c d (bottom row) are taken in that order: the running max
 * takes a later value when pool_takes says so (greater, or NaN over a number: NaN propagates,
 * ties keep the earlier value), and the argmax is the last value taken. In vectors: lane k
 * holds window k of a row; tb, tc, td are the lanes where b, c, d were taken.
 *
 * p2_max1 takes one window (the scalar loops), p2_max4 four (SSE4.1, rows of 4..7 windows).
 * AVX2 works on 8 windows (16 floats of each input row) in the lane order 0 1 4 5 2 3 6 7,
 * which the in-lane shuffles give for free; p2_in_order8 puts a result in order (and a
 * vector in order into that lane order: it is its own inverse). AVX-512 works on up to 16
 * windows in order, a row's last ones under a mask. */
#ifndef NN_KERNELS_POOL_SIMD_H
#define NN_KERNELS_POOL_SIMD_H
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "kernels/kernels.h"

/* always inlined: gcc otherwise calls p2_max16 out of line and passes its masks through memory
 * (the CNN's 11x11 max pool 0.71x) */
#define P2_INLINE static inline __attribute__((always_inline))

P2_INLINE int pool_takes(float v, float best) { return v > best || (v != v && best == best); }

/* One window a b c d: its max, and in *k which value it is (0..3). Selects, not branches:
 * random data mispredicts half of them, and loops of it vectorize. */
P2_INLINE float p2_max1(float a, float b, float c, float d, int *k) {
  float best = a;
  int w = 0;
  const int tb = pool_takes(b, best);
  best = tb ? b : best;
  w = tb ? 1 : w;
  const int tc = pool_takes(c, best);
  best = tc ? c : best;
  w = tc ? 2 : w;
  const int td = pool_takes(d, best);
  best = td ? d : best;
  *k = td ? 3 : w;
  return best;
}

#ifdef __AVX2__
/* even and odd elements of src[0..16), in lane order 0 1 4 5 2 3 6 7 */
P2_INLINE void p2_deinterleave8(const float *src, __m256 *even, __m256 *odd) {
  __m256 lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 8);
  *even = _mm256_shuffle_ps(lo, hi, 0x88);
  *odd = _mm256_shuffle_ps(lo, hi, 0xDD);
}

/* lanes 0 1 4 5 2 3 6 7 -> 0 1 2 3 4 5 6 7, and back (it swaps the middle 64-bit pairs) */
P2_INLINE __m256 p2_in_order8(__m256 v) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}

/* dst[0..16) = a0 b0 a1 b1 ... a7 b7 for a, b in the 0 1 4 5 2 3 6 7 lane order: the in-lane
 * unpacks then give the two halves in order, with no lane-crossing step */
P2_INLINE void p2_interleave_store8(float *dst, __m256 a, __m256 b) {
  _mm256_storeu_ps(dst, _mm256_unpacklo_ps(a, b));
  _mm256_storeu_ps(dst + 8, _mm256_unpackhi_ps(a, b));
}

/* pool_takes, 8 lanes: !(v <= best) is true when v > best or either is NaN; and best not NaN
 * leaves exactly pool_takes */
P2_INLINE __m256 p2_takes8(__m256 v, __m256 best) {
  return _mm256_and_ps(_mm256_cmp_ps(v, best, _CMP_NLE_UQ), _mm256_cmp_ps(best, best, _CMP_ORD_Q));
}

/* the maxima of 8 windows whose rows start at r0 and r1, and where b, c, d were taken */
P2_INLINE __m256 p2_max8(const float *r0, const float *r1, __m256 *tb, __m256 *tc, __m256 *td) {
  __m256 a, b, c, d;
  p2_deinterleave8(r0, &a, &b);
  p2_deinterleave8(r1, &c, &d);
  *tb = p2_takes8(b, a);
  __m256 best = _mm256_blendv_ps(a, b, *tb);
  *tc = p2_takes8(c, best);
  best = _mm256_blendv_ps(best, c, *tc);
  *td = p2_takes8(d, best);
  return _mm256_blendv_ps(best, d, *td);
}

/* even and odd elements of src[0..8), in order (SSE4.1, implied by AVX2) */
P2_INLINE void p2_deinterleave4(const float *src, __m128 *even, __m128 *odd) {
  __m128 lo = _mm_loadu_ps(src), hi = _mm_loadu_ps(src + 4);
  *even = _mm_shuffle_ps(lo, hi, 0x88);
  *odd = _mm_shuffle_ps(lo, hi, 0xDD);
}

/* p2_takes8 for 4 lanes */
P2_INLINE __m128 p2_takes4(__m128 v, __m128 best) { return _mm_and_ps(_mm_cmpnle_ps(v, best), _mm_cmpord_ps(best, best)); }

/* p2_max8 for 4 windows, in order */
P2_INLINE __m128 p2_max4(const float *r0, const float *r1, __m128 *tb, __m128 *tc, __m128 *td) {
  __m128 a, b, c, d;
  p2_deinterleave4(r0, &a, &b);
  p2_deinterleave4(r1, &c, &d);
  *tb = p2_takes4(b, a);
  __m128 best = _mm_blendv_ps(a, b, *tb);
  *tc = p2_takes4(c, best);
  best = _mm_blendv_ps(best, c, *tc);
  *td = p2_takes4(d, best);
  return _mm_blendv_ps(best, d, *td);
}

/* The max pool's backward of 8 windows from their input (rows z0, z1) and the gradient of
 * their outputs (dp, in order): dp at each window's argmax, 0 at its other three places. */
P2_INLINE void p2_max_bwd8(const float *z0, const float *z1, const float *dp, float *d0, float *d1) {
  __m256 tb, tc, td;
  (void)p2_max8(z0, z1, &tb, &tc, &td);
  const __m256 v = p2_in_order8(_mm256_loadu_ps(dp)), later = _mm256_or_ps(tc, td);
  p2_interleave_store8(d0, _mm256_andnot_ps(_mm256_or_ps(tb, later), v), _mm256_andnot_ps(later, _mm256_and_ps(tb, v)));
  p2_interleave_store8(d1, _mm256_andnot_ps(td, _mm256_and_ps(tc, v)), _mm256_and_ps(td, v));
}
#endif

#if NN_BUILD_AVX512
/* 2k in lane k: the even columns' indices, and each window's offset from the first */
P2_INLINE __m512i p2_evens16(void) {
  return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}

/* the even and odd columns of r's first 2*cnt floats (cnt <= 16; lanes past them zero) */
P2_INLINE void p2_split16(const float *r, int cnt, __m512 *even, __m512 *odd) {
  const __m512i ie = p2_evens16(), io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
  const int lo = 2 * cnt < 16 ? 2 * cnt : 16, hi = 2 * cnt - lo;
  const __m512 a = _mm512_maskz_loadu_ps((__mmask16)((1u << lo) - 1u), r);
  const __m512 b = _mm512_maskz_loadu_ps((__mmask16)((1u << hi) - 1u), r + 16);
  *even = _mm512_permutex2var_ps(a, ie, b);
  *odd = _mm512_permutex2var_ps(a, io, b);
}

/* pool_takes, 16 lanes (as p2_takes8) */
P2_INLINE __mmask16 p2_takes16(__m512 v, __m512 best) {
  return _mm512_cmp_ps_mask(v, best, _CMP_NLE_UQ) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
}

/* the maxima of cnt (<= 16) windows whose rows start at r0 and r1, and where b, c, d were
 * taken */
P2_INLINE __m512 p2_max16(const float *r0, const float *r1, int cnt, __mmask16 *tb, __mmask16 *tc,
                          __mmask16 *td) {
  __m512 a, b, c, d;
  p2_split16(r0, cnt, &a, &b);
  p2_split16(r1, cnt, &c, &d);
  *tb = p2_takes16(b, a);
  __m512 best = _mm512_mask_mov_ps(a, *tb, b);
  *tc = p2_takes16(c, best);
  best = _mm512_mask_mov_ps(best, *tc, c);
  *td = p2_takes16(d, best);
  return _mm512_mask_mov_ps(best, *td, d);
}

/* dst[0..2*cnt) = a0 b0 a1 b1 ... */
P2_INLINE void p2_interleave_store16(float *dst, __m512 a, __m512 b, int cnt) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const int n0 = 2 * cnt < 16 ? 2 * cnt : 16, n1 = 2 * cnt - n0;
  _mm512_mask_storeu_ps(dst, (__mmask16)((1u << n0) - 1u), _mm512_permutex2var_ps(a, lo, b));
  if (n1)
    _mm512_mask_storeu_ps(dst + 16, (__mmask16)((1u << n1) - 1u),
                          _mm512_permutex2var_ps(a, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), b));
}

/* p2_max_bwd8 for cnt (<= 16) windows */
P2_INLINE void p2_max_bwd16(const float *z0, const float *z1, const float *dp, float *d0, float *d1, int cnt) {
  __mmask16 tb, tc, td;
  (void)p2_max16(z0, z1, cnt, &tb, &tc, &td);
  const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << cnt) - 1u), dp);
  const __mmask16 later = (__mmask16)(tc | td);
  p2_interleave_store16(d0, _mm512_maskz_mov_ps((__mmask16) ~(tb | later), v),
                        _mm512_maskz_mov_ps((__mmask16)(tb & ~later), v), cnt);
  p2_interleave_store16(d1, _mm512_maskz_mov_ps((__mmask16)(tc & ~td), v), _mm512_maskz_mov_ps(td, v), cnt);
}
#endif

#endif
