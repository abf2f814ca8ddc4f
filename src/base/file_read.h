/* Opening input files: only regular files. A FIFO would block forever on open or read, a
 * device (/dev/zero, /dev/urandom) never ends, a directory has no data; each is refused at
 * once with a message naming the path, without blocking (the open is non-blocking and the
 * type comes from fstat of the opened descriptor, so a symlink or a swap after a stat
 * cannot sneak one in). */
#ifndef NN_BASE_FILE_READ_H
#define NN_BASE_FILE_READ_H
#include <stdio.h>
#include <sys/types.h>

#include "base/error.h"

/* A blocking read-only descriptor of the regular file `path`, or -1 with err filled
 * (NN_ERR_IO). *size receives the file size (may be NULL). */
int nn_file_open_regular(const char *path, off_t *size, nn_error *err);
/* The same as a stdio stream ("rb"), or NULL with err filled. */
FILE *nn_file_fopen_regular(const char *path, off_t *size, nn_error *err);

#endif
