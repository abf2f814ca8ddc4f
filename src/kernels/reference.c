/* Reference twins (double precision): the simplest obviously-correct loops, used by the
 * tests only as ground truth (direct convolution, naive GEMM). Not batchnorm: that one
 * lives in batchnorm_ref.c. Same conventions as the optimized kernels: dx overwritten,
 * dw/db accumulated. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---- GEMM ---- */
void nn_ref_gemm(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a,
                 int lda, const double *b, int ldb, double beta, double *c, int ldc) {
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      double s = 0.0;
      for (int p = 0; p < k; p++) {
        double av = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
        double bv = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
        s += av * bv;
      }
      double *cij = &c[(size_t)i * ldc + j];
      *cij = alpha * s + (beta == 0.0 ? 0.0 : beta * *cij);
    }
  }
}

/* ---- dense ---- */
void nn_ref_dense_forward(const double *x, const double *w, const double *b, double *y, int n, int in,
                          int out) {
  for (int i = 0; i < n; i++) {
    for (int o = 0; o < out; o++) {
      double s = b ? b[o] : 0.0;
      for (int j = 0; j < in; j++) s += x[(size_t)i * in + j] * w[(size_t)o * in + j];
      y[(size_t)i * out + o] = s;
    }
  }
}

void nn_ref_dense_backward(const double *x, const double *w, const double *dy, double *dx,
                           double *dw, double *db, int n, int in, int out) {
  if (dx) {
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < in; j++) {
        double s = 0.0;
        for (int o = 0; o < out; o++) s += dy[(size_t)i * out + o] * w[(size_t)o * in + j];
        dx[(size_t)i * in + j] = s;
      }
    }
  }
  if (dw) {
    for (int o = 0; o < out; o++) {
      for (int j = 0; j < in; j++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o] * x[(size_t)i * in + j];
        dw[(size_t)o * in + j] += s;
      }
    }
  }
  if (db) {
    for (int o = 0; o < out; o++) {
      double s = 0.0;
      for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
      db[o] += s;
    }
  }
}

/* ---- conv2d (direct) ---- */
#define X4(t, i0, i1, i2, i3, d1, d2, d3) (t)[(((size_t)(i0) * (d1) + (i1)) * (d2) + (i2)) * (d3) + (i3)]

void nn_ref_conv2d_forward(const nn_conv_geom *g, const double *x, const double *w, const double *b,
                           double *y) {
  for (int n = 0; n < g->n; n++)
    for (int oc = 0; oc < g->oc; oc++)
      for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++) {
          double s = b ? b[oc] : 0.0;
          for (int c = 0; c < g->c; c++)
            for (int ki = 0; ki < g->kh; ki++)
              for (int kj = 0; kj < g->kw; kj++) {
                int ih = oh * g->stride - g->pad + ki, iw = ow * g->stride - g->pad + kj;
                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                s += X4(x, n, c, ih, iw, g->c, g->h, g->w) * X4(w, oc, c, ki, kj, g->c, g->kh, g->kw);
              }
          X4(y, n, oc, oh, ow, g->oc, g->oh, g->ow) = s;
        }
}

void nn_ref_conv2d_backward(const nn_conv_geom *g, const double *x, const double *w, const double *dy,
                            double *dx, double *dw, double *db) {
  if (dx) memset(dx, 0, sizeof(double) * (size_t)g->n * g->c * g->h * g->w);
  for (int n = 0; n < g->n; n++)
    for (int oc = 0; oc < g->oc; oc++)
      for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++) {
          double d = X4(dy, n, oc, oh, ow, g->oc, g->oh, g->ow);
          if (db) db[oc] += d;
          for (int c = 0; c < g->c; c++)
            for (int ki = 0; ki < g->kh; ki++)
              for (int kj = 0; kj < g->kw; kj++) {
                int ih = oh * g->stride - g->pad + ki, iw = ow * g->stride - g->pad + kj;
                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                if (dx) X4(dx, n, c, ih, iw, g->c, g->h, g->w) += d * X4(w, oc, c, ki, kj, g->c, g->kh, g->kw);
                if (dw) X4(dw, oc, c, ki, kj, g->c, g->kh, g->kw) += d * X4(x, n, c, ih, iw, g->c, g->h, g->w);
              }
        }
}

/* ---- pooling ---- */
/* flat index (within the plane) of the window max; first in row-major order on ties */
static int ref_window_argmax(const nn_pool_geom *g, const double *xp, int oh, int ow) {
  int best = oh * g->stride * g->w + ow * g->stride;
  for (int i = 0; i < g->size; i++)
    for (int j = 0; j < g->size; j++) {
      int idx = (oh * g->stride + i) * g->w + ow * g->stride + j;
      if (xp[idx] > xp[best] || (isnan(xp[idx]) && !isnan(xp[best]))) best = idx;
    }
  return best;
}

void nn_ref_maxpool2d_forward(const nn_pool_geom *g, const double *x, double *y) {
  size_t in = (size_t)g->h * g->w, out = (size_t)g->oh * g->ow;
  for (size_t p = 0; p < (size_t)g->n * g->c; p++)
    for (int oh = 0; oh < g->oh; oh++)
      for (int ow = 0; ow < g->ow; ow++)
        y[p * out + (size_t)oh * g->ow + ow] = x[p * in + ref_window_argmax(g, x + p * in, oh, ow)];
}

