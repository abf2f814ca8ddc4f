/* nn_image_load: PGM (P5 8/16-bit, P2 with comments) and PNG (gray, gray+alpha, RGB, RGBA,
 * palette, 16-bit, 1-bit, interlaced) written here into a mkdtemp directory; exact pixel
 * values, RGB -> gray (BT.601, rounded), gray -> 3 channels; errors name the file: wrong
 * size, truncated PGM, garbage / truncated PNG, bad magic, missing file; libpng prints
 * nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <png.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "normnet.h"
#include "nn_test.h"

static char dir[256];

static const char *path_of(const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

static const char *write_bytes(const char *name, const void *data, size_t n) {
  const char *p = path_of(name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
  return p;
}

static const char *write_text(const char *name, const char *text) { return write_bytes(name, text, strlen(text)); }

/* Write a PNG: rows of `w` pixels with `spp` samples each (bytes; 16-bit samples as big-endian
 * pairs; 1-bit packed), optional palette. */
static const char *write_png(const char *name, int w, int h, int color_type, int depth, const uint8_t *pixels,
                             size_t rowbytes, const png_color *palette, int npalette, int interlace) {
  const char *p = path_of(name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  assert_non_null(png);
  assert_non_null(info);
  if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing %s", p);
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (palette) png_set_PLTE(png, info, palette, npalette);
  png_bytep rows[64];
  assert_true(h <= 64);
  /* libpng takes non-const rows it only reads; the integer round trip drops const (-Wcast-qual) */
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)(uintptr_t)(pixels + (size_t)y * rowbytes); // NOLINT(performance-no-int-to-ptr)
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
  png_destroy_write_struct(&png, &info);
  assert_int_equal(fclose(f), 0);
  return p;
}

static uint8_t *read_back(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}

static void load_ok(const char *path, int c, int h, int w, uint8_t *out) {
  nn_error err = {0};
  if (nn_image_load(path, (nn_dims){.c = c, .h = h, .w = w}, out, &err)) fail_msg("%s", err.msg);
}

/* Load must fail with `code`, a message naming the file and containing n1/n2, and print
 * nothing: fd 2 goes to a log file during the call. */
static void expect_error(const char *path, int c, int h, int w, nn_status code, const char *n1, const char *n2) {
  uint8_t out[4096];
  nn_error err = {0};
  const char *logp = path_of("stderr.log");
  fflush(stderr);
  int saved = dup(2);
  FILE *lf = fopen(logp, "w");
  assert_true(saved >= 0 && lf);
  assert_int_equal(dup2(fileno(lf), 2), 2);
  nn_status st = nn_image_load(path, (nn_dims){.c = c, .h = h, .w = w}, out, &err);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  fclose(lf);
  struct stat sb;
  assert_int_equal(stat(logp, &sb), 0);
  if (sb.st_size != 0) fail_msg("%s: nn_image_load printed %lld bytes to stderr", path, (long long)sb.st_size);
  if (st != code) fail_msg("%s: status %d (%s), want %d", path, st, err.msg, code);
  if (!strstr(err.msg, path)) fail_msg("message '%s' does not name the file %s", err.msg, path);
  if (n1 && !strstr(err.msg, n1)) fail_msg("message '%s' lacks '%s'", err.msg, n1);
  if (n2 && !strstr(err.msg, n2)) fail_msg("message '%s' lacks '%s'", err.msg, n2);
}

static uint8_t luma(int r, int g, int b) { return (uint8_t)((299 * r + 587 * g + 114 * b + 500) / 1000); }

static int setup(void **state) {
  (void)state;
  const char *t = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/nn_image_XXXXXX", t && *t ? t : "/tmp");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  tu_rmtree(dir);
  return 0;
}

/* ---- PGM ------------------------------------------------------------------------------- */
static void test_pgm_p5(void **state) {
  (void)state;
  const uint8_t px[6] = {0, 7, 128, 200, 254, 255};
  uint8_t file[64];
  const char *hdr = "P5\n# made by test_image\n3 2\n255\n";
  memcpy(file, hdr, strlen(hdr));
  memcpy(file + strlen(hdr), px, 6);
  const char *p = write_bytes("a.pgm", file, strlen(hdr) + 6);
  uint8_t out[18];
  load_ok(p, 1, 2, 3, out);
  assert_memory_equal(out, px, 6);
  load_ok(p, 3, 2, 3, out); /* gray -> 3 planes */
  for (int k = 0; k < 3; k++) assert_memory_equal(out + 6 * k, px, 6);
}

static void test_pgm_p2_comments(void **state) {
  (void)state;
  const char *p = write_text("b.pgm", "P2\n# a comment\n3 # width\n2\n# maxval next\n15\n0 1 2\n# row 2\n 13 14\t15\n");
  uint8_t out[6];
  load_ok(p, 1, 2, 3, out);
  const uint8_t want[6] = {0, 17, 34, 221, 238, 255};
  assert_memory_equal(out, want, 6);
}

