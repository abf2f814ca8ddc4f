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

#include "base/cpu.h"

/* ---- GEMM ------------------------------------------------------------------------
 * C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, row-major; op(X) = X or X^T.
 * nn_gemm uses oneDNN's dnnl_sgemm. */
void nn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);
void nn_ref_gemm(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a,
                 int lda, const double *b, int ldb, double beta, double *c, int ldc);

/* ---- the epilogue of a dense or conv2d forward ------------------------------------
 * What the layers after a dense or conv2d layer do to its output, applied by its forward
 * kernel to each piece of output as it is written (the *_epi kernels), bit for bit the
 * separate kernels, without writing the intermediate tensors:
 *   z = act(norm(y + bias))   per output channel o (a dense layer's unit, a conv's filter)
 * norm: none, or batch normalization with given statistics (an eval forward) in the
 * inference kernel's arithmetic, (v - mean[o]) * scale[o] + shift[o] with scale and shift
 * from nn_bn_infer_affine: bit for bit nn_bn_forward_infer. act: nn_<act>_forward. */
typedef enum { NN_ACT_NONE = 0,
               NN_ACT_RELU,
               NN_ACT_SIGMOID,
               NN_ACT_TANH } nn_act;
typedef struct {
  const float *bias;                 /* [O] or NULL */
  const float *mean, *scale, *shift; /* [O] each, or mean NULL: no normalization */
  nn_act act;
} nn_epilogue;

/* ---- dense: x[N,I], w[O,I] (PyTorch layout), b[O] or NULL, y[N,O] ----------------
 * forward_epi: z = the epilogue e of x @ w^T (nn_epilogue). */
void nn_dense_forward(const float *x, const float *w, const float *b, float *y, int n, int in, int out);
void nn_dense_forward_epi(const float *x, const float *w, const nn_epilogue *e, float *z, int n, int in, int out);
void nn_dense_backward(const float *x, const float *w, const float *dy, float *dx, float *dw,
                       float *db, int n, int in, int out);
void nn_ref_dense_forward(const double *x, const double *w, const double *b, double *y, int n, int in, int out);
void nn_ref_dense_backward(const double *x, const double *w, const double *dy, double *dx,
                           double *dw, double *db, int n, int in, int out);

/* ---- conv2d: x[N,C,H,W], w[OC,C,KH,KW], b[OC] or NULL, y[N,OC,OH,OW] -------------
 * OH = (H + 2*pad - KH)/stride + 1 (floor), zero padding. Optimized: im2col + nn_gemm, or
 * for stride 1 and few input channels a direct convolution (forward, dw, db; dx for unpadded
 * layers with output rows of whole vectors), or for 3x3 stride-1 layers with 16+ channels
 * Winograd's F(2x2, 3x3), chosen by shape (nn_conv2d_algo*). ws is scratch of
 * nn_conv2d_workspace(g) floats (caller allocates once). */
typedef enum { NN_CONV_AUTO = 0, /* by shape: nn_conv2d_algo */
               NN_CONV_IM2COL = 1,
               NN_CONV_DIRECT = 2,
               NN_CONV_WINOGRAD = 3, /* F(2x2, 3x3): 3x3 stride-1 layers */
               NN_CONV_ALGO_COUNT } nn_conv_algo;
