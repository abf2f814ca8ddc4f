/* Central finite differences on every reference backward (src/kernels/reference.c).
 *
 * Objective L = sum(y * r) with r fixed and random (|r| in [0.25, 1]), so the backward
 * receives dy = r; for softmax cross-entropy L = scale * loss with scale = 1/N.
 * fd_i = (L(p_i + h) - L(p_i - h)) / 2h with h = 2^-20 (~1e-6), and every element must
 * satisfy |fd - analytic| / max(|fd|, |analytic|, 1e-8) < 1e-6.
 * Inputs are multiples of 2^-8 so that p +- h is exact and, for the linear operators,
 * every product and sum is exact in double: their finite differences carry no rounding. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "nn_test.h"

#define FD_H 0x1p-20
#define FD_TOL 1e-6
#define FD_FLOOR 1e-8


/* integer uniform in [lo, hi] */
static long tr_int(tu_rng *r, long lo, long hi) { return lo + (long)(tu_rng_next(r) % (uint64_t)(hi - lo + 1)); }


/* multiples of 2^-8 in [lo, hi] */
static void fill_q(tu_rng *r, double *d, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++) d[i] = (double)tr_int(r, (long)(lo * 256), (long)(hi * 256)) / 256.0;
}

/* multiples of 2^-8 with |v| in [lo, hi] and a random sign (keeps away from 0) */
static void fill_q_away(tu_rng *r, double *d, size_t n, double lo, double hi) {
  fill_q(r, d, n, lo, hi);
  for (size_t i = 0; i < n; i++)
    if (tu_rng_next(r) & 1) d[i] = -d[i];
}

/* distinct values (no ties for max pooling): a shuffled ramp, spacing 2^-8 >> h */
static void fill_distinct(tu_rng *r, double *d, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = ((double)i - (double)n / 2) / 256.0;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(tu_rng_next(r) % i);
    double t = d[i - 1];
    d[i - 1] = d[j];
    d[j] = t;
  }
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

typedef double (*objective)(void *ctx);

/* Perturb each param[i] by +-h, compare the central difference with analytic[i]. */
static void gradcheck(const char *what, double *param, size_t n, const double *analytic, objective f,
                      void *ctx) {
  double worst = 0.0, amax = 0.0;
  size_t wi = 0;
  double wfd = 0.0;
  for (size_t i = 0; i < n; i++) {
    double save = param[i];
    param[i] = save + FD_H;
    double lp = f(ctx);
    param[i] = save - FD_H;
    double lm = f(ctx);
    param[i] = save;
    double fd = (lp - lm) / (2.0 * FD_H);
    double den = fmax(fmax(fabs(fd), fabs(analytic[i])), FD_FLOOR);
    double err = fabs(fd - analytic[i]) / den;
    if (!(err <= worst)) worst = err, wi = i, wfd = fd;
    if (fabs(analytic[i]) > amax) amax = fabs(analytic[i]);
  }
  if (!(worst < FD_TOL))
    fail_msg("%s[%zu]: finite difference %.17g vs analytic %.17g (relative error %.3g)", what, wi, wfd,
             analytic[wi], worst);
  /* a gradient that is identically zero would pass vacuously */
  if (!(amax > 0.0)) fail_msg("%s: analytic gradient is all zero", what);
}

/* ---- dense ---- */
typedef struct {
  double *x, *w, *b, *y, *r;
  int n, in, out;
} dense_ctx;

static double dense_obj(void *p) {
  dense_ctx *c = p;
  nn_ref_dense_forward(c->x, c->w, c->b, c->y, c->n, c->in, c->out);
  return dot(c->y, c->r, (size_t)c->n * c->out);
}

