/* normnet recalibrate: fresh BN running statistics for a trained model. */
#include <stdlib.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet recalibrate [--model] RUNDIR|CHECKPOINT --out FILE [options]\n"
    "\n"
    "Forget every batchnorm's running statistics and re-estimate them as the cumulative\n"
    "average over N training batches, weights unchanged; prints the test accuracy before\n"
    "and after (eval mode).\n"
    "\n"
    "  --data SOURCE             default: the data set the model was trained on\n"
    "  --batches N               default 100\n"
    "  --batch B                 default 128\n"
    "  --seed S                  which training samples (default 0)\n"
    "  --threads N               worker threads (default: the library's choice)\n";

static double eval_acc(nn_model *m, const nn_dataset *ds, nn_input_norm norm, nn_error *err, int *fail) {
  double loss, acc = 0;
  if (nn_evaluate(m, ds, norm, 256, NN_MODE_EVAL, &loss, &acc, err)) *fail = 1;
  return acc;
}

int cmd_recalibrate(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "recalibrate"};
  const char *model_arg = NULL, *model_flag = NULL, *out = NULL, *data = NULL;
  nn_recalibrate_config rcfg = {.batch_size = 128, .batches = 100};
  unsigned long long seed = 0; /* rcfg.seed, once parsed */
  int threads = 0;
  while (a.i < argc) {
    int bad = 0;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--data")) data = a.val;
    else if (cli_opt(&a, "--batches")) bad = cli_int(&a, "--batches", 1, 1 << 24, &rcfg.batches);
    else if (cli_opt(&a, "--batch")) bad = cli_int(&a, "--batch", 2, 1 << 20, &rcfg.batch_size);
    else if (cli_opt(&a, "--seed")) bad = cli_u64(&a, "--seed", &seed);
    else if (cli_opt(&a, "--threads")) bad = cli_int(&a, "--threads", 1, 1024, &threads);
    else if (cli_model_opt(&a, 1, &model_arg, &model_flag)) {
    } else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  rcfg.seed = seed;
  if (!model_arg || !out) {
    cli_error("recalibrate", "needs --model RUNDIR|CHECKPOINT and --out FILE");
    return EXIT_USAGE;
  }
  if (cli_out_spares_run("recalibrate", "--out", out)) {
    return EXIT_USAGE;
  }
  cli_model cm;
  int rc = cli_model_resolve("recalibrate", model_flag, model_arg, &cm);
  if (rc) return rc;
  if (!cm.checkpoint[0]) {
    cli_error("recalibrate", "%s is not a trained checkpoint or run directory", model_arg);
    cli_model_free(&cm);
    return EXIT_USAGE;
  }
  if ((rc = cli_out_spares_input("recalibrate", "--out", out, cm.checkpoint))) {
    cli_model_free(&cm);
    return rc;
  }
  nn_error err = {0};
  nn_model *m = NULL;
  nn_dataset *train = NULL, *test = NULL;
  nn_input_norm norm = {0};
  const char *source = NULL, *source_from = NULL;
  rc = cli_checkpoint_load("recalibrate", cm.checkpoint, NULL, &m);
  if (!rc) rc = cli_model_finite("recalibrate", cm.checkpoint, m, 0); /* new statistics may be the cure */
  if (!rc) nn_model_set_threads(m, threads);
  if (!rc) rc = cli_model_input("recalibrate", &cm, m, NULL, data, &norm, &source, &source_from);
  int fail = 0;
  if (!rc && (nn_dataset_open(source, NN_SPLIT_TRAIN, &train, &err) || nn_dataset_open(source, NN_SPLIT_TEST, &test, &err)))
    rc = cli_fail("recalibrate", &err);
  double before = rc ? 0 : eval_acc(m, test, norm, &err, &fail);
  if (!rc && !fail && nn_model_recalibrate(m, train, norm, &rcfg, &err)) fail = 1;
  double after = rc || fail ? 0 : eval_acc(m, test, norm, &err, &fail);
  if (!rc && fail) rc = cli_fail("recalibrate", &err);
  if (!rc) {
    /* the model keeps its input transform; its data source is the one just used (source may
     * point at the model's own copy, which nn_model_set_input replaces: read it back after) */
    nn_meta_pair meta[1] = {{"normnet.recalibrated_from", cm.checkpoint}};
    if (nn_model_set_input(m, NULL, source, &err) || nn_checkpoint_save(m, out, meta, 1, &err))
      rc = cli_fail("recalibrate", &err);
  }
  if (!rc)
    printf("recalibrated %s over %d batches of %d from %s (%s): test accuracy %.4f -> %.4f, saved %s\n",
           cm.checkpoint, rcfg.batches, rcfg.batch_size, nn_model_data_source(m), source_from, before, after, out);
  nn_dataset_free(train);
  nn_dataset_free(test);
  nn_model_free(m);
  cli_model_free(&cm);
  return rc;
}
