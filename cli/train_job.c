/* One training job, shared by `train`, `compare` and `study`: options -> recipe overrides,
 * the library's run (nn_run_create / nn_run_resume / nn_run_train) does the rest; this file
 * displays progress and tracks activations. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char train_options_help[] =
    "  --model PRESET|SPECFILE   lenet (default), mlp, cnn, cifar-cnn, cifar-gap, or a spec file\n"
    "                            (also given as the first argument without --model)\n"
    "  --data SOURCE             fashion-mnist (default), mnist:DIR, idx:DIR, cifar10:DIR, or a\n"
    "                            DIR of IDX files or CIFAR-10 batches (taken by its files)\n"
    "  --val-split F             validate on the last fraction F of the training set instead of\n"
    "                            the test set\n"
    "  --epochs N                default: the preset's (lenet: 10)\n"
    "  --batch B                 default: the preset's (lenet: 128)\n"
    "  --optimizer sgd|adam|adamw  default: the preset's (lenet: sgd)\n"
    "  --lr X                    learning rate (lenet: 0.1)\n"
    "  --momentum M              SGD momentum (default 0)\n"
    "  --nesterov                Nesterov momentum\n"
    "  --weight-decay W          L2 (SGD, Adam) or decoupled (AdamW) weight decay\n"
    "  --init default|xavier|CHECKPOINT  weight init: PyTorch's default, Xavier/Glorot-uniform, or\n"
    "                            the weights and statistics of a checkpoint, run or Keras file\n"
    "                            (fine-tuning; without --model, its architecture and input\n"
    "                            transform too)\n"
    "  --input-norm MEAN,STD     pixel transform (u8/255 - MEAN)/STD, STD >= 1e-6 (lenet: 0.5,0.5)\n"
    "  --augment LIST            training-only augmentation: flip,rotate=F,crop=N\n"
    "  --seed S                  seed of weights, shuffling and augmentation (default 42)\n"
    "  --no-shuffle              keep file order\n"
    "  --drop-last               drop the last incomplete batch\n"
    "  --max-steps N             stop after N optimizer steps (a pause: --resume goes on; the\n"
    "                            schedule still runs over --epochs)\n"
    "  --lr-schedule S           constant (default), step:EPOCHS:GAMMA, cosine, onecycle: PyTorch's\n"
    "                            StepLR, CosineAnnealingLR, OneCycleLR, per optimizer step\n"
    "  --warmup STEPS            linear warm-up over the first STEPS steps (not with onecycle)\n"
    "  --early-stop P[:DELTA]    stop when the evaluation loss (validation with --val-split, else\n"
    "                            test) has not improved by DELTA (default 0)\n"
    "                            for P epochs, and keep the weights of the best epoch\n"
    "  --divergence-factor F     stop when a batch's loss exceeds F times the first batch's\n"
    "                            (default 1e4; 0: off), naming the first layer that exploded\n"
    "  --nan-check               check every layer's output for NaN/Inf after every step\n"
    "  --accumulate K            one optimizer step per K batches (the gradient of K*B samples);\n"
    "                            BN still normalizes each batch of B on its own, as in PyTorch\n"
    "  --bn-placement before|after  normalization before the activation (presets) or after it\n"
    "  --freeze-bn               frozen BN (fine-tuning): running statistics in training too, not\n"
    "                            updated; gamma/beta fixed (Keras trainable=False)\n"
    "  --track-activations       record each hidden layer's pre-activation mean/std per epoch\n"
    "                            on a fixed probe batch (see normnet inspect)\n"
    "  --overwrite               replace a run already in the output directory\n"
    "  --threads N               worker threads (default: all cores)\n"
    "  --sync-bn on|off          under mpirun: batchnorm statistics over the global batch (on,\n"
    "                            SyncBN) or over each process's slice (off, plain data parallel)\n"
    "  --quiet                   no per-epoch output\n"
    "  --json                    one JSON object per epoch on stdout (run, dir, epoch, train_loss,\n"
    "                            train_acc, val_/test_loss and _acc, lr, seconds), no other text\n";

void cli_train_options_print(FILE *f, const char *const *skip) {
  int skipping = 0;
  for (const char *p = train_options_help; *p;) {
    const size_t len = strcspn(p, "\n") + (strchr(p, '\n') ? 1 : 0);
    if (!strncmp(p, "  --", 4)) { /* an entry's first line; its continuation lines follow */
      const size_t name = strcspn(p + 2, " \n");
      skipping = 0;
      for (int k = 0; skip && skip[k]; k++) skipping |= strlen(skip[k]) == name && !strncmp(p + 2, skip[k], name);
    }
    if (!skipping) fwrite(p, 1, len, f);
    p += len;
  }
}