static void test_pgm_16bit(void **state) {
  (void)state;
  const unsigned v[4] = {0, 32768, 257 * 100, 65535};
  uint8_t file[64];
  int n = snprintf((char *)file, sizeof file, "P5 2 2 65535\n");
  for (int i = 0; i < 4; i++) file[n + 2 * i] = (uint8_t)(v[i] >> 8), file[n + 2 * i + 1] = (uint8_t)(v[i] & 255);
  const char *p = write_bytes("c.pgm", file, (size_t)n + 8);
  uint8_t out[4];
  load_ok(p, 1, 2, 2, out);
  for (int i = 0; i < 4; i++) assert_int_equal(out[i], lround(v[i] * 255.0 / 65535.0));
  assert_int_equal(out[1], 128);
  assert_int_equal(out[2], 100);

  /* maxval 1000 (two bytes per sample) and ASCII maxval 1000 */
  const unsigned u[4] = {0, 500, 999, 1000};
  n = snprintf((char *)file, sizeof file, "P5\n2 2\n1000\n");
  for (int i = 0; i < 4; i++) file[n + 2 * i] = (uint8_t)(u[i] >> 8), file[n + 2 * i + 1] = (uint8_t)(u[i] & 255);
  p = write_bytes("d.pgm", file, (size_t)n + 8);
  load_ok(p, 1, 2, 2, out);
  const uint8_t want[4] = {0, 128, 255, 255}; /* 127.5 rounds up; 999 -> 254.745 */
  assert_memory_equal(out, want, 4);
  p = write_text("e.pgm", "P2 2 2 1000 0 500 999 1000\n");
  load_ok(p, 1, 2, 2, out);
  assert_memory_equal(out, want, 4);
}

static void test_pgm_errors(void **state) {
  (void)state;
  uint8_t file[64];
  const char *hdr = "P5\n4 3\n255\n";
  memcpy(file, hdr, strlen(hdr));
  memset(file + strlen(hdr), 9, 12);
  const char *p = write_bytes("ok43.pgm", file, strlen(hdr) + 12);
  expect_error(p, 1, 4, 3, NN_ERR_SHAPE, "3x4", "4x3"); /* image 3 high, 4 wide; expects 4x3 */
  expect_error(p, 1, 28, 28, NN_ERR_SHAPE, "3x4", "28x28");
  p = write_bytes("trunc.pgm", file, strlen(hdr) + 7);
  expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "truncated", NULL);
  p = write_text("trunc2.pgm", "P2\n2 2\n255\n1 2 3\n");
  expect_error(p, 1, 2, 2, NN_ERR_FORMAT, "truncated", NULL);
  p = write_text("trunc3.pgm", "P5\n2 2\n");
  expect_error(p, 1, 2, 2, NN_ERR_FORMAT, "truncated", "maxval");
  p = write_text("big.pgm", "P2\n2 1\n100\n5 101\n");
  expect_error(p, 1, 1, 2, NN_ERR_FORMAT, "above maxval", NULL);
  p = write_text("word.pgm", "P2\n2 1\n100\n5 x\n");
  expect_error(p, 1, 1, 2, NN_ERR_FORMAT, "not a number", NULL);
  p = write_text("maxval.pgm", "P5\n2 1\n70000\n");
  expect_error(p, 1, 1, 2, NN_ERR_FORMAT, "maxval", NULL);
  p = write_text("magic.pgm", "P6\n2 1\n255\nabcdef");
  expect_error(p, 1, 1, 2, NN_ERR_FORMAT, "not a PNG or PGM", NULL);
  p = write_text("text.txt", "hello world\n");
  expect_error(p, 1, 1, 2, NN_ERR_FORMAT, "not a PNG or PGM", NULL);
  p = write_bytes("empty.pgm", "", 0);
  expect_error(p, 1, 1, 2, NN_ERR_FORMAT, "empty", NULL);
  expect_error(path_of("does-not-exist.pgm"), 1, 2, 2, NN_ERR_IO, "cannot open", NULL);
  expect_error(dir, 1, 2, 2, NN_ERR_IO, "directory", NULL);
  /* bad arguments */
  uint8_t out[4];
  nn_error err = {0};
  assert_int_equal(nn_image_load(p, (nn_dims){.c = 2, .h = 2, .w = 2}, out, &err), NN_ERR_ARG);
}

