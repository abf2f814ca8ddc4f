/* Replays files through a fuzz target without libFuzzer (any compiler): every file given,
 * or every file in each directory given. The seed corpora and the regressions found by
 * fuzzing run this way in ctest, under the plain and the sanitizer builds. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return fprintf(stderr, "%s: cannot open\n", path), 1;
  size_t cap = 1 << 16, n = 0, got;
  uint8_t *buf = malloc(cap);
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    if ((n += got) < cap) continue;
    uint8_t *grown = realloc(buf, cap *= 2);
    if (!grown) free(buf);
    buf = grown;
  }
  fclose(f);
  if (!buf) return fprintf(stderr, "%s: out of memory\n", path), 1;
  /* an exact-size copy, so ASan sees reads past the input as libFuzzer would */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact) return free(buf), fprintf(stderr, "%s: out of memory\n", path), 1;
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  int files = 0, bad = 0;
  for (int i = 1; i < argc; i++) {
    struct stat sb;
    if (stat(argv[i], &sb) != 0) continue; /* an absent regression directory is empty */
    if (!S_ISDIR(sb.st_mode)) {
      bad |= replay_file(argv[i]), files++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    for (struct dirent *e; d && (e = readdir(d));) {
      if (e->d_name[0] == '.') continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
      bad |= replay_file(p), files++;
    }
    if (d) closedir(d);
  }
  printf("replayed %d inputs\n", files);
  return bad || files == 0;
}
