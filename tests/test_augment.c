/* Augmentation (src/data/augment.c, seed 001 §13):
 * - nn_augment_parse: valid subsets in any order, every error names the bad item;
 * - nn_augment_batch: deterministic for a seed, different for another seed, finite;
 * - flip: each sample is exactly the input or exactly its mirror (all channels alike), both occur;
 * - rotation: tiny factor ~ identity; exact quarter turns; a bright pixel lands where Keras puts
 *   it; bilinear sampling of a linear ramp is exact inside; uncovered corners are 0;
 * - crop: each sample is the input shifted by some (dx, dy) in [-N, N]^2 with zero fill, and
 *   every offset occurs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "data/augment.h"
#include "fixture.h"
#include "normnet.h"

#define PI 3.14159265358979323846

static float *tu_fbuf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof *p);
  assert_non_null(p);
  return p;
}

static void fill_uniform(float *x, size_t n, uint64_t seed) {
  nn_rng r;
  nn_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static void parse_ok(const char *text, int flip, float rotate, int crop) {
  nn_augment a;
  nn_error err = {0};
  memset(&a, 0x5a, sizeof a);
  if (nn_augment_parse(text, &a, &err) != NN_OK) fail_msg("'%s' rejected: %s", text, err.msg);
  if (a.flip != flip || a.rotate != rotate || a.crop != crop)
    fail_msg("'%s' parsed as flip=%d rotate=%g crop=%d, want %d %g %d", text, a.flip, (double)a.rotate, a.crop, flip,
             (double)rotate, crop);
}

static void parse_bad(const char *text, const char *needle) {
  nn_augment a = {1, 0.25f, 3}, before = a;
  nn_error err = {0};
  nn_status st = nn_augment_parse(text, &a, &err);
  if (st != NN_ERR_ARG) fail_msg("'%s': expected NN_ERR_ARG, got %d (%s)", text, (int)st, err.msg);
  if (!strstr(err.msg, needle)) fail_msg("'%s': message '%s' does not mention '%s'", text, err.msg, needle);
  /* a failed parse leaves the output alone */
  assert_int_equal(a.flip, before.flip);
  assert_true(a.rotate == before.rotate);
  assert_int_equal(a.crop, before.crop);
}

static void test_parse_valid(void **state) {
  (void)state;
  parse_ok("flip", 1, 0.0f, 0);
  parse_ok("rotate=0.1", 0, 0.1f, 0);
  parse_ok("crop=4", 0, 0.0f, 4);
  parse_ok("flip,rotate=0.1,crop=4", 1, 0.1f, 4);
  parse_ok("crop=4,flip", 1, 0.0f, 4);
  parse_ok("rotate=0.05,flip", 1, 0.05f, 0);
  parse_ok(" crop=2 , rotate=0.5 ", 0, 0.5f, 2);
  parse_ok("crop=1", 0, 0.0f, 1);
  parse_ok("crop=64", 0, 0.0f, 64);
  parse_ok("rotate=1e-3", 0, 1e-3f, 0);
  parse_ok("", 0, 0.0f, 0);
  parse_ok("none", 0, 0.0f, 0);
}

static void test_parse_errors(void **state) {
  (void)state;
  parse_bad("zoom", "unknown augmentation 'zoom' (known: flip, rotate=F, crop=N)");
  parse_bad("flip,zoom=0.2", "'zoom=0.2'");
  parse_bad("flip,flip", "'flip' given twice");
  parse_bad("crop=2,rotate=0.1,crop=3", "'crop' given twice");
  parse_bad("flip=1", "'flip=1'");
  parse_bad("rotate", "'rotate'");
  parse_bad("rotate=", "'rotate='");
  parse_bad("rotate=0", "'rotate=0'");
  parse_bad("rotate=-0.1", "'rotate=-0.1'");
  parse_bad("rotate=0.51", "'rotate=0.51'");
  parse_bad("rotate=abc", "'rotate=abc'");
  parse_bad("rotate=0.1x", "'rotate=0.1x'");
  parse_bad("rotate=nan", "'rotate=nan'");
  parse_bad("rotate=inf", "'rotate=inf'");
  parse_bad("crop", "'crop'");
  parse_bad("crop=0", "'crop=0'");
  parse_bad("crop=65", "'crop=65'");
  parse_bad("crop=2.5", "'crop=2.5'");
  parse_bad("crop=-1", "'crop=-1'");
  parse_bad("crop=99999999999999999999", "crop");
  parse_bad("flip,,crop=2", "empty item");
  parse_bad("flip,", "empty item");
  parse_bad(",flip", "empty item");
  parse_bad("Flip", "'Flip'");
  char longitem[200];
  memset(longitem, 'x', sizeof longitem - 1);
  longitem[sizeof longitem - 1] = 0;
  parse_bad(longitem, "too long");
  nn_augment a;
  nn_error err = {0};
  assert_int_equal(nn_augment_parse(NULL, &a, &err), NN_ERR_ARG);
}

