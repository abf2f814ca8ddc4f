/* Pooling kernels (max, average, global average) vs their double-precision reference twins
 * (src/kernels/reference.c), max-pool ties and NaN propagation.
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
#include "kernels/kernels.h"
#include "nn_test.h"

/* ---- pooling ------------------------------------------------------------------------ */

typedef struct {
  int n, c, h, w, size, stride;
} pool_shape;

static const pool_shape pool_shapes[] = {
    {2, 3, 24, 24, 2, 2},   /* 2x2 stride 2 */
    {3, 2, 7, 9, 2, 2},     /* odd sizes: floor drops the last row/column */
    {2, 2, 7, 7, 3, 2},     /* overlapping windows */
    {1, 1, 5, 6, 3, 1},     /* stride 1, batch 1 */
    {2, 3, 8, 7, 3, 3},     /* stride 3, floor on the width */
    {2, 1, 4, 4, 4, 1},     /* window = input */
    {128, 6, 24, 24, 2, 2}, /* LeNet pool1 at batch 128 (threaded) */
    {128, 16, 8, 8, 2, 2},  /* LeNet pool2 */
    {64, 8, 13, 11, 3, 2},  /* threaded, overlapping, odd */
    /* 2x2 stride 2 rows of >= 8 outputs (8-wide steps, the last one moved back to end at OW):
     * 13 (cnn pool1), 15 (cifar-cnn pool1), 9 with an odd leftover row and column, exactly 8
     * with a leftover column, 5 (cnn pool2, below 8) */
    {2, 3, 26, 26, 2, 2},
    {2, 2, 30, 30, 2, 2},
    {2, 2, 21, 19, 2, 2},
    {3, 2, 16, 17, 2, 2},
    {3, 2, 11, 11, 2, 2},
    /* rows of 18 with an odd leftover column (steps at 0, 8 and 10), exactly 32, and 1 */
    {2, 2, 6, 37, 2, 2},
    {1, 2, 4, 64, 2, 2},
    {2, 3, 5, 3, 2, 2},
    /* AVX-512 backward rows of 5..8 outputs in one vector: 6 with no leftover column, 7 with
     * one (the store covers it); 11x11 and 16x17 above */
    {2, 2, 12, 12, 2, 2},
    {2, 2, 14, 15, 2, 2},
};

static void pool_case(tu_rng *r, const pool_shape *s) {
  nn_pool_geom g = {.n = s->n, .c = s->c, .h = s->h, .w = s->w, .size = s->size, .stride = s->stride};
  assert_int_equal(nn_pool_geom_init(&g), 0);
  assert_int_equal(g.oh, (s->h - s->size) / s->stride + 1);
  assert_int_equal(g.ow, (s->w - s->size) / s->stride + 1);
  size_t nx = (size_t)g.n * g.c * g.h * g.w, ny = (size_t)g.n * g.c * g.oh * g.ow;
  float *x = tu_fbuf(nx), *y = tu_fbuf(ny), *dy = tu_fbuf(ny), *dx = tu_fbuf(nx);
  int32_t *am = malloc(ny * sizeof(int32_t));
  assert_non_null(am);
  double *xd = tu_dbuf(nx), *yd = tu_dbuf(ny), *dyd = tu_dbuf(ny), *dxd = tu_dbuf(nx);
  char what[96], tag[64];
  snprintf(tag, sizeof tag, "n%d c%d %dx%d k%d s%d", g.n, g.c, g.h, g.w, g.size, g.stride);
  tu_fill_pair(r, x, xd, nx, -1, 1);
  tu_fill_pair(r, dy, dyd, ny, -1, 1);

  tu_fill_nan(y, ny);
  nn_maxpool2d_forward(&g, x, y, am);
  nn_ref_maxpool2d_forward(&g, xd, yd);
  snprintf(what, sizeof what, "maxpool y %s", tag);
  fx_assert_close_fd(what, y, yd, ny, 0.0, 0.0); /* a max is exact */
  size_t plane = (size_t)g.h * g.w, oplane = (size_t)g.oh * g.ow;
  for (size_t i = 0; i < ny; i++) {
    size_t p = i / oplane;
    int oh = (int)(i % oplane) / g.ow, ow = (int)(i % oplane) % g.ow;
    int a = am[i], ih = a / g.w, iw = a % g.w;
    assert_true(a >= 0 && (size_t)a < plane);
    assert_true(ih >= oh * g.stride && ih < oh * g.stride + g.size);
    assert_true(iw >= ow * g.stride && iw < ow * g.stride + g.size);
    assert_true(x[p * plane + (size_t)a] == y[i]);
  }
  tu_fill_nan(dx, nx);
  nn_maxpool2d_backward(&g, dy, am, dx);
  nn_ref_maxpool2d_backward(&g, xd, dyd, dxd);
  snprintf(what, sizeof what, "maxpool dx %s", tag);
  fx_assert_kernel_close(what, dx, dxd, nx);

  tu_fill_nan(y, ny);
  nn_avgpool2d_forward(&g, x, y);
  nn_ref_avgpool2d_forward(&g, xd, yd);
  snprintf(what, sizeof what, "avgpool y %s", tag);
  fx_assert_kernel_close(what, y, yd, ny);
  tu_fill_nan(dx, nx);
  nn_avgpool2d_backward(&g, dy, dx);
  nn_ref_avgpool2d_backward(&g, dyd, dxd);
  snprintf(what, sizeof what, "avgpool dx %s", tag);
  fx_assert_kernel_close(what, dx, dxd, nx);

  free(x), free(y), free(dy), free(dx), free(am), free(xd), free(yd), free(dyd), free(dxd);
}

