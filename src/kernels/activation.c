/* Elementwise activations. Backward takes the forward OUTPUT y. Large arrays are split
 * over threads in static contiguous ranges (no reductions, so results never depend on the
 * thread count); small ones stay on the calling thread.
 *
 * sigmoid and tanh use a vectorizable expf (below) instead of libm's scalar expf/tanhf,
 * which cost 6-11 ns per element (LeNet's sigmoids see ~600k values per step). Accuracy:
 * a few ulp; the tests hold them to 2e-6 relative against double precision. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

#define ACT_PAR_ELEMS ((size_t)1 << 17)
#define ACT_PAR_EXP_ELEMS ((size_t)1 << 15) /* exp-based ones are ~10x more work per element */

/* relu(NaN) stays NaN so divergence is not hidden; relu'(0) = 0 */
void nn_relu_forward(const float *x, float *y, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void nn_relu_backward(const float *y, const float *dy, float *dx, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

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

/* stable sigmoid: with e = exp(-|x|) in (0, 1], 1/(1+e) for x >= 0 and e/(1+e) below */
static inline float sigmoid1(float x) {
  float a = fabsf(x);
  a = a < 104.0f ? a : 104.0f; /* e^-104 rounds to 0; also maps NaN to 104 (fixed below) */
  float e = exp_clamped(-a);
  float s = 1.0f / (1.0f + e);
  float y = x >= 0.0f ? s : e * s;
  return x != x ? x : y;
}

/* tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), else 1 - 2/(e^{2|x|} + 1) */
static inline float tanh1(float x) {
  float a = fabsf(x);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  float a2 = 2.0f * a;
  a2 = a2 < 88.0f ? a2 : 88.0f; /* tanh is 1 in float long before; maps NaN to 88 */
  float big = 1.0f - 2.0f / (exp_clamped(a2) + 1.0f);
  big = x < 0.0f ? -big : big;
  float y = a < 0.625f ? small : big;
  return x != x ? x : y;
}

void nn_sigmoid_forward(const float *x, float *y, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_EXP_ELEMS)
  for (size_t i = 0; i < count; i++) y[i] = sigmoid1(x[i]);
}

void nn_sigmoid_backward(const float *y, const float *dy, float *dx, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void nn_tanh_forward(const float *x, float *y, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_EXP_ELEMS)
  for (size_t i = 0; i < count; i++) y[i] = tanh1(x[i]);
}

void nn_tanh_backward(const float *y, const float *dy, float *dx, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}
