/* `mpirun -np K normnet train` equals `normnet train` (ARCHITECTURE.md §9), on small IDX files made
 * here: after 20 SGD steps of lenet and 20 Adam steps of cnn (see cnn_adam_equal), every parameter, every BN
 * running statistic and the loss history of K = 2 and K = 3 processes (uneven and empty
 * slices) equal one process's within 1e-5 relative + 1e-6 absolute; with --sync-bn off they
 * must differ, and a resumed --sync-bn off run stays per rank; killing a rank ends the job with a message and rank 0's last checkpoint
 * resumes under a new mpirun; ranks started with different settings or data are refused before
 * the first step, naming what differs. Registered only in builds with MPI. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "normnet.h"
#include "cli_run.h"
#include "nn_test.h"

#define RTOL 1e-5
#define ATOL 1e-6

static char *dir;
static tu_run_result res; /* of the last run */

/* Run `normnet train` on the data made in setup, on np processes (np 0: without mpirun);
 * returns the exit status, stderr in res.err. */
static int run(int np, const char *args) {
  const char *mpiexec = getenv("NN_MPIEXEC");
  if (!mpiexec) fail_msg("NN_MPIEXEC must be set (ctest sets it)");
  char launcher[512] = "", a[2048];
  /* Open MPI's plugins leak at exit from libraries already unloaded (no stack to suppress):
   * under a sanitizer the ranks skip the leak check; the one-process runs keep it */
  if (np)
    snprintf(launcher, sizeof launcher,
             "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" '%s' --allow-run-as-root --oversubscribe -np %d",
             mpiexec, np);
  /* a resume takes the recorded data set (--data would be refused as a recipe change) */
  if (!strncmp(args, "--resume", 8)) snprintf(a, sizeof a, "train --epochs 100 --max-steps 20 --quiet %s", args);
  else snprintf(a, sizeof a, "train --data idx:%s/data --epochs 100 --max-steps 20 --quiet %s", dir, args);
  tu_cli_run(&res, dir, launcher, a);
  return res.status;
}

static void train(int np, const char *run_name, const char *args) {
  char a[1024];
  if ((size_t)snprintf(a, sizeof a, "--out %s/%s %s", dir, run_name, args) >= sizeof a)
    fail_msg("arguments too long for run %s", run_name);
  int rc = run(np, a);
  if (rc) fail_msg("np %d, %s: exit %d: %s", np, a, rc, res.err);
}

static nn_model *load(const char *run_name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, run_name);
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_checkpoint_load(path, NULL, &m, &err)) fail_msg("%s", err.msg);
  return m;
}

/* Largest excess of |a - b| over ATOL + RTOL |b| across every tensor and the history (<= 0:
 * equal within tolerance); *worst names where. */
