/* Data set container: accessors, split and the uint8 -> float batch conversion
 * (kernels/u8_normalize.c). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "data/dataset.h"

#include <errno.h>
#include <sys/stat.h>

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/kernels.h"

nn_status nn_dataset_new(int n, int c, int h, int w, int num_classes, const char *what,
                         nn_dataset **out, nn_error *err) {
  NN_ASSERT(out != NULL);
  NN_ASSERT(n > 0 && c > 0 && h > 0 && w > 0 && num_classes > 0);
  *out = NULL;
  size_t sample = (size_t)c * (size_t)h * (size_t)w;
  if (sample > (size_t)INT_MAX || (size_t)n > SIZE_MAX / sample)
    return nn_err_set(err, NN_ERR_NOMEM, "%s: %d samples of %dx%dx%d bytes are too large", what,
                      n, c, h, w);
  nn_dataset *ds = calloc(1, sizeof *ds);
  if (!ds) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", what);
  ds->n = n;
  ds->c = c;
  ds->h = h;
  ds->w = w;
  ds->num_classes = num_classes;
  ds->sample_size = sample;
  ds->images = malloc((size_t)n * sample);
  ds->labels = malloc((size_t)n * sizeof *ds->labels);
  if (!ds->images || !ds->labels) {
    nn_dataset_free(ds);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory for %d samples of %zu bytes", what,
                      n, sample);
  }
  *out = ds;
  return NN_OK;
}

nn_status nn_data_check_dir(const char *dir, nn_error *err) {
  struct stat st;
  if (stat(dir, &st) != 0)
    return nn_err_set(err, NN_ERR_IO, "%s: cannot open data directory: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return nn_err_set(err, NN_ERR_IO, "%s: not a directory", dir);
  return NN_OK;
}

char *nn_data_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  int slash = a > 0 && dir[a - 1] != '/';
  char *p = malloc(a + (size_t)slash + b + 1);
  if (!p) return NULL;
  memcpy(p, dir, a);
  if (slash) p[a] = '/';
  memcpy(p + a + slash, name, b + 1);
  return p;
}

nn_status nn_dataset_slice(const nn_dataset *ds, int start, int count, nn_dataset **out,
                           nn_error *err) {
  NN_ASSERT(ds != NULL && start >= 0 && count > 0 && count <= ds->n - start);
  nn_status st = nn_dataset_new(count, ds->c, ds->h, ds->w, ds->num_classes, "data set split",
                                out, err);
  if (st) return st;
  memcpy((*out)->images, ds->images + (size_t)start * ds->sample_size,
         (size_t)count * ds->sample_size);
  memcpy((*out)->labels, ds->labels + start, (size_t)count * sizeof *ds->labels);
  (*out)->class_names = ds->class_names;
  return NN_OK;
}

nn_status nn_dataset_split(const nn_dataset *ds, double fraction, nn_dataset **train,
                           nn_dataset **val, nn_error *err) {
  if (train) *train = NULL;
  if (val) *val = NULL;
  if (!ds || !train || !val)
    return nn_err_set(err, NN_ERR_ARG, "nn_dataset_split: data set and outputs must not be NULL");
  if (!(fraction > 0.0 && fraction < 1.0))
    return nn_err_set(err, NN_ERR_ARG,
                      "validation fraction %g is out of range: it must be in (0, 1)", fraction);
  /* The last round(n * fraction) samples (half rounds up) go to validation. */
  double want = (double)ds->n * fraction + 0.5;
  int n_val = want >= (double)ds->n ? ds->n : (int)want;
  int n_train = ds->n - n_val;
  if (n_val < 1 || n_train < 1)
    return nn_err_set(err, NN_ERR_ARG,
                      "validation fraction %g of %d samples leaves %d for training and %d for "
                      "validation: both must be at least 1",
                      fraction, ds->n, n_train, n_val);
  nn_dataset *t = NULL, *v = NULL;
  nn_status st = nn_dataset_slice(ds, 0, n_train, &t, err);
  if (!st) st = nn_dataset_slice(ds, n_train, n_val, &v, err);
  if (st) {
    nn_dataset_free(t);
    return st;
  }
  *train = t;
  *val = v;
  return NN_OK;
}