static void test_pool(void **state) {
  (void)state;
  tu_rng r = {0xABCDEF0102030405ULL};
  for (size_t i = 0; i < sizeof pool_shapes / sizeof pool_shapes[0]; i++) pool_case(&r, &pool_shapes[i]);
}

static void test_maxpool_ties_and_nan(void **state) {
  (void)state;
  /* one 4x4 plane, 2x2 windows stride 2 and 3x3 windows stride 1 */
  float x[16] = {1, 5, 5, 2, /* window (0,0): 5 at 1 and 4 -> 1; window (0,1): 5 at 2 and 6 -> 2 */
                 5, 0, 5, 2,
                 3, 3, 7, NAN, /* window (1,1): NaN wins over the later 7 */
                 3, 3, 1, 7};
  nn_pool_geom g = {.n = 1, .c = 1, .h = 4, .w = 4, .size = 2, .stride = 2};
  assert_int_equal(nn_pool_geom_init(&g), 0);
  float y[4];
  int32_t am[4];
  nn_maxpool2d_forward(&g, x, y, am);
  assert_int_equal(am[0], 1);
  assert_int_equal(am[1], 2);
  assert_int_equal(am[2], 8); /* all 3s: first */
  assert_int_equal(am[3], 11);
  assert_true(y[0] == 5.0f && y[1] == 5.0f && y[2] == 3.0f && isnan(y[3]));
  /* generic path (3x3 stride 1) keeps the same rules */
  nn_pool_geom g3 = {.n = 1, .c = 1, .h = 4, .w = 4, .size = 3, .stride = 1};
  assert_int_equal(nn_pool_geom_init(&g3), 0);
  nn_maxpool2d_forward(&g3, x, y, am);
  assert_int_equal(am[0], 10); /* 7 at (2,2) */
  assert_true(isnan(y[1]) && am[1] == 11);
  assert_int_equal(am[2], 10);
  assert_true(isnan(y[3]) && am[3] == 11);
  /* backward with overlapping windows accumulates into the shared argmax */
  float dy[4] = {1, 2, 4, 8}, dx[16];
  nn_maxpool2d_backward(&g3, dy, am, dx);
  for (int i = 0; i < 16; i++) {
    float want = (i == 10) ? 1 + 4 : (i == 11) ? 2
                                               : 0;
    if (i == am[3]) want += 8;
    assert_true(dx[i] == want);
  }
  /* invalid geometries */
  nn_pool_geom bad = {.n = 1, .c = 1, .h = 3, .w = 5, .size = 4, .stride = 1};
  assert_int_equal(nn_pool_geom_init(&bad), -1);
  bad = (nn_pool_geom){.n = 1, .c = 1, .h = 5, .w = 5, .size = 2, .stride = 0};
  assert_int_equal(nn_pool_geom_init(&bad), -1);
}

/* the tie and NaN rules on rows long enough for the vector path: values from {0, 1, NaN}
 * make ties and NaNs frequent; the expected argmax follows the rule in window order
 * (top-left, top-right, bottom-left, bottom-right) */
