/* nn_fit over a communicator of two threads in this process (nn_comm is public: its sums and
 * broadcast here are a barrier and a copy), for what mpirun cannot reproduce on demand: a
 * failure or a stop that one rank alone sees must stop every rank at the same point, with no
 * rank left waiting in a reduction the other never enters.
 * - epoch_done failing on rank 0 (a run's save) stops both ranks with that error;
 * - on_batch asking one rank to stop stops both after the same optimizer step, with equal
 *   weights.
 * A collective that waits more than TIMEOUT_S seconds counts as a hang: it fails the test and
 * every later collective returns at once, so the threads still end. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "nn_test.h"

#define RANKS 2
#define TIMEOUT_S 20

/* ---- the in-process communicator -------------------------------------------------------- */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int arrived, generation;
  int hung; /* a collective timed out: the ranks no longer meet */
  void *buf[RANKS];
} hub;

typedef struct {
  hub *h;
  int rank;
} endpoint;

/* Every rank arrives before any leaves; 0, or -1 once a wait has timed out. */
static int meet(hub *h) {
  pthread_mutex_lock(&h->mu);
  if (h->hung) {
    pthread_mutex_unlock(&h->mu);
    return -1;
  }
  int gen = h->generation;
  if (++h->arrived == RANKS) {
    h->arrived = 0;
    h->generation++;
    pthread_cond_broadcast(&h->cv);
  } else {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += TIMEOUT_S;
    while (gen == h->generation && !h->hung)
      if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT) {
        h->hung = 1;
        pthread_cond_broadcast(&h->cv);
      }
  }
  int rc = h->hung ? -1 : 0;
  pthread_mutex_unlock(&h->mu);
  return rc;
}

/* buf (floats, or doubles with dbl) = the elementwise sum of every rank's buf, in rank order:
 * the same bits on each (two floats summed in double and rounded are their float sum). */
static void sum_over_ranks(void *ctx, void *buf, size_t n, int dbl) {
  endpoint *e = ctx;
  e->h->buf[e->rank] = buf;
  double *acc = calloc(n ? n : 1, sizeof *acc);
  assert_non_null(acc);
  if (!meet(e->h)) {
    for (size_t i = 0; i < n; i++)
      for (int r = 0; r < RANKS; r++) acc[i] += dbl ? ((const double *)e->h->buf[r])[i] : ((const float *)e->h->buf[r])[i];
    if (!meet(e->h))
      for (size_t i = 0; i < n; i++) {
        if (dbl) ((double *)buf)[i] = acc[i];
        else ((float *)buf)[i] = (float)acc[i];
      }
  }
  free(acc);
}

static void sum_f32(void *ctx, float *buf, size_t n) { sum_over_ranks(ctx, buf, n, 0); }
static void sum_f64(void *ctx, double *buf, size_t n) { sum_over_ranks(ctx, buf, n, 1); }

static void bcast(void *ctx, void *buf, size_t bytes, int root) {
  endpoint *e = ctx;
  e->h->buf[e->rank] = buf;
  if (meet(e->h)) return;
  if (e->rank != root) memcpy(buf, e->h->buf[root], bytes);
  meet(e->h);
}

static void no_abort(void *ctx, int code) {
  (void)ctx;
  fail_msg("nn_fit called the communicator's abort (%d)", code);
}

/* ---- two ranks training the same model ------------------------------------------------- */

static char *dir;
static nn_dataset *train_set, *test_set;
static const char *spec_text = "input shape=1x8x8\nconv2d filters=3 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=10\n";

typedef struct {
  endpoint ep;
  nn_comm comm;
  nn_model *m;
  nn_optimizer *opt;
  int fail_epoch; /* epoch_done fails at this epoch (0: never) */
  int stop_batch; /* on_batch asks to stop at this batch of epoch 1 (0: never) */
  nn_status st;
  nn_error err;
  long steps;
} rank_job;

static nn_status epoch_done(void *user, const nn_epoch_record *rec, nn_error *err) {
  rank_job *j = user;
  if (rec->epoch == j->fail_epoch) return nn_error_set(err, NN_ERR_IO, "run/model.safetensors: cannot write (test)");
  return NN_OK;
}

static int silent_rank = -1; /* the rank given no on_batch (only the others report progress) */

static int on_batch(void *user, int epoch, int batch, int batches, double loss, double acc) {
  rank_job *j = user;
  (void)batches, (void)loss, (void)acc;
  return epoch == 1 && batch == j->stop_batch;
}

static void *rank_main(void *arg) {
  rank_job *j = arg;
  nn_fit_config cfg = nn_fit_defaults();
  cfg.epochs = 4;
  cfg.batch_size = 8;
  cfg.seed = 3;
  cfg.comm = &j->comm;
  cfg.assemble_in_step = 1;
  nn_fit_callbacks cb = {.user = j, .on_batch = j->ep.rank == silent_rank ? NULL : on_batch, .epoch_done = epoch_done};
  j->st = nn_fit(j->m, j->opt, train_set, test_set, &cfg, &cb, NULL, &j->err);
  j->steps = nn_optimizer_steps(j->opt);
  return NULL;
}

