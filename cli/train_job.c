/* One training job, shared by `train` and `compare`: resolve the model and recipe, load
 * the data (with an optional validation split), fit with progress, save checkpoints
 * (every epoch, best by validation accuracy), track activations, resume. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

const char cli_train_options_help[] =
    "  --model PRESET|SPECFILE   lenet (default), mlp, cnn, cifar-cnn, cifar-gap, or a spec file\n"
    "  --data SOURCE             fashion-mnist (default), mnist:DIR, idx:DIR, cifar10:DIR\n"
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
    "                            the weights and statistics of a checkpoint or run (fine-tuning)\n"
    "  --input-norm MEAN,STD     pixel transform (u8/255 - MEAN)/STD (lenet: 0.5,0.5)\n"
    "  --augment LIST            training-only augmentation: flip,rotate=F,crop=N\n"
    "  --seed S                  seed of weights, shuffling and augmentation (default 42)\n"
    "  --no-shuffle              keep file order\n"
    "  --drop-last               drop the last incomplete batch\n"
    "  --max-steps N             stop after N optimizer steps\n"
    "  --bn-placement before|after  normalization before the activation (presets) or after it\n"
    "  --freeze-bn               frozen BN (fine-tuning): running statistics in training too, not\n"
    "                            updated; gamma/beta fixed (Keras trainable=False)\n"
    "  --track-activations       record each hidden layer's pre-activation mean/std per epoch\n"
    "                            on a fixed probe batch (see normnet inspect)\n"
    "  --threads N               worker threads (default: all cores)\n"
    "  --sync-bn on|off          under mpirun: batchnorm statistics over the global batch (on,\n"
    "                            SyncBN) or over each process's slice (off, plain data parallel)\n"
    "  --quiet                   no per-epoch output\n";

void cli_train_defaults(cli_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->model = "lenet";
  o->norm = "batch";
  o->data = "fashion-mnist";
  o->epochs = o->batch = -1;
  o->lr = o->momentum = o->weight_decay = -1;
  o->shuffle = 1;
  o->seed = 42;
  o->sync_bn = 1;
}

int cli_train_option(cli_args *a, cli_train_opts *o, int *bad) {
  *bad = 0;
  if (cli_opt(a, "--model")) o->model = a->val;
  else if (cli_opt(a, "--data")) o->data = a->val;
  else if (cli_opt(a, "--optimizer")) o->optimizer = a->val;
  else if (cli_opt(a, "--init")) o->init = a->val;
  else if (cli_opt(a, "--input-norm")) o->input_norm = a->val;
  else if (cli_opt(a, "--augment")) o->augment = a->val;
  else if (cli_opt(a, "--val-split")) *bad = cli_float(a, "--val-split", 1e-6, 0.999999, &o->val_split);
  else if (cli_opt(a, "--epochs")) *bad = cli_int(a, "--epochs", 0, 1000000, &o->epochs);
  else if (cli_opt(a, "--batch")) *bad = cli_int(a, "--batch", 1, 1 << 20, &o->batch);
  else if (cli_opt(a, "--threads")) *bad = cli_int(a, "--threads", 1, 1024, &o->threads);
  else if (cli_opt(a, "--lr")) *bad = cli_float(a, "--lr", 1e-12, 1e6, &o->lr);
  else if (cli_opt(a, "--momentum")) *bad = cli_float(a, "--momentum", 0, 0.999999, &o->momentum);
  else if (cli_opt(a, "--weight-decay")) *bad = cli_float(a, "--weight-decay", 0, 1e3, &o->weight_decay);
  else if (cli_opt(a, "--seed")) *bad = cli_u64(a, "--seed", &o->seed);
  else if (cli_opt(a, "--max-steps")) {
    int v = 0;
    *bad = cli_int(a, "--max-steps", 1, 2000000000, &v);
    o->max_steps = v;
  } else if (cli_flag(a, "--no-shuffle")) o->shuffle = 0;
  else if (cli_flag(a, "--drop-last")) o->drop_last = 1;
  else if (cli_flag(a, "--nesterov")) o->nesterov = 1;
  else if (cli_flag(a, "--quiet")) o->quiet = 1;
  else if (cli_flag(a, "--track-activations")) o->track_activations = 1;
  else if (cli_flag(a, "--freeze-bn")) o->freeze_bn = 1;
  else if (cli_opt(a, "--bn-placement")) o->placement = a->val;
  else if (cli_opt(a, "--sync-bn")) {
    if (!strcmp(a->val, "on") || !strcmp(a->val, "off")) o->sync_bn = !strcmp(a->val, "on");
    else {
      cli_error(a->cmd, "--sync-bn: expected on or off, got '%s'", a->val);
      *bad = 1;
    }
  }
  else return 0;
  if (a->bad) *bad = 1;
  return 1;
}

/* ---- the recipe as checkpoint metadata: one table for saving and resuming ------------ */
typedef struct {
  nn_opt_config opt;
  nn_fit_config fit;
  char augment[128];
  float val_split;
  unsigned long long seed;
} recipe;

