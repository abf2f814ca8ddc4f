/* Data sets: the IDX reader (raw and gzip) and its error messages, split, the uint8 -> float
 * batch conversion, and the real Fashion-MNIST. The CIFAR-10 reader is in test_data_cifar.c.
 * Small files are written to a fresh mkdtemp dir. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "cli_run.h"
#include "nn_test.h"

#include "normnet.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- IDX file helpers ------------------------------------------------------------------ */

/* Write size bytes to path, gzip-compressed if gz. */
static void write_file(const char *path, int gz, const uint8_t *data, size_t size) {
  if (!gz) {
    tu_write_file(path, data, size);
    return;
  }
  gzFile f = gzopen(path, "wb");
  assert_non_null(f);
  if (size) assert_int_equal(gzwrite(f, data, (unsigned)size), (int)size);
  assert_int_equal(gzclose(f), Z_OK);
}

/* An IDX file: magic, dims, then data_len bytes of data. Caller frees. */
static uint8_t *idx_build(uint32_t magic, int ndims, const uint32_t *dims, const uint8_t *data,
                          size_t data_len, size_t *len) {
  *len = 4 + 4 * (size_t)ndims + data_len;
  uint8_t *b = malloc(*len);
  assert_non_null(b);
  tu_put_be32(b, magic);
  for (int k = 0; k < ndims; k++) tu_put_be32(b + 4 + 4 * k, dims[k]);
  if (data_len) memcpy(b + 4 + 4 * (size_t)ndims, data, data_len);
  return b;
}

/* Test images: N=4, 2x3, pixel(i, j) = (i*37 + j*11 + 5) & 255. */
enum { TN = 4,
       TH = 2,
       TW = 3,
       TS = TH * TW };
static const uint8_t test_labels[TN] = {3, 9, 0, 7};
static uint8_t pix(int i, int j) { return (uint8_t)((i * 37 + j * 11 + 5) & 255); }

/* Write images (n of them, with extra trailing bytes or `cut` bytes missing) to dir/name. */
static void write_images(const char *path, int gz, uint32_t magic, uint32_t n_header, int n_data,
                         int extra, int cut) {
  uint8_t data[64];
  size_t len = 0;
  for (int i = 0; i < n_data; i++)
    for (int j = 0; j < TS; j++) data[len++] = pix(i, j);
  for (int k = 0; k < extra; k++) data[len++] = 0xAB;
  len -= (size_t)cut;
  uint32_t dims[3] = {n_header, TH, TW};
  size_t flen;
  uint8_t *b = idx_build(magic, 3, dims, data, len, &flen);
  write_file(path, gz, b, flen);
  free(b);
}

static void write_labels(const char *path, int gz, const uint8_t *labels, int n) {
  uint32_t dims[1] = {(uint32_t)n};
  size_t flen;
  uint8_t *b = idx_build(0x00000801u, 1, dims, labels, (size_t)n, &flen);
  write_file(path, gz, b, flen);
  free(b);
}

static void check_test_set(const nn_dataset *ds) {
  assert_non_null(ds);
  assert_int_equal(nn_dataset_count(ds), TN);
  nn_dims d = nn_dataset_shape(ds);
  assert_int_equal(d.c, 1);
  assert_int_equal(d.h, TH);
  assert_int_equal(d.w, TW);
  assert_int_equal(nn_dataset_num_classes(ds), 10);
  for (int i = 0; i < TN; i++) {
    assert_int_equal(nn_dataset_label(ds, i), test_labels[i]);
    const uint8_t *im = nn_dataset_image(ds, i);
    for (int j = 0; j < TS; j++) assert_int_equal(im[j], pix(i, j));
  }
  /* A specific pixel: image 2, row 1, column 2 -> j = 5 -> (74 + 55 + 5) = 134. */
  assert_int_equal(nn_dataset_image(ds, 2)[1 * TW + 2], 134);
}

/* ---- IDX: valid files ------------------------------------------------------------------ */

