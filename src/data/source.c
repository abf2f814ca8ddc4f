/* Data sources by name, as the CLI's --data takes them:
 *   fashion-mnist        Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
 *   mnist:DIR, idx:DIR   any directory with the four standard IDX files (raw or .gz)
 *   cifar10:DIR          CIFAR-10 binary batches */
#include <string.h>

#include "base/error.h"
#include "normnet.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

nn_status nn_dataset_open(const char *source, int train, nn_dataset **out, nn_error *err) {
  *out = NULL;
  const char *prefix = train ? "train" : "t10k";
  if (!strcmp(source, "fashion-mnist")) {
    nn_status st = nn_dataset_load_idx_dir(FASHION_MNIST_DIR, prefix, out, err);
    if (st)
      nn_err_prefix(err, st, "fashion-mnist (install Debian's dataset-fashion-mnist, or use --data idx:DIR): ");
    return st;
  }
  if (!strncmp(source, "idx:", 4)) return nn_dataset_load_idx_dir(source + 4, prefix, out, err);
  if (!strncmp(source, "mnist:", 6)) return nn_dataset_load_idx_dir(source + 6, prefix, out, err);
  if (!strncmp(source, "cifar10:", 8)) return nn_dataset_load_cifar10(source + 8, train, out, err);
  return nn_err_set(err, NN_ERR_ARG,
                    "unknown data source '%s' (expected fashion-mnist, mnist:DIR, idx:DIR or cifar10:DIR)", source);
}