static void test_dense(void **state) {
  (void)state;
  tu_rng r = {0x243F6A8885A308D3ULL};
  static const int shapes[][3] = {{1, 3, 2}, {4, 7, 5}, {6, 12, 9}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    dense_ctx c = {.n = shapes[s][0], .in = shapes[s][1], .out = shapes[s][2]};
    size_t nx = (size_t)c.n * c.in, nw = (size_t)c.out * c.in, ny = (size_t)c.n * c.out;
    c.x = tu_dbuf(nx), c.w = tu_dbuf(nw), c.b = tu_dbuf(c.out), c.y = tu_dbuf(ny), c.r = tu_dbuf(ny);
    double *dx = tu_dbuf(nx), *dw = tu_dbuf(nw), *db = tu_dbuf(c.out);
    fill_q(&r, c.x, nx, -1, 1);
    fill_q(&r, c.w, nw, -1, 1);
    fill_q(&r, c.b, c.out, -1, 1);
    fill_q_away(&r, c.r, ny, 0.25, 1);
    nn_ref_dense_backward(c.x, c.w, c.r, dx, dw, db, c.n, c.in, c.out);
    gradcheck("dense dx", c.x, nx, dx, dense_obj, &c);
    gradcheck("dense dw", c.w, nw, dw, dense_obj, &c);
    gradcheck("dense db", c.b, c.out, db, dense_obj, &c);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(dx), free(dw), free(db);
  }
}

/* ---- conv2d ---- */
typedef struct {
  nn_conv_geom g;
  double *x, *w, *b, *y, *r;
} conv_ctx;

static double conv_obj(void *p) {
  conv_ctx *c = p;
  nn_ref_conv2d_forward(&c->g, c->x, c->w, c->b, c->y);
  return dot(c->y, c->r, (size_t)c->g.n * c->g.oc * c->g.oh * c->g.ow);
}

static void test_conv2d(void **state) {
  (void)state;
  tu_rng r = {0x13198A2E03707344ULL};
  static const nn_conv_geom geoms[] = {
      {.n = 2, .c = 2, .h = 6, .w = 6, .oc = 3, .kh = 3, .kw = 3, .stride = 1, .pad = 0},
      {.n = 2, .c = 2, .h = 7, .w = 5, .oc = 3, .kh = 3, .kw = 3, .stride = 2, .pad = 1}, /* stride 2, pad 1 */
      {.n = 1, .c = 3, .h = 4, .w = 5, .oc = 2, .kh = 1, .kw = 1, .stride = 1, .pad = 0}, /* 1x1 */
      {.n = 2, .c = 1, .h = 8, .w = 7, .oc = 2, .kh = 3, .kw = 2, .stride = 3, .pad = 2}, /* odd all over */
  };
  for (size_t s = 0; s < sizeof geoms / sizeof geoms[0]; s++) {
    conv_ctx c = {.g = geoms[s]};
    assert_int_equal(nn_conv_geom_init(&c.g), 0);
    const nn_conv_geom *g = &c.g;
    size_t nx = (size_t)g->n * g->c * g->h * g->w, nw = (size_t)g->oc * g->c * g->kh * g->kw,
           ny = (size_t)g->n * g->oc * g->oh * g->ow;
    c.x = tu_dbuf(nx), c.w = tu_dbuf(nw), c.b = tu_dbuf(g->oc), c.y = tu_dbuf(ny), c.r = tu_dbuf(ny);
    double *dx = tu_dbuf(nx), *dw = tu_dbuf(nw), *db = tu_dbuf(g->oc);
    fill_q(&r, c.x, nx, -1, 1);
    fill_q(&r, c.w, nw, -1, 1);
    fill_q(&r, c.b, g->oc, -1, 1);
    fill_q_away(&r, c.r, ny, 0.25, 1);
    nn_ref_conv2d_backward(g, c.x, c.w, c.r, dx, dw, db);
    char what[64];
    snprintf(what, sizeof what, "conv%zu dx", s);
    gradcheck(what, c.x, nx, dx, conv_obj, &c);
    snprintf(what, sizeof what, "conv%zu dw", s);
    gradcheck(what, c.w, nw, dw, conv_obj, &c);
    snprintf(what, sizeof what, "conv%zu db", s);
    gradcheck(what, c.b, g->oc, db, conv_obj, &c);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(dx), free(dw), free(db);
  }
}