static void idx_valid(const char *dir, int gz) {
  char ip[1024], lp[1024];
  tu_join(ip, dir, gz ? "img.gz" : "img");
  tu_join(lp, dir, gz ? "lab.gz" : "lab");
  write_images(ip, gz, 0x00000803u, TN, TN, 0, 0);
  write_labels(lp, gz, test_labels, TN);
  if (gz) { /* really compressed: the gzip magic is on disk */
    size_t n;
    uint8_t *raw = tu_read_file(ip, &n);
    assert_true(n >= 2 && raw[0] == 0x1f && raw[1] == 0x8b);
    free(raw);
  }
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  if (st) fail_msg("load failed: %s", err.msg);
  check_test_set(ds);
  nn_dataset_free(ds);
}

static void test_idx_valid_raw(void **state) { idx_valid(*state, 0); }
static void test_idx_valid_gz(void **state) { idx_valid(*state, 1); }

static void test_idx_dir(void **state) {
  const char *dir = *state;
  char p[1024];
  write_images(tu_join(p, dir, "train-images-idx3-ubyte.gz"), 1, 0x803, TN, TN, 0, 0);
  write_labels(tu_join(p, dir, "train-labels-idx1-ubyte.gz"), 1, test_labels, TN);
  /* t10k: raw, 2 images */
  write_images(tu_join(p, dir, "t10k-images-idx3-ubyte"), 0, 0x803, 2, 2, 0, 0);
  write_labels(tu_join(p, dir, "t10k-labels-idx1-ubyte"), 0, test_labels, 2);
  /* the "PREFIX-images.idx3-ubyte" spelling */
  write_images(tu_join(p, dir, "va-images.idx3-ubyte"), 0, 0x803, 3, 3, 0, 0);
  write_labels(tu_join(p, dir, "va-labels.idx1-ubyte"), 0, test_labels, 3);
  /* raw and .gz both present: the raw file wins (the .gz one here is malformed) */
  write_images(tu_join(p, dir, "both-images-idx3-ubyte"), 0, 0x803, TN, TN, 0, 0);
  write_images(tu_join(p, dir, "both-images-idx3-ubyte.gz"), 1, 0x801, TN, TN, 0, 0);
  write_labels(tu_join(p, dir, "both-labels-idx1-ubyte"), 0, test_labels, TN);

  nn_error err = {0};
  nn_dataset *ds = NULL;
  if (nn_dataset_load_idx_dir(dir, "train", &ds, &err)) fail_msg("train: %s", err.msg);
  check_test_set(ds);
  nn_dataset_free(ds);
  ds = NULL;
  if (nn_dataset_load_idx_dir(dir, "t10k", &ds, &err)) fail_msg("t10k: %s", err.msg);
  assert_int_equal(nn_dataset_count(ds), 2);
  assert_int_equal(nn_dataset_label(ds, 1), test_labels[1]);
  assert_int_equal(nn_dataset_image(ds, 1)[4], pix(1, 4));
  nn_dataset_free(ds);
  ds = NULL;
  if (nn_dataset_load_idx_dir(dir, "va", &ds, &err)) fail_msg("va: %s", err.msg);
  assert_int_equal(nn_dataset_count(ds), 3);
  assert_int_equal(nn_dataset_label(ds, 2), test_labels[2]);
  nn_dataset_free(ds);
  ds = NULL;
  if (nn_dataset_load_idx_dir(dir, "both", &ds, &err)) fail_msg("both: %s", err.msg);
  check_test_set(ds);
  nn_dataset_free(ds);
  ds = NULL;
  /* a trailing slash on the directory is fine */
  char slash[1024];
  snprintf(slash, sizeof slash, "%s/", dir);
  if (nn_dataset_load_idx_dir(slash, "t10k", &ds, &err)) fail_msg("dir/: %s", err.msg);
  assert_int_equal(nn_dataset_count(ds), 2);
  nn_dataset_free(ds);
}

/* ---- IDX: bad inputs -------------------------------------------------------------------- */

static void truncated(const char *dir, int gz) {
  char ip[1024], lp[1024];
  const char *iname = gz ? "short-images-idx3-ubyte.gz" : "short-images-idx3-ubyte";
  tu_join(ip, dir, iname);
  tu_join(lp, dir, "labels");
  write_images(ip, gz, 0x803, TN, TN, 0, 5); /* 24 data bytes expected, 19 present */
  write_labels(lp, 0, test_labels, TN);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, iname, "truncated");
  if (!strstr(err.msg, "24") || !strstr(err.msg, "19"))
    fail_msg("message lacks expected/actual byte counts: %s", err.msg);
}
static void test_idx_truncated_raw(void **state) { truncated(*state, 0); }
static void test_idx_truncated_gz(void **state) { truncated(*state, 1); }

