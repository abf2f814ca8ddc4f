/* history.csv read back on resume. Byte 0 = the number of epochs asked for. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 16)) return 0;
  const char *p = fz_write("history.csv", data + 1, size - 1);
  nn_history *h = NULL;
  nn_error err = {0};
  nn_status st = nn_history_read_csv(p, data[0], &h, &err);
  fz_check_error(st, &err);
  if (!st && nn_history_count(h) != data[0]) __builtin_trap();
  nn_history_free(h);
  return 0;
}