enum { R_INT, R_LONG, R_FLOAT, R_U64, R_TEXT };
static const struct {
  const char *key;
  int type;
  size_t offset;
} recipe_keys[] = {
    {"normnet.optimizer", R_INT, offsetof(recipe, opt.kind)},
    {"normnet.lr", R_FLOAT, offsetof(recipe, opt.lr)},
    {"normnet.momentum", R_FLOAT, offsetof(recipe, opt.momentum)},
    {"normnet.nesterov", R_INT, offsetof(recipe, opt.nesterov)},
    {"normnet.weight_decay", R_FLOAT, offsetof(recipe, opt.weight_decay)},
    {"normnet.beta1", R_FLOAT, offsetof(recipe, opt.beta1)},
    {"normnet.beta2", R_FLOAT, offsetof(recipe, opt.beta2)},
    {"normnet.adam_eps", R_FLOAT, offsetof(recipe, opt.eps)},
    {"normnet.epochs", R_INT, offsetof(recipe, fit.epochs)},
    {"normnet.batch", R_INT, offsetof(recipe, fit.batch_size)},
    {"normnet.shuffle", R_INT, offsetof(recipe, fit.shuffle)},
    {"normnet.drop_last", R_INT, offsetof(recipe, fit.drop_last)},
    {"normnet.max_steps", R_LONG, offsetof(recipe, fit.max_steps)},
    {"normnet.input_mean", R_FLOAT, offsetof(recipe, fit.input_norm.mean)},
    {"normnet.input_std", R_FLOAT, offsetof(recipe, fit.input_norm.std)},
    {"normnet.seed", R_U64, offsetof(recipe, seed)},
    {"normnet.val_split", R_FLOAT, offsetof(recipe, val_split)},
    {"normnet.augment", R_TEXT, offsetof(recipe, augment)},
};
#define NKEYS (int)(sizeof recipe_keys / sizeof recipe_keys[0])

static void recipe_to_text(const recipe *r, int k, char *buf, size_t len) {
  const unsigned char *p = (const unsigned char *)r + recipe_keys[k].offset;
  int i;
  long l;
  float f;
  unsigned long long u;
  switch (recipe_keys[k].type) {
  case R_INT: memcpy(&i, p, sizeof i), snprintf(buf, len, "%d", i); break;
  case R_LONG: memcpy(&l, p, sizeof l), snprintf(buf, len, "%ld", l); break;
  case R_FLOAT: memcpy(&f, p, sizeof f), snprintf(buf, len, "%.9g", f); break;
  case R_U64: memcpy(&u, p, sizeof u), snprintf(buf, len, "%llu", u); break;
  default: snprintf(buf, len, "%s", (const char *)p); break;
  }
}

static int recipe_from_text(recipe *r, int k, const char *v) {
  unsigned char *p = (unsigned char *)r + recipe_keys[k].offset;
  int i;
  long l;
  float f;
  unsigned long long u;
  switch (recipe_keys[k].type) {
  case R_INT: return sscanf(v, "%d", &i) == 1 ? (memcpy(p, &i, sizeof i), 0) : -1;
  case R_LONG: return sscanf(v, "%ld", &l) == 1 ? (memcpy(p, &l, sizeof l), 0) : -1;
  case R_FLOAT: return sscanf(v, "%f", &f) == 1 ? (memcpy(p, &f, sizeof f), 0) : -1;
  case R_U64: return sscanf(v, "%llu", &u) == 1 ? (memcpy(p, &u, sizeof u), 0) : -1;
  default: snprintf((char *)p, sizeof r->augment, "%s", v); return 0;
  }
}

