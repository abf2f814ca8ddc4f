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
#define ACT_BLK ((size_t)8192)              /* elements per work item of a threaded call */

/* Below the threshold a call stays on the calling thread, without a parallel region; above,
 * blocks of ACT_BLK go to the threads in static contiguous ranges. Every block runs the simd
 * loop of act_inline.h. (A combined `parallel for simd if (...)` applies its if clause to the
 * simd construct too: below the threshold the loops ran one element at a time.) */
static inline size_t act_blk(size_t count, size_t b) { return count - b < ACT_BLK ? count - b : ACT_BLK; }

void NN_V(nn_relu_forward)(const float *x, float *y, size_t count) {
  if (count < ACT_PAR_ELEMS) {
    relu_n(x, y, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < count; b += ACT_BLK) relu_n(x + b, y + b, act_blk(count, b));
}

void NN_V(nn_relu_backward)(const float *y, const float *dy, float *dx, size_t count) {
  if (count < ACT_PAR_ELEMS) {
    relu_grad_n(y, dy, dx, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < count; b += ACT_BLK) relu_grad_n(y + b, dy + b, dx + b, act_blk(count, b));
}

void NN_V(nn_sigmoid_forward)(const float *x, float *y, size_t count) {
  if (count < ACT_PAR_EXP_ELEMS) {
    sigmoid_n(x, y, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < count; b += ACT_BLK) sigmoid_n(x + b, y + b, act_blk(count, b));
}

void NN_V(nn_sigmoid_backward)(const float *y, const float *dy, float *dx, size_t count) {
  if (count < ACT_PAR_ELEMS) {
    sigmoid_grad_n(y, dy, dx, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < count; b += ACT_BLK) sigmoid_grad_n(y + b, dy + b, dx + b, act_blk(count, b));
}

void NN_V(nn_tanh_forward)(const float *x, float *y, size_t count) {
  if (count < ACT_PAR_EXP_ELEMS) {
    tanh_n(x, y, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < count; b += ACT_BLK) tanh_n(x + b, y + b, act_blk(count, b));
}

void NN_V(nn_tanh_backward)(const float *y, const float *dy, float *dx, size_t count) {
  if (count < ACT_PAR_ELEMS) {
    tanh_grad_n(y, dy, dx, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < count; b += ACT_BLK) tanh_grad_n(y + b, dy + b, dx + b, act_blk(count, b));
}
