/* normnet eval: loss and accuracy of a trained model on a data split. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet eval [--model] RUNDIR|CHECKPOINT [options]\n"
    "       normnet eval --checkpoint FILE [--model PRESET|SPECFILE] [options]\n"
    "\n"
    "Evaluate a trained model (default: the test split, in eval mode).\n"
    "\n"
    "  --model X                 a run directory (train --out), a .safetensors file, or, with\n"
    "                            --checkpoint, the preset/spec of a checkpoint without metadata\n"
    "  --checkpoint FILE         the weights to evaluate\n"
    "  --data SOURCE             fashion-mnist, mnist:DIR, idx:DIR, cifar10:DIR or a DIR of them\n"
    "                            (default: the data the model was trained on, as it records)\n"
    "  --split test|train|val    which split (default test); val: the validation part a run\n"
    "                            trained with --val-split held out of its training data (of\n"
    "                            the run directory given, or holding the checkpoint given)\n"
    "  --mode eval|train         eval: running statistics (right); train: batch statistics, the\n"
    "                            'forgot model.eval()' pitfall (it also moves the running stats)\n"
    "  --batch B                 evaluation batch size (default 256)\n"
    "  --input-norm MEAN,STD     override the pixel transform stored in the checkpoint (STD >= 1e-6)\n"
    "  --threads N               worker threads\n"
    "  --out DIR                 also write DIR/confusion.png (the confusion matrix)\n"
    "  --json                    print one JSON object instead of text (with per_class_accuracy\n"
    "                            and confusion, rows = true class)\n"
    "\n"
    "Prints the loss and accuracy, the accuracy of each class and the confusion matrix (rows:\n"
    "true class, columns: predicted), with the data set's class names.\n";

static const char *class_label(const nn_dataset *ds, int c, char *buf, size_t len) {
  const char *name = nn_dataset_class_name(ds, c);
  if (name) return name;
  snprintf(buf, len, "%d", c);
  return buf;
}

/* Per-class accuracy, then the confusion matrix with class numbers as column heads (a key
 * maps them to names). */
static void print_classes(const nn_confusion *cm, const nn_dataset *ds) {
  int k = cm->classes;
  char buf[32];
  printf("\n%-4s %-14s %8s %9s\n", "", "class", "samples", "accuracy");
  for (int c = 0; c < k; c++) {
    long row = 0;
    for (int p = 0; p < k; p++) row += cm->counts[(size_t)c * k + p];
    printf("%-4d %-14.14s %8ld ", c, class_label(ds, c, buf, sizeof buf), row);
    double a = nn_confusion_class_accuracy(cm, c);
    if (isfinite(a)) printf("%9.4f\n", a);
    else printf("%9s\n", "-");
  }
  printf("\nconfusion matrix (rows: true class, columns: predicted class)\n%-6s", "true");
  for (int p = 0; p < k; p++) printf(" %6d", p);
  printf("\n");
  for (int t = 0; t < k; t++) {
    printf("%-6d", t);
    for (int p = 0; p < k; p++) printf(" %6ld", cm->counts[(size_t)t * k + p]);
    printf("\n");
  }
}

static void print_json(const cli_model *cm, const char *data, const char *data_from, const char *split,
                       const char *mode, const nn_confusion *cmx, const nn_dataset *ds) {
  int k = cmx->classes;
  char buf[32];
  printf("{\"checkpoint\": ");
  cli_json_string(stdout, cm->checkpoint);
  printf(", \"data\": ");
  cli_json_string(stdout, data);
  printf(", \"data_from\": ");
  cli_json_string(stdout, data_from);
  printf(", \"split\": ");
  cli_json_string(stdout, split);
  printf(", \"mode\": ");
  cli_json_string(stdout, mode);
  printf(", \"samples\": %ld, \"loss\": ", cmx->samples);
  cli_json_number(stdout, "%.6f", cmx->loss);
  printf(", \"accuracy\": ");
  cli_json_number(stdout, "%.6f", cmx->accuracy);
  printf(", \"classes\": [");
  for (int c = 0; c < k; c++) {
    printf("%s", c ? ", " : "");
    cli_json_string(stdout, class_label(ds, c, buf, sizeof buf));
  }
  printf("], \"per_class_accuracy\": [");
  for (int c = 0; c < k; c++) {
    printf("%s", c ? ", " : "");
    cli_json_number(stdout, "%.6f", nn_confusion_class_accuracy(cmx, c));
  }
  printf("], \"confusion\": [");
  for (int t = 0; t < k; t++) {
    printf("%s[", t ? ", " : "");
    for (int p = 0; p < k; p++) printf("%s%ld", p ? ", " : "", cmx->counts[(size_t)t * k + p]);
    printf("]");
  }
  printf("]}\n");
}

/* DIR/confusion.png; "wrote" is said in text mode only (--json prints JSON alone) */
static int write_confusion(const char *dir, const nn_confusion *cmx, const nn_dataset *ds, const char *data,
                           const char *split, int json) {
  nn_error derr = {0};
  if (nn_file_make_dirs(dir, &derr)) return cli_fail("eval", &derr);
  const char *names[1024];
  int k = cmx->classes < 1024 ? cmx->classes : 1024;
  for (int c = 0; c < k; c++) names[c] = nn_dataset_class_name(ds, c);
  char path[4200], title[512];
  snprintf(path, sizeof path, "%s/confusion.png", dir);
  snprintf(title, sizeof title, "%s/%s: accuracy %.4f", data, split, cmx->accuracy);
  nn_error err = {0};
  if (nn_plot_confusion(cmx, names, k, title, path, NULL, &err)) return cli_fail("eval", &err);
  if (!json) printf("wrote %s\n", path);
  return EXIT_OK;
}