/* ---- batch: determinism, no-op, finiteness ------------------------------------------------- */

static void test_deterministic(void **state) {
  (void)state;
  const int n = 16, c = 3, h = 12, w = 15;
  const size_t sz = (size_t)c * h * w, total = (size_t)n * sz;
  nn_augment a = {1, 0.1f, 3};
  float *src = tu_fbuf(total), *x1 = tu_fbuf(total), *x2 = tu_fbuf(total), *x3 = tu_fbuf(total), *scratch = tu_fbuf(sz);
  fill_uniform(src, total, 11);
  memcpy(x1, src, total * sizeof *src);
  memcpy(x2, src, total * sizeof *src);
  memcpy(x3, src, total * sizeof *src);
  nn_rng r1, r2, r3;
  nn_rng_seed(&r1, 7);
  nn_rng_seed(&r2, 7);
  nn_rng_seed(&r3, 8);
  nn_augment_batch(&a, &r1, x1, n, (nn_dims){.c = c, .h = h, .w = w}, scratch);
  nn_augment_batch(&a, &r2, x2, n, (nn_dims){.c = c, .h = h, .w = w}, scratch);
  nn_augment_batch(&a, &r3, x3, n, (nn_dims){.c = c, .h = h, .w = w}, scratch);
  assert_memory_equal(x1, x2, total * sizeof *x1);
  assert_memory_equal(r1.s, r2.s, sizeof r1.s);
  assert_true(memcmp(x1, x3, total * sizeof *x1) != 0);
  assert_true(memcmp(x1, src, total * sizeof *x1) != 0);
  fx_assert_all_finite("x1", x1, total);
  fx_assert_all_finite("x3", x3, total);
  /* samples differ from each other: the transform is drawn per sample */
  int differ = 0;
  for (int i = 1; i < n; i++) differ += memcmp(x1, x1 + (size_t)i * sz, sz * sizeof *x1) != 0;
  assert_true(differ > 0);
  free(src), free(x1), free(x2), free(x3), free(scratch);
}

static void test_noop(void **state) {
  (void)state;
  const int n = 4, c = 2, h = 5, w = 6;
  const size_t total = (size_t)n * c * h * w;
  float *src = tu_fbuf(total), *x = tu_fbuf(total);
  fill_uniform(src, total, 3);
  memcpy(x, src, total * sizeof *x);
  nn_rng r, r0;
  nn_rng_seed(&r, 1);
  r0 = r;
  nn_augment none = {0, 0.0f, 0};
  nn_augment_batch(&none, &r, x, n, (nn_dims){.c = c, .h = h, .w = w}, NULL); /* nothing enabled: no scratch needed */
  nn_augment_batch(NULL, &r, x, n, (nn_dims){.c = c, .h = h, .w = w}, NULL);
  nn_augment all = {1, 0.2f, 2};
  nn_augment_batch(&all, &r, x, 0, (nn_dims){.c = c, .h = h, .w = w}, NULL);
  assert_memory_equal(x, src, total * sizeof *x);
  assert_memory_equal(r.s, r0.s, sizeof r.s); /* and no random draws */
  free(src), free(x);
}