void cli_train_defaults(cli_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->model = "lenet";
}

int cli_train_override(cli_train_opts *o, const char *key, const char *flag, const char *value) {
  for (int i = 0; i < o->nov; i++)
    if (!strcmp(o->ov[i].key, key)) {
      o->ov[i] = (cli_override){key, flag, value};
      return 0;
    }
  if (o->nov == CLI_MAX_OVERRIDES) return -1;
  o->ov[o->nov++] = (cli_override){key, flag, value};
  return 0;
}

const char *cli_train_value(const cli_train_opts *o, const char *key, const char *dflt) {
  for (int i = 0; i < o->nov; i++)
    if (!strcmp(o->ov[i].key, key)) return o->ov[i].value;
  return dflt;
}

/* option -> recipe key; flags (no value) set the given value */
static const struct {
  const char *flag, *key, *flag_value;
} recipe_options[] = {
    {"--data", "data", NULL},
    {"--val-split", "val-split", NULL},
    {"--epochs", "epochs", NULL},
    {"--batch", "batch", NULL},
    {"--optimizer", "optimizer", NULL},
    {"--lr", "lr", NULL},
    {"--momentum", "momentum", NULL},
    {"--weight-decay", "weight-decay", NULL},
    {"--input-norm", "input-norm", NULL},
    {"--augment", "augment", NULL},
    {"--seed", "seed", NULL},
    {"--max-steps", "max-steps", NULL},
    {"--bn-placement", "bn-placement", NULL},
    {"--init", "init", NULL},
    {"--nesterov", "nesterov", "1"},
    {"--no-shuffle", "shuffle", "0"},
    {"--drop-last", "drop-last", "1"},
    {"--freeze-bn", "freeze-bn", "1"},
    {"--lr-schedule", "lr-schedule", NULL},
    {"--warmup", "warmup", NULL},
    {"--accumulate", "accumulate", NULL},
    {"--early-stop", "early-stop", NULL},
    {"--divergence-factor", "divergence-factor", NULL},
    {"--nan-check", "nan-check", "1"},
};

int cli_train_option(cli_args *a, cli_train_opts *o, int *bad) {
  *bad = 0;
  for (size_t k = 0; k < sizeof recipe_options / sizeof recipe_options[0]; k++) {
    const char *f = recipe_options[k].flag, *fv = recipe_options[k].flag_value;
    if (fv ? cli_flag(a, f) : cli_opt(a, f)) {
      if (a->bad) *bad = 1;
      else if (cli_train_override(o, recipe_options[k].key, f, fv ? fv : a->val)) {
        cli_error(a->cmd, "too many options");
        *bad = 1;
      }
      return 1;
    }
  }
  if (cli_opt(a, "--model")) o->model = a->val, o->model_given = 1;
  else if (cli_opt(a, "--threads")) *bad = cli_int(a, "--threads", 1, 1024, &o->threads);
  else if (cli_flag(a, "--quiet")) o->quiet = 1;
  else if (cli_flag(a, "--track-activations")) o->track_activations = 1;
  else if (cli_flag(a, "--overwrite")) o->overwrite = 1;
  else if (cli_flag(a, "--json")) o->json = 1;
  else if (cli_opt(a, "--sync-bn")) {
    /* a recipe key: recorded in the run, refused with --resume like the others */
    if (!strcmp(a->val, "on") || !strcmp(a->val, "off")) {
      if (cli_train_override(o, "sync-bn", "--sync-bn", !strcmp(a->val, "on") ? "1" : "0")) {
        cli_error(a->cmd, "too many options");
        *bad = 1;
      }
    } else {
      cli_error(a->cmd, "--sync-bn: expected on or off, got '%s'", a->val);
      *bad = 1;
    }
  } else if (a->argv[a->i][0] != '-' && !o->model_given) { /* the model without --model */
    o->model = a->argv[a->i++], o->model_given = 1;
  } else return 0;
  if (a->bad) *bad = 1;
  return 1;
}

