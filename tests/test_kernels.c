/* Optimized kernels vs their double-precision reference twins (src/kernels/reference.c):
 * GEMM, dense, conv2d, activations, flatten, the byte conversion, softmax cross-entropy, and
 * every kernel bitwise equal at 1 and several threads (pooling: test_pool.c).
 * Random float inputs are converted exactly to double; outputs and every gradient must agree
 * within rtol 1e-4 and an atol of 1e-5 times the largest reference magnitude. Backward
 * kernels are called twice from nonzero parameter gradients: dx must be overwritten,
 * dw/db accumulated. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "base/cpu.h"
#include "kernels/act_inline.h"
#include "kernels/kernels.h"
#include "nn_test.h"

/* ---- GEMM --------------------------------------------------------------------------- */

static void gemm_case(tu_rng *r, int ta, int tb, int m, int n, int k, int pad_a, int pad_b, int pad_c,
                      float alpha, float beta) {
  int lda = (ta ? m : k) + pad_a, ldb = (tb ? k : n) + pad_b, ldc = n + pad_c;
  size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
  float *a = tu_fbuf(na), *b = tu_fbuf(nb), *c = tu_fbuf(nc);
  double *ad = tu_dbuf(na), *bd = tu_dbuf(nb), *cd = tu_dbuf(nc);
  tu_fill_pair(r, a, ad, na, -1, 1);
  tu_fill_pair(r, b, bd, nb, -1, 1);
  tu_fill_pair(r, c, cd, nc, -1, 1);
  if (beta == 0.0f) {
    /* beta = 0 must not read C: NaN there may not leak into the result */
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = NAN;
  }
  nn_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  nn_ref_gemm(ta, tb, m, n, k, alpha, ad, lda, bd, ldb, beta, cd, ldc);
  char what[96];
  snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d ld %d/%d/%d", ta, tb, m, n, k, lda, ldb, ldc);
  /* includes the padding columns of C, which must be untouched (ref leaves them alone) */
  fx_assert_kernel_close(what, c, cd, nc);
  free(a), free(b), free(c), free(ad), free(bd), free(cd);
}

static void test_gemm(void **state) {
  (void)state;
  tu_rng r = {0x9E3779B97F4A7C15ULL};
  static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 29}, {64, 100, 50}, {6, 25, 576}, {150, 64, 16}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        gemm_case(&r, ta, tb, m, n, k, 0, 0, 0, 1.0f, 0.0f);
        gemm_case(&r, ta, tb, m, n, k, 3, 5, 2, 0.75f, -0.5f);
        gemm_case(&r, ta, tb, m, n, k, 1, 0, 7, -1.25f, 0.0f);
        gemm_case(&r, ta, tb, m, n, k, 0, 2, 0, 1.0f, 1.0f);
      }
}

static void test_gemm_degenerate(void **state) {
  (void)state;
  float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {7}, b[1] = {9};
  /* k = 0: C = beta * C */
  nn_gemm(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 2.0f, c, 3);
  for (int i = 0; i < 6; i++) assert_true(c[i] == 2.0f * (float)(i + 1));
  /* k = 0, beta = 0: C = 0 even if it held NaN */
  c[4] = NAN;
  nn_gemm(1, 1, 2, 3, 0, 1.0f, a, 2, b, 1, 0.0f, c, 3);
  for (int i = 0; i < 6; i++) assert_true(c[i] == 0.0f);
  /* m = 0: nothing touched */
  c[0] = 42.0f;
  nn_gemm(0, 0, 0, 3, 1, 1.0f, a, 1, b, 3, 0.0f, c, 3);
  assert_true(c[0] == 42.0f);
}

/* ---- dense -------------------------------------------------------------------------- */

static void dense_case(tu_rng *r, int n, int in, int out, int with_bias) {
  size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
  float *x = tu_fbuf(nx), *w = tu_fbuf(nw), *b = tu_fbuf(out), *y = tu_fbuf(ny), *dy = tu_fbuf(ny);
  float *dx = tu_fbuf(nx), *dw = tu_fbuf(nw), *db = tu_fbuf(out);
  double *xd = tu_dbuf(nx), *wd = tu_dbuf(nw), *bd = tu_dbuf(out), *yd = tu_dbuf(ny), *dyd = tu_dbuf(ny);
  double *dxd = tu_dbuf(nx), *gw = tu_dbuf(nw), *gb = tu_dbuf(out), *ew = tu_dbuf(nw), *eb = tu_dbuf(out);
  double *rw = tu_dbuf(nw), *rb = tu_dbuf(out);
  char what[96];
  tu_fill_pair(r, x, xd, nx, -1, 1);
  tu_fill_pair(r, w, wd, nw, -1, 1);
  tu_fill_pair(r, b, bd, out, -1, 1);
  tu_fill_pair(r, dy, dyd, ny, -1, 1);

  tu_fill_nan(y, ny);
  nn_dense_forward(x, w, with_bias ? b : NULL, y, n, in, out);
  nn_ref_dense_forward(xd, wd, with_bias ? bd : NULL, yd, n, in, out);
  snprintf(what, sizeof what, "dense y n=%d in=%d out=%d bias=%d", n, in, out, with_bias);
  fx_assert_kernel_close(what, y, yd, ny);

  /* reference gradient from zero, then expected = init + 2 * grad */
  memset(gw, 0, nw * sizeof(double));
  memset(gb, 0, out * sizeof(double));
  nn_ref_dense_backward(xd, wd, dyd, dxd, gw, gb, n, in, out);
  tu_fill_pair(r, dw, NULL, nw, -0.5, 0.5);
  tu_fill_pair(r, db, NULL, out, -0.5, 0.5);
  for (size_t i = 0; i < nw; i++) ew[i] = (double)dw[i] + 2.0 * gw[i], rw[i] = dw[i];
  for (int i = 0; i < out; i++) eb[i] = (double)db[i] + 2.0 * gb[i], rb[i] = db[i];
  tu_fill_nan(dx, nx);
  nn_dense_backward(x, w, dy, dx, dw, db, n, in, out);
  nn_dense_backward(x, w, dy, dx, dw, db, n, in, out);
  snprintf(what, sizeof what, "dense dx n=%d in=%d out=%d", n, in, out);
  fx_assert_kernel_close(what, dx, dxd, nx);
  snprintf(what, sizeof what, "dense dw (accumulated twice) n=%d in=%d out=%d", n, in, out);
  fx_assert_kernel_close(what, dw, ew, nw);
  snprintf(what, sizeof what, "dense db (accumulated twice) n=%d in=%d out=%d", n, in, out);
  fx_assert_kernel_close(what, db, eb, out);
  /* the reference accumulates too */
  nn_ref_dense_backward(xd, wd, dyd, NULL, rw, rb, n, in, out);
  nn_ref_dense_backward(xd, wd, dyd, NULL, rw, rb, n, in, out);
  fx_assert_kernel_close_dd("ref dense dw accumulates", rw, ew, nw);
  fx_assert_kernel_close_dd("ref dense db accumulates", rb, eb, out);

  /* partial requests: dw only, then dx only */
  memset(dw, 0, nw * sizeof(float));
  nn_dense_backward(x, w, dy, NULL, dw, NULL, n, in, out);
  fx_assert_kernel_close("dense dw only", dw, gw, nw);
  tu_fill_nan(dx, nx);
  nn_dense_backward(x, w, dy, dx, NULL, NULL, n, in, out);
  fx_assert_kernel_close("dense dx only", dx, dxd, nx);

  free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
  free(xd), free(wd), free(bd), free(yd), free(dyd), free(dxd), free(gw), free(gb), free(ew), free(eb);
  free(rw), free(rb);
}

static void test_dense(void **state) {
  (void)state;
  tu_rng r = {0x1234567887654321ULL};
  static const int shapes[][3] = {{1, 3, 2}, {5, 7, 4}, {37, 19, 11}, {1, 256, 120}, {70, 33, 50}, {128, 256, 120}, {128, 120, 84}, {128, 84, 10}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int bias = 0; bias < 2; bias++) dense_case(&r, shapes[s][0], shapes[s][1], shapes[s][2], bias);
}

/* The dense forward with an epilogue (kernels.h, nn_epilogue): bit for bit the plain forward,
 * then BN inference with the same statistics (with and without gamma and beta), then the
 * activation; shapes with one row block (columns split) and several. */
