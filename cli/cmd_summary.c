/* normnet summary: the Keras-style table of a preset, spec or checkpoint. */
#include <stdlib.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet summary [[--model] PRESET|SPECFILE|CHECKPOINT|RUNDIR] [--norm NORM[@after]] [--spec]\n"
    "\n"
    "Print layers, output shapes and parameter counts (trainable vs non-trainable, with BN\n"
    "running statistics counted as non-trainable as Keras does) and each norm layer's\n"
    "conventions. --norm replaces BN as train's --norm does (batch, group:G, layer, instance,\n"
    "none; @after places it after the activation). --spec prints the canonical spec text instead.\n";

int cmd_summary(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "summary"};
  const char *model_arg = NULL, *model_flag = NULL, *norm = NULL;
  int spec_only = 0;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--norm")) norm = a.val;
    else if (cli_flag(&a, "--spec")) spec_only = 1;
    else if (cli_model_opt(&a, 0, &model_arg, &model_flag)) {
    } else return cli_unknown(&a);
    if (a.bad) return EXIT_USAGE;
  }
  cli_model cm;
  if (!model_arg) model_arg = "lenet";
  int rc = cli_model_resolve("summary", model_flag, model_arg, &cm);
  nn_model *m = NULL;
  if (!rc) rc = cli_model_build("summary", &cm, norm, NN_INIT_DEFAULT, 0, &m);
  if (!rc) {
    char *text = spec_only ? nn_spec_to_text(nn_model_spec(m)) : nn_model_summary(m);
    if (!spec_only) {
      printf("Model: \"%s\"%s%s\n", model_arg, norm ? " norm=" : "", norm ? norm : "");
      if (cm.preset) printf("Seed: %s\n", cm.preset->seed);
    }
    fputs(text ? text : "", stdout);
    free(text);
  }
  nn_model_free(m);
  cli_model_free(&cm);
  return rc;
}
