/* Scalar activation functions and their gradients (from the forward OUTPUT y), static
 * inline so that the elementwise kernels (activation.c) and the fused normalization +
 * activation kernels (batchnorm.c) compute bit-identical values; omp simd loops over them
 * vectorize. Internal to src/kernels/. */
#ifndef NN_KERNELS_ACT_INLINE_H
#define NN_KERNELS_ACT_INLINE_H
#include <math.h>
#include <stdint.h>
#include <string.h>

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
 * 2^n applied as two factors so that results down to the denormals stay graded. */
static inline float exp_clamped(float x) {
  const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  int32_t ni = (int32_t)n; /* in [-150, 128] */
  int32_t n1 = ni / 2, n2 = ni - n1;
  return p * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
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

/* stable sigmoid: with e = exp(-|x|) in (0, 1], 1/(1+e) for x >= 0 and e/(1+e) below */
static inline float sigmoid1(float x) {
  const int32_t xb = float_to_bits(x), ab = xb & 0x7fffffff;
  const int32_t cap = 0x42d00000; /* 104.0f: e^-104 rounds to 0; NaN also maps to it (fixed below) */
  float a = bits_to_float(ab < cap ? ab : cap);
  float e = exp_clamped(-a);
  float s = 1.0f / (1.0f + e);
  /* s * 1 = s for x >= 0 (also -0: then e = 1), s * e otherwise */
  float y = s * bits_to_float(sel_bits(-(int32_t)((uint32_t)xb >> 31), float_to_bits(e), 0x3f800000));
  return bits_to_float(sel_bits(is_nan_mask(xb), xb, float_to_bits(y)));
}

/* tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), else 1 - 2/(e^{2|x|} + 1) */
static inline float tanh1(float x) {
  const int32_t xb = float_to_bits(x), ab = xb & 0x7fffffff;
  float a = bits_to_float(ab);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  const int32_t a2b = float_to_bits(2.0f * a), cap = 0x42b00000; /* 88.0f: tanh is 1 long before; NaN -> 88 */
  float big = 1.0f - 2.0f / (exp_clamped(bits_to_float(a2b < cap ? a2b : cap)) + 1.0f);
  /* sign of x on big (-0 gets -big, but |x| < 0.625 takes small there) */
  int32_t bigb = float_to_bits(big) | (xb & INT32_MIN);
  int32_t y = sel_bits(-(int32_t)(ab < 0x3f200000 /* 0.625f */), float_to_bits(small), bigb);
  return bits_to_float(sel_bits(is_nan_mask(xb), xb, y));
}

static inline float sigmoid_grad1(float y, float dy) { return dy * y * (1.0f - y); }
static inline float tanh_grad1(float y, float dy) { return dy * (1.0f - y * y); }

/* y = act(x) over a run (one thread); y == x (in place) is fine. */
static inline void relu_n(const float *x, float *y, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) y[j] = relu1(x[j]);
}
static inline void sigmoid_n(const float *x, float *y, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) y[j] = sigmoid1(x[j]);
}
static inline void tanh_n(const float *x, float *y, size_t len) {
#pragma omp simd
  for (size_t j = 0; j < len; j++) y[j] = tanh1(x[j]);
}

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

#endif
