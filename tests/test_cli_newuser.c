/* What a new user following the README trips on, run as the binary NN_CLI names on the small
 * IDX files of tu_cli_group_setup: --out paths whose parents do not exist yet (the README's
 * runs/bn on a fresh checkout), recalibrate's report of the data it used, and the --resume
 * message when the step limit, not the epoch count, holds, the val_ labels with --val-split,
 * eval --json --out printing JSON alone, a misspelled --norm or command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "normnet.h"
#include "cli_run.h"
#include "nn_test.h"

static const char *const dir = tu_cli_dir; /* made by tu_cli_group_setup */

static void run(tu_run_result *r, const char *args) { tu_cli_run(r, dir, "", args); }

/* A short training of small.spec into DIR/out (extra: more options); fails the test if it fails. */
static void train_small(const char *out, const char *extra) {
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --quiet %s --out %s/%s", dir, dir, extra,
           dir, out);
  run(&r, args);
  if (r.status) fail_msg("train --out %s failed: %s", out, r.err);
}

static int is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Run args (fails the test, naming `what`, unless it exits 0), then check that it made
 * DIR/made, a regular file. */
static void run_ok_made(const char *args, const char *what, const char *made) {
  tu_run_result r;
  tu_cli_run_ok(&r, dir, args, what);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, made);
  if (!is_file(path)) fail_msg("%s exited 0 but did not make %s", what, path);
}

/* A run copied from the machine that trained it, without its data: plot and report
 * --no-eval need none and work; the report's results per class do, and the error says so
 * and names the way around it. */
static void test_run_without_its_data(void **state) {
  (void)state;
  char args[2048], path[512], away[512];
  tu_run_result r;
  tu_cli_write_idx(dir, "gone", "train", (tu_idx_opts){.n = 96, .nlabels = 96});
  tu_cli_write_idx(dir, "gone", "t10k", (tu_idx_opts){.n = 40, .nlabels = 40});
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/gone --max-steps 2 --quiet --out %s/copied-run",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "train");
  snprintf(path, sizeof path, "%s/gone", dir);
  snprintf(away, sizeof away, "%s/gone-away", dir);
  assert_int_equal(rename(path, away), 0);
  snprintf(args, sizeof args, "plot %s/copied-run --out %s/copied-run.png", dir, dir);
  run_ok_made(args, "plot of a run without its data", "copied-run.png");
  snprintf(args, sizeof args, "report %s/copied-run --no-eval --out %s/copied-run.html", dir, dir);
  run_ok_made(args, "report --no-eval of a run without its data", "copied-run.html");
  snprintf(args, sizeof args, "report %s/copied-run --out %s/copied-run2.html", dir, dir);
  run(&r, args);
  assert_int_equal(r.status, 1);
  assert_non_null(strstr(r.err, "/gone"));
  assert_non_null(strstr(r.err, "--no-eval"));
  snprintf(path, sizeof path, "%s/copied-run2.html", dir);
  assert_false(is_file(path));
}

/* train/compare/eval --out create the missing parents, as the README's `--out runs/bn` needs
 * on a checkout without runs/; a file in the way is one error line naming it. */
static void test_out_parents(void **state) {
  (void)state;
  char args[2048], path[512];
  train_small("new/runs/bn", "--max-steps 2");
  snprintf(path, sizeof path, "%s/new/runs/bn/model.safetensors", dir);
  assert_true(is_file(path));
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --max-steps 2 --quiet --no-report --out %s/new2/cmp", dir,
           dir, dir);
  run_ok_made(args, "compare --out new2/cmp", "new2/cmp/none/model.safetensors");
  snprintf(args, sizeof args, "eval --model %s/new/runs/bn --out %s/new3/eval", dir, dir);
  run_ok_made(args, "eval --out new3/eval", "new3/eval/confusion.png");
  /* a regular file where a parent should be */
  snprintf(path, sizeof path, "%s/afile", dir);
  tu_write_file(path, "x", 1);
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --max-steps 2 --quiet --out %s/afile/bn",
           dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "afile", "not a directory");
}

/* recalibrate names the data it used (it printed freed memory there); it takes --threads as
 * eval and report do */
static void test_recalibrate_names_data(void **state) {
  (void)state;
  char args[2048], want[512];
  tu_run_result r;
  train_small("rc", "--max-steps 3");
  snprintf(args, sizeof args, "recalibrate --model %s/rc --batches 2 --batch 16 --threads 1 --out %s/rc.safetensors", dir,
           dir);
  tu_cli_run_ok(&r, dir, args, "recalibrate");
  snprintf(want, sizeof want, " from idx:%s/good (recorded in the model): ", dir);
  if (!strstr(r.out, want)) fail_msg("expected '%s' in: %s", want, r.out);
}

/* --resume of a run stopped by --max-steps: a larger --epochs does not lift the step limit, and
 * the message says so instead of asking for --epochs */
static void test_resume_step_limit_message(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  train_small("msl", "--batch 16 --epochs 1 --max-steps 3");
  snprintf(args, sizeof args, "train --resume %s/msl --epochs 3 --quiet", dir);
  tu_cli_expect_error(dir, "", args, "has taken its --max-steps 3 steps", "larger --max-steps N (0: no step limit)");
  snprintf(args, sizeof args, "train --resume %s/msl --max-steps 0 --quiet", dir);
  run(&r, args);
  if (r.status) fail_msg("--max-steps 0 did not lift the limit: %s", r.err);
  snprintf(args, sizeof args, "train --resume %s/msl --max-steps 0 --quiet", dir);
  tu_cli_expect_error(dir, "", args, "has trained its --epochs 1", "larger --epochs N");
  train_small("msl2", "--batch 16 --epochs 2");
  snprintf(args, sizeof args, "train --resume %s/msl2 --epochs 1 --quiet", dir); /* fewer than trained */
  tu_cli_expect_error(dir, "", args, "has trained 2 epochs, more than --epochs 1", "--epochs N above 2");
}

