/* Group normalization, the one kernel behind LayerNorm, GroupNorm and InstanceNorm
 * (ARCHITECTURE.md §4, last bullet). Conventions as in kernels.h: float32 N C S tensors, forward and
 * backward side by side, backward OVERWRITES dx (NULL to skip) and ACCUMULATES (+=) into
 * dgamma/dbeta, plain double twins nn_ref_* in groupnorm_ref.c, OpenMP with reductions in
 * an order fixed by the data layout (bitwise identical for any thread count), no allocation.
 *
 * x[N,C,S] (S = H*W, or 1 for (N,C) input) is viewed as N x G groups; group (i, g) is the
 * m = (C/G)*S CONTIGUOUS values x[(i*C + g*C/G)*S .. + m). Each group is normalized over its
 * own values:
 *   mu = mean, var = BIASED variance (clamped at 0), invstd = 1/sqrt(var + eps),
 *   xhat = (x - mu) * invstd,   y = gamma * xhat + beta
 * with the affine chosen by nn_gn_affine:
 *   NN_GN_AFFINE_NONE     no affine (gamma = 1, beta = 0; gamma/beta ignored)
 *   NN_GN_AFFINE_CHANNEL  gamma/beta[C]: one value per channel (GroupNorm, InstanceNorm)
 *   NN_GN_AFFINE_ELEMENT  gamma/beta[C*S]: one value per element of a sample (PyTorch
 *                         LayerNorm's elementwise affine over normalized_shape = [C,H,W])
 * GroupNorm(G) is groups = G, LayerNorm over all of a sample is groups = 1, InstanceNorm is
 * groups = C. C must be divisible by groups (the caller's shape rule guarantees it). */
#ifndef NN_KERNELS_GROUPNORM_H
#define NN_KERNELS_GROUPNORM_H
#include <stddef.h>

typedef enum { NN_GN_AFFINE_NONE = 0, NN_GN_AFFINE_CHANNEL = 1, NN_GN_AFFINE_ELEMENT = 2 } nn_gn_affine;

/* forward: statistics per group accumulated in double around a per-group shift (so
 * 1e4 + N(0,1e-2) keeps its digits); writes mean[N*G], invstd[N*G] and, if var != NULL,
 * the biased variance var[N*G] (index i*G + g). In-place (y == x) is safe. */
void nn_groupnorm_forward(const float *x, const float *gamma, const float *beta, float *y, float *mean,
                          float *var, float *invstd, int n, int c, int s, int groups, float eps,
                          nn_gn_affine affine);
/* Scratch floats nn_groupnorm_backward needs: 4 per group and 2 per (sample, channel). */
size_t nn_groupnorm_workspace(int n, int c, int groups);
/* backward through the per-group statistics, with mean/invstd from the forward of the same x:
 *   dxhat = dy * gamma,
 *   dx = invstd/m * (m*dxhat - sum_group(dxhat) - xhat * sum_group(dxhat*xhat)),
 *   dgamma += sum over samples (and S for CHANNEL) of dy*xhat, dbeta += the same of dy.
 * dgamma/dbeta may be NULL (and are ignored for NN_GN_AFFINE_NONE); ws holds
 * nn_groupnorm_workspace(n, c, groups) floats. In-place (dx == dy) is safe. */
void nn_groupnorm_backward(const float *x, const float *gamma, const float *mean, const float *invstd,
                           const float *dy, float *dx, float *dgamma, float *dbeta, float *ws, int n, int c,
                           int s, int groups, nn_gn_affine affine);

/* InstanceNorm running statistics from the per-instance statistics of a training forward
 * with groups = C (mean[N*C], biased var[N*C], S values each), as PyTorch computes them:
 *   run_mean = (1-momentum)*run_mean + momentum * mean_i(mean[i,c])
 *   run_var  = (1-momentum)*run_var  + momentum * mean_i(var[i,c] * S/(S-1))   (unbiased)
 * Returns 0 and leaves run_* untouched if S < 2 or any statistic is not finite, 1 otherwise. */
int nn_instnorm_running_update(float *run_mean, float *run_var, const float *mean, const float *var, int n,
                               int c, int s, double momentum);

/* Reference twins: two passes in double. mean/var (biased) may be NULL. The backward
 * recomputes the statistics from x. */
void nn_ref_groupnorm_forward(const double *x, const double *gamma, const double *beta, double *y, double *mean,
                              double *var, int n, int c, int s, int groups, double eps, nn_gn_affine affine);
void nn_ref_groupnorm_backward(const double *x, const double *gamma, const double *dy, double *dx,
                               double *dgamma, double *dbeta, int n, int c, int s, int groups, double eps,
                               nn_gn_affine affine);

#endif