/* ---- the job ------------------------------------------------------------------------ */
typedef struct {
  const cli_train_opts *o;
  const char *cmd;
  cli_progress progress;
  nn_fit_callbacks shown;
  nn_model *model;
  const float *probe_x;
  int probe_n;
  cli_train_result *res;
  unsigned char reported[256]; /* layers whose skipped running-stat updates were reported */
  int stopped;                 /* stopped because another lane's job failed */
} job;

static void on_begin(void *u, int e, int n, int b) {
  job *j = u;
  j->shown.on_epoch_begin(j->shown.user, e, n, b);
}

static int on_batch(void *u, int e, int b, int n, double l, double a) {
  job *j = u;
  cli_lane *lane = j->o->lane;
  if (lane && lane->stop && atomic_load_explicit(lane->stop, memory_order_relaxed)) return j->stopped = 1; /* another failed */
  /* a lane with no job left gave its threads back. Without --threads the library chooses
   * again (between one thread and all: another process may hold a core); with it, this
   * run's count takes them. */
  if (lane && lane->spare && atomic_load_explicit(lane->spare, memory_order_relaxed) > 0) {
    lane->threads += atomic_exchange(lane->spare, 0);
    nn_model_set_threads(j->model, j->o->threads ? lane->threads : 0);
  }
  return j->shown.on_batch(j->shown.user, e, b, n, l, a);
}

/* Pre-activation statistics: the output of every layer followed by an activation. */
static void track(job *j, int epoch) {
  cli_train_result *r = j->res;
  nn_error err = {0};
  if (nn_model_forward(j->model, j->probe_x, NULL, j->probe_n, NN_MODE_EVAL, NULL, NULL, NULL, &err)) return;
  for (int i = 0; i + 1 < nn_model_num_layers(j->model); i++) {
    nn_layer_info next;
    nn_model_layer_info(j->model, i + 1, &next);
    if (!nn_layer_kind_is_activation(next.kind_id)) continue;
    size_t n;
    const float *y = nn_model_layer_output(j->model, i, &n);
    double s = 0, s2 = 0;
    for (size_t k = 0; k < n; k++) s += y[k];
    double mean = s / (double)n;
    for (size_t k = 0; k < n; k++) s2 += (y[k] - mean) * (y[k] - mean);
    if (r->nact == r->capact) {
      int cap = r->capact ? 2 * r->capact : 64;
      cli_activation *a = realloc(r->act, (size_t)cap * sizeof *a);
      if (!a) return;
      r->act = a, r->capact = cap;
    }
    r->act[r->nact++] = (cli_activation){epoch, i, mean, sqrt(s2 / (double)n)};
  }
}

/* Say once per layer, on stderr, that non-finite batch statistics were not averaged in. */
static void report_skips(job *j) {
  if (!cli_is_rank0()) return; /* the ranks agree on the statistics: rank 0 speaks */
  for (int i = 0; i < nn_model_num_layers(j->model) && i < 256; i++) {
    nn_layer_info li;
    nn_model_layer_info(j->model, i, &li);
    if (li.skipped_updates && !j->reported[i]) {
      cli_warn(j->cmd,
               "layer %d (%s, line %d): %d batch(es) had non-finite statistics; their running-stat updates "
               "were skipped",
               i, li.kind, li.line, li.skipped_updates);
      j->reported[i] = 1;
    }
  }
}

