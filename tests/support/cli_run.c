#include "cli_run.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

void tu_slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, len - 1, f) : 0;
  buf[n] = 0;
  if (f) fclose(f);
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