typedef struct {
  int n, c, h, w; /* input */
  int oc, kh, kw; /* filters */
  int stride, pad;
  int oh, ow;        /* output, filled by nn_conv_geom_init */
  nn_conv_algo algo; /* requested algorithm; 0 (NN_CONV_AUTO) = chosen by shape */
  int gap_dz;        /* backward_act: dz is [N, OC], the gradient of a global average pool over z
                        (each value of plane (i, oc) receives dz[i*OC + oc] / (OH*OW)) */
} nn_conv_geom;
/* Fills oh/ow; returns 0 if the geometry is valid (output >= 1x1), -1 otherwise. */
int nn_conv_geom_init(nn_conv_geom *g);
/* The algorithm the kernels run for g, per pass: the requested one, or for NN_CONV_AUTO the
 * rule by shape, measured with bench_kernels (docs/performance.md): the forward and dw/db run
 * Winograd for a 3x3 kernel, stride 1, at least NN_CONV_WINOGRAD_MIN_C input channels,
 * whole blocks of 16 filters and an output of at least NN_CONV_WINOGRAD_MIN_OUT squared
 * (forward) or NN_CONV_WINOGRAD_MIN_DW_OUT squared (dw/db), dx
 * for the same with the roles exchanged (16+ filters, whole blocks of 16 input channels,
 * pad <= 2, an input of at least NN_CONV_WINOGRAD_MIN_DX_IN squared): a GEMM K of 16+ keeps
 * the 16 GEMMs per tile at the FMA peak (the CNNs' second layers), and on small planes the
 * few tiles per sample and the per-call filter transform lose to im2col (bench_kernels'
 * "rule" shapes at batch 32: forward 0.6x on a 4x4 output, 1.3x on 6x6; dW 1.6x on 4x4,
 * 1.9x on 6x6; dx 0.5x on a 6x6 input, 0.8x on 8x8, even on 12x12);
 * otherwise the forward runs direct
 * for stride 1 and either C*KH*KW <= NN_CONV_DIRECT_MAX_CKK or output rows of whole vectors
 * (OW a multiple of NN_CONV_DIRECT_ROW: no dead lanes, LeNet conv2); dw/db run direct when the forward does
 * and there are at most NN_CONV_DIRECT_DW_MAX_OC filters (the GEMM wastes most of its row
 * blocks on a handful of filters; LeNet conv2's 16: direct 1.1x at one thread, even at two,
 * since run 16's batched samples); dx runs direct (nn_conv2d_algo_data) for stride 1, no
 * padding, OW a multiple of NN_CONV_DIRECT_ROW, KW <= NN_CONV_DIRECT_DX_MAX_KW and at most
 * NN_CONV_DIRECT_DX_MAX_OC filters (LeNet conv2: no column matrix to write and read back).
 * Direct needs stride 1 and C*KH*KW <= NN_CONV_DIRECT_MAX_TAPS (and for dx the shape above):
 * a direct request for another shape runs im2col, and so does a Winograd request where it does
 * not fit. The choice
 * depends on the geometry and the CPU only (its level, and at NN_CPU_AVX512 whether its 512-bit
 * FMAs run in halves, nn_cpu_fma512_split): every call for a layer runs the same code,
 * and results do not depend on timing or on the thread count. (Runtime dispatch,
 * ARCHITECTURE.md §13: a kernel variant compiled without AVX2 runs im2col where the rule says
 * direct or Winograd.)
 * On an AVX-512 machine (level NN_CPU_AVX512) oneDNN's GEMM runs 16 lanes wide and our
 * Winograd 8, and the rule trades some choices for im2col + GEMM (conv2d.c, rule_wide):
 * - dx never runs Winograd; the forward neither, except where 512-bit FMAs run in halves
 *   (nn_cpu_fma512_split: AMD Zen 4) on outputs of at least NN_CONV_SPLIT_WINOGRAD_MIN_OUT
 *   squared;
 * - beyond NN_CONV_WIDE_DIRECT_MAX_CKK taps, dW/db runs direct only where the direct kernels
 *   run 16 wide (NN_BUILD_AVX512), and the forward only on rows of whole vectors (its fused
 *   epilogue) or where 512-bit FMAs run in halves.
 * Measured with bench_kernels --only conv at one and two threads: on a Xeon the CNNs' second
 * layers' forward 1.1-1.5x and dx 1.3-1.8x faster by GEMM (their dW still faster by Winograd
 * at two threads), CIFAR conv1's 27-tap forward 1.4x and LeNet conv2's dW 1.05-1.4x faster by
 * GEMM, but LeNet conv2's dW 1.15-1.5x faster direct where the build runs it 16 wide (run 20);
 * on Zen 4 the CNNs' second layers' forward 1.1-1.4x faster by Winograd at one thread, 1.1x
 * at two (a 6x6 output 0.4-0.6x; run 30), CIFAR conv1's forward 1.18-1.30x faster direct at
 * one thread, 1.35-1.65x at two (run 31). */