/* Called after the run committed the epoch to its directory. */
static void on_end(void *u, const nn_epoch_record *r) {
  job *j = u;
  report_skips(j);
  j->shown.on_epoch_end(j->shown.user, r);
  if (j->o->track_activations) track(j, r->epoch);
  if (j->o->crash_after_epoch == r->epoch) raise(SIGKILL); /* testing aid: a real, abrupt kill */
}

/* Once a run replacing another (--overwrite) has committed an epoch, the files this CLI wrote
 * for the replaced one go: its activations.png (inspect draws it from activations.csv), and
 * its activations.csv unless this run tracks its own (inspect showed the old run's as this
 * one's). The library's own files are replaced at that commit. */
static void remove_replaced(const char *dir, int tracked) {
  char path[4200];
  snprintf(path, sizeof path, "%s/activations.png", dir);
  (void)remove(path);
  if (tracked) return;
  snprintf(path, sizeof path, "%s/activations.csv", dir);
  (void)remove(path);
}

static int write_activations(const char *cmd, const char *dir, const cli_train_result *r, const nn_model *m) {
  char path[4200];
  snprintf(path, sizeof path, "%s/activations.csv", dir);
  cli_text t;
  FILE *f = cli_text_open(&t);
  if (f) {
    fprintf(f, "epoch,layer,kind,mean,std\n");
    for (int i = 0; i < r->nact; i++) {
      nn_layer_info li;
      nn_model_layer_info(m, r->act[i].layer, &li);
      fprintf(f, "%d,%d,%s,%.6g,%.6g\n", r->act[i].epoch, r->act[i].layer, li.kind, r->act[i].mean, r->act[i].std);
    }
  }
  return cli_text_commit(cmd, &t, path);
}

/* "--lr: expected ..." from the library's "lr: expected ..." */
static int fail_flag(const char *cmd, const char *flag, const nn_error *err) {
  const char *key = strchr(err->msg, ':');
  cli_error(cmd, "%s%s", flag, key ? key : err->msg);
  return EXIT_USAGE;
}

/* A run's error that starts with a recipe key ("data mnist:/x: ...", "augment: ...") names
 * the option instead ("--data mnist:/x: ..."), as fail_flag does for a bad value. Options
 * the library refuses together (NN_ERR_ARG: --momentum with adam, --freeze-bn without --init)
 * exit as a bad command line does, 2, as the CLI's own refusals. */
static int fail_run(const char *cmd, const nn_error *err) {
  const int code = err->code == NN_ERR_ARG ? EXIT_USAGE : EXIT_FAIL;
  static const struct {
    const char *key, *flag;
  } also[] = {{"init-from", "--init"}, {"norm", "--norm"}};
  const size_t nr = sizeof recipe_options / sizeof recipe_options[0];
  for (size_t k = 0; k < nr + sizeof also / sizeof also[0]; k++) {
    const char *key = k < nr ? recipe_options[k].key : also[k - nr].key;
    const size_t n = strlen(key);
    if (!strncmp(err->msg, key, n) && (err->msg[n] == ':' || err->msg[n] == ' ')) {
      cli_error(cmd, "%s%s", k < nr ? recipe_options[k].flag : also[k - nr].flag, err->msg + n);
      return code;
    }
  }
  cli_fail(cmd, err);
  return code;
}

