/* softmax cross-entropy on integer labels: logits[N,K], labels[N] in [0,K).
 * Forward: max-subtracted softmax into probs; per-row loss log(sum e) - (z[label] - max),
 * summed over the batch in double (rows added in order). Backward (fused):
 * dlogits = (probs - onehot(label)) * scale; dlogits may alias probs. */
#include <math.h>

#include "base/error.h"
#include "kernels/kernels.h"

#define SMX_PAR_ELEMS (1L << 16)

static double softmax_row(const float *z, int label, float *p, int k) {
  float m = z[0];
  for (int j = 1; j < k; j++)
    if (z[j] > m || z[j] != z[j]) m = z[j];
  double sum = 0.0;
  for (int j = 0; j < k; j++) {
    float e = expf(z[j] - m);
    p[j] = e;
    sum += e;
  }
  const float inv = (float)(1.0 / sum);
  for (int j = 0; j < k; j++) p[j] *= inv;
  /* sum >= 1: the max element contributes expf(0) (k >= 1) */
  // cppcheck-suppress invalidFunctionArg
  return log(sum) - ((double)z[label] - (double)m);
}

double nn_softmax_xent_forward(const float *logits, const int32_t *labels, float *probs, int n, int k) {
  NN_ASSERT(n >= 0 && k >= 1);
  for (int i = 0; i < n; i++) NN_ASSERT(labels[i] >= 0 && labels[i] < k);
  /* serial: even 128 x 1000 logits take well under a millisecond */
  double total = 0.0;
  for (int i = 0; i < n; i++)
    total += softmax_row(logits + (size_t)i * (size_t)k, labels[i], probs + (size_t)i * (size_t)k, k);
  return total;
}

void nn_softmax_xent_backward(const float *probs, const int32_t *labels, float *dlogits, int n, int k,
                              float scale) {
  NN_ASSERT(n >= 0 && k >= 1);
#pragma omp parallel for schedule(static) if ((long)n * k >= SMX_PAR_ELEMS)
  for (int i = 0; i < n; i++) {
    const float *p = probs + (size_t)i * (size_t)k;
    float *d = dlogits + (size_t)i * (size_t)k;
    const int32_t lab = labels[i];
    NN_ASSERT(lab >= 0 && lab < k);
    for (int j = 0; j < k; j++) d[j] = (p[j] - (j == lab ? 1.0f : 0.0f)) * scale;
  }
}
