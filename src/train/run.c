/* The run (ARCHITECTURE.md §8): recipe + model + optimizer + data stream + history, saved and resumed
 * from a run directory.
 *
 * Commit point: DIR/model.safetensors, written atomically once per epoch, carries everything
 * a resume needs: weights, optimizer moments and step count, the data stream, the recipe
 * ("normnet.recipe.KEY") and every history row ("normnet.history"); the model's input
 * transform and data source travel as model state. best.safetensors (with its epoch in
 * "normnet.epoch"), history.csv and spec.txt are written after it; a resume rewrites them
 * from the commit point when a kill came in between (the resumed model is that epoch's).
 * A kill at any instant therefore leaves epoch N or N+1.
 *
 * DIR/lock holds the PID, start time and machine of the training process: a live holder is
 * refused, a dead one's lock (or a reused PID's: another start time) taken over, another
 * machine's refused naming it. (Two processes taking over the same dead lock at the same
 * instant can both succeed; a live holder is always seen.) */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "data/dataset.h"
#include "model/spec.h"
#include "train/fit.h"
#include "train/history.h"

#define RECIPE_PREFIX "normnet.recipe."
#define HISTORY_KEY "normnet.history"
#define DATA_RNG_KEY "normnet.data_rng"
#define POSITION_KEY "normnet.position" /* only when max_steps stopped the last epoch inside */
#define EPOCH_KEY "normnet.epoch"

struct nn_run {
  nn_recipe r;
  char *dir;      /* NULL: nothing written */
  char *read_dir; /* a reader's run directory (nn_run_resume_reader): read, never written */
  nn_model *m;
  nn_optimizer *opt;
  nn_dataset *train, *eval;
  nn_augment aug;
  nn_rng data_rng;     /* shuffling/augmentation stream where the last epoch stopped */
  nn_fit_position pos; /* inside the last epoch (its history row partial) when pos.batch > 0 */
  nn_history *hist;
  int locked;
  int made_levels;              /* directories open_dir created (dir and missing parents): removed
                                   again by nn_run_free while empty */
  nn_comm comm;                 /* data parallel training (a copy, its sync_bn the recipe's); size 0: none */
  const nn_fit_callbacks *user; /* during nn_run_train */
};

/* Recipe keys that are model state, not written under RECIPE_PREFIX. */
static int is_model_key(const char *k) { return !strcmp(k, "data") || !strcmp(k, "input-norm"); }

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* ---- lock ------------------------------------------------------------------------------ */

/* A lock file: "PID START HOST\n", START the process's start time in clock ticks after boot
 * (/proc/PID/stat, field 22) and HOST its machine: a PID alone is reused after a reboot or
 * a container restart, and names another process on a machine sharing the directory.
 * (Older locks hold the PID alone: start 0, host "".) */
typedef struct {
  long pid;
  unsigned long long start;
  char host[256];
} lock_owner;

/* Process pid's start time, 0 if unknown; *zombie: whether it is one. */
static unsigned long long proc_start(long pid, int *zombie) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  *zombie = 0;
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* "pid (comm) S ppid ...": fields from 3 on after it */
  if (!p || p[1] != ' ') return 0;
  *zombie = p[2] == 'Z';
  unsigned long long start = 0;
  p += 2;
  for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' ');
  return p && sscanf(p, " %llu", &start) == 1 ? start : 0;
}

static lock_owner lock_self(void) {
  lock_owner o = {.pid = (long)getpid()};
  int zombie;
  o.start = proc_start(o.pid, &zombie);
  if (gethostname(o.host, sizeof o.host - 1) != 0) o.host[0] = 0;
  return o;
}

static int read_lock(const char *path, lock_owner *o) {
  *o = (lock_owner){.pid = -1};
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[320] = {0};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 && sscanf(buf, "%ld %llu %255s", &o->pid, &o->start, o->host) >= 1 ? 0 : -1;
}

/* Whether the lock's holder (on this machine) still runs: a process with its PID and start
 * time that is not a zombie (a killed holder whose parent is gone may stay one where nothing
 * reaps orphans, e.g. in a container without an init). */
