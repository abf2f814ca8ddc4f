/* Thread count: the user's (nn_set_threads, OMP_NUM_THREADS) or the tuner's (threads.h). */
#include "base/threads.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "normnet.h"

#define TUNER_FIRST_GAP 8 /* steps of the best count before the first re-probe */
#define TUNER_MAX_GAP 256 /* steps between probes of a losing count, at most */
#define TUNER_EWMA 0.25   /* weight of a new measurement of the running best */
#define TUNER_LOSS 1.5    /* a probe this much slower than the best is a clear loser */
#define TUNER_CUT 2.0     /* re-probing a clear loser: a first step this much slower ends it */

static atomic_int user_fixed = 0; /* nn_set_threads(n > 0) was called */

void nn_set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  atomic_store(&user_fixed, threads > 0);
}

int nn_cores(void) {
  static atomic_int cores = 0;
  int p = atomic_load(&cores);
  if (p == 0) {
    p = omp_get_num_procs();
    p = p < 1 ? 1 : p;
    atomic_store(&cores, p);
  }
  return p;
}

int nn_threads_auto(void) {
  if (atomic_load(&user_fixed)) return 0;
  const char *env = getenv("OMP_NUM_THREADS");
  if (env && *env) return 0;
  return nn_cores();
}

int nn_threads_max(void) {
  int n = nn_threads_auto();
  return n ? n : omp_get_max_threads();
}

double nn_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void nn_tuner_init(nn_tuner *t, int max) {
  *t = (nn_tuner){.ncand = 1, .cand = {max > 1 ? max : 1}, .gap = TUNER_FIRST_GAP, .t0 = -1.0, .fresh = 1};
  if (max > 1) t->cand[t->ncand++] = 1;
  if (max >= 4) t->cand[t->ncand++] = max / 2;
}

void nn_tuner_break(nn_tuner *t) {
  t->t0 = -1.0;
  t->fresh = 1; /* the next step may wake workers that slept meanwhile */
}

/* Start a run of `len` steps of candidate k. */
static void start_run(nn_tuner *t, int k, int len, int probing) {
  t->fresh = t->fresh || k != t->cur;
  t->cur = k;
  t->left = len;
  t->probing = probing;
}

/* Next run after the current one ended. */
static void decide(nn_tuner *t) {
  if (t->probing) {
    /* the probe was measured once (its second step); it replaces the best if faster */
    if (t->cost[t->cur] > 0 && t->cost[t->cur] < t->cost[t->best]) {
      t->best = t->cur;
      t->gap = TUNER_FIRST_GAP;
    } else if (t->cost[t->cur] > 0) {
      /* a close loser is probed again soon, a clear one (>= 1.5x slower) much later */
      int g = t->gap * (t->cost[t->cur] < TUNER_LOSS * t->cost[t->best] ? 2 : 8);
      t->gap = g < TUNER_MAX_GAP ? g : TUNER_MAX_GAP;
    }
    start_run(t, t->best, t->gap, 0);
    return;
  }
  for (int k = 0; k < t->ncand; k++) {
    if (t->cost[k] == 0) { /* not measured yet: two steps, the second one counted */
      start_run(t, k, 2, k != t->best);
      return;
    }
  }
  if (t->ncand < 2) {
    start_run(t, 0, TUNER_MAX_GAP, 0);
    return;
  }
  int k = t->next_probe % t->ncand;
  if (k == t->best) k = (k + 1) % t->ncand;
  t->next_probe = k + 1;
  start_run(t, k, 2, 1);
}

void nn_tuner_adopt(nn_tuner *t, const nn_tuner *from, int max) {
  nn_tuner_init(t, max);
  if (from->ncand != t->ncand || from->cand[0] != t->cand[0] || from->cost[from->best] <= 0) return;
  t->best = from->best;
  t->gap = from->gap;
  start_run(t, t->best, t->gap, 0); /* its cost is measured along the way */
}

int nn_tuner_step(nn_tuner *t, double now, int n) {
  if (t->ncand == 0) nn_tuner_init(t, 1);
  if (t->t0 >= 0 && t->n0 > 0 && now > t->t0) {
    double c = (now - t->t0) / t->n0;
    if (!t->fresh) {
      double *cost = &t->cost[t->cur];
      *cost = *cost == 0 || t->probing ? c : (1.0 - TUNER_EWMA) * *cost + TUNER_EWMA * c;
    } else if (t->probing && t->cost[t->best] > 0 && t->cost[t->cur] > TUNER_LOSS * t->cost[t->best] &&
               c > TUNER_CUT * t->cost[t->best]) {
      /* re-probe of a clear loser whose first step, wake-up included, again took TUNER_CUT
       * times the best: still losing (the machine is still busy); end the probe rather than
       * pay for a second step. A count that lost narrowly, or never, always gets two. */
      t->cost[t->cur] = c;
      t->left = 0;
    }
    t->fresh = 0;
  }
  if (t->cost[t->best] == 0 && t->cost[t->cur] > 0) t->best = t->cur; /* first measurement */
  if (!t->probing && t->cur == t->best) {
    /* the best got slower than another count was when last measured (the machine got busy
     * or idle): probe that one now rather than at the end of the run */
    for (int k = 0; k < t->ncand; k++) {
      if (k != t->best && t->cost[k] > 0 && t->cost[k] < t->cost[t->best]) {
        t->left = 0;
        t->next_probe = k;
        break;
      }
    }
  }
  if (t->left <= 0) decide(t);
  t->left--;
  t->t0 = now;
  t->n0 = n;
  return t->cand[t->cur];
}

void nn_threads_step(nn_tuner *mine, nn_tuner *other, int n) {
  int max = nn_threads_auto();
  if (max <= 0) return;
  if (mine->ncand == 0 || mine->cand[0] != max) nn_tuner_adopt(mine, other, max);
  nn_tuner_break(other);
  omp_set_num_threads(nn_tuner_step(mine, nn_now(), n));
}