/* ---- PNG ------------------------------------------------------------------------------- */
static void test_png_gray(void **state) {
  (void)state;
  const uint8_t px[12] = {0, 1, 2, 3, 60, 70, 80, 90, 250, 251, 254, 255};
  const char *p = write_png("g.png", 4, 3, PNG_COLOR_TYPE_GRAY, 8, px, 4, NULL, 0, 0);
  uint8_t out[36];
  load_ok(p, 1, 3, 4, out);
  assert_memory_equal(out, px, 12);
  load_ok(p, 3, 3, 4, out);
  for (int k = 0; k < 3; k++) assert_memory_equal(out + 12 * k, px, 12);

  /* interlaced (Adam7) gives the same pixels */
  p = write_png("gi.png", 4, 3, PNG_COLOR_TYPE_GRAY, 8, px, 4, NULL, 0, 1);
  load_ok(p, 1, 3, 4, out);
  assert_memory_equal(out, px, 12);

  /* gray + alpha: alpha dropped */
  uint8_t ga[24];
  for (int i = 0; i < 12; i++) ga[2 * i] = px[i], ga[2 * i + 1] = (uint8_t)(17 * i);
  p = write_png("ga.png", 4, 3, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, 8, NULL, 0, 0);
  load_ok(p, 1, 3, 4, out);
  assert_memory_equal(out, px, 12);

  /* 16-bit gray, exact multiples of 257 */
  uint8_t g16[24];
  for (int i = 0; i < 12; i++) {
    unsigned v = 257u * px[i];
    g16[2 * i] = (uint8_t)(v >> 8), g16[2 * i + 1] = (uint8_t)(v & 255);
  }
  p = write_png("g16.png", 4, 3, PNG_COLOR_TYPE_GRAY, 16, g16, 8, NULL, 0, 0);
  load_ok(p, 1, 3, 4, out);
  assert_memory_equal(out, px, 12);

  /* 1-bit gray: 0 -> 0, 1 -> 255 */
  const uint8_t bits[3] = {0xA0, 0x50, 0xF0}; /* rows 1010, 0101, 1111 */
  p = write_png("g1.png", 4, 3, PNG_COLOR_TYPE_GRAY, 1, bits, 1, NULL, 0, 0);
  load_ok(p, 1, 3, 4, out);
  const uint8_t want1[12] = {255, 0, 255, 0, 0, 255, 0, 255, 255, 255, 255, 255};
  assert_memory_equal(out, want1, 12);
}

static const uint8_t rgb[6][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 200, 30}, {255, 255, 255}, {128, 64, 32}};
static const uint8_t rgb_luma[6] = {76, 150, 29, 124, 255, 79};

static void check_rgb(const char *p) {
  uint8_t out[18];
  load_ok(p, 3, 2, 3, out);
  for (int i = 0; i < 6; i++)
    for (int k = 0; k < 3; k++) assert_int_equal(out[k * 6 + i], rgb[i][k]);
  load_ok(p, 1, 2, 3, out);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(out[i], rgb_luma[i]);
    assert_int_equal(out[i], luma(rgb[i][0], rgb[i][1], rgb[i][2]));
  }
}

static void test_png_rgb(void **state) {
  (void)state;
  for (int i = 0; i < 6; i++) /* the hard-coded luma table is BT.601 rounded */
    assert_int_equal(rgb_luma[i], lround(0.299 * rgb[i][0] + 0.587 * rgb[i][1] + 0.114 * rgb[i][2]));
  check_rgb(write_png("rgb.png", 3, 2, PNG_COLOR_TYPE_RGB, 8, &rgb[0][0], 9, NULL, 0, 0));

  uint8_t rgba[24];
  for (int i = 0; i < 6; i++) {
    memcpy(rgba + 4 * i, rgb[i], 3);
    rgba[4 * i + 3] = (uint8_t)(40 * i); /* alpha, incl. fully transparent: dropped */
  }
  check_rgb(write_png("rgba.png", 3, 2, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, 12, NULL, 0, 0));

  uint8_t rgb16[36];
  for (int i = 0; i < 18; i++) rgb16[2 * i] = rgb16[2 * i + 1] = (&rgb[0][0])[i]; /* v * 257 */
  check_rgb(write_png("rgb16.png", 3, 2, PNG_COLOR_TYPE_RGB, 16, rgb16, 18, NULL, 0, 0));

  /* palette, 8-bit and 4-bit indices, entries in reverse order */
  png_color pal[6];
  for (int i = 0; i < 6; i++) pal[5 - i] = (png_color){rgb[i][0], rgb[i][1], rgb[i][2]};
  const uint8_t idx[6] = {5, 4, 3, 2, 1, 0};
  check_rgb(write_png("pal8.png", 3, 2, PNG_COLOR_TYPE_PALETTE, 8, idx, 3, pal, 6, 0));
  const uint8_t idx4[4] = {0x54, 0x30, 0x21, 0x00}; /* rows {5,4,3} {2,1,0}, 2 bytes per row */
  check_rgb(write_png("pal4.png", 3, 2, PNG_COLOR_TYPE_PALETTE, 4, idx4, 2, pal, 6, 0));
}

