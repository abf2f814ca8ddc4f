/* Reference twins of the batch normalization kernels: plain double loops, two passes,
 * written to be obviously correct (tests compare batchnorm.c to these and
 * finite-difference these). Element (i, ch, j) of x[N,C,S] is x[(i*C + ch)*S + j]. */
#include "kernels/kernels.h"

#include <math.h>
#include <stddef.h>

static size_t at(int i, int ch, int j, int c, int s) {
  return ((size_t)i * c + ch) * s + j;
}

/* Batch mean and biased variance of channel ch, two passes. */
static void ref_stats(const double *x, int n, int c, int s, int ch, double *mean, double *var) {
  double m = (double)n * s, sum = 0, sq = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < s; j++) sum += x[at(i, ch, j, c, s)];
  double mu = sum / m;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < s; j++) {
      double d = x[at(i, ch, j, c, s)] - mu;
      sq += d * d;
    }
  *mean = mu;
  *var = sq / m;
}

void nn_ref_bn_forward_train(const nn_norm_geom *g, const double *x, const double *gamma, const double *beta,
                             double *y, double *mean, double *var) {
  const int n = g->n, c = g->c, s = g->s;
  const double eps = g->eps;
  for (int ch = 0; ch < c; ch++) {
    double mu, v;
    ref_stats(x, n, c, s, ch, &mu, &v);
    if (mean) mean[ch] = mu;
    if (var) var[ch] = v;
    double gm = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
    double is = 1.0 / sqrt(v + eps);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < s; j++) {
        size_t o = at(i, ch, j, c, s);
        y[o] = gm * (x[o] - mu) * is + b;
      }
  }
}

void nn_ref_bn_forward_infer(const nn_norm_geom *g, const double *x, const double *gamma, const double *beta,
                             const double *mean, const double *var, double *y) {
  const int n = g->n, c = g->c, s = g->s;
  const double eps = g->eps;
  for (int ch = 0; ch < c; ch++) {
    double gm = gamma ? gamma[ch] : 1.0, b = beta ? beta[ch] : 0.0;
    double is = 1.0 / sqrt(var[ch] + eps);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < s; j++) {
        size_t o = at(i, ch, j, c, s);
        y[o] = gm * (x[o] - mean[ch]) * is + b;
      }
  }
}

/* dx = gamma*invstd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat)). */
void nn_ref_bn_backward_train(const nn_norm_geom *g, const double *x, const double *gamma, const double *dy,
                              double *dx, double *dgamma, double *dbeta) {
  const int n = g->n, c = g->c, s = g->s;
  const double eps = g->eps;
  double m = (double)n * s;
  for (int ch = 0; ch < c; ch++) {
    double mu, v;
    ref_stats(x, n, c, s, ch, &mu, &v);
    double is = 1.0 / sqrt(v + eps), gm = gamma ? gamma[ch] : 1.0;
    double sdy = 0, sdyxh = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < s; j++) {
        size_t o = at(i, ch, j, c, s);
        sdy += dy[o];
        sdyxh += dy[o] * (x[o] - mu) * is;
      }
    if (dgamma) dgamma[ch] += sdyxh;
    if (dbeta) dbeta[ch] += sdy;
    if (dx)
      for (int i = 0; i < n; i++)
        for (int j = 0; j < s; j++) {
          size_t o = at(i, ch, j, c, s);
          double xh = (x[o] - mu) * is;
          dx[o] = gm * is / m * (m * dy[o] - sdy - xh * sdyxh);
        }
  }
}

/* Statistics are constants: dx = dy*gamma*invstd. */
void nn_ref_bn_backward_infer(const nn_norm_geom *g, const double *x, const double *gamma, const double *mean,
                              const double *var, const double *dy, double *dx, double *dgamma, double *dbeta) {
  const int n = g->n, c = g->c, s = g->s;
  const double eps = g->eps;
  for (int ch = 0; ch < c; ch++) {
    double is = 1.0 / sqrt(var[ch] + eps), gm = gamma ? gamma[ch] : 1.0;
    double sdy = 0, sdyxh = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < s; j++) {
        size_t o = at(i, ch, j, c, s);
        sdy += dy[o];
        sdyxh += dy[o] * (x[o] - mean[ch]) * is;
        if (dx) dx[o] = dy[o] * gm * is;
      }
    if (dgamma) dgamma[ch] += sdyxh;
    if (dbeta) dbeta[ch] += sdy;
  }
}