static double excess(const char *run_a, const char *run_b, int epochs, char *worst, size_t len) {
  nn_model *a = load(run_a), *b = load(run_b);
  double ex = -INFINITY;
  assert_int_equal(nn_model_num_tensors(a), nn_model_num_tensors(b));
  for (int t = 0; t < nn_model_num_tensors(a); t++) {
    nn_tensor_view va, vb;
    nn_model_tensor(a, t, &va);
    nn_model_tensor(b, t, &vb);
    assert_int_equal(va.count, vb.count);
    for (size_t i = 0; i < va.count; i++) {
      double x = va.data ? va.data[i] : (double)*va.count_value, y = vb.data ? vb.data[i] : (double)*vb.count_value;
      double e = fabs(x - y) - (ATOL + RTOL * fabs(y));
      if (!(e <= ex)) ex = isnan(e) ? INFINITY : e, snprintf(worst, len, "%s[%zu]: %.9g vs %.9g", va.name, i, x, y);
    }
  }
  nn_model_free(a);
  nn_model_free(b);
  char path[512];
  nn_history *ha = NULL, *hb = NULL;
  nn_error err = {0};
  snprintf(path, sizeof path, "%s/%s/history.csv", dir, run_a);
  if (nn_history_read_csv(path, epochs, &ha, &err)) fail_msg("%s", err.msg);
  snprintf(path, sizeof path, "%s/%s/history.csv", dir, run_b);
  if (nn_history_read_csv(path, epochs, &hb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_history_count(ha), nn_history_count(hb));
  for (int i = 0; i < nn_history_count(ha); i++) {
    const nn_epoch_record *ra = nn_history_get(ha, i), *rb = nn_history_get(hb, i);
    double x[4] = {ra->train_loss, ra->train_acc, ra->test_loss, ra->test_acc};
    double y[4] = {rb->train_loss, rb->train_acc, rb->test_loss, rb->test_acc};
    for (int k = 0; k < 4; k++) {
      double e = fabs(x[k] - y[k]) - (ATOL + RTOL * fabs(y[k]));
      if (!(e <= ex)) ex = isnan(e) ? INFINITY : e, snprintf(worst, len, "history epoch %d column %d: %.9g vs %.9g", i + 1, k, x[k], y[k]);
    }
  }
  nn_history_free(ha);
  nn_history_free(hb);
  return ex;
}

static void dump_history(const char *run_name) {
  char path[512], text[4096];
  snprintf(path, sizeof path, "%s/%s/history.csv", dir, run_name);
  tu_slurp(path, text, sizeof text);
  print_message("%s:\n%s", run_name, text);
}

/* 20 steps of 4 batches: 5 epochs */
static void expect_equal_epochs(const char *run_a, const char *run_b, int epochs) {
  char worst[256] = "";
  double e = excess(run_a, run_b, epochs, worst, sizeof worst);
  if (e > 0) dump_history(run_a), dump_history(run_b);
  if (e > 0) fail_msg("%s differs from %s beyond 1e-5 rel + 1e-6 abs: %s", run_a, run_b, worst);
}

static void expect_equal(const char *run_a, const char *run_b) { expect_equal_epochs(run_a, run_b, 5); }

/* 112 training samples in batches of 32: three full batches and one of 16 (slices of 11,
 * 11, 10 and 6, 5, 5 over 3 processes); 40 test samples. */
static int setup(void **state) {
  (void)state;
  dir = tu_tempdir("dist");
  if (!dir) return -1;
  char sub[512];
  snprintf(sub, sizeof sub, "%s/data", dir);
  tu_write_idx_pair(sub, "train", 112, 28, 28, 10, 7);
  tu_write_idx_pair(sub, "t10k", 40, 28, 28, 10, 8);
  snprintf(sub, sizeof sub, "%s/other", dir);
  tu_write_idx_pair(sub, "train", 112, 28, 28, 10, 9);
  tu_write_idx_pair(sub, "t10k", 40, 28, 28, 10, 8);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (!getenv("NN_KEEP")) tu_rmtree(dir);
  free(dir);
  return 0;
}

static void lenet_sgd_equal(void **state) {
  (void)state;
  const char *args = "--model lenet --batch 32";
  train(0, "lenet1", args);
  train(2, "lenet2", args);
  train(3, "lenet3", args);
  expect_equal("lenet2", "lenet1");
  expect_equal("lenet3", "lenet1");
}

/* Adam divides each gradient by its own RMS (eps 1e-7): a weight whose gradient is a
 * rounding-sized remainder of cancelling terms moves by lr * g / eps, so a different
 * summation order (K slices and an all-reduce instead of one GEMM) moves it by up to
 * lr * ulp / eps per step. A bias right before BN has an exactly zero gradient: under Adam
 * it is pure rounding noise in one process too (a 1e-7 change of the input moves the
 * preset's by 5e-3). So this is the preset's cnn with those biases off (seed 001's
 * use_bias=False) at lr 3e-4, where 20 steps stay within the tolerance; at the preset's
 * lr 1e-3 a few such weights drift by 3e-5 on this data (docs/scaling.md). */
static void cnn_adam_equal(void **state) {
  (void)state;
  const char *spec = nn_preset_find("cnn")->spec;
  char path[512], text[2048] = "";
  for (const char *line = spec; *line;) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    int biased = (!strncmp(line, "conv2d", 6) || !strncmp(line, "dense units=64", 14));
    snprintf(text + strlen(text), sizeof text - strlen(text), "%.*s%s\n", (int)len, line, biased ? " bias=0" : "");
    line += len + (nl != NULL);
  }
  snprintf(path, sizeof path, "%s/cnn.spec", dir);
  tu_write_file(path, text, strlen(text));
  char args[1024];
  snprintf(args, sizeof args, "--model %s --init xavier --optimizer adam --lr 3e-4 --batch 32", path);
  train(0, "cnn1", args);
  train(2, "cnn2", args);
  train(3, "cnn3", args);
  expect_equal("cnn2", "cnn1");
  expect_equal("cnn3", "cnn1");
}

/* Batches of 2 over 3 processes: rank 2 holds no sample in any training or evaluation
 * batch and still takes part in every synchronization. A conv-BN net: BN over 2 values
 * (a dense BN at batch 2) has an exactly zero input gradient, pure rounding noise. */