static void test_idx_trailing(void **state) {
  char ip[1024], lp[1024];
  tu_join(ip, *state, "trail-images-idx3-ubyte.gz");
  tu_join(lp, *state, "labels");
  write_images(ip, 1, 0x803, TN, TN, 3, 0);
  write_labels(lp, 0, test_labels, TN);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "trail-images-idx3-ubyte.gz", "3 trailing bytes");

  /* trailing bytes in the label file too */
  uint8_t lab[TN + 1] = {3, 9, 0, 7, 1};
  uint32_t dims[1] = {TN};
  size_t flen;
  uint8_t *b = idx_build(0x801, 1, dims, lab, TN + 1, &flen);
  write_images(ip, 1, 0x803, TN, TN, 0, 0);
  tu_join(lp, *state, "trail-labels");
  write_file(lp, 0, b, flen);
  free(b);
  st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "trail-labels", "1 trailing bytes");
}

static void test_idx_bad_magic(void **state) {
  char ip[1024], lp[1024];
  tu_join(ip, *state, "magic-images");
  tu_join(lp, *state, "magic-labels");
  write_images(ip, 0, 0x00000804u, TN, TN, 0, 0);
  write_labels(lp, 0, test_labels, TN);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "magic-images", "0x00000804");
  assert_non_null(strstr(err.msg, "0x00000803"));

  /* images and labels swapped: wrong magic on the first file read, with a hint */
  write_images(ip, 0, 0x803, TN, TN, 0, 0);
  st = nn_dataset_load_idx(lp, ip, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "magic-labels", "swapped");

  /* a file too short for a magic number */
  static const uint8_t two[2] = {0, 0};
  write_file(ip, 0, two, 2);
  st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "magic-images", "2 bytes");

  /* a zero dimension */
  write_images(ip, 0, 0x803, 0, 0, 0, 0);
  st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "magic-images", "dimension 0");
}

static void test_idx_count_mismatch(void **state) {
  char ip[1024], lp[1024];
  tu_join(ip, *state, "cnt-images-idx3-ubyte");
  tu_join(lp, *state, "cnt-labels-idx1-ubyte.gz");
  write_images(ip, 0, 0x803, TN, TN, 0, 0);
  write_labels(lp, 1, test_labels, TN - 1);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_SHAPE, "cnt-images-idx3-ubyte", "cnt-labels-idx1-ubyte.gz");
  if (!strstr(err.msg, "4 images") || !strstr(err.msg, "3 labels"))
    fail_msg("message lacks both counts: %s", err.msg);
}

static void test_idx_label_range(void **state) {
  char ip[1024], lp[1024];
  tu_join(ip, *state, "images");
  tu_join(lp, *state, "train-labels-idx1-ubyte.gz");
  write_images(ip, 1, 0x803, TN, TN, 0, 0);
  uint8_t bad[TN] = {1, 2, 9, 12};
  write_labels(lp, 1, bad, TN);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "train-labels-idx1-ubyte.gz",
                 "label 12 at index 3 is out of range [0, 10)");
  /* 10 is already out of range */
  uint8_t ten[TN] = {10, 2, 9, 1};
  write_labels(lp, 1, ten, TN);
  st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "train-labels-idx1-ubyte.gz", "label 10 at index 0");
}

static void test_idx_corrupt_gzip(void **state) {
  char ip[1024], lp[1024];
  tu_join(ip, *state, "cut-images.gz");
  tu_join(lp, *state, "labels");
  write_images(ip, 1, 0x803, TN, TN, 0, 0);
  write_labels(lp, 0, test_labels, TN);
  size_t n;
  uint8_t *raw = tu_read_file(ip, &n);
  assert_true(n > 20);
  write_file(ip, 0, raw, n - 12); /* drop the gzip trailer and part of the stream */
  free(raw);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "cut-images.gz", "truncated gzip");

  /* a complete stream whose CRC-32 trailer is wrong */
  tu_join(ip, *state, "crc-images.gz");
  write_images(ip, 1, 0x803, TN, TN, 0, 0);
  raw = tu_read_file(ip, &n);
  raw[n - 8] ^= 0x55;
  write_file(ip, 0, raw, n);
  free(raw);
  st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "crc-images.gz", "corrupt gzip");
}

