/* Elementwise activations. Backward takes the forward OUTPUT y. Large arrays are split
 * over threads in static contiguous ranges (no reductions, so results never depend on the
 * thread count); small ones stay on the calling thread.
 *
 * sigmoid and tanh use a vectorizable expf (act_inline.h) instead of libm's scalar expf/tanhf,
 * which cost 6-11 ns per element (LeNet's sigmoids see ~600k values per step). Accuracy:
 * a few ulp; the tests hold them to 2e-6 relative against double precision. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/act_inline.h"
#include "kernels/kernels.h"
#include "kernels/variant.h"

#define ACT_PAR_ELEMS ((size_t)1 << 17)
#define ACT_PAR_EXP_ELEMS ((size_t)1 << 15) /* exp-based ones are ~10x more work per element */

void NN_V(nn_relu_forward)(const float *x, float *y, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) y[i] = relu1(x[i]);
}

void NN_V(nn_relu_backward)(const float *y, const float *dy, float *dx, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) dx[i] = relu_grad1(y[i], dy[i]);
}

void NN_V(nn_sigmoid_forward)(const float *x, float *y, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_EXP_ELEMS)
  for (size_t i = 0; i < count; i++) y[i] = sigmoid1(x[i]);
}

void NN_V(nn_sigmoid_backward)(const float *y, const float *dy, float *dx, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) dx[i] = sigmoid_grad1(y[i], dy[i]);
}

void NN_V(nn_tanh_forward)(const float *x, float *y, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_EXP_ELEMS)
  for (size_t i = 0; i < count; i++) y[i] = tanh1(x[i]);
}

void NN_V(nn_tanh_backward)(const float *y, const float *dy, float *dx, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= ACT_PAR_ELEMS)
  for (size_t i = 0; i < count; i++) dx[i] = tanh_grad1(y[i], dy[i]);
}
