/* Internal helpers of data-parallel training (ARCHITECTURE.md §9); the public part is in normnet.h. */
#ifndef NN_DIST_DIST_H
#define NN_DIST_DIST_H
#include "normnet.h"

/* nn_dist_agree that also sums vals[0..nvals) over the ranks in the same reduction. */
nn_status nn_dist_agree_sum(const nn_comm *c, nn_status st, double *vals, int nvals, nn_error *err);

#endif