static void test_idx_missing(void **state) {
  const char *dir = *state;
  char ip[1024], lp[1024], p[1024];
  tu_join(ip, dir, "nope-images-idx3-ubyte");
  tu_join(lp, dir, "labels");
  write_labels(lp, 0, test_labels, TN);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  nn_status st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, "nope-images-idx3-ubyte", "No such file");
  /* missing label file */
  write_images(ip, 0, 0x803, TN, TN, 0, 0);
  tu_join(lp, dir, "nope-labels");
  st = nn_dataset_load_idx(ip, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, "nope-labels", "No such file");
  /* a directory where a file should be */
  st = nn_dataset_load_idx(ip, dir, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, dir, "directory");

  /* load_idx_dir: the labels file is missing -> names the dir and the expected names */
  write_images(tu_join(p, dir, "nolab-images-idx3-ubyte"), 0, 0x803, TN, TN, 0, 0);
  st = nn_dataset_load_idx_dir(dir, "nolab", &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, dir, "nolab-labels-idx1-ubyte");
  assert_non_null(strstr(err.msg, "nolab-labels-idx1-ubyte.gz"));
  /* no images at all */
  st = nn_dataset_load_idx_dir(dir, "absent", &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, dir, "absent-images-idx3-ubyte");

  /* missing directory */
  char missing[1024];
  tu_join(missing, dir, "no-such-dir");
  st = nn_dataset_load_idx_dir(missing, "train", &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, missing, "No such file or directory");
  /* a file where the directory should be */
  st = nn_dataset_load_idx_dir(ip, "train", &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, ip, "not a directory");
  /* NULL arguments */
  st = nn_dataset_load_idx(NULL, lp, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_ARG, NULL, NULL);
  st = nn_dataset_load_idx_dir(dir, "", &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_ARG, NULL, NULL);
  /* err may be NULL */
  assert_int_equal(nn_dataset_load_idx_dir(missing, "train", &ds, NULL), NN_ERR_IO);
  assert_null(ds);
}

/* ---- batch conversion --------------------------------------------------------------- */

static void test_batch(void **state) {
  /* two samples 1x2x3 with chosen bytes */
  const char *dir = *state;
  char ip[1024], lp[1024];
  static const uint8_t px[12] = {0, 1, 128, 200, 255, 17, 255, 200, 128, 1, 0, 90};
  static const uint8_t lab[2] = {4, 8};
  uint32_t dims[3] = {2, 2, 3};
  size_t flen;
  uint8_t *b = idx_build(0x803, 3, dims, px, sizeof px, &flen);
  write_file(tu_join(ip, dir, "b-images"), 0, b, flen);
  free(b);
  write_labels(tu_join(lp, dir, "b-labels"), 0, lab, 2);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  if (nn_dataset_load_idx(ip, lp, &ds, &err)) fail_msg("%s", err.msg);

  uint32_t idx[3] = {1, 0, 1};
  float x[18];
  int32_t y[3] = {-1, -1, -1};
  /* ToTensor only: u8 / 255 in float32 (values from IEEE float32 division) */
  nn_dataset_batch(ds, idx, 3, (nn_input_norm){0.0f, 1.0f}, x, y);
  assert_int_equal(y[0], 8);
  assert_int_equal(y[1], 4);
  assert_int_equal(y[2], 8);
  static const float want01[6] = {0.0f, 0x1.010102p-8f, 0x1.010102p-1f, 0x1.919192p-1f, 1.0f,
                                  0x1.111112p-4f};
  for (int j = 0; j < 6; j++) {
    if (x[6 + j] != want01[j])
      fail_msg("norm {0,1}: x[%d] = %a, want %a", 6 + j, x[6 + j], want01[j]);
    assert_true(x[j] == x[12 + j]);                /* sample 1 twice */
    if (j < 5) assert_true(x[j] == want01[4 - j]); /* sample 1 = sample 0's bytes reversed */
  }
  assert_true(x[5] == 90.0f / 255.0f);
  /* Normalize((0.5,), (0.5,)) */
  nn_dataset_batch(ds, idx, 1, (nn_input_norm){0.5f, 0.5f}, x, y);
  static const float want55[6] = {1.0f, 0x1.232324p-1f, 0x1.0102p-8f, -0x1.fbfbfcp-1f, -1.0f,
                                  -0x1.2d2d2cp-2f};
  for (int j = 0; j < 6; j++)
    if (x[j] != want55[j]) fail_msg("norm {.5,.5}: x[%d] = %a, want %a", j, x[j], want55[j]);
  assert_int_equal(y[0], 8);
  nn_dataset_free(ds);

  /* Every byte value against float32 arithmetic emulated in double (one rounding per
   * operation, exact because double has more than 2*24+2 bits), for a few norms. */
  uint8_t all[256];
  for (int v = 0; v < 256; v++) all[v] = (uint8_t)(255 - v);
  uint32_t adims[3] = {1, 16, 16};
  b = idx_build(0x803, 3, adims, all, 256, &flen);
  write_file(ip, 0, b, flen);
  free(b);
  write_labels(lp, 0, lab, 1);
  if (nn_dataset_load_idx(ip, lp, &ds, &err)) fail_msg("%s", err.msg);
  static const nn_input_norm norms[4] = {{0.0f, 1.0f}, {0.5f, 0.5f}, {0.1307f, 0.3081f}, {0.2860f, 0.3530f}};
  float xa[256];
  uint32_t zero = 0;
  for (int k = 0; k < 4; k++) {
    nn_dataset_batch(ds, &zero, 1, norms[k], xa, NULL);
    for (int j = 0; j < 256; j++) {
      float v = (float)((double)all[j] / 255.0);
      float d = (float)((double)v - (double)norms[k].mean);
      float want = (float)((double)d / (double)norms[k].std);
      if (xa[j] != want)
        fail_msg("norm {%g,%g}: byte %d -> %a, want %a", norms[k].mean, norms[k].std, all[j],
                 xa[j], want);
    }
  }
  nn_dataset_free(ds);
}

