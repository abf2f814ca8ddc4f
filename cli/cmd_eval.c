/* normnet eval: loss and accuracy of a trained model on a data split. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet eval --model RUNDIR|CHECKPOINT [options]\n"
    "       normnet eval --checkpoint FILE [--model PRESET|SPECFILE] [options]\n"
    "\n"
    "Evaluate a trained model (default: the test split, in eval mode).\n"
    "\n"
    "  --model X                 a run directory (train --out), a .safetensors file, or, with\n"
    "                            --checkpoint, the preset/spec of a checkpoint without metadata\n"
    "  --checkpoint FILE         the weights to evaluate\n"
    "  --data SOURCE             fashion-mnist, mnist:DIR, idx:DIR, cifar10:DIR (default: the data\n"
    "                            the model was trained on, as it records)\n"
    "  --split test|train        which split (default test)\n"
    "  --mode eval|train         eval: running statistics (right); train: batch statistics, the\n"
    "                            'forgot model.eval()' pitfall (it also moves the running stats)\n"
    "  --batch B                 evaluation batch size (default 256)\n"
    "  --input-norm MEAN,STD     override the pixel transform stored in the checkpoint\n"
    "  --threads N               worker threads\n"
    "  --json                    print one JSON object instead of text\n";

int cmd_eval(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "eval", NULL, 0};
  const char *model_arg = NULL, *ckpt = NULL, *data_arg = NULL, *split = "test", *mode_name = "eval";
  const char *input_norm = NULL;
  int batch = 256, json = 0, threads = 0;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    int bad = 0;
    if (cli_opt(&a, "--model")) model_arg = a.val;
    else if (cli_opt(&a, "--checkpoint")) ckpt = a.val;
    else if (cli_opt(&a, "--data")) data_arg = a.val;
    else if (cli_opt(&a, "--split")) split = a.val;
    else if (cli_opt(&a, "--mode")) mode_name = a.val;
    else if (cli_opt(&a, "--input-norm")) input_norm = a.val;
    else if (cli_opt(&a, "--batch")) bad = cli_int(&a, "--batch", 1, 1 << 20, &batch);
    else if (cli_opt(&a, "--threads")) bad = cli_int(&a, "--threads", 1, 1024, &threads);
    else if (cli_flag(&a, "--json")) json = 1;
    else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  if (threads) nn_set_threads(threads);
  if (strcmp(split, "test") && strcmp(split, "train")) {
    cli_error("eval", "--split: expected test or train, got '%s'", split);
    return EXIT_USAGE;
  }
  if (strcmp(mode_name, "eval") && strcmp(mode_name, "train")) {
    cli_error("eval", "--mode: expected eval or train, got '%s'", mode_name);
    return EXIT_USAGE;
  }
  if (!model_arg && !ckpt) {
    cli_error("eval", "needs a trained model: --model RUNDIR|CHECKPOINT or --checkpoint FILE");
    return EXIT_USAGE;
  }
  cli_model cm = {0};
  if (model_arg) {
    int rc = cli_model_resolve("eval", model_arg, &cm);
    if (rc) return rc;
  }
  if (ckpt) snprintf(cm.checkpoint, sizeof cm.checkpoint, "%s", ckpt);
  if (!cm.checkpoint[0]) {
    cli_error("eval", "--model %s is not trained; pass --checkpoint FILE or a run directory", model_arg);
    cli_model_free(&cm);
    return EXIT_USAGE;
  }
  nn_input_norm norm;
  const char *data = NULL, *data_from = NULL;
  nn_model *m = NULL;
  nn_dataset *ds = NULL;
  nn_error err = {0};
  double loss = 0, acc = 0;
  nn_mode mode = strcmp(mode_name, "train") ? NN_MODE_EVAL : NN_MODE_TRAIN;
  int rc = cli_model_build("eval", &cm, NULL, NN_INIT_DEFAULT, 0, &m);
  if (!rc) rc = cli_model_input("eval", &cm, m, input_norm, data_arg, &norm, &data, &data_from);
  if (!rc && (nn_dataset_open(data, strcmp(split, "train") ? NN_SPLIT_TEST : NN_SPLIT_TRAIN, &ds, &err) ||
              nn_evaluate(m, ds, norm, batch, mode, &loss, &acc, &err)))
    rc = cli_fail("eval", &err);
  if (!rc && json)
    printf("{\"checkpoint\": \"%s\", \"data\": \"%s\", \"data_from\": \"%s\", \"split\": \"%s\", \"mode\": \"%s\", \"samples\": %d, "
           "\"loss\": %.6f, \"accuracy\": %.6f}\n",
           cm.checkpoint, data, data_from, split, mode_name, nn_dataset_count(ds), loss, acc);
  else if (!rc)
    printf("%s on %s/%s (data %s; %d samples, %s mode): loss %.4f, accuracy %.4f\n", cm.checkpoint, data, split,
           data_from, nn_dataset_count(ds), mode_name, loss, acc);
  nn_dataset_free(ds);
  nn_model_free(m);
  cli_model_free(&cm);
  return rc;
}
