/* Exporters (ARCHITECTURE.md §10): ONNX and Keras 3 files written from a loaded model. The public
 * entry points are in normnet.h; these build the bytes in memory (tests, validators). */
#ifndef NN_EXPORT_EXPORT_H
#define NN_EXPORT_EXPORT_H
#include <stddef.h>

#include "normnet.h"

/* The whole ONNX ModelProto; *out is malloc'd. */
nn_status nn_export_onnx_bytes(const nn_model *m, nn_input_norm norm, unsigned char **out, size_t *len, nn_error *err);

/* The whole .keras zip; *out is malloc'd. */
nn_status nn_export_keras_bytes(const nn_model *m, nn_input_norm norm, unsigned char **out, size_t *len, nn_error *err);

#endif
