/* The Open MPI communicator: the only code of normnet that calls MPI (ARCHITECTURE.md §9). A process
 * not started by mpirun gets a single-process communicator without initialising MPI. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "base/error.h"

static int launched_by_mpirun(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

/* In-place sum of n elements of `size` bytes; MPI counts are int: large buffers go in
 * INT_MAX pieces. */
static void sum_in_place(void *buf, size_t n, MPI_Datatype type, size_t size) {
  for (size_t off = 0; off < n;) {
    int k = n - off > INT_MAX ? INT_MAX : (int)(n - off);
    MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * size, k, type, MPI_SUM, MPI_COMM_WORLD);
    off += (size_t)k;
  }
}

static void sum_f32(void *ctx, float *buf, size_t n) {
  (void)ctx;
  sum_in_place(buf, n, MPI_FLOAT, sizeof *buf);
}

static void sum_f64(void *ctx, double *buf, size_t n) {
  (void)ctx;
  sum_in_place(buf, n, MPI_DOUBLE, sizeof *buf);
}

static void bcast(void *ctx, void *buf, size_t bytes, int root) {
  (void)ctx;
  for (size_t off = 0; off < bytes;) {
    int k = bytes - off > INT_MAX ? INT_MAX : (int)(bytes - off);
    MPI_Bcast((char *)buf + off, k, MPI_BYTE, root, MPI_COMM_WORLD);
    off += (size_t)k;
  }
}

static void job_abort(void *ctx, int code) {
  (void)ctx;
  MPI_Abort(MPI_COMM_WORLD, code);
}

int nn_dist_available(void) { return 1; }

nn_status nn_dist_init(int *argc, char ***argv, nn_comm *c, nn_error *err) {
  *c = (nn_comm){.rank = 0, .size = 1, .sync_bn = 1};
  if (!launched_by_mpirun()) return NN_OK;
  int provided = 0, rank = 0, size = 1;
  /* OpenMP threads compute; only the main thread communicates */
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return nn_err_set(err, NN_ERR_IO, "MPI_Init_thread failed");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  *c = (nn_comm){.rank = rank, .size = size, .sync_bn = 1, .ctx = NULL, .sum_f32 = sum_f32, .sum_f64 = sum_f64,
                 .bcast = bcast, .abort = job_abort};
  return NN_OK;
}

void nn_dist_finalize(nn_comm *c) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
  if (c) *c = (nn_comm){.rank = 0, .size = 1, .sync_bn = c->sync_bn};
}