static void test_dense_epilogue(void **state) {
  (void)state;
  tu_rng r = {0xDE5E0E91ULL};
  static const int shapes[][3] = {{32, 64, 100}, {5, 7, 4}, {128, 120, 84}, {70, 33, 50}};
  static const nn_act acts[] = {NN_ACT_NONE, NN_ACT_RELU, NN_ACT_SIGMOID, NN_ACT_TANH};
  static void (*const fwd[])(const float *, float *, size_t) = {nn_relu_forward, nn_sigmoid_forward, nn_tanh_forward};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (size_t k = 0; k < sizeof acts / sizeof *acts; k++)
      for (int bn = 0; bn < 2; bn++) {
        const int n = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
        const size_t ny = (size_t)n * out;
        float *x = tu_fbuf((size_t)n * in), *w = tu_fbuf((size_t)in * out), *b = tu_fbuf(out), *y = tu_fbuf(ny),
              *z0 = tu_fbuf(ny), *z1 = tu_fbuf(ny), *mean = tu_fbuf(out), *var = tu_fbuf(out), *gam = tu_fbuf(out),
              *bet = tu_fbuf(out), *sc = tu_fbuf(out), *sh = tu_fbuf(out);
        tu_fill_pair(&r, x, NULL, (size_t)n * in, -1, 1);
        tu_fill_pair(&r, w, NULL, (size_t)in * out, -0.5, 0.5);
        tu_fill_pair(&r, b, NULL, out, -1, 1);
        tu_fill_pair(&r, mean, NULL, out, -1, 1);
        tu_fill_pair(&r, var, NULL, out, 0.05, 3);
        tu_fill_pair(&r, gam, NULL, out, -2, 2);
        tu_fill_pair(&r, bet, NULL, out, -1, 1);
        const float *gv = k % 2 ? gam : NULL, *bv = k % 2 ? bet : NULL;
        const nn_norm_geom ng = {.n = n, .c = out, .s = 1, .eps = 1e-3f};
        nn_bn_infer_affine(gv, bv, var, ng.eps, out, sc, sh);
        const nn_epilogue e = {.bias = b, .mean = bn ? mean : NULL, .scale = sc, .shift = sh, .act = acts[k]};
        nn_dense_forward(x, w, b, y, n, in, out);
        if (bn) nn_bn_forward_infer_act(&ng, acts[k], y, gv, bv, mean, var, z0);
        else if (k) fwd[k - 1](y, z0, ny);
        else memcpy(z0, y, ny * sizeof *y);
        nn_dense_forward_epi(x, w, &e, z1, n, in, out);
        assert_memory_equal(z0, z1, ny * sizeof(float));
        free(x), free(w), free(b), free(y), free(z0), free(z1), free(mean), free(var), free(gam), free(bet), free(sc),
            free(sh);
      }
}

/* ---- conv2d ------------------------------------------------------------------------- */

typedef struct {
  int n, c, h, w, oc, kh, kw, stride, pad;
} conv_shape;

static const conv_shape conv_shapes[] = {
    {10, 1, 28, 28, 6, 5, 5, 1, 0},   /* LeNet conv1, a few chunks */
    {128, 1, 28, 28, 6, 5, 5, 1, 0},  /* LeNet conv1 at batch 128 */
    {128, 6, 12, 12, 16, 5, 5, 1, 0}, /* LeNet conv2 at batch 128 */
    {3, 3, 9, 7, 4, 3, 3, 2, 1},      /* stride 2, pad 1, non-square input */
    {2, 5, 6, 4, 3, 1, 1, 1, 0},      /* 1x1 kernel */
    {9, 8, 5, 7, 4, 1, 1, 2, 0},      /* 1x1 kernel, stride 2 */
    {1, 2, 5, 5, 3, 3, 3, 1, 1},      /* batch 1, pad 1 */
    {4, 3, 10, 8, 5, 3, 2, 3, 2},     /* non-square kernel, stride 3 (floor), pad 2 */
    {2, 2, 4, 4, 3, 4, 4, 1, 0},      /* kernel = input: 1x1 output */
    {3, 2, 5, 6, 2, 3, 3, 1, 2},      /* pad 2: whole padded rows/columns */
    {2, 1, 3, 3, 2, 5, 5, 1, 1},      /* kernel larger than input, padding makes it fit */
    {2, 1, 2, 2, 3, 7, 7, 1, 3},      /* taps that never meet the input, above and left of it */
    {5, 4, 11, 11, 6, 3, 3, 2, 0},    /* stride 2, no pad, odd size */
    {64, 16, 8, 8, 32, 3, 3, 1, 1},   /* a wider layer, several chunks */
    /* row lengths that take the other im2col/col2im segment paths: 18, 16, 38, 1 */
    {3, 2, 20, 20, 4, 3, 3, 1, 0},
    {2, 3, 7, 20, 2, 5, 5, 1, 0},
    {2, 2, 9, 40, 3, 3, 3, 1, 0},
    {2, 2, 6, 3, 3, 2, 3, 1, 0},
    {32, 1, 28, 28, 32, 3, 3, 1, 0}, /* Keras CNN conv1 */
    {8, 3, 32, 32, 32, 3, 3, 1, 0},  /* CIFAR CNN conv1 */
    {3, 3, 9, 11, 13, 3, 3, 1, 1},   /* odd sizes, pad 1: direct blocks of 6 + 7 filters */
    {2, 1, 5, 40, 9, 1, 7, 1, 3},    /* 1x7 kernel, pad 3, rows longer than a block */
    {2, 2, 11, 10, 3, 3, 3, 1, 0},   /* direct rows of one vector, an odd count (9) */
    {2, 1, 7, 18, 4, 3, 3, 1, 0},    /* direct rows of two vectors */
    {3, 2, 9, 17, 5, 2, 2, 1, 0},    /* direct dx: 2x2 kernel, rows of two vectors */
    {2, 3, 6, 11, 4, 3, 4, 1, 0},    /* direct dx: 3x4 kernel, 4 output rows */
    /* Winograd F(2x2, 3x3): odd outputs (the last tiles stick out), pad 0-2, tile rows of
     * more than 8 tiles, a 1x1 output */
    {3, 32, 15, 15, 64, 3, 3, 1, 0}, /* CIFAR CNN conv2 */
    {2, 16, 9, 9, 16, 3, 3, 1, 0},
    {2, 16, 20, 23, 32, 3, 3, 1, 1},
    {2, 16, 6, 5, 16, 3, 3, 1, 2},
    {3, 32, 3, 3, 16, 3, 3, 1, 0},
    {2, 48, 4, 34, 16, 3, 3, 1, 1},
};

static void conv_case(tu_rng *r, const conv_shape *s, nn_conv_algo algo) {
  nn_conv_geom g = {.n = s->n, .c = s->c, .h = s->h, .w = s->w, .oc = s->oc, .kh = s->kh, .kw = s->kw, .stride = s->stride, .pad = s->pad, .algo = algo};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.oc * g.c * g.kh * g.kw,
         ny = (size_t)g.n * g.oc * g.oh * g.ow, nb = (size_t)g.oc;
  size_t nws = nn_conv2d_workspace(&g);
  assert_true(nws > 0);
  float *ws = tu_fbuf(nws);
  tu_fill_nan(ws, nws); /* the kernels must not read workspace they did not write */
  float *x = tu_fbuf(nx), *w = tu_fbuf(nw), *b = tu_fbuf(nb), *y = tu_fbuf(ny), *dy = tu_fbuf(ny);
  float *dx = tu_fbuf(nx), *dw = tu_fbuf(nw), *db = tu_fbuf(nb);
  double *xd = tu_dbuf(nx), *wd = tu_dbuf(nw), *bd = tu_dbuf(nb), *yd = tu_dbuf(ny), *dyd = tu_dbuf(ny);
  double *dxd = tu_dbuf(nx), *gw = tu_dbuf(nw), *gb = tu_dbuf(nb), *ew = tu_dbuf(nw), *eb = tu_dbuf(nb);
  double *rw = tu_dbuf(nw), *rb = tu_dbuf(nb);
  char what[128], tag[80];
  snprintf(tag, sizeof tag, "n%d c%d %dx%d oc%d k%dx%d s%d p%d %s/%s", g.n, g.c, g.h, g.w, g.oc, g.kh, g.kw,
           g.stride, g.pad, nn_conv2d_algo_name(nn_conv2d_algo(&g)), nn_conv2d_algo_name(nn_conv2d_algo_params(&g)));
  tu_fill_pair(r, x, xd, nx, -1, 1);
  tu_fill_pair(r, w, wd, nw, -1, 1);
  tu_fill_pair(r, b, bd, nb, -1, 1);
  tu_fill_pair(r, dy, dyd, ny, -1, 1);

  for (int bias = 0; bias < 2; bias++) {
    tu_fill_nan(y, ny);
    nn_conv2d_forward(&g, x, w, bias ? b : NULL, y, ws);
    nn_ref_conv2d_forward(&g, xd, wd, bias ? bd : NULL, yd);
    snprintf(what, sizeof what, "conv y bias=%d %s", bias, tag);
    fx_assert_kernel_close(what, y, yd, ny);
  }

  memset(gw, 0, nw * sizeof(double));
  memset(gb, 0, nb * sizeof(double));
  nn_ref_conv2d_backward(&g, xd, wd, dyd, dxd, gw, gb);
  tu_fill_pair(r, dw, NULL, nw, -0.5, 0.5);
  tu_fill_pair(r, db, NULL, nb, -0.5, 0.5);
  for (size_t i = 0; i < nw; i++) ew[i] = (double)dw[i] + 2.0 * gw[i], rw[i] = dw[i];
  for (size_t i = 0; i < nb; i++) eb[i] = (double)db[i] + 2.0 * gb[i], rb[i] = db[i];
  tu_fill_nan(dx, nx);
  nn_conv2d_backward(&g, x, w, dy, dx, dw, db, ws);
  nn_conv2d_backward(&g, x, w, dy, dx, dw, db, ws);
  snprintf(what, sizeof what, "conv dx %s", tag);
  fx_assert_kernel_close(what, dx, dxd, nx);
  snprintf(what, sizeof what, "conv dw (accumulated twice) %s", tag);
  fx_assert_kernel_close(what, dw, ew, nw);
  snprintf(what, sizeof what, "conv db (accumulated twice) %s", tag);
  fx_assert_kernel_close(what, db, eb, nb);
  nn_ref_conv2d_backward(&g, xd, wd, dyd, NULL, rw, rb);
  nn_ref_conv2d_backward(&g, xd, wd, dyd, NULL, rw, rb);
  fx_assert_kernel_close_dd("ref conv dw accumulates", rw, ew, nw);
  fx_assert_kernel_close_dd("ref conv db accumulates", rb, eb, nb);

  /* partial requests */
  memset(dw, 0, nw * sizeof(float));
  nn_conv2d_backward(&g, x, w, dy, NULL, dw, NULL, ws);
  snprintf(what, sizeof what, "conv dw only %s", tag);
  fx_assert_kernel_close(what, dw, gw, nw);
  memset(db, 0, nb * sizeof(float));
  nn_conv2d_backward(&g, x, w, dy, NULL, NULL, db, ws);
  snprintf(what, sizeof what, "conv db only %s", tag);
  fx_assert_kernel_close(what, db, gb, nb);
  tu_fill_nan(dx, nx);
  nn_conv2d_backward(&g, x, w, dy, dx, NULL, NULL, ws);
  snprintf(what, sizeof what, "conv dx only %s", tag);
  fx_assert_kernel_close(what, dx, dxd, nx);

  free(ws), free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
  free(xd), free(wd), free(bd), free(yd), free(dyd), free(dxd), free(gw), free(gb), free(ew), free(eb);
  free(rw), free(rb);
}