/* --split val: the run in dir (a run directory trained with --val-split, its checkpoint
 * ckpt), its validation split loaded as its evaluation data. */
static int open_validation(const char *dir, const char *data_arg, const char *ckpt, nn_run **view) {
  struct stat sb;
  if (!dir || stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
    cli_error("eval",
              "--split val needs the run directory, or a checkpoint inside it (the validation split is cut "
              "by its recipe)");
    return EXIT_USAGE;
  }
  if (data_arg) {
    cli_error("eval", "--split val is part of the run's recorded training data; --data cannot change it");
    return EXIT_USAGE;
  }
  nn_error err = {0};
  int rc = cli_checkpoint_check("eval", ckpt); /* --max-params, before the view builds the model */
  if (rc) return rc;
  if (nn_run_open_view(dir, view, &err)) return cli_fail("eval", &err);
  if (nn_run_recipe(*view)->val_split <= 0) {
    cli_error("eval", "--split val: %s was not trained with --val-split (it has no validation split)", dir);
    return EXIT_USAGE;
  }
  if (nn_run_load_eval_data(*view, &err)) return cli_fail("eval", &err);
  return EXIT_OK;
}

int cmd_eval(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "eval"};
  const char *model_arg = NULL, *model_flag = NULL, *ckpt = NULL, *data_arg = NULL, *split = "test", *mode_name = "eval";
  const char *input_norm = NULL, *out = NULL;
  int batch = 256, json = 0, threads = 0;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    int bad = 0;
    if (cli_opt(&a, "--checkpoint")) ckpt = a.val;
    else if (cli_opt(&a, "--data")) data_arg = a.val;
    else if (cli_opt(&a, "--split")) split = a.val;
    else if (cli_opt(&a, "--mode")) mode_name = a.val;
    else if (cli_opt(&a, "--input-norm")) input_norm = a.val;
    else if (cli_opt(&a, "--batch")) bad = cli_int(&a, "--batch", 1, 1 << 20, &batch);
    else if (cli_opt(&a, "--threads")) bad = cli_int(&a, "--threads", 1, 1024, &threads);
    else if (cli_flag(&a, "--json")) json = 1;
    else if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_model_opt(&a, 0, &model_arg, &model_flag)) {
    } else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  const int val = !strcmp(split, "val");
  if (strcmp(split, "test") && strcmp(split, "train") && !val) {
    cli_error("eval", "--split: expected test, train or val, got '%s'", split);
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
    int rc = cli_model_resolve("eval", model_flag, model_arg, &cm);
    if (rc) return rc;
  }
  if (cli_model_trained("eval", &cm, ckpt)) {
    cli_model_free(&cm);
    return EXIT_USAGE;
  }
  nn_input_norm norm = {0};
  const char *data = NULL, *data_from = NULL;
  nn_model *built = NULL, *m = NULL;
  nn_dataset *ds = NULL;
  nn_error err = {0};
  nn_confusion cmx = {0};
  nn_mode mode = strcmp(mode_name, "train") ? NN_MODE_EVAL : NN_MODE_TRAIN;
  /* --split val: the run's view holds the model and, as its evaluation data, the validation
   * split; otherwise the model is built from the checkpoint */
  nn_run *view = NULL;
  /* a checkpoint inside a run directory (its best.safetensors: early stopping's result) is
   * evaluated on that run's validation split */
  char run_dir[4096];
  struct stat sb;
  const int file_in_run = val && model_arg && !stat(model_arg, &sb) && S_ISREG(sb.st_mode);
  const char *vdir = file_in_run ? cli_parent_dir(model_arg, run_dir, sizeof run_dir) : model_arg;
  int rc = val ? open_validation(vdir, data_arg, cm.checkpoint, &view) : EXIT_OK;
  if (!rc && (!val || file_in_run)) rc = cli_model_build("eval", &cm, NULL, NN_INIT_DEFAULT, 0, &built);
  if (!rc) m = built ? built : nn_run_model(view);
  if (!rc) rc = cli_model_finite("eval", cm.checkpoint, m, 1);
  if (!rc) nn_model_set_threads(m, threads);
  if (!rc) rc = cli_model_input("eval", &cm, m, input_norm, data_arg, &norm, &data, &data_from);
  if (!rc && !val && nn_dataset_open(data, strcmp(split, "train") ? NN_SPLIT_TEST : NN_SPLIT_TRAIN, &ds, &err))
    rc = cli_fail("eval", &err);
  const nn_dataset *eds = NULL; /* what is evaluated */
  if (!rc) eds = val ? nn_run_eval_data(view) : ds;
  if (!rc && nn_evaluate_confusion(m, eds, norm, batch, mode, &cmx, &err)) rc = cli_fail("eval", &err);
  if (!rc && out) rc = write_confusion(out, &cmx, eds, data, split, json);
  if (!rc && json) print_json(&cm, data, data_from, split, mode_name, &cmx, eds);
  else if (!rc) {
    char pc[CLI_PRINTABLE], pd[CLI_PRINTABLE];
    printf("%s on %s/%s (data %s; %ld samples, %s mode): loss %.4f, accuracy %.4f\n",
           cli_printable(cm.checkpoint, pc, sizeof pc), cli_printable(data, pd, sizeof pd), split, data_from,
           cmx.samples, mode_name, cmx.loss, cmx.accuracy);
    print_classes(&cmx, eds);
  }
  nn_confusion_free(&cmx);
  nn_dataset_free(ds);
  nn_run_free(view);
  nn_model_free(built);
  cli_model_free(&cm);
  return rc;
}