static int holder_alive(const lock_owner *o) {
  if (o->pid <= 0 || (kill((pid_t)o->pid, 0) != 0 && errno != EPERM)) return 0;
  int zombie;
  unsigned long long start = proc_start(o->pid, &zombie);
  return !zombie && !(o->start && start && start != o->start);
}

/* The lock file's decisions (create with our PID, judge a holder, take a dead one's over,
 * remove ours) are made under an advisory lock of the directory itself, so two processes
 * can neither both take over the same stale lock nor read a lock created but not yet
 * written. */
static int dir_guard(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0)
    while (flock(fd, LOCK_EX) != 0 && errno == EINTR) continue;
  return fd;
}

static void dir_unguard(int fd) {
  if (fd >= 0) close(fd); /* releases the flock */
}

static nn_status lock_take(nn_run *run, nn_error *err) {
  char *path = join(run->dir, "lock");
  if (!path) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_status st = NN_OK;
  const lock_owner self = lock_self();
  int guard = dir_guard(run->dir);
  for (int tries = 0;; tries++) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) {
      char buf[320];
      int n = snprintf(buf, sizeof buf, "%ld %llu %s\n", self.pid, self.start, self.host[0] ? self.host : "-");
      int ok = write(fd, buf, (size_t)n) == n;
      if (close(fd) != 0) ok = 0;
      if (!ok) {
        unlink(path);
        st = nn_err_set(err, NN_ERR_IO, "%s: cannot write the lock file: %s", path, strerror(errno));
      } else {
        run->locked = 1;
      }
      break;
    }
    if (errno != EEXIST || tries == 3) {
      st = nn_err_set(err, NN_ERR_IO, "%s: cannot create the lock file: %s", path, strerror(errno));
      break;
    }
    lock_owner o;
    read_lock(path, &o);
    if (o.host[0] && strcmp(o.host, self.host) && strcmp(o.host, "-")) {
      st = nn_err_set(err, NN_ERR_IO,
                      "%s: the run is locked by process %ld on %s, which may still be training it (if not, remove %s)",
                      run->dir, o.pid, o.host, path);
      break;
    }
    if (holder_alive(&o)) { /* this process too: another nn_run of it has the directory open */
      st = o.pid == self.pid
               ? nn_err_set(err, NN_ERR_IO, "%s: the run is open in this process already (another nn_run holds %s)",
                            run->dir, path)
               : nn_err_set(err, NN_ERR_IO, "%s: the run is locked by process %ld, which is still training it (%s)",
                            run->dir, o.pid, path);
      break;
    }
    unlink(path); /* a dead holder's lock (or garbage): take it over */
  }
  dir_unguard(guard);
  free(path);
  return st;
}

static void lock_release(nn_run *run) {
  if (!run->locked) return;
  char *path = join(run->dir, "lock");
  int guard = dir_guard(run->dir);
  lock_owner o;
  if (path && !read_lock(path, &o) && o.pid == (long)getpid()) unlink(path);
  dir_unguard(guard);
  free(path);
  run->locked = 0;
}

/* ---- building ------------------------------------------------------------------------- */

/* dir with its trailing '/'s dropped into p (cap bytes); 0 if it does not fit. */
static int trimmed(const char *dir, char *p, size_t cap) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  if (n >= cap) return 0;
  memcpy(p, dir, n);
  p[n] = 0;
  return 1;
}

/* p cut to its parent directory; 0 if it has none ("runs", "/"). */
static int to_parent(char *p) {
  char *s = strrchr(p, '/');
  while (s && s > p && s[-1] == '/') s--;
  if (!s || s == p) return 0;
  *s = 0;
  return 1;
}

/* How many of dir and its parents do not exist yet (what nn_file_make_dirs will create). */
static int missing_levels(const char *dir) {
  char p[4096];
  struct stat sb;
  int n = 0;
  if (!trimmed(dir, p, sizeof p)) return 0;
  while (stat(p, &sb) != 0) {
    n++;
    if (!to_parent(p)) break;
  }
  return n;
}

/* The directories open_dir created, leaf first, each only while empty (rmdir fails, as it
 * should, once anything is in it: a run that committed an epoch, a sibling run). */
static void remove_made(const nn_run *run) {
  char p[4096];
  if (!run->made_levels || !trimmed(run->dir, p, sizeof p)) return;
  for (int i = 0; i < run->made_levels && !rmdir(p); i++)
    if (!to_parent(p)) break;
}