static void test_maxpool_ties_vector_rows(void **state) {
  (void)state;
  tu_rng r = {0x7135A11ULL};
  /* 18 outputs per row (8-wide steps; AVX-512: 16 + 2), 5 (4-wide; AVX-512: 16 wide), 4 (4-wide
   * on every vector build), 2 (one window at a time) */
  static const int widths[] = {37, 11, 9, 5};
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
    nn_pool_geom g = {.n = 3, .c = 2, .h = 6, .w = widths[wi], .size = 2, .stride = 2};
    assert_int_equal(nn_pool_geom_init(&g), 0);
    size_t nx = (size_t)g.n * g.c * g.h * g.w, ny = (size_t)g.n * g.c * g.oh * g.ow;
    float *x = tu_fbuf(nx), *y = tu_fbuf(ny), *dy = tu_fbuf(ny), *dx = tu_fbuf(nx);
    int32_t *am = malloc(ny * sizeof(int32_t));
    assert_non_null(am);
    for (size_t i = 0; i < nx; i++) {
      uint64_t v = tu_rng_next(&r) % 7;
      x[i] = v == 0 ? NAN : v < 4 ? 0.0f
                                  : 1.0f;
    }
    tu_fill_pair(&r, dy, NULL, ny, -1, 1);
    nn_maxpool2d_forward(&g, x, y, am);
    nn_maxpool2d_backward(&g, dy, am, dx);
    for (int p = 0; p < g.n * g.c; p++) {
      const float *xp = x + (size_t)p * g.h * g.w;
      for (int oh = 0; oh < g.oh; oh++) {
        for (int ow = 0; ow < g.ow; ow++) {
          int base = 2 * oh * g.w + 2 * ow, cand[4] = {base, base + 1, base + g.w, base + g.w + 1}, bi = base;
          for (int k = 1; k < 4; k++) {
            float v = xp[cand[k]], b = xp[bi];
            if (v > b || (isnan(v) && !isnan(b))) bi = cand[k];
          }
          size_t o = (size_t)p * g.oh * g.ow + (size_t)oh * g.ow + ow;
          if (am[o] != bi) fail_msg("maxpool argmax at plane %d (%d,%d): %d, want %d", p, oh, ow, am[o], bi);
          assert_memory_equal(&y[o], &xp[bi], sizeof(float));
          assert_true(dx[(size_t)p * g.h * g.w + (size_t)bi] == dy[o]);
        }
      }
      /* the leftover last column gets no gradient */
      for (int ih = 0; ih < g.h; ih++) assert_true(dx[(size_t)p * g.h * g.w + (size_t)ih * g.w + g.w - 1] == 0.0f);
    }
    free(x), free(y), free(dy), free(dx), free(am);
  }
}

static void test_global_avgpool(void **state) {
  (void)state;
  tu_rng r = {0x5555AAAA3333CCCCULL};
  static const int shapes[][3] = {{2, 3, 1}, {4, 5, 49}, {1, 7, 3}, {128, 64, 64}, {3, 2, 1037}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int n = shapes[s][0], c = shapes[s][1], sp = shapes[s][2];
    size_t nx = (size_t)n * c * sp, ny = (size_t)n * c;
    float *x = tu_fbuf(nx), *y = tu_fbuf(ny), *dy = tu_fbuf(ny), *dx = tu_fbuf(nx);
    double *xd = tu_dbuf(nx), *yd = tu_dbuf(ny), *dyd = tu_dbuf(ny), *dxd = tu_dbuf(nx);
    tu_fill_pair(&r, x, xd, nx, -1, 1);
    tu_fill_pair(&r, dy, dyd, ny, -1, 1);
    tu_fill_nan(y, ny);
    nn_global_avgpool_forward(x, y, n, c, sp);
    nn_ref_global_avgpool_forward(xd, yd, n, c, sp);
    fx_assert_kernel_close("global avgpool y", y, yd, ny);
    tu_fill_nan(dx, nx);
    nn_global_avgpool_backward(dy, dx, n, c, sp);
    nn_ref_global_avgpool_backward(dyd, dxd, n, c, sp);
    fx_assert_kernel_close("global avgpool dx", dx, dxd, nx);
    free(x), free(y), free(dy), free(dx), free(xd), free(yd), free(dyd), free(dxd);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool),
      cmocka_unit_test(test_maxpool_ties_and_nan),
      cmocka_unit_test(test_maxpool_ties_vector_rows),
      cmocka_unit_test(test_global_avgpool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