void nn_ref_maxpool2d_backward(const nn_pool_geom *g, const double *x, const double *dy, double *dx) {
  size_t in = (size_t)g->h * g->w, out = (size_t)g->oh * g->ow;
  memset(dx, 0, sizeof(double) * (size_t)g->n * g->c * in);
  for (size_t p = 0; p < (size_t)g->n * g->c; p++)
    for (int oh = 0; oh < g->oh; oh++)
      for (int ow = 0; ow < g->ow; ow++)
        dx[p * in + ref_window_argmax(g, x + p * in, oh, ow)] += dy[p * out + (size_t)oh * g->ow + ow];
}

void nn_ref_avgpool2d_forward(const nn_pool_geom *g, const double *x, double *y) {
  size_t in = (size_t)g->h * g->w, out = (size_t)g->oh * g->ow;
  for (size_t p = 0; p < (size_t)g->n * g->c; p++)
    for (int oh = 0; oh < g->oh; oh++)
      for (int ow = 0; ow < g->ow; ow++) {
        double s = 0.0;
        for (int i = 0; i < g->size; i++)
          for (int j = 0; j < g->size; j++) s += x[p * in + (size_t)(oh * g->stride + i) * g->w + ow * g->stride + j];
        y[p * out + (size_t)oh * g->ow + ow] = s / ((double)g->size * g->size);
      }
}

void nn_ref_avgpool2d_backward(const nn_pool_geom *g, const double *dy, double *dx) {
  size_t in = (size_t)g->h * g->w, out = (size_t)g->oh * g->ow;
  memset(dx, 0, sizeof(double) * (size_t)g->n * g->c * in);
  for (size_t p = 0; p < (size_t)g->n * g->c; p++)
    for (int oh = 0; oh < g->oh; oh++)
      for (int ow = 0; ow < g->ow; ow++) {
        double v = dy[p * out + (size_t)oh * g->ow + ow] / ((double)g->size * g->size);
        for (int i = 0; i < g->size; i++)
          for (int j = 0; j < g->size; j++) dx[p * in + (size_t)(oh * g->stride + i) * g->w + ow * g->stride + j] += v;
      }
}

void nn_ref_global_avgpool_forward(const double *x, double *y, int n, int c, int s) {
  for (size_t p = 0; p < (size_t)n * c; p++) {
    double acc = 0.0;
    for (int j = 0; j < s; j++) acc += x[p * s + j];
    y[p] = acc / s;
  }
}

void nn_ref_global_avgpool_backward(const double *dy, double *dx, int n, int c, int s) {
  for (size_t p = 0; p < (size_t)n * c; p++)
    for (int j = 0; j < s; j++) dx[p * s + j] = dy[p] / s;
}

/* ---- flatten ---- */
void nn_ref_flatten_forward(const double *x, double *y, size_t count) {
  for (size_t i = 0; i < count; i++) y[i] = x[i];
}

void nn_ref_flatten_backward(const double *dy, double *dx, size_t count) {
  for (size_t i = 0; i < count; i++) dx[i] = dy[i];
}

/* ---- activations (backward from the output y) ---- */
void nn_ref_relu_forward(const double *x, double *y, size_t count) {
  for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0 ? x[i] : 0.0;
}

void nn_ref_relu_backward(const double *y, const double *dy, double *dx, size_t count) {
  for (size_t i = 0; i < count; i++) dx[i] = y[i] > 0.0 ? dy[i] : 0.0;
}

void nn_ref_sigmoid_forward(const double *x, double *y, size_t count) {
  for (size_t i = 0; i < count; i++)
    y[i] = x[i] >= 0.0 ? 1.0 / (1.0 + exp(-x[i])) : exp(x[i]) / (1.0 + exp(x[i]));
}

void nn_ref_sigmoid_backward(const double *y, const double *dy, double *dx, size_t count) {
  for (size_t i = 0; i < count; i++) dx[i] = dy[i] * y[i] * (1.0 - y[i]);
}

void nn_ref_tanh_forward(const double *x, double *y, size_t count) {
  for (size_t i = 0; i < count; i++) y[i] = tanh(x[i]);
}

void nn_ref_tanh_backward(const double *y, const double *dy, double *dx, size_t count) {
  for (size_t i = 0; i < count; i++) dx[i] = dy[i] * (1.0 - y[i] * y[i]);
}

/* ---- softmax cross-entropy ---- */
double nn_ref_softmax_xent_forward(const double *logits, const int32_t *labels, double *probs, int n, int k) {
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    const double *z = logits + (size_t)i * k;
    double *p = probs + (size_t)i * k;
    double m = z[0];
    for (int j = 1; j < k; j++)
      if (z[j] > m) m = z[j];
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += exp(z[j] - m);
    for (int j = 0; j < k; j++) p[j] = exp(z[j] - m) / sum;
    /* sum >= 1: the max element contributes exp(0) (k >= 1) */
    // cppcheck-suppress invalidFunctionArg
    total += log(sum) - (z[labels[i]] - m);
  }
  return total;
}

void nn_ref_softmax_xent_backward(const double *probs, const int32_t *labels, double *dlogits, int n, int k,
                                  double scale) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < k; j++)
      dlogits[(size_t)i * k + j] = (probs[(size_t)i * k + j] - (j == labels[i] ? 1.0 : 0.0)) * scale;
}
