/* The normnet command line's options (issue 14), run as the binary NN_CLI names on the
 * small IDX files of tu_cli_group_setup: --version and help, one spelling for each option,
 * study progress, refusals of settings that do not go together, learning-rate schedules,
 * early stopping, accumulation, per-class results, JSON lines, the report and the overlay
 * plot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "normnet.h"
#include "cli_run.h"
#include "nn_test.h"

static const char *const dir = tu_cli_dir; /* made by tu_cli_group_setup */

/* Run the CLI with a shell-quoted argument string; capture stdout, stderr, exit status. */
static void run(tu_run_result *r, const char *args) { tu_cli_run(r, dir, "", args); }

/* `train` of small.spec on the good data into DIR/out with the options `extra`; it must succeed. */
static void train_small(tu_run_result *r, const char *out, const char *extra) {
  char args[2048];
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good %s --out %s/%s", dir, dir, extra, dir, out);
  tu_cli_run_ok(r, dir, args, out);
}

/* A failure: non-zero exit, exactly one line on stderr, containing the needles. */
static void expect_error(const char *args, const char *needle1, const char *needle2) {
  tu_cli_expect_error(dir, "", args, needle1, needle2);
}

static void test_help_version_spelling(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  run(&r, "--version");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "normnet 0."));
  run(&r, "help train");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "usage: normnet train"));
  run(&r, "help eval");
  assert_non_null(strstr(r.out, "usage: normnet eval"));
  expect_error("help nonsense", "unknown command 'nonsense'", NULL);
  /* one spelling: study takes --batch/--norm lists as compare does */
  snprintf(args, sizeof args, "study small-batch --model %s/small.spec --data idx:%s/good --norms batch", dir, dir);
  expect_error(args, "--norms is spelled --norm", NULL);
  snprintf(args, sizeof args, "study small-batch --model %s/small.spec --data idx:%s/good --batches 2", dir, dir);
  expect_error(args, "--batches is spelled --batch", NULL);
  /* group:G must divide every normalized layer (4 and 16 channels here); instance needs CxHxW */
  snprintf(args, sizeof args, "summary --model %s/small.spec --norm group:3", dir);
  expect_error(args, "group:3 does not divide the 4 channels of layer 1", "1, 2, 4");
  snprintf(args, sizeof args, "summary --model %s/small.spec --norm instance", dir);
  expect_error(args, "layer 5 (batchnorm)", "CxHxW");
}

static void test_study_progress(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/good --budget 32 --batch 4,16 --norm layer,none "
           "--jobs 1 --out %s/study-progress", /* one after another: the lines in the runs' order */
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "study");
  assert_non_null(strstr(r.out, "[1/4] batch    4  layer"));
  assert_non_null(strstr(r.out, "[4/4] batch   16  none"));
  assert_non_null(strstr(r.out, "left)"));
}