/* ---- pooling ---- */
typedef struct {
  nn_pool_geom g;
  double *x, *y, *r;
  int max;
} pool_ctx;

static double pool_obj(void *p) {
  pool_ctx *c = p;
  if (c->max)
    nn_ref_maxpool2d_forward(&c->g, c->x, c->y);
  else
    nn_ref_avgpool2d_forward(&c->g, c->x, c->y);
  return dot(c->y, c->r, (size_t)c->g.n * c->g.c * c->g.oh * c->g.ow);
}

static void test_pool(void **state) {
  (void)state;
  tu_rng r = {0xA4093822299F31D0ULL};
  static const nn_pool_geom geoms[] = {
      {.n = 2, .c = 2, .h = 6, .w = 6, .size = 2, .stride = 2},
      {.n = 1, .c = 3, .h = 7, .w = 5, .size = 2, .stride = 2}, /* floor drops a row and a column */
      {.n = 2, .c = 1, .h = 7, .w = 7, .size = 3, .stride = 2}, /* overlapping windows */
      {.n = 1, .c = 2, .h = 5, .w = 6, .size = 3, .stride = 1},
  };
  for (size_t s = 0; s < sizeof geoms / sizeof geoms[0]; s++) {
    for (int max = 0; max < 2; max++) {
      pool_ctx c = {.g = geoms[s], .max = max};
      assert_int_equal(nn_pool_geom_init(&c.g), 0);
      size_t nx = (size_t)c.g.n * c.g.c * c.g.h * c.g.w, ny = (size_t)c.g.n * c.g.c * c.g.oh * c.g.ow;
      c.x = tu_dbuf(nx), c.y = tu_dbuf(ny), c.r = tu_dbuf(ny);
      double *dx = tu_dbuf(nx);
      if (max)
        fill_distinct(&r, c.x, nx); /* no ties: the max is differentiable */
      else
        fill_q(&r, c.x, nx, -1, 1);
      fill_q_away(&r, c.r, ny, 0.25, 1);
      if (max)
        nn_ref_maxpool2d_backward(&c.g, c.x, c.r, dx);
      else
        nn_ref_avgpool2d_backward(&c.g, c.r, dx);
      char what[64];
      snprintf(what, sizeof what, "%s%zu dx", max ? "maxpool" : "avgpool", s);
      gradcheck(what, c.x, nx, dx, pool_obj, &c);
      free(c.x), free(c.y), free(c.r), free(dx);
    }
  }
}

typedef struct {
  double *x, *y, *r;
  int n, c, s;
} gap_ctx;

static double gap_obj(void *p) {
  gap_ctx *c = p;
  nn_ref_global_avgpool_forward(c->x, c->y, c->n, c->c, c->s);
  return dot(c->y, c->r, (size_t)c->n * c->c);
}

static void test_global_avgpool(void **state) {
  (void)state;
  tu_rng r = {0x082EFA98EC4E6C89ULL};
  gap_ctx c = {.n = 3, .c = 4, .s = 9};
  size_t nx = (size_t)c.n * c.c * c.s, ny = (size_t)c.n * c.c;
  c.x = tu_dbuf(nx), c.y = tu_dbuf(ny), c.r = tu_dbuf(ny);
  double *dx = tu_dbuf(nx);
  fill_q(&r, c.x, nx, -1, 1);
  fill_q_away(&r, c.r, ny, 0.25, 1);
  nn_ref_global_avgpool_backward(c.r, dx, c.n, c.c, c.s);
  gradcheck("global avgpool dx", c.x, nx, dx, gap_obj, &c);
  free(c.x), free(c.y), free(c.r), free(dx);
}

/* ---- elementwise: flatten, relu, sigmoid, tanh ---- */
typedef struct {
  void (*fwd)(const double *, double *, size_t);
  double *x, *y, *r;
  size_t n;
} elem_ctx;