static void test_conv2d(void **state) {
  (void)state;
  tu_rng r = {0xC0FFEE1234ULL};
  for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++) {
    /* each algorithm that applies to the shape against the reference twin */
    conv_case(&r, &conv_shapes[i], NN_CONV_IM2COL);
    nn_conv_geom g = {.n = 1, .c = conv_shapes[i].c, .h = conv_shapes[i].h, .w = conv_shapes[i].w, .oc = conv_shapes[i].oc, .kh = conv_shapes[i].kh, .kw = conv_shapes[i].kw, .stride = conv_shapes[i].stride, .pad = conv_shapes[i].pad, .algo = NN_CONV_DIRECT};
    if (nn_conv2d_algo(&g) == NN_CONV_DIRECT) conv_case(&r, &conv_shapes[i], NN_CONV_DIRECT);
    g.algo = NN_CONV_WINOGRAD;
    if (nn_conv2d_algo(&g) == NN_CONV_WINOGRAD || nn_conv2d_algo_data(&g) == NN_CONV_WINOGRAD)
      conv_case(&r, &conv_shapes[i], NN_CONV_WINOGRAD);
  }
}

/* Convolution + activation fused: bit for bit the convolution then the activation kernel
 * (forward; also with an eval BN between), the activation backward then the convolution
 * backward (backward; also from a global average pool's gradient after the activation, and
 * after no activation), for each activation and each algorithm, with and without dx. */
static void test_conv_act_fused(void **state) {
  (void)state;
  tu_rng r = {0xAC7F05EDULL};
  static const conv_shape shapes[] = {{9, 1, 28, 28, 6, 5, 5, 1, 0},
                                      {4, 3, 12, 10, 20, 3, 3, 1, 1},
                                      {3, 4, 9, 9, 5, 3, 3, 2, 1},
                                      {3, 16, 9, 10, 16, 3, 3, 1, 1}};
  static const nn_act acts[] = {NN_ACT_RELU, NN_ACT_SIGMOID, NN_ACT_TANH};
  static void (*const fwd[])(const float *, float *, size_t) = {nn_relu_forward, nn_sigmoid_forward, nn_tanh_forward};
  static void (*const bwd[])(const float *, const float *, float *, size_t) = {nn_relu_backward, nn_sigmoid_backward,
                                                                               nn_tanh_backward};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int a = NN_CONV_IM2COL; a < NN_CONV_ALGO_COUNT; a++)
      for (size_t k = 0; k < 3; k++) {
        const conv_shape *s = &shapes[si];
        nn_conv_geom g = {.n = s->n, .c = s->c, .h = s->h, .w = s->w, .oc = s->oc, .kh = s->kh, .kw = s->kw, .stride = s->stride, .pad = s->pad, .algo = (nn_conv_algo)a};
        assert_int_equal(nn_conv_geom_init(&g), 0);
        size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.oc * g.c * g.kh * g.kw,
               ny = (size_t)g.n * g.oc * g.oh * g.ow;
        float *x = tu_fbuf(nx), *w = tu_fbuf(nw), *b = tu_fbuf(g.oc), *dz = tu_fbuf(ny), *ws = tu_fbuf(nn_conv2d_workspace(&g));
        float *y = tu_fbuf(ny), *z0 = tu_fbuf(ny), *z1 = tu_fbuf(ny), *dy = tu_fbuf(ny);
        float *dx0 = tu_fbuf(nx), *dx1 = tu_fbuf(nx), *dw0 = tu_fbuf(nw), *dw1 = tu_fbuf(nw), *db0 = tu_fbuf(g.oc),
              *db1 = tu_fbuf(g.oc);
        tu_fill_pair(&r, x, NULL, nx, -2, 2);
        tu_fill_pair(&r, w, NULL, nw, -1, 1);
        tu_fill_pair(&r, b, NULL, g.oc, -1, 1);
        tu_fill_pair(&r, dz, NULL, ny, -1, 1);
        float *dp = tu_fbuf((size_t)g.n * g.oc);
        tu_fill_pair(&r, dp, NULL, (size_t)g.n * g.oc, -1, 1);
        nn_conv2d_forward(&g, x, w, b, y, ws);
        fwd[k](y, z0, ny);
        const nn_epilogue e = {.bias = b, .act = acts[k]};
        nn_conv2d_forward_epi(&g, &e, x, w, z1, ws);
        assert_memory_equal(z0, z1, ny * sizeof(float));
        /* an eval BN in the epilogue (with and without gamma and beta, with and without the
         * activation) against the inference kernel on the stored convolution */
        float *mean = tu_fbuf(g.oc), *var = tu_fbuf(g.oc), *gam = tu_fbuf(g.oc), *bet = tu_fbuf(g.oc),
              *sc = tu_fbuf(g.oc), *sh = tu_fbuf(g.oc);
        tu_fill_pair(&r, mean, NULL, g.oc, -1, 1);
        tu_fill_pair(&r, var, NULL, g.oc, 0.05, 3);
        tu_fill_pair(&r, gam, NULL, g.oc, -2, 2);
        tu_fill_pair(&r, bet, NULL, g.oc, -1, 1);
        const nn_norm_geom ng = {.n = g.n, .c = g.oc, .s = g.oh * g.ow, .eps = 1e-3f};
        for (int v = 0; v < 2; v++) {
          const float *gv = k == 1 ? NULL : gam, *bv = k == 1 ? NULL : bet;
          const nn_act av = v ? acts[k] : NN_ACT_NONE;
          nn_bn_infer_affine(gv, bv, var, ng.eps, g.oc, sc, sh);
          const nn_epilogue ebn = {.bias = v ? b : NULL, .mean = mean, .scale = sc, .shift = sh, .act = av};
          nn_conv2d_forward(&g, x, w, v ? b : NULL, y, ws);
          nn_bn_forward_infer_act(&ng, av, y, gv, bv, mean, var, z0);
          nn_conv2d_forward_epi(&g, &ebn, x, w, z1, ws);
          assert_memory_equal(z0, z1, ny * sizeof(float));
        }
        free(mean), free(var), free(gam), free(bet), free(sc), free(sh);
        nn_conv2d_forward(&g, x, w, b, y, ws);
        fwd[k](y, z0, ny);
        for (int with_dx = 0; with_dx < 2; with_dx++) {
          memset(dw0, 0, nw * sizeof(float)), memset(dw1, 0, nw * sizeof(float));
          memset(db0, 0, g.oc * sizeof(float)), memset(db1, 0, g.oc * sizeof(float));
          bwd[k](z0, dz, dy, ny);
          nn_conv2d_backward(&g, x, w, dy, with_dx ? dx0 : NULL, dw0, db0, ws);
          nn_conv2d_backward_act(&g, acts[k], x, w, z0, dz, with_dx ? dx1 : NULL, dw1, db1, ws);
          if (with_dx) assert_memory_equal(dx0, dx1, nx * sizeof(float));
          assert_memory_equal(dw0, dw1, nw * sizeof(float));
          assert_memory_equal(db0, db1, g.oc * sizeof(float));
          /* from a global average pool's output gradient dp[N, OC] (gap_dz): bit for bit the
           * pool's backward, the activation's, then the convolution's */
          nn_global_avgpool_backward(dp, dy, g.n, g.oc, g.oh * g.ow);
          bwd[k](z0, dy, dy, ny);
          memset(dw0, 0, nw * sizeof(float)), memset(dw1, 0, nw * sizeof(float));
          memset(db0, 0, g.oc * sizeof(float)), memset(db1, 0, g.oc * sizeof(float));
          nn_conv2d_backward(&g, x, w, dy, with_dx ? dx0 : NULL, dw0, db0, ws);
          nn_conv_geom gg = g;
          gg.gap_dz = 1;
          nn_conv2d_backward_act(&gg, acts[k], x, w, z0, dp, with_dx ? dx1 : NULL, dw1, db1, ws);
          if (with_dx) assert_memory_equal(dx0, dx1, nx * sizeof(float));
          assert_memory_equal(dw0, dw1, nw * sizeof(float));
          assert_memory_equal(db0, db1, g.oc * sizeof(float));
          if (k) continue;
          /* the same without an activation: dz is formed from dp, not read as laid out like z */
          nn_global_avgpool_backward(dp, dy, g.n, g.oc, g.oh * g.ow);
          memset(dw0, 0, nw * sizeof(float)), memset(dw1, 0, nw * sizeof(float));
          memset(db0, 0, g.oc * sizeof(float)), memset(db1, 0, g.oc * sizeof(float));
          nn_conv2d_backward(&g, x, w, dy, with_dx ? dx0 : NULL, dw0, db0, ws);
          nn_conv2d_backward_act(&gg, NN_ACT_NONE, x, w, NULL, dp, with_dx ? dx1 : NULL, dw1, db1, ws);
          if (with_dx) assert_memory_equal(dx0, dx1, nx * sizeof(float));
          assert_memory_equal(dw0, dw1, nw * sizeof(float));
          assert_memory_equal(db0, db1, g.oc * sizeof(float));
        }
        free(x), free(w), free(b), free(dz), free(ws), free(y), free(z0), free(z1), free(dy), free(dp);
        free(dx0), free(dx1), free(dw0), free(dw1), free(db0), free(db1);
      }
}