/* ---- split --------------------------------------------------------------------------- */

static void test_split(void **state) {
  const char *dir = *state;
  enum { N = 10 };
  uint8_t px[N * TS], lab[N];
  for (int i = 0; i < N; i++) {
    lab[i] = (uint8_t)((i * 7) % 10);
    for (int j = 0; j < TS; j++) px[i * TS + j] = pix(i, j);
  }
  uint32_t dims[3] = {N, TH, TW};
  size_t flen;
  uint8_t *b = idx_build(0x803, 3, dims, px, sizeof px, &flen);
  char ip[1024], lp[1024];
  write_file(tu_join(ip, dir, "s-images"), 0, b, flen);
  free(b);
  write_labels(tu_join(lp, dir, "s-labels"), 0, lab, N);
  nn_error err = {0};
  nn_dataset *ds = NULL, *tr = NULL, *va = NULL;
  if (nn_dataset_load_idx(ip, lp, &ds, &err)) fail_msg("%s", err.msg);

  if (nn_dataset_split(ds, 0.3, &tr, &va, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_dataset_count(tr), 7);
  assert_int_equal(nn_dataset_count(va), 3);
  nn_dims d = nn_dataset_shape(va);
  assert_true(d.c == 1 && d.h == TH && d.w == TW);
  assert_int_equal(nn_dataset_num_classes(va), 10);
  for (int i = 0; i < N; i++) {
    const nn_dataset *part = i < 7 ? tr : va;
    int k = i < 7 ? i : i - 7;
    assert_int_equal(nn_dataset_label(part, k), lab[i]);
    assert_memory_equal(nn_dataset_image(part, k), px + i * TS, TS);
    /* copies: ds is unchanged and not aliased */
    assert_ptr_not_equal(nn_dataset_image(part, k), nn_dataset_image(ds, i));
    assert_int_equal(nn_dataset_label(ds, i), lab[i]);
  }
  assert_int_equal(nn_dataset_count(ds), N);
  nn_dataset_free(tr);
  nn_dataset_free(va);

  /* round(n * f): 0.25 of 10 -> 3 (2.5 rounds up), 0.1 -> 1, 0.9 -> 9 */
  static const double fr[3] = {0.25, 0.1, 0.9};
  static const int nv[3] = {3, 1, 9};
  for (int k = 0; k < 3; k++) {
    tr = va = NULL;
    if (nn_dataset_split(ds, fr[k], &tr, &va, &err)) fail_msg("%s", err.msg);
    assert_int_equal(nn_dataset_count(va), nv[k]);
    assert_int_equal(nn_dataset_count(tr), N - nv[k]);
    assert_int_equal(nn_dataset_label(va, 0), lab[N - nv[k]]);
    nn_dataset_free(tr);
    nn_dataset_free(va);
  }

  /* invalid fractions, and fractions that leave a side empty */
  static const double bad[8] = {0.0, 1.0, -0.1, 1.5, NAN, INFINITY, 0.04, 0.96};
  for (int k = 0; k < 8; k++) {
    tr = va = (nn_dataset *)&err; /* garbage that must be overwritten with NULL */
    err.code = NN_OK;
    nn_status st = nn_dataset_split(ds, bad[k], &tr, &va, &err);
    if (st != NN_ERR_ARG) fail_msg("fraction %g: status %d, want NN_ERR_ARG", bad[k], st);
    assert_int_equal(err.code, NN_ERR_ARG);
    assert_null(tr);
    assert_null(va);
    assert_non_null(strstr(err.msg, "fraction"));
  }
  assert_int_equal(nn_dataset_split(NULL, 0.5, &tr, &va, &err), NN_ERR_ARG);
  nn_dataset_free(ds);
}

static void test_null_handles(void **state) {
  (void)state;
  nn_dataset_free(NULL);
  assert_int_equal(nn_dataset_count(NULL), 0);
  assert_int_equal(nn_dataset_num_classes(NULL), 0);
  nn_dims d = nn_dataset_shape(NULL);
  assert_true(d.c == 0 && d.h == 0 && d.w == 0);
}

/* ---- the real Fashion-MNIST (Debian package dataset-fashion-mnist) -------------------- */

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_fashion(const char *prefix, int n, const uint8_t *first10, long sum0) {
  nn_error err = {0};
  nn_dataset *ds = NULL;
  double t0 = now_sec();
  nn_status st = nn_dataset_load_idx_dir(FASHION_DIR, prefix, &ds, &err);
  double t1 = now_sec();
  if (st) fail_msg("loading Fashion-MNIST %s from %s: %s", prefix, FASHION_DIR, err.msg);
  print_message("Fashion-MNIST %s: %d samples loaded in %.3f s\n", prefix, nn_dataset_count(ds),
                t1 - t0);
  assert_int_equal(nn_dataset_count(ds), n);
  nn_dims d = nn_dataset_shape(ds);
  assert_int_equal(d.c, 1);
  assert_int_equal(d.h, 28);
  assert_int_equal(d.w, 28);
  assert_int_equal(nn_dataset_num_classes(ds), 10);
  int per_class[10] = {0};
  for (int i = 0; i < n; i++) {
    int y = nn_dataset_label(ds, i);
    assert_in_range(y, 0, 9);
    per_class[y]++;
  }
  for (int k = 0; k < 10; k++) assert_int_equal(per_class[k], n / 10); /* balanced classes */
  for (int i = 0; i < 10; i++) assert_int_equal(nn_dataset_label(ds, i), first10[i]);
  long sum = 0;
  const uint8_t *im = nn_dataset_image(ds, 0);
  for (int j = 0; j < 784; j++) sum += im[j];
  assert_int_equal(sum, sum0);
  nn_dataset_free(ds);
}

static void test_fashion_mnist(void **state) {
  (void)state;
  struct stat st;
  if (stat(FASHION_DIR, &st) != 0 || !S_ISDIR(st.st_mode))
    fail_msg(
        "%s is missing: install Debian's dataset-fashion-mnist package (the build "
        "depends on it)",
        FASHION_DIR);
  static const uint8_t train10[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  static const uint8_t test10[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  check_fashion("train", 60000, train10, 76247);
  check_fashion("t10k", 10000, test10, 33456);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_idx_valid_raw, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_valid_gz, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_dir, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_truncated_raw, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_truncated_gz, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_trailing, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_bad_magic, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_count_mismatch, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_label_range, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_corrupt_gzip, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_idx_missing, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_batch, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_split, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test(test_null_handles),
      cmocka_unit_test(test_fashion_mnist),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
