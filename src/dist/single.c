/* The communicator of a build without MPI: always one process (ARCHITECTURE.md §9). */
#include "base/error.h"

int nn_dist_available(void) { return 0; }

nn_status nn_dist_init(int *argc, char ***argv, nn_comm *c, nn_error *err) {
  (void)argc, (void)argv, (void)err;
  *c = (nn_comm){.rank = 0, .size = 1, .sync_bn = 1};
  return NN_OK;
}

void nn_dist_finalize(nn_comm *c) {
  if (c) *c = (nn_comm){.rank = 0, .size = 1, .sync_bn = c->sync_bn};
}
