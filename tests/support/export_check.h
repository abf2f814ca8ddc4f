/* Structural validators for exported files, independent of the exporters' code paths
 * (they decode the bytes the way a runtime would):
 *   ONNX   every protobuf field decodes; ir_version >= 8, default-domain opset >= 17; one
 *          graph input "input" and output "logits"; every initializer has a name, FLOAT or
 *          INT64 type and raw_data of exactly prod(dims) elements, names unique; every node
 *          has an op_type and one output, reads only tensors defined before it, and
 *          attributes carry their type.
 *   Keras  the zip holds exactly metadata.json, config.json and model.weights.h5; config is a
 *          Sequential starting with an InputLayer; shapes are propagated through the layers
 *          from the input's batch_shape, and every layer's layers/<name>/vars group holds
 *          exactly the variables Keras creates for its config, with the shapes Keras
 *          expects for that input.
 * Each returns 0 or -1 with the reason in why. */
#ifndef NN_TEST_EXPORT_CHECK_H
#define NN_TEST_EXPORT_CHECK_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int64_t ir_version, opset;
  char ops[2048]; /* op types in node order, space separated */
  int ninit;
  char input[64]; /* dims of "input", e.g. "N,1,28,28" */
  char output[64];
  char producer[32], producer_version[32]; /* ModelProto fields 2 and 3 */
} xc_onnx;
int xc_onnx_check(const unsigned char *b, size_t n, xc_onnx *s, char *why, size_t whylen);
/* Initializer `name` as floats (malloc'd copy) and its dims; 0 if found. */
int xc_onnx_floats(const unsigned char *b, size_t n, const char *name, float **data, int64_t *dims, int *ndim);

typedef struct {
  char classes[2048]; /* layer class names in order, space separated (InputLayer first) */
  int nlayers;
  int nvars; /* datasets found under layers/ */
} xc_keras;
int xc_keras_check(const unsigned char *b, size_t n, xc_keras *s, char *why, size_t whylen);
/* Variable idx of layer `name` (layers/<name>/vars/<idx>) as floats (malloc'd) and dims. */
int xc_keras_var(const unsigned char *b, size_t n, const char *name, int idx, float **data, int *dims, int *ndim);

/* A spec with every layer kind (padding, groups, tracked and untracked instance norm, flat
 * and CxHxW layer norm, BN after Flatten, dropout) for the exporter and importer tests. */
extern const char xc_every_kind[];

#endif