void nn_run_free(nn_run *run) {
  if (!run) return;
  lock_release(run);
  remove_made(run);
  free(run->dir);
  free(run->read_dir);
  nn_optimizer_free(run->opt);
  nn_model_free(run->m);
  nn_dataset_free(run->train);
  nn_dataset_free(run->eval);
  nn_history_free(run->hist);
  free(run);
}

/* The run's spec: `spec` with the recipe's normalization choices. */
static nn_status make_spec(const nn_recipe *r, const nn_spec *spec, nn_spec **out, nn_error *err) {
  nn_spec *s = nn_spec_copy(spec);
  if (!s) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_status st = nn_spec_set_norm(s, r->norm, err); /* NORM or NORM@placement */
  if (st) st = nn_err_prefix(err, st, "norm %s: ", r->norm);
  if (!st && r->bn_placement[0] && (st = nn_spec_set_bn_placement(s, r->bn_placement, err)))
    st = nn_err_prefix(err, st, "bn-placement %s: ", r->bn_placement);
  if (!st && r->freeze_bn) nn_spec_freeze_bn(s);
  if (st) {
    nn_spec_free(s);
    return st;
  }
  *out = s;
  return NN_OK;
}

/* Data, augmentation, optimizer and an empty history for run->m and run->r. */
/* The data the run lacks: both sets, or with eval_only the evaluation set alone (the test
 * split; a validation split is cut from the training set, so both are read then). On failure
 * the caller frees what was opened. */
static nn_status open_data(nn_run *run, int eval_only, nn_error *err) {
  const nn_recipe *r = &run->r;
  nn_status st = NN_OK;
  if (r->val_split > 0 && !run->train) {
    nn_dataset *all = NULL;
    st = nn_dataset_open(r->data, NN_SPLIT_TRAIN, &all, err);
    nn_dataset_free(run->eval), run->eval = NULL;
    if (!st) st = nn_dataset_split(all, r->val_split, &run->train, &run->eval, err);
    nn_dataset_free(all);
  } else if (r->val_split <= 0) {
    if (!eval_only && !run->train) st = nn_dataset_open(r->data, NN_SPLIT_TRAIN, &run->train, err);
    if (!st && !run->eval) st = nn_dataset_open(r->data, NN_SPLIT_TEST, &run->eval, err);
  }
  if (!st && run->train)
    st = nn_fit_check_input(run->m, run->train, r->val_split > 0 ? "the training split" : "the training set", err);
  if (!st) st = nn_fit_check_input(run->m, run->eval, r->val_split > 0 ? "the validation split" : "the test set", err);
  if (!st && run->train) st = nn_fit_check_same_shape(run->train, run->eval, "the test set", err);
  if (st) return nn_err_prefix(err, st, "data %s: ", r->data);
  return NN_OK;
}

/* Augmentation, input, data (with_data), optimizer and an empty history of the recipe. */
static nn_status prepare(nn_run *run, int with_data, nn_error *err) {
  const nn_recipe *r = &run->r;
  nn_status st = NN_OK;
  memset(&run->aug, 0, sizeof run->aug);
  if (r->augment[0] && (st = nn_augment_parse(r->augment, &run->aug, err))) return nn_err_prefix(err, st, "augment: ");
  if ((st = nn_model_set_input(run->m, &r->input_norm, r->data, err))) return st;
  if (with_data && (st = open_data(run, 0, err))) return st;
  if ((st = nn_optimizer_create(&r->opt, run->m, &run->opt, err))) return st;
  if (!run->hist && !(run->hist = nn_history_create())) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_history_set_validation(run->hist, r->val_split > 0);
  return NN_OK;
}

/* Create dir (and its parents) if needed, lock it, remove dead writers' temporaries. The
 * directories made here and left empty (a run that failed or was only checked before its
 * first save) go again with the run (nn_run_free): a refused run leaves nothing behind. */
static nn_status open_dir(nn_run *run, const char *dir, nn_error *err) {
  if (!(run->dir = strdup(dir))) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  const int missing = missing_levels(dir);
  nn_status st = nn_file_make_dirs(dir, err);
  if (st) return st;
  run->made_levels = missing;
  st = lock_take(run, err);
  if (!st) st = nn_file_remove_stale_temps(dir, err);
  return st;
}