/* The choice by shape at the AVX2 level: what docs/performance.md measured (direct on the
 * small first layers and LeNet's conv2, Winograd on 3x3 layers with 16+ channels and enough
 * tiles per pass, im2col + GEMM elsewhere); a direct or Winograd request runs only where it
 * applies. The level is capped at AVX2 (an AVX-512 machine's rule: test_conv_algo_wide). */
static void test_conv_algo(void **state) {
  (void)state;
  const nn_cpu_level before = nn_cpu_force(NN_CPU_AVX2);
  nn_conv_geom g = {.n = 128, .c = 1, .h = 28, .w = 28, .oc = 6, .kh = 5, .kw = 5, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_DIRECT); /* LeNet conv1 */
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_DIRECT);
  g = (nn_conv_geom){.n = 32, .c = 3, .h = 32, .w = 32, .oc = 32, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_DIRECT); /* CIFAR conv1: dw by GEMM (32 filters) */
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_IM2COL);
  g = (nn_conv_geom){.n = 32, .c = 32, .h = 15, .w = 15, .oc = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_WINOGRAD); /* CIFAR conv2: Winograd in every pass */
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_WINOGRAD);
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_WINOGRAD);
  g = (nn_conv_geom){.n = 32, .c = 32, .h = 13, .w = 13, .oc = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_WINOGRAD); /* CNN conv2: 11x11 out, 13x13 in */
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_WINOGRAD);
  g = (nn_conv_geom){.n = 32, .c = 128, .h = 6, .w = 6, .oc = 128, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL);          /* 4x4 out: too few tiles for the forward ... */
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_WINOGRAD); /* ... enough for dW */
  g.h = g.w = 5;                                                 /* 3x3 out: not even for dW */
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_IM2COL);
  g = (nn_conv_geom){.n = 32, .c = 64, .h = 8, .w = 8, .oc = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_WINOGRAD); /* 6x6 out */
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_WINOGRAD);
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_IM2COL); /* 8x8 in */
  g.h = g.w = 7;                                             /* 5x5 out: below the forward's size */
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL);
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_WINOGRAD);
  g.h = g.w = 8, g.pad = 1; /* 8x8 out, 8x8 in: still below dx's size */
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_WINOGRAD);
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_IM2COL);
  g.algo = NN_CONV_WINOGRAD; /* asked for: runs where it fits, whatever the size */
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_WINOGRAD);
  g = (nn_conv_geom){.n = 32, .c = 32, .h = 15, .w = 15, .oc = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  g.oc = 40; /* not whole blocks of 16 filters */
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL);
  g.algo = NN_CONV_WINOGRAD; /* asked for where it does not apply: im2col */
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL);
  g = (nn_conv_geom){.n = 32, .c = 8, .h = 15, .w = 15, .oc = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL);      /* 8 channels: a GEMM K too short for Winograd */
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_IM2COL); /* dx: 8 output channels */
  g.algo = NN_CONV_WINOGRAD;
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_WINOGRAD);
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_WINOGRAD);
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_IM2COL); /* 8 channels out of dx: not whole blocks */
  g = (nn_conv_geom){.n = 128, .c = 6, .h = 12, .w = 12, .oc = 16, .kh = 5, .kw = 5, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_DIRECT);        /* LeNet conv2: 150 taps, rows of 8 */
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_DIRECT); /* 16 filters */
  assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_DIRECT);   /* no padding, rows of whole vectors */
  nn_conv_geom q = g;
  q.algo = NN_CONV_IM2COL;
  assert_int_equal(nn_conv2d_algo_data(&q), NN_CONV_IM2COL);
  q = (nn_conv_geom){.n = 8, .c = 6, .h = 12, .w = 12, .oc = 64, .kh = 5, .kw = 5, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&q), 0);
  assert_int_equal(nn_conv2d_algo_data(&q), NN_CONV_IM2COL); /* 64 filters: the GEMM */
  q.algo = NN_CONV_DIRECT;
  assert_int_equal(nn_conv2d_algo_data(&q), NN_CONV_DIRECT); /* asked for, and it applies */
  q.pad = 2;                                                 /* padded: the direct dx does not apply */
  assert_int_equal(nn_conv_geom_init(&q), 0);
  assert_int_equal(nn_conv2d_algo_data(&q), NN_CONV_IM2COL);
  q = (nn_conv_geom){.n = 8, .c = 2, .h = 13, .w = 13, .oc = 4, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&q), 0);
  assert_int_equal(nn_conv2d_algo_data(&q), NN_CONV_IM2COL); /* OW 11: not whole vectors */
  q = (nn_conv_geom){.n = 8, .c = 2, .h = 14, .w = 14, .oc = 4, .kh = 7, .kw = 7, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&q), 0);
  assert_int_equal(nn_conv2d_algo_data(&q), NN_CONV_IM2COL); /* KW 7 > NN_CONV_DIRECT_DX_MAX_KW */
  g.ow = 9;                                                  /* the same taps on rows that are not whole vectors */
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL);
  g.ow = 8;
  g.algo = NN_CONV_DIRECT;
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_DIRECT);
  assert_int_equal(nn_conv2d_algo_params(&g), NN_CONV_DIRECT);
  g = (nn_conv_geom){.n = 2, .c = 1, .h = 9, .w = 9, .oc = 4, .kh = 3, .kw = 3, .stride = 2, .pad = 0, .algo = NN_CONV_DIRECT};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL); /* stride 2: no direct kernel */
  g = (nn_conv_geom){.n = 2, .c = 64, .h = 9, .w = 9, .oc = 4, .kh = 3, .kw = 3, .stride = 1, .pad = 0, .algo = NN_CONV_DIRECT};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo(&g), NN_CONV_IM2COL); /* 576 taps > NN_CONV_DIRECT_MAX_TAPS */
  nn_cpu_force(before);
}

