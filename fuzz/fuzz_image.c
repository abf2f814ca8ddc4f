/* PNG / PGM for predict. Byte 0 picks the requested shape (1x28x28, 3x32x32, 1x4x4 or
 * 3x1x1); the rest is the file. */
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  static const nn_dims shapes[4] = {{.c = 1, .h = 28, .w = 28}, {.c = 3, .h = 32, .w = 32}, {.c = 1, .h = 4, .w = 4}, {.c = 3, .h = 1, .w = 1}};
  const nn_dims s = shapes[data[0] & 3];
  const char *p = fz_write("image", data + 1, size - 1);
  uint8_t *out = malloc((size_t)s.c * s.h * s.w);
  nn_error err = {0};
  fz_check_error(nn_image_load(p, s, out, &err), &err);
  free(out);
  return 0;
}