/* with --val-split every printed figure is a validation one: the per-epoch line, the final line
 * (it said test_loss= per epoch while history.csv and the final line said val_) */
static void test_val_split_labels(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --batch 16 --epochs 1 --val-split 0.25 --out %s/vs", dir, dir,
           dir);
  tu_cli_run_ok(&r, dir, args, "train --val-split");
  if (!strstr(r.out, "epoch 1/1 train_loss=") || !strstr(r.out, " val_loss=") || !strstr(r.out, " val_acc=") ||
      strstr(r.out, "test_"))
    fail_msg("expected only val_ figures in: %s", r.out);
  assert_non_null(strstr(r.out, "1 epoch, seed"));
  assert_non_null(strstr(r.out, "(best val_acc "));
  /* eval --split val evaluates the same held-out part: the run's own val_loss and val_acc */
  const char *vl = strstr(r.out, " val_loss="), *va = strstr(r.out, " val_acc=");
  double want_loss = atof(vl + 10), want_acc = atof(va + 9);
  snprintf(args, sizeof args, "eval %s/vs --split val --json", dir);
  tu_cli_run_ok(&r, dir, args, "eval --split val");
  const char *gl = strstr(r.out, "\"loss\": "), *ga = strstr(r.out, "\"accuracy\": ");
  assert_non_null(gl);
  assert_non_null(ga);
  assert_true(fabs(atof(gl + 8) - want_loss) < 1e-4);
  assert_true(fabs(atof(ga + 12) - want_acc) < 1e-4);
  assert_non_null(strstr(r.out, "\"samples\": 24,")); /* a quarter of the 96 images */
  /* a checkpoint inside the run (best.safetensors, early stopping's result) is evaluated on
   * the run's validation split too (it was refused: "needs the run directory") */
  snprintf(args, sizeof args, "eval %s/vs/best.safetensors --split val --json", dir);
  tu_cli_run_ok(&r, dir, args, "eval best.safetensors --split val");
  assert_non_null(strstr(r.out, "\"samples\": 24,"));
  ga = strstr(r.out, "\"accuracy\": ");
  assert_non_null(ga);
  assert_true(fabs(atof(ga + 12) - want_acc) < 1e-4); /* one epoch: the best is the last */
  char from[1024], to[1024];                          /* the same file in a directory that is no run */
  snprintf(from, sizeof from, "%s/vs/best.safetensors", dir);
  snprintf(to, sizeof to, "%s/notrun", dir);
  mkdir(to, 0777);
  snprintf(to, sizeof to, "%s/notrun/best.safetensors", dir);
  size_t len = 0;
  unsigned char *bytes = tu_read_file(from, &len);
  tu_write_file(to, bytes, len);
  free(bytes);
  snprintf(args, sizeof args, "eval %s --split val", to);
  tu_cli_expect_error(dir, "", args, "notrun: not a run directory", NULL);
  snprintf(args, sizeof args, "eval %s/vs --split val --data idx:%s/good", dir, dir);
  tu_cli_expect_error(dir, "", args, "--data cannot change it", NULL);
}

/* eval --json --out DIR: stdout is the JSON object alone (a "wrote" line came before it) */
static void test_eval_json_out(void **state) {
  (void)state;
  char args[2048], path[512];
  tu_run_result r;
  train_small("ej", "--max-steps 2");
  snprintf(args, sizeof args, "eval --model %s/ej --json --out %s/ej-eval", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval --json --out");
  if (r.out[0] != '{' || strchr(r.out, '\n') != r.out + strlen(r.out) - 1)
    fail_msg("expected one JSON line, got: %s", r.out);
  snprintf(path, sizeof path, "%s/ej-eval/confusion.png", dir);
  assert_true(is_file(path));
}

/* a misspelled --norm is a usage error naming the flag, refused before any data is read, as
 * other bad values are (it was "norm batchh: ...", exit 1, after loading the data) */
static void test_norm_spelling(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --norm batchh --out %s/nb", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--norm: unknown normalization 'batchh'", "group:G");
  run(&r, args);
  assert_int_equal(r.status, 2);
  snprintf(args, sizeof args, "compare --model %s/small.spec --data idx:%s/good --norm batch,batch@sideways --out %s/nb2",
           dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--norm: unknown BN placement 'sideways'", NULL);
  run(&r, args);
  assert_int_equal(r.status, 2);
}

/* a mistyped command is one error line listing the commands (it printed the whole usage),
 * with the closest one; an escape sequence in it reaches the terminal as text */
static void test_unknown_command(void **state) {
  (void)state;
  tu_cli_expect_error(dir, "", "trian --model lenet", "unknown command 'trian'; did you mean 'train'?",
                      "train, compare, eval");
  tu_cli_expect_error(dir, "", "help summry", "unknown command 'summry'; did you mean 'summary'?", NULL);
  tu_cli_expect_error(dir, "", "xyzzy", "unknown command 'xyzzy' (commands:", NULL);
  tu_run_result r;
  tu_cli_run(&r, dir, "", "'\033[31mred'");
  assert_non_null(strstr(r.err, "unknown command '\\x1b[31mred'"));
  assert_null(strchr(r.err, '\033'));
}

/* A model argument that names nothing: the message names the option the user typed (none
 * for a positional one), and a path gets the system's reason, not the list of presets;
 * control bytes in it are written as \xNN. */
static void test_model_arg_names_its_option(void **state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args, "export %s/nonexist --format onnx --out %s/x.onnx", dir, dir);
  tu_cli_expect_error(dir, "", args, "normnet export: /", "nonexist: No such file or directory");
  tu_run_result r;
  run(&r, args);
  assert_null(strstr(r.err, "--model"));
  assert_null(strstr(r.err, "presets"));
  snprintf(args, sizeof args, "export --checkpoint %s/none.safetensors --format onnx --out %s/x.onnx", dir, dir);
  tu_cli_expect_error(dir, "", args, "--checkpoint /", "none.safetensors: No such file or directory");
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --init %s/norun --out %s/ni", dir, dir, dir,
           dir);
  tu_cli_expect_error(dir, "", args, "--init /", "norun: No such file or directory");
  tu_cli_expect_error(dir, "", "summary --model lenett", "--model lenett: no such preset or file",
                      "did you mean lenet? presets: lenet");
  /* an escape sequence in an argument reaches the terminal as text, as the library's do */
  snprintf(args, sizeof args, "export '%s/\033[31mred' --format onnx --out %s/x.onnx", dir, dir);
  tu_cli_expect_error(dir, "", args, "\\x1b[31mred: No such file", NULL);
  run(&r, args);
  assert_null(strchr(r.err, '\033'));
}

