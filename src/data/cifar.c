/* CIFAR-10 binary reader: records of 1 label byte + 3072 image bytes (3x32x32, CHW).
 * train = data_batch_1.bin .. data_batch_5.bin, test = test_batch.bin. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file_read.h"
#include "data/dataset.h"

#define CIFAR_C 3
#define CIFAR_H 32
#define CIFAR_W 32
#define CIFAR_IMAGE (CIFAR_C * CIFAR_H * CIFAR_W)
#define CIFAR_RECORD (1 + CIFAR_IMAGE)
#define CIFAR_CLASSES 10
#define CIFAR_MAX_FILES 5
#define CIFAR_MAX_RECORDS 100000 /* per file: ten times CIFAR-10's own batches */
#define CIFAR_CHUNK 1024         /* records per read */

static const char *const cifar_train[] = {"data_batch_1.bin", "data_batch_2.bin",
                                          "data_batch_3.bin", "data_batch_4.bin",
                                          "data_batch_5.bin"};
static const char *const cifar_test[] = {"test_batch.bin"};

int nn_cifar_dir_holds(const char *dir) {
  const char *const names[] = {cifar_train[0], cifar_test[0]};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    char *p = nn_data_join(dir, names[k]);
    struct stat sb;
    const int found = p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    free(p);
    if (found) return 1;
  }
  return 0;
}

/* Read `records` records of `path` into ds starting at sample `first`. */
static nn_status read_records(const char *path, long records, nn_dataset *ds, int first,
                              uint8_t *chunk, nn_error *err) {
  off_t size;
  FILE *f = nn_file_fopen_regular(path, &size, err);
  if (!f) return NN_ERR_IO;
  if (size != (off_t)records * CIFAR_RECORD) {
    fclose(f);
    return nn_err_set(err, NN_ERR_IO, "%s: changed size while loading (%lld bytes, was %lld)", path, (long long)size,
                      (long long)records * CIFAR_RECORD);
  }
  nn_status st = NN_OK;
  for (long r = 0; r < records && !st;) {
    long want = records - r < CIFAR_CHUNK ? records - r : CIFAR_CHUNK;
    size_t got = fread(chunk, CIFAR_RECORD, (size_t)want, f);
    if (got != (size_t)want) {
      st = nn_err_set(err, NN_ERR_IO, "%s: read error at record %ld: %s", path, r + (long)got,
                      ferror(f) ? strerror(errno) : "file shrank while reading");
      break;
    }
    for (long k = 0; k < want; k++) {
      const uint8_t *rec = chunk + (size_t)k * CIFAR_RECORD;
      if (rec[0] >= CIFAR_CLASSES) {
        st = nn_err_set(err, NN_ERR_FORMAT, "%s: label %u at record %ld is out of range [0, %d)",
                        path, (unsigned)rec[0], r + k, CIFAR_CLASSES);
        break;
      }
      size_t i = (size_t)first + (size_t)(r + k);
      ds->labels[i] = rec[0];
      memcpy(ds->images + i * CIFAR_IMAGE, rec + 1, CIFAR_IMAGE);
    }
    r += want;
  }
  fclose(f);
  return st;
}

nn_status nn_dataset_load_cifar10(const char *dir, nn_split split, nn_dataset **out, nn_error *err) {
  int train = split == NN_SPLIT_TRAIN;
  if (out) *out = NULL;
  if (!dir || !out)
    return nn_err_set(err, NN_ERR_ARG,
                      "nn_dataset_load_cifar10: directory and output must not be NULL");
  nn_status st = nn_data_check_dir(dir, err);
  if (st) return st;
  const char *const *names = train ? cifar_train : cifar_test;
  int nfiles = train ? 5 : 1;
  char *paths[CIFAR_MAX_FILES] = {NULL};
  long records[CIFAR_MAX_FILES] = {0};
  long total = 0;
  /* Pass 1: every file exists and has a whole, non-zero number of records. */
  for (int k = 0; k < nfiles && !st; k++) {
    paths[k] = nn_data_join(dir, names[k]);
    if (!paths[k]) {
      st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", dir);
      break;
    }
    struct stat sb;
    if (stat(paths[k], &sb) != 0) {
      st = nn_err_set(err, NN_ERR_IO, "%s: cannot open CIFAR-10 %s file: %s", paths[k],
                      train ? "training" : "test", strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
      st = nn_err_set(err, NN_ERR_IO, "%s: not a regular file (a FIFO, device or directory); only regular files are read",
                      paths[k]);
    } else if (sb.st_size == 0 || sb.st_size % CIFAR_RECORD != 0) {
      st = nn_err_set(err, NN_ERR_FORMAT,
                      "%s: size %lld bytes is not a non-zero multiple of %d (1 label byte + %d "
                      "image bytes per record)",
                      paths[k], (long long)sb.st_size, CIFAR_RECORD, CIFAR_IMAGE);
    } else if (sb.st_size / CIFAR_RECORD > CIFAR_MAX_RECORDS) { /* before allocating for them */
      st = nn_err_set(err, NN_ERR_FORMAT,
                      "%s: %lld records, more than a CIFAR-10 batch file holds (10000; at most %d are read)",
                      paths[k], (long long)(sb.st_size / CIFAR_RECORD), CIFAR_MAX_RECORDS);
    } else {
      records[k] = (long)(sb.st_size / CIFAR_RECORD);
      total += records[k];
    }
  }
  /* Pass 2: read the records. */
  nn_dataset *ds = NULL;
  uint8_t *chunk = NULL;
  if (!st)
    st = nn_dataset_new((int)total, CIFAR_C, CIFAR_H, CIFAR_W, CIFAR_CLASSES, dir, &ds, err);
  if (!st) {
    chunk = malloc((size_t)CIFAR_CHUNK * CIFAR_RECORD);
    if (!chunk) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", dir);
  }
  long first = 0;
  for (int k = 0; k < nfiles && !st; k++) {
    st = read_records(paths[k], records[k], ds, (int)first, chunk, err);
    first += records[k];
  }
  free(chunk);
  for (int k = 0; k < nfiles; k++) free(paths[k]);
  if (st) {
    nn_dataset_free(ds);
    return st;
  }
  *out = ds;
  return NN_OK;
}
