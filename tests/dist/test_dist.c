/* `mpirun -np K normnet train` equals `normnet train` (ARCHITECTURE.md §9), on small IDX files made
 * here: after 20 SGD steps of lenet and 20 Adam steps of cnn, every parameter, every BN
 * running statistic and the loss history of K = 2 and K = 3 processes (uneven and empty
 * slices) equal one process's within 1e-5 relative + 1e-6 absolute; with --sync-bn off they
 * must differ; killing a rank ends the job with a message and rank 0's last checkpoint
 * resumes under a new mpirun. Registered only in builds with MPI. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "normnet.h"
#include "nn_test.h"

#define RTOL 1e-5
#define ATOL 1e-6
#define EPOCHS 5 /* 20 steps of 4 batches per epoch */

static char *dir;
static char err_text[16384];

static void slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, len - 1, f) : 0;
  buf[n] = 0;
  if (f) fclose(f);
}

/* Run normnet on np processes (np 0: without mpirun); returns the exit status, stderr in
 * err_text. Every run trains on the data made in setup. */
static int run(int np, const char *args) {
  const char *cli = getenv("NN_CLI"), *mpiexec = getenv("NN_MPIEXEC");
  if (!cli || !mpiexec) fail_msg("NN_CLI and NN_MPIEXEC must be set (ctest sets them)");
  char launcher[512] = "", cmd[4096];
  /* Open MPI's plugins leak at exit from libraries already unloaded (no stack to suppress):
   * under a sanitizer the ranks skip the leak check; the one-process runs keep it */
  if (np)
    snprintf(launcher, sizeof launcher,
             "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" '%s' --allow-run-as-root --oversubscribe -np %d",
             mpiexec, np);
  snprintf(cmd, sizeof cmd, "%s '%s' train --data idx:%s/data --epochs 100 --max-steps 20 --quiet %s >/dev/null 2>'%s/err.txt' </dev/null",
           launcher, cli, dir, args, dir);
  int st = system(cmd);
  char p[512];
  snprintf(p, sizeof p, "%s/err.txt", dir);
  slurp(p, err_text, sizeof err_text);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void train(int np, const char *run_name, const char *args) {
  char a[1024];
  snprintf(a, sizeof a, "--out %s/%s %s", dir, run_name, args);
  int rc = run(np, a);
  if (rc) fail_msg("np %d, %s: exit %d: %s", np, a, rc, err_text);
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
static double excess(const char *run_a, const char *run_b, char *worst, size_t len) {
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
  if (nn_history_read_csv(path, EPOCHS, &ha, &err)) fail_msg("%s", err.msg);
  snprintf(path, sizeof path, "%s/%s/history.csv", dir, run_b);
  if (nn_history_read_csv(path, EPOCHS, &hb, &err)) fail_msg("%s", err.msg);
  assert_true(nn_history_count(ha) > 1);
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
  slurp(path, text, sizeof text);
  print_message("%s:\n%s", run_name, text);
}

static void expect_equal(const char *run_a, const char *run_b) {
  char worst[256] = "";
  double e = excess(run_a, run_b, worst, sizeof worst);
  if (e > 0) dump_history(run_a), dump_history(run_b);
  if (e > 0) fail_msg("%s differs from %s beyond 1e-5 rel + 1e-6 abs: %s", run_a, run_b, worst);
}

/* 98 training samples in batches of 32: three full batches and one of 2, which over 3
 * processes leaves rank 2 an empty slice; 40 test samples. */
static int setup(void **state) {
  (void)state;
  dir = tu_tempdir("dist");
  if (!dir) return -1;
  char sub[512];
  snprintf(sub, sizeof sub, "%s/data", dir);
  tu_write_idx_pair(sub, "train", 112, 28, 28, 10, 7);
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

static void cnn_adam_equal(void **state) {
  (void)state;
  const char *args = "--model cnn --optimizer adam --batch 32";
  train(0, "cnn1", args);
  train(2, "cnn2", args);
  train(3, "cnn3", args);
  expect_equal("cnn2", "cnn1");
  expect_equal("cnn3", "cnn1");
}

/* The guard that the synchronization is real: per-rank statistics give another model. */
static void unsynchronized_bn_differs(void **state) {
  (void)state;
  /* batches of 30 leave every rank at least 4 samples (98 = 3 x 30 + 8) */
  train(0, "lenet1_b30", "--model lenet --batch 30");
  train(2, "lenet2_nosync", "--model lenet --batch 30 --sync-bn off");
  char worst[256] = "";
  double e = excess("lenet2_nosync", "lenet1_b30", worst, sizeof worst);
  if (!(e > 1e-3)) fail_msg("--sync-bn off matches one process (largest excess %g at %s)", e, worst);
}

/* Rank 0 is killed right after saving epoch 2: the job ends with a message naming the
 * signal, and a new mpirun resumes from rank 0's checkpoint to the uninterrupted result. */
static void killed_rank_resumes(void **state) {
  (void)state;
  char a[1024];
  snprintf(a, sizeof a, "--out %s/killed --model lenet --batch 32 --crash-after-epoch 2", dir);
  int rc = run(2, a);
  if (rc == 0) fail_msg("the job survived the kill of rank 0");
  if (!strstr(err_text, "signal 9") && !strstr(err_text, "Killed"))
    fail_msg("the job's message does not say a process was killed:\n%s", err_text);
  snprintf(a, sizeof a, "--resume %s/killed", dir);
  rc = run(2, a);
  if (rc) fail_msg("resume under a new mpirun: exit %d: %s", rc, err_text);
  expect_equal("killed", "lenet2");
}

/* A failure on every rank is printed once, by rank 0, and all ranks exit non-zero. */
static void failure_printed_once(void **state) {
  (void)state;
  int rc = run(2, "--model no-such-preset.spec");
  assert_int_not_equal(rc, 0);
  const char *first = strstr(err_text, "no-such-preset.spec");
  if (!first || strstr(first + 1, "no-such-preset.spec"))
    fail_msg("expected the message once on stderr, got:\n%s", err_text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lenet_sgd_equal),
      cmocka_unit_test(cnn_adam_equal),
      cmocka_unit_test(unsynchronized_bn_differs),
      cmocka_unit_test(killed_rank_resumes),
      cmocka_unit_test(failure_printed_once),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