#define NN_CONV_DIRECT_MAX_CKK 32
#define NN_CONV_DIRECT_ROW 8
#define NN_CONV_DIRECT_DW_MAX_OC 16
#define NN_CONV_DIRECT_MAX_TAPS 256
#define NN_CONV_DIRECT_DX_MAX_KW 5
#define NN_CONV_DIRECT_DX_MAX_OC 32
#define NN_CONV_WINOGRAD_MIN_C 16
#define NN_CONV_WINOGRAD_MIN_OUT 6        /* forward: output at least 6 x 6 */
#define NN_CONV_WINOGRAD_MIN_DW_OUT 4     /* dW: output at least 4 x 4 */
#define NN_CONV_WINOGRAD_MIN_DX_IN 12     /* dx: input (its output) at least 12 x 12 */
#define NN_CONV_WIDE_DIRECT_MAX_CKK 25    /* AVX-512: direct dW (and ragged-row forward) up to 25 taps */
#define NN_CONV_SPLIT_WINOGRAD_MIN_OUT 10 /* AVX-512 in halves: Winograd forward from a 10 x 10 output */
/* 1 where the build targets AVX-512 F, DQ and VL (a native build on such a machine): the
 * kernels' 16-float and 32-register paths, the direct forward, dW and dx in 16-float vectors
 * (dW and dx two filters or two input channels per vector, conv2d_direct.c) and the exp's
 * vscalefps (act_inline.h). Every kernel variant of such a build has them (a variant's flags
 * only add AVX2 and FMA to the build's), so the rule, compiled once, knows what the variants
 * run. */
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define NN_BUILD_AVX512 1
#else
#define NN_BUILD_AVX512 0
#endif
typedef enum { NN_CONV_PASS_FORWARD,
               NN_CONV_PASS_PARAMS, /* dw, db */
               NN_CONV_PASS_DATA,   /* dx */
               NN_CONV_PASS_COUNT } nn_conv_pass;
/* The rule for a pass at a CPU level (the three below: at nn_cpu_level_get()); at
 * NN_CPU_AVX512 it also asks this CPU's nn_cpu_fma512_split (tests force it). */
nn_conv_algo nn_conv2d_algo_at(const nn_conv_geom *g, nn_conv_pass pass, nn_cpu_level level);
nn_conv_algo nn_conv2d_algo(const nn_conv_geom *g);
nn_conv_algo nn_conv2d_algo_params(const nn_conv_geom *g);
nn_conv_algo nn_conv2d_algo_data(const nn_conv_geom *g);
const char *nn_conv2d_algo_name(nn_conv_algo a);
size_t nn_conv2d_workspace(const nn_conv_geom *g);
void nn_conv2d_forward(const nn_conv_geom *g, const float *x, const float *w, const float *b, float *y, float *ws);
void nn_conv2d_backward(const nn_conv_geom *g, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db, float *ws);
/* Convolution fused with the layers that follow it:
 * forward_epi: z = the epilogue e of conv(x) (nn_epilogue, above), applied to each output
 *   row as it is written.
 * backward_act: from z and dz = dL/dz, bit for bit nn_<act>_backward (dy = dz*act'(z)) then
 *   nn_conv2d_backward, without the intermediate gradient tensor (z unused for NN_ACT_NONE).
 * act = NN_ACT_NONE gives the plain kernels. */
void nn_conv2d_forward_epi(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w, float *z,
                           float *ws);
void nn_conv2d_backward_act(const nn_conv_geom *g, nn_act act, const float *x, const float *w, const float *z,
                            const float *dz, float *dx, float *dw, float *db, float *ws);
void nn_ref_conv2d_forward(const nn_conv_geom *g, const double *x, const double *w, const double *b, double *y);
void nn_ref_conv2d_backward(const nn_conv_geom *g, const double *x, const double *w, const double *dy,
                            double *dx, double *dw, double *db);

/* ---- pooling: x[N,C,H,W] -> y[N,C,OH,OW], window `size`, step `stride`, no padding,
 * OH = (H - size)/stride + 1 (floor, like PyTorch and Keras 'valid'). */
typedef struct {
  int n, c, h, w;
  int size, stride;
  int oh, ow; /* filled by nn_pool_geom_init */
} nn_pool_geom;
int nn_pool_geom_init(nn_pool_geom *g);
/* argmax[N*C*OH*OW] records the flat input index (within the (n,c) plane) of the max;
 * ties go to the first in row-major window order, a NaN wins. argmax may be NULL in the
 * forward (the values only: no backward follows, or one that finds the argmax in x again). */
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

