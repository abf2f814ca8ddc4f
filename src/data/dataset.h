/* Data sets: uint8 samples kept as bytes, floats made per batch (ARCHITECTURE.md §3 "data/").
 *
 * Error statuses used by the readers (every message starts with the file or directory):
 * - NN_ERR_IO      a file or directory is missing or cannot be read
 * - NN_ERR_FORMAT  one file is malformed (magic, dims vs size, truncated/trailing bytes,
 *                  corrupt gzip stream, label out of range, CIFAR size not k*3073)
 * - NN_ERR_SHAPE   files that are fine on their own do not fit together (image count !=
 *                  label count)
 * - NN_ERR_ARG     bad arguments (NULL pointers, split fraction outside (0, 1))
 * - NN_ERR_NOMEM   allocation failed */
#ifndef NN_DATA_DATASET_H
#define NN_DATA_DATASET_H
#include <stddef.h>
#include <stdint.h>

#include "normnet.h"

struct nn_dataset {
  int n;                          /* number of samples */
  int c, h, w;                    /* sample shape (CHW) */
  int num_classes;                /* labels are in [0, num_classes) */
  size_t sample_size;             /* c * h * w bytes per sample */
  uint8_t *images;                /* n x sample_size bytes, sample-major, each sample CHW */
  int32_t *labels;                /* n labels */
  const char *const *class_names; /* num_classes names from the source, or NULL (static, not owned) */
};

/* Internal constructor for readers: allocate a data set of n samples of shape c x h x w
 * with uninitialised images and labels (the caller fills them). n, c, h, w > 0.
 * NN_ERR_NOMEM (message names `what`, e.g. the file) if the allocation fails. */
nn_status nn_dataset_new(int n, int c, int h, int w, int num_classes, const char *what,
                         nn_dataset **out, nn_error *err);

/* nn_dataset_batch in `parts` contiguous slices of the batch, one per thread of a parallel
 * region when parts > 1 (each image converts on its own: the same floats on any split). */
void nn_dataset_batch_split(const nn_dataset *ds, const uint32_t *idx, int count, nn_input_norm norm,
                            float *x, int32_t *labels, int parts);
/* The parts for a batch of `count` samples that the team waits for: the thread count in
 * force from NN_DATASET_PAR_VALUES bytes, else 1 (a parallel region costs more than it saves
 * on a smaller batch; 16384: a batch of 32 28x28 images splits, the mlp's two-thread steps
 * 1.02-1.13x, run 26). */
#define NN_DATASET_PAR_VALUES 16384
int nn_dataset_batch_parts(const nn_dataset *ds, int count);

/* Copy samples [start, start + count) of ds into a new data set (count > 0). */
nn_status nn_dataset_slice(const nn_dataset *ds, int start, int count, nn_dataset **out,
                           nn_error *err);

/* A source naming a relative directory (idx:DIR, mnist:DIR, cifar10:DIR) made absolute in
 * place (joined to the working directory), so that a run records data it can find from
 * any working directory; unchanged when the result would not fit in cap. */
void nn_data_source_absolute(char *source, size_t cap);

/* 1 if dir holds what the IDX reader looks for (the images of the train or t10k split, in any
 * of its file names), or the first of the CIFAR-10 reader's training or test batches: how a
 * bare directory given as a data source is told apart (source.c). */
int nn_idx_dir_holds(const char *dir);
int nn_cifar_dir_holds(const char *dir);

/* Helpers shared by the readers. */
/* NN_ERR_IO naming dir if it does not exist or is not a directory. */
nn_status nn_data_check_dir(const char *dir, nn_error *err);
/* malloc'd "dir/name" (no doubled '/'); NULL when out of memory. */
char *nn_data_join(const char *dir, const char *name);

#endif