/* The rule for pass p at level v, on a preset's layer */
static nn_conv_algo algo_at(int n, int c, int hw, int oc, int k, nn_conv_pass p, nn_cpu_level v) {
  nn_conv_geom g = {.n = n, .c = c, .h = hw, .w = hw, .oc = oc, .kh = k, .kw = k, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  return nn_conv2d_algo_at(&g, p, v);
}

/* On an AVX-512 machine oneDNN's GEMM runs 16 lanes wide: the forward and dx leave Winograd
 * (the forward only on small outputs where those lanes run in two halves);
 * beyond 25 taps dW leaves the direct kernel unless the build runs it 16 wide, and so does the
 * forward unless its rows are whole vectors or those lanes run in halves; everything else as at
 * AVX2
 * (the levels below AVX-512 share one rule), requests as asked. The scratch sized for the AVX2
 * rule serves the AVX-512 one (it only trades a choice for im2col). */
static void test_conv_algo_wide(void **state) {
  (void)state;
  const nn_conv_pass F = NN_CONV_PASS_FORWARD, P = NN_CONV_PASS_PARAMS, D = NN_CONV_PASS_DATA;
  const nn_cpu_level W = NN_CPU_AVX512, A = NN_CPU_AVX2;
  /* LeNet conv1 (25 taps) and the Keras CNN's conv1 (9): direct as before */
  assert_int_equal(algo_at(128, 1, 28, 6, 5, F, W), NN_CONV_DIRECT);
  assert_int_equal(algo_at(128, 1, 28, 6, 5, P, W), NN_CONV_DIRECT);
  assert_int_equal(algo_at(32, 1, 28, 32, 3, F, W), NN_CONV_DIRECT);
  /* LeNet conv2 (150 taps): dW by GEMM unless the direct kernels run 16 wide too (a build for
   * AVX-512), the direct forward (rows of whole vectors) and dx kept */
  assert_int_equal(algo_at(128, 6, 12, 16, 5, P, A), NN_CONV_DIRECT);
  assert_int_equal(algo_at(128, 6, 12, 16, 5, P, W), NN_BUILD_AVX512 ? NN_CONV_DIRECT : NN_CONV_IM2COL);
  assert_int_equal(algo_at(128, 6, 12, 16, 5, F, W), NN_CONV_DIRECT);
  assert_int_equal(algo_at(128, 6, 12, 16, 5, D, W), NN_CONV_DIRECT);
  /* CIFAR conv1 (27 taps on rows of 30): the forward by GEMM, unless 512-bit FMAs run in
   * halves */
  const int split = nn_cpu_fma512_split();
  assert_int_equal(algo_at(32, 3, 32, 32, 3, F, A), NN_CONV_DIRECT);
  nn_cpu_fma512_split_force(0);
  assert_int_equal(algo_at(32, 3, 32, 32, 3, F, W), NN_CONV_IM2COL);
  nn_cpu_fma512_split_force(1);
  assert_int_equal(algo_at(32, 3, 32, 32, 3, F, W), NN_CONV_DIRECT);
  assert_int_equal(algo_at(32, 3, 32, 32, 3, P, W), NN_CONV_IM2COL); /* dW: 32 filters */
  /* the CNNs' second layers: Winograd for dW only, and for the forward where 512-bit FMAs
   * run in halves (their 11x11 and 13x13 outputs; not an 8x8 one) */
  for (int hw = 13; hw <= 15; hw += 2) {
    nn_cpu_fma512_split_force(0);
    assert_int_equal(algo_at(32, 32, hw, 64, 3, F, W), NN_CONV_IM2COL);
    nn_cpu_fma512_split_force(1);
    assert_int_equal(algo_at(32, 32, hw, 64, 3, F, W), NN_CONV_WINOGRAD);
    assert_int_equal(algo_at(32, 32, 10, 64, 3, F, W), NN_CONV_IM2COL);
    for (int sp = 0; sp < 2; sp++) {
      nn_cpu_fma512_split_force(sp);
      assert_int_equal(algo_at(32, 32, hw, 64, 3, P, W), NN_CONV_WINOGRAD);
      assert_int_equal(algo_at(32, 32, hw, 64, 3, D, W), NN_CONV_IM2COL);
      assert_int_equal(algo_at(32, 32, hw, 64, 3, D, A), NN_CONV_WINOGRAD);
    }
  }
  nn_cpu_fma512_split_force(split);
  /* generic and AVX2 share the rule */
  assert_int_equal(algo_at(32, 32, 15, 64, 3, F, NN_CPU_GENERIC), NN_CONV_WINOGRAD);
  /* requests are kept where they apply */
  nn_conv_geom g = {.n = 32, .c = 32, .h = 15, .w = 15, .oc = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 0, .algo = NN_CONV_WINOGRAD};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo_at(&g, F, W), NN_CONV_WINOGRAD);
  assert_int_equal(nn_conv2d_algo_at(&g, D, W), NN_CONV_WINOGRAD);
  g = (nn_conv_geom){.n = 128, .c = 6, .h = 12, .w = 12, .oc = 16, .kh = 5, .kw = 5, .stride = 1, .pad = 0, .algo = NN_CONV_DIRECT};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(nn_conv2d_algo_at(&g, F, W), NN_CONV_DIRECT);
  assert_int_equal(nn_conv2d_algo_at(&g, P, W), NN_CONV_DIRECT);
  /* the three entry points follow the running level */
  g.algo = NN_CONV_AUTO;
  assert_int_equal(nn_conv2d_algo(&g), nn_conv2d_algo_at(&g, F, nn_cpu_level_get()));
  assert_int_equal(nn_conv2d_algo_params(&g), nn_conv2d_algo_at(&g, P, nn_cpu_level_get()));
  assert_int_equal(nn_conv2d_algo_data(&g), nn_conv2d_algo_at(&g, D, nn_cpu_level_get()));
  /* the scratch does not depend on the level */
  const nn_cpu_level before = nn_cpu_force(NN_CPU_AVX2);
  const size_t ws = nn_conv2d_workspace(&g);
  nn_cpu_force(NN_CPU_AVX512);
  assert_int_equal(nn_conv2d_workspace(&g), ws);
  nn_cpu_force(before);
}

static void test_conv_geom(void **state) {
  (void)state;
  nn_conv_geom g = {.n = 2, .c = 1, .h = 28, .w = 28, .oc = 6, .kh = 5, .kw = 5, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(g.oh, 24);
  assert_int_equal(g.ow, 24);
  g = (nn_conv_geom){.n = 1, .c = 3, .h = 9, .w = 8, .oc = 4, .kh = 3, .kw = 3, .stride = 2, .pad = 1};
  assert_int_equal(nn_conv_geom_init(&g), 0);
  assert_int_equal(g.oh, 5); /* (9 + 2 - 3)/2 + 1 */
  assert_int_equal(g.ow, 4); /* floor((8 + 2 - 3)/2) + 1 */
  g = (nn_conv_geom){.n = 1, .c = 1, .h = 4, .w = 4, .oc = 1, .kh = 5, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), -1); /* kernel taller than the input */
  g = (nn_conv_geom){.n = 1, .c = 1, .h = 4, .w = 4, .oc = 1, .kh = 3, .kw = 3, .stride = 0, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), -1);
  g = (nn_conv_geom){.n = 1, .c = 1, .h = 4, .w = 4, .oc = 1, .kh = 3, .kw = 3, .stride = 1, .pad = -1};
  assert_int_equal(nn_conv_geom_init(&g), -1);
  g = (nn_conv_geom){.n = 1, .c = 0, .h = 4, .w = 4, .oc = 1, .kh = 3, .kw = 3, .stride = 1, .pad = 0};
  assert_int_equal(nn_conv_geom_init(&g), -1);
  /* the workspace never shrinks as the batch grows: one buffer sized for the largest batch
   * serves a smaller last batch */
  for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++) {
    const conv_shape *s = &conv_shapes[i];
    for (int a = NN_CONV_AUTO; a < NN_CONV_ALGO_COUNT; a++) {
      size_t prev = 0;
      for (int n = 1; n <= 300; n++) {
        g = (nn_conv_geom){.n = n, .c = s->c, .h = s->h, .w = s->w, .oc = s->oc, .kh = s->kh, .kw = s->kw, .stride = s->stride, .pad = s->pad, .algo = (nn_conv_algo)a};
        assert_int_equal(nn_conv_geom_init(&g), 0);
        size_t ws = nn_conv2d_workspace(&g);
        if (ws < prev) fail_msg("conv workspace shrinks from %zu to %zu at n=%d (shape %zu, algo %d)", prev, ws, n, i, a);
        prev = ws;
      }
    }
  }
}

/* ---- activations, flatten ------------------------------------------------------------ */

typedef void (*act_fwd)(const float *, float *, size_t);
typedef void (*act_bwd)(const float *, const float *, float *, size_t);
typedef void (*ref_fwd)(const double *, double *, size_t);
typedef void (*ref_bwd)(const double *, const double *, double *, size_t);

