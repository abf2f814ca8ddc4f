/* compare and study over an output directory that already holds runs, run as the binary
 * NN_CLI names on the small IDX files of tu_cli_group_setup: the report covers the runs of
 * this invocation only (it took every run in the directory), study refuses a run already in
 * its directory unless --overwrite as compare does (it retrained over it), a usage error
 * leaves no directory behind (a variant checked before a later one failed left its empty
 * directory), and compare names the directory of a variant written with '@'. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "normnet.h"
#include "cli_run.h"
#include "nn_test.h"

static const char *const dir = tu_cli_dir; /* made by tu_cli_group_setup */

/* DIR/rel exists (file or directory) */
static int exists(const char *rel) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  return access(path, F_OK) == 0;
}

/* "compare|study small-batch ARGS" on small.spec and the good data, extra options after */
static void cli(char *args, size_t len, const char *cmd, const char *extra) {
  snprintf(args, len, "%s --model %s/small.spec --data idx:%s/good --threads 1 %s", cmd, dir, dir, extra);
}

/* report.html covers the variants of this invocation, not every run in the directory */
static void test_report_covers_this_invocation(void **state) {
  (void)state;
  /* each pair trains into one directory twice; the second report holds its own runs only */
  static const struct {
    const char *cmd, *opts, *reported;
  } runs[] = {
      {"compare", "--norm batch,none --max-steps 2 --quiet --out %s/rep-cmp", "report.html (2 runs)"},
      {"compare", "--norm layer --max-steps 2 --quiet --out %s/rep-cmp", "report.html (1 run)"},
      {"study small-batch", "--budget 32 --batch 4,16 --norm batch,none --out %s/rep-study", "report.html (4 runs)"},
      {"study small-batch", "--budget 32 --batch 8 --norm batch --out %s/rep-study", "report.html (1 run)"},
  };
  char args[2048], extra[1024];
  tu_run_result r;
  for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
    snprintf(extra, sizeof extra, runs[i].opts, dir);
    cli(args, sizeof args, runs[i].cmd, extra);
    tu_cli_run_ok(&r, dir, args, runs[i].cmd);
    if (!strstr(r.out, runs[i].reported)) fail_msg("'%s': expected '%s' in:\n%s", args, runs[i].reported, r.out);
  }
  /* compare's one variant is labelled by its normalization, as in a directory of runs */
  char p[1024], html[65536];
  snprintf(p, sizeof p, "%s/rep-cmp/report.html", dir);
  tu_slurp(p, html, sizeof html);
  if (!strstr(html, "<h2>LayerNorm</h2>")) fail_msg("the compare report lacks the heading LayerNorm");
}

/* study refuses a run already in its directory, as compare does, and --overwrite replaces it */
static void test_study_refuses_existing_runs(void **state) {
  (void)state;
  char args[2048], extra[1024];
  tu_run_result r;
  snprintf(extra, sizeof extra, "--budget 32 --batch 16 --norm batch --out %s/again", dir);
  cli(args, sizeof args, "study small-batch", extra);
  tu_cli_run_ok(&r, dir, args, "study");
  /* the second run (batch 16) is the one in the way: refused before the first trains */
  snprintf(extra, sizeof extra, "--budget 32 --batch 4,16 --norm batch --out %s/again", dir);
  cli(args, sizeof args, "study small-batch", extra);
  tu_cli_expect_error(dir, "", args, "again/b16-batch already holds a run", "--overwrite");
  tu_cli_run(&r, dir, "", args);
  assert_null(strstr(r.out, "small-batch study:")); /* nothing trained */
  assert_false(exists("again/b4-batch"));
  snprintf(extra, sizeof extra, "--budget 32 --batch 4,16 --norm batch --overwrite --out %s/again", dir);
  cli(args, sizeof args, "study small-batch", extra);
  tu_cli_run_ok(&r, dir, args, "study --overwrite");
  assert_true(exists("again/b4-batch/model.safetensors"));
}