/* ---- u8_normalize: dst[j] = ((float)src[j] / 255 - mean) / std in float32 (the batch
 * assembly's uint8 -> float: ToTensor, then Normalize) ---------------------------------- */
void nn_u8_normalize(const uint8_t *src, float *dst, size_t count, float mean, float std);

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

/* ---- normalization: batch norm, group norm (LayerNorm, GroupNorm, InstanceNorm) --------
 * x[N,C,S] (S = H*W, or 1 for (N,C) input); element (i, c, j) is x[(i*C + c)*S + j].
 * One geometry for all of them; batchnorm.c and groupnorm.c are thin drivers over the
 * shared core in norm_core.h (moments of strided runs around a shift in double with a
 * fixed lane order, the backward reductions, finishing the statistics, the running update).
 * Plain double twins in batchnorm_ref.c and groupnorm_ref.c. */
typedef enum { NN_GN_AFFINE_NONE = 0,
               NN_GN_AFFINE_CHANNEL = 1,
               NN_GN_AFFINE_ELEMENT = 2 } nn_gn_affine;
typedef struct {
  int n, c, s;         /* x[N,C,S] */
  int groups;          /* group norm only: groups per sample (C divisible by it) */
  nn_gn_affine affine; /* group norm only: layout of gamma/beta (batch norm: gamma NULL = off) */
  float eps;           /* inside the square root: invstd = 1/sqrt(var + eps) */
} nn_norm_geom;

/* ---- batch normalization: statistics per channel c over the m = N*S values x[i,c,:] ----
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
 *   leaves run_* untouched if any batch statistic is not finite, 1 otherwise.
 * Backward kernels overwrite dx (NULL to skip) and accumulate into dgamma/dbeta (NULL to
 * skip). In-place use (y == x, dx == dy) is safe. Results are bitwise identical for any
 * thread count. */
void nn_bn_forward_train(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta, float *y,
                         float *mean, float *var, float *invstd);
void nn_bn_forward_infer(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta,
                         const float *mean, const float *var, float *y);
void nn_bn_backward_train(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                          const float *invstd, const float *dy, float *dx, float *dgamma, float *dbeta);
void nn_bn_backward_infer(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                          const float *var, const float *dy, float *dx, float *dgamma, float *dbeta);
int nn_bn_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int c, long m,
                         double momentum, int unbiased);

/* ---- batch normalization fused with the activation that follows it (training) ----------
 * forward_train_act: z = act(BN(x)), bit for bit nn_bn_forward_train then nn_<act>_forward,
 *   without writing BN's output (mean/var/invstd as forward_train).
 * backward_train_act: from z and dz = dL/dz, bit for bit nn_<act>_backward (dy = dz*act'(z))
 *   then nn_bn_backward_train, without the intermediate gradient tensor.
 * act = NN_ACT_NONE gives the plain kernels (nn_act: see conv2d). */
void nn_bn_forward_train_act(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                             const float *beta, float *z, float *mean, float *var, float *invstd);
void nn_bn_backward_train_act(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                              const float *mean, const float *invstd, const float *z, const float *dz, float *dx,
                              float *dgamma, float *dbeta);
/* backward_train_act_pool2: backward_train_act (act not NN_ACT_NONE) where z is followed by
 *   a 2x2 stride-2 pool and dp[N, C, H/2, W/2] is the gradient of its output: a max pool's
 *   (max_pool != 0; each window's argmax found again in z, by the forward's rule, so its
 *   forward may skip writing it) or an average pool's. Bit for bit
 *   nn_maxpool2d_backward or nn_avgpool2d_backward (dz) then nn_bn_backward_train_act, without
 *   writing dz (each plane's dz is formed in L1 as the sums need it). For planes that
 *   nn_bn_pool2_fits: W = w, H = S / w at least 2, H*W at most 1024 (LeNet's 24x24, the CNNs'
 *   26x26, 30x30 and 11x11); the pool floors odd sides (their last row or column gets 0). */
int nn_bn_pool2_fits(const nn_norm_geom *g, int w);
void nn_bn_backward_train_act_pool2(const nn_norm_geom *g, int w, nn_act act, const float *x, const float *gamma,
                                    const float *mean, const float *invstd, const float *z, const float *dp,
                                    int max_pool, float *dx, float *dgamma, float *dbeta);
