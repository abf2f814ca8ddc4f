/* Reference twins of the group normalization kernel: plain double loops, two passes,
 * written to be obviously correct (tests compare groupnorm.c to these and
 * finite-difference these). Group (i, g) of x[N,C,S] is the m = (C/G)*S contiguous values
 * starting at x[(i*C + g*C/G)*S]; its element k belongs to channel g*C/G + k/S and is
 * element g*m + k of the sample. */
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>

/* gamma/beta of element k (0 <= k < m) of group g. */
static double ref_gamma(const double *gamma, nn_gn_affine affine, int g, int m, int s, int k) {
  if (affine == NN_GN_AFFINE_NONE || !gamma) return 1.0;
  int e = g * m + k; /* element within the sample, = channel*S + spatial */
  return affine == NN_GN_AFFINE_CHANNEL ? gamma[e / s] : gamma[e];
}

static double ref_beta(const double *beta, nn_gn_affine affine, int g, int m, int s, int k) {
  if (affine == NN_GN_AFFINE_NONE || !beta) return 0.0;
  int e = g * m + k;
  return affine == NN_GN_AFFINE_CHANNEL ? beta[e / s] : beta[e];
}

static void ref_stats(const double *p, int m, double *mean, double *var) {
  double sum = 0, sq = 0;
  for (int k = 0; k < m; k++) sum += p[k];
  double mu = sum / m;
  for (int k = 0; k < m; k++) sq += (p[k] - mu) * (p[k] - mu);
  *mean = mu;
  *var = sq / m;
}

void nn_ref_groupnorm_forward(const nn_norm_geom *geo, const double *x, const double *gamma, const double *beta,
                              double *y, double *mean, double *var) {
  const int n = geo->n, c = geo->c, s = geo->s, groups = geo->groups;
  const double eps = geo->eps;
  const nn_gn_affine affine = geo->affine;
  const int m = c / groups * s;
  for (int i = 0; i < n; i++)
    for (int g = 0; g < groups; g++) {
      const size_t o = ((size_t)i * groups + g) * (size_t)m;
      double mu, v;
      ref_stats(x + o, m, &mu, &v);
      if (mean) mean[i * groups + g] = mu;
      if (var) var[i * groups + g] = v;
      double is = 1.0 / sqrt(v + eps);
      for (int k = 0; k < m; k++)
        y[o + k] = ref_gamma(gamma, affine, g, m, s, k) * (x[o + k] - mu) * is + ref_beta(beta, affine, g, m, s, k);
    }
}

/* dxhat = dy*gamma; dx = invstd/m * (m*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat)). */
void nn_ref_groupnorm_backward(const nn_norm_geom *geo, const double *x, const double *gamma, const double *dy,
                               double *dx, double *dgamma, double *dbeta) {
  const int n = geo->n, c = geo->c, s = geo->s, groups = geo->groups;
  const double eps = geo->eps;
  const nn_gn_affine affine = geo->affine;
  const int m = c / groups * s;
  for (int i = 0; i < n; i++)
    for (int g = 0; g < groups; g++) {
      const size_t o = ((size_t)i * groups + g) * (size_t)m;
      double mu, v;
      ref_stats(x + o, m, &mu, &v);
      double is = 1.0 / sqrt(v + eps), sdxh = 0, sdxhxh = 0;
      for (int k = 0; k < m; k++) {
        double xh = (x[o + k] - mu) * is, dxh = dy[o + k] * ref_gamma(gamma, affine, g, m, s, k);
        sdxh += dxh;
        sdxhxh += dxh * xh;
        if (affine != NN_GN_AFFINE_NONE) {
          int e = g * m + k, p = affine == NN_GN_AFFINE_CHANNEL ? e / s : e;
          if (dgamma) dgamma[p] += dy[o + k] * xh;
          if (dbeta) dbeta[p] += dy[o + k];
        }
      }
      if (dx)
        for (int k = 0; k < m; k++) {
          double xh = (x[o + k] - mu) * is, dxh = dy[o + k] * ref_gamma(gamma, affine, g, m, s, k);
          dx[o + k] = is / m * (m * dxh - sdxh - xh * sdxhxh);
        }
    }
}