/* ---- issue 14: schedules, early stopping, accumulation, per-class results, report ------------ */
static void test_refusals(void **state) {
  (void)state;
  char args[2048];
  const char *base = "train --model %s/small.spec --data idx:%s/good --epochs 1 --quiet";
  char pre[1024];
  snprintf(pre, sizeof pre, base, dir, dir);
  snprintf(args, sizeof args, "%s --optimizer adam --momentum 0.9 --out %s/ref1", pre, dir);
  expect_error(args, "momentum 0.9 is an SGD setting", "adam");
  snprintf(args, sizeof args, "%s --momentum 0.9 --optimizer adamw --out %s/ref1", pre, dir);
  expect_error(args, "momentum 0.9 is an SGD setting", "adamw");
  snprintf(args, sizeof args, "%s --optimizer adam --nesterov --out %s/ref1", pre, dir);
  expect_error(args, "nesterov", NULL);
  snprintf(args, sizeof args, "%s --freeze-bn --out %s/ref1", pre, dir);
  expect_error(args, "freeze-bn", "--init");
  snprintf(args, sizeof args, "%s --lr-schedule onecycle --warmup 5 --out %s/ref1", pre, dir);
  expect_error(args, "--warmup", "own warm-up");
  snprintf(args, sizeof args, "%s --lr-schedule linear --out %s/ref1", pre, dir);
  expect_error(args, "--lr-schedule", "step:EPOCHS:GAMMA");
  snprintf(args, sizeof args, "%s --early-stop 2:x --out %s/ref1", pre, dir);
  expect_error(args, "--early-stop", "PATIENCE");
  snprintf(args, sizeof args, "%s --accumulate 0 --out %s/ref1", pre, dir);
  expect_error(args, "--accumulate", NULL);
  snprintf(args, sizeof args, "train --model cifar-gap --epochs 1 --out %s/ref1", dir);
  expect_error(args, "--data cifar10:DIR", "cs.toronto.edu");
  /* a denormal input std (every input infinite) is refused at once, exit 2, by train as by
   * eval (train failed in its first step with several lines) */
  tu_run_result r;
  snprintf(args, sizeof args, "%s --input-norm 0.5,1e-45 --out %s/ref1", pre, dir);
  expect_error(args, "--input-norm: ", "the std must be a finite number >= 1e-06");
  run(&r, args);
  assert_int_equal(r.status, 2);
  snprintf(args, sizeof args, "%s --input-norm 0.5,0.5junk --out %s/ref1", pre, dir); /* was read as 0.5,0.5 */
  expect_error(args, "--input-norm: expected MEAN,STD", "0.5junk");
  train_small(&r, "inorm", "--epochs 1 --max-steps 1 --quiet");
  snprintf(args, sizeof args, "eval %s/inorm --input-norm 0.5,1e-45", dir);
  expect_error(args, "--input-norm: ", "the std must be a finite number >= 1e-06");
  run(&r, args);
  assert_int_equal(r.status, 2);
  struct stat sb;
  snprintf(args, sizeof args, "%s/ref1/model.safetensors", dir);
  assert_int_equal(stat(args, &sb), -1); /* nothing was trained */
}

