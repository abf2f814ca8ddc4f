#include "base/file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

int nn_file_open_regular(const char *path, off_t *size, nn_error *err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    nn_err_set(err, NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    nn_err_set(err, NN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(sb.st_mode)) {
    nn_err_set(err, NN_ERR_IO, "%s: is %s; only regular files are read", path, kind_of(sb.st_mode));
    close(fd);
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    nn_err_set(err, NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (size) *size = sb.st_size;
  return fd;
}

FILE *nn_file_fopen_regular(const char *path, off_t *size, nn_error *err) {
  int fd = nn_file_open_regular(path, size, err);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    nn_err_set(err, NN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
  }
  return f;
}