/* Output (not only errors) shows names from outside as text: a data directory, run
 * directory, image file and class names with an escape sequence in them, and a data source
 * read back from the checkpoint (inspect printed 'trained on' raw). The C1 control U+009B
 * (UTF-8 c2 9b, the 8-bit CSI) and a stray 9b byte are escaped too (they were printed raw);
 * printable UTF-8 (c3 a9, U+00E9) is kept. */
static void test_output_escapes_names(void **state) {
  (void)state;
  char args[2048], esc[600];
  tu_run_result r;
  snprintf(esc, sizeof esc, "%s/e\033[31mX\302\2330mY", dir);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp %s/good/* '%s'/", esc, dir, esc);
  assert_int_equal(system(cmd), 0);
  snprintf(args, sizeof args, "train --model %s/small.spec --data 'idx:%s' --epochs 1 --out '%s/run'", dir, esc, esc);
  run(&r, args);
  if (r.status) fail_msg("train: %s", r.err);
  assert_null(strchr(r.out, '\033'));
  assert_non_null(strstr(r.out, "e\\x1b[31mX"));
  const char *cmds[] = {"inspect '%s/run'", "eval '%s/run'",
                        "predict '%s/run' --index 0 --top 10 --classes 'a\033]0;T\a,b\302\2331m,c\233,\303\251,e,f,g,h,i,j'"};
  for (int i = 0; i < 3; i++) {
    snprintf(args, sizeof args, cmds[i], esc);
    run(&r, args);
    if (r.status) fail_msg("%s: %s", args, r.err);
    if (strchr(r.out, '\033') || strchr(r.out, '\a') || strchr(r.out, 0x9b))
      fail_msg("%s: raw control bytes on stdout:\n%s", args, r.out);
    if (!strstr(r.out, i < 2 ? "X\\xc2\\x9b0mY" : "b\\xc2\\x9b1m"))
      fail_msg("%s: no escaped C1 control on stdout:\n%s", args, r.out);
  }
  assert_non_null(strstr(r.out, "c\\x9b"));
  assert_non_null(strstr(r.out, " \303\251 ("));
}

/* An output path that names one of a run's own files is refused, and the run is intact
 * (export --out RUN/model.safetensors wrote ONNX over the checkpoint, exit 0; fold over it
 * left a run that could not resume); an output's extension must match what is written. */
static void test_outputs_spare_runs(void **state) {
  (void)state;
  char args[2048], path[600];
  train_small("spared", "--max-steps 2");
  snprintf(path, sizeof path, "%s/spared/model.safetensors", dir);
  size_t nb = 0, na = 0;
  unsigned char *before = tu_read_file(path, &nb);
  assert_non_null(before);
  const char *cases[][3] = {{"export %s/spared --format onnx --out %s/spared/model.safetensors", "must end in .onnx", NULL},
                            {"fold %s/spared --out %s/spared/model.safetensors", "that is a file of the run in", NULL},
                            {"recalibrate %s/spared --out %s/spared/history.csv", "that is a file of the run in", NULL},
                            {"plot %s/spared --out %s/p.png --svg %s/spared/best.safetensors", "must end in .svg", NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(args, sizeof args, cases[i][0], dir, dir, dir);
    tu_cli_expect_error(dir, "", args, cases[i][1], cases[i][2]);
  }
  unsigned char *after = tu_read_file(path, &na);
  assert_non_null(after);
  assert_int_equal(na, nb);
  assert_memory_equal(before, after, nb);
  free(before), free(after);
  snprintf(args, sizeof args, "train --resume %s/spared --max-steps 3 --quiet", dir);
  tu_run_result r;
  run(&r, args);
  if (r.status) fail_msg("the run no longer resumes: %s", r.err);
}

/* fold --out naming its own input checkpoint outside a run (by the same or another path) is
 * refused, exit 2, the file unchanged (the folded model replaced it, exit 0) */
static void test_fold_spares_its_input(void **state) {
  (void)state;
  char args[2048], path[600];
  train_small("solo-src", "--max-steps 2");
  snprintf(args, sizeof args, "cp %s/solo-src/model.safetensors %s/solo.safetensors", dir, dir);
  assert_int_equal(system(args), 0);
  snprintf(path, sizeof path, "%s/solo.safetensors", dir);
  size_t nb = 0, na = 0;
  unsigned char *before = tu_read_file(path, &nb);
  const char *outs[] = {"%s/solo.safetensors", "%s/./solo.safetensors", "%s/../%s/solo.safetensors"};
  for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
    const char *base = strrchr(dir, '/') + 1;
    char out[1200];
    snprintf(out, sizeof out, outs[i], dir, base);
    for (int cmd = 0; cmd < 2; cmd++) { /* fold, and recalibrate (which replaced it too) */
      snprintf(args, sizeof args, "%s --model %s --out %s%s", cmd ? "recalibrate" : "fold", path, out,
               cmd ? " --data idx:good --batches 1" : "");
      tu_cli_expect_error(dir, "", args, "--out ", "that is the input checkpoint");
      tu_run_result r;
      run(&r, args);
      assert_int_equal(r.status, 2);
    }
  }
  /* export of a Keras model over itself (--fold replaced it with the folded model, exit 0) */
  char keras[700];
  snprintf(keras, sizeof keras, "%s/solo.keras", dir);
  snprintf(args, sizeof args, "export %s --format keras --out %s", path, keras);
  tu_run_result kr;
  tu_cli_run_ok(&kr, dir, args, "export to .keras");
  size_t kb = 0, ka = 0;
  unsigned char *kbefore = tu_read_file(keras, &kb);
  for (int same = 0; same < 2; same++) {
    snprintf(args, sizeof args, "export %s --format keras --fold --out %s%s/solo.keras", keras, dir, same ? "/." : "");
    tu_cli_expect_error(dir, "", args, "--out ", "that is the input checkpoint");
    run(&kr, args);
    assert_int_equal(kr.status, 2);
  }
  unsigned char *kafter = tu_read_file(keras, &ka);
  assert_int_equal(ka, kb);
  assert_memory_equal(kbefore, kafter, kb);
  free(kbefore), free(kafter);
  unsigned char *after = tu_read_file(path, &na);
  assert_int_equal(na, nb);
  assert_memory_equal(before, after, nb);
  free(before), free(after);
  snprintf(args, sizeof args, "fold --model %s --out %s/solo-folded.safetensors", path, dir);
  tu_run_result r;
  tu_cli_run_ok(&r, dir, args, "fold to another file");
}

/* Errors of building the run name the option that caused them (it printed "mnist:/x: /x: ..."
 * and "norm group:3: ..."). */
static void test_run_errors_name_options(void **state) {
  (void)state;
  char args[2048];
  snprintf(args, sizeof args, "train --model %s/small.spec --data mnist:%s/nodata --out %s/rd", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "normnet train: --data mnist:/", "cannot open data directory");
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --norm group:3 --out %s/rg", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "normnet train: --norm group:3: ", "does not divide");
}

/* Every command that takes one model takes it without --model too, as export, inspect and
 * report did (`normnet eval runs/x` was "unknown argument"); a second one is refused. */
static void test_positional_model(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  train_small("pm", "--max-steps 2");
  snprintf(args, sizeof args, "eval %s/pm --data idx:%s/good", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval RUNDIR");
  assert_non_null(strstr(r.out, "accuracy"));
  snprintf(args, sizeof args, "summary %s/pm", dir);
  tu_cli_run_ok(&r, dir, args, "summary RUNDIR");
  assert_non_null(strstr(r.out, "batchnorm"));
  tu_cli_run_ok(&r, dir, "summary", "summary without a model");
  assert_non_null(strstr(r.out, "Model: \"lenet\""));
  snprintf(args, sizeof args, "fold %s/pm --out %s/pm-folded.safetensors", dir, dir);
  tu_cli_run_ok(&r, dir, args, "fold RUNDIR");
  snprintf(args, sizeof args, "recalibrate %s/pm --data idx:%s/good --batches 1 --batch 32 --out %s/pm-rc.safetensors", dir, dir,
           dir);
  tu_cli_run_ok(&r, dir, args, "recalibrate RUNDIR");
  snprintf(args, sizeof args, "eval %s/pm %s/pm", dir, dir);
  tu_cli_expect_error(dir, "", args, "unknown argument", NULL);
  /* inspect names what it does not know (it said "expected --model ...") */
  snprintf(args, sizeof args, "inspect %s/pm --bogus", dir);
  tu_cli_expect_error(dir, "", args, "unknown argument '--bogus'", NULL);
}

/* A checkpoint is known by its content, not only its name (fold and recalibrate write any
 * --out name, which eval then read as a spec: "not a text file"); an ONNX file gets a
 * message saying normnet does not read ONNX; a run and --checkpoint together are refused
 * (the run was silently ignored). */
static void test_checkpoint_any_name(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  train_small("an", "--max-steps 2");
  snprintf(args, sizeof args, "fold %s/an --out %s/an-folded.st", dir, dir);
  tu_cli_run_ok(&r, dir, args, "fold to a .st name");
  snprintf(args, sizeof args, "eval %s/an-folded.st --data idx:%s/good", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval of a checkpoint named .st");
  assert_non_null(strstr(r.out, "accuracy"));
  snprintf(args, sizeof args, "summary --model %s/an-folded.st", dir);
  tu_cli_run_ok(&r, dir, args, "summary of a checkpoint named .st");
  snprintf(args, sizeof args, "export %s/an --format onnx --out %s/an.onnx", dir, dir);
  tu_cli_run_ok(&r, dir, args, "export to ONNX");
  snprintf(args, sizeof args, "eval %s/an.onnx --data idx:%s/good", dir, dir);
  tu_cli_expect_error(dir, "", args, "an.onnx: an ONNX model", "does not read it");
  snprintf(args, sizeof args, "eval %s/an --checkpoint %s/an-folded.st --data idx:%s/good", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "two trained models", NULL);
  /* report writes HTML: another name (x.svg) is refused rather than filled with HTML */
  snprintf(args, sizeof args, "report %s/an --no-eval --out %s/an-report.svg", dir, dir);
  tu_cli_expect_error(dir, "", args, "an-report.svg: the report is an HTML page", NULL);
  snprintf(args, sizeof args, "report %s/an --no-eval --out %s/an-report.HTML", dir, dir);
  tu_cli_run_ok(&r, dir, args, "report --out .HTML");
  snprintf(args, sizeof args, "predict --model %s/an --checkpoint %s/an-folded.st --index 0", dir, dir);
  tu_cli_expect_error(dir, "", args, "two trained models", NULL);
  /* predict's --split: checked (any other value read the training set) and only with --index */
  snprintf(args, sizeof args, "predict --model %s/an --index 0 --split tset", dir);
  tu_cli_expect_error(dir, "", args, "--split: expected test or train, got 'tset'", NULL);
  snprintf(args, sizeof args, "predict --model %s/an --split train %s/img.png", dir, dir);
  tu_cli_expect_error(dir, "", args, "--split train chooses the records of --index", NULL);
  /* a spec with a NUL byte past its start is a damaged text file, not a checkpoint (it was
   * read as one: "not a safetensors file: header length ...") */
  char path[600];
  snprintf(path, sizeof path, "%s/nul.spec", dir);
  tu_write_file(path, "input shape=4\nflatten\0\ndense units=2\n", 37);
  snprintf(args, sizeof args, "summary --model %s", path);
  tu_cli_expect_error(dir, "", args, "nul.spec: not a text file (contains a NUL byte)", NULL);
  snprintf(args, sizeof args, "train --model %s --data idx:%s/good --out %s/nul-run", path, dir, dir);
  tu_cli_expect_error(dir, "", args, "nul.spec: not a text file (contains a NUL byte)", NULL);
}

/* --max-params holds for trained models too (it was applied to presets and spec files
 * only): a checkpoint's recorded spec is checked against it before the model is built, by
 * every command that loads one, report and plot included. */
static void test_max_params_checkpoints(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  train_small("mp", "--max-steps 2");
  const char *cmds[] = {"eval %s/mp --data idx:%s/good", "summary %s/mp", "inspect %s/mp",
                        "fold %s/mp --out %s/mp-f.safetensors", "export %s/mp --format onnx --out %s/mp.onnx",
                        "report %s/mp --no-eval --out %s/mp.html", "plot %s/mp --out %s/mp.png"};
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, cmds[i], dir, dir);
    snprintf(args, sizeof args, "%s --max-params 10", cmd);
    tu_cli_expect_error(dir, "", args, "normnet.spec:1", "the model-size limit");
    snprintf(args, sizeof args, "%s --max-params 1000000", cmd);
    tu_cli_run_ok(&r, dir, args, cmd);
  }
}

/* --overwrite replaces the CLI's files of the replaced run too: its activations.csv (inspect
 * showed the old run's statistics as the new run's) and activations.png. */
static void test_overwrite_drops_activations(void **state) {
  (void)state;
  char p[1024], args[2048];
  tu_run_result r;
  train_small("ow", "--max-steps 2 --track-activations");
  snprintf(args, sizeof args, "inspect %s/ow", dir);
  tu_cli_run_ok(&r, dir, args, "inspect of a tracked run");
  snprintf(p, sizeof p, "%s/ow/activations.png", dir);
  assert_true(is_file(p));
  train_small("ow", "--max-steps 2 --overwrite");
  assert_false(is_file(p));
  snprintf(p, sizeof p, "%s/ow/activations.csv", dir);
  assert_false(is_file(p));
  train_small("ow", "--max-steps 2 --overwrite --track-activations");
  assert_true(is_file(p));
}

/* Train small.spec from inside the test directory with --data `data` into `out`, then
 * evaluate the run from /: the data must be recorded as idx:<the directory>/good. */
static void train_here_eval_from_root(const char *data, const char *out) {
  char prefix[1024], args[2048], want[1100];
  tu_run_result r;
  snprintf(prefix, sizeof prefix, "cd '%s' &&", dir);
  snprintf(args, sizeof args, "train --model small.spec --data %s --max-steps 2 --quiet --out %s", data, out);
  tu_cli_run(&r, dir, prefix, args);
  if (r.status) fail_msg("train --data %s failed: %s", data, r.err);
  snprintf(args, sizeof args, "eval %s/%s", dir, out);
  tu_cli_run(&r, dir, "cd / &&", args);
  if (r.status) fail_msg("eval from / failed: %s", r.err);
  snprintf(want, sizeof want, "idx:%s/good", dir);
  if (!strstr(r.out, want)) fail_msg("--data %s: expected the data recorded as %s:\n%s", data, want, r.out);
}

/* A run trained on a relative data directory records it absolute, so that it evaluates
 * from any working directory ("idx:good: cannot open data directory" from elsewhere). */
static void test_relative_data_recorded_absolute(void **state) {
  (void)state;
  train_here_eval_from_root("idx:./good", "rel");
}

/* --data DIR without a kind: the directory is taken by what it holds (IDX files here) and
 * recorded in the explicit form, absolute; a kind without its directory and a directory of
 * neither get messages saying what is expected. */
static void test_data_directory_by_content(void **state) {
  (void)state;
  char args[2048];
  train_here_eval_from_root("good", "bare");
  snprintf(args, sizeof args, "train --model %s/small.spec --data mnist --out %s/nomnist", dir, dir);
  tu_cli_expect_error(dir, "", args, "'mnist' needs the directory of its files", "mnist:DIR");
  snprintf(args, sizeof args, "train --model %s/small.spec --data %s/fig --out %s/nodata", dir, dir, dir);
  char empty[1024];
  snprintf(empty, sizeof empty, "%s/fig", dir);
  mkdir(empty, 0777);
  tu_cli_expect_error(dir, "", args, "fig: a directory without IDX files", "CIFAR-10 batches");
}

/* An option followed by another option lacks its value ("--epochs --out x" said "unknown
 * argument 'x'"); a run failing in its first step leaves no directory; --epochs 0 is refused
 * (it exited 0 with an empty run directory), on a resume too; nothing is created. */
static void test_missing_value_and_zero_epochs(void **state) {
  (void)state;
  char args[2048], p[1024];
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --epochs --out %s/mv", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--epochs needs a value", "--out");
  /* a run that fails in its first step leaves no empty directory behind */
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --batch 1 --out %s/b1", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "batch statistics need more than 1 value", "--drop-last");
  struct stat sb;
  snprintf(p, sizeof p, "%s/b1", dir);
  assert_int_not_equal(stat(p, &sb), 0);
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --epochs 0 --out %s/e0", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--epochs", "got '0'");
  snprintf(p, sizeof p, "%s/e0", dir);
  assert_int_not_equal(stat(p, &sb), 0);
  train_small("e1", "--max-steps 2");
  snprintf(args, sizeof args, "train --resume %s/e1 --epochs 0", dir);
  tu_cli_expect_error(dir, "", args, "--epochs", "got '0'");
}

