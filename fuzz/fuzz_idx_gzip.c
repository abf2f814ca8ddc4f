/* IDX through the gzip path. Input: byte 0 = L, the next L bytes the (raw) label file, the
 * rest the image file as it is on disk: gzip bytes, mutated as such (corrupt streams,
 * bombs, concatenated members). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t l = data[0] < size - 1 ? data[0] : size - 1;
  const char *lab = fz_write("labels-idx1-ubyte", data + 1, l);
  const char *img = fz_write("images-idx3-ubyte.gz", data + 1 + l, size - 1 - l);
  nn_dataset *ds = NULL;
  nn_error err = {0};
  nn_status st = nn_dataset_load_idx(img, lab, &ds, &err);
  fz_check_error(st, &err);
  nn_dataset_free(ds);
  return 0;
}