nn_status nn_run_create(const nn_recipe *r, const nn_spec *spec, const char *dir, int overwrite, nn_run **out,
                        nn_error *err) {
  if (!out) return nn_err_set(err, NN_ERR_ARG, "nn_run_create: out is NULL");
  *out = NULL;
  if (!r || !spec) return nn_err_set(err, NN_ERR_ARG, "nn_run_create: recipe or spec is NULL");
  nn_status chk = nn_recipe_check(r, err);
  if (chk) return chk;
  nn_run *run = calloc(1, sizeof *run);
  if (!run) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  run->r = *r;
  nn_data_source_absolute(run->r.data, sizeof run->r.data);
  nn_spec *s = NULL;
  nn_status st = make_spec(r, spec, &s, err);
  if (!st) st = nn_model_create(s, &run->m, err);
  nn_spec_free(s);
  if (!st) {
    nn_rng rng;
    nn_rng_seed(&rng, r->seed);
    nn_model_init(run->m, r->init, &rng);
  }
  if (!st && r->init_from[0]) { /* fine-tuning: weights and statistics of another run */
    if ((st = nn_checkpoint_load_weights(r->init_from, run->m, err))) nn_err_prefix(err, st, "init-from: ");
  }
  if (!st) st = prepare(run, 1, err);
  nn_fit_seed_data_rng(&run->data_rng, r->seed);
  if (!st && dir) {
    st = open_dir(run, dir, err);
    char *ck = st ? NULL : join(dir, "model.safetensors"), *hp = st ? NULL : join(dir, "history.csv");
    struct stat sb;
    if (!st && (!ck || !hp)) st = nn_err_set(err, NN_ERR_NOMEM, "out of memory");
    else if (!st && !overwrite && lstat(ck, &sb) == 0)
      st = nn_err_set(err, NN_ERR_ARG,
                      "%s already holds a run (%s): resume it (train --resume DIR), write elsewhere (--out), or "
                      "replace it (--overwrite)",
                      dir, ck);
    else if (!st && !overwrite && lstat(hp, &sb) == 0 && S_ISREG(sb.st_mode)) /* a run writes it after its checkpoint */
      st = nn_err_set(err, NN_ERR_ARG,
                      "%s holds a history.csv but no run (a comparison's table?): write elsewhere (--out), or "
                      "replace it (--overwrite)",
                      dir);
    free(ck);
    free(hp);
  }
  if (st) {
    nn_run_free(run);
    return st;
  }
  *out = run;
  return NN_OK;
}

/* ---- saving ---------------------------------------------------------------------------- */

static nn_status save(nn_run *run, const char *name, int training, nn_error *err) {
  int nk = nn_recipe_num_keys(), n = 0;
  nn_meta_pair *meta = calloc((size_t)nk + 4, sizeof *meta);
  char(*vals)[1100] = calloc((size_t)nk + 2, sizeof *vals);
  char(*keys)[64] = calloc((size_t)nk, sizeof *keys);
  char *hist = training ? nn_history_to_text(run->hist, 1) : NULL, *path = join(run->dir, name);
  nn_status st = NN_OK;
  if (!meta || !vals || !keys || !path || (training && !hist)) st = nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  for (int k = 0; !st && k < nk; k++) {
    if (is_model_key(nn_recipe_key(k))) continue;
    snprintf(keys[k], sizeof keys[k], RECIPE_PREFIX "%s", nn_recipe_key(k));
    nn_recipe_get(&run->r, k, vals[n], sizeof vals[n]);
    meta[n] = (nn_meta_pair){keys[k], vals[n]};
    n++;
  }
  if (!st) {
    snprintf(vals[n], sizeof vals[n], "%d", nn_history_count(run->hist));
    meta[n] = (nn_meta_pair){EPOCH_KEY, vals[n]}, n++;
  }
  if (!st && training) {
    const uint64_t *s = run->data_rng.s;
    snprintf(vals[n], sizeof vals[n], "%llx,%llx,%llx,%llx", (unsigned long long)s[0], (unsigned long long)s[1],
             (unsigned long long)s[2], (unsigned long long)s[3]);
    meta[n] = (nn_meta_pair){DATA_RNG_KEY, vals[n]}, n++;
    meta[n++] = (nn_meta_pair){HISTORY_KEY, hist};
    if (run->pos.batch > 0) {
      const nn_fit_position *p = &run->pos;
      const uint64_t *e = p->epoch_start.s;
      snprintf(vals[n], sizeof vals[n], "%d,%llx,%llx,%llx,%llx,%.17g,%.17g,%ld,%ld,%.17g", p->batch,
               (unsigned long long)e[0], (unsigned long long)e[1], (unsigned long long)e[2], (unsigned long long)e[3],
               p->loss_sum, p->lr, p->correct, p->seen, p->seconds);
      meta[n] = (nn_meta_pair){POSITION_KEY, vals[n]}, n++;
    }
  }
  if (!st) st = nn_checkpoint_save_training(run->m, training ? run->opt : NULL, path, meta, n, err);
  free(meta), free(vals), free(keys), free(hist), free(path);
  return st;
}

