/* normnet export: write a trained model as ONNX or Keras 3 for other runtimes. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet export RUNDIR|CHECKPOINT --format onnx|keras --out FILE [--fold]\n"
    "\n"
    "Write a trained model for another runtime, input transform included: both files take raw\n"
    "pixels scaled to [0, 1].\n"
    "  onnx    ONNX opset 17 for ONNX Runtime: input 'input' float32 NCHW ([N, F] for a flat\n"
    "          model), output 'logits'; BatchNorm as BatchNormalization\n"
    "  keras   Keras 3 .keras file (keras.saving.load_model): a Sequential of Keras's own\n"
    "          layers on NHWC input, ending in softmax\n"
    "\n"
    "  --fold                    fold each batchnorm into the layer before it first\n"
    "  --input-norm MEAN,STD     override the pixel transform the model records (STD >= 1e-6)\n";

int cmd_export(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "export"};
  const char *in = NULL, *in_flag = NULL, *format = NULL, *out = NULL, *input_norm = NULL;
  int fold = 0;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--format")) format = a.val;
    else if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--input-norm")) input_norm = a.val;
    else if (cli_flag(&a, "--fold")) fold = 1;
    else if (cli_model_opt(&a, 1, &in, &in_flag)) {
    } else return cli_unknown(&a);
    if (a.bad) return EXIT_USAGE;
  }
  if (!in || !format || !out) {
    cli_error("export", "needs a model (RUNDIR or CHECKPOINT), --format onnx|keras and --out FILE");
    return EXIT_USAGE;
  }
  int keras = !strcmp(format, "keras");
  if (keras && !cli_has_ext(out, ".keras")) { /* Keras 3 picks its reader by the name */
    cli_error("export",
              "--out %s: a Keras 3 model file must end in .keras (keras.saving.load_model reads a .h5 "
              "name as a legacy HDF5 model)",
              out);
    return EXIT_USAGE;
  }
  if (!keras && strcmp(format, "onnx")) {
    cli_error("export", "--format: expected onnx or keras, got '%s'", format);
    return EXIT_USAGE;
  }
  if (!keras && !cli_has_ext(out, ".onnx")) { /* a typo must not land on another kind of file */
    cli_error("export", "--out %s: an ONNX model file must end in .onnx", out);
    return EXIT_USAGE;
  }
  cli_model cm;
  int rc = cli_model_resolve("export", in_flag, in, &cm);
  if (rc) return rc;
  if (!cm.checkpoint[0]) {
    cli_error("export", "%s is not a trained checkpoint or run directory", in);
    cli_model_free(&cm);
    return EXIT_USAGE;
  }
  if ((rc = cli_out_spares_input("export", "--out", out, cm.checkpoint))) { /* a .keras model exported over itself */
    cli_model_free(&cm);
    return rc;
  }
  nn_model *m = NULL, *f = NULL;
  nn_error err = {0};
  nn_input_norm norm = {0};
  const char *data = NULL, *data_from = NULL;
  rc = cli_model_build("export", &cm, NULL, NN_INIT_DEFAULT, 0, &m);
  if (!rc) rc = cli_model_finite("export", cm.checkpoint, m, 1);
  /* the transform the model records (or --input-norm) */
  if (!rc) rc = cli_model_input("export", &cm, m, input_norm, NULL, &norm, &data, &data_from);
  if (!rc && fold && nn_model_fold(m, &f, &err)) rc = cli_fail("export", &err);
  const nn_model *src = f ? f : m;
  if (!rc && (keras ? nn_export_keras(src, norm, out, &err) : nn_export_onnx(src, norm, out, &err)))
    rc = cli_fail("export", &err);
  if (!rc)
    printf("exported %s -> %s (%s%s, %d layers, %zu parameters, input transform (x - %g) / %g)\n", cm.checkpoint, out,
           keras ? "Keras 3" : "ONNX opset 17", f ? ", batchnorm folded" : "", nn_model_num_layers(src),
           nn_model_param_count(src), norm.mean, norm.std);
  nn_model_free(m);
  nn_model_free(f);
  cli_model_free(&cm);
  return rc;
}
