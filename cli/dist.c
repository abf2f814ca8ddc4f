/* The CLI under mpirun (ARCHITECTURE.md §9): one communicator for the process, rank 0 alone prints.
 * A failure on another rank is kept, not printed, until the ranks agree: then rank 0 prints
 * the message of the lowest failing rank and every rank exits with its code. */
#include <stdarg.h>
#include <string.h>

#include "cli.h"

static nn_comm comm = {.rank = 0, .size = 1, .sync_bn = 1};
static char held[sizeof(((nn_error *)0)->msg)]; /* this rank's unprinted message */
static int settled;                             /* a failure was agreed on: no collective after it */
static const char *command = "";

int cli_dist_start(int *argc, char ***argv) {
  nn_error err = {0};
  command = *argc > 1 ? (*argv)[1] : "";
  if (nn_dist_init(argc, argv, &comm, &err)) {
    fprintf(stderr, "normnet: %s\n", err.msg);
    return EXIT_FAIL;
  }
  return EXIT_OK;
}

nn_comm *cli_comm(void) { return &comm; }
int cli_is_rank0(void) { return comm.rank == 0; }

int cli_hold_message(const char *msg) {
  if (comm.rank == 0) return 0;
  if (!held[0]) snprintf(held, sizeof held, "%s", msg);
  return 1;
}

int cli_dist_agree(int rc) {
  if (comm.size <= 1) return rc;
  nn_error err = {0};
  snprintf(err.msg, sizeof err.msg, "%s", held[0] ? held : "failed");
  /* statuses are agreed as exit codes; the lowest failing rank's code and message win */
  nn_status st = nn_dist_agree(&comm, (nn_status)rc, &err);
  if (st) {
    settled = 1;
    if (comm.rank == 0 && strncmp(err.msg, "rank 0: ", 8)) fprintf(stderr, "normnet %s: %s\n", command, err.msg);
  }
  return (int)st;
}

int cli_dist_finish(int rc) {
  if (comm.size > 1 && !settled) rc = cli_dist_agree(rc);
  nn_dist_finalize(&comm);
  return rc;
}