static void empty_slices_equal(void **state) {
  (void)state;
  char path[512], a[1024];
  snprintf(path, sizeof path, "%s/convbn.spec", dir);
  const char *spec = "input shape=1x28x28\nconv2d filters=6 kernel=5\nbatchnorm\nrelu\nmaxpool2d size=2\nflatten\ndense units=10\n";
  tu_write_file(path, spec, strlen(spec));
  snprintf(a, sizeof a, "--out %s/tiny1 --model %s --optimizer sgd --lr 0.1 --batch 2", dir, path);
  if (run(0, a)) fail_msg("%s: %s", a, res.err);
  snprintf(a, sizeof a, "--out %s/tiny3 --model %s --optimizer sgd --lr 0.1 --batch 2", dir, path);
  if (run(3, a)) fail_msg("np 3, %s: %s", a, res.err);
  expect_equal_epochs("tiny3", "tiny1", 1);
}

/* The guard that the synchronization is real: per-rank statistics give another model. */
static void unsynchronized_bn_differs(void **state) {
  (void)state;
  /* batches of 30: 112 = 3 x 30 + 22 */
  train(0, "lenet1_b30", "--model lenet --batch 30");
  train(2, "lenet2_nosync", "--model lenet --batch 30 --sync-bn off");
  char worst[256] = "";
  double e = excess("lenet2_nosync", "lenet1_b30", 5, worst, sizeof worst);
  if (!(e > 1e-3)) fail_msg("--sync-bn off matches one process (largest excess %g at %s)", e, worst);
}

/* --sync-bn is part of the recorded recipe: a per-rank-statistics run killed after epoch 2
 * and resumed (without the flag) continues per rank, to the uninterrupted run's result; the
 * flag itself is refused with --resume like every recipe change. */
static void unsynchronized_bn_resumes(void **state) {
  (void)state;
  char a[1024];
  snprintf(a, sizeof a, "--out %s/nosync_killed --model lenet --batch 30 --sync-bn off --crash-after-epoch 2", dir);
  if (run(2, a) == 0) fail_msg("the job survived the kill of rank 0");
  snprintf(a, sizeof a, "--resume %s/nosync_killed --sync-bn on", dir);
  if (run(2, a) == 0 || !strstr(res.err, "--sync-bn")) fail_msg("--resume accepted --sync-bn: %s", res.err);
  snprintf(a, sizeof a, "--resume %s/nosync_killed", dir);
  if (run(2, a)) fail_msg("resume under a new mpirun: exit %d: %s", res.status, res.err);
  expect_equal("nosync_killed", "lenet2_nosync");
}

/* Rank 0 is killed right after saving epoch 2: the job ends with a message naming the
 * signal, and a new mpirun resumes from rank 0's checkpoint to the uninterrupted result. */
static void killed_rank_resumes(void **state) {
  (void)state;
  char a[1024];
  snprintf(a, sizeof a, "--out %s/killed --model lenet --batch 32 --crash-after-epoch 2", dir);
  int rc = run(2, a);
  if (rc == 0) fail_msg("the job survived the kill of rank 0");
  if (!strstr(res.err, "signal 9") && !strstr(res.err, "Killed"))
    fail_msg("the job's message does not say a process was killed:\n%s", res.err);
  snprintf(a, sizeof a, "--resume %s/killed", dir);
  rc = run(2, a);
  if (rc) fail_msg("resume under a new mpirun: exit %d: %s", rc, res.err);
  expect_equal("killed", "lenet2");
}

/* Under mpirun, rank 0's stdout is mpirun's pseudo-terminal even when mpirun writes to a
 * pipe (here) or a log: the progress is plain lines, no carriage return or escape code. */
static void progress_plain_under_mpirun(void **state) {
  (void)state;
  char launcher[512], a[1024];
  snprintf(launcher, sizeof launcher,
           "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" '%s' --allow-run-as-root --oversubscribe -np 2",
           getenv("NN_MPIEXEC"));
  snprintf(a, sizeof a, "train --data idx:%s/data --model lenet --batch 32 --epochs 2 --max-steps 6 --out %s/plain", dir,
           dir);
  tu_cli_run(&res, dir, launcher, a);
  if (res.status) fail_msg("exit %d: %s", res.status, res.err);
  if (strchr(res.out, '\r') || strchr(res.out, '\033')) fail_msg("terminal codes in mpirun's output:\n%s", res.out);
  if (!strstr(res.out, "epoch 2/2")) fail_msg("no plain line for epoch 2:\n%s", res.out);
}

