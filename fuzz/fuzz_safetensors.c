/* A checkpoint (safetensors) loaded into a model: the header JSON, the metadata spec, every
 * tensor's dtype, shape and offsets. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20)) return 0;
  const char *p = fz_write("model.safetensors", data, size);
  nn_model *m = NULL;
  nn_error err = {0};
  nn_status st = nn_checkpoint_load(p, NULL, &m, &err);
  fz_check_error(st, &err);
  nn_model_free(m);
  return 0;
}