static void act_case(tu_rng *r, const char *name, act_fwd f, act_bwd b, ref_fwd rf, ref_bwd rb, size_t n) {
  float *x = tu_fbuf(n), *y = tu_fbuf(n), *dy = tu_fbuf(n), *dx = tu_fbuf(n);
  double *xd = tu_dbuf(n), *yd = tu_dbuf(n), *dyd = tu_dbuf(n), *dxd = tu_dbuf(n), *yk = tu_dbuf(n);
  char what[64];
  tu_fill_pair(r, x, xd, n, -6, 6);
  /* extremes: must stay finite (stable sigmoid) and saturate correctly */
  static const float ext[] = {-1e4f, 1e4f, -100.0f, 100.0f, -88.0f, 88.0f, 0.0f, -20.0f, 20.0f};
  for (size_t i = 0; i < sizeof ext / sizeof ext[0] && i < n; i++) x[i] = ext[i], xd[i] = ext[i];
  tu_fill_pair(r, dy, dyd, n, -1, 1);
  tu_fill_nan(y, n);
  f(x, y, n);
  rf(xd, yd, n);
  snprintf(what, sizeof what, "%s y (n=%zu)", name, n);
  fx_assert_kernel_close(what, y, yd, n);
  /* backward from the kernel's own output, so both sides see the same y */
  tu_to_double(y, yk, n);
  tu_fill_nan(dx, n);
  b(y, dy, dx, n);
  rb(yk, dyd, dxd, n);
  snprintf(what, sizeof what, "%s dx (n=%zu)", name, n);
  fx_assert_kernel_close(what, dx, dxd, n);
  free(x), free(y), free(dy), free(dx), free(xd), free(yd), free(dyd), free(dxd), free(yk);
}

static void test_activations(void **state) {
  (void)state;
  tu_rng r = {0x0F1E2D3C4B5A6978ULL};
  static const size_t sizes[] = {1, 9, 1000, 300001};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    act_case(&r, "relu", nn_relu_forward, nn_relu_backward, nn_ref_relu_forward, nn_ref_relu_backward, sizes[s]);
    act_case(&r, "sigmoid", nn_sigmoid_forward, nn_sigmoid_backward, nn_ref_sigmoid_forward,
             nn_ref_sigmoid_backward, sizes[s]);
    act_case(&r, "tanh", nn_tanh_forward, nn_tanh_backward, nn_ref_tanh_forward, nn_ref_tanh_backward, sizes[s]);
  }
  /* exact values that matter */
  float x[4] = {-1e4f, 1e4f, 0.0f, -3.0f}, y[4];
  nn_sigmoid_forward(x, y, 4);
  assert_true(y[0] == 0.0f && y[1] == 1.0f && y[2] == 0.5f && y[3] > 0.0474f && y[3] < 0.0475f);
  nn_relu_forward(x, y, 4);
  assert_true(y[0] == 0.0f && y[1] == 1e4f && y[2] == 0.0f && y[3] == 0.0f);
  float yy[3] = {0.0f, 2.0f, 0.0f}, dy[3] = {5.0f, 6.0f, 7.0f}, dx[3];
  nn_relu_backward(yy, dy, dx, 3); /* relu'(0) = 0 */
  assert_true(dx[0] == 0.0f && dx[1] == 6.0f && dx[2] == 0.0f);
}

/* sigmoid and tanh use their own vectorized exp: hold them to a few ulp over the whole
 * float range (denormal sigmoid results to an absolute 1e-44), and check the specials */
static void test_activation_accuracy(void **state) {
  (void)state;
  size_t n = 0, cap = 240000;
  float *x = tu_fbuf(cap), *y = tu_fbuf(cap);
  double *xd = tu_dbuf(cap), *yd = tu_dbuf(cap);
  for (int i = -110000; i <= 110000; i++) x[n++] = (float)(i * 1e-3);
  for (int k = -44; k <= 1; k++)
    for (int m = 1; m <= 9; m += 2) x[n++] = (float)(m * pow(10.0, k)), x[n++] = -(float)(m * pow(10.0, k));
  assert_true(n <= cap);
  tu_to_double(x, xd, n);
  nn_sigmoid_forward(x, y, n);
  nn_ref_sigmoid_forward(xd, yd, n);
  fx_assert_close_fd("sigmoid accuracy", y, yd, n, 1e-6, 1e-44);
  nn_tanh_forward(x, y, n);
  nn_ref_tanh_forward(xd, yd, n);
  fx_assert_close_fd("tanh accuracy", y, yd, n, 1e-6, 1e-44);
  float sp[5] = {INFINITY, -INFINITY, NAN, 0.0f, -200.0f}, o[5];
  nn_sigmoid_forward(sp, o, 5);
  assert_true(o[0] == 1.0f && o[1] == 0.0f && isnan(o[2]) && o[3] == 0.5f && o[4] == 0.0f);
  nn_tanh_forward(sp, o, 5);
  assert_true(o[0] == 1.0f && o[1] == -1.0f && isnan(o[2]) && o[3] == 0.0f && o[4] == -1.0f);
  nn_relu_forward(sp, o, 5);
  assert_true(o[0] == INFINITY && o[1] == 0.0f && isnan(o[2]) && o[3] == 0.0f && o[4] == 0.0f);
  free(x), free(y), free(xd), free(yd);
}

/* sigmoid and tanh run their exp stage by stage over blocks of ACT_EXP_BLK values (16 values
 * per vector, four vectors at a time, with a masked tail where the build targets AVX-512):
 * every value must come out as the one-value definition (sigmoid1, tanh1) gives it, bit for
 * bit, at any length (blocks and tails) and in place */
static void test_activation_blocks(void **state) {
  (void)state;
  static const size_t lens[] = {1, 7, ACT_EXP_BLK - 1, ACT_EXP_BLK, ACT_EXP_BLK + 1, 2 * ACT_EXP_BLK + 9, 1000};
  const size_t cap = 1000;
  tu_rng r = {0x5EED5EEDULL};
  float *x = tu_fbuf(cap), *y = tu_fbuf(cap), *q = tu_fbuf(cap);
  for (size_t i = 0; i < cap; i++) x[i] = (float)tu_unif(&r, -120.0, 120.0) * (i % 3 ? 0.05f : 1.0f);
  x[3] = NAN, x[4] = -0.0f, x[5] = INFINITY, x[600] = -INFINITY, x[601] = 0.3f;
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
    const size_t n = lens[k];
    for (int t = 0; t < 2; t++) {
      tu_fill_nan(y, cap);
      memcpy(q, x, n * sizeof *x);
      if (t == 0) nn_sigmoid_forward(x, y, n), nn_sigmoid_forward(q, q, n);
      else nn_tanh_forward(x, y, n), nn_tanh_forward(q, q, n);
      for (size_t i = 0; i < n; i++) {
        const float want = t == 0 ? sigmoid1(x[i]) : tanh1(x[i]);
        if (memcmp(&y[i], &want, sizeof want) || memcmp(&q[i], &want, sizeof want))
          fail_msg("%s(%.9g) at %zu of %zu: %.9g (in place %.9g), one value at a time %.9g", t ? "tanh" : "sigmoid",
                   (double)x[i], i, n, (double)y[i], (double)q[i], (double)want);
      }
    }
  }
  free(x), free(y), free(q);
}

/* sigmoid and tanh over every ACT_SWEEP_STRIDE-th float bit pattern (NaN's skipped): the
 * kernels bitwise the one-value definitions across the exp's whole range, denormal results
 * included (in a build for AVX-512 the kernels run 16 wide, the exp's scale one vscalefps,
 * act_inline.h). Built with -DACT_SWEEP_STRIDE=1 it checks every float (several minutes:
 * 7 on the Xeon of run 21). */
#ifndef ACT_SWEEP_STRIDE
#define ACT_SWEEP_STRIDE 4099u
#endif
static void test_activation_sweep(void **state) {
  (void)state;
  enum { B = 4096 };
  float *x = tu_fbuf(B), *y = tu_fbuf(B);
  size_t n = 0, checked = 0;
  for (uint64_t b = 0; b <= 0xffffffffu; b += ACT_SWEEP_STRIDE) {
    const uint32_t u = (uint32_t)b;
    float v;
    memcpy(&v, &u, sizeof v);
    if (!isnan(v)) x[n++] = v;
    if (n < B && b + ACT_SWEEP_STRIDE <= 0xffffffffu) continue;
    for (int t = 0; t < 2; t++) {
      if (t == 0) nn_sigmoid_forward(x, y, n);
      else nn_tanh_forward(x, y, n);
      for (size_t i = 0; i < n; i++) {
        const float want = t == 0 ? sigmoid1(x[i]) : tanh1(x[i]);
        if (memcmp(&y[i], &want, sizeof want))
          fail_msg("%s(%a): %a, one value at a time %a", t ? "tanh" : "sigmoid", (double)x[i], (double)y[i],
                   (double)want);
      }
    }
    checked += n;
    n = 0;
  }
  assert_true(checked > 0xffffffffu / ACT_SWEEP_STRIDE / 2); /* the sweep ran */
  free(x), free(y);
}

