/* The HTML report (src/report/html.c):
 * - the page holds every section (curves as inline SVG with real <text>, summary for several
 *   runs, history, per-class table with the confusion counts, normalization layers, recipe,
 *   spec), with every string HTML-escaped and no script or external resource;
 * - opened in headless Chromium it renders (the DOM has the SVG plots and the tables), logs
 *   no console message, and a screenshot is drawn;
 * - `normnet report` heads each run with the label `normnet plot` gives it, distinct among
 *   the runs (a/batch and b/batch; cmp1/with BN and cmp2/with BN). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli_run.h"
#include "nn_test.h"
#include "normnet_plot.h"

static nn_history *make_history(double shift) {
  nn_history *h = nn_history_create();
  assert_non_null(h);
  for (int e = 1; e <= 4; e++) {
    nn_epoch_record r = {e, 1.0 / e + shift, 0.5 + 0.1 * e - shift, 1.1 / e + shift, 0.45 + 0.1 * e - shift, 1.5, 40000, 0.1 / e};
    nn_error err = {0};
    assert_int_equal(nn_history_append(h, &r, &err), NN_OK);
  }
  return h;
}

/* A paused run's last row is part of an epoch: marked, and no candidate for the best one
 * (make_history's accuracy rises to epoch 4, the part). */
