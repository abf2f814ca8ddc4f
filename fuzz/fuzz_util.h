/* Shared by the fuzz targets: each writes its input to a file in a private tmpfs
 * directory and calls the public, path-based reader exactly as the CLI does. */
#ifndef NN_FUZZ_UTIL_H
#define NN_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>

#include "normnet.h"

/* The libFuzzer entry point each fuzz_*.c defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process's scratch directory (created on first use, under /dev/shm if present). */
const char *fz_dir(void);
/* Write n bytes to fz_dir()/name; returns the path (static storage, one per name). */
const char *fz_write(const char *name, const uint8_t *data, size_t n);
/* The same, gzip-compressed (level 1). */
const char *fz_write_gz(const char *name, const uint8_t *data, size_t n);
/* Check that a failure left a one-line, printable message: aborts (a finding) otherwise. */
void fz_check_error(nn_status st, const nn_error *err);

#endif