static void test_flatten(void **state) {
  (void)state;
  tu_rng r = {77};
  size_t n = 1237;
  float *x = tu_fbuf(n), *y = tu_fbuf(n), *dx = tu_fbuf(n);
  double *xd = tu_dbuf(n), *yd = tu_dbuf(n), *dxd = tu_dbuf(n);
  tu_fill_pair(&r, x, xd, n, -1, 1);
  tu_fill_nan(y, n);
  nn_flatten_forward(x, y, n);
  nn_ref_flatten_forward(xd, yd, n);
  fx_assert_close_fd("flatten y", y, yd, n, 0.0, 0.0);
  tu_fill_nan(dx, n);
  nn_flatten_backward(y, dx, n);
  nn_ref_flatten_backward(yd, dxd, n);
  fx_assert_close_fd("flatten dx", dx, dxd, n, 0.0, 0.0);
  nn_flatten_forward(x, x, n); /* in place: unchanged */
  fx_assert_close_fd("flatten in place", x, xd, n, 0.0, 0.0);
  free(x), free(y), free(dx), free(xd), free(yd), free(dxd);
}

/* ---- u8_normalize ---------------------------------------------------------------------- */

/* Every byte value, at every length up to 3 vectors and every start offset of the bytes (the
 * vector path's loads are unaligned, its tail scalar), for the transforms the presets use
 * ({0, 1}, Normalize(0.5, 0.5), Fashion-MNIST's and CIFAR-10's channel statistics) and an
 * odd one: bit for bit the one-value formula ((float)b / 255 - mean) / std in float32; the
 * floats past count stay untouched. */
static void test_u8_normalize(void **state) {
  (void)state;
  enum { MAXN = 300 };
  enum { GUARD = 4 };
  static const float norms[][2] = {{0.0f, 1.0f}, {0.5f, 0.5f}, {0.2860f, 0.3530f}, {0.4914f, 0.2470f}, {-3.0f, 1e-3f}};
  uint8_t bytes[MAXN + 8];
  for (int j = 0; j < MAXN + 8; j++) bytes[j] = (uint8_t)(255 - (j * 37) % 256);
  float out[MAXN + GUARD];
  for (size_t q = 0; q < sizeof norms / sizeof norms[0]; q++) {
    const float mean = norms[q][0], std = norms[q][1];
    for (int off = 0; off < 8; off++)
      for (int n = 0; n <= MAXN; n += n < 40 ? 1 : 37) {
        tu_fill_nan(out, MAXN + GUARD);
        nn_u8_normalize(bytes + off, out, (size_t)n, mean, std);
        for (int j = 0; j < n; j++) {
          const float v = (float)bytes[off + j] / 255.0f, want = (v - mean) / std;
          if (memcmp(&out[j], &want, sizeof want))
            fail_msg("u8_normalize mean=%g std=%g off=%d n=%d: out[%d] = %.9g, want %.9g (byte %d)", mean, std, off,
                     n, j, out[j], want, bytes[off + j]);
        }
        for (int j = n; j < n + GUARD; j++)
          if (!isnan(out[j])) fail_msg("u8_normalize off=%d n=%d: out[%d] written past count", off, n, j);
      }
  }
  /* every byte value appears in the first 256 of `bytes` (37 is coprime with 256) */
  uint8_t seen[256] = {0};
  for (int j = 0; j < 256; j++) seen[bytes[j]] = 1;
  for (int b = 0; b < 256; b++) assert_true(seen[b]);
}

/* ---- softmax cross-entropy ------------------------------------------------------------ */

static void smx_case(tu_rng *r, int n, int k, double spread, double offset) {
  size_t nz = (size_t)n * k;
  float *z = tu_fbuf(nz), *p = tu_fbuf(nz), *dz = tu_fbuf(nz);
  double *zd = tu_dbuf(nz), *pd = tu_dbuf(nz), *pk = tu_dbuf(nz), *dzd = tu_dbuf(nz);
  int32_t *lab = malloc((size_t)n * sizeof(int32_t));
  assert_non_null(lab);
  char what[96];
  tu_fill_pair(r, z, zd, nz, offset - spread, offset + spread);
  for (int i = 0; i < n; i++) lab[i] = (int32_t)(tu_rng_next(r) % (uint64_t)k);
  tu_fill_nan(p, nz);
  double loss = nn_softmax_xent_forward(z, lab, p, n, k);
  double want = nn_ref_softmax_xent_forward(zd, lab, pd, n, k);
  snprintf(what, sizeof what, "softmax probs n=%d k=%d spread=%g offset=%g", n, k, spread, offset);
  fx_assert_kernel_close(what, p, pd, nz);
  assert_true(isfinite(loss));
  if (!(fabs(loss - want) <= 1e-4 * fabs(want) + 1e-5 * n))
    fail_msg("softmax loss n=%d k=%d: got %.9g want %.9g", n, k, loss, want);
  for (int i = 0; i < n; i++) { /* rows sum to 1 */
    double s = 0.0;
    for (int j = 0; j < k; j++) s += p[(size_t)i * k + j];
    assert_true(fabs(s - 1.0) < 1e-5);
  }
  tu_to_double(p, pk, nz);
  float scale = 1.0f / (float)n;
  tu_fill_nan(dz, nz);
  nn_softmax_xent_backward(p, lab, dz, n, k, scale);
  nn_ref_softmax_xent_backward(pk, lab, dzd, n, k, (double)scale);
  snprintf(what, sizeof what, "softmax dlogits n=%d k=%d", n, k);
  fx_assert_kernel_close(what, dz, dzd, nz);
  /* in place (dlogits = probs) */
  nn_softmax_xent_backward(p, lab, p, n, k, scale);
  fx_assert_kernel_close("softmax dlogits in place", p, dzd, nz);
  free(z), free(p), free(dz), free(zd), free(pd), free(pk), free(dzd), free(lab);
}

static void test_softmax_xent(void **state) {
  (void)state;
  tu_rng r = {0xDEADBEEFCAFEULL};
  smx_case(&r, 7, 10, 5.0, 0.0);
  smx_case(&r, 128, 10, 3.0, 0.0);
  smx_case(&r, 3, 1, 1.0, 0.0); /* one class: p = 1, loss 0 */
  smx_case(&r, 16, 100, 2.0, 0.0);
  smx_case(&r, 9, 10, 2.0, 1000.0); /* large logits: max subtraction keeps it finite */
  smx_case(&r, 9, 10, 2.0, -1000.0);
  smx_case(&r, 5, 6, 150.0, 0.0); /* tiny probabilities: the loss stays finite */
  /* known value: uniform logits -> loss = log(k) per row */
  float z[8] = {0}, p[8];
  int32_t lab[2] = {0, 3};
  double l = nn_softmax_xent_forward(z, lab, p, 2, 4);
  assert_true(fabs(l - 2.0 * log(4.0)) < 1e-6);
  for (int i = 0; i < 8; i++) assert_true(p[i] == 0.25f);
}

/* ---- thread-count independence ----------------------------------------------------- */

static void run_conv(const nn_conv_geom *g, const float *x, const float *w, const float *b, const float *dy,
                     float *y, float *dx, float *dw, float *db, float *ws) {
  memset(dw, 0, sizeof(float) * (size_t)g->oc * g->c * g->kh * g->kw);
  memset(db, 0, sizeof(float) * (size_t)g->oc);
  nn_conv2d_forward(g, x, w, b, y, ws);
  nn_conv2d_backward(g, x, w, dy, dx, dw, db, ws);
}

/* The direct dx's register blocks of 2 or 4 rows (chosen by nn_cpu_fma512_split where the
 * build has AVX-512; 2 elsewhere) give the same bits: LeNet conv2, odd input channels (a
 * channel outside the AVX-512 pairs), rows that leave a remainder after blocks of 2 and of 4,
 * and a dy plane shorter than the kernel. */
static void test_conv_dx_rows(void **state) {
  (void)state;
  tu_rng r = {0xD0B1E5ULL};
  static const conv_shape shapes[] = {{5, 6, 12, 12, 16, 5, 5, 1, 0},
                                      {3, 3, 11, 12, 7, 5, 5, 1, 0},
                                      {2, 5, 13, 10, 4, 3, 3, 1, 0},
                                      {2, 2, 6, 16, 3, 4, 1, 1, 0}};
  const int saved = nn_cpu_fma512_split();
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const conv_shape *s = &shapes[si];
    nn_conv_geom g = {.n = s->n, .c = s->c, .h = s->h, .w = s->w, .oc = s->oc, .kh = s->kh, .kw = s->kw, .stride = s->stride, .pad = s->pad, .algo = NN_CONV_DIRECT};
    assert_int_equal(nn_conv_geom_init(&g), 0);
    assert_int_equal(nn_conv2d_algo_data(&g), NN_CONV_DIRECT);
    size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.oc * g.c * g.kh * g.kw,
           ny = (size_t)g.n * g.oc * g.oh * g.ow, nws = nn_conv2d_workspace(&g);
    float *x = tu_fbuf(nx), *w = tu_fbuf(nw), *dy = tu_fbuf(ny), *ws = tu_fbuf(nws), *dx[2];
    tu_fill_pair(&r, x, NULL, nx, -1, 1);
    tu_fill_pair(&r, w, NULL, nw, -1, 1);
    tu_fill_pair(&r, dy, NULL, ny, -1, 1);
    for (int split = 0; split < 2; split++) {
      dx[split] = tu_fbuf(nx);
      tu_fill_nan(dx[split], nx);
      nn_cpu_fma512_split_force(split);
      nn_conv2d_backward(&g, x, w, dy, dx[split], NULL, NULL, ws);
    }
    nn_cpu_fma512_split_force(saved);
    assert_memory_equal(dx[0], dx[1], nx * sizeof(float));
    free(x), free(w), free(dy), free(ws), free(dx[0]), free(dx[1]);
  }
}