static void test_all_finite_large(void **state) {
  (void)state;
  const int n = 64, c = 3, h = 32, w = 32;
  const size_t sz = (size_t)c * h * w, total = (size_t)n * sz;
  float *x = tu_fbuf(total), *scratch = tu_fbuf(sz);
  for (size_t i = 0; i < total; i++) x[i] = (float)(i % 255) / 255.0f * 4.0f - 2.0f;
  nn_augment a = {1, 0.5f, 8};
  nn_rng r;
  nn_rng_seed(&r, 99);
  for (int rep = 0; rep < 3; rep++) nn_augment_batch(&a, &r, x, n, (nn_dims){.c = c, .h = h, .w = w}, scratch);
  fx_assert_all_finite("x", x, total);
  for (size_t i = 0; i < total; i++)
    if (fabsf(x[i]) > 2.0f + 1e-5f) fail_msg("value %zu = %g leaves the input range", i, (double)x[i]);
  free(x), free(scratch);
}

/* ---- flip ---------------------------------------------------------------------------------- */

static void test_flip(void **state) {
  (void)state;
  const int n = 400, c = 2, h = 3, w = 5;
  const size_t sz = (size_t)c * h * w;
  float img[2 * 3 * 5], mir[2 * 3 * 5];
  for (size_t i = 0; i < sz; i++) img[i] = (float)(i * i % 17) + 0.25f * (float)i; /* asymmetric */
  for (int ch = 0; ch < c; ch++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) mir[(ch * h + y) * w + x] = img[(ch * h + y) * w + (w - 1 - x)];
  assert_true(memcmp(img, mir, sizeof img) != 0);
  /* the helper itself, twice = identity */
  float t[2 * 3 * 5];
  memcpy(t, img, sizeof t);
  nn_augment_flip(t, c, h, w);
  assert_memory_equal(t, mir, sizeof t);
  nn_augment_flip(t, c, h, w);
  assert_memory_equal(t, img, sizeof t);

  float *x = tu_fbuf((size_t)n * sz);
  for (int i = 0; i < n; i++) memcpy(x + (size_t)i * sz, img, sizeof img);
  nn_augment a = {1, 0.0f, 0};
  nn_rng r;
  nn_rng_seed(&r, 5);
  nn_augment_batch(&a, &r, x, n, (nn_dims){.c = c, .h = h, .w = w}, NULL);
  int flipped = 0, kept = 0;
  for (int i = 0; i < n; i++) {
    const float *s = x + (size_t)i * sz;
    if (!memcmp(s, img, sizeof img)) kept++;
    else if (!memcmp(s, mir, sizeof mir)) flipped++;
    else fail_msg("sample %d is neither the image nor its mirror (channels flipped differently?)", i);
  }
  /* p = 0.5: 400 draws, 6 sigma = 60 */
  if (flipped < 140 || kept < 140) fail_msg("flipped %d, kept %d of %d", flipped, kept, n);
  /* odd width: the middle column never moves; even width works too */
  float e[4] = {1, 2, 3, 4}, ew[4] = {4, 3, 2, 1};
  nn_augment_flip(e, 1, 1, 4);
  assert_memory_equal(e, ew, sizeof e);
  free(x);
}

/* ---- rotation ------------------------------------------------------------------------------ */

static void test_rotate_tiny_is_identity(void **state) {
  (void)state;
  const int n = 20, c = 2, h = 16, w = 16;
  const size_t sz = (size_t)c * h * w, total = (size_t)n * sz;
  float *src = tu_fbuf(total), *x = tu_fbuf(total), *scratch = tu_fbuf(sz);
  fill_uniform(src, total, 21);
  memcpy(x, src, total * sizeof *x);
  nn_augment a = {0, 1e-4f, 0}; /* |angle| <= 6.3e-4 rad: < 0.007 px at the corners */
  nn_rng r;
  nn_rng_seed(&r, 4);
  nn_augment_batch(&a, &r, x, n, (nn_dims){.c = c, .h = h, .w = w}, scratch);
  double maxd = 0;
  for (size_t i = 0; i < total; i++) maxd = fmax(maxd, fabs((double)x[i] - (double)src[i]));
  if (maxd > 0.02) fail_msg("tiny rotation changed a value by %g", maxd);
  assert_true(maxd > 0); /* but it did rotate */
  /* angle 0 exactly: bit-identical */
  float *d = tu_fbuf(sz);
  nn_augment_rotate(src, d, c, h, w, 0.0);
  assert_memory_equal(d, src, sz * sizeof *d);
  free(src), free(x), free(scratch), free(d);
}