/* --resume: only the run's length and this process's settings may be given. */
static int resume_run(const char *cmd, const cli_train_opts *o, nn_run **out) {
  static const char allowed[] = "--epochs, --max-steps, --threads, --quiet, --json and --out (the same directory)";
  const char *bad = o->model_given ? "--model" : o->track_activations ? "--track-activations"
                                             : o->overwrite           ? "--overwrite"
                                                                      : NULL;
  for (int i = 0; !bad && i < o->nov; i++)
    if (strcmp(o->ov[i].key, "epochs") && strcmp(o->ov[i].key, "max-steps")) bad = o->ov[i].flag;
  if (bad) {
    cli_error(cmd, "--resume continues the recorded recipe; %s would change it (with --resume only %s may be given)",
              bad, allowed);
    return EXIT_USAGE;
  }
  nn_error err = {0};
  nn_run *run = NULL;
  /* under mpirun rank 0 alone writes the run; every rank reads what it resumes */
  if ((cli_is_rank0() ? nn_run_resume(o->resume, &run, &err) : nn_run_resume_reader(o->resume, &run, &err)))
    return cli_fail(cmd, &err);
  nn_recipe r = *nn_run_recipe(run);
  for (int i = 0; i < o->nov; i++)
    if (nn_recipe_set(&r, o->ov[i].key, o->ov[i].value, &err)) {
      nn_run_free(run);
      return fail_flag(cmd, o->ov[i].flag, &err);
    }
  const int bad_epochs = nn_run_set_epochs(run, r.epochs, &err) != NN_OK;
  if (bad_epochs || nn_run_set_max_steps(run, r.max_steps, &err)) {
    /* --epochs refused by a schedule's length: a new run from this one is the way on */
    const char *why = strchr(err.msg, ':'); /* fail_flag's form, with the way on */
    if (bad_epochs) cli_error(cmd, "--epochs%s (--init %s)", why ? why : err.msg, o->resume);
    else fail_flag(cmd, "--max-steps", &err);
    nn_run_free(run);
    return EXIT_USAGE;
  }
  int stopped = nn_run_stopped_early(run);
  if (stopped) {
    cli_error(cmd,
              "--resume %s: nothing to train: early stopping ended the run at epoch %d (no improvement of the "
              "evaluation loss for %d epochs); to train on, start a new run from it with --init %s",
              o->resume, stopped, r.early_stop, o->resume);
    nn_run_free(run);
    return EXIT_USAGE;
  }
  if (nn_run_finished(run)) {
    /* name the limit that holds: a larger --epochs alone does not lift a reached --max-steps */
    if (r.max_steps && nn_run_steps(run) >= r.max_steps)
      cli_error(cmd,
                "--resume %s: nothing to train: the run has taken its --max-steps %ld steps (epoch %d of %d); "
                "give a larger --max-steps N (0: no step limit)",
                o->resume, r.max_steps, nn_history_count(nn_run_history(run)), r.epochs);
    else {
      const nn_history *h = nn_run_history(run);
      const int trained = nn_history_count(h) ? nn_history_get(h, nn_history_count(h) - 1)->epoch : 0;
      if (trained > r.epochs) /* --epochs below what is trained: not "its --epochs" */
        cli_error(cmd,
                  "--resume %s: nothing to train: the run has trained %d epochs, more than --epochs %d; give "
                  "--epochs N above %d",
                  o->resume, trained, r.epochs, trained);
      else
        cli_error(cmd, "--resume %s: nothing to train: the run has trained its --epochs %d; give a larger --epochs N",
                  o->resume, r.epochs);
    }
    nn_run_free(run);
    return EXIT_USAGE;
  }
  *out = run;
  return EXIT_OK;
}

/* The value of --init when it names a checkpoint or run (not default or xavier), else NULL. */
static const char *init_from(const cli_train_opts *o) {
  const char *v = NULL;
  for (int i = 0; i < o->nov; i++)
    if (!strcmp(o->ov[i].key, "init")) v = o->ov[i].value;
  return v && strcmp(v, "default") && strcmp(v, "xavier") ? v : NULL;
}