/* backward_train_act_gap: the same where z is followed by a global average pool and dp[N, C]
 *   is the gradient of its output: bit for bit nn_global_avgpool_backward (dz) then
 *   nn_bn_backward_train_act, without writing dz (each plane's dz, dp / S, is formed in L1).
 *   For planes that nn_bn_gap_fits: S from 2 to 1024 (cifar-gap's 30x30). */
int nn_bn_gap_fits(const nn_norm_geom *g);
void nn_bn_backward_train_act_gap(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                                  const float *mean, const float *invstd, const float *z, const float *dp, float *dx,
                                  float *dgamma, float *dbeta);
/* forward_infer_act: z = act(BN(x)) with the given statistics, bit for bit
 *   nn_bn_forward_infer then nn_<act>_forward (an eval forward that keeps no layer output). */
void nn_bn_forward_infer_act(const nn_norm_geom *g, nn_act act, const float *x, const float *gamma,
                             const float *beta, const float *mean, const float *var, float *z);
/* The per-channel affine of BN inference for c channels: y = (x - mean) * scale + shift with
 * scale = gamma / sqrt(var + eps) (computed in double, rounded once; gamma NULL: 1) and
 * shift = beta (NULL: 0), the values nn_bn_forward_infer applies; for an epilogue that applies
 * BN in another kernel's pass (nn_epilogue). */
void nn_bn_infer_affine(const float *gamma, const float *beta, const float *var, float eps, int c, float *scale,
                        float *shift);

/* ---- batch normalization in phases (synchronized BN: reduce across processes between) ---
 * The one-shot kernels above are exactly these phases run per channel on one process
 * (bitwise: phases a, b with the local count give forward_train's outputs; c, d give
 * backward_train's). With several processes each holding part of the batch (same C, S;
 * any N), the caller sums the double arrays of phase (a) or (c) over all processes and
 * passes the totals to (b) or (d):
 *
 *   (a) shift[C] = nn_bn_shift(x)          one float per channel, THE SAME on every process
 *                                          (e.g. broadcast from rank 0; any value near the
 *                                          data works, the first value is what one-shot uses)
 *       nn_bn_moments(x, shift) -> sum[C] = sum(x - shift), sumsq[C] = sum((x - shift)^2)
 *       over the local m = N*S values of each channel, in double.
 *       ---- all-reduce (sum) sum[C], sumsq[C] and the count m ----
 *   (b) nn_bn_forward_apply(x, shift, sum, sumsq, count) -> y, mean[C], var[C] (biased),
 *       invstd[C] of the global batch; then nn_bn_running_update(..., mean, var, C,
 *       count, ...) on every process (identical inputs give identical running stats).
 *   (c) nn_bn_backward_sums(x, dy, mean) -> sd[C] = sum(x - mean), sdy[C] = sum(dy),
 *       sdyd[C] = sum(dy * (x - mean)), double, local, around the float mean of (b)
 *       (sd recovers the exact mean offset: the float mean alone loses digits).
 *       ---- all-reduce (sum) sd[C], sdy[C], sdyd[C] ----
 *   (d) nn_bn_backward_apply(x, dy, mean, invstd, sd, sdy, sdyd, count) -> dx (local),
 *       dgamma += sum(dy*xhat), dbeta += sum(dy) of the sums given (with global sums every
 *       process gets the GLOBAL parameter gradient: do not all-reduce it again).
 * count is the global number of values per channel (sum of N*S), >= 2 for training. */
void nn_bn_shift(const nn_norm_geom *g, const float *x, float *shift);
void nn_bn_moments(const nn_norm_geom *g, const float *x, const float *shift, double *sum, double *sumsq);
void nn_bn_forward_apply(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta,
                         const float *shift, const double *sum, const double *sumsq, double count, float *y,
                         float *mean, float *var, float *invstd);
void nn_bn_backward_sums(const nn_norm_geom *g, const float *x, const float *dy, const float *mean, double *sd,
                         double *sdy, double *sdyd);
void nn_bn_backward_apply(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                          const float *invstd, const float *dy, const double *sd, const double *sdy,
                          const double *sdyd, double count, float *dx, float *dgamma, float *dbeta);

