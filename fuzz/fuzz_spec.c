/* Model spec text: parse, build the model under a small size limit, print it back and
 * check the printed spec parses to the same text (the round trip the checkpoint relies on). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = 0;
  nn_spec *s = NULL;
  nn_error err = {0};
  nn_status st = nn_spec_parse(text, "fuzz.spec", &s, &err);
  fz_check_error(st, &err);
  free(text);
  if (st) return 0;
  nn_spec_set_max_params(s, 1u << 16);
  nn_model *m = NULL;
  st = nn_model_create(s, &m, &err);
  fz_check_error(st, &err);
  char *printed = nn_spec_to_text(s);
  nn_spec *again = NULL;
  if (nn_spec_parse(printed, "printed", &again, &err)) __builtin_trap();
  char *twice = nn_spec_to_text(again);
  if (strcmp(printed, twice)) __builtin_trap();
  if (!st) {
    /* a forward pass of 2 samples on the built model: sizes agree with the shapes */
    int n = nn_model_input_size(m);
    float *x = calloc((size_t)n * 2, sizeof *x);
    int32_t y[2] = {0, 1};
    if (x) {
      nn_status f = nn_model_forward(m, x, y, 2, NN_MODE_TRAIN, NULL, NULL, NULL, &err);
      fz_check_error(f, &err);
      if (!f) fz_check_error(nn_model_backward(m, &err), &err);
    }
    free(x);
  }
  free(printed), free(twice);
  nn_spec_free(again);
  nn_model_free(m);
  nn_spec_free(s);
  return 0;
}
