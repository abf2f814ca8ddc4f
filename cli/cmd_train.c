/* normnet train: fit a preset or spec on a data set, report each epoch, write the run. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet train [options]\n"
    "\n"
    "Train a model and evaluate it on the test split after every epoch (in eval mode).\n"
    "\n"
    "  --model PRESET|SPECFILE   lenet (default), mlp, cnn, cifar-cnn, cifar-gap, or a spec file\n"
    "  --norm batch|none         keep the normalization layers, or the twin without them\n"
    "  --data SOURCE             fashion-mnist (default), mnist:DIR, idx:DIR, cifar10:DIR\n"
    "  --epochs N                default: the preset's (lenet: 10)\n"
    "  --batch B                 default: the preset's (lenet: 128)\n"
    "  --optimizer sgd|adam|adamw  default: the preset's (lenet: sgd)\n"
    "  --lr X                    learning rate (lenet: 0.1)\n"
    "  --momentum M              SGD momentum (default 0)\n"
    "  --nesterov                Nesterov momentum\n"
    "  --weight-decay W          L2 (SGD, Adam) or decoupled (AdamW) weight decay\n"
    "  --init default|xavier     weight init: PyTorch's default or Xavier/Glorot-uniform\n"
    "  --input-norm MEAN,STD     pixel transform (u8/255 - MEAN)/STD (lenet: 0.5,0.5)\n"
    "  --seed S                  seed of weights and shuffling (default 42)\n"
    "  --no-shuffle              keep file order\n"
    "  --drop-last               drop the last incomplete batch\n"
    "  --threads N               worker threads (default: all cores)\n"
    "  --out DIR                 write DIR/history.csv, DIR/model.safetensors (every epoch), DIR/spec.txt\n"
    "  --quiet                   no per-epoch output\n";

typedef struct {
  cli_progress progress;
  nn_fit_callbacks shown;
  nn_model *model;
  const char *out;
  nn_meta_pair meta[4];
  int nmeta;
  nn_status save_status;
  nn_error save_err;
} train_ctx;

static void on_begin(void *u, int e, int n, int b) {
  train_ctx *t = u;
  t->shown.on_epoch_begin(t->shown.user, e, n, b);
}
static int on_batch(void *u, int e, int b, int n, double l, double a) {
  train_ctx *t = u;
  return t->shown.on_batch(t->shown.user, e, b, n, l, a);
}
static void on_end(void *u, const nn_epoch_record *r) {
  train_ctx *t = u;
  t->shown.on_epoch_end(t->shown.user, r);
  if (t->out && !t->save_status) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", t->out);
    t->save_status = nn_checkpoint_save(t->model, path, t->meta, t->nmeta, &t->save_err);
  }
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

int cmd_train(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "train", NULL, 0};
  const char *model_arg = "lenet", *norm = "batch", *data = "fashion-mnist", *out = NULL;
  const char *opt_name = NULL, *init_name = NULL, *input_norm = NULL;
  int epochs = -1, batch = -1, threads = 0, quiet = 0, shuffle = 1, drop_last = 0, nesterov = 0;
  float lr = -1, momentum = -1, wd = -1;
  unsigned long long seed = 42;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    int bad = 0;
    if (cli_opt(&a, "--model")) model_arg = a.val;
    else if (cli_opt(&a, "--norm")) norm = a.val;
    else if (cli_opt(&a, "--data")) data = a.val;
    else if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--optimizer")) opt_name = a.val;
    else if (cli_opt(&a, "--init")) init_name = a.val;
    else if (cli_opt(&a, "--input-norm")) input_norm = a.val;
    else if (cli_opt(&a, "--epochs")) bad = cli_int(&a, "--epochs", 0, 1000000, &epochs);
    else if (cli_opt(&a, "--batch")) bad = cli_int(&a, "--batch", 1, 1 << 20, &batch);
    else if (cli_opt(&a, "--threads")) bad = cli_int(&a, "--threads", 1, 1024, &threads);
    else if (cli_opt(&a, "--lr")) bad = cli_float(&a, "--lr", 1e-12, 1e6, &lr);
    else if (cli_opt(&a, "--momentum")) bad = cli_float(&a, "--momentum", 0, 0.999999, &momentum);
    else if (cli_opt(&a, "--weight-decay")) bad = cli_float(&a, "--weight-decay", 0, 1e3, &wd);
    else if (cli_opt(&a, "--seed")) bad = cli_u64(&a, "--seed", &seed);
    else if (cli_flag(&a, "--no-shuffle")) shuffle = 0;
    else if (cli_flag(&a, "--drop-last")) drop_last = 1;
    else if (cli_flag(&a, "--nesterov")) nesterov = 1;
    else if (cli_flag(&a, "--quiet")) quiet = 1;
    else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  if (threads) nn_set_threads(threads);

  cli_model cm;
  int rc = cli_model_resolve("train", model_arg, &cm);
  if (rc) return rc;
  if (cm.checkpoint[0]) {
    cli_error("train", "--model %s is a trained checkpoint; give a preset or a spec file", model_arg);
    return EXIT_USAGE;
  }
  const nn_preset *p = cm.preset;
  nn_opt_config oc = p ? p->opt : nn_opt_defaults(NN_OPT_ADAM);
  if (opt_name) {
    int k = nn_opt_kind_parse(opt_name);
    if (k < 0) {
      cli_error("train", "--optimizer: unknown '%s' (expected sgd, adam or adamw)", opt_name);
      cli_model_free(&cm);
      return EXIT_USAGE;
    }
    if (!p || k != (int)p->opt.kind) oc = nn_opt_defaults((nn_opt_kind)k);
  }
  if (lr > 0) oc.lr = lr;
  if (momentum >= 0) oc.momentum = momentum;
  if (wd >= 0) oc.weight_decay = wd;
  if (nesterov) oc.nesterov = 1;
  nn_init init = p ? p->init : NN_INIT_DEFAULT;
  if (init_name) {
    if (!strcmp(init_name, "default")) init = NN_INIT_DEFAULT;
    else if (!strcmp(init_name, "xavier")) init = NN_INIT_XAVIER_UNIFORM;
    else {
      cli_error("train", "--init: unknown '%s' (expected default or xavier)", init_name);
      cli_model_free(&cm);
      return EXIT_USAGE;
    }
  }
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = epochs >= 0 ? epochs : (p ? p->epochs : 10);
  fc.batch_size = batch > 0 ? batch : (p ? p->batch_size : 32);
  fc.shuffle = shuffle;
  fc.drop_last = drop_last;
  fc.seed = seed;
  fc.input_norm = p ? p->input_norm : (nn_input_norm){0.0f, 1.0f};
  if (input_norm && cli_input_norm(&a, input_norm, &fc.input_norm)) {
    cli_model_free(&cm);
    return EXIT_USAGE;
  }

  nn_model *m = NULL;
  nn_dataset *train = NULL, *test = NULL;
  nn_optimizer *opt = NULL;
  nn_history *hist = NULL;
  nn_error err = {0};
  rc = cli_model_build("train", &cm, norm, init, seed, &m);
  if (!rc && (nn_dataset_open(data, 1, &train, &err) || nn_dataset_open(data, 0, &test, &err) ||
              nn_optimizer_create(&oc, m, &opt, &err)))
    rc = cli_fail("train", &err);
  if (!rc && out && mkdir(out, 0777) != 0 && errno != EEXIST) {
    cli_error("train", "--out %s: cannot create directory: %s", out, strerror(errno));
    rc = EXIT_FAIL;
  }
  if (!rc && out) {
    char path[4200], *spec_text = nn_spec_to_text(nn_model_spec(m));
    snprintf(path, sizeof path, "%s/spec.txt", out);
    if (!spec_text || write_text(path, spec_text)) {
      cli_error("train", "%s: cannot write: %s", path, strerror(errno));
      rc = EXIT_FAIL;
    }
    free(spec_text);
  }
  if (!rc) {
    if (!quiet)
      printf("normnet train: model %s, norm %s, %zu parameters; %s: %d train / %d test samples; %s lr %g, batch %d, "
             "%d epochs, seed %llu\n",
             model_arg, norm, nn_model_param_count(m), data, nn_dataset_count(train), nn_dataset_count(test),
             nn_opt_kind_name(oc.kind), oc.lr, fc.batch_size, fc.epochs, seed);
    char mean[32], std[32];
    snprintf(mean, sizeof mean, "%.9g", fc.input_norm.mean);
    snprintf(std, sizeof std, "%.9g", fc.input_norm.std);
    train_ctx t = {.model = m, .out = out,
                   .meta = {{"normnet.input_mean", mean}, {"normnet.input_std", std}, {"normnet.model", model_arg},
                            {"normnet.data", data}},
                   .nmeta = 4};
    cli_progress_init(&t.progress, stdout, quiet, NULL);
    t.shown = cli_progress_callbacks(&t.progress);
    nn_fit_callbacks cb = {.user = &t, .on_epoch_begin = on_begin, .on_batch = on_batch, .on_epoch_end = on_end};
    nn_status st = nn_fit(m, opt, train, test, &fc, &cb, &hist, &err);
    if (out && hist) {
      char path[4200];
      nn_error herr = {0};
      snprintf(path, sizeof path, "%s/history.csv", out);
      if (nn_history_write_csv(hist, path, &herr)) rc = cli_fail("train", &herr);
    }
    if (st) rc = cli_fail("train", &err);
    else if (t.save_status) rc = cli_fail("train", &t.save_err);
    if (!rc && hist && nn_history_count(hist) > 0) {
      int n = nn_history_count(hist), best = 0;
      for (int i = 1; i < n; i++)
        if (nn_history_get(hist, i)->test_acc > nn_history_get(hist, best)->test_acc) best = i;
      const nn_epoch_record *last = nn_history_get(hist, n - 1);
      printf("final: test_acc=%.4f test_loss=%.4f (best test_acc=%.4f at epoch %d), %.0f samples/s%s%s\n",
             last->test_acc, last->test_loss, nn_history_get(hist, best)->test_acc, best + 1, last->samples_per_sec,
             out ? ", run saved in " : "", out ? out : "");
    }
  }
  nn_history_free(hist);
  nn_optimizer_free(opt);
  nn_dataset_free(train);
  nn_dataset_free(test);
  nn_model_free(m);
  cli_model_free(&cm);
  return rc;
}
