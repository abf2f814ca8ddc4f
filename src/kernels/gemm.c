/* GEMM on oneDNN's dnnl_sgemm (row-major). C[M,N] = alpha*op(A)@op(B) + beta*C.
 * Degenerate shapes (m, n or k = 0, alpha = 0) are handled here so that oneDNN only ever
 * sees calls it accepts; beta = 0 never reads C (BLAS convention). Threading: oneDNN's
 * own OpenMP threads at top level, a single thread when called inside a parallel region. */
#include "kernels/kernels.h"

#include <oneapi/dnnl/dnnl.h>

#include "base/error.h"

void nn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
  NN_ASSERT(m >= 0 && n >= 0 && k >= 0);
  if (m == 0 || n == 0) return;
  NN_ASSERT(c != NULL && ldc >= n);
  if (k == 0 || alpha == 0.0f) {
    for (int i = 0; i < m; i++) {
      float *ci = c + (size_t)i * (size_t)ldc;
      if (beta == 0.0f) {
        for (int j = 0; j < n; j++) ci[j] = 0.0f;
      } else if (beta != 1.0f) {
        for (int j = 0; j < n; j++) ci[j] *= beta;
      }
    }
    return;
  }
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b,
                                ldb, beta, c, ldc);
  NN_ASSERT(st == dnnl_success);
}
