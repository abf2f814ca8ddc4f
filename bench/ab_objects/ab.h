/* Helpers of the bench/ab_objects.sh drivers (each driver is one program). */
#ifndef NN_BENCH_AB_H
#define NN_BENCH_AB_H
#include <stdio.h>
#include <stdlib.h>

#include "../bench_util.h"

/* With AB_COLD=1 in the environment, every timed call starts from a cold cache: before it,
 * ab_evict reads AB_EVICT_BYTES of other memory (reads, so that no dirty line's write-back
 * lands in the timed call), as in a training step, where a layer's tensors were written a
 * few layers earlier and have left the core's caches. */
#define AB_EVICT_BYTES ((size_t)64 << 20)
static inline void ab_evict(void) {
  static unsigned char *junk;
  static volatile unsigned sink;
  if (!junk) {
    junk = malloc(AB_EVICT_BYTES);
    if (!junk) return;
    for (size_t i = 0; i < AB_EVICT_BYTES; i += 64) junk[i] = (unsigned char)i;
  }
  unsigned s = 0;
  for (size_t i = 0; i < AB_EVICT_BYTES; i += 64) s += junk[i];
  sink = s;
}

/* call(0, ctx) runs the old version, call(1, ctx) the new one: `rounds` of each, alternating;
 * prints the label, each one's minimum in microseconds and old/new. */
static inline void ab_time(const char *label, void (*call)(int v, void *ctx), void *ctx, int rounds) {
  double best[2] = {1e30, 1e30};
  const char *cold = getenv("AB_COLD");
  const int evict = cold && cold[0] == '1';
  for (int r = 0; r < rounds; r++)
    for (int v = 0; v < 2; v++) {
      if (evict) ab_evict();
      const double t0 = now();
      call(v, ctx);
      const double t = now() - t0;
      if (t < best[v]) best[v] = t;
    }
  char shown[128];
  snprintf(shown, sizeof shown, "%s%s", label, evict ? " (cold)" : "");
  printf("%-52s old %8.1f us  new %8.1f us  old/new %.2f\n", shown, 1e6 * best[0], 1e6 * best[1], best[0] / best[1]);
}

#endif
