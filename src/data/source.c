/* Data sources by name, as the CLI's --data takes them:
 *   fashion-mnist        Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
 *   mnist:DIR, idx:DIR   any directory with the four standard IDX files (raw or .gz)
 *   cifar10:DIR          CIFAR-10 binary batches
 *   DIR                  any of them by what the directory holds (recorded as the explicit form) */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "data/dataset.h"
#include "normnet.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* The classes of the known sources, in label order. */
static const char *const FASHION[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const CIFAR10[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                        "dog", "frog", "horse", "ship", "truck"};
static const char *const DIGITS[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

static const char *const *source_names(const char *source) {
  if (!strcmp(source, "fashion-mnist")) return FASHION;
  if (!strncmp(source, "mnist:", 6)) return DIGITS;
  if (!strncmp(source, "cifar10:", 8)) return CIFAR10;
  return NULL;
}

const char *nn_data_source_class_name(const char *source, int i) {
  const char *const *names = source ? source_names(source) : NULL;
  return names && i >= 0 && i < 10 ? names[i] : NULL;
}

/* Called with the loader's status: *out is read only after the loader has set it. */
static nn_status named(nn_status st, nn_dataset **out, const char *source) {
  if (!st && (*out)->num_classes <= 10) (*out)->class_names = source_names(source);
  return st;
}

/* Whether the source starts with a kind that names a directory: idx:, mnist:, cifar10:. */
static int source_kind_known(const char *source) {
  return !strncmp(source, "idx:", 4) || !strncmp(source, "mnist:", 6) || !strncmp(source, "cifar10:", 8);
}

/* A bare directory as a source, by what it holds: "fashion-mnist" for Debian's, "cifar10:DIR"
 * for CIFAR-10 batches, "idx:DIR" for IDX files; the source itself otherwise. */
static const char *by_content(const char *source, char *buf, size_t cap) {
  struct stat sb;
  if (source_kind_known(source) || !strcmp(source, "fashion-mnist") || stat(source, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return source;
  struct stat fm;
  if (stat(FASHION_MNIST_DIR, &fm) == 0 && fm.st_dev == sb.st_dev && fm.st_ino == sb.st_ino) return "fashion-mnist";
  const char *kind = nn_cifar_dir_holds(source) ? "cifar10:" : nn_idx_dir_holds(source) ? "idx:"
                                                                                        : NULL;
  if (!kind || snprintf(buf, cap, "%s%s", kind, source) >= (int)cap) return source;
  return buf;
}

void nn_data_source_absolute(char *source, size_t cap) {
  char named_by_content[4200];
  const char *explicit = by_content(source, named_by_content, sizeof named_by_content);
  if (explicit != source && strlen(explicit) < cap) memmove(source, explicit, strlen(explicit) + 1);
  const char *colon = strchr(source, ':');
  if (!source_kind_known(source)) return;
  if (colon[1] == '/' || !colon[1]) return;
  char cwd[4096], out[4096 + 1024];
  if (!getcwd(cwd, sizeof cwd)) return;
  const char *dir = colon + 1;
  while (dir[0] == '.' && dir[1] == '/') dir += 2; /* "./d" is "d" */
  const int kind = (int)(colon - source) + 1;      /* "idx:" */
  const int n = snprintf(out, sizeof out, "%.*s%s%s%s", kind, source, cwd, strcmp(cwd, "/") ? "/" : "",
                         strcmp(dir, ".") ? dir : "");
  if (n > 0 && (size_t)n < cap && (size_t)n < sizeof out) memcpy(source, out, (size_t)n + 1);
}

nn_status nn_dataset_open(const char *source, nn_split split, nn_dataset **out, nn_error *err) {
  int train = split == NN_SPLIT_TRAIN;
  *out = NULL;
  char named_by_content[4200];
  source = by_content(source, named_by_content, sizeof named_by_content);
  const char *prefix = train ? "train" : "t10k";
  if (!strcmp(source, "fashion-mnist")) {
    nn_status st = nn_dataset_load_idx_dir(FASHION_MNIST_DIR, prefix, out, err);
    if (st)
      nn_err_prefix(err, st, "fashion-mnist (install Debian's dataset-fashion-mnist, or use --data idx:DIR): ");
    return named(st, out, source);
  }
  const char *colon = strchr(source, ':');
  if (colon && !colon[1] && source_kind_known(source))
    return nn_err_set(err, NN_ERR_ARG, "no directory after '%s' (expected %sDIR)", source, source);
  if (!strncmp(source, "idx:", 4)) return nn_dataset_load_idx_dir(source + 4, prefix, out, err);
  if (!strncmp(source, "mnist:", 6)) return named(nn_dataset_load_idx_dir(source + 6, prefix, out, err), out, source);
  if (!strncmp(source, "cifar10:", 8)) return named(nn_dataset_load_cifar10(source + 8, split, out, err), out, source);
  if (!strcmp(source, "mnist") || !strcmp(source, "idx") || !strcmp(source, "cifar10"))
    return nn_err_set(err, NN_ERR_ARG, "'%s' needs the directory of its files: %s:DIR (only fashion-mnist is installed by Debian)",
                      source, source);
  struct stat sb;
  if (stat(source, &sb) == 0 && S_ISDIR(sb.st_mode))
    return nn_err_set(err, NN_ERR_ARG,
                      "%s: a directory without IDX files (train-images-idx3-ubyte[.gz], ...) or CIFAR-10 batches "
                      "(data_batch_1.bin, test_batch.bin)",
                      source);
  return nn_err_set(err, NN_ERR_ARG,
                    "unknown data source '%s' (expected fashion-mnist, mnist:DIR, idx:DIR, cifar10:DIR or a directory "
                    "of IDX files or CIFAR-10 batches)",
                    source);
}
