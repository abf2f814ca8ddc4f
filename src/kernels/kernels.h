/* Pure numeric kernels (ARCHITECTURE.md §3 "kernels/"): no allocation, no I/O, no model knowledge.
 *
 * Conventions
 * - Tensors are dense row-major float32, activations in N C H W order (S = H*W).
 * - Forward and backward sit side by side with mirrored signatures.
 * - Backward kernels OVERWRITE dx (pass dx = NULL to skip it) and ACCUMULATE (+=) into
 *   parameter gradients (dw, db, dgamma, dbeta); the caller zeroes those.
 * - Every optimized kernel has a plain double-precision reference twin, nn_ref_*,
 *   in src/kernels/reference.c. Tests compare the two and finite-difference the twins.
 * - Threading: OpenMP inside kernels, work split so that every output element is
 *   reduced in a fixed order independent of the thread count.
 */
#ifndef NN_KERNELS_H
#define NN_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* ---- GEMM ------------------------------------------------------------------------
 * C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, row-major; op(X) = X or X^T.
 * nn_gemm uses oneDNN's dnnl_sgemm. */
void nn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);
void nn_ref_gemm(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a,
                 int lda, const double *b, int ldb, double beta, double *c, int ldc);

/* ---- dense: x[N,I], w[O,I] (PyTorch layout), b[O] or NULL, y[N,O] ---------------- */
void nn_dense_forward(const float *x, const float *w, const float *b, float *y, int n, int in, int out);
void nn_dense_backward(const float *x, const float *w, const float *dy, float *dx, float *dw,
                       float *db, int n, int in, int out);
void nn_ref_dense_forward(const double *x, const double *w, const double *b, double *y, int n, int in, int out);
void nn_ref_dense_backward(const double *x, const double *w, const double *dy, double *dx,
                           double *dw, double *db, int n, int in, int out);

/* ---- conv2d: x[N,C,H,W], w[OC,C,KH,KW], b[OC] or NULL, y[N,OC,OH,OW] -------------
 * OH = (H + 2*pad - KH)/stride + 1 (floor), zero padding. Optimized: im2col + nn_gemm,
 * ws is scratch of nn_conv2d_workspace(g) floats (caller allocates once). */
typedef struct {
  int n, c, h, w;    /* input */
  int oc, kh, kw;    /* filters */
  int stride, pad;
  int oh, ow;        /* output, filled by nn_conv_geom_init */
} nn_conv_geom;
/* Fills oh/ow; returns 0 if the geometry is valid (output >= 1x1), -1 otherwise. */
int nn_conv_geom_init(nn_conv_geom *g);
size_t nn_conv2d_workspace(const nn_conv_geom *g);
void nn_conv2d_forward(const nn_conv_geom *g, const float *x, const float *w, const float *b, float *y, float *ws);
void nn_conv2d_backward(const nn_conv_geom *g, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db, float *ws);
void nn_ref_conv2d_forward(const nn_conv_geom *g, const double *x, const double *w, const double *b, double *y);
void nn_ref_conv2d_backward(const nn_conv_geom *g, const double *x, const double *w, const double *dy,
                            double *dx, double *dw, double *db);

/* ---- pooling: x[N,C,H,W] -> y[N,C,OH,OW], window `size`, step `stride`, no padding,
 * OH = (H - size)/stride + 1 (floor, like PyTorch and Keras 'valid'). */
typedef struct {
  int n, c, h, w;
  int size, stride;
  int oh, ow;        /* filled by nn_pool_geom_init */
} nn_pool_geom;
int nn_pool_geom_init(nn_pool_geom *g);
/* argmax[N*C*OH*OW] records the flat input index (within the (n,c) plane) of the max;
 * ties go to the first in row-major window order. */
void nn_maxpool2d_forward(const nn_pool_geom *g, const float *x, float *y, int32_t *argmax);
void nn_maxpool2d_backward(const nn_pool_geom *g, const float *dy, const int32_t *argmax, float *dx);
void nn_avgpool2d_forward(const nn_pool_geom *g, const float *x, float *y);
void nn_avgpool2d_backward(const nn_pool_geom *g, const float *dy, float *dx);
void nn_ref_maxpool2d_forward(const nn_pool_geom *g, const double *x, double *y);
void nn_ref_maxpool2d_backward(const nn_pool_geom *g, const double *x, const double *dy, double *dx);
void nn_ref_avgpool2d_forward(const nn_pool_geom *g, const double *x, double *y);
void nn_ref_avgpool2d_backward(const nn_pool_geom *g, const double *dy, double *dx);
/* global average pool: x[N,C,S] -> y[N,C] */
void nn_global_avgpool_forward(const float *x, float *y, int n, int c, int s);
void nn_global_avgpool_backward(const float *dy, float *dx, int n, int c, int s);
void nn_ref_global_avgpool_forward(const double *x, double *y, int n, int c, int s);
void nn_ref_global_avgpool_backward(const double *dy, double *dx, int n, int c, int s);

