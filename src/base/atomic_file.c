/* The atomic file writer (see atomic_file.h). */
#include "base/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/error.h"

#define TEMP_TAG ".tmp."

/* Directory and base name of path (malloc'd copies). */
static int split_path(const char *path, char **dir, const char **base) {
  const char *slash = strrchr(path, '/');
  *base = slash ? slash + 1 : path;
  if (!slash) *dir = strdup(".");
  else if (slash == path) *dir = strdup("/");
  else {
    size_t n = (size_t)(slash - path);
    if ((*dir = malloc(n + 1))) memcpy(*dir, path, n), (*dir)[n] = 0;
  }
  return *dir ? 0 : -1;
}

int nn_file_is_temp_name(const char *name, long *pid) {
  /* ".NAME.tmp.PID.N" */
  if (name[0] != '.') return 0;
  const char *tag = NULL;
  for (const char *p = strstr(name + 1, TEMP_TAG); p; p = strstr(p + 1, TEMP_TAG)) tag = p;
  if (!tag || tag == name + 1) return 0;
  const char *p = tag + strlen(TEMP_TAG);
  char *end;
  long v = strtol(p, &end, 10);
  if (end == p || *end != '.' || v <= 0) return 0;
  p = end + 1;
  strtoul(p, &end, 10);
  if (end == p || *end) return 0;
  if (pid) *pid = v;
  return 1;
}

static nn_status sync_dir(const char *dir, const char *path, nn_error *err) {
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return NN_OK; /* cannot open the directory for syncing: the rename stands */
  int r = fsync(dfd), e = errno;
  close(dfd);
  /* Some file systems cannot sync a directory (EINVAL, EROFS). */
  if (r != 0 && e != EINVAL && e != EROFS)
    return nn_err_set(err, NN_ERR_IO, "%s: written, but syncing directory %s failed: %s", path, dir, strerror(e));
  return NN_OK;
}

nn_status nn_file_write_atomic(const char *path, const void *data, size_t len, nn_error *err) {
  if (!path || !*path || (len && !data)) return nn_err_set(err, NN_ERR_ARG, "nn_file_write_atomic: invalid arguments");
  char *dir = NULL;
  const char *base;
  if (split_path(path, &dir, &base)) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  if (!*base) {
    free(dir);
    return nn_err_set(err, NN_ERR_ARG, "%s: not a file name", path);
  }
  static _Atomic unsigned long counter;
  size_t tlen = strlen(dir) + strlen(base) + 64;
  char *tmp = malloc(tlen);
  if (!tmp) {
    free(dir);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  }
  int fd = -1, e = 0;
  for (int tries = 0; fd < 0 && tries < 100; tries++) {
    unsigned long n;
    n = ++counter;
    snprintf(tmp, tlen, "%s/.%s" TEMP_TAG "%ld.%lu", dir, base, (long)getpid(), n);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    e = errno;
    if (fd < 0 && e != EEXIST) break;
  }
  const char *what = "create a temporary file next to it";
  int created = fd >= 0;
  if (fd < 0) goto fail;
  what = "write the temporary file";
  for (size_t done = 0; done < len;) {
    ssize_t w = write(fd, (const char *)data + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      goto fail_errno;
    }
    done += (size_t)w;
  }
  what = "sync the temporary file";
  if (fsync(fd) != 0) goto fail_errno;
  what = "close the temporary file";
  {
    int f = fd;
    fd = -1;
    if (close(f) != 0) goto fail_errno;
  }
  what = "rename the temporary file over it";
  if (rename(tmp, path) != 0) goto fail_errno;
  free(tmp);
  nn_status st = sync_dir(dir, path, err);
  free(dir);
  return st;

fail_errno:
  e = errno;
fail:
  if (fd >= 0) close(fd);
  if (created) unlink(tmp);
  free(tmp);
  free(dir);
  return nn_err_set(err, NN_ERR_IO, "%s: cannot write: cannot %s: %s (any previous file is unchanged)", path, what,
                    strerror(e));
}

nn_status nn_file_remove_stale_temps(const char *dir, nn_error *err) {
  DIR *d = opendir(dir);
  if (!d) return nn_err_set(err, NN_ERR_IO, "%s: cannot list directory: %s", dir, strerror(errno));
  struct dirent *de;
  nn_status st = NN_OK;
  long self = (long)getpid();
  while ((de = readdir(d))) {
    long pid;
    if (!nn_file_is_temp_name(de->d_name, &pid)) continue;
    if (pid != self && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) continue; /* a live writer */
    size_t n = strlen(dir) + strlen(de->d_name) + 2;
    char *p = malloc(n);
    if (!p) {
      st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", dir);
      break;
    }
    snprintf(p, n, "%s/%s", dir, de->d_name);
    if (unlink(p) != 0 && errno != ENOENT) st = nn_err_set(err, NN_ERR_IO, "%s: cannot remove stale temporary: %s", p, strerror(errno));
    free(p);
    if (st) break;
  }
  closedir(d);
  return st;
}

nn_status nn_file_make_dirs(const char *dir, nn_error *err) {
  if (!dir || !*dir) return nn_err_set(err, NN_ERR_ARG, "empty directory name");
  char *p = strdup(dir);
  if (!p) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", dir);
  nn_status st = NN_OK;
  /* each prefix ending before a '/' (skipping the root), then the whole path */
  for (char *s = p + 1;; s++) {
    if (*s && *s != '/') continue;
    char c = *s;
    *s = 0;
    struct stat sb;
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
      st = nn_err_set(err, NN_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
    else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
      st = nn_err_set(err, NN_ERR_IO, "%s: not a directory", p);
    *s = c;
    if (st || !c) break;
  }
  free(p);
  return st;
}
