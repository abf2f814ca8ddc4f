/* The thread-count tuner (src/base/threads.c) on a simulated clock: each step costs
 * cost(threads) seconds per sample, and the tuner must
 * - settle on the faster count and spend few steps on the other one (idle machine: all
 *   cores faster; busy machine: 1 thread faster by 5x, as measured with another process
 *   burning a core);
 * - follow a change of the machine's load within a few steps when the best count gets
 *   slower, and within its probe gap when the other one gets faster;
 * - not count the step after a break (an eval pass in between) or the first step of a run
 *   (it pays for waking the workers);
 * - start an evaluation pass from the training steps' verdict;
 * and nn_set_threads(n > 0) must take the choice away from it; a model's own count
 * (nn_model_set_threads) overrides both. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "base/threads.h"
#include "normnet.h"

typedef struct {
  nn_tuner t;
  double now;
  double cost[3]; /* seconds per sample for 1 thread, 2 threads, (unused) */
  long used[3];   /* steps run per thread count */
} sim;

/* Runs `steps` steps of batch n; the step's duration follows the thread count chosen. */
static void run(sim *s, int steps, int n) {
  for (int i = 0; i < steps; i++) {
    int th = nn_tuner_step(&s->t, s->now, n);
    assert_true(th == 1 || th == 2);
    s->used[th]++;
    s->now += s->cost[th] * n;
  }
}

static void test_idle_machine_prefers_two(void **state) {
  (void)state;
  sim s = {.now = 100.0, .cost = {0, 1.0e-5, 0.6e-5}};
  nn_tuner_init(&s.t, 2);
  run(&s, 1000, 32);
  /* exploration costs a few steps; afterwards mostly 2 threads */
  assert_true(s.used[2] >= 950);
  assert_true(s.used[1] >= 2); /* it did try 1 thread */
}

static void test_busy_machine_prefers_one(void **state) {
  (void)state;
  sim s = {.now = 0.0, .cost = {0, 1.0e-5, 5.0e-5}};
  nn_tuner_init(&s.t, 2);
  run(&s, 1000, 128);
  /* probes of the clear loser back off to one per TUNER_MAX_GAP steps (2 steps each) */
  assert_true(s.used[1] >= 970);
  /* time lost against always 1 thread: under 3 % (a probe that starts 2x slower than the
   * best ends after one step) */
  double ideal = 1000 * 128 * s.cost[1];
  assert_true(s.now <= 1.03 * ideal);
}

static void test_follows_load_changes(void **state) {
  (void)state;
  sim s = {.now = 0.0, .cost = {0, 1.0e-5, 0.6e-5}};
  nn_tuner_init(&s.t, 2);
  run(&s, 300, 64);
  /* another process starts burning a core: 2 threads now 5x slower than 1 */
  s.cost[2] = 5.0e-5;
  long before1 = s.used[1], before2 = s.used[2];
  run(&s, 20, 64);
  assert_true(s.used[2] - before2 <= 6); /* noticed within a few steps */
  run(&s, 300, 64);
  /* the process stops: 2 threads faster again; found at the next probe */
  s.cost[2] = 0.6e-5;
  before1 = s.used[1], before2 = s.used[2];
  run(&s, 600, 64);
  assert_true(s.used[2] - before2 >= 600 - 300);
  (void)before1;
}

static void test_break_and_fresh_steps_not_counted(void **state) {
  (void)state;
  nn_tuner t;
  nn_tuner_init(&t, 2);
  /* the first step (planning, cold caches) takes 1000 s: it must not count */
  int th = nn_tuner_step(&t, 0.0, 10);
  assert_int_equal(th, 2);
  th = nn_tuner_step(&t, 1000.0, 10);
  assert_int_equal(th, 2);
  nn_tuner_step(&t, 1001.0, 10); /* second step of the run: 1 s for 10 samples */
  assert_true(t.cost[0] > 0.099 && t.cost[0] < 0.101);
  /* an eval pass in between: the interval is not a step */
  double c = t.cost[0];
  nn_tuner_break(&t);
  nn_tuner_step(&t, 5000.0, 10);
  assert_true(t.cost[0] == c && t.cost[1] == 0);
  /* the step after the break is the first of its run (it may wake workers): a slow one
   * (100 s) must not count either; afterwards 2 threads take 1 s per step, 1 thread 2 s */
  double now = 5100.0;
  th = 2;
  for (int i = 0; i < 40; i++) {
    th = nn_tuner_step(&t, now, 10);
    now += th == 2 ? 1.0 : 2.0;
  }
  assert_true(t.cost[0] == c);
  assert_true(t.cost[1] > 0.199 && t.cost[1] < 0.201);
}

/* An evaluation pass (79 steps: LeNet's 10,000 test samples in batches of 128) after 300
 * training steps: its tuner takes the training tuner's verdict instead of measuring both
 * counts from scratch. */