/* ---- flatten: a copy (NCHW is already contiguous); backward copies dy back --------- */
void nn_flatten_forward(const float *x, float *y, size_t count);
void nn_flatten_backward(const float *dy, float *dx, size_t count);
void nn_ref_flatten_forward(const double *x, double *y, size_t count);
void nn_ref_flatten_backward(const double *dy, double *dx, size_t count);

/* ---- elementwise activations. Backward takes the forward OUTPUT y. ------------------ */
void nn_relu_forward(const float *x, float *y, size_t count);
void nn_relu_backward(const float *y, const float *dy, float *dx, size_t count);
void nn_sigmoid_forward(const float *x, float *y, size_t count);
void nn_sigmoid_backward(const float *y, const float *dy, float *dx, size_t count);
void nn_tanh_forward(const float *x, float *y, size_t count);
void nn_tanh_backward(const float *y, const float *dy, float *dx, size_t count);
void nn_ref_relu_forward(const double *x, double *y, size_t count);
void nn_ref_relu_backward(const double *y, const double *dy, double *dx, size_t count);
void nn_ref_sigmoid_forward(const double *x, double *y, size_t count);
void nn_ref_sigmoid_backward(const double *y, const double *dy, double *dx, size_t count);
void nn_ref_tanh_forward(const double *x, double *y, size_t count);
void nn_ref_tanh_backward(const double *y, const double *dy, double *dx, size_t count);

/* ---- softmax cross-entropy on integer labels, fused backward -----------------------
 * logits[N,K], labels[N] in [0,K). Forward writes probs[N,K] (softmax, max-subtracted)
 * and returns the SUM over the batch of -log p[label] (double). Mean = sum / N.
 * Backward: dlogits = (probs - onehot(label)) * scale  (scale = 1/N for a mean loss). */
double nn_softmax_xent_forward(const float *logits, const int32_t *labels, float *probs, int n, int k);
void nn_softmax_xent_backward(const float *probs, const int32_t *labels, float *dlogits, int n, int k, float scale);
double nn_ref_softmax_xent_forward(const double *logits, const int32_t *labels, double *probs, int n, int k);
void nn_ref_softmax_xent_backward(const double *probs, const int32_t *labels, double *dlogits, int n, int k, double scale);

/* ---- batch normalization over (N,C) (s = 1) or (N,C,H,W) (s = H*W) ----------------
 * Statistics per channel c over the m = n*s values x[(i*C + c)*s + j].
 * gamma/beta may be NULL (affine off: gamma = 1, beta = 0).
 *
 * forward_train: batch mean and BIASED variance (accumulated in double with a per-channel
 *   shift, so 1e4 + N(0,1e-2) keeps its digits; variance clamped at 0), then
 *   y = gamma * (x - mean) * invstd + beta with invstd = 1/sqrt(var + eps).
 *   Writes mean[C], var[C] (biased) and invstd[C] for backward / running stats.
 *   The caller guarantees m >= 2.
 * forward_infer: same transform with given mean/var (running stats).
 * backward_train: gradient through the batch statistics:
 *   dx = gamma*invstd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat)),
 *   dgamma += sum(dy*xhat), dbeta += sum(dy)  (dgamma/dbeta may be NULL).
 * backward_infer: statistics treated as constants (frozen BN / eval-mode gradient):
 *   dx = dy * gamma * invstd, dgamma += sum(dy*xhat), dbeta += sum(dy).
 * running_update: run = (1-momentum)*run + momentum*batch, where the variance fed in is
 *   batch_var * m/(m-1) when `unbiased` (PyTorch) or batch_var (Keras). Returns 0 and
 *   leaves run_* untouched if any batch statistic is not finite, 1 otherwise. */
void nn_bn_forward_train(const float *x, const float *gamma, const float *beta, float *y,
                         float *mean, float *var, float *invstd, int n, int c, int s, float eps);
void nn_bn_forward_infer(const float *x, const float *gamma, const float *beta, const float *mean,
                         const float *var, float *y, int n, int c, int s, float eps);
void nn_bn_backward_train(const float *x, const float *gamma, const float *mean, const float *invstd,
                          const float *dy, float *dx, float *dgamma, float *dbeta, int n, int c, int s);
void nn_bn_backward_infer(const float *x, const float *gamma, const float *mean, const float *var,
                          const float *dy, float *dx, float *dgamma, float *dbeta, int n, int c, int s, float eps);
int nn_bn_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int c,
                         long m, double momentum, int unbiased);

void nn_ref_bn_forward_train(const double *x, const double *gamma, const double *beta, double *y,
                             double *mean, double *var, int n, int c, int s, double eps);
void nn_ref_bn_forward_infer(const double *x, const double *gamma, const double *beta, const double *mean,
                             const double *var, double *y, int n, int c, int s, double eps);
void nn_ref_bn_backward_train(const double *x, const double *gamma, const double *dy, double *dx,
                              double *dgamma, double *dbeta, int n, int c, int s, double eps);
void nn_ref_bn_backward_infer(const double *x, const double *gamma, const double *mean, const double *var,
                              const double *dy, double *dx, double *dgamma, double *dbeta, int n, int c, int s, double eps);

#endif
