#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];
static char written[16][512]; /* removed at exit */
static int nwritten;

static void cleanup(void) {
  for (int i = 0; i < nwritten; i++) remove(written[i]);
  rmdir(dir);
}

const char *fz_dir(void) {
  if (!dir[0]) {
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/normnet-fuzz-XXXXXX", stat("/dev/shm", &sb) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) abort();
    atexit(cleanup);
  }
  return dir;
}

static const char *path_of(const char *name) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", fz_dir(), name);
  for (int i = 0; i < nwritten; i++)
    if (!strcmp(written[i], p)) return written[i];
  if (nwritten == 16) abort();
  memcpy(written[nwritten], p, sizeof p);
  return written[nwritten++];
}

const char *fz_write(const char *name, const uint8_t *data, size_t n) {
  const char *p = path_of(name);
  FILE *f = fopen(p, "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) abort();
  return p;
}

const char *fz_write_gz(const char *name, const uint8_t *data, size_t n) {
  const char *p = path_of(name);
  gzFile g = gzopen(p, "wb1");
  if (!g || (n && gzwrite(g, data, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) abort();
  return p;
}

void fz_check_error(nn_status st, const nn_error *err) {
  if (st == NN_OK) return;
  if (!err->msg[0]) {
    fprintf(stderr, "fuzz: status %d without a message\n", st);
    abort();
  }
  for (const char *c = err->msg; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) {
      fprintf(stderr, "fuzz: unescaped byte 0x%02x in message: %s\n", (unsigned char)*c, err->msg);
      abort();
    }
}