static double elem_obj(void *p) {
  elem_ctx *c = p;
  c->fwd(c->x, c->y, c->n);
  return dot(c->y, c->r, c->n);
}

static void test_elementwise(void **state) {
  (void)state;
  tu_rng r = {0x452821E638D01377ULL};
  const size_t n = 60;
  elem_ctx c = {.n = n};
  c.x = tu_dbuf(n), c.y = tu_dbuf(n), c.r = tu_dbuf(n);
  double *dx = tu_dbuf(n);

  /* flatten (identity) */
  c.fwd = nn_ref_flatten_forward;
  fill_q(&r, c.x, n, -2, 2);
  fill_q_away(&r, c.r, n, 0.25, 1);
  nn_ref_flatten_backward(c.r, dx, n);
  gradcheck("flatten dx", c.x, n, dx, elem_obj, &c);

  /* relu, inputs away from the kink */
  c.fwd = nn_ref_relu_forward;
  fill_q_away(&r, c.x, n, 0.05, 2);
  fill_q_away(&r, c.r, n, 0.25, 1);
  nn_ref_relu_forward(c.x, c.y, n);
  nn_ref_relu_backward(c.y, c.r, dx, n);
  gradcheck("relu dx", c.x, n, dx, elem_obj, &c);

  /* sigmoid and tanh: backward from the forward output */
  c.fwd = nn_ref_sigmoid_forward;
  fill_q(&r, c.x, n, -4, 4);
  fill_q_away(&r, c.r, n, 0.25, 1);
  nn_ref_sigmoid_forward(c.x, c.y, n);
  nn_ref_sigmoid_backward(c.y, c.r, dx, n);
  gradcheck("sigmoid dx", c.x, n, dx, elem_obj, &c);

  c.fwd = nn_ref_tanh_forward;
  fill_q(&r, c.x, n, -2.5, 2.5);
  fill_q_away(&r, c.r, n, 0.25, 1);
  nn_ref_tanh_forward(c.x, c.y, n);
  nn_ref_tanh_backward(c.y, c.r, dx, n);
  gradcheck("tanh dx", c.x, n, dx, elem_obj, &c);

  free(c.x), free(c.y), free(c.r), free(dx);
}

/* ---- softmax cross-entropy, mean loss (scale 1/N) ---- */
typedef struct {
  double *z, *p;
  const int32_t *lab;
  int n, k;
} smx_ctx;

static double smx_obj(void *ctx) {
  smx_ctx *c = ctx;
  return nn_ref_softmax_xent_forward(c->z, c->lab, c->p, c->n, c->k) / c->n;
}

static void test_softmax_xent(void **state) {
  (void)state;
  tu_rng r = {0xBE5466CF34E90C6CULL};
  static const int shapes[][2] = {{4, 5}, {1, 3}, {6, 10}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    smx_ctx c = {.n = shapes[s][0], .k = shapes[s][1]};
    size_t nz = (size_t)c.n * c.k;
    c.z = tu_dbuf(nz), c.p = tu_dbuf(nz);
    double *dz = tu_dbuf(nz);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)c.n);
    assert_non_null(lab);
    for (int i = 0; i < c.n; i++) lab[i] = (int32_t)tr_int(&r, 0, c.k - 1);
    c.lab = lab;
    fill_q(&r, c.z, nz, -2, 2);
    nn_ref_softmax_xent_forward(c.z, lab, c.p, c.n, c.k);
    nn_ref_softmax_xent_backward(c.p, lab, dz, c.n, c.k, 1.0 / c.n);
    char what[64];
    snprintf(what, sizeof what, "softmax_xent n=%d k=%d dlogits", c.n, c.k);
    gradcheck(what, c.z, nz, dz, smx_obj, &c);
    free(c.z), free(c.p), free(dz), free(lab);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dense),
      cmocka_unit_test(test_conv2d),
      cmocka_unit_test(test_pool),
      cmocka_unit_test(test_global_avgpool),
      cmocka_unit_test(test_elementwise),
      cmocka_unit_test(test_softmax_xent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
