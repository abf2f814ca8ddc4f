/* PNG / PGM for predict. Byte 0 picks the requested shape (1x28x28, 3x32x32, 1x4x4 or
 * 3x1x1); the rest is the file. */
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  static const int shapes[4][3] = {{1, 28, 28}, {3, 32, 32}, {1, 4, 4}, {3, 1, 1}};
  const int *s = shapes[data[0] & 3];
  const char *p = fz_write("image", data + 1, size - 1);
  uint8_t *out = malloc((size_t)s[0] * s[1] * s[2]);
  nn_error err = {0};
  fz_check_error(nn_image_load(p, s[0], s[1], s[2], out, &err), &err);
  free(out);
  return 0;
}
