/* Helpers of the bench/ab_objects.sh drivers (each driver is one program). */
#ifndef NN_BENCH_AB_H
#define NN_BENCH_AB_H
#include <stdio.h>
#include <stdlib.h>

#include "../bench_util.h"

/* call(0, ctx) runs the old version, call(1, ctx) the new one: `rounds` of each, alternating;
 * prints the label, each one's minimum in microseconds and old/new. */
static inline void ab_time(const char *label, void (*call)(int v, void *ctx), void *ctx, int rounds) {
  double best[2] = {1e30, 1e30};
  for (int r = 0; r < rounds; r++)
    for (int v = 0; v < 2; v++) {
      const double t0 = now();
      call(v, ctx);
      const double t = now() - t0;
      if (t < best[v]) best[v] = t;
    }
  printf("%-52s old %8.1f us  new %8.1f us  old/new %.2f\n", label, 1e6 * best[0], 1e6 * best[1], best[0] / best[1]);
}

#endif
