/* Internal helpers of data-parallel training (ARCHITECTURE.md §9); the public part is in normnet.h. */
#ifndef NN_DIST_DIST_H
#define NN_DIST_DIST_H
#include "normnet.h"

/* nn_dist_agree that also sums vals[0..nvals) over the ranks in the same reduction. */
nn_status nn_dist_agree_sum(const nn_comm *c, nn_status st, double *vals, int nvals, nn_error *err);

/* Every rank's n digests against rank 0's (one broadcast, then nn_dist_agree): NN_ERR_ARG
 * "rank R: WHAT: not the same as rank 0's ..." naming the lowest rank and the first digest that
 * differs (what[i] names digest i). NN_OK on one process. */
nn_status nn_dist_same(const nn_comm *c, const uint64_t *mine, const char *const *what, int n, nn_error *err);

#endif
