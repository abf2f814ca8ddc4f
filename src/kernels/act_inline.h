/* Scalar activation functions and their gradients (from the forward OUTPUT y), static
 * inline so that the elementwise kernels (activation.c) and the kernels that fuse an
 * activation (batchnorm, conv2d, dense) compute bit-identical values; omp simd loops over
 * them vectorize. Internal to src/kernels/. */
#ifndef NN_KERNELS_ACT_INLINE_H
#define NN_KERNELS_ACT_INLINE_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#if NN_BUILD_AVX512
#include <immintrin.h>
#endif

/* relu(NaN) stays NaN so divergence is not hidden; relu'(0) = 0 */
static inline float relu1(float x) { return x < 0.0f ? 0.0f : x; }
static inline float relu_grad1(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

static inline float bits_to_float(int32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

/* e^x for x in [-104, 88.7] (callers clamp; NaN must not reach it): Cephes' expf
 * (range reduction by n = round(x / ln 2) with ln 2 split in two, degree-5 polynomial),
 * 2^n applied as two factors so that results down to the denormals stay graded.
 *
 * Written as four stages, exp_clamped their composition. One value's stages form a chain of
 * ~30 dependent operations (~90 cycles); a simd loop over whole values keeps too few of them
 * in flight and runs at a third of the machine's throughput. The block kernels below
 * (exp_block) run each stage over a block of values before the next: the same operations
 * on each value, so the same bits, 1.5-1.7x faster. (Builds for AVX-512 run exp_act16_n
 * instead: whole values 16 per vector.) */
static inline float exp_round(float x) { /* n = round(x / ln 2) */
  const float magic = 12582912.0f;       /* 1.5 * 2^23: adding it rounds to an integer */
  return (x * 1.44269504088896341f + magic) - magic;
}
static inline float exp_reduce(float x, float n) { /* r = x - n ln 2 */
  float r = x - n * 0.693359375f;
  return r - n * -2.12194440e-4f;
}
static inline float exp_poly_lo(float r) { /* the polynomial's first steps */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  return p * r + 8.3334519073e-3f;
}
static inline float exp_poly_hi(float p, float r) { /* its last steps: e^r */
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r + 1.0f;
}
static inline float exp_scale(float p, float n) { /* p 2^n */
  int32_t ni = (int32_t)n;                        /* in [-150, 128] */
  int32_t n1 = ni / 2, n2 = ni - n1;
  return p * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
}
static inline float exp_clamped(float x) {
  float n = exp_round(x), r = exp_reduce(x, n);
  return exp_scale(exp_poly_hi(exp_poly_lo(r), r), n);
}

static inline int32_t float_to_bits(float f) {
  int32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

/* Selects and clamps below work on the bit patterns: written with float compares and
 * ternaries, GCC (without -fno-trapping-math) keeps branches around the code that only one
 * side needs (the whole of it, for the NaN pass-through) and does not vectorize the loop;
 * AVX2 then runs sigmoid one value at a time (47% of a lenet step). For a >= 0 or NaN, the
 * bits order like the values, and NaN's are above every finite value's. */
static inline int32_t sel_bits(int32_t mask, int32_t a, int32_t b) { return (a & mask) | (b & ~mask); }
static inline int32_t is_nan_mask(int32_t xb) { return -(int32_t)((xb & 0x7fffffff) > 0x7f800000); }

/* stable sigmoid: with e = exp(-|x|) in (0, 1], 1/(1+e) for x >= 0 and e/(1+e) below.
 * sigmoid_arg gives the exponent, sigmoid_finish the result from x and e. */
static inline float sigmoid_arg(float x) {
  const int32_t ab = float_to_bits(x) & 0x7fffffff;
  const int32_t cap = 0x42d00000; /* 104.0f: e^-104 rounds to 0; NaN also maps to it (fixed below) */
  return -bits_to_float(ab < cap ? ab : cap);
}
static inline float sigmoid_finish(float x, float e) {
  const int32_t xb = float_to_bits(x);
  float s = 1.0f / (1.0f + e);
  /* s * 1 = s for x >= 0 (also -0: then e = 1), s * e otherwise */
  float y = s * bits_to_float(sel_bits(-(int32_t)((uint32_t)xb >> 31), float_to_bits(e), 0x3f800000));
  return bits_to_float(sel_bits(is_nan_mask(xb), xb, float_to_bits(y)));
}
static inline float sigmoid1(float x) { return sigmoid_finish(x, exp_clamped(sigmoid_arg(x))); }

/* tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), else 1 - 2/(e^{2|x|} + 1);
 * tanh_arg gives the exponent 2|x|, tanh_finish the result from x and e. */
static inline float tanh_arg(float x) {
  const int32_t a2b = float_to_bits(2.0f * bits_to_float(float_to_bits(x) & 0x7fffffff));
  const int32_t cap = 0x42b00000; /* 88.0f: tanh is 1 long before; NaN -> 88 */
  return bits_to_float(a2b < cap ? a2b : cap);
}
static inline float tanh_finish(float x, float e) {
  const int32_t xb = float_to_bits(x), ab = xb & 0x7fffffff;
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  float big = 1.0f - 2.0f / (e + 1.0f);
  /* sign of x on big (-0 gets -big, but |x| < 0.625 takes small there) */
  int32_t bigb = float_to_bits(big) | (xb & INT32_MIN);
  int32_t y = sel_bits(-(int32_t)(ab < 0x3f200000 /* 0.625f */), float_to_bits(small), bigb);
  return bits_to_float(sel_bits(is_nan_mask(xb), xb, y));
}
static inline float tanh1(float x) { return tanh_finish(x, exp_clamped(tanh_arg(x))); }

/* e[j] = exp_clamped(a[j]) for j < m <= ACT_EXP_BLK, one stage over the block at a time;
 * e may be a. */
#define ACT_EXP_BLK 256
static inline void exp_block(const float *a, float *e, size_t m) {
  float n[ACT_EXP_BLK], r[ACT_EXP_BLK];
#pragma omp simd
  for (size_t j = 0; j < m; j++) {
    n[j] = exp_round(a[j]);
    r[j] = exp_reduce(a[j], n[j]);
  }
#pragma omp simd
  for (size_t j = 0; j < m; j++) e[j] = exp_poly_lo(r[j]);
#pragma omp simd
  for (size_t j = 0; j < m; j++) e[j] = exp_poly_hi(e[j], r[j]);
#pragma omp simd
  for (size_t j = 0; j < m; j++) e[j] = exp_scale(e[j], n[j]);
}

#if NN_BUILD_AVX512
/* The same functions 16 values per vector where the build targets AVX-512: each value goes
 * through the one-value definitions' operations in their order (a multiply and an add stay
 * two roundings: ISO C builds do not contract them), so the bits are theirs
 * (test_activation_blocks, test_activation_sweep). Whole values per vector, four vectors at a
 * time: with 32 registers and the core's reorder window they overlap without exp_block's
 * staging. 1.2-1.5x the 8-wide stages on the Xeon of run 21 (bench_kernels --only sigmoid);
 * not more, as its 512-bit operations issue on two ports where 256-bit ones have three. */
static inline __m512 ps16(float v) { return _mm512_set1_ps(v); }
static inline __m512 bits16(int32_t b) { return _mm512_castsi512_ps(_mm512_set1_epi32(b)); }
static inline __m512 madd16(__m512 a, __m512 b, float c) { return _mm512_add_ps(_mm512_mul_ps(a, b), ps16(c)); }

/* exp_clamped; p 2^n in one vscalefps: the same bits as exp_scale's two factors (its first
 * product is exact, so both round p 2^n once; checked for every float in [-104, 88.7]) */
static inline __m512 exp_clamped16(__m512 x) {
  const __m512 magic = ps16(12582912.0f);
  const __m512 n = _mm512_sub_ps(madd16(x, ps16(1.44269504088896341f), 12582912.0f), magic);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, ps16(0.693359375f)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, ps16(-2.12194440e-4f)));
  __m512 p = madd16(ps16(1.9875691500e-4f), r, 1.3981999507e-3f);
  p = madd16(p, r, 8.3334519073e-3f);
  p = madd16(p, r, 4.1665795894e-2f);
  p = madd16(p, r, 1.6666665459e-1f);
  p = madd16(p, r, 5.0000001201e-1f);
  p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), ps16(1.0f));
  return _mm512_scalef_ps(p, n);
}
static inline __mmask16 nan16(__m512 x) { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); }
static inline __m512 sigmoid16(__m512 x) { /* sigmoid1 */
  /* -min(|x|, 104) as min(-|x|, -104) on the bits: negative floats order like their
   * magnitudes as signed integers, NaN's above all (mapped to -104 as sigmoid_arg does) */
  const __m512i nb = _mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
  const __m512 arg = _mm512_castsi512_ps(_mm512_min_epi32(nb, _mm512_set1_epi32((int32_t)0xc2d00000)));
  const __m512 e = exp_clamped16(arg), one = ps16(1.0f);
  const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));
  const __m512 y = _mm512_mul_ps(s, _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(x)), one, e));
  return _mm512_mask_blend_ps(nan16(x), y, x);
}
static inline __m512 tanh16(__m512 x) { /* tanh1 */
  const __m512 sign = bits16(INT32_MIN), one = ps16(1.0f);
  const __m512 a = _mm512_andnot_ps(sign, x);
  const __m512i a2 = _mm512_castps_si512(_mm512_mul_ps(ps16(2.0f), a));
  const __m512 e = exp_clamped16(_mm512_castsi512_ps(_mm512_min_epi32(a2, _mm512_set1_epi32(0x42b00000))));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = madd16(ps16(-5.70498872745e-3f), z, 2.06390887954e-2f);
  p = _mm512_sub_ps(_mm512_mul_ps(p, z), ps16(5.37397155531e-2f));
  p = madd16(p, z, 1.33314422036e-1f);
  p = _mm512_sub_ps(_mm512_mul_ps(p, z), ps16(3.33332819422e-1f));
  const __m512 small = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, z), x), x);
  const __m512 big = _mm512_sub_ps(one, _mm512_div_ps(ps16(2.0f), _mm512_add_ps(e, one)));
  const __m512 bigs = _mm512_or_ps(big, _mm512_and_ps(x, sign));
  const __mmask16 lo = _mm512_cmplt_epi32_mask(_mm512_castps_si512(a), _mm512_set1_epi32(0x3f200000 /* 0.625f */));
  return _mm512_mask_blend_ps(nan16(x), _mm512_mask_blend_ps(lo, bigs, small), x);
}
#endif