void nn_ref_bn_forward_train(const nn_norm_geom *g, const double *x, const double *gamma, const double *beta,
                             double *y, double *mean, double *var);
void nn_ref_bn_forward_infer(const nn_norm_geom *g, const double *x, const double *gamma, const double *beta,
                             const double *mean, const double *var, double *y);
void nn_ref_bn_backward_train(const nn_norm_geom *g, const double *x, const double *gamma, const double *dy,
                              double *dx, double *dgamma, double *dbeta);
void nn_ref_bn_backward_infer(const nn_norm_geom *g, const double *x, const double *gamma, const double *mean,
                              const double *var, const double *dy, double *dx, double *dgamma, double *dbeta);

/* ---- group normalization: LayerNorm, GroupNorm and InstanceNorm on one kernel ----------
 * x[N,C,S] is viewed as N x G groups (G = g->groups); group (i, k) is the m = (C/G)*S
 * CONTIGUOUS values x[(i*C + k*C/G)*S .. + m), normalized over its own values:
 *   mu = mean, var = BIASED variance (clamped at 0), invstd = 1/sqrt(var + eps),
 *   xhat = (x - mu) * invstd,   y = gamma * xhat + beta
 * with the affine chosen by g->affine:
 *   NN_GN_AFFINE_NONE     no affine (gamma = 1, beta = 0; gamma/beta ignored)
 *   NN_GN_AFFINE_CHANNEL  gamma/beta[C]: one value per channel (GroupNorm, InstanceNorm)
 *   NN_GN_AFFINE_ELEMENT  gamma/beta[C*S]: one value per element of a sample (PyTorch
 *                         LayerNorm's elementwise affine over normalized_shape = [C,H,W])
 * GroupNorm(G) is groups = G, LayerNorm over all of a sample is groups = 1, InstanceNorm is
 * groups = C. C must be divisible by groups (the caller's shape rule guarantees it).
 *
 * forward: writes mean[N*G], invstd[N*G] and, if var != NULL, the biased variance var[N*G]
 *   (index i*G + k). In-place (y == x) is safe.
 * backward: through the per-group statistics, with mean/invstd from the forward of the same x:
 *   dxhat = dy * gamma,
 *   dx = invstd/m * (m*dxhat - sum_group(dxhat) - xhat * sum_group(dxhat*xhat)),
 *   dgamma += sum over samples (and S for CHANNEL) of dy*xhat, dbeta += the same of dy.
 *   dgamma/dbeta may be NULL (and are ignored for NN_GN_AFFINE_NONE); ws holds
 *   nn_groupnorm_workspace(g) floats (4 per group and 2 per (sample, channel)).
 *   In-place (dx == dy) is safe.
 * instnorm_running_update: InstanceNorm running statistics from the per-instance statistics of
 *   a training forward with groups = C (mean[N*C], biased var[N*C], S values each), as PyTorch
 *   computes them:
 *     run_mean = (1-momentum)*run_mean + momentum * mean_i(mean[i,c])
 *     run_var  = (1-momentum)*run_var  + momentum * mean_i(var[i,c] * S/(S-1))   (unbiased)
 *   Returns 0 and leaves run_* untouched if S < 2 or any statistic is not finite, 1 otherwise.
 * The twins run two passes in double; mean/var (biased) may be NULL; the backward twin
 * recomputes the statistics from x. */
void nn_groupnorm_forward(const nn_norm_geom *g, const float *x, const float *gamma, const float *beta, float *y,
                          float *mean, float *var, float *invstd);
size_t nn_groupnorm_workspace(const nn_norm_geom *g);
void nn_groupnorm_backward(const nn_norm_geom *g, const float *x, const float *gamma, const float *mean,
                           const float *invstd, const float *dy, float *dx, float *dgamma, float *dbeta, float *ws);
int nn_instnorm_running_update(const nn_norm_geom *g, float *run_mean, float *run_var, const float *mean,
                               const float *var, double momentum);
void nn_ref_groupnorm_forward(const nn_norm_geom *g, const double *x, const double *gamma, const double *beta,
                              double *y, double *mean, double *var);
void nn_ref_groupnorm_backward(const nn_norm_geom *g, const double *x, const double *gamma, const double *dy,
                               double *dx, double *dgamma, double *dbeta);

#endif
