#include "cli_run.h"
#include "nn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

void tu_slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, len - 1, f) : 0;
  buf[n] = 0;
  if (f) fclose(f);
}

unsigned char *tu_read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  unsigned char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  buf[n] = 0;
  *size = (size_t)n;
  return buf;
}

void tu_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) fail_msg("cannot write %s", path);
}

void tu_cli_run(tu_run_result *r, const char *dir, const char *prefix, const char *args) {
  const char *cli = getenv("NN_CLI");
  if (!cli) fail_msg("NN_CLI is not set (ctest sets it to the normnet binary)");
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%s '%s' %s >'%s/out.txt' 2>'%s/err.txt' </dev/null", prefix, cli, args, dir, dir);
  int st = system(cmd);
  /* sh reports a child killed by signal s as exit status 128 + s */
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  char p[4200];
  snprintf(p, sizeof p, "%s/out.txt", dir);
  tu_slurp(p, r->out, sizeof r->out);
  snprintf(p, sizeof p, "%s/err.txt", dir);
  tu_slurp(p, r->err, sizeof r->err);
}

void tu_cli_expect_error(const char *dir, const char *prefix, const char *args, const char *needle1,
                         const char *needle2) {
  tu_run_result r;
  tu_cli_run(&r, dir, prefix, args);
  if (r.status == 0) fail_msg("'%s' succeeded; stderr: %s", args, r.err);
  if (r.status > 2) fail_msg("'%s': exit status %d (a signal or crash); stderr: %s", args, r.status, r.err);
  const char *nl = strchr(r.err, '\n');
  if (!nl || nl[1] != 0) fail_msg("'%s': expected one line on stderr, got:\n%s", args, r.err);
  if (needle1 && !strstr(r.err, needle1)) fail_msg("'%s': stderr lacks '%s':\n%s", args, needle1, r.err);
  if (needle2 && !strstr(r.err, needle2)) fail_msg("'%s': stderr lacks '%s':\n%s", args, needle2, r.err);
}

void tu_cli_write_idx(const char *dir, const char *sub, const char *prefix, tu_idx_opts o) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  mkdir(path, 0777);
  size_t isz = 16 + (size_t)o.n * 64;
  uint8_t *img = calloc(1, isz), *lab = calloc(1, 8 + (size_t)o.nlabels);
  assert_non_null(img);
  assert_non_null(lab);
  tu_put_be32(img, o.bad_magic ? 0x00000804u : 0x00000803u);
  tu_put_be32(img + 4, (uint32_t)o.n);
  tu_put_be32(img + 8, 8);
  tu_put_be32(img + 12, 8);
  for (int i = 0; i < o.n; i++)
    for (int j = 0; j < 64; j++) img[16 + i * 64 + j] = (uint8_t)(j / 8 == i % 8 ? 200 + (i * 7 + j) % 50 : (i * 13 + j * 5) % 40);
  tu_put_be32(lab, 0x00000801u);
  tu_put_be32(lab + 4, (uint32_t)o.nlabels);
  for (int i = 0; i < o.nlabels; i++) lab[8 + i] = (uint8_t)(i % 8);
  if (o.label_bump) lab[8 + o.nlabels - 1] = 12;
  snprintf(path, sizeof path, "%s/%s/%s-images-idx3-ubyte", dir, sub, prefix);
  tu_write_file(path, img, isz - (size_t)o.truncate);
  snprintf(path, sizeof path, "%s/%s/%s-labels-idx1-ubyte", dir, sub, prefix);
  tu_write_file(path, lab, 8 + (size_t)o.nlabels);
  free(img);
  free(lab);
}

char tu_cli_dir[256];

int tu_cli_group_setup(void **state) {
  (void)state;
  char *dir = tu_cli_dir;
  static const char spec_small[] =
      "# small BN net for 8x8 inputs\n"
      "input shape=1x8x8\n"
      "conv2d filters=4 kernel=3\n"
      "batchnorm\n"
      "relu\n"
      "flatten\n"
      "dense units=16\n"
      "batchnorm\n"
      "relu\n"
      "dense units=10\n";
  snprintf(dir, sizeof tu_cli_dir, "/tmp/normnet-cli-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  tu_cli_write_idx(dir, "good", "train", (tu_idx_opts){.n = 96, .nlabels = 96});
  tu_cli_write_idx(dir, "good", "t10k", (tu_idx_opts){.n = 40, .nlabels = 40});
  char path[512];
  snprintf(path, sizeof path, "%s/small.spec", dir);
  tu_write_file(path, spec_small, strlen(spec_small));
  return 0;
}

int tu_cli_group_teardown(void **state) {
  (void)state;
  tu_rmtree(tu_cli_dir);
  return 0;
}

void tu_cli_run_ok(tu_run_result *r, const char *dir, const char *args, const char *what) {
  tu_cli_run(r, dir, "", args);
  if (r->status) fail_msg("%s failed (exit %d): %s", what, r->status, r->err);
}