static inline float sigmoid_grad1(float y, float dy) { return dy * y * (1.0f - y); }
static inline float tanh_grad1(float y, float dy) { return dy * (1.0f - y * y); }

/* y = act(x) over a run (one thread); y == x (in place) is fine. */
static inline void relu_n(const float *x, float *y, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) y[j] = relu1(x[j]);
}
#if NN_BUILD_AVX512
/* exp_act_n 16 values per vector, four vectors at a time */
static inline __attribute__((always_inline)) void exp_act16_n(const float *x, float *y, size_t len, const int is_tanh) {
  size_t j = 0;
  for (; j + 64 <= len; j += 64) {
    __m512 v0 = _mm512_loadu_ps(x + j), v1 = _mm512_loadu_ps(x + j + 16), v2 = _mm512_loadu_ps(x + j + 32), v3 = _mm512_loadu_ps(x + j + 48);
    v0 = is_tanh ? tanh16(v0) : sigmoid16(v0);
    v1 = is_tanh ? tanh16(v1) : sigmoid16(v1);
    v2 = is_tanh ? tanh16(v2) : sigmoid16(v2);
    v3 = is_tanh ? tanh16(v3) : sigmoid16(v3);
    _mm512_storeu_ps(y + j, v0), _mm512_storeu_ps(y + j + 16, v1), _mm512_storeu_ps(y + j + 32, v2), _mm512_storeu_ps(y + j + 48, v3);
  }
  for (; j < len; j += 16) { /* the tail masked: lanes are independent */
    const __mmask16 m = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
    _mm512_mask_storeu_ps(y + j, m, is_tanh ? tanh16(v) : sigmoid16(v));
  }
}
#endif
/* sigmoid (is_tanh = 0) or tanh (is_tanh = 1) block by block: the exponent, exp_block, the result
 * (sigmoid1 and tanh1 value for value). Always inlined, so that `is_tanh` is a constant in the
 * loops, which then hold one function's code each. */