static void test_schedule_early_stop_report(void **state) {
  (void)state;
  char args[2048], path[600], buf[8192];
  tu_run_result r;
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --epochs 4 --batch 16 --lr-schedule step:1:0.5 --warmup 2 "
           "--accumulate 2 --quiet --out %s/sched",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "scheduled run");
  snprintf(path, sizeof path, "%s/sched/history.csv", dir);
  tu_slurp(path, buf, sizeof buf);
  assert_non_null(strstr(buf, ",samples_per_sec,lr\n"));
  /* 96 samples, batch 16, K=2: 3 steps an epoch; epochs start at steps 0, 3, 6, 9: lr 0.001
   * (Adam's default for a spec) times 1/3 (warm-up step 0 of 2) then 0.5^1, 0.5^2, 0.5^3 */
  const char *row = strchr(buf, '\n') + 1;
  double want[4] = {0.001 / 3, 0.0005, 0.00025, 0.000125};
  for (int e = 0; e < 4; e++) {
    const char *lr = NULL;
    const char *eol = strchr(row, '\n');
    for (const char *q = row; q < eol; q++)
      if (*q == ',') lr = q + 1;
    assert_non_null(lr);
    if (fabs(strtod(lr, NULL) - want[e]) > 1e-9) fail_msg("epoch %d: lr %s, want %g", e + 1, lr, want[e]);
    row = eol + 1;
  }
  /* eval: per-class results and JSON */
  snprintf(args, sizeof args, "eval --model %s/sched --out %s/sched --json", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval");
  assert_non_null(strstr(r.out, "\"per_class_accuracy\": ["));
  assert_non_null(strstr(r.out, "\"confusion\": [["));
  snprintf(path, sizeof path, "%s/sched/confusion.png", dir);
  assert_int_equal(access(path, R_OK), 0);
  snprintf(args, sizeof args, "eval --model %s/sched", dir);
  run(&r, args);
  assert_non_null(strstr(r.out, "confusion matrix (rows: true class"));
  /* early stopping with a validation split, then the report and the overlay plot */
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --epochs 30 --batch 8 --lr 0.05 --val-split 0.25 "
           "--early-stop 1 --out %s/early",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "early-stop run");
  assert_null(strstr(r.err, "warning")); /* it watches a validation split */
  /* the final lines name the epoch best.safetensors holds (early stopping's, by loss) */
  snprintf(path, sizeof path, "%s/early/best.safetensors", dir);
  char *best_meta = NULL;
  nn_error err = {0};
  if (nn_checkpoint_meta(path, "normnet.epoch", &best_meta, &err)) fail_msg("%s", err.msg);
  char best_line[128];
  snprintf(best_line, sizeof best_line, "(best: epoch %s, val_loss", best_meta);
  if (!strstr(r.out, best_line)) fail_msg("the final line does not name best.safetensors' epoch %s:\n%s", best_meta, r.out);
  snprintf(best_line, sizeof best_line, "the model holds the weights of epoch %s,", best_meta);
  if (!strstr(r.out, best_line)) fail_msg("the early-stop line does not name epoch %s:\n%s", best_meta, r.out);
  free(best_meta);
  snprintf(path, sizeof path, "%s/early/history.csv", dir);
  tu_slurp(path, buf, sizeof buf);
  assert_non_null(strstr(buf, ",0.05\n")); /* the lr column as given, not 0.0500000007 */
  int rows = 0;
  for (const char *q = buf; *q; q++) rows += *q == '\n';
  assert_true(rows - 1 < 30); /* stopped before the last epoch */
  /* the run is over: a resume (even with more epochs) says why instead of training on */
  snprintf(args, sizeof args, "train --resume %s/early --epochs 40", dir);
  expect_error(args, "early stopping ended the run at epoch", "--init");
  /* without --val-split it watches the test set, and says so; paused by --max-steps and
   * resumed, the final lines speak of the recorded early stopping, not of the resume's
   * command line (which has none) */
  train_small(&r, "early-test", "--epochs 30 --batch 8 --lr 0.05 --early-stop 1:0.001 --max-steps 1");
  assert_non_null(strstr(r.err, "warning: --early-stop watches the test set's loss (no --val-split)"));
  assert_non_null(strstr(r.out, "(paused after batch 1 of "));                      /* a part of epoch 1, said so */
  assert_non_null(strstr(r.out, ", early-stop after 1 epoch without improvement")); /* in the header */
  snprintf(args, sizeof args, "train --resume %s/early-test --max-steps 0", dir);
  tu_cli_run_ok(&r, dir, args, "resumed early-stop run");
  assert_null(strstr(r.err, "warning")); /* said when the run started */
  if (!strstr(r.out, "(best: epoch ") || !strstr(r.out, "(--early-stop 1:0.001)"))
    fail_msg("the resumed run's final lines do not speak of its early stopping:\n%s", r.out);
  /* valid settings that cannot do what they say on this data are trained, with a warning */
  train_small(&r, "warned", "--epochs 1 --batch 8 --warmup 100000 --accumulate 1000 --quiet");
  assert_non_null(strstr(r.err, "warning: --accumulate 1000 is more than the "));
  assert_non_null(strstr(r.err, "warning: --warmup 100000 is not shorter than the run's 1 steps"));
  /* a cosine schedule's length is the run's epochs: a paused run resumes along it, and more
   * epochs are refused (pointing to a new run from it) */
  train_small(&r, "cos", "--epochs 2 --batch 8 --lr-schedule cosine --max-steps 1 --quiet");
  snprintf(args, sizeof args, "train --resume %s/cos --epochs 3 --max-steps 0", dir);
  expect_error(args, "--epochs: the cosine schedule runs over the run's 2 epochs", "(--init ");
  snprintf(args, sizeof args, "train --resume %s/cos --out %s/elsewhere --max-steps 0", dir, dir);
  expect_error(args, "--resume writes into the run it resumes", "drop --out");
  snprintf(args, sizeof args, "train --resume %s/cos --out %s/cos/ --max-steps 0 --quiet", dir, dir); /* the same */
  tu_cli_run_ok(&r, dir, args, "resumed cosine run");
  snprintf(args, sizeof args, "report %s/sched %s/early --out %s/reports/r.html", dir, dir, dir); /* made */
  tu_cli_run_ok(&r, dir, args, "report");
  snprintf(path, sizeof path, "%s/reports/r.html", dir);
  static char html[1 << 20];
  tu_slurp(path, html, sizeof html);
  assert_non_null(strstr(html, "<h2>sched</h2>"));
  assert_non_null(strstr(html, "<h2>early</h2>"));
  /* the early-stopped run says what its model is; each run what it was evaluated on */
  assert_non_null(strstr(html, "Early stopping ended this run after epoch "));
  assert_non_null(strstr(html, "the lowest validation loss."));
  assert_non_null(strstr(html, "<td>validation split</td>"));
  assert_non_null(strstr(html, "<td>test set</td>"));
  assert_non_null(strstr(html, "Results per class"));
  assert_non_null(strstr(html, "<svg"));
  snprintf(args, sizeof args, "plot %s/sched %s/early --out %s/plots/overlay.png", dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "plot");
  snprintf(path, sizeof path, "%s/plots/overlay.png", dir);
  assert_int_equal(access(path, R_OK), 0);
  snprintf(args, sizeof args, "report %s/good", dir);
  expect_error(args, "holds no run", NULL);
  snprintf(args, sizeof args, "plot %s/sched", dir);
  expect_error(args, "--out", NULL);
}