static void test_eval_adopts_training_verdict(void **state) {
  (void)state;
  for (int busy = 0; busy <= 1; busy++) {
    const double c1 = 1.0e-5, c2 = busy ? 5.0e-5 : 0.6e-5; /* a busy core: 2 threads 5x slower */
    sim train = {.cost = {0, c1, c2}}, fresh = {.cost = {0, c1 / 3, c2 / 3}}, eval = fresh;
    nn_tuner_init(&train.t, 2);
    run(&train, 300, 128);
    nn_tuner_init(&fresh.t, 2); /* from scratch, as before */
    run(&fresh, 79, 128);
    nn_tuner_adopt(&eval.t, &train.t, 2);
    run(&eval, 79, 128);
    if (busy) {
      assert_int_equal(eval.used[2], 0); /* no step at all cores */
      assert_true(fresh.used[2] >= 3);   /* from scratch: the first two and a re-probe */
      assert_true(eval.now < fresh.now);
    } else {
      assert_true(eval.used[2] >= 78); /* all cores from the first step */
    }
    assert_true(eval.t.cost[eval.t.best] > 0); /* measured along the way */
  }
  /* nothing to adopt (no step measured, or other counts): a fresh tuner */
  nn_tuner none, t;
  nn_tuner_init(&none, 2);
  nn_tuner_adopt(&t, &none, 2);
  assert_int_equal(t.ncand, 2);
  assert_int_equal(t.cur, 0);
  assert_int_equal(t.left, 0);
  nn_tuner_adopt(&t, &none, 4);
  assert_int_equal(t.ncand, 3);
}

static void test_single_core_and_user_choice(void **state) {
  (void)state;
  nn_tuner t;
  nn_tuner_init(&t, 1);
  for (int i = 0; i < 50; i++) assert_int_equal(nn_tuner_step(&t, (double)i, 8), 1);
  /* the library chooses unless nn_set_threads(n > 0) or OMP_NUM_THREADS fixed the count */
  assert_int_equal(unsetenv("OMP_NUM_THREADS"), 0);
  nn_set_threads(0);
  assert_true(nn_threads_auto() >= 1);
  assert_int_equal(nn_threads_max(), nn_cores()); /* the library's choice goes up to every core */
  nn_set_threads(1);
  assert_int_equal(nn_threads_auto(), 0);
  assert_int_equal(nn_threads_max(), 1); /* what the user fixed, whatever the cores */
  nn_set_threads(3);
  assert_int_equal(nn_threads_max(), 3);
  nn_set_threads(0);
  assert_true(nn_threads_auto() >= 1);
  assert_int_equal(setenv("OMP_NUM_THREADS", "2", 1), 0);
  assert_int_equal(nn_threads_auto(), 0);
}

/* The count is an argument of the model: its forward sets the calling thread's OpenMP count
 * to it, over any process default, and two counts give the same bits. */
static void test_model_threads(void **state) {
  (void)state;
  nn_spec *s = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse("input shape=1x12x12\nconv2d filters=4 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=3\n",
                    "t.spec", &s, &err) ||
      nn_model_create(s, &m, &err))
    fail_msg("%s", err.msg);
  nn_rng rng;
  nn_rng_seed(&rng, 3);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  enum { N = 64,
         D = 144 };
  static float x[N * D];
  int32_t y[N];
  for (int i = 0; i < N * D; i++) x[i] = nn_rng_uniform(&rng) - 0.5f;
  for (int i = 0; i < N; i++) y[i] = i % 3;
  const float *logits = NULL;
  static float out[2][N * 3];
  nn_set_threads(2); /* a process default the model's own count overrides */
  for (int k = 0; k < 2; k++) {
    nn_model_set_threads(m, k + 1);
    assert_int_equal(nn_model_forward(m, x, y, N, NN_MODE_EVAL, NULL, NULL, &logits, &err), NN_OK);
    assert_int_equal(omp_get_max_threads(), k + 1);
    memcpy(out[k], logits, sizeof out[k]);
  }
  nn_set_threads(0);
  assert_memory_equal(out[0], out[1], sizeof out[0]);
  nn_model_set_threads(m, 0); /* back to the default: the library's choice, within the cores */
  assert_int_equal(nn_model_forward(m, x, y, N, NN_MODE_EVAL, NULL, NULL, NULL, &err), NN_OK);
  assert_true(omp_get_max_threads() >= 1 && omp_get_max_threads() <= omp_get_num_procs());
  nn_model_free(m);
  nn_spec_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_threads),
      cmocka_unit_test(test_idle_machine_prefers_two),
      cmocka_unit_test(test_busy_machine_prefers_one),
      cmocka_unit_test(test_follows_load_changes),
      cmocka_unit_test(test_break_and_fresh_steps_not_counted),
      cmocka_unit_test(test_eval_adopts_training_verdict),
      cmocka_unit_test(test_single_core_and_user_choice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
