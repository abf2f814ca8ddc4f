/* CIFAR-10 binary: the input is test_batch.bin. */
#include <stdio.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20)) return 0;
  fz_write("test_batch.bin", data, size);
  nn_dataset *ds = NULL;
  nn_error err = {0};
  nn_status st = nn_dataset_load_cifar10(fz_dir(), 0, &ds, &err);
  fz_check_error(st, &err);
  if (!st && (nn_dataset_count(ds) * 3073 != (int)size)) __builtin_trap();
  nn_dataset_free(ds);
  return 0;
}
