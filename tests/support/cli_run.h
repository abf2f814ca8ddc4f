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
/* The whole file (malloc'd, one extra NUL byte after it) and its size; fails the test if it
 * cannot be read. */
unsigned char *tu_read_file(const char *path, size_t *size);
/* Write n bytes to path, failing the test if that fails. */
void tu_write_file(const char *path, const void *data, size_t n);
/* Run `prefix 'NN_CLI' args` through the shell in dir (out.txt and err.txt land there),
 * stdin from /dev/null; capture stdout, stderr and the exit status. prefix may be "". */
void tu_cli_run(tu_run_result *r, const char *dir, const char *prefix, const char *args);
/* tu_cli_run with prefix "", failing the test, with `what`, the exit status and stderr, unless
 * the command exits 0. */
void tu_cli_run_ok(tu_run_result *r, const char *dir, const char *args, const char *what);
/* A clean failure: exit status 1 or 2 (no signal), exactly one line on stderr, containing
 * the needles (either may be NULL). */
void tu_cli_expect_error(const char *dir, const char *prefix, const char *args, const char *needle1,
                         const char *needle2);

/* The CLI tests' data: an IDX pair DIR/SUB/PREFIX-{images-idx3,labels-idx1}-ubyte (SUB is
 * created) of n 8x8 images; class k = i % 8 is bright in row k, so the task is learnable.
 * The knobs make it bad: nlabels labels, the last one 12 (label_bump), the image file
 * `truncate` bytes short, the images' magic number wrong (bad_magic). */
typedef struct {
  int n, nlabels, label_bump, truncate, bad_magic;
} tu_idx_opts;
void tu_cli_write_idx(const char *dir, const char *sub, const char *prefix, tu_idx_opts o);
/* cmocka group fixtures of the CLI tests: tu_cli_dir = a fresh /tmp/normnet-cli-XXXXXX holding
 * good/{train,t10k} (96 and 40 images of tu_cli_write_idx) and small.spec (a small BN net for
 * 8x8 inputs: conv2d 4, batchnorm, relu, flatten, dense 16, batchnorm, relu, dense 10); the
 * teardown removes it. */
extern char tu_cli_dir[256];
int tu_cli_group_setup(void **state);
int tu_cli_group_teardown(void **state);

#endif
