/* normnet: train and inspect neural networks with Batch Normalization. */
#include <signal.h>
#include <string.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet <command> [options]\n"
    "\n"
    "commands:\n"
    "  train     train a preset or spec, evaluating each epoch (normnet train --help)\n"
    "  compare   train a preset with and without normalization; table and curves\n"
    "  eval      loss and accuracy of a trained model\n"
    "  summary   layers, shapes, parameters and BN conventions of a model\n"
    "  inspect   learned BN parameters and tracked activation statistics of a run\n"
    "  predict   top-k classes for images or data set records\n"
    "  fold      fold BatchNorm into the layer before it, for inference\n"
    "  recalibrate  re-estimate BN running statistics of a trained model\n"
    "  export    write a model for ONNX Runtime or Keras (--format onnx|keras)\n"
    "  report    one HTML page about runs: curves, tables, per-class results, BN, recipe, spec\n"
    "  plot      overlay the curves of any runs in one PNG/SVG\n"
    "  study     ready-made studies: small-batch (BN vs GroupNorm/LayerNorm vs batch size),\n"
    "            sync-bn (BN statistics synchronized over mpirun processes or not)\n"
    "\n"
    "normnet help COMMAND (or normnet COMMAND --help) shows a command's options;\n"
    "normnet --version prints the version.\n"
    "\n"
    "every command: --max-params N   model-size limit (parameters, and activation values per\n"
    "                                sample), checked before allocating; default 1073741824\n"
    "\n"
    "presets: lenet (seed 004), mlp, cnn (seed 000), cifar-cnn, cifar-gap (seed 001)\n"
    "example: normnet train --model lenet --epochs 10 --out runs/lenet\n";

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--probe-keras")) return cli_keras_probe_child(argv[2]); /* keras_probe.c */
  if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
    printf("normnet %s\n", nn_version());
    return EXIT_OK;
  }
  /* normnet help CMD [SUB] (a study's name: normnet help study sync-bn) */
  int help_cmd = (argc == 3 || argc == 4) && !strcmp(argv[1], "help");
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || (!strcmp(argv[1], "help") && !help_cmd)) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : EXIT_OK;
  }
  /* A file-size limit (ulimit -f) makes a write fail with EFBIG, reported as an error,
   * instead of killing the process half-way through writing a file. */
  signal(SIGXFSZ, SIG_IGN);
  if (cli_take_max_params(&argc, argv)) return EXIT_USAGE;
  static const struct {
    const char *name;
    int (*run)(int, char **);
  } cmds[] = {{"train", cmd_train}, {"compare", cmd_compare}, {"eval", cmd_eval}, {"summary", cmd_summary}, {"inspect", cmd_inspect}, {"predict", cmd_predict}, {"fold", cmd_fold}, {"recalibrate", cmd_recalibrate}, {"study", cmd_study}, {"export", cmd_export}, {"report", cmd_report}, {"plot", cmd_plot}};
  /* a mistyped command: the closest one, if any is close ("; did you mean 'train'?") */
  const char *names[sizeof cmds / sizeof cmds[0]];
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) names[i] = cmds[i].name;
  const char *word = help_cmd ? argv[2] : argv[1];
  const char *close = cli_closest(word, strlen(word), names, (int)(sizeof names / sizeof names[0]), 0);
  char hint[64] = "";
  if (close) snprintf(hint, sizeof hint, "; did you mean '%s'?", close);
  if (help_cmd) { /* normnet help CMD [SUB] = normnet CMD [SUB] --help */
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
      if (!strcmp(argv[2], cmds[i].name)) {
        char *args[] = {argv[2], argc == 4 ? argv[3] : "--help", "--help", NULL};
        return cmds[i].run(argc == 4 ? 3 : 2, args);
      }
    cli_error("help", "unknown command '%s'%s (the commands are listed by normnet --help)", argv[2],
              hint);
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    if (strcmp(argv[1], cmds[i].name)) continue;
    /* under mpirun only train runs: one model on all processes (ARCHITECTURE.md §9) */
    int rc = cli_dist_start(&argc, &argv);
    if (!rc && cli_comm()->size > 1 && cmds[i].run != cmd_train) {
      cli_error(argv[1], "only 'normnet train' runs over mpirun (%d processes here)", cli_comm()->size);
      rc = EXIT_USAGE;
    }
    if (!rc) rc = cmds[i].run(argc - 1, argv + 1);
    return cli_dist_finish(rc);
  }
  /* one line, as every error: the commands, not the whole usage (the argument echoed as
   * cli_error echoes: control bytes as \xNN) */
  char list[512] = "";
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s %s", i ? "," : "", cmds[i].name);
  nn_error e;
  nn_error_set(&e, NN_ERR_ARG, "unknown command '%s'%s (commands:%s; normnet --help)", argv[1],
               hint, list);
  fprintf(stderr, "normnet: %s\n", e.msg);
  return EXIT_USAGE;
}