void nn_dataset_free(nn_dataset *ds) {
  if (!ds) return;
  free(ds->images);
  free(ds->labels);
  free(ds);
}

int nn_dataset_count(const nn_dataset *ds) { return ds ? ds->n : 0; }

nn_dims nn_dataset_shape(const nn_dataset *ds) { return ds ? (nn_dims){.c = ds->c, .h = ds->h, .w = ds->w} : (nn_dims){0}; }

int nn_dataset_num_classes(const nn_dataset *ds) { return ds ? ds->num_classes : 0; }

const char *nn_dataset_class_name(const nn_dataset *ds, int i) {
  return ds && ds->class_names && i >= 0 && i < ds->num_classes ? ds->class_names[i] : NULL;
}

int nn_dataset_label(const nn_dataset *ds, int i) { return i >= 0 && i < ds->n ? ds->labels[i] : -1; }

const uint8_t *nn_dataset_image(const nn_dataset *ds, int i) {
  return i >= 0 && i < ds->n ? ds->images + (size_t)i * ds->sample_size : NULL;
}

nn_status nn_input_norm_check(nn_input_norm norm, nn_error *err) {
  if (!(isfinite(norm.mean) && isfinite(norm.std) && norm.std >= NN_INPUT_STD_MIN))
    return nn_err_set(err, NN_ERR_ARG, "input transform mean %g, std %g: the std must be a finite number >= %g and the mean finite",
                      (double)norm.mean, (double)norm.std, (double)NN_INPUT_STD_MIN);
  return NN_OK;
}

void nn_dataset_batch(const nn_dataset *ds, const uint32_t *idx, int count, nn_input_norm norm,
                      float *x, int32_t *labels) {
  NN_ASSERT(ds != NULL && count >= 0 && (count == 0 || idx != NULL));
  /* PyTorch: ToTensor is u8.float().div(255) in float32, Normalize is (v - mean) / std in
   * float32 (nn_u8_normalize) */
  const size_t d = ds->sample_size;
  for (int k = 0; k < count; k++) {
    uint32_t i = idx[k];
    NN_ASSERT(i < (uint32_t)ds->n);
    if (x) {
      /* the next sample's bytes are requested while this one converts: the shuffled order
       * sends each sample to a random place of the set, which the hardware prefetcher
       * cannot guess (a Fashion-MNIST batch of 128 in shuffled order converted in 40 us
       * instead of 80-106 on one thread of the Xeon of run 24) */
      if (k + 1 < count && idx[k + 1] < (uint32_t)ds->n) {
        const uint8_t *next = ds->images + (size_t)idx[k + 1] * d;
        for (size_t o = 0; o < d; o += 64) __builtin_prefetch(next + o);
      }
      nn_u8_normalize(ds->images + (size_t)i * d, x + (size_t)k * d, d, norm.mean, norm.std);
    }
    if (labels) labels[k] = ds->labels[i];
  }
}

void nn_dataset_batch_split(const nn_dataset *ds, const uint32_t *idx, int count, nn_input_norm norm,
                            float *x, int32_t *labels, int parts) {
  const size_t per = ds->sample_size;
  if (parts > count) parts = count;
#pragma omp parallel for schedule(static) if (parts > 1)
  for (int p = 0; p < parts; p++) {
    const int lo = (int)((long)p * count / parts), hi = (int)((long)(p + 1) * count / parts);
    nn_dataset_batch(ds, idx + lo, hi - lo, norm, x ? x + (size_t)lo * per : NULL, labels ? labels + lo : NULL);
  }
}

int nn_dataset_batch_parts(const nn_dataset *ds, int count) {
  return (size_t)count * ds->sample_size >= NN_DATASET_PAR_VALUES ? omp_get_max_threads() : 1;
}