static void test_thread_independence(void **state) {
  (void)state;
  int saved = omp_get_max_threads();
  tu_rng r = {0x600DF00DULL};
  static const conv_shape shapes[] = {{128, 1, 28, 28, 6, 5, 5, 1, 0},
                                      {128, 6, 12, 12, 16, 5, 5, 1, 0},
                                      {64, 16, 8, 8, 32, 3, 3, 1, 1},
                                      {32, 3, 32, 32, 32, 3, 3, 1, 0},
                                      {32, 3, 32, 32, 32, 3, 3, 1, 1}};
  /* by shape, the third Winograd in every pass (by request: its 8x8 input is below the rule's
   * size for dx), and the last one also direct for dw/db (32 filters split over threads) */
  static const nn_conv_algo algos[] = {NN_CONV_AUTO, NN_CONV_AUTO, NN_CONV_WINOGRAD, NN_CONV_AUTO, NN_CONV_DIRECT};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const conv_shape *s = &shapes[si];
    nn_conv_geom g = {.n = s->n, .c = s->c, .h = s->h, .w = s->w, .oc = s->oc, .kh = s->kh, .kw = s->kw, .stride = s->stride, .pad = s->pad, .algo = algos[si]};
    assert_int_equal(nn_conv_geom_init(&g), 0);
    size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.oc * g.c * g.kh * g.kw,
           ny = (size_t)g.n * g.oc * g.oh * g.ow, nws = nn_conv2d_workspace(&g);
    float *x = tu_fbuf(nx), *w = tu_fbuf(nw), *b = tu_fbuf(g.oc), *dy = tu_fbuf(ny), *ws = tu_fbuf(nws);
    float *y[2], *dx[2], *dw[2], *db[2];
    tu_fill_pair(&r, x, NULL, nx, -1, 1);
    tu_fill_pair(&r, w, NULL, nw, -1, 1);
    tu_fill_pair(&r, b, NULL, g.oc, -1, 1);
    tu_fill_pair(&r, dy, NULL, ny, -1, 1);
    for (int t = 0; t < 2; t++) {
      y[t] = tu_fbuf(ny), dx[t] = tu_fbuf(nx), dw[t] = tu_fbuf(nw), db[t] = tu_fbuf(g.oc);
      omp_set_num_threads(t == 0 ? 1 : 3);
      run_conv(&g, x, w, b, dy, y[t], dx[t], dw[t], db[t], ws);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(y[0], y[1], ny * sizeof(float));
    assert_memory_equal(dx[0], dx[1], nx * sizeof(float));
    assert_memory_equal(dw[0], dw[1], nw * sizeof(float));
    assert_memory_equal(db[0], db[1], (size_t)g.oc * sizeof(float));
    for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dw[t]), free(db[t]);
    free(x), free(w), free(b), free(dy), free(ws);
  }
  /* dense: split by rows (n = 128: y in blocks of 8 rows, or of 32 when w is over 1 MiB), and
   * by columns too when the batch is a few row blocks (y's rows in blocks of 8): the mlp's first
   * layer at batch 32, the cnn's (64 columns in two blocks), a batch of 90 (a last row block of
   * 2 for y, of 26 for dx), of 5 */
  static const int dshapes[][3] = {{128, 256, 120}, {128, 2100, 128}, {32, 784, 128}, {32, 1600, 64}, {90, 300, 70}, {5, 700, 90}};
  for (size_t s = 0; s < sizeof dshapes / sizeof dshapes[0]; s++) {
    int n = dshapes[s][0], in = dshapes[s][1], out = dshapes[s][2];
    float *x = tu_fbuf((size_t)n * in), *w = tu_fbuf((size_t)out * in), *b = tu_fbuf(out), *dy = tu_fbuf((size_t)n * out);
    tu_fill_pair(&r, x, NULL, (size_t)n * in, -1, 1);
    tu_fill_pair(&r, w, NULL, (size_t)out * in, -1, 1);
    tu_fill_pair(&r, b, NULL, out, -1, 1);
    tu_fill_pair(&r, dy, NULL, (size_t)n * out, -1, 1);
    float *y[2], *dx[2], *dw[2], *db[2];
    for (int t = 0; t < 2; t++) {
      y[t] = tu_fbuf((size_t)n * out), dx[t] = tu_fbuf((size_t)n * in), dw[t] = tu_fbuf((size_t)out * in);
      db[t] = tu_fbuf(out);
      memset(dw[t], 0, sizeof(float) * (size_t)out * in);
      memset(db[t], 0, sizeof(float) * (size_t)out);
      omp_set_num_threads(t == 0 ? 1 : 3);
      nn_dense_forward(x, w, b, y[t], n, in, out);
      nn_dense_backward(x, w, dy, dx[t], dw[t], db[t], n, in, out);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(y[0], y[1], sizeof(float) * (size_t)n * out);
    assert_memory_equal(dx[0], dx[1], sizeof(float) * (size_t)n * in);
    assert_memory_equal(dw[0], dw[1], sizeof(float) * (size_t)out * in);
    assert_memory_equal(db[0], db[1], sizeof(float) * (size_t)out);
    for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dw[t]), free(db[t]);
    free(x), free(w), free(b), free(dy);
  }
  /* pooling, split over planes when large (cnn pool1 shape) */
  nn_pool_geom pg = {.n = 64, .c = 16, .h = 26, .w = 26, .size = 2, .stride = 2};
  assert_int_equal(nn_pool_geom_init(&pg), 0);
  size_t px = (size_t)pg.n * pg.c * pg.h * pg.w, py = (size_t)pg.n * pg.c * pg.oh * pg.ow;
  float *pxb = tu_fbuf(px), *pdy = tu_fbuf(py), *pout[2][4];
  int32_t *pam[2];
  tu_fill_pair(&r, pxb, NULL, px, -1, 1);
  tu_fill_pair(&r, pdy, NULL, py, -1, 1);
  for (int t = 0; t < 2; t++) {
    pout[t][0] = tu_fbuf(py), pout[t][1] = tu_fbuf(px), pout[t][2] = tu_fbuf(py), pout[t][3] = tu_fbuf(px);
    pam[t] = malloc(py * sizeof(int32_t));
    assert_non_null(pam[t]);
    omp_set_num_threads(t == 0 ? 1 : 3);
    nn_maxpool2d_forward(&pg, pxb, pout[t][0], pam[t]);
    nn_maxpool2d_backward(&pg, pdy, pam[t], pout[t][1]);
    nn_avgpool2d_forward(&pg, pxb, pout[t][2]);
    nn_avgpool2d_backward(&pg, pdy, pout[t][3]);
  }
  omp_set_num_threads(saved);
  assert_memory_equal(pout[0][0], pout[1][0], py * sizeof(float));
  assert_memory_equal(pam[0], pam[1], py * sizeof(int32_t));
  assert_memory_equal(pout[0][1], pout[1][1], px * sizeof(float));
  assert_memory_equal(pout[0][2], pout[1][2], py * sizeof(float));
  assert_memory_equal(pout[0][3], pout[1][3], px * sizeof(float));
  for (int t = 0; t < 2; t++) free(pout[t][0]), free(pout[t][1]), free(pout[t][2]), free(pout[t][3]), free(pam[t]);
  free(pxb), free(pdy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm),
      cmocka_unit_test(test_gemm_degenerate),
      cmocka_unit_test(test_dense),
      cmocka_unit_test(test_dense_epilogue),
      cmocka_unit_test(test_conv_geom),
      cmocka_unit_test(test_conv2d),
      cmocka_unit_test(test_conv_algo),
      cmocka_unit_test(test_conv_algo_wide),
      cmocka_unit_test(test_conv_act_fused),
      cmocka_unit_test(test_activations),
      cmocka_unit_test(test_activation_accuracy),
      cmocka_unit_test(test_activation_blocks),
      cmocka_unit_test(test_activation_sweep),
      cmocka_unit_test(test_flatten),
      cmocka_unit_test(test_u8_normalize),
      cmocka_unit_test(test_softmax_xent),
      cmocka_unit_test(test_conv_dx_rows),
      cmocka_unit_test(test_thread_independence),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