/* --json under mpirun: one line per epoch, rank 0's, naming the run. */
static void json_once_under_mpirun(void **state) {
  (void)state;
  char launcher[512], a[1024];
  snprintf(launcher, sizeof launcher,
           "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" '%s' --allow-run-as-root --oversubscribe -np 2",
           getenv("NN_MPIEXEC"));
  snprintf(a, sizeof a, "train --data idx:%s/data --model lenet --batch 32 --epochs 2 --max-steps 6 --json --out %s/json",
           dir, dir);
  tu_cli_run(&res, dir, launcher, a);
  if (res.status) fail_msg("exit %d: %s", res.status, res.err);
  int lines = 0;
  for (const char *p = res.out; (p = strstr(p, "{\"run\": ")); p++, lines++)
    if (!strncmp(p, "{\"run\": null", 13)) fail_msg("a line from a rank without the run:\n%s", res.out);
  if (lines != 2) fail_msg("%d JSON lines for 2 epochs:\n%s", lines, res.out);
}

/* A failure on every rank is printed once, by rank 0, and all ranks exit non-zero. */
static void failure_printed_once(void **state) {
  (void)state;
  int rc = run(2, "--model no-such-preset.spec");
  assert_int_not_equal(rc, 0);
  const char *first = strstr(res.err, "no-such-preset.spec");
  if (!first || strstr(first + 1, "no-such-preset.spec"))
    fail_msg("expected the message once on stderr, got:\n%s", res.err);
}

/* Ranks that do not run the same thing (another --lr, --batch or --seed, other data) are
 * refused before the first step, naming what differs; no run is written. Rank 0 runs the
 * common command with a0, rank 1 with a1. */
static void expect_ranks_refused(const char *a0, const char *a1, const char *what) {
  const char *mpiexec = getenv("NN_MPIEXEC"), *cli = getenv("NN_CLI");
  char launcher[2048], a[1024];
  const char *common = "train --epochs 100 --max-steps 20 --quiet --threads 1";
  snprintf(launcher, sizeof launcher,
           "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" '%s' --allow-run-as-root --oversubscribe "
           "-np 1 '%s' %s --out %s/mixed %s : -np 1",
           mpiexec, cli, common, dir, a0);
  snprintf(a, sizeof a, "%s --out %s/mixed %s", common, dir, a1);
  tu_cli_run(&res, dir, launcher, a);
  if (res.status == 0) fail_msg("ranks with '%s' and '%s' trained", a0, a1);
  char want[256];
  snprintf(want, sizeof want, "rank 1: %s", what);
  if (!strstr(res.err, want) || !strstr(res.err, "not the same as rank 0's")) fail_msg("'%s' vs '%s': expected '%s' on stderr, got:\n%s", a0, a1, want, res.err);
  char path[512];
  snprintf(path, sizeof path, "%s/mixed/model.safetensors", dir);
  FILE *f = fopen(path, "rb");
  if (f) {
    fclose(f);
    fail_msg("'%s' vs '%s': a model was saved", a0, a1);
  }
}

static void ranks_that_differ_refused(void **state) {
  (void)state;
  char d0[512], d1[512];
  snprintf(d0, sizeof d0, "--data idx:%s/data", dir);
  snprintf(d1, sizeof d1, "--data idx:%s/other", dir);
  char a0[1024], a1[1024];
  snprintf(a0, sizeof a0, "%s --lr 0.1", d0), snprintf(a1, sizeof a1, "%s --lr 0.2", d0);
  expect_ranks_refused(a0, a1, "the optimizer's state");
  snprintf(a0, sizeof a0, "%s --batch 16", d0), snprintf(a1, sizeof a1, "%s --batch 8", d0);
  expect_ranks_refused(a0, a1, "the training settings");
  snprintf(a0, sizeof a0, "%s --seed 1", d0), snprintf(a1, sizeof a1, "%s --seed 2", d0);
  expect_ranks_refused(a0, a1, "the model");
  expect_ranks_refused(d0, d1, "the training data"); /* the same sizes, other pixels */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lenet_sgd_equal),
      cmocka_unit_test(cnn_adam_equal),
      cmocka_unit_test(empty_slices_equal),
      cmocka_unit_test(unsynchronized_bn_differs),
      cmocka_unit_test(unsynchronized_bn_resumes),
      cmocka_unit_test(killed_rank_resumes),
      cmocka_unit_test(failure_printed_once),
      cmocka_unit_test(ranks_that_differ_refused),
      cmocka_unit_test(progress_plain_under_mpirun),
      cmocka_unit_test(json_once_under_mpirun),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
