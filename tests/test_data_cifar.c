/* Data sets: the CIFAR-10 binary reader (data_batch_1..5.bin, test_batch.bin of 3073-byte
 * records) and its error messages. Small files are written to a fresh mkdtemp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli_run.h"
#include "nn_test.h"

#include "normnet.h"

/* ---- CIFAR-10 ---------------------------------------------------------------------------- */

enum { CREC = 3073 };
static uint8_t cifar_label(int file, int r) { return (uint8_t)((file * 3 + r) % 10); }
static uint8_t cifar_pix(int file, int r, int j) {
  return (uint8_t)((file * 101 + r * 53 + j * 7 + j / 1024) & 255);
}

static void write_cifar(const char *dir, const char *name, int file, int records, int cut,
                        int bad_record) {
  size_t n = (size_t)records * CREC;
  uint8_t *b = malloc(n ? n : 1);
  assert_non_null(b);
  for (int r = 0; r < records; r++) {
    uint8_t *rec = b + (size_t)r * CREC;
    rec[0] = r == bad_record ? 10 : cifar_label(file, r);
    for (int j = 0; j < 3072; j++) rec[1 + j] = cifar_pix(file, r, j);
  }
  char p[1024];
  tu_write_file(tu_join(p, dir, name), b, n - (size_t)cut);
  free(b);
}

static void write_cifar_train(const char *dir, const int *records) {
  char name[64];
  for (int f = 0; f < 5; f++) {
    snprintf(name, sizeof name, "data_batch_%d.bin", f + 1);
    write_cifar(dir, name, f, records[f], 0, -1);
  }
}

static void test_cifar_valid(void **state) {
  const char *dir = *state;
  static const int records[5] = {2, 1, 2, 1, 2};
  write_cifar_train(dir, records);
  write_cifar(dir, "test_batch.bin", 7, 2, 0, -1);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  if (nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err)) fail_msg("train: %s", err.msg);
  assert_int_equal(nn_dataset_count(ds), 8);
  nn_dims d = nn_dataset_shape(ds);
  assert_int_equal(d.c, 3);
  assert_int_equal(d.h, 32);
  assert_int_equal(d.w, 32);
  assert_int_equal(nn_dataset_num_classes(ds), 10);
  int i = 0;
  for (int f = 0; f < 5; f++)
    for (int r = 0; r < records[f]; r++, i++) {
      assert_int_equal(nn_dataset_label(ds, i), cifar_label(f, r));
      const uint8_t *im = nn_dataset_image(ds, i);
      for (int j = 0; j < 3072; j++)
        if (im[j] != cifar_pix(f, r, j))
          fail_msg("sample %d byte %d: %d, want %d", i, j, im[j], cifar_pix(f, r, j));
    }
  /* CHW: sample 4 = file 2 (data_batch_3) record 1, channel 2, y 5, x 7 */
  int j = 2 * 1024 + 5 * 32 + 7;
  assert_int_equal(nn_dataset_image(ds, 4)[j], (2 * 101 + 53 + j * 7 + 2) & 255);
  assert_int_equal(nn_dataset_label(ds, 4), 7);
  nn_dataset_free(ds);
  ds = NULL;

  if (nn_dataset_load_cifar10(dir, NN_SPLIT_TEST, &ds, &err)) fail_msg("test: %s", err.msg);
  assert_int_equal(nn_dataset_count(ds), 2);
  assert_int_equal(nn_dataset_label(ds, 0), cifar_label(7, 0));
  assert_int_equal(nn_dataset_label(ds, 1), cifar_label(7, 1));
  assert_int_equal(nn_dataset_image(ds, 1)[3071], cifar_pix(7, 1, 3071));
  nn_dataset_free(ds);
}

static void test_cifar_bad(void **state) {
  const char *dir = *state;
  static const int records[5] = {2, 2, 2, 2, 2};
  nn_error err = {0};
  nn_dataset *ds = NULL;

  /* missing directory */
  char missing[1024];
  tu_join(missing, dir, "cifar-10-batches-bin");
  nn_status st = nn_dataset_load_cifar10(missing, NN_SPLIT_TRAIN, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, missing, "No such file or directory");

  /* missing data_batch_3.bin */
  write_cifar_train(dir, records);
  char p[1024];
  assert_int_equal(unlink(tu_join(p, dir, "data_batch_3.bin")), 0);
  st = nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, "data_batch_3.bin", "No such file");
  /* missing test_batch.bin */
  st = nn_dataset_load_cifar10(dir, NN_SPLIT_TEST, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_IO, "test_batch.bin", NULL);

  /* truncated: 2 records minus 5 bytes = 6141 bytes */
  write_cifar(dir, "data_batch_3.bin", 2, 2, 5, -1);
  st = nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "data_batch_3.bin", "6141");
  assert_non_null(strstr(err.msg, "3073"));
  /* empty file */
  write_cifar(dir, "data_batch_3.bin", 2, 0, 0, -1);
  st = nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "data_batch_3.bin", "size 0");

  /* label 10 in record 1 of data_batch_4.bin (after files 1-3 were read) */
  write_cifar(dir, "data_batch_3.bin", 2, 2, 0, -1);
  write_cifar(dir, "data_batch_4.bin", 3, 2, 0, 1);
  st = nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "data_batch_4.bin", "label 10 at record 1");

  /* a (sparse) batch of 100001 records is refused before anything is allocated for it (a
   * 6 GB one took 5.4 GB of memory) */
  write_cifar(dir, "data_batch_4.bin", 3, 2, 0, -1);
  assert_int_equal(truncate(tu_join(p, dir, "data_batch_5.bin"), (off_t)100001 * 3073), 0);
  st = nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err);
  tu_expect_fail(st, &err, ds, NN_ERR_FORMAT, "data_batch_5.bin", "100001 records, more than a CIFAR-10 batch");
  write_cifar(dir, "data_batch_5.bin", 4, 2, 0, -1);

  /* all good again */
  if (nn_dataset_load_cifar10(dir, NN_SPLIT_TRAIN, &ds, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_dataset_count(ds), 10);
  nn_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_cifar_valid, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_cifar_bad, tu_setup_tempdir, tu_teardown_tempdir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