static inline __attribute__((always_inline)) void exp_act_n(const float *x, float *y, size_t len, const int is_tanh) {
#if NN_BUILD_AVX512
  exp_act16_n(x, y, len, is_tanh);
#else
  float e[ACT_EXP_BLK];
  for (size_t b = 0; b < len; b += ACT_EXP_BLK) {
    const size_t m = len - b < ACT_EXP_BLK ? len - b : ACT_EXP_BLK;
#pragma omp simd
    for (size_t j = 0; j < m; j++) e[j] = is_tanh ? tanh_arg(x[b + j]) : sigmoid_arg(x[b + j]);
    exp_block(e, e, m);
#pragma omp simd
    for (size_t j = 0; j < m; j++) y[b + j] = is_tanh ? tanh_finish(x[b + j], e[j]) : sigmoid_finish(x[b + j], e[j]);
  }
#endif
}
static inline void sigmoid_n(const float *x, float *y, size_t len) { exp_act_n(x, y, len, 0); }
static inline void tanh_n(const float *x, float *y, size_t len) { exp_act_n(x, y, len, 1); }

/* dx = dy * act'(y) over a run (one thread). */
static inline void relu_grad_n(const float *y, const float *dy, float *dx, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) dx[j] = relu_grad1(y[j], dy[j]);
}
static inline void sigmoid_grad_n(const float *y, const float *dy, float *dx, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) dx[j] = sigmoid_grad1(y[j], dy[j]);
}
static inline void tanh_grad_n(const float *y, const float *dy, float *dx, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) dx[j] = tanh_grad1(y[j], dy[j]);
}