static void test_rotate_bright_pixel(void **state) {
  (void)state;
  const int h = 5, w = 5;
  float src[25] = {0}, dst[25];
  src[2 * w + 4] = 1.0f; /* (x=4, y=2): middle of the right edge */
  /* +90 degrees (Keras: counter-clockwise): right-middle goes to top-middle (x=2, y=0) */
  nn_augment_rotate(src, dst, 1, h, w, PI / 2);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double want = (x == 2 && y == 0) ? 1.0 : 0.0;
      if (fabs(dst[y * w + x] - want) > 1e-6) fail_msg("+90: pixel (%d,%d) = %g, want %g", x, y, (double)dst[y * w + x], want);
    }
  /* -90 degrees: to bottom-middle (x=2, y=4) */
  nn_augment_rotate(src, dst, 1, h, w, -PI / 2);
  assert_true(fabs(dst[4 * w + 2] - 1.0) < 1e-6);
  /* 180 degrees: to left-middle (x=0, y=2) */
  nn_augment_rotate(src, dst, 1, h, w, PI);
  assert_true(fabs(dst[2 * w + 0] - 1.0) < 1e-6);
  double sum = 0;
  for (int i = 0; i < 25; i++) sum += dst[i];
  assert_true(fabs(sum - 1.0) < 1e-6);
}

static void test_rotate_quarter_turns(void **state) {
  (void)state;
  /* square, even and odd sizes, two channels: +90 is out(x, y) = in(w-1-y, x) */
  for (int sz = 4; sz <= 7; sz += 3) {
    const int c = 2, h = sz, w = sz;
    size_t S = (size_t)h * w;
    float *src = tu_fbuf(c * S), *dst = tu_fbuf(c * S);
    fill_uniform(src, c * S, (uint64_t)sz);
    nn_augment_rotate(src, dst, c, h, w, PI / 2);
    for (int ch = 0; ch < c; ch++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          float want = src[ch * S + (size_t)x * w + (w - 1 - y)];
          float got = dst[ch * S + (size_t)y * w + x];
          if (fabsf(got - want) > 1e-5f) fail_msg("%dx%d +90 ch%d (%d,%d): %g want %g", h, w, ch, x, y, (double)got, (double)want);
        }
    free(src), free(dst);
  }
}

static void test_rotate_linear_ramp(void **state) {
  (void)state;
  /* Bilinear interpolation reproduces a linear function wherever all four neighbours are
   * inside the image: out(x, y) = f(x', y') with (x', y') the documented source point. */
  const int h = 21, w = 25;
  const double angle = 0.37, cs = cos(angle), sn = sin(angle), cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
  float *src = tu_fbuf((size_t)h * w), *dst = tu_fbuf((size_t)h * w);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) src[y * w + x] = (float)(0.3 * x - 0.7 * y + 0.5);
  nn_augment_rotate(src, dst, 1, h, w, angle);
  int inside = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double u = x - cx, v = y - cy;
      double xi = cx + cs * u - sn * v, yi = cy + sn * u + cs * v;
      if (xi < 0 || xi > w - 1 || yi < 0 || yi > h - 1) continue;
      inside++;
      double want = 0.3 * xi - 0.7 * yi + 0.5;
      if (fabs(dst[y * w + x] - want) > 1e-5)
        fail_msg("ramp at (%d,%d): %.8g want %.8g", x, y, (double)dst[y * w + x], want);
    }
  assert_true(inside > h * w / 2);
  free(src), free(dst);
}

