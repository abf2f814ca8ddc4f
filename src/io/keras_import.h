/* Keras import and file-kind detection (src/io/keras_import.c). */
#ifndef NN_IO_KERAS_IMPORT_H
#define NN_IO_KERAS_IMPORT_H
#include <stddef.h>

#include "normnet.h"

typedef enum { NN_FILE_OTHER = 0,
               NN_FILE_ZIP,
               NN_FILE_HDF5,
               NN_FILE_PICKLE } nn_file_kind;

/* What the first len bytes of a file (all of them, up to NN_FILE_SNIFF_BYTES) say: a zip
 * archive (Keras .keras, or PyTorch's zip torch.save), HDF5 (Keras .weights.h5), a pickle
 * (legacy torch.save), or anything else (a safetensors file among them). */
#define NN_FILE_SNIFF_BYTES 9
nn_file_kind nn_file_sniff(const unsigned char *head, size_t len);
/* The kind of the file at path (its first NN_FILE_SNIFF_BYTES bytes). */
nn_status nn_file_kind_of(const char *path, nn_file_kind *kind, nn_error *err);
/* The error for a file of that kind where a safetensors checkpoint was expected: a PyTorch
 * pickle or zip says how to convert it, a Keras file how to load it. */
nn_status nn_not_safetensors(const char *path, nn_file_kind kind, nn_error *err);
/* The error for a PyTorch pickle: how to convert it (tools/torch_interop.py from-torch). */
nn_status nn_torch_refusal(const char *path, nn_error *err);
/* The spec of the model in a Keras .keras file (kind ZIP) or legacy Keras HDF5 file
 * (model.save("x.h5"), kind HDF5): its config's architecture (src/io/keras_spec.c); a
 * .weights.h5 has none (the error says to give the spec). */
nn_status nn_keras_read_spec(const char *path, nn_file_kind kind, nn_spec **out, nn_error *err);
/* Read a Keras .keras (kind ZIP) or .weights.h5 (kind HDF5) into a new model of spec (NULL:
 * nn_keras_read_spec's), or into an existing model. A PyTorch zip is refused with
 * nn_torch_refusal. */
nn_status nn_keras_load(const char *path, nn_file_kind kind, const nn_spec *spec, nn_model **out, nn_error *err);
nn_status nn_keras_load_into(const char *path, nn_file_kind kind, nn_model *m, nn_error *err);
/* The input transform of a Keras model whose first layer is Rescaling(scale, offset): on
 * [0, 1] inputs as normnet's exporter writes it, on raw 0-255 pixels below a scale of 0.05
 * (Keras's Rescaling(1./255) idiom). */
nn_input_norm nn_keras_rescaling_norm(double scale, double offset, int raw);

#endif
