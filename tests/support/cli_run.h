/* Running the normnet CLI from a test (NN_CLI names the binary; ctest sets it). */
#ifndef NN_TEST_CLI_RUN_H
#define NN_TEST_CLI_RUN_H
#include <stddef.h>

typedef struct {
  int status; /* exit status; 128 + signal number if killed by a signal */
  char out[65536], err[8192];
} tu_run_result;

/* Read up to len-1 bytes of a file into buf (NUL-terminated; empty if it cannot be read). */
void tu_slurp(const char *path, char *buf, size_t len);
/* Write n bytes to path, failing the test if that fails. */
void tu_write_file(const char *path, const void *data, size_t n);
/* Run `prefix 'NN_CLI' args` through the shell in dir (out.txt and err.txt land there),
 * stdin from /dev/null; capture stdout, stderr and the exit status. prefix may be "". */
void tu_cli_run(tu_run_result *r, const char *dir, const char *prefix, const char *args);
/* A clean failure: exit status 1 or 2 (no signal), exactly one line on stderr, containing
 * the needles (either may be NULL). */
void tu_cli_expect_error(const char *dir, const char *prefix, const char *args, const char *needle1,
                         const char *needle2);

#endif