static nn_status write_exports(nn_run *run, nn_error *err) {
  char *spec = nn_spec_to_text(nn_model_spec(run->m));
  char *sp = join(run->dir, "spec.txt"), *hp = join(run->dir, "history.csv");
  nn_status st = !spec || !sp || !hp ? nn_err_set(err, NN_ERR_NOMEM, "out of memory") : NN_OK;
  if (!st) st = nn_file_write_atomic(sp, spec, strlen(spec), err);
  if (!st) st = nn_history_write_csv(run->hist, hp, err);
  free(spec), free(sp), free(hp);
  return st;
}

/* The run's finished epochs: its history rows but a partial last one. */
static int complete_epochs(const nn_run *run) { return nn_history_count(run->hist) - (run->pos.batch > 0); }

/* The epoch (1-based) best.safetensors holds: the best evaluation accuracy of a finished
 * epoch, the first one on ties (a paused epoch's partial row is no candidate: the epoch
 * goes on, and an uninterrupted run would never have saved its middle); with early stopping,
 * the epoch it would put back (the lowest evaluation loss by its rule). 0 if none. */
static int best_epoch(const nn_run *run) {
  const nn_history *h = run->hist;
  if (run->r.early_stop)
    return nn_early_stop_replay(h, complete_epochs(run), run->r.early_stop, run->r.early_stop_delta, NULL).best_epoch;
  int best = 0;
  for (int i = 0; i < complete_epochs(run); i++)
    if (!best || nn_history_get(h, i)->test_acc > nn_history_get(h, best - 1)->test_acc) best = i + 1;
  return best;
}

/* The per-epoch commit: model.safetensors, then best (if this epoch is the best), then the
 * exports. */
static nn_status commit(void *user, const nn_epoch_record *rec, nn_error *err) {
  nn_run *run = user;
  /* an epoch continued from inside replaces its partial row */
  int n = nn_history_count(run->hist);
  nn_status st = n && nn_history_get(run->hist, n - 1)->epoch == rec->epoch ? nn_history_set_last(run->hist, rec)
                                                                            : nn_history_append(run->hist, rec, err);
  if (!st && run->dir) {
    st = save(run, "model.safetensors", 1, err);
    if (!st && best_epoch(run) == nn_history_count(run->hist)) st = save(run, "best.safetensors", 0, err);
    if (!st) st = write_exports(run, err);
  }
  if (!st && run->user && run->user->on_epoch_end) run->user->on_epoch_end(run->user->user, rec);
  return st;
}

/* After a kill between the commit and the best save: the last epoch is the best one but
 * best.safetensors holds another (or is missing). The resumed model is that epoch's. */
static nn_status repair_best(nn_run *run, nn_error *err) {
  int n = nn_history_count(run->hist);
  if (!n || best_epoch(run) != n) return NN_OK;
  char *path = join(run->dir, "best.safetensors"), *v = NULL;
  if (!path) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_error ignored = {0};
  int have = !nn_checkpoint_meta(path, EPOCH_KEY, &v, &ignored) && v && atoi(v) == n;
  free(v), free(path);
  return have ? NN_OK : save(run, "best.safetensors", 0, err);
}