/* Both ranks through nn_fit; rank r fails at fail[r] and stops at stop[r]. */
static void run_ranks(rank_job jobs[RANKS], const int fail[RANKS], const int stop[RANKS]) {
  static hub h;
  h = (hub){.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  pthread_t th[RANKS];
  for (int r = 0; r < RANKS; r++) {
    rank_job *j = &jobs[r];
    *j = (rank_job){.ep = {.h = &h, .rank = r}, .fail_epoch = fail[r], .stop_batch = stop[r]};
    j->comm = (nn_comm){.rank = r, .size = RANKS, .sync_bn = 1, .ctx = &j->ep, .sum_f32 = sum_f32, .sum_f64 = sum_f64, .bcast = bcast, .abort = no_abort};
    j->m = tu_model(spec_text, 7);
    nn_opt_config oc = {.kind = NN_OPT_SGD, .lr = 0.05f, .momentum = 0.9f};
    nn_error err = {0};
    if (nn_optimizer_create(&oc, j->m, &j->opt, &err)) fail_msg("%s", err.msg);
  }
  for (int r = 0; r < RANKS; r++) assert_int_equal(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
  for (int r = 0; r < RANKS; r++) pthread_join(th[r], NULL);
  if (h.hung) fail_msg("a rank waited %d s in a collective the other never entered (rank 0: %s; rank 1: %s)", TIMEOUT_S, jobs[0].st ? jobs[0].err.msg : "ok", jobs[1].st ? jobs[1].err.msg : "ok");
}

static void free_ranks(rank_job jobs[RANKS]) {
  for (int r = 0; r < RANKS; r++) {
    nn_optimizer_free(jobs[r].opt);
    nn_model_free(jobs[r].m);
  }
}

static void test_epoch_done_failure_stops_all(void **state) {
  (void)state;
  rank_job jobs[RANKS];
  run_ranks(jobs, (const int[RANKS]){2, 0}, (const int[RANKS]){0, 0});
  for (int r = 0; r < RANKS; r++) {
    if (jobs[r].st != NN_ERR_IO) fail_msg("rank %d: status %d (%s), not rank 0's I/O error", r, jobs[r].st, jobs[r].err.msg);
    if (!strstr(jobs[r].err.msg, "rank 0: ") || !strstr(jobs[r].err.msg, "cannot write (test)"))
      fail_msg("rank %d's message: %s", r, jobs[r].err.msg);
  }
  assert_int_equal(jobs[0].steps, jobs[1].steps); /* both stopped after epoch 2 */
  free_ranks(jobs);
}

static void test_stop_on_one_rank_stops_all(void **state) {
  (void)state;
  rank_job jobs[RANKS];
  run_ranks(jobs, (const int[RANKS]){0, 0}, (const int[RANKS]){0, 3});
  for (int r = 0; r < RANKS; r++)
    if (jobs[r].st) fail_msg("rank %d: %s", r, jobs[r].err.msg);
  assert_int_equal(jobs[0].steps, 3);
  assert_int_equal(jobs[1].steps, 3);
  tu_assert_same_tensors(jobs[0].m, jobs[1].m);
  free_ranks(jobs);
  /* rank 1 has no on_batch at all (rank 0 alone reports progress): a stop rank 0 asks for, and
   * a training to its end, with the same reductions on both (an extra one on rank 0 alone
   * paired with rank 1's gradient sum) */
  silent_rank = 1;
  for (int stop = 3; stop >= 0; stop -= 3) {
    run_ranks(jobs, (const int[RANKS]){0, 0}, (const int[RANKS]){stop, 0});
    for (int r = 0; r < RANKS; r++)
      if (jobs[r].st) fail_msg("rank %d: %s", r, jobs[r].err.msg);
    assert_int_equal(jobs[0].steps, stop ? 3 : 4 * 8);
    assert_int_equal(jobs[1].steps, jobs[0].steps);
    tu_assert_same_tensors(jobs[0].m, jobs[1].m);
    free_ranks(jobs);
  }
  silent_rank = -1;
}

static int setup(void **state) {
  (void)state;
  dir = tu_tempdir("fit-ranks");
  tu_write_idx_pair(dir, "train", 64, 8, 8, 10, 1);
  tu_write_idx_pair(dir, "t10k", 24, 8, 8, 10, 2);
  nn_error err = {0};
  if (nn_dataset_load_idx_dir(dir, "train", &train_set, &err) || nn_dataset_load_idx_dir(dir, "t10k", &test_set, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  nn_set_threads(1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  nn_dataset_free(train_set);
  nn_dataset_free(test_set);
  tu_rmtree(dir);
  free(dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_epoch_done_failure_stops_all),
      cmocka_unit_test(test_stop_on_one_rank_stops_all),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