static void test_rotate_fill_zero(void **state) {
  (void)state;
  const int h = 16, w = 16;
  float src[256], dst[256];
  for (int i = 0; i < 256; i++) src[i] = 1.0f;
  nn_augment_rotate(src, dst, 1, h, w, PI / 4);
  /* 45 degrees: the corners sample far outside -> exactly the fill value 0 */
  assert_true(dst[0] == 0.0f);
  assert_true(dst[w - 1] == 0.0f);
  assert_true(dst[(h - 1) * w] == 0.0f);
  assert_true(dst[h * w - 1] == 0.0f);
  /* the disc inside stays 1 */
  for (int y = 4; y < 12; y++)
    for (int x = 4; x < 12; x++) assert_true(fabsf(dst[y * w + x] - 1.0f) < 1e-6f);
  /* values between, blended at the edge, stay in [0, 1] */
  for (int i = 0; i < 256; i++) assert_true(dst[i] >= 0.0f && dst[i] <= 1.0f + 1e-6f);
}

static void test_rotate_batch_range(void **state) {
  (void)state;
  /* A single bright pixel at radius 10 on the x axis: its angle after rotation must stay in
   * [-factor*2pi, factor*2pi], and both directions occur. */
  const int n = 300, h = 25, w = 25;
  const size_t sz = (size_t)h * w;
  const float factor = 0.1f;
  float *x = tu_fbuf((size_t)n * sz), *scratch = tu_fbuf(sz);
  memset(x, 0, (size_t)n * sz * sizeof *x);
  for (int i = 0; i < n; i++) x[(size_t)i * sz + 12 * w + 22] = 1.0f; /* (x=22, y=12): center + (10, 0) */
  nn_augment a = {0, factor, 0};
  nn_rng r;
  nn_rng_seed(&r, 77);
  nn_augment_batch(&a, &r, x, n, (nn_dims){.c = 1, .h = h, .w = w}, scratch);
  int pos = 0, neg = 0;
  double maxang = 0;
  for (int i = 0; i < n; i++) {
    const float *s = x + (size_t)i * sz;
    double mx = 0, my = 0, m = 0;
    for (int y = 0; y < h; y++)
      for (int xx = 0; xx < w; xx++) m += s[y * w + xx], mx += s[y * w + xx] * (xx - 12), my += s[y * w + xx] * (y - 12);
    assert_true(m > 0.5);
    /* displayed counter-clockwise = towards negative y (rows grow downwards) */
    double ang = atan2(-my / m, mx / m);
    maxang = fmax(maxang, fabs(ang));
    pos += ang > 0.05, neg += ang < -0.05;
  }
  if (maxang > factor * 2 * PI + 0.06) fail_msg("rotation %g exceeds factor*2pi = %g", maxang, factor * 2 * PI);
  if (maxang < 0.5 * factor * 2 * PI) fail_msg("largest rotation %g: the range is not used", maxang);
  assert_true(pos > 50 && neg > 50);
  free(x), free(scratch);
}

/* ---- crop ---------------------------------------------------------------------------------- */

static void ref_shift(const float *src, float *dst, int c, int h, int w, int dx, int dy) {
  for (int ch = 0; ch < c; ch++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        int sx = x + dx, sy = y + dy;
        dst[(ch * h + y) * w + x] = (sx >= 0 && sx < w && sy >= 0 && sy < h) ? src[(ch * h + sy) * w + sx] : 0.0f;
      }
}

static void test_shift_helper(void **state) {
  (void)state;
  const int c = 2, h = 5, w = 7;
  const size_t sz = (size_t)c * h * w;
  float src[70], got[70], want[70];
  for (size_t i = 0; i < sz; i++) src[i] = (float)i + 1.0f;
  for (int dy = -6; dy <= 6; dy++)
    for (int dx = -8; dx <= 8; dx++) {
      memset(got, 0x7f, sizeof got);
      nn_augment_shift(src, got, c, h, w, dx, dy);
      ref_shift(src, want, c, h, w, dx, dy);
      if (memcmp(got, want, sizeof got)) fail_msg("shift (%d,%d) differs from the reference", dx, dy);
    }
  nn_augment_shift(src, got, c, h, w, 0, 0);
  assert_memory_equal(got, src, sizeof got);
}

