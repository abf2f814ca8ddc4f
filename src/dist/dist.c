/* Data-parallel helpers on top of a communicator (ARCHITECTURE.md §9): MPI-free, built always. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dist/dist.h"

void nn_dist_slice(int n, int rank, int size, int *lo, int *hi) {
  int q = n / size, r = n % size;
  *lo = rank * q + (rank < r ? rank : r);
  *hi = *lo + q + (rank < r);
}

nn_status nn_dist_agree_sum(const nn_comm *c, nn_status st, double *vals, int nvals, nn_error *err) {
  if (!c || c->size <= 1) return st;
  /* one reduction: the values to sum, then one status slot per rank */
  size_t len = (size_t)nvals + (size_t)c->size;
  double small[128], *v = len <= 128 ? small : malloc(len * sizeof *v);
  if (!v) return nn_err_set(err, NN_ERR_NOMEM, "out of memory agreeing on a status over %d ranks", c->size);
  memset(v, 0, len * sizeof *v);
  if (nvals) memcpy(v, vals, (size_t)nvals * sizeof *v);
  v[nvals + c->rank] = (double)st;
  c->sum_f64(c->ctx, v, len);
  if (nvals) memcpy(vals, v, (size_t)nvals * sizeof *v);
  int who = -1;
  for (int r = 0; r < c->size && who < 0; r++)
    if (v[nvals + r] != 0) who = r;
  nn_status out = who < 0 ? NN_OK : (nn_status)v[nvals + who];
  if (v != small) free(v);
  if (who < 0) return NN_OK;
  /* the lowest failing rank speaks for all */
  char msg[sizeof err->msg] = {0};
  if (c->rank == who && err) memcpy(msg, err->msg, sizeof msg);
  c->bcast(c->ctx, msg, sizeof msg, who);
  msg[sizeof msg - 1] = '\0';
  if (err) {
    memcpy(err->msg, msg, sizeof msg);
    nn_err_prefix(err, out, "rank %d: ", who);
  }
  return out;
}

nn_status nn_dist_agree(const nn_comm *c, nn_status st, nn_error *err) { return nn_dist_agree_sum(c, st, NULL, 0, err); }
