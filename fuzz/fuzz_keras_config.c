/* A Keras .keras file's config.json: the architecture read into a spec without one given
 * (src/io/keras_spec.c), then the model built under a small size limit. The input is the
 * config; the archive around it is made here (its weights are not read for the spec). */
#include <stdlib.h>
#include <zip.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 16)) return 0;
  const char *path = fz_write("model.keras", (const uint8_t *)"", 0);
  int ze = 0;
  zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
  if (!za) __builtin_trap();
  zip_source_t *src = zip_source_buffer(za, data, size, 0);
  if (!src || zip_file_add(za, "config.json", src, ZIP_FL_OVERWRITE) < 0 || zip_close(za) != 0) __builtin_trap();
  nn_spec *s = NULL;
  nn_error err = {0};
  nn_status st = nn_checkpoint_load_spec(path, &s, &err);
  fz_check_error(st, &err);
  if (!st) {
    nn_spec_set_max_params(s, 1u << 16);
    nn_model *m = NULL;
    fz_check_error(nn_model_create(s, &m, &err), &err);
    nn_model_free(m);
  }
  nn_spec_free(s);
  return 0;
}
