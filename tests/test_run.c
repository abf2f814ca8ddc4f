/* The run as a library object, through normnet.h only: a run killed (SIGKILL) and resumed
 * equals an uninterrupted one bitwise; 50 kills at random instants of a training that saves
 * every 4 steps each leave a directory that resumes, with no temporary file, and the run
 * finished through all of them is still bitwise the uninterrupted one; fine-tuning copies
 * the weights; a loaded model reports its input transform and data source; the lock and
 * the "holds a run" rule; recipe overrides by key.
 *
 * Children are this program re-executed (--child DIR KILL_EPOCH), never a bare fork of a
 * process whose OpenMP runtime is running. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt_check.h"
#include "cli_run.h"
#include "nn_test.h"

static char *dir;
static char data[1100];
static const char *spec_text =
    "input shape=1x8x8\nconv2d filters=4 kernel=3\nbatchnorm\nrelu\nflatten\n"
    "dropout rate=0.2\ndense units=10\n";
#define STEPS_PER_EPOCH 4 /* 32 training samples, batch 8 */

static nn_recipe recipe(int epochs) {
  nn_recipe r = nn_recipe_default(NULL);
  nn_error err = {0};
  char ep[16];
  snprintf(ep, sizeof ep, "%d", epochs);
  const char *kv[][2] = {{"optimizer", "adam"}, {"lr", "0.01"}, {"batch", "8"}, {"epochs", ep}, {"seed", "5"}, {"augment", "flip,crop=1"}, {"input-norm", "0.5,0.5"}, {"data", data}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (nn_recipe_set(&r, kv[i][0], kv[i][1], &err)) fail_msg("%s", err.msg);
  return r;
}

static nn_spec *spec(void) {
  nn_spec *s = NULL;
  nn_error err = {0};
  if (nn_spec_parse(spec_text, "run.spec", &s, &err)) fail_msg("%s", err.msg);
  return s;
}

static void path_of(char *out, size_t len, const char *sub, const char *file) {
  snprintf(out, len, "%s/%s%s%s", dir, sub, file ? "/" : "", file ? file : "");
}

/* Train a new run to the end in this process. */
static void train_new(const char *sub, int epochs) {
  char d[1024];
  path_of(d, sizeof d, sub, NULL);
  nn_recipe r = recipe(epochs);
  nn_spec *s = spec();
  nn_run *run = NULL;
  nn_error err = {0};
  if (nn_run_create(&r, s, d, 0, &run, &err) || nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
  nn_run_free(run);
  nn_spec_free(s);
}

/* ---- child mode: create or resume DIR, train, SIGKILL itself after epoch K (0: never; -1:
 * create and hold the lock until DIR/release exists, without training: exit 0, or 3 when
 * refused by the lock) */
static int kill_epoch;
static void kill_after(void *user, const nn_epoch_record *rec) {
  (void)user;
  if (rec->epoch == kill_epoch) raise(SIGKILL);
}

static int child(const char *d, int k, int epochs) {
  char ck[1100];
  snprintf(ck, sizeof ck, "%s/model.safetensors", d);
  nn_error err = {0};
  nn_run *run = NULL;
  nn_spec *s = NULL;
  nn_recipe r = recipe(epochs);
  kill_epoch = k;
  struct stat sb;
  nn_status st = stat(ck, &sb) == 0 ? nn_run_resume(d, &run, &err)
                                    : (nn_spec_parse(spec_text, "run.spec", &s, &err) ||
                                       nn_run_create(&r, s, d, 1, &run, &err));
  nn_fit_callbacks cb = {.on_epoch_end = kill_after};
  if (k < 0) { /* only hold the lock until DIR/release exists (test_lock_race; 60 s at most) */
    char release[1100];
    snprintf(release, sizeof release, "%s/release", d);
    struct timespec poll = {0, 5000000};
    for (int i = 0; !st && i < 12000 && access(release, F_OK) != 0; i++) nanosleep(&poll, NULL);
    nn_run_free(run);
    nn_spec_free(s);
    return !st ? 0 : strstr(err.msg, "locked by process") ? 3
                                                          : 1;
  }
  if (!st && !nn_run_finished(run)) st = nn_run_train(run, &cb, &err);
  if (st) fprintf(stderr, "child: %s\n", err.msg);
  nn_run_free(run);
  nn_spec_free(s);
  return st ? 1 : 0;
}

static pid_t spawn(const char *sub, int k, int epochs) {
  char d[1024], ks[16], es[16];
  path_of(d, sizeof d, sub, NULL);
  snprintf(ks, sizeof ks, "%d", k);
  snprintf(es, sizeof es, "%d", epochs);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execl("/proc/self/exe", "test_run", "--child", d, ks, es, data, (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* ---- comparisons ---------------------------------------------------------------------- */
static void assert_same_run(const char *a, const char *b) {
  char pa[1100], pb[1100];
  snprintf(pa, sizeof pa, "%s/model.safetensors", a);
  snprintf(pb, sizeof pb, "%s/model.safetensors", b);
  nn_checkpoint *ca = NULL, *cb = NULL;
  nn_model *ma = NULL, *mb = NULL;
  nn_error err = {0};
  if (nn_checkpoint_open(pa, &ca, &err) || nn_checkpoint_open(pb, &cb, &err) ||
      nn_checkpoint_read_model(ca, NULL, &ma, &err) || nn_checkpoint_read_model(cb, NULL, &mb, &err))
    fail_msg("%s", err.msg);
  assert_int_equal(nn_model_param_count(ma), nn_model_param_count(mb));
  if (memcmp(nn_model_params(ma), nn_model_params(mb), nn_model_param_count(ma) * sizeof(float)) ||
      memcmp(nn_model_state(ma), nn_model_state(mb), nn_model_state_count(ma) * sizeof(float)))
    fail_msg("%s and %s differ", pa, pb);
  /* same optimizer step count, data stream and history rows (timings aside) */
  const char *keys[] = {"normnet.optimizer_steps", "normnet.data_rng", "normnet.layer_rng"};
  for (int i = 0; i < 3; i++) {
    const char *va = nn_checkpoint_get(ca, keys[i]), *vb = nn_checkpoint_get(cb, keys[i]);
    assert_non_null(va);
    assert_non_null(vb);
    assert_string_equal(va, vb);
  }
  const char *ha = nn_checkpoint_get(ca, "normnet.history"), *hb = nn_checkpoint_get(cb, "normnet.history");
  assert_non_null(ha);
  assert_non_null(hb);
  for (;;) { /* each row's first five fields */
    const char *na = strchr(ha, '\n'), *nb = strchr(hb, '\n');
    int fa = 0, fb = 0;
    size_t la = 0, lb = 0;
    while (ha[la] && ha[la] != '\n' && (ha[la] != ',' || ++fa < 5)) la++;
    while (hb[lb] && hb[lb] != '\n' && (hb[lb] != ',' || ++fb < 5)) lb++;
    if (la != lb || memcmp(ha, hb, la)) fail_msg("history rows differ: %.*s vs %.*s", (int)la, ha, (int)lb, hb);
    if (!na || !nb) {
      assert_true(!na && !nb);
      break;
    }
    ha = na + 1, hb = nb + 1;
  }
  nn_model_free(ma), nn_model_free(mb);
  nn_checkpoint_close(ca), nn_checkpoint_close(cb);
}

static int count_temps(const char *d) {
  DIR *dd = opendir(d);
  int n = 0;
  if (!dd) return 0;
  for (struct dirent *e; (e = readdir(dd));) n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(dd);
  return n;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_resume_after_sigkill(void **state) {
  (void)state;
  train_new("straight", 4);
  pid_t pid = spawn("killed", 2, 4);
  int ws;
  assert_int_equal(waitpid(pid, &ws, 0), pid);
  assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
  char d[1024];
  path_of(d, sizeof d, "killed", NULL);
  nn_run *run = NULL;
  nn_error err = {0};
  if (nn_run_resume(d, &run, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_history_count(nn_run_history(run)), 2);
  assert_int_equal(nn_run_steps(run), 2 * STEPS_PER_EPOCH);
  assert_false(nn_run_finished(run));
  /* the recorded recipe came back */
  const nn_recipe *r = nn_run_recipe(run);
  assert_int_equal(r->opt.kind, NN_OPT_ADAM);
  assert_int_equal(r->batch_size, 8);
  assert_string_equal(r->augment, "flip,crop=1");
  assert_string_equal(r->data, data);
  if (nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
  assert_true(nn_run_finished(run));
  nn_run_free(run);
  char a[1024];
  path_of(a, sizeof a, "straight", NULL);
  assert_same_run(a, d);
  /* the lock is gone with the process that held it */
  char lock[1100];
  snprintf(lock, sizeof lock, "%s/lock", d);
  assert_int_equal(access(lock, F_OK), -1);
}

/* A run stopped by max_steps inside an epoch goes on from that batch: stopped after 5 steps
 * (inside epoch 2), resumed to 7 (still inside), then to 10 (inside epoch 3), it equals a
 * run of 10 steps bitwise: weights, optimizer, data stream (shuffling, augmentation),
 * dropout stream and every history row, the partial rows replaced as their epochs go on.
 * The same with a cosine schedule (its length is the epochs' steps, not max_steps': the
 * pauses must not bend the curve) and with early stopping whose min delta no epoch after the
 * first meets (a partial epoch is not an epoch of patience: counted, it put epoch 1's
 * weights back at step 5 and the resumed run went on from them). */
static void max_steps_case(const char *tag, const char *key, const char *value) {
  nn_spec *s = spec();
  nn_error err = {0};
  char dirs[2][1024], sub[64];
  const char *ref = dirs[0], *part = dirs[1];
  const long first_limit[2] = {10, 5};
  for (int k = 0; k < 2; k++) {
    snprintf(sub, sizeof sub, "steps-%s-%s", k ? "part" : "ref", tag);
    path_of(dirs[k], sizeof dirs[k], sub, NULL);
    nn_recipe r = recipe(5);
    r.max_steps = first_limit[k];
    if (key && nn_recipe_set(&r, key, value, &err)) fail_msg("%s", err.msg);
    nn_run *run = NULL;
    if (nn_run_create(&r, s, dirs[k], 0, &run, &err) || nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
    if (!key || strcmp(key, "early-stop")) assert_int_equal(nn_run_steps(run), first_limit[k]);
    nn_run_free(run);
  }
  const long limits[2] = {7, 10};
  for (int i = 0; i < 2; i++) {
    nn_run *run = NULL;
    if (nn_run_resume(part, &run, &err)) fail_msg("%s", err.msg);
    if (nn_run_set_max_steps(run, limits[i], &err)) fail_msg("%s", err.msg);
    assert_false(nn_run_finished(run));
    if (nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
    if (!key || strcmp(key, "early-stop")) {
      assert_int_equal(nn_run_steps(run), limits[i]);
      assert_int_equal(nn_history_count(nn_run_history(run)), (int)((limits[i] + STEPS_PER_EPOCH - 1) / STEPS_PER_EPOCH));
    }
    nn_run_free(run);
  }
  assert_same_run(ref, part);
  nn_spec_free(s);
}

/* Train a new run of recipe r in DIR/sub (its path into d): to the end, or paused after
 * `pause` optimizer steps (max_steps). The run, open. */
static nn_run *start_run(const char *sub, nn_recipe r, long pause, char *d, size_t len) {
  nn_spec *s = spec();
  nn_run *run = NULL;
  nn_error err = {0};
  path_of(d, len, sub, NULL);
  r.max_steps = pause;
  if (nn_run_create(&r, s, d, 0, &run, &err) || nn_run_train(run, NULL, &err)) fail_msg("%s: %s", sub, err.msg);
  nn_spec_free(s);
  return run;
}

/* Free a paused run, resume it from d and train it to its end. The run, open. */
static nn_run *resume_to_end(nn_run *paused, const char *d) {
  nn_run *run = NULL;
  nn_error err = {0};
  nn_run_free(paused);
  if (nn_run_resume(d, &run, &err) || nn_run_set_max_steps(run, 0, &err) || nn_run_train(run, NULL, &err))
    fail_msg("resumed %s: %s", d, err.msg);
  return run;
}

/* d/model.safetensors with its metadata `key` set to value (the rest as it was). */
static void set_meta(const char *d, const char *key, const char *value) {
  char path[1100];
  snprintf(path, sizeof path, "%s/model.safetensors", d);
  ck_st_file s;
  ck_st_read(path, &s);
  assert_int_equal(json_object_set_new(json_object_get(s.hdr, "__metadata__"), key, json_string(value)), 0);
  ck_st_write(path, s.hdr, s.data, s.dlen);
  ck_st_free(&s);
}

/* Counts a tampered checkpoint gives are refused where they would overflow what is derived
 * from them (a step count of 2^63 - 1 overflowed at the next step; a position's samples of
 * 2^63 - 1 wrote a negative loss and an accuracy of 1 into the history, exit 0). */
static void test_tampered_counts(void **state) {
  (void)state;
  char d[1024], path[1100], *pos = NULL;
  nn_error err = {0};
  nn_run_free(start_run("tampered", recipe(2), 1, d, sizeof d)); /* paused inside epoch 1 */
  snprintf(path, sizeof path, "%s/model.safetensors", d);
  if (nn_checkpoint_meta(path, "normnet.position", &pos, &err)) fail_msg("%s", err.msg);
  char *steps_ok = NULL;
  if (nn_checkpoint_meta(path, "normnet.optimizer_steps", &steps_ok, &err)) fail_msg("%s", err.msg);
  static const char *const steps[] = {"9223372036854775807", "99999999999999999999", "1000000000000001"};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    set_meta(d, "normnet.optimizer_steps", steps[i]);
    nn_run *run = NULL;
    nn_status st = nn_run_resume(d, &run, &err);
    if (st != NN_ERR_FORMAT || !strstr(err.msg, "out of range")) fail_msg("%s steps: status %d, %s", steps[i], st, err.msg);
    assert_null(run);
  }
  set_meta(d, "normnet.optimizer_steps", steps_ok);
  /* batch,rng x4,loss,lr,correct,seen[,seconds]: correct and seen of 2^63 - 1 */
  char bad[512];
  int commas = 0;
  size_t k = 0;
  for (const char *p = pos; *p && commas < 7; p++) commas += (bad[k++] = *p) == ',';
  snprintf(bad + k, sizeof bad - k, "9223372036854775807,9223372036854775807");
  set_meta(d, "normnet.position", bad);
  nn_run *run = NULL;
  if (nn_run_resume(d, &run, &err)) fail_msg("%s", err.msg);
  nn_status st = nn_run_train(run, NULL, &err);
  if (st == NN_OK || !strstr(err.msg, "does not fit")) fail_msg("position '%s': status %d, %s", bad, st, err.msg);
  nn_run_free(run);
  free(pos), free(steps_ok);
}

/* A pause inside an epoch saves no best model from the epoch's middle: its partial row is no
 * candidate (the first pause of a run made it the best epoch, and if it beat every finished
 * epoch best.safetensors kept the middle after the epoch ended worse); once the epoch ends,
 * its best model is the uninterrupted run's, bit for bit. */
static void test_pause_saves_no_best(void **state) {
  (void)state;
  nn_error err = {0};
  char d[2][1024], best[1100];
  for (int k = 0; k < 2; k++) {
    nn_run *run = start_run(k ? "best-paused" : "best-ref", recipe(1), k ? 1 : 0, d[k], sizeof d[k]);
    snprintf(best, sizeof best, "%.1023s/best.safetensors", d[k]);
    struct stat sb;
    if (k) {
      assert_int_equal(nn_run_best_epoch(run), 0);
      assert_int_equal(nn_history_count(nn_run_history(run)), 1); /* the paused epoch's partial row */
      assert_int_equal(nn_run_epochs_done(run), 0);
      assert_int_not_equal(stat(best, &sb), 0);
      run = resume_to_end(run, d[k]);
    }
    assert_int_equal(nn_run_best_epoch(run), 1);
    assert_int_equal(nn_run_epochs_done(run), 1);
    assert_int_equal(stat(best, &sb), 0);
    nn_run_free(run);
  }
  char a[1100], b[1100];
  snprintf(a, sizeof a, "%s/best.safetensors", d[0]);
  snprintf(b, sizeof b, "%s/best.safetensors", d[1]);
  nn_model *ma = NULL, *mb = NULL;
  if (nn_checkpoint_load(a, NULL, &ma, &err) || nn_checkpoint_load(b, NULL, &mb, &err)) fail_msg("%s", err.msg);
  assert_memory_equal(nn_model_params(ma), nn_model_params(mb), nn_model_param_count(ma) * sizeof(float));
  nn_model_free(ma), nn_model_free(mb);
}

static int stop_at_first_batch(void *user, int epoch, int batch, int batches, double loss, double acc) {
  (void)epoch, (void)batches, (void)loss, (void)acc;
  *(int *)user += 1;
  return batch == 1;
}

/* on_batch asking to stop inside an accumulation group: training goes on to the group's end
 * (it stopped at once and recorded a position inside the group, which no resume accepted:
 * "does not fit 4 batches of 8 in groups of 3"), and the resumed run is the uninterrupted
 * one, bit for bit. */
static void test_stop_inside_group(void **state) {
  (void)state;
  nn_spec *s = spec();
  nn_error err = {0};
  char d[2][1024];
  for (int k = 0; k < 2; k++) {
    path_of(d[k], sizeof d[k], k ? "group-stopped" : "group-ref", NULL);
    nn_recipe r = recipe(2);
    if (nn_recipe_set(&r, "accumulate", "3", &err)) fail_msg("%s", err.msg);
    nn_run *run = NULL;
    int calls = 0;
    const nn_fit_callbacks cb = {.user = &calls, .on_batch = stop_at_first_batch};
    if (nn_run_create(&r, s, d[k], 0, &run, &err) || nn_run_train(run, k ? &cb : NULL, &err)) fail_msg("%s", err.msg);
    if (k) {
      assert_int_equal(calls, 3); /* batches 1-3: the first group */
      assert_int_equal(nn_run_steps(run), 1);
      nn_run_free(run);
      if (nn_run_resume(d[k], &run, &err) || nn_run_train(run, NULL, &err)) fail_msg("resumed: %s", err.msg);
    }
    assert_int_equal(nn_run_steps(run), 4); /* two epochs of groups of 3 and 1 */
    nn_run_free(run);
  }
  assert_same_run(d[0], d[1]);
  nn_spec_free(s);
}

/* A run resumed after a finished epoch holds that epoch's row as the uninterrupted run does:
 * the values, not their 6-decimal CSV text (1.761651 for 1.7616513405627052, lr 0.1 for the
 * float 0.1's 0.10000000149), which a resumed run's early stopping and best epoch judge by. */
static void test_resumed_history_exact(void **state) {
  (void)state;
  double rows[2][2][5];
  for (int k = 0; k < 2; k++) {
    char d[1024];
    nn_run *run = start_run(k ? "hist-resumed" : "hist-ref", recipe(2), k ? STEPS_PER_EPOCH : 0, d, sizeof d);
    if (k) run = resume_to_end(run, d);
    const nn_history *h = nn_run_history(run);
    assert_int_equal(nn_history_count(h), 2);
    for (int e = 0; e < 2; e++) {
      const nn_epoch_record *rec = nn_history_get(h, e);
      const double v[5] = {rec->train_loss, rec->train_acc, rec->test_loss, rec->test_acc, rec->lr};
      memcpy(rows[k][e], v, sizeof v);
    }
    nn_run_free(run);
  }
  assert_memory_equal(rows[0], rows[1], sizeof rows[0]);
}

static void test_max_steps_inside_epoch(void **state) {
  (void)state;
  max_steps_case("plain", NULL, NULL);
  max_steps_case("cosine", "lr-schedule", "cosine");
  max_steps_case("early", "early-stop", "1:10");
}

/* A cosine or onecycle schedule runs over the epochs' steps: once it has taken steps, the
 * run's epochs cannot change (the steps taken would have had other learning rates); a
 * constant schedule's can. */
static void test_schedule_length_fixed(void **state) {
  (void)state;
  nn_spec *s = spec();
  nn_error err = {0};
  const char *kinds[] = {"cosine", "onecycle", "constant"};
  for (int k = 0; k < 3; k++) {
    char d[1024], sub[64];
    snprintf(sub, sizeof sub, "length-%s", kinds[k]);
    path_of(d, sizeof d, sub, NULL);
    nn_recipe r = recipe(3);
    if (nn_recipe_set(&r, "lr-schedule", kinds[k], &err)) fail_msg("%s", err.msg);
    nn_run *run = NULL;
    if (nn_run_create(&r, s, d, 0, &run, &err)) fail_msg("%s", err.msg);
    assert_int_equal(nn_run_set_epochs(run, 2, &err), NN_OK); /* no step yet */
    if (nn_run_set_max_steps(run, 3, &err) || nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
    assert_int_equal(nn_run_set_epochs(run, 2, &err), NN_OK); /* unchanged */
    nn_status st = nn_run_set_epochs(run, 4, &err);
    if (k < 2) {
      assert_int_equal(st, NN_ERR_ARG);
      assert_non_null(strstr(err.msg, kinds[k]));
      assert_non_null(strstr(err.msg, "2 epochs, 3 of its steps taken"));
      assert_int_equal(nn_run_recipe(run)->epochs, 2);
    } else {
      assert_int_equal(st, NN_OK);
    }
    nn_run_free(run);
  }
  nn_spec_free(s);
}

/* A lock caught between its creation and its PID (held here under the directory's guard,
 * as the library does) is not taken for a dead one's: the process waits for the guard and
 * is then refused by the PID written meanwhile. Then eight processes start together on a
 * directory whose lock a dead process left: exactly one takes it over; the others are
 * refused while it holds it, none takes it from another. */
static void test_lock_race(void **state) {
  (void)state;
  enum { N = 8 };
  char d0[1024], lock0[1100];
  path_of(d0, sizeof d0, "race-half", NULL);
  assert_int_equal(mkdir(d0, 0777), 0);
  snprintf(lock0, sizeof lock0, "%s/lock", d0);
  int guard = open(d0, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* not inherited: the child must wait */
  assert_true(guard >= 0);
  assert_int_equal(flock(guard, LOCK_EX), 0);
  tu_write_file(lock0, "", 0);
  char release0[1100];
  snprintf(release0, sizeof release0, "%s/release", d0);
  tu_write_file(release0, "", 0); /* a child that wrongly wins does not hold on */
  pid_t half = spawn("race-half", -1, 1);
  struct timespec wait = {0, 200000000};
  nanosleep(&wait, NULL);
  char me[32];
  snprintf(me, sizeof me, "%ld\n", (long)getpid());
  tu_write_file(lock0, me, strlen(me));
  close(guard);
  int hs;
  assert_int_equal(waitpid(half, &hs, 0), half);
  if (!WIFEXITED(hs) || WEXITSTATUS(hs) != 3)
    fail_msg("a lock being created was taken over (child status %d, 3 = refused)", hs);
  unlink(lock0);
  for (int round = 0; round < 3; round++) {
    char sub[32], d[1024], lock[1100];
    snprintf(sub, sizeof sub, "race%d", round);
    path_of(d, sizeof d, sub, NULL);
    assert_int_equal(mkdir(d, 0777), 0);
    snprintf(lock, sizeof lock, "%s/lock", d);
    tu_write_file(lock, "999999999\n", 10);
    pid_t pids[N];
    for (int i = 0; i < N; i++) pids[i] = spawn(sub, -1, 1);
    /* the winner holds the lock until all the others have tried (however slowly they start):
     * then, or after 30 s, it is told to release it */
    int won = 0, refused = 0, done[N] = {0}, ended = 0;
    char release[1100];
    snprintf(release, sizeof release, "%s/release", d);
    for (int t = 0; ended < N; t++) {
      for (int i = 0; i < N; i++) {
        int ws;
        if (done[i] || waitpid(pids[i], &ws, WNOHANG) != pids[i]) continue;
        done[i] = 1, ended++;
        assert_true(WIFEXITED(ws));
        if (WEXITSTATUS(ws) == 0) won++;
        else if (WEXITSTATUS(ws) == 3) refused++;
        else fail_msg("child %d: exit %d", i, WEXITSTATUS(ws));
      }
      if ((ended >= N - 1 || t == 6000) && access(release, F_OK) != 0) tu_write_file(release, "", 0);
      struct timespec poll = {0, 5000000};
      nanosleep(&poll, NULL);
    }
    if (won != 1 || refused != N - 1) fail_msg("round %d: %d processes took the lock, %d were refused", round, won, refused);
    assert_int_equal(access(lock, F_OK), -1); /* and the winner removed it */
  }
}

static void test_fault_injection(void **state) {
  (void)state;
  enum { EPOCHS = 30,
         KILLS = 50 };
  train_new("fault-ref", EPOCHS);
  char ref[1024], d[1024], ck[1100];
  path_of(ref, sizeof ref, "fault-ref", NULL);
  path_of(d, sizeof d, "fault", NULL);
  snprintf(ck, sizeof ck, "%s/model.safetensors", d);
  /* how long a child takes to its first commit (start-up, data, first epoch) and to the end */
  char probe_ck[1100];
  path_of(probe_ck, sizeof probe_ck, "fault-probe", "model.safetensors");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int ws;
  long first_us = -1;
  pid_t pid = spawn("fault-probe", 0, EPOCHS);
  for (;;) {
    struct stat sb;
    pid_t w = waitpid(pid, &ws, WNOHANG);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long now_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    if (first_us < 0 && stat(probe_ck, &sb) == 0) first_us = now_us;
    if (w == pid) break;
    assert_int_equal(w, 0);
    struct timespec poll = {0, 200000};
    nanosleep(&poll, NULL);
  }
  assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  long full_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
  assert_true(first_us >= 0 && first_us <= full_us);
  /* kills land from half the start-up time (some before any commit) to a quarter of the
   * epochs after the first commit, whatever share of the run the start-up is here */
  long from_us = first_us / 2, span_us = first_us - from_us + (full_us - first_us) / 4 + 1;
  tu_rng rng = {0x9E3779B97F4A7C15ull};
  int killed = 0, committed = 0, finished = 0;
  for (int i = 0; i < KILLS; i++) {
    pid = spawn("fault", 0, EPOCHS);
    long wait_us = from_us + (long)(tu_rng_next(&rng) % (uint64_t)span_us);
    struct timespec ts = {wait_us / 1000000, (wait_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    if (WIFSIGNALED(ws)) killed++;
    else if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) fail_msg("child %d failed (status %d)", i, ws);
    struct stat sb;
    if (stat(ck, &sb) != 0) continue; /* killed before its first commit: nothing to resume yet */
    committed++;
    nn_run *run = NULL;
    nn_error err = {0};
    if (nn_run_resume(d, &run, &err)) fail_msg("kill %d (after %ld us): not resumable: %s", i, wait_us, err.msg);
    /* checkpoint and history agree: every committed epoch had its 4 steps */
    int epochs = nn_history_count(nn_run_history(run));
    assert_true(epochs >= 1 && epochs <= EPOCHS);
    assert_int_equal(nn_run_steps(run), (long)epochs * STEPS_PER_EPOCH);
    if (count_temps(d)) fail_msg("kill %d: a temporary file survived the resume", i);
    int done = nn_run_finished(run);
    nn_run_free(run);
    if (done) { /* a run finished through the kills is the uninterrupted one; start over */
      assert_same_run(ref, d);
      finished++;
      tu_rmtree(d);
    }
  }
  /* finish the last one here */
  struct stat sb;
  if (stat(ck, &sb) == 0) {
    nn_run *run = NULL;
    nn_error err = {0};
    if (nn_run_resume(d, &run, &err) || nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
    nn_run_free(run);
    assert_same_run(ref, d);
    assert_int_equal(count_temps(d), 0);
    finished++;
  }
  print_message(
      "  %d kills (%d while training, at %ld..%ld us; first commit %ld us, run %ld us), "
      "%d committed states resumed, %d runs finished\n",
      KILLS, killed, from_us, from_us + span_us, first_us, full_us, committed, finished);
  assert_true(killed >= KILLS / 2);    /* the kills really interrupted training */
  assert_true(committed >= KILLS / 4); /* and most of them found a committed state to resume */
  assert_true(finished >= 1);
}

static void test_fine_tune_and_input(void **state) {
  (void)state;
  char src[1100], best[1100];
  path_of(src, sizeof src, "straight", "model.safetensors");
  path_of(best, sizeof best, "straight", "best.safetensors");
  nn_error err = {0};
  /* a loaded model reports its input transform and data source, as does best */
  const char *files[2] = {src, best};
  nn_model *trained[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    if (nn_checkpoint_load(files[i], NULL, &trained[i], &err)) fail_msg("%s", err.msg);
    nn_input_norm in;
    assert_int_equal(nn_model_input_norm(trained[i], &in), 1);
    assert_true(in.mean == 0.5f && in.std == 0.5f);
    assert_string_equal(nn_model_data_source(trained[i]), data);
  }
  nn_model_free(trained[1]);
  /* a model built from a spec knows neither */
  nn_spec *s = spec();
  nn_model *fresh = NULL;
  if (nn_model_create(s, &fresh, &err)) fail_msg("%s", err.msg);
  nn_input_norm in;
  assert_int_equal(nn_model_input_norm(fresh, &in), 0);
  assert_string_equal(nn_model_data_source(fresh), "");
  nn_model_free(fresh);

  /* fine-tuning: the new run starts from the trained weights and statistics */
  nn_recipe r = recipe(1);
  if (nn_recipe_set(&r, "init-from", src, &err) || nn_recipe_set(&r, "lr", "0.001", &err)) fail_msg("%s", err.msg);
  nn_run *run = NULL;
  if (nn_run_create(&r, s, NULL, 0, &run, &err)) fail_msg("%s", err.msg);
  nn_model *m = nn_run_model(run);
  assert_memory_equal(nn_model_params(m), nn_model_params(trained[0]), nn_model_param_count(m) * sizeof(float));
  assert_memory_equal(nn_model_state(m), nn_model_state(trained[0]), nn_model_state_count(m) * sizeof(float));
  nn_run_free(run);
  /* and the same recipe without it does not */
  r = recipe(1);
  if (nn_run_create(&r, s, NULL, 0, &run, &err)) fail_msg("%s", err.msg);
  assert_true(memcmp(nn_model_params(nn_run_model(run)), nn_model_params(trained[0]),
                     nn_model_param_count(trained[0]) * sizeof(float)) != 0);
  nn_run_free(run);
  nn_model_free(trained[0]);
  nn_spec_free(s);
  /* another architecture: an error naming init-from and the tensor */
  nn_spec *other = NULL;
  if (nn_spec_parse("input shape=1x8x8\nconv2d filters=5 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=10\n", "o",
                    &other, &err))
    fail_msg("%s", err.msg);
  r = recipe(1);
  if (nn_recipe_set(&r, "init-from", src, &err)) fail_msg("%s", err.msg);
  assert_int_not_equal(nn_run_create(&r, other, NULL, 0, &run, &err), NN_OK);
  assert_null(run);
  assert_non_null(strstr(err.msg, "init-from"));
  assert_non_null(strstr(err.msg, "0.weight"));
  nn_spec_free(other);
}

static void test_lock_and_existing_run(void **state) {
  (void)state;
  char d[1024], lock[1100];
  nn_recipe r = recipe(1);
  nn_spec *s = spec();
  nn_run *run = NULL;
  nn_error err = {0};
  /* a directory that holds a run is refused unless overwrite */
  path_of(d, sizeof d, "straight", NULL);
  assert_int_equal(nn_run_create(&r, s, d, 0, &run, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "already holds a run"));
  /* a live holder (our parent process) is refused by name */
  path_of(d, sizeof d, "locked", NULL);
  assert_int_equal(mkdir(d, 0777), 0);
  snprintf(lock, sizeof lock, "%s/lock", d);
  FILE *f = fopen(lock, "w");
  assert_non_null(f);
  fprintf(f, "%ld\n", (long)getppid());
  fclose(f);
  assert_int_not_equal(nn_run_create(&r, s, d, 0, &run, &err), NN_OK);
  char pid[32];
  snprintf(pid, sizeof pid, "process %ld", (long)getppid());
  assert_non_null(strstr(err.msg, pid));
  /* the PID of a live process, another start time (the PID reused after a reboot or a
   * container restart): a stale lock, taken over */
  char host[256] = "";
  assert_int_equal(gethostname(host, sizeof host - 1), 0);
  f = fopen(lock, "w");
  assert_non_null(f);
  fprintf(f, "%ld 1 %s\n", (long)getppid(), host);
  fclose(f);
  if (nn_run_create(&r, s, d, 0, &run, &err)) fail_msg("a reused PID's lock: %s", err.msg);
  nn_run_free(run);
  /* the same PID and start time: refused; another machine's lock: refused, naming it */
  unsigned long long start = 0;
  char stat_path[64], line[1024];
  snprintf(stat_path, sizeof stat_path, "/proc/%ld/stat", (long)getppid());
  f = fopen(stat_path, "r");
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof line, f));
  fclose(f);
  const char *q = strrchr(line, ')');
  for (int field = 2; field < 22 && q; field++) q = strchr(q + 1, ' ');
  assert_non_null(q);
  assert_int_equal(sscanf(q, " %llu", &start), 1);
  const char *holders[][2] = {{host, "which is still training it"}, {"elsewhere.example", "on elsewhere.example"}};
  for (int i = 0; i < 2; i++) {
    f = fopen(lock, "w");
    assert_non_null(f);
    fprintf(f, "%ld %llu %s\n", (long)getppid(), start, holders[i][0]);
    fclose(f);
    assert_int_not_equal(nn_run_create(&r, s, d, 1, &run, &err), NN_OK);
    if (!strstr(err.msg, holders[i][1])) fail_msg("lock of %s: '%s'", holders[i][0], err.msg);
  }
  /* a dead holder's lock is taken over, held while the run lives, removed after */
  f = fopen(lock, "w");
  assert_non_null(f);
  fprintf(f, "999999999\n");
  fclose(f);
  if (nn_run_create(&r, s, d, 0, &run, &err)) fail_msg("%s", err.msg);
  f = fopen(lock, "r");
  long holder = 0;
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld", &holder), 1);
  fclose(f);
  assert_int_equal(holder, (long)getpid());
  /* a second nn_run in this process is refused too (a lock with our own PID was taken for
   * ours: both trained the directory, and freeing either removed the other's lock) */
  nn_run *second = NULL;
  assert_int_equal(nn_run_create(&r, s, d, 1, &second, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "open in this process already"));
  assert_null(second);
  assert_int_equal(access(lock, F_OK), 0); /* the refusal left the holder's lock */
  nn_run_free(run);
  assert_int_equal(access(lock, F_OK), -1);
  /* resuming a directory without a checkpoint says so */
  assert_int_not_equal(nn_run_resume(d, &run, &err), NN_OK);
  assert_non_null(strstr(err.msg, "model.safetensors"));
  nn_spec_free(s);
}

static void test_recipe_keys(void **state) {
  (void)state;
  nn_recipe r = nn_recipe_default(nn_preset_find("lenet"));
  nn_error err = {0};
  assert_int_equal(r.opt.kind, NN_OPT_SGD);
  assert_true(r.opt.lr == 0.1f);
  assert_int_equal(r.batch_size, 128);
  /* another optimizer kind starts from its defaults */
  if (nn_recipe_set(&r, "optimizer", "adam", &err)) fail_msg("%s", err.msg);
  assert_true(r.opt.lr == 1e-3f && r.opt.eps == 1e-8f);
  const struct {
    const char *k, *v, *needle;
  } bad[] = {{"lr", "-1", "lr: expected"}, {"epochs", "1.5", "epochs: expected an integer"}, {"batch", "0x10", "batch: expected an integer in [1, "}, {"epochs", "1e1", "epochs: expected an integer"}, {"batch", "16.0", "batch: expected an integer"}, {"optimizer", "rmsprop", "rmsprop"}, {"input-norm", "0,0", "input-norm"}, {"input-norm", "0.5,1e-45", "input-norm: input transform mean 0.5, std 1.4013e-45: the std must be"}, {"augment", "spin", "augment"}, {"frobnicate", "1", "unknown key 'frobnicate'"}, {"init", "he", "init: expected"}, {"bn-placement", "middle", "bn-placement"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    nn_recipe before = r;
    assert_int_equal(nn_recipe_set(&r, bad[i].k, bad[i].v, &err), NN_ERR_ARG);
    if (!strstr(err.msg, bad[i].needle)) fail_msg("%s=%s: '%s' lacks '%s'", bad[i].k, bad[i].v, err.msg, bad[i].needle);
    assert_memory_equal(&before, &r, sizeof r); /* unchanged */
  }
  /* every preset's recipe reads back through its keys (what a resume does) */
  for (int i = 0; i < nn_preset_count(); i++) {
    nn_recipe pr = nn_recipe_default(nn_preset_at(i)), back = nn_recipe_default(NULL);
    char text[1200];
    for (int k = 0; k < nn_recipe_num_keys(); k++) {
      nn_recipe_get(&pr, k, text, sizeof text);
      if (nn_recipe_set(&back, nn_recipe_key(k), text, &err))
        fail_msg("preset %s: %s", nn_preset_at(i)->name, err.msg);
    }
    assert_memory_equal(&pr, &back, sizeof pr);
  }
  /* every key reads back what it was set to */
  nn_recipe t = recipe(3);
  nn_recipe u = nn_recipe_default(NULL);
  char buf[1200];
  for (int k = 0; k < nn_recipe_num_keys(); k++) {
    nn_recipe_get(&t, k, buf, sizeof buf);
    if (nn_recipe_set(&u, nn_recipe_key(k), buf, &err)) fail_msg("%s", err.msg);
  }
  assert_memory_equal(&t, &u, sizeof t);
  /* floats read as they were written, not as %.9g's 0.00100000005 (and back exactly, above) */
  const char *plain[][2] = {{"lr", "0.001"}, {"beta1", "0.9"}, {"adam-eps", "1e-07"}, {"input-norm", "0.1307,0.3081"}, {"early-stop", "3:0.01"}, {"val-split", "0.1"}};
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    if (nn_recipe_set(&t, plain[i][0], plain[i][1], &err)) fail_msg("%s", err.msg);
    for (int k = 0; k < nn_recipe_num_keys(); k++)
      if (!strcmp(nn_recipe_key(k), plain[i][0])) nn_recipe_get(&t, k, buf, sizeof buf);
    assert_string_equal(buf, plain[i][1]);
  }
}

/* A run opened to look at (nn_run_open_view) needs no data set: with its data gone, the
 * reader refuses it, the view opens it with recipe, model and history; its data loads on
 * request (all or nothing) once the data is back. */
/* A run trained to its end in dir/sub (its path in d), and the paths of one of its data
 * files (here) and of a name to move it away to (away). */
static void trained_with_data_file(const char *sub, const char *file, char d[1024], char here[1100], char away[1100]) {
  train_new(sub, 1);
  path_of(d, 1024, sub, NULL);
  snprintf(here, 1100, "%s/data/%s", dir, file);
  snprintf(away, 1100, "%s/data/%s.away", dir, file);
}

static void test_view_without_data(void **state) {
  (void)state;
  char d[1024], away[1100], here[1100];
  /* the test images only: the training set still opens, so the load must undo it */
  trained_with_data_file("view", "t10k-images-idx3-ubyte", d, here, away);
  assert_int_equal(rename(here, away), 0);
  nn_run *run = NULL;
  nn_error err = {0};
  assert_int_not_equal(nn_run_resume_reader(d, &run, &err), NN_OK);
  assert_null(run);
  if (nn_run_open_view(d, &run, &err)) fail_msg("view without data: %s", err.msg);
  assert_int_equal(nn_history_count(nn_run_history(run)), 1);
  assert_int_equal(nn_run_recipe(run)->epochs, 1);
  assert_string_equal(nn_run_recipe(run)->data, data);
  assert_non_null(nn_run_model(run));
  assert_null(nn_run_train_data(run));
  assert_null(nn_run_eval_data(run));
  memset(&err, 0, sizeof err);
  assert_int_equal(nn_run_load_data(run, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, data)); /* names the source */
  assert_null(nn_run_train_data(run));
  assert_null(nn_run_eval_data(run));
  assert_int_equal(rename(away, here), 0);
  if (nn_run_load_data(run, &err)) fail_msg("%s", err.msg);
  const nn_dataset *eval = nn_run_eval_data(run);
  assert_int_equal(nn_dataset_count(nn_run_train_data(run)), 32);
  assert_int_equal(nn_dataset_count(eval), 16);
  assert_int_equal(nn_run_load_data(run, &err), NN_OK); /* loaded: kept, not read again */
  assert_ptr_equal(nn_run_eval_data(run), eval);
  nn_run_free(run);
}

/* A finished run's evaluation (a report's per-class results) reads the test set alone: with
 * the training images gone it loads, the training data stays unread until asked for, and
 * then comes without reading the test set again; a validation split needs the training set. */
static void test_view_eval_data(void **state) {
  (void)state;
  char d[1024], away[1100], here[1100];
  trained_with_data_file("evalonly", "train-images-idx3-ubyte", d, here, away);
  nn_run *run = NULL;
  nn_error err = {0};
  if (nn_run_open_view(d, &run, &err)) fail_msg("%s", err.msg);
  assert_int_equal(rename(here, away), 0);
  if (nn_run_load_eval_data(run, &err)) fail_msg("the test set alone: %s", err.msg);
  const nn_dataset *eval = nn_run_eval_data(run);
  assert_int_equal(nn_dataset_count(eval), 16);
  assert_null(nn_run_train_data(run));
  assert_int_equal(nn_run_load_eval_data(run, &err), NN_OK); /* kept */
  assert_ptr_equal(nn_run_eval_data(run), eval);
  assert_int_equal(nn_run_load_data(run, &err), NN_ERR_IO); /* the training set: all or nothing */
  assert_null(nn_run_train_data(run));
  assert_null(nn_run_eval_data(run));
  assert_int_equal(rename(away, here), 0);
  if (nn_run_load_eval_data(run, &err)) fail_msg("%s", err.msg);
  eval = nn_run_eval_data(run);
  if (nn_run_load_data(run, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_dataset_count(nn_run_train_data(run)), 32);
  assert_ptr_equal(nn_run_eval_data(run), eval); /* not read again */
  nn_run_free(run);
  /* a validation split: cut from the training set, which is read (and kept) for it */
  nn_recipe r = recipe(1);
  if (nn_recipe_set(&r, "val-split", "0.25", &err)) fail_msg("%s", err.msg);
  nn_spec *s = spec();
  path_of(d, sizeof d, "evalsplit", NULL);
  if (nn_run_create(&r, s, d, 0, &run, &err) || nn_run_train(run, NULL, &err)) fail_msg("%s", err.msg);
  nn_run_free(run);
  nn_spec_free(s);
  if (nn_run_open_view(d, &run, &err)) fail_msg("%s", err.msg);
  if (nn_run_load_eval_data(run, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_dataset_count(nn_run_eval_data(run)), 8);
  assert_int_equal(nn_dataset_count(nn_run_train_data(run)), 24);
  nn_run_free(run);
}

static int setup(void **state) {
  (void)state;
  if (!(dir = tu_tempdir("run"))) return -1;
  char d[1024];
  snprintf(d, sizeof d, "%s/data", dir);
  tu_write_idx_pair(d, "train", 32, 8, 8, 8, 1);
  tu_write_idx_pair(d, "t10k", 16, 8, 8, 8, 2);
  snprintf(data, sizeof data, "idx:%s", d);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rmtree(dir);
  free(dir);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "--child")) {
    snprintf(data, sizeof data, "%s", argv[5]);
    return child(argv[2], atoi(argv[3]), atoi(argv[4]));
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recipe_keys),
      cmocka_unit_test(test_max_steps_inside_epoch),
      cmocka_unit_test(test_pause_saves_no_best),
      cmocka_unit_test(test_tampered_counts),
      cmocka_unit_test(test_stop_inside_group),
      cmocka_unit_test(test_resumed_history_exact),
      cmocka_unit_test(test_schedule_length_fixed),
      cmocka_unit_test(test_resume_after_sigkill),
      cmocka_unit_test(test_fine_tune_and_input),
      cmocka_unit_test(test_lock_and_existing_run),
      cmocka_unit_test(test_lock_race),
      cmocka_unit_test(test_fault_injection),
      cmocka_unit_test(test_view_without_data),
      cmocka_unit_test(test_view_eval_data),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