static void test_png_errors(void **state) {
  (void)state;
  const uint8_t px[12] = {0};
  const char *good = write_png("z.png", 4, 3, PNG_COLOR_TYPE_GRAY, 8, px, 4, NULL, 0, 0);
  expect_error(good, 1, 4, 3, NN_ERR_SHAPE, "3x4", "4x3");
  expect_error(good, 3, 28, 28, NN_ERR_SHAPE, "3x4", "28x28");

  size_t n;
  uint8_t *b = read_back(good, &n);
  const char *p = write_bytes("trunc.png", b, n / 2);
  expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "bad PNG", NULL);
  p = write_bytes("sig-only.png", b, 8);
  expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "bad PNG", NULL);
  uint8_t *bad = malloc(n);
  assert_non_null(bad);
  memcpy(bad, b, n);
  bad[20] ^= 0x55; /* inside IHDR: CRC error */
  p = write_bytes("crc.png", bad, n);
  expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "bad PNG", NULL);
  memcpy(bad, b, n);
  for (size_t i = 45; i < n - 12; i++) bad[i] = (uint8_t)(i * 37); /* garbage inside IDAT */
  p = write_bytes("idat.png", bad, n);
  expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "bad PNG", NULL);
  uint8_t garbage[200];
  memcpy(garbage, b, 8);
  for (int i = 8; i < 200; i++) garbage[i] = (uint8_t)(i * 91 + 7);
  p = write_bytes("garbage.png", garbage, sizeof garbage);
  expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "bad PNG", NULL);
  free(bad);
  free(b);

  expect_error(path_of("missing.png"), 1, 3, 4, NN_ERR_IO, "cannot open", NULL);
}

/* A PNG chunk: length, type, data, CRC of type and data. */
static size_t put_chunk(uint8_t *o, const char *type, const uint8_t *data, size_t len) {
  for (int i = 0; i < 4; i++) o[i] = (uint8_t)(len >> (24 - 8 * i));
  memcpy(o + 4, type, 4);
  if (len) memcpy(o + 8, data, len);
  uLong crc = crc32(crc32(0L, Z_NULL, 0), o + 4, (uInt)(len + 4));
  for (int i = 0; i < 4; i++) o[8 + len + i] = (uint8_t)(crc >> (24 - 8 * i));
  return 12 + len;
}

/* A 4x3 image whose compressed data goes on past its rows (200 KB more; a decoder inflates
 * all of it to check the stream's end: gigabytes of zeros in a 1 GiB file cost minutes) is
 * refused; the same rows stored uncompressed are read. */
static void test_png_data_past_image(void **state) {
  (void)state;
  const size_t extra = 200 << 10, raw = 3 * (1 + 4);
  uint8_t *rows = calloc(1, raw + extra), *z = malloc(compressBound(raw + extra)), *file = malloc(compressBound(raw + extra) + 64);
  assert_non_null(rows);
  assert_non_null(z);
  assert_non_null(file);
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 4; x++) rows[y * 5 + 1 + x] = (uint8_t)(40 * y + x);
  for (size_t i = raw; i < raw + extra; i++) rows[i] = (uint8_t)((i * 2654435761u) >> 13); /* hardly compressible */
  const uint8_t ihdr[13] = {0, 0, 0, 4, 0, 0, 0, 3, 8, 0, 0, 0, 0};
  for (int past = 0; past < 2; past++) {
    uLongf zl = compressBound(raw + extra);
    assert_int_equal(compress2(z, &zl, rows, past ? raw + extra : raw, 0), Z_OK);
    size_t n = 8;
    memcpy(file, "\x89PNG\r\n\x1a\n", 8);
    n += put_chunk(file + n, "IHDR", ihdr, sizeof ihdr);
    n += put_chunk(file + n, "IDAT", z, zl);
    n += put_chunk(file + n, "IEND", NULL, 0);
    const char *p = write_bytes(past ? "past.png" : "stored.png", file, n);
    if (past) {
      expect_error(p, 1, 3, 4, NN_ERR_FORMAT, "bad PNG", "data past the image");
    } else {
      uint8_t px[12];
      nn_error err = {0};
      if (nn_image_load(p, (nn_dims){.c = 1, .h = 3, .w = 4}, px, &err)) fail_msg("%s", err.msg);
      assert_int_equal(px[11], 40 * 2 + 3);
    }
  }
  free(rows), free(z), free(file);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pgm_p5),
      cmocka_unit_test(test_pgm_p2_comments),
      cmocka_unit_test(test_pgm_16bit),
      cmocka_unit_test(test_pgm_errors),
      cmocka_unit_test(test_png_gray),
      cmocka_unit_test(test_png_rgb),
      cmocka_unit_test(test_png_data_past_image),
      cmocka_unit_test(test_png_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
