/* The Open MPI communicator: the only code of normnet that calls MPI (ARCHITECTURE.md §9).
 * Built as the loadable module libnormnet_mpi.so; nn_dist_init opens it when the process
 * was started by mpirun and calls nn_dist_mpi_open. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>

#include "normnet.h"

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

static void finalize(void *ctx) {
  (void)ctx;
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
}

/* Initialise MPI and fill *c for MPI_COMM_WORLD; 0 on success, else a message in msg. */
__attribute__((visibility("default"))) int nn_dist_mpi_open(int *argc, char ***argv, nn_comm *c, char *msg,
                                                            size_t len);
int nn_dist_mpi_open(int *argc, char ***argv, nn_comm *c, char *msg, size_t len) {
  int provided = 0, rank = 0, size = 1;
  /* OpenMP threads compute; only the main thread communicates */
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    snprintf(msg, len, "MPI_Init_thread failed");
    return -1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  *c = (nn_comm){.rank = rank, .size = size, .sync_bn = 1, .ctx = NULL, .sum_f32 = sum_f32, .sum_f64 = sum_f64, .bcast = bcast, .abort = job_abort, .finalize = finalize};
  return 0;
}
