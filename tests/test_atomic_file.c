/* The one atomic writer (nn_file_write_atomic) and stale-temporary removal, through
 * normnet.h: a symlink at the target or at a temporary's name is never followed, a failed
 * write leaves the old file, and only dead writers' temporaries are removed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nn_test.h"

static void jp(char *out, const char *dir, const char *name) { snprintf(out, 1024, "%s/%s", dir, name); }

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = calloc(1, 4096);
  size_t n = fread(b, 1, 4095, f);
  b[n] = 0;
  fclose(f);
  return b;
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static int count_temps(const char *dir) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '\\.tmp\\.'", dir);
  FILE *p = popen(cmd, "r");
  int n = -1;
  if (!p || fscanf(p, "%d", &n) != 1) n = -1;
  if (p) pclose(p);
  return n;
}

static void test_write_replaces(void **state) {
  const char *dir = *state;
  char path[1024];
  nn_error err = {0};
  jp(path, dir, "a.txt");
  assert_int_equal(nn_file_write_atomic(path, "one\n", 4, &err), NN_OK);
  assert_int_equal(nn_file_write_atomic(path, "two!\n", 5, &err), NN_OK);
  char *s = slurp(path);
  assert_string_equal(s, "two!\n");
  free(s);
  assert_int_equal(count_temps(dir), 0);
  /* a failure names the path, leaves the old file and no temporary */
  char bad[1024];
  jp(bad, dir, "no-such-dir/x.txt");
  assert_int_equal(nn_file_write_atomic(bad, "x", 1, &err), NN_ERR_IO);
  assert_int_equal(strncmp(err.msg, bad, strlen(bad)), 0);
  char sub[1024];
  jp(sub, dir, "adir");
  assert_int_equal(mkdir(sub, 0700), 0);
  assert_int_equal(nn_file_write_atomic(sub, "x", 1, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "rename"));
  assert_int_equal(count_temps(dir), 0);
}

/* A symlink planted at the target: replaced by the new file, its target untouched. */
static void test_symlink_target(void **state) {
  const char *dir = *state;
  char victim[1024], link[1024];
  nn_error err = {0};
  jp(victim, dir, "victim.txt");
  jp(link, dir, "spec.txt");
  put(victim, "precious\n");
  assert_int_equal(symlink(victim, link), 0);
  assert_int_equal(nn_file_write_atomic(link, "new\n", 4, &err), NN_OK);
  char *s = slurp(victim);
  assert_string_equal(s, "precious\n");
  free(s);
  struct stat sb;
  assert_int_equal(lstat(link, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));
  s = slurp(link);
  assert_string_equal(s, "new\n");
  free(s);
}

/* Symlinks planted at every temporary name the writer could pick next: it never writes
 * through them (O_EXCL|O_NOFOLLOW) and fails cleanly, victim and target unchanged. */
static void test_symlink_temps(void **state) {
  const char *dir = *state;
  char victim[1024], path[1024], t[1024];
  nn_error err = {0};
  jp(victim, dir, "victim2.txt");
  jp(path, dir, "h.csv");
  put(victim, "precious\n");
  put(path, "old\n");
  /* the writer's counter is process-wide; this process wrote fewer than 50 files so far,
   * so the next 100 names it tries are all taken */
  for (int n = 1; n <= 200; n++) {
    snprintf(t, sizeof t, "%s/.h.csv.tmp.%ld.%d", dir, (long)getpid(), n);
    assert_int_equal(symlink(victim, t), 0);
  }
  nn_status st = nn_file_write_atomic(path, "new\n", 4, &err);
  char *s = slurp(victim);
  assert_string_equal(s, "precious\n");
  free(s);
  assert_int_equal(st, NN_ERR_IO); /* it gives up after 100 taken names */
  s = slurp(path);
  assert_string_equal(s, "old\n");
  free(s);
  /* our own PID's leftovers are stale for us: all removed */
  assert_int_equal(nn_file_remove_stale_temps(dir, &err), NN_OK);
  assert_int_equal(count_temps(dir), 0);
}

static void test_stale_removal(void **state) {
  const char *dir = *state;
  char p[1024];
  nn_error err = {0};
  jp(p, dir, ".model.safetensors.tmp.999999999.3"); /* above any PID: a dead writer */
  put(p, "x");
  jp(p, dir, ".history.csv.tmp.1.7"); /* PID 1 is alive: a writer in progress */
  put(p, "x");
  jp(p, dir, "notes.tmp.5.5"); /* not one of ours (no leading dot) */
  put(p, "x");
  jp(p, dir, ".x.tmp.12ab.1"); /* not one of ours (PID not a number) */
  put(p, "x");
  assert_int_equal(count_temps(dir), 4);
  assert_int_equal(nn_file_remove_stale_temps(dir, &err), NN_OK);
  assert_int_equal(count_temps(dir), 3);
  jp(p, dir, ".model.safetensors.tmp.999999999.3");
  assert_int_equal(access(p, F_OK), -1);
  jp(p, dir, ".history.csv.tmp.1.7");
  assert_int_equal(access(p, F_OK), 0);
  jp(p, dir, "no-such-dir");
  assert_int_equal(nn_file_remove_stale_temps(p, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "no-such-dir"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_replaces),
      cmocka_unit_test(test_symlink_target),
      cmocka_unit_test(test_symlink_temps),
      cmocka_unit_test(test_stale_removal),
  };
  return cmocka_run_group_tests(tests, tu_setup_tempdir, tu_teardown_tempdir);
}