static void test_json_lines_and_predict_classes(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --epochs 2 --batch 32 --norm batch,none --json "
           "--out %s/cmpjson",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "compare --json");
  /* nothing but one JSON object per line: 2 variants x 2 epochs (trained side by side, the
   * default on CTest's two threads: each line written whole) */
  int lines = 0;
  for (const char *p = r.out; *p; p = strchr(p, '\n') + 1) {
    if (strncmp(p, "{\"run\": \"", 9)) fail_msg("not a JSON line: %.80s", p);
    const char *eol = strchr(p, '\n');
    if (!eol || eol[-1] != '}') fail_msg("unterminated JSON line: %.80s", p);
    lines++;
  }
  assert_int_equal(lines, 4);
  char want[1100]; /* each line names its variant and its directory */
  snprintf(want, sizeof want, "{\"run\": \"none\", \"dir\": \"%s/cmpjson/none\", \"epoch\": 2, \"epochs\": 2", dir);
  if (!strstr(r.out, want)) fail_msg("no line %s in:\n%s", want, r.out);
  assert_non_null(strstr(r.out, "\"test_acc\": "));
  char path[600];
  snprintf(path, sizeof path, "%s/cmpjson/report.html", dir);
  assert_int_equal(access(path, R_OK), 0); /* compare writes its report */
  /* predict: --classes must name every output */
  snprintf(args, sizeof args, "predict --model %s/cmpjson/batch --index 0 --classes a,b,c", dir);
  expect_error(args, "--classes names 3 classes but the model has 10 outputs", NULL);
  snprintf(args, sizeof args, "inspect --model %s/cmpjson/batch", dir);
  tu_cli_run_ok(&r, dir, args, "inspect --model");
  assert_non_null(strstr(r.out, "batchnorm"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_lines_and_predict_classes),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_schedule_early_stop_report),
      cmocka_unit_test(test_help_version_spelling),
      cmocka_unit_test(test_study_progress),
  };
  return cmocka_run_group_tests(tests, tu_cli_group_setup, tu_cli_group_teardown);
}
