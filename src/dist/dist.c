/* Data-parallel helpers on top of a communicator (ARCHITECTURE.md §9): MPI-free, built always;
 * joining an mpirun job loads the MPI module (src/dist/mpi.c). */
#include <dlfcn.h> /* dladdr: _GNU_SOURCE, from CMakeLists.txt */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dist/dist.h"

/* ---- joining a job: the MPI module is loaded only under mpirun ----------------------- */
static int launched_by_mpirun(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int nn_dist_available(void) {
#ifdef NN_MPI_MODULE_BUILD
  return 1;
#else
  return 0;
#endif
}

nn_status nn_dist_init(int *argc, char ***argv, nn_comm *c, nn_error *err) {
  *c = (nn_comm){.rank = 0, .size = 1, .sync_bn = 1};
  if (!launched_by_mpirun()) return NN_OK;
#ifdef NN_MPI_MODULE_BUILD
  /* The module: NN_MPI_MODULE if set; else where an install puts it, whatever its prefix:
   * beside this library (libnormnet.so) or, from a program that links it statically (the
   * CLI in bin/), in the libdir beside that bindir; else the build tree's and the configured
   * install directory's. RTLD_GLOBAL: Open MPI's plugins resolve libmpi's symbols. */
  char beside[2][4096] = {"", ""};
  Dl_info self;
  if (dladdr((void *)nn_dist_init, &self) && self.dli_fname && strrchr(self.dli_fname, '/')) {
    const int dir = (int)(strrchr(self.dli_fname, '/') - self.dli_fname);
    snprintf(beside[0], sizeof beside[0], "%.*s/%s", dir, self.dli_fname, NN_MPI_MODULE_NAME);
    snprintf(beside[1], sizeof beside[1], "%.*s/%s/%s", dir, self.dli_fname, NN_MPI_MODULE_BIN_TO_LIB,
             NN_MPI_MODULE_NAME);
  }
  const char *paths[] = {getenv("NN_MPI_MODULE"), beside[0][0] ? beside[0] : NULL, beside[1][0] ? beside[1] : NULL,
                         NN_MPI_MODULE_BUILD, NN_MPI_MODULE_INSTALL};
  void *h = NULL;
  for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !h; i++)
    if (paths[i]) h = dlopen(paths[i], RTLD_NOW | RTLD_GLOBAL);
  if (!h) return nn_err_set(err, NN_ERR_IO, "started by mpirun, but the MPI module cannot be loaded: %s", dlerror());
  int (*open_fn)(int *, char ***, nn_comm *, char *, size_t);
  *(void **)&open_fn = dlsym(h, "nn_dist_mpi_open");
  char msg[256] = "";
  if (!open_fn) return nn_err_set(err, NN_ERR_IO, "%s: no nn_dist_mpi_open", NN_MPI_MODULE_BUILD);
  if (open_fn(argc, argv, c, msg, sizeof msg)) return nn_err_set(err, NN_ERR_IO, "%s", msg);
  return NN_OK;
#else
  (void)argc, (void)argv;
  return nn_err_set(err, NN_ERR_ARG, "started by mpirun, but this normnet was built without MPI (-DNN_WITH_MPI=ON)");
#endif
}

void nn_dist_finalize(nn_comm *c) {
  if (!c) return;
  if (c->finalize) c->finalize(c->ctx);
  *c = (nn_comm){.rank = 0, .size = 1, .sync_bn = c->sync_bn};
}

nn_range nn_dist_slice(const nn_comm *comm, int n) {
  if (!comm || comm->size <= 1) return (nn_range){.lo = 0, .hi = n};
  int rank = comm->rank, q = n / comm->size, r = n % comm->size;
  int lo = rank * q + (rank < r ? rank : r);
  return (nn_range){.lo = lo, .hi = lo + q + (rank < r)};
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

nn_status nn_dist_same(const nn_comm *c, const uint64_t *mine, const char *const *what, int n, nn_error *err) {
  if (!c || c->size <= 1) return NN_OK;
  enum { MAX_DIGESTS = 16 };
  uint64_t root[MAX_DIGESTS];
  if (n > MAX_DIGESTS) n = MAX_DIGESTS;
  memcpy(root, mine, (size_t)n * sizeof *root);
  c->bcast(c->ctx, root, (size_t)n * sizeof *root, 0);
  int i = 0;
  while (i < n && root[i] == mine[i]) i++;
  nn_status st = i == n ? NN_OK
                        : nn_err_set(err, NN_ERR_ARG,
                                     "%s: not the same as rank 0's: every process must run the same command on the "
                                     "same data and run",
                                     what[i]);
  return nn_dist_agree(c, st, err);
}