static void pass_begin(void *u, int e, int n, int b) {
  nn_run *run = u;
  if (run->user->on_epoch_begin) run->user->on_epoch_begin(run->user->user, e, n, b);
}

static int pass_batch(void *u, int e, int b, int n, double l, double a) {
  nn_run *run = u;
  return run->user->on_batch ? run->user->on_batch(run->user->user, e, b, n, l, a) : 0;
}

int nn_run_best_epoch(const nn_run *run) { return best_epoch(run); }

int nn_run_epochs_done(const nn_run *run) { return complete_epochs(run); }

int nn_run_stopped_early(const nn_run *run) {
  int at = 0;
  if (run->r.early_stop)
    nn_early_stop_replay(run->hist, complete_epochs(run), run->r.early_stop, run->r.early_stop_delta, &at);
  return at;
}

int nn_run_finished(const nn_run *run) {
  return complete_epochs(run) >= run->r.epochs ||
         (run->r.max_steps > 0 && nn_optimizer_steps(run->opt) >= run->r.max_steps) || nn_run_stopped_early(run);
}

/* Early stopping goes on from the run's history; the weights it would put back are the
 * model's own when the best epoch is the last one, else best.safetensors' (its epoch
 * checked). NULL in *out when none is needed. */
static nn_status load_early_stop_best(const nn_run *run, nn_model **out, nn_error *err) {
  *out = NULL;
  int best = best_epoch(run), n = nn_history_count(run->hist);
  if (!run->r.early_stop || !best || (best == n && !run->pos.batch)) return NN_OK;
  const char *dir = run->dir ? run->dir : run->read_dir;
  if (!dir)
    return nn_err_set(err, NN_ERR_ARG,
                      "early stopping: the best epoch's weights (epoch %d) were not kept: a run without a "
                      "directory cannot continue",
                      best);
  char *path = join(dir, "best.safetensors"), *v = NULL;
  if (!path) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_status st = nn_checkpoint_meta(path, EPOCH_KEY, &v, err);
  if (!st && (!v || atoi(v) != best))
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: holds epoch %s, early stopping's best epoch is %d", path, v ? v : "(none)",
                    best);
  if (!st) st = nn_checkpoint_load(path, NULL, out, err);
  free(v), free(path);
  return st;
}

nn_status nn_run_train(nn_run *run, const nn_fit_callbacks *cb, nn_error *err) {
  static const nn_fit_callbacks none = {0};
  nn_status st = nn_run_load_data(run, err); /* a view has none yet */
  if (st) return st;
  run->user = cb ? cb : &none;
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = run->r.epochs;
  fc.batch_size = run->r.batch_size;
  fc.shuffle = run->r.shuffle;
  fc.drop_last = run->r.drop_last;
  fc.seed = run->r.seed;
  fc.input_norm = run->r.input_norm;
  fc.augment = run->r.augment[0] ? &run->aug : NULL;
  fc.max_steps = run->r.max_steps;
  fc.first_epoch = complete_epochs(run) + 1;
  fc.position = &run->pos;
  fc.data_rng = &run->data_rng;
  fc.comm = run->comm.size > 1 ? &run->comm : NULL;
  fc.lr_schedule = &run->r.lr_schedule;
  fc.accumulate = run->r.accumulate;
  fc.early_stop = run->r.early_stop;
  fc.early_stop_delta = run->r.early_stop_delta;
  fc.previous = run->hist;
  nn_model *best = NULL;
  st = load_early_stop_best(run, &best, err);
  if (st) return st;
  fc.previous_best = best;
  fc.divergence_factor = run->r.divergence_factor;
  fc.nan_check = run->r.nan_check;
  nn_fit_callbacks wrap = {.user = run, .on_epoch_begin = pass_begin, .on_batch = pass_batch, .epoch_done = commit};
  st = nn_fit(run->m, run->opt, run->train, run->eval, &fc, &wrap, NULL, err);
  nn_model_free(best);
  run->user = NULL;
  return st;
}

/* ---- resuming -------------------------------------------------------------------------- */

/* The recipe decides SyncBN: the run trains over a copy of comm with the recipe's sync_bn. */
void nn_run_set_comm(nn_run *run, const nn_comm *comm) {
  run->comm = comm ? *comm : (nn_comm){0};
  run->comm.sync_bn = run->r.sync_bn;
}

