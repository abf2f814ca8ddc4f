/* activations.csv read back by inspect: rows sorted, each (epoch, layer) once, in range. */
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 16)) return 0;
  const char *p = fz_write("activations.csv", data, size);
  nn_activation_row *rows = NULL;
  int n = 0;
  nn_error err = {0};
  nn_status st = nn_activations_read_csv(p, &rows, &n, &err);
  fz_check_error(st, &err);
  for (int i = 0; !st && i < n; i++) {
    if (rows[i].epoch < 0 || rows[i].layer < 0 || !rows[i].kind[0]) __builtin_trap();
    if (i && (rows[i].epoch < rows[i - 1].epoch ||
              (rows[i].epoch == rows[i - 1].epoch && rows[i].layer <= rows[i - 1].layer)))
      __builtin_trap();
  }
  free(rows);
  return 0;
}