static int new_run(const char *cmd, const cli_train_opts *o, nn_run **out) {
  cli_model cm = {0};
  /* fine-tuning without --model: the architecture and input transform of the --init model */
  const char *init = o->model_given ? NULL : init_from(o);
  nn_input_norm init_norm;
  int has_norm = 0;
  int rc = cli_model_resolve(cmd, init ? "--init" : "--model", init ? init : o->model, &cm);
  if (!rc && init && cm.checkpoint[0]) {
    cli_model_free(&cm);
    rc = cli_model_checkpoint_spec(cmd, &cm, &init_norm, &has_norm);
  }
  if (rc) {
    cli_model_free(&cm);
    return rc;
  }
  if (cm.checkpoint[0] && !init) {
    cli_error(cmd, "%s is a trained checkpoint; to train on from it, give it as --init (its architecture is kept)",
              cm.what);
    cli_model_free(&cm);
    return EXIT_USAGE;
  }
  nn_error err = {0};
  nn_recipe r = nn_recipe_default(cm.preset);
  snprintf(r.model, sizeof r.model, "%s", init ? init : o->model);
  if (has_norm) r.input_norm = init_norm; /* --input-norm, applied below, still wins */
  cli_model from = {0};
  /* the optimizer first: another kind resets its hyper-parameters */
  for (int pass = 0; pass < 2 && !rc; pass++)
    for (int i = 0; i < o->nov && !rc; i++) {
      const cli_override *v = &o->ov[i];
      if ((pass == 0) != !strcmp(v->key, "optimizer")) continue;
      if (!strcmp(v->key, "init") && strcmp(v->value, "default") && strcmp(v->value, "xavier")) {
        /* --init CHECKPOINT|RUNDIR: fine-tuning */
        if ((rc = cli_model_resolve(cmd, v->flag, v->value, &from))) break;
        if (!from.checkpoint[0]) {
          cli_error(cmd, "--init %s: expected default, xavier, a checkpoint or a run directory", v->value);
          rc = EXIT_USAGE;
        } else if (nn_recipe_set(&r, "init-from", from.checkpoint, &err)) {
          rc = fail_flag(cmd, v->flag, &err);
        }
        cli_model_free(&from);
      } else if (nn_recipe_set(&r, v->key, v->value, &err)) {
        rc = fail_flag(cmd, v->flag, &err);
      }
    }
  /* under mpirun rank 0 alone writes the run */
  if (!rc && nn_run_create(&r, cm.spec, cli_is_rank0() ? o->out : NULL, o->overwrite, out, &err))
    rc = fail_run(cmd, &err);
  cli_model_free(&cm);
  return rc;
}

static nn_history *copy_history(const nn_history *h) {
  nn_history *c = nn_history_create();
  for (int i = 0; c && i < nn_history_count(h); i++)
    if (nn_history_append(c, nn_history_get(h, i), NULL)) {
      nn_history_free(c);
      return NULL;
    }
  if (c) nn_history_set_validation(c, nn_history_validation(h));
  return c;
}

int cli_train_open(const char *cmd, const cli_train_opts *o, nn_run **run) {
  *run = NULL;
  int rc = o->resume ? resume_run(cmd, o, run) : new_run(cmd, o, run);
  if (!rc) nn_model_set_threads(nn_run_model(*run), o->lane ? o->lane->threads : o->threads);
  return rc;
}

/* The header's "norm" field: the recipe's --norm value when the model's normalization layers
 * are what it names (a preset; a spec with BatchNorm), else the kinds the model holds, in the
 * order they first appear ("groupnorm+layernorm"; --norm replaces BatchNorm only), or
 * "none". */