/* ---- the job ------------------------------------------------------------------------ */
typedef struct {
  const cli_train_opts *o;
  const char *cmd;
  cli_progress progress;
  nn_fit_callbacks shown;
  nn_model *model;
  nn_optimizer *opt;
  recipe rc;
  nn_rng data_rng;
  const float *probe_x;
  int probe_n;
  cli_train_result *res;
  double best;
  char data[4096];        /* data source (from the checkpoint when resuming) */
  unsigned char reported[256]; /* layers whose skipped running-stat updates were reported */
  const char *out;        /* run directory: --out, or the one being resumed */
  nn_history *hist;       /* every epoch so far, resumed ones included */
  nn_status save_status;
  nn_error save_err;
} job;

static void on_begin(void *u, int e, int n, int b) {
  job *j = u;
  j->shown.on_epoch_begin(j->shown.user, e, n, b);
}

static int on_batch(void *u, int e, int b, int n, double l, double a) {
  job *j = u;
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

static nn_status save(job *j, const char *file, int with_optimizer, int epoch, nn_error *err) {
  char path[4200], vals[NKEYS + 4][160];
  nn_meta_pair meta[NKEYS + 4];
  int n = 0;
  for (int k = 0; k < NKEYS; k++, n++) {
    recipe_to_text(&j->rc, k, vals[n], sizeof vals[n]);
    meta[n] = (nn_meta_pair){recipe_keys[k].key, vals[n]};
  }
  snprintf(vals[n], sizeof vals[n], "%d", epoch);
  meta[n] = (nn_meta_pair){"normnet.epoch", vals[n]}, n++;
  snprintf(vals[n], sizeof vals[n], "%llx,%llx,%llx,%llx", (unsigned long long)j->data_rng.s[0],
           (unsigned long long)j->data_rng.s[1], (unsigned long long)j->data_rng.s[2],
           (unsigned long long)j->data_rng.s[3]);
  meta[n] = (nn_meta_pair){"normnet.data_rng", vals[n]}, n++;
  meta[n++] = (nn_meta_pair){"normnet.model", j->o->model};
  meta[n++] = (nn_meta_pair){"normnet.data", j->data};
  snprintf(path, sizeof path, "%s/%s", j->out, file);
  return nn_checkpoint_save_training(j->model, with_optimizer ? j->opt : NULL, path, meta, n, err);
}

/* Say once per layer, on stderr, that non-finite batch statistics were not averaged in. */
static void report_skips(job *j) {
  if (!cli_is_rank0()) return; /* the ranks agree on the statistics: rank 0 speaks */
  for (int i = 0; i < nn_model_num_layers(j->model) && i < 256; i++) {
    nn_layer_info li;
    nn_model_layer_info(j->model, i, &li);
    if (li.skipped_updates && !j->reported[i]) {
      fprintf(stderr,
              "normnet %s: warning: layer %d (%s, line %d): %d batch(es) had non-finite statistics; their "
              "running-stat updates were skipped\n",
              j->cmd, i, li.kind, li.line, li.skipped_updates);
      j->reported[i] = 1;
    }
  }
}

static void on_end(void *u, const nn_epoch_record *r) {
  job *j = u;
  report_skips(j);
  j->shown.on_epoch_end(j->shown.user, r);
  if (j->o->track_activations) track(j, r->epoch);
  if (!j->save_status) j->save_status = nn_history_append(j->hist, r, &j->save_err);
  if (!j->out || j->save_status) return;
  char path[4200];
  snprintf(path, sizeof path, "%s/history.csv", j->out);
  j->save_status = save(j, "model.safetensors", 1, r->epoch, &j->save_err);
  if (!j->save_status) j->save_status = nn_history_write_csv(j->hist, path, &j->save_err);
  if (!j->save_status && r->test_acc > j->best) {
    j->best = r->test_acc;
    j->save_status = save(j, "best.safetensors", 0, r->epoch, &j->save_err);
  }
  if (j->o->crash_after_epoch == r->epoch) raise(SIGKILL); /* testing aid: a real, abrupt kill */
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

/* Resume: the recipe, epoch and data stream from DIR/model.safetensors. */
static int load_resume(const char *cmd, const char *dir, recipe *rc, int *epoch, nn_rng *rng, char *data,
                       size_t datalen) {
  char path[4200];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  nn_error err = {0};
  char *v = NULL;
  for (int k = 0; k < NKEYS; k++) {
    if (nn_checkpoint_meta(path, recipe_keys[k].key, &v, &err)) return cli_fail(cmd, &err);
    if (!v || recipe_from_text(rc, k, v)) {
      cli_error(cmd, "--resume %s: %s has no valid '%s' (not written by normnet train)", dir, path, recipe_keys[k].key);
      free(v);
      return EXIT_FAIL;
    }
    free(v), v = NULL;
  }
  unsigned long long s[4];
  char *ep = NULL, *st = NULL, *src = NULL;
  int ok = !nn_checkpoint_meta(path, "normnet.epoch", &ep, &err) && ep && sscanf(ep, "%d", epoch) == 1 &&
           !nn_checkpoint_meta(path, "normnet.data_rng", &st, &err) && st &&
           sscanf(st, "%llx,%llx,%llx,%llx", &s[0], &s[1], &s[2], &s[3]) == 4 &&
           !nn_checkpoint_meta(path, "normnet.data", &src, &err) && src;
  if (ok) snprintf(data, datalen, "%s", src);
  free(ep), free(st), free(src);
  if (!ok) {
    cli_error(cmd, "--resume %s: %s lacks the epoch or data stream state", dir, path);
    return EXIT_FAIL;
  }
  for (int i = 0; i < 4; i++) rng->s[i] = s[i];
  return EXIT_OK;
}

int cli_train_run(const char *cmd, const cli_train_opts *o, cli_train_result *res) {
  memset(res, 0, sizeof *res);
  if (o->threads) nn_set_threads(o->threads);
  job j = {.o = o, .cmd = cmd, .res = res, .best = -1};
  recipe *rc = &j.rc;
  cli_model cm = {0};
  nn_model *m = NULL;
  nn_dataset *train = NULL, *test = NULL, *all = NULL;
  nn_augment aug;
  nn_error err = {0};
  int rc_exit = EXIT_OK, done_epochs = 0;
  float *probe = NULL;

  if (o->resume) {
    cli_model_resolve(cmd, o->resume, &cm); /* a run directory: sets cm.checkpoint */
    if (!cm.checkpoint[0]) {
      cli_error(cmd, "--resume %s: not a run directory with model.safetensors", o->resume);
      return EXIT_USAGE;
    }
    if ((rc_exit = load_resume(cmd, o->resume, rc, &done_epochs, &j.data_rng, j.data, sizeof j.data))) return rc_exit;
    if (o->epochs >= 0) rc->fit.epochs = o->epochs; /* extend a finished run */
    if (nn_checkpoint_load(cm.checkpoint, NULL, &m, &err)) return cli_fail(cmd, &err);
  } else {
    if ((rc_exit = cli_model_resolve(cmd, o->model, &cm))) return rc_exit;
    if (cm.checkpoint[0]) {
      cli_error(cmd, "--model %s is a trained checkpoint; give a preset or a spec file (or --init it)", o->model);
      cli_model_free(&cm);
      return EXIT_USAGE;
    }
    const nn_preset *p = cm.preset;
    rc->opt = p ? p->opt : nn_opt_defaults(NN_OPT_ADAM);
    if (o->optimizer) {
      int k = nn_opt_kind_parse(o->optimizer);
      if (k < 0) {
        cli_error(cmd, "--optimizer: unknown '%s' (expected sgd, adam or adamw)", o->optimizer);
        cli_model_free(&cm);
        return EXIT_USAGE;
      }
      if (!p || k != (int)p->opt.kind) rc->opt = nn_opt_defaults((nn_opt_kind)k);
    }
    if (o->lr > 0) rc->opt.lr = o->lr;
    if (o->momentum >= 0) rc->opt.momentum = o->momentum;
    if (o->weight_decay >= 0) rc->opt.weight_decay = o->weight_decay;
    if (o->nesterov) rc->opt.nesterov = 1;
    nn_init init = p ? p->init : NN_INIT_DEFAULT;
    const char *init_from = NULL; /* --init CHECKPOINT|RUNDIR: fine-tuning */
    cli_model from = {0};
    if (o->init && !strcmp(o->init, "xavier")) init = NN_INIT_XAVIER_UNIFORM;
    else if (o->init && !strcmp(o->init, "default")) init = NN_INIT_DEFAULT;
    else if (o->init) {
      if ((rc_exit = cli_model_resolve(cmd, o->init, &from)) || !from.checkpoint[0]) {
        if (!rc_exit) cli_error(cmd, "--init %s: expected default, xavier, a checkpoint or a run directory", o->init);
        cli_model_free(&from);
        cli_model_free(&cm);
        return EXIT_USAGE;
      }
      init_from = from.checkpoint;
    }
    rc->fit = nn_fit_defaults();
    rc->fit.epochs = o->epochs >= 0 ? o->epochs : (p ? p->epochs : 10);
    rc->fit.batch_size = o->batch > 0 ? o->batch : (p ? p->batch_size : 32);
    rc->fit.shuffle = o->shuffle;
    rc->fit.drop_last = o->drop_last;
    rc->fit.max_steps = o->max_steps;
    rc->fit.input_norm = p ? p->input_norm : (nn_input_norm){0.0f, 1.0f};
    rc->seed = o->seed;
    rc->val_split = o->val_split;
    snprintf(rc->augment, sizeof rc->augment, "%s", o->augment ? o->augment : "");
    cli_args a = {0, NULL, 0, cmd, NULL, 0};
    if (o->input_norm && cli_input_norm(&a, o->input_norm, &rc->fit.input_norm)) {
      cli_model_free(&cm);
      return EXIT_USAGE;
    }
    if (o->freeze_bn) nn_spec_freeze_bn(cm.spec);
    if (o->placement && nn_spec_set_bn_placement(cm.spec, o->placement, &err)) {
      cli_error(cmd, "--bn-placement: %s", err.msg);
      cli_model_free(&cm);
      return EXIT_USAGE;
    }
    if ((rc_exit = cli_model_build(cmd, &cm, o->norm, init, o->seed, &m))) {
      cli_model_free(&cm);
      return rc_exit;
    }
    if (init_from) {
      /* fine-tuning: weights and statistics from another run, the spec from --model */
      nn_model *src = NULL;
      if (nn_checkpoint_load(init_from, nn_model_spec(m), &src, &err)) rc_exit = cli_fail(cmd, &err);
      else {
        memcpy(nn_model_params(m), nn_model_params(src), nn_model_param_count(m) * sizeof(float));
        memcpy(nn_model_state(m), nn_model_state(src), nn_model_state_count(m) * sizeof(float));
        for (int t = 0; t < nn_model_num_tensors(m); t++) {
          nn_tensor_view dst_view, src_view;
          nn_model_tensor(m, t, &dst_view);
          nn_model_tensor(src, t, &src_view);
          if (dst_view.count_value) *dst_view.count_value = *src_view.count_value;
        }
      }
      nn_model_free(src);
    }
    cli_model_free(&from);
    nn_fit_seed_data_rng(&j.data_rng, o->seed);
    snprintf(j.data, sizeof j.data, "%s", o->data);
  }
  if (rc->augment[0] && !rc_exit && nn_augment_parse(rc->augment, &aug, &err)) {
    cli_error(cmd, "--augment: %s", err.msg);
    rc_exit = EXIT_USAGE;
  }
  if (!rc_exit && (nn_dataset_open(j.data, 1, &all, &err) ||
                   (rc->val_split > 0 ? nn_dataset_split(all, rc->val_split, &train, &test, &err)
                                      : nn_dataset_open(j.data, 0, &test, &err)) ||
                   nn_optimizer_create(&rc->opt, m, &j.opt, &err) ||
                   (o->resume && nn_checkpoint_load_optimizer(cm.checkpoint, m, j.opt, &err))))
    rc_exit = cli_fail(cmd, &err);
  if (!train) train = all, all = NULL;
  /* under mpirun rank 0 alone writes the run; every rank reads what it resumes */
  const char *out = j.out = cli_is_rank0() ? (o->resume ? o->resume : o->out) : NULL;
  if (!rc_exit && out && !o->resume && mkdir(out, 0777) != 0 && errno != EEXIST) {
    cli_error(cmd, "--out %s: cannot create directory: %s", out, strerror(errno));
    rc_exit = EXIT_FAIL;
  }
  if (!rc_exit && out) {
    char path[4200], *spec_text = nn_spec_to_text(nn_model_spec(m));
    snprintf(path, sizeof path, "%s/spec.txt", out);
    if (!spec_text) {
      cli_error(cmd, "out of memory");
      rc_exit = EXIT_FAIL;
    } else if (nn_file_write_atomic(path, spec_text, strlen(spec_text), &err)) {
      rc_exit = cli_fail(cmd, &err);
    }
    free(spec_text);
  }
  if (!rc_exit && o->resume) {
    char path[4200];
    snprintf(path, sizeof path, "%s/history.csv", o->resume);
    if (nn_history_read_csv(path, done_epochs, &j.hist, &err)) rc_exit = cli_fail(cmd, &err);
  } else if (!rc_exit && !(j.hist = nn_history_create())) {
    cli_error(cmd, "out of memory");
    rc_exit = EXIT_FAIL;
  }
  if (!rc_exit && o->track_activations) {
    /* a fixed probe batch: the first 256 validation/test samples */
    int c, h, w, n = nn_dataset_count(test) < 256 ? nn_dataset_count(test) : 256;
    nn_dataset_shape(test, &c, &h, &w);
    uint32_t *idx = malloc((size_t)n * sizeof *idx);
    probe = malloc((size_t)n * c * h * w * sizeof *probe);
    if (!idx || !probe) rc_exit = EXIT_FAIL;
    else {
      for (int i = 0; i < n; i++) idx[i] = (uint32_t)i;
      nn_dataset_batch(test, idx, n, rc->fit.input_norm, probe, NULL);
      j.probe_x = probe, j.probe_n = n;
    }
    free(idx);
  }
  if (!rc_exit) {
    res->params = nn_model_param_count(m);
    if (!o->quiet)
      printf("normnet %s: %s, norm %s, %zu parameters; %s: %d train / %d %s samples; %s lr %g, batch %d, %d epochs, "
             "seed %llu%s%s\n",
             cmd, o->label ? o->label : (o->resume ? o->resume : o->model), o->resume ? "(resumed)" : o->norm,
             res->params, j.data, nn_dataset_count(train), nn_dataset_count(test),
             rc->val_split > 0 ? "validation" : "test", nn_opt_kind_name(rc->opt.kind), rc->opt.lr, rc->fit.batch_size,
             rc->fit.epochs, rc->seed, rc->augment[0] ? ", augment " : "", rc->augment);
    j.model = m;
    if (o->track_activations) track(&j, done_epochs);
    nn_fit_config fc = rc->fit;
    fc.seed = rc->seed;
    fc.augment = rc->augment[0] ? &aug : NULL;
    fc.first_epoch = done_epochs + 1;
    fc.data_rng = &j.data_rng;
    cli_progress_init(&j.progress, stdout, o->quiet, o->label);
    j.shown = cli_progress_callbacks(&j.progress);
    nn_fit_callbacks cb = {.user = &j, .on_epoch_begin = on_begin, .on_batch = on_batch, .on_epoch_end = on_end};
    nn_comm *comm = cli_comm();
    comm->sync_bn = o->sync_bn;
    fc.comm = comm;
    /* under mpirun: every rank is ready (or all stop with the first failing rank's message) */
    nn_status st = (rc_exit = cli_dist_agree(EXIT_OK)) ? NN_OK : nn_fit(m, j.opt, train, test, &fc, &cb, NULL, &err);
    report_skips(&j);
    if (!rc_exit && out && o->track_activations && write_activations(cmd, out, res, m)) rc_exit = EXIT_FAIL;
    if (st) rc_exit = cli_fail(cmd, &err);
    else if (j.save_status) rc_exit = cli_fail(cmd, &j.save_err);
    res->hist = j.hist;
    j.hist = NULL;
  }
  nn_history_free(j.hist);
  free(probe);
  nn_optimizer_free(j.opt);
  nn_dataset_free(all);
  nn_dataset_free(train);
  nn_dataset_free(test);
  nn_model_free(m);
  cli_model_free(&cm);
  return rc_exit;
}

void cli_train_result_free(cli_train_result *r) {
  nn_history_free(r->hist);
  free(r->act);
  memset(r, 0, sizeof *r);
}