/* The same from one value dz for the whole run (a global average pool's gradient) */
static inline void relu_grad_c(const float *y, float dy, float *dx, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) dx[j] = relu_grad1(y[j], dy);
}
static inline void sigmoid_grad_c(const float *y, float dy, float *dx, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) dx[j] = sigmoid_grad1(y[j], dy);
}
static inline void tanh_grad_c(const float *y, float dy, float *dx, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) dx[j] = tanh_grad1(y[j], dy);
}

/* The fused kernels' activation by kind: y = act(y) in place (NN_ACT_NONE: unchanged), and
 * dy = dz * act'(z) from the activation's output z (NN_ACT_NONE: a copy of dz, z unused). */
static inline void act_n(nn_act act, float *y, size_t len) {
  switch (act) {
    case NN_ACT_RELU: relu_n(y, y, len); break;
    case NN_ACT_SIGMOID: sigmoid_n(y, y, len); break;
    case NN_ACT_TANH: tanh_n(y, y, len); break;
    case NN_ACT_NONE: break;
  }
}
static inline void act_grad_n(nn_act act, const float *z, const float *dz, float *dy, size_t len) {
  switch (act) {
    case NN_ACT_RELU: relu_grad_n(z, dz, dy, len); break;
    case NN_ACT_SIGMOID: sigmoid_grad_n(z, dz, dy, len); break;
    case NN_ACT_TANH: tanh_grad_n(z, dz, dy, len); break;
    case NN_ACT_NONE: /* often rows of a few dozen floats: a loop, not a libc call */
#pragma omp simd
      for (size_t j = 0; j < len; j++) dy[j] = dz[j];
      break;
  }
}

/* dy[0..len) = dz * act'(z) for the values at..at+len of z (z, dz: where their tensors, or
 * the same sample of both, start; z unused for NN_ACT_NONE). plane = 0: dz is laid out as z.
 * plane > 0: dz holds one value per plane of that many values, the gradient of a global
 * average pool over z; each value of plane k receives dz[k] / plane, bit for bit what
 * nn_global_avgpool_backward writes, without writing it. */
static inline void act_grad_from(nn_act act, const float *z, const float *dz, size_t plane, size_t at, float *dy,
                                 size_t len) {
  if (!plane) {
    act_grad_n(act, z ? z + at : NULL, dz + at, dy, len);
    return;
  }
  for (size_t j = 0; j < len;) {
    const size_t k = (at + j) / plane, end = (k + 1) * plane - at < len ? (k + 1) * plane - at : len;
    const float v = dz[k] / (float)plane, *zr = z ? z + at + j : NULL;
    switch (act) {
      case NN_ACT_RELU: relu_grad_c(zr, v, dy + j, end - j); break;
      case NN_ACT_SIGMOID: sigmoid_grad_c(zr, v, dy + j, end - j); break;
      case NN_ACT_TANH: tanh_grad_c(zr, v, dy + j, end - j); break;
      case NN_ACT_NONE:
        for (size_t q = j; q < end; q++) dy[q] = v;
        break;
    }
    j = end;
  }
}

/* The same where a kernel can read dz itself when there is nothing to form (no activation, dz
 * laid out as z): dz + at, not copied; else dz * act'(z) formed into buf, which is returned. */
static inline const float *act_grad_or_dz(nn_act act, const float *z, const float *dz, size_t plane, size_t at,
                                          float *buf, size_t len) {
  if (act == NN_ACT_NONE && !plane) return dz + at;
  act_grad_from(act, z, dz, plane, at, buf, len);
  return buf;
}

#endif
