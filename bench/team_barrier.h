/* How long the current OpenMP team takes to pass a barrier, measured: a host check next to
 * fma_peak.h's. The development machine (a 2-vCPU virtual machine) switches every few
 * minutes between two states that the FMA peak does not show: a barrier of about 0.27 or
 * 0.45 us, and in the second less memory bandwidth at two threads and two-thread training a
 * quarter slower (docs/performance.md, run 17). Printing this time next to a two-thread
 * figure says which state it was measured in. Header-only, for bench_train and bench_norm
 * (each bench C file is one program). */
#ifndef NN_BENCH_TEAM_BARRIER_H
#define NN_BENCH_TEAM_BARRIER_H
#include <omp.h>
#include <stdlib.h>

#include "bench_util.h"

#define TEAM_BARRIER_PASSES 5000
#define TEAM_BARRIER_REPS 5

/* Microseconds per barrier of the team (omp_get_max_threads() threads), timed with `clock`
 * (seconds): the median of TEAM_BARRIER_REPS parallel regions of TEAM_BARRIER_PASSES
 * barriers each, after one region that wakes the team. 0 for a team of one. */
static inline double team_barrier_us(double (*clock)(void)) {
  if (omp_get_max_threads() < 2) return 0.0;
  double t[TEAM_BARRIER_REPS];
#pragma omp parallel
  {
#pragma omp barrier
  }
  for (int r = 0; r < TEAM_BARRIER_REPS; r++) {
    const double t0 = clock();
#pragma omp parallel
    {
      for (int i = 0; i < TEAM_BARRIER_PASSES; i++) {
#pragma omp barrier
      }
    }
    t[r] = (clock() - t0) / TEAM_BARRIER_PASSES * 1e6;
  }
  qsort(t, TEAM_BARRIER_REPS, sizeof t[0], cmp_double);
  return t[TEAM_BARRIER_REPS / 2];
}

#endif