static void test_crop(void **state) {
  (void)state;
  const int n = 2000, c = 2, h = 8, w = 8, p = 3, span = 2 * p + 1;
  const size_t sz = (size_t)c * h * w;
  float img[128], cand[128];
  for (size_t i = 0; i < sz; i++) img[i] = 1.0f + (float)i; /* distinct, non-zero */
  float *x = tu_fbuf((size_t)n * sz), *scratch = tu_fbuf(sz);
  for (int i = 0; i < n; i++) memcpy(x + (size_t)i * sz, img, sizeof img);
  nn_augment a = {0, 0.0f, p};
  nn_rng r;
  nn_rng_seed(&r, 123);
  nn_augment_batch(&a, &r, x, n, (nn_dims){.c = c, .h = h, .w = w}, scratch);
  int hist[7][7] = {{0}};
  for (int i = 0; i < n; i++) {
    const float *s = x + (size_t)i * sz;
    int found = 0;
    for (int dy = -p; dy <= p; dy++)
      for (int dx = -p; dx <= p; dx++) {
        ref_shift(img, cand, c, h, w, dx, dy);
        if (!memcmp(s, cand, sizeof cand)) hist[dy + p][dx + p]++, found++;
      }
    if (found != 1) fail_msg("sample %d matches %d shifts in [-%d, %d]^2 (want exactly 1)", i, found, p, p);
  }
  for (int dy = 0; dy < span; dy++)
    for (int dx = 0; dx < span; dx++)
      if (hist[dy][dx] < 10) fail_msg("offset (%d,%d) occurred %d times in %d samples", dx - p, dy - p, hist[dy][dx], n);
  free(x), free(scratch);
}

/* flip then rotate then crop: the order of the documented draws */
static void test_order(void **state) {
  (void)state;
  const int c = 2, h = 9, w = 11;
  const size_t sz = (size_t)c * h * w;
  float *src = tu_fbuf(sz), *x = tu_fbuf(sz), *want = tu_fbuf(sz), *tmp = tu_fbuf(sz), *scratch = tu_fbuf(sz);
  fill_uniform(src, sz, 8);
  for (uint64_t seed = 0; seed < 20; seed++) {
    nn_augment a = {1, 0.2f, 2};
    nn_rng r, q;
    nn_rng_seed(&r, seed);
    q = r;
    memcpy(x, src, sz * sizeof *x);
    nn_augment_batch(&a, &r, x, 1, (nn_dims){.c = c, .h = h, .w = w}, scratch);
    /* replay the draws by hand */
    memcpy(want, src, sz * sizeof *x);
    if (nn_rng_uniform(&q) < 0.5f) nn_augment_flip(want, c, h, w);
    double angle = (2.0 * (double)nn_rng_uniform(&q) - 1.0) * (double)a.rotate * 2 * PI;
    nn_augment_rotate(want, tmp, c, h, w, angle);
    int ox = (int)nn_rng_below(&q, 2 * a.crop + 1), oy = (int)nn_rng_below(&q, 2 * a.crop + 1);
    nn_augment_shift(tmp, want, c, h, w, ox - a.crop, oy - a.crop);
    assert_memory_equal(x, want, sz * sizeof *x);
    assert_memory_equal(r.s, q.s, sizeof r.s);
  }
  free(src), free(x), free(want), free(tmp), free(scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_valid),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_noop),
      cmocka_unit_test(test_all_finite_large),
      cmocka_unit_test(test_flip),
      cmocka_unit_test(test_rotate_tiny_is_identity),
      cmocka_unit_test(test_rotate_bright_pixel),
      cmocka_unit_test(test_rotate_quarter_turns),
      cmocka_unit_test(test_rotate_linear_ramp),
      cmocka_unit_test(test_rotate_fill_zero),
      cmocka_unit_test(test_rotate_batch_range),
      cmocka_unit_test(test_shift_helper),
      cmocka_unit_test(test_crop),
      cmocka_unit_test(test_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
