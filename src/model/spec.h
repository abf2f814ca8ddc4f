/* The parsed model spec: the single description that the model, a checkpoint, the
 * summary and the CLI all read (ARCHITECTURE.md §3). Text parsing/printing is io/spec_text.c. */
#ifndef NN_MODEL_SPEC_H
#define NN_MODEL_SPEC_H
#include "layers/layer.h"

struct nn_spec {
  char source[256]; /* file or preset name, for messages */
  nn_shape input;
  int input_line;
  int softmax_line; /* line of a final 'softmax' (Keras style): shown, applied by the loss */
  int n, cap;
  nn_layer_spec *layers;
  unsigned long long max_params; /* model-size limit; 0 = NN_DEFAULT_MAX_PARAMS */
};

/* Append a layer; returns NN_ERR_NOMEM on failure. */
nn_status nn_spec_append(nn_spec *s, const nn_layer_spec *ls, nn_error *err);
nn_spec *nn_spec_copy(const nn_spec *s);
/* A normalization choice as the CLI and recipes spell it: NORM (nn_norm_parse) or
 * NORM@before|after (then nn_bn_placement_parse); *placement is -1 without '@'. */
nn_status nn_norm_spelling_parse(const char *text, nn_norm_choice *norm, int *placement, nn_error *err);

#endif
