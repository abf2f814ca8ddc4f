/* Spec structure operations: append, copy, free, and the normalization switch. */
#include "model/spec.h"

#include <stdlib.h>
#include <string.h>

nn_status nn_spec_append(nn_spec *s, const nn_layer_spec *ls, nn_error *err) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    nn_layer_spec *l = realloc(s->layers, (size_t)cap * sizeof *l);
    if (!l) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", s->source);
    s->layers = l;
    s->cap = cap;
  }
  s->layers[s->n++] = *ls;
  return NN_OK;
}

nn_spec *nn_spec_copy(const nn_spec *s) {
  nn_spec *c = malloc(sizeof *c);
  if (!c) return NULL;
  *c = *s;
  c->cap = s->n ? s->n : 1;
  c->layers = malloc((size_t)c->cap * sizeof *c->layers);
  if (!c->layers) {
    free(c);
    return NULL;
  }
  if (s->n) memcpy(c->layers, s->layers, (size_t)s->n * sizeof *s->layers);
  return c;
}

void nn_spec_free(nn_spec *s) {
  if (!s) return;
  free(s->layers);
  free(s);
}

static int is_norm(nn_layer_kind k) { return k == NN_LAYER_BATCHNORM; }

nn_status nn_spec_set_norm(nn_spec *s, const char *norm, nn_error *err) {
  if (strcmp(norm, "batch") == 0) return NN_OK;
  if (strcmp(norm, "none") != 0)
    return nn_err_set(err, NN_ERR_ARG, "unknown normalization '%s' (expected batch or none)", norm);
  int out = 0;
  for (int i = 0; i < s->n; i++) {
    nn_layer_spec *ls = &s->layers[i];
    if (!is_norm(ls->kind)) {
      s->layers[out++] = *ls;
      continue;
    }
    /* The twin without normalization: the layer before gets back its bias. */
    if (out > 0) {
      nn_layer_spec *prev = &s->layers[out - 1];
      if (prev->kind == NN_LAYER_DENSE) prev->cfg.dense.bias = 1;
      if (prev->kind == NN_LAYER_CONV2D) prev->cfg.conv.bias = 1;
    }
  }
  s->n = out;
  return NN_OK;
}
