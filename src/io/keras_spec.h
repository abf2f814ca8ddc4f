/* The model spec of a Keras 3 Sequential's config.json (src/io/keras_spec.c). */
#ifndef NN_IO_KERAS_SPEC_H
#define NN_IO_KERAS_SPEC_H
#include "normnet.h"

struct json_t;

/* 1 if `config` (a parsed config.json or model_config) is a Sequential, or a functional model
 * whose layers form one chain in the list's order: what normnet reads layer by layer. */
int nn_keras_is_chain(const struct json_t *config);
/* The spec text (malloc'd) of the Keras layers in `config` (the parsed config.json of the
 * .keras file at path, named in errors); NN_ERR_FORMAT naming the Keras layer and why it has
 * no normnet counterpart. */
nn_status nn_keras_config_spec(const struct json_t *config, const char *path, char **text, nn_error *err);
/* Keras's (TensorFlow's) padding="same" of one axis of `in` values under a window k and stride
 * st: ceil(in / st) outputs and the total padding they need (at least 0), total / 2 of it
 * before and the rest after; normnet's symmetric padding is it when the total is even. */
long nn_keras_same_pad_total(long in, int k, int st);

#endif