static void norm_field(const nn_model *m, const char *norm, char *out, size_t len) {
  char kinds[128] = "";
  int count = 0, named = 0;
  size_t used = 0;
  const size_t want = strcspn(norm, ":@"); /* "group:4" -> group, "batch@after" -> batch */
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    if (!nn_layer_kind_is_norm(li.kind_id) || strstr(kinds, li.kind)) continue;
    /* "batchnorm" is what --norm batch names, "groupnorm" group:G, ... */
    if (!strncmp(li.kind, norm, want) && !strcmp(li.kind + want, "norm")) named = 1;
    int w = snprintf(kinds + used, sizeof kinds - used, "%s%s", count ? "+" : "", li.kind);
    if (w > 0 && (size_t)w < sizeof kinds - used) used += (size_t)w;
    count++;
  }
  if (count == 0) snprintf(out, len, "none");
  else snprintf(out, len, "%s", count == 1 && named ? norm : kinds);
}

int cli_train_run(const char *cmd, const cli_train_opts *o, nn_run *run, cli_train_result *res) {
  memset(res, 0, sizeof *res);
  int rc = run ? EXIT_OK : cli_train_open(cmd, o, &run);
  if (rc) return rc;
  job j = {.o = o, .cmd = cmd, .res = res, .model = nn_run_model(run)};
  const nn_recipe *r = nn_run_recipe(run);
  const nn_dataset *train = nn_run_train_data(run), *eval = nn_run_eval_data(run);
  nn_error err = {0};
  float *probe = NULL;
  if (o->track_activations) {
    /* a fixed probe batch: the first 256 validation/test samples */
    int n = nn_dataset_count(eval) < 256 ? nn_dataset_count(eval) : 256;
    nn_dims d = nn_dataset_shape(eval);
    uint32_t *idx = malloc((size_t)n * sizeof *idx);
    probe = malloc((size_t)n * d.c * d.h * d.w * sizeof *probe);
    if (!idx || !probe) {
      cli_error(cmd, "out of memory");
      rc = EXIT_FAIL;
    } else {
      for (int i = 0; i < n; i++) idx[i] = (uint32_t)i;
      nn_dataset_batch(eval, idx, n, r->input_norm, probe, NULL);
      j.probe_x = probe, j.probe_n = n;
    }
    free(idx);
  }
  if (!rc) {
    res->params = nn_model_param_count(j.model);
    res->validation = r->val_split > 0;
    res->epochs = r->epochs;
    res->early_stop = r->early_stop, res->early_stop_delta = r->early_stop_delta;
    int done = nn_history_count(nn_run_history(run));
    cli_progress_init(&j.progress, stdout, o->quiet, o->label);
    j.progress.json = o->json;
    j.progress.dir = nn_run_dir(run);
    j.progress.eval = r->val_split > 0 ? "val" : "test";
    j.progress.variant = o->variant, j.progress.variants = o->variants;
    if (r->max_steps > 0) /* the batches this process trains before --max-steps ends the run */
      j.progress.max_steps = (r->max_steps - nn_run_steps(run)) * (r->accumulate > 1 ? r->accumulate : 1);
    j.shown = cli_progress_callbacks(&j.progress);
    cli_progress_join(&j.progress, o->panel);
    if (!o->quiet && !o->json) {
      char head[4096], norm[160];
      norm_field(j.model, r->norm, norm, sizeof norm);
      snprintf(head, sizeof head,
               "normnet %s: %s, norm %s, %zu parameters; %s: %d train / %d %s samples; %s lr %g, batch %d, %d epoch%s, "
               "seed %llu%s%s%s",
               cmd, o->label ? o->label : (o->resume ? o->resume : r->model), norm, res->params, r->data,
               nn_dataset_count(train), nn_dataset_count(eval), r->val_split > 0 ? "validation" : "test",
               nn_opt_kind_name(r->opt.kind), r->opt.lr, r->batch_size, r->epochs, r->epochs == 1 ? "" : "s",
               (unsigned long long)r->seed, r->augment[0] ? ", augment " : "", r->augment, done ? " (resumed)" : "");
      /* the training features a run uses, when it uses them */
      size_t hl = strlen(head);
      char sched[64];
      nn_lr_schedule_format(&r->lr_schedule, sched, sizeof sched);
      if (r->lr_schedule.kind != NN_LR_CONSTANT || r->lr_schedule.warmup > 0)
        hl += (size_t)snprintf(head + hl, sizeof head - hl, ", lr-schedule %s", sched);
      if (r->lr_schedule.warmup > 0 && hl < sizeof head)
        hl += (size_t)snprintf(head + hl, sizeof head - hl, " with %ld warm-up steps", r->lr_schedule.warmup);
      if (r->accumulate > 1 && hl < sizeof head)
        hl += (size_t)snprintf(head + hl, sizeof head - hl, ", accumulate %d (%d samples a step)", r->accumulate,
                               r->accumulate * r->batch_size);
      if (r->early_stop && hl < sizeof head)
        snprintf(head + hl, sizeof head - hl, ", early-stop after %d epoch%s without improvement", r->early_stop,
                 r->early_stop == 1 ? "" : "s");
      char safe[sizeof head]; /* names and paths from the command line or the run: no escapes */
      cli_progress_say(&j.progress, cli_printable(head, safe, sizeof safe));
    }
    if (r->early_stop && !(r->val_split > 0) && !done)
      cli_warn(cmd,
               "--early-stop watches the test set's loss (no --val-split): the test set then chooses the weights "
               "kept; --val-split 0.1 holds out a validation set instead");
    /* settings that are valid but cannot do what they say on this data */
    const long n = nn_dataset_count(train), bs = r->batch_size, acc = r->accumulate > 1 ? r->accumulate : 1;
    const long batches = r->drop_last ? n / bs : (n + bs - 1) / bs, steps = (long)r->epochs * ((batches + acc - 1) / acc);
    if (!done && acc > batches)
      cli_warn(cmd, "--accumulate %ld is more than the %ld batches of an epoch: one step an epoch, on %ld batches",
               acc, batches, batches);
    if (!done && r->lr_schedule.warmup >= steps)
      cli_warn(cmd, "--warmup %ld is not shorter than the run's %ld steps: the learning rate never reaches --lr %g",
               r->lr_schedule.warmup, steps, r->opt.lr);
    if (o->track_activations) track(&j, done);
    nn_fit_callbacks cb = {.user = &j, .on_epoch_begin = on_begin, .on_batch = on_batch, .on_epoch_end = on_end};
    nn_comm *comm = cli_comm();
    nn_run_set_comm(run, comm);
    /* under mpirun: every rank is ready (or all stop with the first failing rank's message) */
    nn_status st = (rc = cli_dist_agree(EXIT_OK)) ? NN_OK : nn_run_train(run, &cb, &err);
    cli_progress_leave(&j.progress); /* before any message: the status line is not this run's alone */
    report_skips(&j);
    const char *out = nn_run_dir(run);
    if (out && o->overwrite && nn_history_count(nn_run_history(run)) > 0) remove_replaced(out, o->track_activations);
    if (out && o->track_activations && write_activations(cmd, out, res, j.model)) rc = EXIT_FAIL;
    if (st) /* one of several runs (compare, study): named; side by side, the lanes print it */
      rc = o->lane ? cli_lane_fail(cmd, o->label, err.msg) : cli_fail(cmd, &err);
    else if (j.stopped) /* not a result: the lanes print the failure that stopped it */
      rc = EXIT_FAIL;
    res->best_epoch = nn_run_best_epoch(run);
    res->epochs_done = nn_run_epochs_done(run);
    res->stopped_early = nn_run_stopped_early(run);
    if (!(res->hist = copy_history(nn_run_history(run)))) {
      cli_error(cmd, "out of memory");
      rc = EXIT_FAIL;
    }
  }
  free(probe);
  nn_run_free(run);
  return rc;
}

void cli_train_result_free(cli_train_result *r) {
  nn_history_free(r->hist);
  free(r->act);
  memset(r, 0, sizeof *r);
}