/* normnet help study sync-bn shows that study's usage (it printed the command list); a Keras
 * export named other than .keras is refused (Keras 3 reads a .h5 name as a legacy HDF5
 * model); study without a name asks for one. */
static void test_help_study_and_keras_name(void **state) {
  (void)state;
  char args[2048], p[1024];
  tu_run_result r;
  tu_cli_run_ok(&r, dir, "help study sync-bn", "help study sync-bn");
  assert_non_null(strstr(r.out, "usage: normnet study sync-bn"));
  /* the options a study sets are not listed as train's (sync-bn's help listed --sync-bn,
   * which it refuses, and --epochs "default: the preset's" against its own default 1) */
  assert_null(strstr(r.out, "  --sync-bn on|off"));
  assert_null(strstr(r.out, "default: the preset's (lenet: 10)"));
  assert_non_null(strstr(r.out, "  --epochs N                default 1 here"));
  assert_non_null(strstr(r.out, "  --lr X ")); /* and the rest are */
  tu_cli_run_ok(&r, dir, "help study small-batch", "help study small-batch");
  assert_non_null(strstr(r.out, "usage: normnet study small-batch"));
  assert_null(strstr(r.out, "  --batch B "));
  assert_null(strstr(r.out, "  --max-steps N "));
  assert_non_null(strstr(r.out, "[--budget SAMPLES]"));
  tu_cli_run_ok(&r, dir, "train --help", "train --help");
  assert_non_null(strstr(r.out, "  --sync-bn on|off"));
  assert_non_null(strstr(r.out, "  --json "));
  tu_cli_expect_error(dir, "", "study", "needs a study: small-batch or sync-bn", NULL);
  /* the budget sets a study's length: --epochs was accepted and ignored */
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/good --batch 4 --norm batch --budget 64 --out %s/st "
           "--epochs 2",
           dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--epochs: each run of the study trains for --budget", NULL);
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/good --batch 4 --norm batch --budget 64 --out %s/st "
           "--max-steps=5",
           dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--max-steps: each run", NULL);
  /* fold says when there is nothing to fold (it printed "12 -> 12 layers" alone) */
  train_small("nf", "--max-steps 2 --norm none");
  snprintf(args, sizeof args, "fold %s/nf --out %s/nf-folded.safetensors", dir, dir);
  tu_cli_run_ok(&r, dir, args, "fold of a model without BN");
  assert_non_null(strstr(r.out, "nothing folded"));
  train_small("kn", "--max-steps 2");
  snprintf(args, sizeof args, "export %s/kn --format keras --out %s/kn.h5", dir, dir);
  tu_cli_expect_error(dir, "", args, "kn.h5: a Keras 3 model file must end in .keras", NULL);
  snprintf(p, sizeof p, "%s/kn.h5", dir);
  assert_false(is_file(p));
}

