/* Fixed sample groups: how a reduction over the batch (BatchNorm's training statistics, the
 * direct and Winograd convolutions' dW) cuts its N samples so that its sums do not depend on
 * the thread count: G groups fixed by N, group k = samples [k*N/G, (k+1)*N/G), each summed on
 * its own, the groups' sums then added in group order. Split statically over the threads,
 * the groups fall in the contiguous sample ranges the layers around them give each thread
 * (ARCHITECTURE.md, threading), so a thread reads only samples it wrote itself (run 30).
 * Internal to src/kernels/; static inline, no state. */
#ifndef NN_KERNELS_SAMPLE_GROUPS_H
#define NN_KERNELS_SAMPLE_GROUPS_H

/* BatchNorm's and the direct dW's group count: a multiple of 2 and 4 threads, few enough that
 * a group's per-channel fold stays small (eight cost BatchNorm 0.84-0.92x at one thread) */
#define NN_SAMPLE_GROUPS 4

/* The groups of a batch of n samples, at most max (1 for an empty batch) */
static inline int nn_sample_groups(int n, int max) {
  if (n < 1) return 1;
  return n < max ? n : max;
}

/* The first sample of group k of n samples in `groups` groups (k = groups: n) */
static inline int nn_group_start(int n, int groups, int k) { return (int)((long)k * n / groups); }

#endif