/* How a run directory is reopened: to train and write it (locked), to train without writing
 * (the other ranks of a data-parallel run), or to look at without its data. */
typedef enum { RUN_WRITER,
               RUN_READER,
               RUN_VIEW } run_mode;

static nn_status resume(const char *dir, run_mode mode, nn_run **out, nn_error *err);

nn_status nn_run_resume(const char *dir, nn_run **out, nn_error *err) { return resume(dir, RUN_WRITER, out, err); }
nn_status nn_run_resume_reader(const char *dir, nn_run **out, nn_error *err) {
  return resume(dir, RUN_READER, out, err);
}
nn_status nn_run_open_view(const char *dir, nn_run **out, nn_error *err) { return resume(dir, RUN_VIEW, out, err); }

static nn_status load_data(nn_run *run, int eval_only, nn_error *err) {
  if (!run) return nn_err_set(err, NN_ERR_ARG, "%s: run is NULL", eval_only ? "nn_run_load_eval_data" : "nn_run_load_data");
  if (run->eval && (eval_only || run->train)) return NN_OK;
  nn_status st = open_data(run, eval_only, err);
  if (st) { /* all or nothing: a later call tries again */
    nn_dataset_free(run->train), nn_dataset_free(run->eval);
    run->train = run->eval = NULL;
  }
  return st;
}
nn_status nn_run_load_data(nn_run *run, nn_error *err) { return load_data(run, 0, err); }
nn_status nn_run_load_eval_data(nn_run *run, nn_error *err) { return load_data(run, 1, err); }

static nn_status resume(const char *dir, run_mode mode, nn_run **out, nn_error *err) {
  const int writer = mode == RUN_WRITER;
  if (!out) return nn_err_set(err, NN_ERR_ARG, "nn_run_resume: out is NULL");
  *out = NULL;
  if (!dir) return nn_err_set(err, NN_ERR_ARG, "nn_run_resume: dir is NULL");
  nn_run *run = calloc(1, sizeof *run);
  if (!run) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_checkpoint *c = NULL;
  char *path = join(dir, "model.safetensors");
  struct stat sb;
  nn_status st = path ? NN_OK : nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  if (!st && stat(dir, &sb) != 0) st = nn_err_set(err, NN_ERR_IO, "%s: cannot open the run: %s", dir, strerror(errno));
  else if (!st && lstat(path, &sb) != 0)
    st = nn_err_set(err, NN_ERR_ARG, "%s: not a run directory with a checkpoint (%s: %s)", dir, path, strerror(errno));
  if (!st && writer) st = open_dir(run, dir, err);
  if (!st && !writer && !(run->read_dir = strdup(dir))) st = nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  if (!st) st = nn_checkpoint_open(path, &c, err);
  if (!st) st = nn_checkpoint_read_model(c, NULL, &run->m, err);
  /* the recipe: the model carries its input, the rest is recorded key by key */
  run->r = nn_recipe_default(NULL);
  for (int k = 0; !st && k < nn_recipe_num_keys(); k++) {
    const char *key = nn_recipe_key(k);
    if (is_model_key(key)) continue;
    char mk[96];
    snprintf(mk, sizeof mk, RECIPE_PREFIX "%s", key);
    const char *v = nn_checkpoint_get(c, mk);
    if (!v && nn_recipe_key_has_default(key)) continue;
    if (!v) st = nn_err_set(err, NN_ERR_FORMAT, "%s: has no '%s' (not the checkpoint of a normnet run)", path, mk);
    else if ((st = nn_recipe_set(&run->r, key, v, err))) nn_err_prefix(err, NN_ERR_FORMAT, "%s: %s: ", path, mk);
  }
  if (!st) {
    nn_input_norm in;
    if (!nn_model_input_norm(run->m, &in) || !nn_model_data_source(run->m)[0])
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: has no input transform or data source", path);
    run->r.input_norm = in;
    snprintf(run->r.data, sizeof run->r.data, "%s", nn_model_data_source(run->m));
  }
  const char *h = st ? NULL : nn_checkpoint_get(c, HISTORY_KEY), *rs = st ? NULL : nn_checkpoint_get(c, DATA_RNG_KEY);
  unsigned long long s[4];
  if (!st && (!h || !rs || sscanf(rs, "%llx,%llx,%llx,%llx", &s[0], &s[1], &s[2], &s[3]) != 4))
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: lacks the history or the data stream state ('%s', '%s')", path, HISTORY_KEY,
                    DATA_RNG_KEY);
  if (!st) {
    for (int i = 0; i < 4; i++) run->data_rng.s[i] = s[i];
    char name[1100];
    snprintf(name, sizeof name, "%s:%s", path, HISTORY_KEY);
    st = nn_history_parse(h, name, &run->hist, err);
  }
  const char *ps = st ? NULL : nn_checkpoint_get(c, POSITION_KEY);
  if (ps) {
    nn_fit_position *p = &run->pos;
    unsigned long long e[4] = {0};
    /* the tenth value, the epoch's training seconds so far, is absent from older runs */
    int n9 = 0, n10 = 0;
    p->seconds = 0;
    const int got = sscanf(ps, "%d,%llx,%llx,%llx,%llx,%lg,%lg,%ld,%ld%n", &p->batch, &e[0], &e[1], &e[2], &e[3],
                           &p->loss_sum, &p->lr, &p->correct, &p->seen, &n9);
    const int tail_ok = got == 9 && (!ps[n9] || (sscanf(ps + n9, ",%lg%n", &p->seconds, &n10) == 1 && !ps[n9 + n10]));
    if (!tail_ok || p->batch < 1 || p->seen < 0 || p->correct < 0 || p->correct > p->seen ||
        !isfinite(p->loss_sum) || !isfinite(p->lr) || !isfinite(p->seconds) || p->seconds < 0 ||
        nn_history_count(run->hist) < 1)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: '%s' is not a position inside an epoch", path, POSITION_KEY);
    for (int i = 0; i < 4; i++) p->epoch_start.s[i] = e[i];
  }
  if (!st) st = prepare(run, mode != RUN_VIEW, err);
  if (!st) st = nn_checkpoint_read_optimizer(c, run->m, run->opt, err);
  /* best and the exports follow the commit point (a kill may have come between them) */
  if (!st && writer) st = repair_best(run, err);
  if (!st && writer) st = write_exports(run, err);
  nn_checkpoint_close(c);
  free(path);
  if (st) {
    nn_run_free(run);
    return st;
  }
  *out = run;
  return NN_OK;
}