/* A list option with an empty item is refused (compare --norm batch,,none trained two
 * variants), and so is a placement on no normalization (none@after); nothing is created. */
static void test_norm_list_refusals(void **state) {
  (void)state;
  char args[2048], p[1024];
  snprintf(args, sizeof args, "compare --model %s/small.spec --data idx:%s/good --norm batch,,none --out %s/nl", dir,
           dir, dir);
  tu_cli_expect_error(dir, "", args, "--norm: an empty value in 'batch,,none'", NULL);
  snprintf(args, sizeof args, "compare --model %s/small.spec --data idx:%s/good --norm batch, --out %s/nl", dir, dir,
           dir);
  tu_cli_expect_error(dir, "", args, "--norm: an empty value in 'batch,'", NULL);
  /* options the library refuses together exit 2, as every other bad command line (they
   * exited 1, the code of a failure while running) */
  tu_run_result r;
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --optimizer adam --momentum 0.9", dir,
           dir);
  tu_cli_run(&r, dir, "", args);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "momentum 0.9 is an SGD setting"));
  /* without --out nothing is saved: the final line says so, and a pause warns that nothing
   * can resume it (both were silent) */
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --max-steps 2", dir, dir);
  tu_cli_run_ok(&r, dir, args, "train without --out");
  assert_non_null(strstr(r.err, "warning: --max-steps without --out"));
  assert_non_null(strstr(r.out, "not saved (--out DIR keeps a run)"));
  assert_null(strstr(r.err, "--sync-bn"));
  /* --sync-bn in one process was accepted and ignored without a word */
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --max-steps 1 --sync-bn off --quiet", dir,
           dir);
  tu_cli_run_ok(&r, dir, args, "train --sync-bn off in one process");
  assert_non_null(strstr(r.err, "warning: --sync-bn changes nothing in one process"));
  /* a placement with nothing to place was accepted and ignored */
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --norm none --bn-placement after", dir,
           dir);
  tu_cli_expect_error(dir, "", args, "--bn-placement places normalization layers, and --norm none has none", NULL);
  snprintf(args, sizeof args, "compare --model %s/small.spec --data idx:%s/good --norm none@after --out %s/nl", dir,
           dir, dir);
  tu_cli_expect_error(dir, "", args, "'none@after': no normalization has no placement", NULL);
  struct stat sb;
  snprintf(p, sizeof p, "%s/nl", dir);
  assert_int_not_equal(stat(p, &sb), 0);
}