/* usage and validation errors are found before anything is created */
static void test_usage_errors_leave_nothing(void **state) {
  (void)state;
  char args[2048], extra[1024];
  tu_run_result r;
  /* each refused before its directory (left1, ...) is made: a bad second variant, a group
   * count (3) that does not divide small.spec's 4 channels, a bad training option, a
   * variant given twice in study (as in compare) */
  static const struct {
    const char *cmd, *opts, *needle1, *needle2;
  } cases[] = {
      {"compare", "--norm none,foo --max-steps 2", "unknown normalization 'foo'", NULL},
      {"compare", "--norm batch,group:3 --max-steps 2", "group:3", "divide"},
      {"study small-batch", "--budget 32 --batch 4 --norm group:3", "group:3", "divide"},
      {"study small-batch", "--budget 32 --batch 4,16 --norm batch,none --lr -1", "--lr", NULL},
      {"study small-batch", "--budget 32 --batch 4,04 --norm batch", "b4-batch", "given twice"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char left[32];
    snprintf(left, sizeof left, "left%zu", i + 1);
    snprintf(extra, sizeof extra, "%s --out %s/%s", cases[i].opts, dir, left);
    cli(args, sizeof args, cases[i].cmd, extra);
    tu_cli_expect_error(dir, "", args, cases[i].needle1, cases[i].needle2);
    assert_false(exists(left));
  }
  /* a run in the way of the second variant: the first variant's directory is not made */
  snprintf(extra, sizeof extra, "--norm none --max-steps 2 --quiet --no-report --out %s/left6", dir);
  cli(args, sizeof args, "compare", extra);
  tu_cli_run_ok(&r, dir, args, "compare none");
  snprintf(extra, sizeof extra, "--norm batch,none --max-steps 2 --quiet --out %s/left6", dir);
  cli(args, sizeof args, "compare", extra);
  tu_cli_expect_error(dir, "", args, "left6/none already holds a run", "--overwrite");
  assert_false(exists("left6/batch"));
  /* study sync-bn (one process: no mpirun) */
  snprintf(extra, sizeof extra, "--procs 1 --max-steps 2 --lr -1 --out %s/left7", dir);
  cli(args, sizeof args, "study sync-bn", extra);
  tu_cli_expect_error(dir, "", args, "--lr", NULL);
  assert_false(exists("left7"));
  snprintf(extra, sizeof extra, "--procs 1 --max-steps 2 --out %s/left8", dir);
  cli(args, sizeof args, "study sync-bn", extra);
  tu_cli_run_ok(&r, dir, args, "study sync-bn --procs 1");
  tu_cli_expect_error(dir, "", args, "left8/k1-on already holds a run", "--overwrite");
  snprintf(extra, sizeof extra, "--procs 1 --max-steps 2 --overwrite --out %s/left8", dir);
  cli(args, sizeof args, "study sync-bn", extra);
  tu_cli_run_ok(&r, dir, args, "study sync-bn --overwrite");
}

/* a variant written with '@' (or ':') trains in DIR/batch-after: the help and the summary say so */
static void test_variant_directory_named(void **state) {
  (void)state;
  char args[2048], extra[1024], want[512];
  tu_run_result r;
  snprintf(extra, sizeof extra, "--norm batch,batch@after --max-steps 2 --no-report --out %s/at", dir);
  cli(args, sizeof args, "compare", extra);
  tu_cli_run_ok(&r, dir, args, "compare batch,batch@after");
  assert_true(exists("at/batch-after/model.safetensors"));
  snprintf(want, sizeof want, "%s/at/batch-after\n", dir);
  if (!strstr(r.out, want)) fail_msg("the summary does not name %s:\n%s", want, r.out);
  tu_cli_run_ok(&r, dir, "compare --help", "compare --help");
  assert_non_null(strstr(r.out, "DIR/batch-after/"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_report_covers_this_invocation),
      cmocka_unit_test(test_study_refuses_existing_runs),
      cmocka_unit_test(test_usage_errors_leave_nothing),
      cmocka_unit_test(test_variant_directory_named),
  };
  return cmocka_run_group_tests(tests, tu_cli_group_setup, tu_cli_group_teardown);
}