nn_status nn_run_set_epochs(nn_run *run, int epochs, nn_error *err) {
  if (epochs < 1) return nn_err_set(err, NN_ERR_ARG, "epochs: expected >= 1, got %d", epochs);
  const nn_lr_kind k = run->r.lr_schedule.kind;
  const long steps = nn_run_steps(run);
  if (epochs != run->r.epochs && steps > 0 && (k == NN_LR_COSINE || k == NN_LR_ONECYCLE))
    return nn_err_set(err, NN_ERR_ARG,
                      "epochs: the %s schedule runs over the run's %d epoch%s, %ld of its steps taken; %d epochs "
                      "would give those steps other learning rates: start a new run from this one's weights",
                      k == NN_LR_COSINE ? "cosine" : "onecycle", run->r.epochs, run->r.epochs == 1 ? "" : "s", steps,
                      epochs);
  run->r.epochs = epochs;
  return NN_OK;
}

nn_status nn_run_set_max_steps(nn_run *run, long max_steps, nn_error *err) {
  if (max_steps < 0) return nn_err_set(err, NN_ERR_ARG, "max-steps: expected >= 0 (0: no limit), got %ld", max_steps);
  run->r.max_steps = max_steps;
  return NN_OK;
}

/* ---- accessors ------------------------------------------------------------------------- */
const nn_recipe *nn_run_recipe(const nn_run *run) { return &run->r; }
nn_model *nn_run_model(nn_run *run) { return run->m; }
const nn_history *nn_run_history(const nn_run *run) { return run->hist; }
long nn_run_steps(const nn_run *run) { return nn_optimizer_steps(run->opt); }
const nn_dataset *nn_run_train_data(const nn_run *run) { return run->train; }
const nn_dataset *nn_run_eval_data(const nn_run *run) { return run->eval; }
const char *nn_run_dir(const nn_run *run) { return run->dir; }