/* train --json names its run by its directory ("run": null before). */
static void test_json_names_the_run(void **state) {
  (void)state;
  char args[2048], want[1100];
  tu_run_result r;
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --max-steps 2 --lr 0.1 --json --out %s/js", dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "train --json");
  snprintf(want, sizeof want, "{\"run\": \"%s/js\", \"dir\": \"%s/js\", \"epoch\": 1", dir, dir);
  if (strncmp(r.out, want, strlen(want))) fail_msg("expected a line starting %s, got:\n%s", want, r.out);
  /* the float learning rate as history.csv writes it, not %.9g's 0.100000001 */
  if (!strstr(r.out, "\"lr\": 0.1,")) fail_msg("expected \"lr\": 0.1, in:\n%s", r.out);
}

/* An unknown option gets the command's nearest one: another tool's name for it (PyTorch
 * scripts' --batch-size, --learning-rate; --spec for a spec file), a misspelling, a word of
 * it; nothing for an argument like none of them. */
static void test_unknown_option_suggestions(void **state) {
  (void)state;
  static const struct {
    const char *args, *suggested;
  } cases[] = {
      {"train --batch-size 64", "did you mean --batch?"},
      {"train --learning-rate=0.1", "did you mean --lr?"},
      {"train --spec x.spec", "did you mean --model?"},
      {"train --schedule cosine", "did you mean --lr-schedule?"},
      {"train --epoch 3", "did you mean --epochs?"},
      {"train --optimiser adam", "did you mean --optimizer?"},
      {"train --early-stopping 3", "did you mean --early-stop?"},
      {"compare --ovewrite", "did you mean --overwrite?"},
      {"eval --dataa x", "did you mean --data?"},
      {"study small-batch --budgett 3", "did you mean --budget?"},
      {"train --foo", NULL},
      {"train --seeds 3", "did you mean --seed?"},
      {"export --fromat onnx", "did you mean --format?"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    tu_run_result r;
    tu_cli_expect_error(dir, "", cases[k].args, "unknown argument '", cases[k].suggested);
    run(&r, cases[k].args);
    assert_int_equal(r.status, 2);
    if (!cases[k].suggested && strstr(r.err, "did you mean")) fail_msg("'%s': a suggestion for nothing: %s", cases[k].args, r.err);
  }
}

/* train and compare take the model as their first argument, as the other commands do
 * (`normnet train lenet` was "unknown argument"); a second one is refused. The header names
 * the normalization layers the model holds: a spec with GroupNorm said "norm batch". */
static void test_train_positional_and_norm_header(void **state) {
  (void)state;
  char args[2048], path[512];
  tu_run_result r;
  static const char gn_spec[] =
      "input shape=1x8x8\nconv2d filters=4 kernel=3\ngroupnorm groups=2\nrelu\nflatten\n"
      "dense units=16\nlayernorm\nrelu\ndense units=10\n";
  snprintf(path, sizeof path, "%s/gn.spec", dir);
  tu_write_file(path, gn_spec, strlen(gn_spec));
  static const struct {
    const char *spec, *extra, *out, *header;
  } cases[] = {
      {"gn.spec", "", "pos-gn", "gn.spec, norm groupnorm+layernorm, "},
      {"small.spec", "--norm none", "pos-none", "small.spec, norm none, "},
      {"small.spec", "", "pos-bn", "small.spec, norm batch, "},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    snprintf(args, sizeof args, "train %s/%s --data idx:%s/good --max-steps 2 %s --out %s/%s", dir, cases[k].spec, dir,
             cases[k].extra, dir, cases[k].out);
    tu_cli_run_ok(&r, dir, args, "train SPEC");
    if (!strstr(r.out, cases[k].header)) fail_msg("'%s': no '%s' in:\n%s", args, cases[k].header, r.out);
  }
  snprintf(args, sizeof args, "compare %s/small.spec --data idx:%s/good --max-steps 2 --no-report --out %s/pos-cmp", dir,
           dir, dir);
  tu_cli_run_ok(&r, dir, args, "compare SPEC");
  snprintf(args, sizeof args, "train %s/small.spec %s --data idx:%s/good --max-steps 2 --out %s/pos-two", dir, path, dir,
           dir);
  tu_cli_expect_error(dir, "", args, "unknown argument '", "gn.spec'");
}

/* The "loss" value of eval --json's output. */
static double json_loss(const char *out) {
  const char *p = strstr(out, "\"loss\": ");
  if (!p) fail_msg("no loss in: %s", out);
  return strtod(p + 8, NULL);
}

/* train --init RUN without --model fine-tunes the --init model itself: its architecture and
 * its input transform (it built the default preset and refused the weights); --model RUN
 * says to give it as --init. Trained at a learning rate of 1e-12 with frozen BN, the new run
 * evaluates as the old one does. */
static void test_init_without_model(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  train_small("init-a", "--max-steps 3 --input-norm 0.3,0.2");
  snprintf(args, sizeof args,
           "train --init %s/init-a --data idx:%s/good --optimizer sgd --lr 1e-12 --freeze-bn --max-steps 1 --out %s/init-b",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "train --init RUN");
  assert_non_null(strstr(r.out, "init-a, norm batch, "));
  snprintf(args, sizeof args, "eval %s/init-a --data idx:%s/good --json", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval the --init run");
  const double before = json_loss(r.out);
  snprintf(args, sizeof args, "eval %s/init-b --data idx:%s/good --json", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval the fine-tuned run");
  if (fabs(json_loss(r.out) - before) > 1e-5) fail_msg("fine-tuned at lr 1e-12: loss %g, the --init run's %g", json_loss(r.out), before);
  snprintf(args, sizeof args, "train --model %s/init-a --data idx:%s/good --out %s/init-c", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "is a trained checkpoint", "give it as --init");
}

/* A Keras file is a model of its own for every command (its architecture from its config):
 * summary lists it, predict takes it first (its two-channel input then refuses a gray image),
 * as it takes any checkpoint's name first. */
static void test_keras_file_as_model(void **state) {
  (void)state;
  char args[2048], keras[1024];
  tu_run_result r;
  snprintf(keras, sizeof keras, "%s/keras_small_seed.keras", getenv("NN_FIXTURES"));
  snprintf(args, sizeof args, "summary %s", keras);
  tu_cli_run_ok(&r, dir, args, "summary KERASFILE");
  assert_non_null(strstr(r.out, "layernorm"));
  unsigned char img[13 + 64] = "P5\n8 8\n255\n";
  char pgm[600];
  snprintf(pgm, sizeof pgm, "%s/k8.pgm", dir);
  tu_write_file(pgm, img, sizeof img);
  snprintf(args, sizeof args, "predict %s %s", keras, pgm);
  tu_cli_expect_error(dir, "", args, "k8.pgm: images load as 1 or 3 channels", "not 2");
  /* a checkpoint's name first that names nothing: the error names no option the user did
   * not type */
  snprintf(args, sizeof args, "predict %s/gone.pt %s", dir, pgm);
  tu_cli_expect_error(dir, "", args, "normnet predict: /", "gone.pt: No such file or directory");
  run(&r, args);
  assert_null(strstr(r.err, "--model"));
}

/* A checkpoint whose weights hold a NaN (written by another tool, or edited) is refused by
 * the commands that would compute with it, naming the tensor and value (eval printed "loss
 * nan, accuracy 0.1000" and exited 0; export wrote an ONNX model of NaN's); inspect shows it
 * with a warning. */
static void test_nonfinite_weights(void **state) {
  (void)state;
  char args[2048], path[1024], needle[128];
  tu_run_result r;
  train_small("nanw", "--max-steps 2");
  snprintf(path, sizeof path, "%s/nanw/model.safetensors", dir);
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_checkpoint_load(path, NULL, &m, &err)) fail_msg("%s", err.msg);
  nn_tensor_view v;
  nn_model_tensor(m, 0, &v);
  assert_true(v.data && v.count > 3);
  v.data[3] = NAN;
  snprintf(needle, sizeof needle, "tensor '%s' holds NaN (value 3 of %zu)", v.name, v.count);
  snprintf(path, sizeof path, "%s/nanw.safetensors", dir);
  if (nn_checkpoint_save(m, path, NULL, 0, &err)) fail_msg("%s", err.msg);
  nn_model_free(m);
  snprintf(args, sizeof args, "eval %s --data idx:%s/good", path, dir);
  tu_cli_expect_error(dir, "", args, needle, "no numbers");
  snprintf(args, sizeof args, "export %s --format onnx --out %s/nanw.onnx", path, dir);
  tu_cli_expect_error(dir, "", args, needle, NULL);
  snprintf(path, sizeof path, "%s/nanw.onnx", dir);
  assert_false(is_file(path));
  snprintf(args, sizeof args, "inspect %s/nanw.safetensors", dir);
  tu_cli_run_ok(&r, dir, args, "inspect a NaN checkpoint");
  assert_non_null(strstr(r.err, "warning"));
  assert_non_null(strstr(r.err, needle));
}

/* study sync-bn with an --mpirun that does not exist is refused before anything trains (it
 * trained the K=1 run, left it behind, and then said the K=2 run's "messages are above":
 * there were none). */
static void test_study_mpirun_missing(void **state) {
  (void)state;
  char args[2048], path[1024];
  snprintf(args, sizeof args,
           "study sync-bn --model %s/small.spec --data idx:%s/good --max-steps 2 --batch 8 --mpirun %s/no-mpirun "
           "--out %s/sbm",
           dir, dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "--mpirun /", "no-mpirun: no such program");
  snprintf(path, sizeof path, "%s/sbm", dir);
  struct stat sb;
  assert_int_not_equal(stat(path, &sb), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_out_parents),
      cmocka_unit_test(test_run_without_its_data),
      cmocka_unit_test(test_recalibrate_names_data),
      cmocka_unit_test(test_resume_step_limit_message),
      cmocka_unit_test(test_val_split_labels),
      cmocka_unit_test(test_eval_json_out),
      cmocka_unit_test(test_norm_spelling),
      cmocka_unit_test(test_unknown_command),
      cmocka_unit_test(test_model_arg_names_its_option),
      cmocka_unit_test(test_output_escapes_names),
      cmocka_unit_test(test_outputs_spare_runs),
      cmocka_unit_test(test_fold_spares_its_input),
      cmocka_unit_test(test_run_errors_name_options),
      cmocka_unit_test(test_positional_model),
      cmocka_unit_test(test_checkpoint_any_name),
      cmocka_unit_test(test_max_params_checkpoints),
      cmocka_unit_test(test_overwrite_drops_activations),
      cmocka_unit_test(test_relative_data_recorded_absolute),
      cmocka_unit_test(test_data_directory_by_content),
      cmocka_unit_test(test_missing_value_and_zero_epochs),
      cmocka_unit_test(test_help_study_and_keras_name),
      cmocka_unit_test(test_norm_list_refusals),
      cmocka_unit_test(test_json_names_the_run),
      cmocka_unit_test(test_unknown_option_suggestions),
      cmocka_unit_test(test_train_positional_and_norm_header),
      cmocka_unit_test(test_init_without_model),
      cmocka_unit_test(test_keras_file_as_model),
      cmocka_unit_test(test_nonfinite_weights),
      cmocka_unit_test(test_study_mpirun_missing),
  };
  return cmocka_run_group_tests(tests, tu_cli_group_setup, tu_cli_group_teardown);
}