static void test_partial_row_not_best(void **state) {
  (void)state;
  nn_history *h = make_history(0), *one = nn_history_create();
  nn_error err = {0};
  assert_non_null(one);
  assert_int_equal(nn_history_append(one, nn_history_get(h, 0), &err), NN_OK);
  const struct {
    const nn_history *h;
    int partial;
    const char *summary, *row;
  } cases[] = {
      {h, 0, "<td>4</td><td>0.8500</td><td>4</td>", "<tr><td>4</td>"},
      {h, 1, "<td>3 and part of one</td><td>0.7500</td><td>3</td>", "<tr><td>4 (paused inside)</td>"},
      {one, 1, "<td>0 and part of one</td><td>-</td><td>-</td>", "<tr><td>1 (paused inside)</td>"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nn_report_run run = {.name = "paused", .history = cases[i].h, .partial_last = cases[i].partial};
    char *html = NULL;
    assert_int_equal(nn_report_html("paused", &run, 1, &html, &err), NN_OK);
    if (!strstr(html, cases[i].summary) || !strstr(html, cases[i].row))
      fail_msg("case %zu: expected '%s' and '%s' in the page", i, cases[i].summary, cases[i].row);
    free(html);
  }
  nn_history_free(h);
  nn_history_free(one);
}

static void count_text(const char *html, const char *needle, int *n) {
  *n = 0;
  for (const char *p = strstr(html, needle); p; p = strstr(p + 1, needle)) (*n)++;
}

static int sh(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = 0;
  fclose(f);
  return b;
}

static void test_report_in_chromium(void **state) {
  const char *dir = *state;
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  const char *spec_text = "input shape=1x4x4\nconv2d filters=3 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=3\n";
  assert_int_equal(nn_spec_parse(spec_text, "r", &spec, &err), NN_OK);
  assert_int_equal(nn_model_create(spec, &m, &err), NN_OK);
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  long counts[9] = {30, 2, 1, 3, 25, 4, 0, 5, 30};
  nn_confusion cm = {3, counts, 100, 0.5, 0.85};
  const char *names[3] = {"cat", "dog <&>", "bird"};
  nn_history *h1 = make_history(0), *h2 = make_history(0.2);
  nn_report_run runs[2] = {
      {"with BN", "runs/x/batch", h1, "optimizer sgd\nlr 0.1\nbatch 128\n", spec_text, m, &cm, names, 3,
       "stopped early <at> epoch 4", 0},
      {"without BN", "runs/x/none", h2, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0},
  };
  char *html = NULL;
  assert_int_equal(nn_report_html("compare <lenet> & more", runs, 2, &html, &err), NN_OK);
  int n;
  count_text(html, "<svg", &n);
  assert_true(n >= 1);
  assert_non_null(strstr(html, "<title>compare &lt;lenet&gt; &amp; more</title>"));
  assert_non_null(strstr(html, ">with BN</text>"));                                  /* legend text inside the inline SVG */
  assert_non_null(strstr(html, ">Learning rate (first step of each epoch)</text>")); /* lr changes: a panel */
  assert_non_null(strstr(html, "<td>0.025</td>"));                                   /* epoch 4's lr */
  assert_non_null(strstr(html, "<h2>Summary</h2>"));
  assert_non_null(strstr(html, "<p class=\"note\">stopped early &lt;at&gt; epoch 4</p>")); /* the note, escaped */
  assert_non_null(strstr(html, "<td>test set</td>"));                                      /* what the eval columns measured */
  assert_non_null(strstr(html, "<th>test loss</th><th>test acc</th>"));
  assert_non_null(strstr(html, "dog &lt;&amp;&gt;"));
  assert_null(strstr(html, "dog <&>"));
  assert_non_null(strstr(html, ">25</td>"));
  assert_non_null(strstr(html, "Normalization layers"));
  assert_non_null(strstr(html, "running_var"));
  assert_non_null(strstr(html, "<th class=\"l\">lr</th><td class=\"l\">0.1</td>"));
  assert_non_null(strstr(html, "conv2d filters=3 kernel=3"));
  assert_null(strstr(html, "<script"));
  assert_null(strstr(html, "<link")); /* nothing external: no stylesheet, image or font to fetch */
  assert_null(strstr(html, "src="));
  assert_null(strstr(html, "url(http"));
  assert_null(strstr(html, "<?xml"));

  char path[512], cmd[2048];
  snprintf(path, sizeof path, "%s/report.html", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(html, f);
  assert_int_equal(fclose(f), 0);
  const char *flags = "--headless --no-sandbox --disable-gpu --no-first-run --enable-logging=stderr --v=0";
  snprintf(cmd, sizeof cmd,
           "timeout 120 chromium %s --user-data-dir='%s/profile' --dump-dom 'file://%s' >'%s/dom.html' 2>'%s/log.txt'",
           flags, dir, path, dir, dir);
  assert_int_equal(sh(cmd), 0);
  snprintf(cmd, sizeof cmd,
           "timeout 120 chromium %s --user-data-dir='%s/profile' --window-size=1280,2000 --screenshot='%s/shot.png' "
           "'file://%s' >/dev/null 2>>'%s/log.txt'",
           flags, dir, dir, path, dir);
  assert_int_equal(sh(cmd), 0);
  snprintf(path, sizeof path, "%s/dom.html", dir);
  char *dom = slurp(path);
  assert_non_null(dom);
  count_text(dom, "<svg", &n);
  assert_true(n >= 1);
  assert_non_null(strstr(dom, "<table class=\"cm\">"));
  assert_non_null(strstr(dom, "Results per class"));
  free(dom);
  snprintf(path, sizeof path, "%s/log.txt", dir);
  char *log = slurp(path);
  assert_non_null(log);
  if (strstr(log, ":CONSOLE")) fail_msg("the page logged to the console:\n%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/shot.png", dir);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_true(sb.st_size > 20000); /* a page with plots and tables, not a blank one */
  free(html);
  nn_history_free(h1);
  nn_history_free(h2);
  nn_model_free(m);
  nn_spec_free(spec);
}

static void test_refusals(void **state) {
  (void)state;
  char *html = (char *)1;
  nn_error err = {0};
  assert_int_equal(nn_report_html("t", NULL, 0, &html, &err), NN_ERR_ARG);
  assert_null(html);
}

/* `normnet report RUNS --no-eval` (the binary NN_CLI names) into html (at most len bytes). */
static void cli_report(const char *runs, char *html, size_t len) {
  char args[2048], path[512];
  tu_run_result r;
  snprintf(args, sizeof args, "report %s --no-eval --out %s/r.html", runs, tu_cli_dir);
  tu_cli_run_ok(&r, tu_cli_dir, args, args);
  snprintf(path, sizeof path, "%s/r.html", tu_cli_dir);
  tu_slurp(path, html, len);
}

static void expect_headings(const char *runs, const char *const *labels, int n, const char *absent) {
  static char html[1 << 20];
  char text[300];
  cli_report(runs, html, sizeof html);
  for (int i = 0; i < n; i++) {
    snprintf(text, sizeof text, "<h2>%s</h2>", labels[i]);
    if (!strstr(html, text)) fail_msg("report %s: no heading '%s'", runs, labels[i]);
  }
  if (absent && strstr(html, absent)) fail_msg("report %s: the page has '%s'", runs, absent);
}

static void test_cli_distinct_headings(void **state) {
  (void)state;
  const char *d = tu_cli_dir;
  char args[2048], runs[1024];
  tu_run_result r;
  static const char *const outs[] = {"a/batch", "b/batch"};
  for (int i = 0; i < 2; i++) {
    snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --max-steps 2 --threads 1 --quiet --out %s/%s",
             d, d, d, outs[i]);
    tu_cli_run_ok(&r, d, args, outs[i]);
    snprintf(args, sizeof args,
             "compare --model %s/small.spec --data idx:%s/good --max-steps 2 --threads 1 --jobs 1 --quiet --no-report "
             "--out %s/cmp%d",
             d, d, d, i + 1);
    tu_cli_run_ok(&r, d, args, "compare");
  }
  snprintf(runs, sizeof runs, "%s/a/batch %s/b/batch", d, d);
  expect_headings(runs, (const char *[]){"a/batch", "b/batch"}, 2, "<h2>batch</h2>");
  snprintf(runs, sizeof runs, "%s/cmp1 %s/cmp2", d, d);
  expect_headings(runs, (const char *[]){"cmp1/with BN", "cmp1/without BN", "cmp2/with BN", "cmp2/without BN"}, 4,
                  "<h2>with BN</h2>");
  /* no collision: the labels as they were */
  snprintf(runs, sizeof runs, "%s/cmp1", d);
  expect_headings(runs, (const char *[]){"with BN", "without BN"}, 2, "<h2>cmp1/");
  snprintf(runs, sizeof runs, "%s/cmp1 %s/a/batch", d, d);
  expect_headings(runs, (const char *[]){"with BN", "without BN", "batch"}, 3, "<h2>a/batch</h2>");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_report_in_chromium),
      cmocka_unit_test(test_partial_row_not_best),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test_setup_teardown(test_cli_distinct_headings, tu_cli_group_setup, tu_cli_group_teardown),
  };
  return cmocka_run_group_tests(tests, tu_setup_tempdir, tu_teardown_tempdir);
}
