/* The normnet command line (the binary NN_CLI names) end to end on small IDX files made
 * here: a short run that writes history and checkpoint, eval --json, summary, and every bad
 * input giving a one-line error that names the file, line or layer, a non-zero exit, and no
 * damage; resume after a kill, the run directory's rules, compare, --max-steps, --freeze-bn,
 * thread counts and the small-batch study. The option rules, schedules, early stopping, JSON
 * lines and the report are in test_cli_options.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/cpu.h"
#include "kernels/kernels.h" /* NN_BUILD_AVX512: this build's direct kernels */
#include "normnet.h"
#include "cli_run.h"
#include "nn_test.h"

static const char *const dir = tu_cli_dir; /* made by tu_cli_group_setup */

/* Run the CLI with a shell-quoted argument string; capture stdout, stderr, exit status. */
static void run(tu_run_result *r, const char *args) { tu_cli_run(r, dir, "", args); }

/* A failure: non-zero exit, exactly one line on stderr, containing the needles. */
static void expect_error(const char *args, const char *needle1, const char *needle2) {
  tu_cli_expect_error(dir, "", args, needle1, needle2);
}

static void test_train_eval_summary(void **state) {
  (void)state;
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --epochs 3 --batch 16 --optimizer sgd --lr 0.1 --seed 3 "
           "--out %s/run",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "train");
  assert_non_null(strstr(r.out, "epoch 3/3 train_loss=")); /* not a TTY: one line per epoch */
  assert_null(strchr(r.out, '\r'));
  char path[512], csv[4096];
  snprintf(path, sizeof path, "%s/run/history.csv", dir);
  tu_slurp(path, csv, sizeof csv);
  int lines = 0;
  for (char *c = csv; *c; c++) lines += *c == '\n';
  assert_int_equal(lines, 4);
  assert_non_null(strstr(csv, "epoch,train_loss,train_acc,test_loss,test_acc"));
  /* the task is easy: training must have learnt something */
  double acc = 0;
  char *last = strrchr(csv, '\n');
  *last = 0;
  last = strrchr(csv, '\n');
  assert_int_equal(sscanf(last + 1, "%*d,%*f,%*f,%*f,%lf", &acc), 1);
  assert_true(acc > 0.5);
  /* eval --json reproduces the final test accuracy from the checkpoint */
  snprintf(args, sizeof args, "eval --model %s/run --data idx:%s/good --json", dir, dir);
  tu_cli_run_ok(&r, dir, args, "eval");
  double jacc = -1;
  const char *a = strstr(r.out, "\"accuracy\": ");
  assert_non_null(a);
  assert_int_equal(sscanf(a, "\"accuracy\": %lf", &jacc), 1);
  assert_true(fabs(jacc - acc) < 1e-6);
  assert_true(r.out[0] == '{' && strchr(r.out, '}'));
  /* summary of the trained run and of the spec */
  snprintf(args, sizeof args, "summary --model %s/run", dir);
  run(&r, args);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "Non-trainable params: 40")); /* 2*(4+16) running stats */
  tu_cli_run(&r, dir, "NN_CPU=avx2", "summary --model lenet --norm none");
  assert_int_equal(r.status, 0);
  assert_null(strstr(r.out, "batchnorm"));
  assert_non_null(strstr(r.out, "Non-trainable params: 0"));
  /* each convolution's algorithms, by shape (the AVX2 rule): the first computes no dx */
  assert_non_null(strstr(r.out, "fwd=direct dw=direct dx=-"));
  assert_non_null(strstr(r.out, "fwd=direct dw=direct dx=direct"));
  tu_cli_run(&r, dir, "NN_CPU=avx2", "summary --model cnn"); /* 32 -> 64 filters, 3x3: Winograd in every pass */
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "fwd=direct dw=im2col+gemm dx=-"));
  assert_non_null(strstr(r.out, "fwd=winograd dw=winograd dx=winograd"));
  /* this machine's rule: an AVX-512 one sends the CNN's second layer's forward (unless its
   * 512-bit FMAs run in halves) and dx to oneDNN's GEMM, and LeNet conv2's dW too unless this
   * build's direct kernels run 16 wide */
  const int wide = nn_cpu_detect() >= NN_CPU_AVX512;
  run(&r, "summary --model lenet --norm none");
  assert_non_null(strstr(r.out, "fwd=direct dw=direct dx=-"));
  assert_non_null(strstr(r.out, wide && !NN_BUILD_AVX512 ? "fwd=direct dw=im2col+gemm dx=direct"
                                                         : "fwd=direct dw=direct dx=direct"));
  run(&r, "summary --model cnn");
  assert_non_null(strstr(r.out, !wide                   ? "fwd=winograd dw=winograd dx=winograd"
                                : nn_cpu_fma512_split() ? "fwd=winograd dw=winograd dx=im2col+gemm"
                                                        : "fwd=im2col+gemm dw=winograd dx=im2col+gemm"));
  run(&r, "train --help");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "--no-shuffle"));
  /* fold: no batchnorm left, the same accuracy */
  snprintf(args, sizeof args, "fold --model %s/run --out %s/folded.safetensors", dir, dir);
  tu_cli_run_ok(&r, dir, args, "fold");
  assert_non_null(strstr(r.out, "8 -> 6 layers"));
  snprintf(args, sizeof args, "eval --model %s/folded.safetensors --data idx:%s/good --json", dir, dir);
  run(&r, args);
  assert_int_equal(r.status, 0);
  a = strstr(r.out, "\"accuracy\": ");
  double facc = -1;
  assert_true(a && sscanf(a, "\"accuracy\": %lf", &facc) == 1);
  assert_true(fabs(facc - acc) < 1e-9);
  snprintf(args, sizeof args, "summary --model %s/folded.safetensors", dir);
  run(&r, args);
  assert_null(strstr(r.out, "batchnorm"));
  /* predict: data set records (with the true label) and an image file */
  snprintf(args, sizeof args, "predict --model %s/run --data idx:%s/good --index 0,3 --top 2", dir, dir);
  tu_cli_run_ok(&r, dir, args, "predict");
  char one_thread[sizeof r.out];
  memcpy(one_thread, r.out, sizeof one_thread);
  /* --threads, as train and eval take it (scripts pass it everywhere): the same figures */
  snprintf(args, sizeof args, "predict --model %s/run --data idx:%s/good --index 0,3 --top 2 --threads 2", dir, dir);
  tu_cli_run_ok(&r, dir, args, "predict --threads 2");
  assert_string_equal(r.out, one_thread);
  assert_non_null(strstr(r.out, "record 0:  1. class "));
  assert_non_null(strstr(r.out, "record 3:"));
  assert_non_null(strstr(r.out, "[true: class 3]"));
  char pgm[600];
  snprintf(pgm, sizeof pgm, "%s/img.pgm", dir);
  unsigned char img[13 + 64] = "P5\n8 8\n255\n";
  for (int i = 0; i < 64; i++) img[13 + i] = (unsigned char)(i / 8 == 2 ? 220 : 10);
  tu_write_file(pgm, img, sizeof img);
  snprintf(args, sizeof args, "predict --model %s/run --classes a,b,c,d,e,f,g,h,i,j %s", dir, pgm);
  tu_cli_run_ok(&r, dir, args, "predict image");
  assert_non_null(strstr(r.out, "img.pgm:  1. "));
  /* the run first without --model, as the other commands take it */
  snprintf(args, sizeof args, "predict %s/run --classes a,b,c,d,e,f,g,h,i,j %s", dir, pgm);
  tu_cli_run_ok(&r, dir, args, "predict RUNDIR image");
  assert_non_null(strstr(r.out, "img.pgm:  1. "));
  snprintf(args, sizeof args, "predict --model %s/run %s/small.spec", dir, dir);
  expect_error(args, "small.spec", NULL); /* not an image */
}

static void test_bad_data(void **state) {
  (void)state;
  char args[2048];
  tu_cli_write_idx(dir, "trunc", "train", (tu_idx_opts){.n = 20, .nlabels = 20, .truncate = 5});
  tu_cli_write_idx(dir, "trunc", "t10k", (tu_idx_opts){.n = 8, .nlabels = 8});
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/trunc --epochs 1", dir, dir);
  expect_error(args, "train-images-idx3-ubyte", "bytes");
  tu_cli_write_idx(dir, "magic", "train", (tu_idx_opts){.n = 20, .nlabels = 20, .bad_magic = 1});
  tu_cli_write_idx(dir, "magic", "t10k", (tu_idx_opts){.n = 8, .nlabels = 8});
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/magic --epochs 1", dir, dir);
  expect_error(args, "train-images-idx3-ubyte", "magic");
  tu_cli_write_idx(dir, "count", "train", (tu_idx_opts){.n = 20, .nlabels = 19});
  tu_cli_write_idx(dir, "count", "t10k", (tu_idx_opts){.n = 8, .nlabels = 8});
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/count --epochs 1", dir, dir);
  expect_error(args, "20", "19");
  tu_cli_write_idx(dir, "label", "train", (tu_idx_opts){.n = 20, .nlabels = 20, .label_bump = 1});
  tu_cli_write_idx(dir, "label", "t10k", (tu_idx_opts){.n = 8, .nlabels = 8});
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/label --epochs 1", dir, dir);
  expect_error(args, "train-labels-idx1-ubyte", "label 12");
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/nowhere --epochs 1", dir, dir);
  expect_error(args, "nowhere", NULL);
  expect_error("train --data martian:x --epochs 1", "unknown data source 'martian:x'", NULL);
  expect_error("train --data idx: --epochs 1", "no directory after 'idx:'", "expected idx:DIR");
}

static void test_bad_specs(void **state) {
  (void)state;
  char path[512], args[2048];
  const struct {
    const char *text, *needle1, *needle2;
  } cases[] = {
      {"input shape=1x8x8\nconv2d filters=4 kernel=3\nbatchnrom\n", "bad.spec:3", "unknown layer 'batchnrom'"},
      {"input shape=1x8x8\nconv2d filters=4 kernel=3 strides=2\n", "bad.spec:2", "unknown key 'strides'"},
      {"input shape=1x8x8\nconv2d filters=4 kernel=9\nflatten\ndense units=10\n", "bad.spec:2", "kernel"},
      {"input shape=1x8x8\nconv2d filters=4 kernel=3\ndense units=10\n", "bad.spec:3", "flatten"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(path, sizeof path, "%s/bad.spec", dir);
    tu_write_file(path, cases[i].text, strlen(cases[i].text));
    snprintf(args, sizeof args, "train --model %s --data idx:%s/good --epochs 1", path, dir);
    expect_error(args, cases[i].needle1, cases[i].needle2);
    snprintf(args, sizeof args, "summary --model %s", path);
    expect_error(args, cases[i].needle1, cases[i].needle2);
  }
  /* the input of the spec must fit the data */
  snprintf(args, sizeof args, "train --model lenet --data idx:%s/good --epochs 1", dir);
  expect_error(args, "784", "64");
  expect_error("train --model nosuchpreset", "nosuchpreset", "lenet");
  expect_error("train --epochs -3", "--epochs", NULL);
  expect_error("train --frobnicate", "--frobnicate", NULL);
}

static void test_batch_of_one_and_no_damage(void **state) {
  (void)state;
  char args[2048], path[512];
  /* 1 sample per batch: BN on (1, 16) cannot normalize; the error names the layer */
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 1", dir, dir);
  expect_error(args, "layer 5 (batchnorm, line 8)", "(1, 16)");
  /* a good run, then a run whose loss is not finite (a denormal input std turns pixels
   * into inf) into the same directory: it stops with an error, the good checkpoint stays */
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 16 --out %s/keep",
           dir, dir, dir);
  tu_run_result r;
  run(&r, args);
  assert_int_equal(r.status, 0);
  snprintf(path, sizeof path, "%s/keep/model.safetensors", dir);
  static char before[1 << 16], after[1 << 16];
  tu_slurp(path, before, sizeof before);
  const char *diverge = "input shape=1x8x8\nflatten\ndense units=32\nrelu\ndense units=10\n";
  snprintf(path, sizeof path, "%s/diverge.spec", dir);
  tu_write_file(path, diverge, strlen(diverge));
  /* without --overwrite the directory holding a run is refused outright */
  snprintf(args, sizeof args,
           "train --model %s --data idx:%s/good --epochs 2 --batch 16 --input-norm 1e35,1e-6 --out %s/keep",
           path, dir, dir);
  expect_error(args, "already holds a run", "--overwrite");
  /* with it, the new run replaces files only as it commits epochs: it fails in epoch 1 */
  snprintf(args, sizeof args,
           "train --model %s --data idx:%s/good --epochs 2 --batch 16 --input-norm 1e35,1e-6 --out %s/keep --overwrite",
           path, dir, dir);
  expect_error(args, "loss is", "epoch 1, batch");
  snprintf(path, sizeof path, "%s/keep/model.safetensors", dir);
  tu_slurp(path, after, sizeof after);
  assert_memory_equal(before, after, sizeof before);
}

/* Same tensors (params, running stats, num_batches_tracked), bitwise. */
static void assert_same_checkpoint(const char *a, const char *b) {
  nn_model *ma = NULL, *mb = NULL;
  nn_error err = {0};
  if (nn_checkpoint_load(a, NULL, &ma, &err) || nn_checkpoint_load(b, NULL, &mb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_model_num_tensors(ma), nn_model_num_tensors(mb));
  for (int t = 0; t < nn_model_num_tensors(ma); t++) {
    nn_tensor_view va, vb;
    nn_model_tensor(ma, t, &va);
    nn_model_tensor(mb, t, &vb);
    assert_string_equal(va.name, vb.name);
    if (va.data) {
      if (memcmp(va.data, vb.data, va.count * sizeof(float))) fail_msg("tensor %s differs between %s and %s", va.name, a, b);
    } else {
      assert_int_equal(*va.count_value, *vb.count_value);
    }
  }
  nn_model_free(ma);
  nn_model_free(mb);
}

/* The history rows without the timing columns. */
static void history_core(const char *path, char *out, size_t len) {
  char buf[8192];
  tu_slurp(path, buf, sizeof buf);
  size_t used = 0;
  out[0] = 0;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    int commas = 0;
    char *p = line;
    while (*p && commas < 5) commas += *p++ == ',';
    used += (size_t)snprintf(out + used, len - used, "%.*s\n", (int)(p - line), line);
  }
}

static void test_resume_after_kill(void **state) {
  (void)state;
  const char *spec =
      "input shape=1x8x8\nconv2d filters=4 kernel=3\nbatchnorm\nrelu\nflatten\n"
      "dropout rate=0.2\ndense units=10\n";
  char path[512], args[2048], a[512], b[512];
  snprintf(path, sizeof path, "%s/resume.spec", dir);
  tu_write_file(path, spec, strlen(spec));
  const char *common = "--epochs 3 --batch 16 --optimizer adam --augment flip,crop=1 --seed 5 --threads 1 --quiet";
  snprintf(args, sizeof args, "train --model %s --data idx:%s/good %s --out %s/straight", path, dir, common, dir);
  tu_run_result r;
  tu_cli_run_ok(&r, dir, args, "uninterrupted run");
  /* killed (SIGKILL) right after epoch 1 is saved, then resumed */
  snprintf(args, sizeof args, "train --model %s --data idx:%s/good %s --out %s/killed --crash-after-epoch 1", path, dir,
           common, dir);
  run(&r, args);
  assert_int_not_equal(r.status, 0);
  snprintf(a, sizeof a, "%s/killed/history.csv", dir);
  char partial[4096];
  tu_slurp(a, partial, sizeof partial);
  assert_non_null(strstr(partial, "\n1,")); /* epoch 1 survived the kill */
  assert_null(strstr(partial, "\n2,"));
  snprintf(args, sizeof args, "train --resume %s/killed --threads 1 --quiet", dir);
  tu_cli_run_ok(&r, dir, args, "resume");
  char ha[4096], hb[4096];
  snprintf(a, sizeof a, "%s/straight/history.csv", dir);
  snprintf(b, sizeof b, "%s/killed/history.csv", dir);
  history_core(a, ha, sizeof ha);
  history_core(b, hb, sizeof hb);
  assert_string_equal(ha, hb);
  snprintf(a, sizeof a, "%s/straight/model.safetensors", dir);
  snprintf(b, sizeof b, "%s/killed/model.safetensors", dir);
  assert_same_checkpoint(a, b);
}

/* The run directory rules (after test_resume_after_kill made DIR/straight and DIR/killed). */
static void test_run_dir_rules(void **state) {
  (void)state;
  char args[2048], path[512], buf[8192];
  tu_run_result r;
  /* --resume takes the recorded recipe: a flag that would change it is named */
  const char *changing[][2] = {{"--lr 0.5", "--lr"}, {"--batch 4", "--batch"}, {"--model lenet", "--model"}, {"--norm none", "--norm"}, {"--data idx:/x", "--data"}, {"--seed 9", "--seed"}};
  for (size_t i = 0; i < sizeof changing / sizeof changing[0]; i++) {
    snprintf(args, sizeof args, "train --resume %s/killed %s", dir, changing[i][0]);
    expect_error(args, changing[i][1], "--epochs, --max-steps, --threads, --quiet, --json and --out");
  }
  /* a finished run: nothing to do is an error saying how to extend it; --epochs extends it */
  snprintf(args, sizeof args, "train --resume %s/killed --quiet", dir);
  expect_error(args, "nothing to train", "--epochs");
  snprintf(args, sizeof args, "train --resume %s/killed --epochs 4 --threads 1 --quiet", dir);
  tu_cli_run_ok(&r, dir, args, "extending");
  snprintf(path, sizeof path, "%s/killed/history.csv", dir);
  tu_slurp(path, buf, sizeof buf);
  assert_non_null(strstr(buf, "\n4,"));
  /* a run stopped by --max-steps continues to the new limit (6 steps per epoch here) */
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --batch 16 --epochs 5 --max-steps 3 --quiet --out %s/ms", dir,
           dir, dir);
  tu_cli_run_ok(&r, dir, args, "max-steps run");
  /* the report marks the paused epoch's row, which is no best epoch */
  snprintf(args, sizeof args, "report %s/ms --no-eval --out %s/ms.html", dir, dir);
  tu_cli_run_ok(&r, dir, args, "report of a paused run");
  snprintf(path, sizeof path, "%s/ms.html", dir);
  static char page[1 << 20];
  tu_slurp(path, page, sizeof page);
  if (!strstr(page, "<td>0 and part of one</td><td>-</td><td>-</td>") || !strstr(page, "<tr><td>1 (paused inside)</td>"))
    fail_msg("the report of a run paused inside epoch 1 shows it as finished");
  snprintf(args, sizeof args, "train --resume %s/ms --max-steps 9 --quiet", dir);
  tu_cli_run_ok(&r, dir, args, "continuing to --max-steps 9");
  snprintf(path, sizeof path, "%s/ms/model.safetensors", dir);
  char *steps = NULL;
  nn_error err = {0};
  if (nn_checkpoint_meta(path, "normnet.optimizer_steps", &steps, &err)) fail_msg("%s", err.msg);
  assert_string_equal(steps, "9");
  free(steps);
  snprintf(args, sizeof args, "train --resume %s/ms --max-steps 9", dir);
  expect_error(args, "nothing to train", "--max-steps");
  /* a live holder of the lock is refused by PID; a dead one's lock is taken over */
  snprintf(path, sizeof path, "%s/lk", dir);
  assert_int_equal(mkdir(path, 0777), 0);
  snprintf(path, sizeof path, "%s/lk/lock", dir);
  char pid[64];
  snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  tu_write_file(path, pid, strlen(pid));
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --max-steps 1 --quiet --out %s/lk", dir,
           dir, dir);
  snprintf(pid, sizeof pid, "process %ld", (long)getpid());
  expect_error(args, pid, "lock");
  tu_write_file(path, "999999999\n", 10);
  run(&r, args);
  if (r.status) fail_msg("a stale lock was not taken over: %s", r.err);
  assert_int_equal(access(path, F_OK), -1);
  /* symlinks planted in --out are replaced, their targets never written */
  char victim[512], link[512];
  snprintf(victim, sizeof victim, "%s/victim.txt", dir);
  tu_write_file(victim, "precious\n", 9);
  snprintf(path, sizeof path, "%s/sym", dir);
  assert_int_equal(mkdir(path, 0777), 0);
  const char *names[] = {"spec.txt", "history.csv", "activations.csv", "best.safetensors"};
  for (int i = 0; i < 4; i++) {
    snprintf(link, sizeof link, "%s/sym/%s", dir, names[i]);
    assert_int_equal(symlink(victim, link), 0);
  }
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 16 --track-activations --quiet --out %s/sym",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "training into a directory with symlinks");
  tu_slurp(victim, buf, sizeof buf);
  assert_string_equal(buf, "precious\n");
  for (int i = 0; i < 4; i++) {
    struct stat sb;
    snprintf(link, sizeof link, "%s/sym/%s", dir, names[i]);
    assert_int_equal(lstat(link, &sb), 0);
    if (!S_ISREG(sb.st_mode)) fail_msg("%s is not a regular file", link);
  }
  /* eval (and predict) default to the data the run was trained on, and say so */
  snprintf(args, sizeof args, "eval --model %s/straight", dir);
  tu_cli_run_ok(&r, dir, args, "eval without --data");
  char want[512];
  snprintf(want, sizeof want, "on idx:%s/good/test (data recorded in the model", dir);
  if (!strstr(r.out, want)) fail_msg("eval output lacks '%s':\n%s", want, r.out);
  snprintf(args, sizeof args, "predict --model %s/straight --index 3", dir);
  tu_cli_run_ok(&r, dir, args, "predict without --data");
  snprintf(want, sizeof want, "data idx:%s/good/test (recorded in the model)", dir);
  if (!strstr(r.out, want)) fail_msg("predict output lacks '%s':\n%s", want, r.out);
  /* history columns say what they are */
  snprintf(args, sizeof args,
           "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 16 --val-split 0.25 --quiet --out %s/vs",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "val-split run");
  snprintf(path, sizeof path, "%s/vs/history.csv", dir);
  tu_slurp(path, buf, sizeof buf);
  assert_non_null(strstr(buf, "epoch,train_loss,train_acc,val_loss,val_acc,"));
}

/* compare builds and checks every variant before the first trains */
static void test_compare_checks_first(void **state) {
  (void)state;
  char args[2048], path[512], buf[8192];
  tu_run_result r;
  /* group:3 does not divide the 4 conv channels: fails before "batch" trains a step */
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --norm batch,group:3 --epochs 1 --batch 16 --out %s/cmp",
           dir, dir, dir);
  expect_error(args, "group:3", "divide");
  snprintf(path, sizeof path, "%s/cmp/batch/model.safetensors", dir);
  assert_int_equal(access(path, F_OK), -1);
  /* a variant given twice would find the first one's run in its directory after the first
   * trained: refused before anything is made */
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --norm batch,none,batch --epochs 1 --batch 16 --out "
           "%s/cmp-twice",
           dir, dir, dir);
  expect_error(args, "--norm: 'batch' and 'batch'", "share the run directory");
  snprintf(path, sizeof path, "%s/cmp-twice", dir);
  assert_int_equal(access(path, F_OK), -1);
  snprintf(path, sizeof path, "%s/cmp/history.csv", dir);
  assert_int_equal(access(path, F_OK), -1);
  /* a good compare with a validation split names its columns val_*; run again, it is
   * refused until --overwrite */
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --norm batch,none --epochs 1 --batch 16 --val-split 0.25 "
           "--quiet --out %s/cmp",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "compare");
  tu_slurp(path, buf, sizeof buf);
  assert_non_null(strstr(buf, "variant,epoch,train_loss,train_acc,val_loss,val_acc,"));
  expect_error(args, "already holds a run", "--overwrite");
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --norm batch,none --epochs 1 --batch 16 --quiet --overwrite "
           "--out %s/cmp",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "compare --overwrite");
  tu_slurp(path, buf, sizeof buf);
  assert_non_null(strstr(buf, "variant,epoch,train_loss,train_acc,test_loss,test_acc,"));
  /* a run and a comparison never write into each other's directory: train into the
   * comparison's (its history.csv is the table), a comparison into a run's */
  char table[8192], before[8192];
  memcpy(table, buf, sizeof table);
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 16 --quiet --out %s/cmp",
           dir, dir, dir);
  expect_error(args, "holds a history.csv but no run", "--overwrite");
  tu_slurp(path, buf, sizeof buf);
  assert_string_equal(buf, table);
  snprintf(path, sizeof path, "%s/cmp/batch/history.csv", dir);
  tu_slurp(path, before, sizeof before);
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --norm batch,none --epochs 1 --batch 16 --quiet --overwrite "
           "--out %s/cmp/batch",
           dir, dir, dir);
  expect_error(args, "holds a run", "write elsewhere");
  tu_slurp(path, buf, sizeof buf);
  assert_string_equal(buf, before);
}

/* Run the CLI on a pseudo-terminal in dir (what a user at a terminal sees): the bytes it
 * wrote, NUL-terminated, and its exit status. */
static unsigned short tty_cols; /* run_on_tty's terminal width (0: the pty's default) */
static int run_on_tty(const char *args, char *out, size_t len) {
  const char *cli = getenv("NN_CLI");
  assert_non_null(cli);
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  assert_true(master >= 0);
  assert_int_equal(grantpt(master), 0);
  assert_int_equal(unlockpt(master), 0);
  char slave[256];
  assert_non_null(ptsname(master));
  snprintf(slave, sizeof slave, "%s", ptsname(master));
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cd '%s' && exec '%s' %s", dir, cli, args);
  /* the test keeps the terminal open too, so that what the program wrote stays readable after
   * it exits (with the last descriptor closed, the master may report EIO before the last
   * bytes are read), and reads until the program has exited and nothing is left */
  int keep = open(slave, O_RDWR | O_NOCTTY);
  assert_true(keep >= 0);
  if (tty_cols) {
    struct winsize ws = {.ws_row = 24, .ws_col = tty_cols};
    assert_int_equal(ioctl(keep, TIOCSWINSZ, &ws), 0);
  }
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(keep);
    setsid();
    int fd = open(slave, O_RDWR);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0) dup2(in, 0);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  size_t used = 0;
  int exited = 0, st = 0;
  for (;;) {
    struct pollfd pfd = {.fd = master, .events = POLLIN};
    if (poll(&pfd, 1, exited ? 0 : 100) > 0 && (pfd.revents & POLLIN)) {
      ssize_t n = read(master, out + used, len - 1 - used);
      if (n > 0) {
        used += (size_t)n;
        if (used == len - 1) fail_msg("more than %zu bytes on the terminal", len - 1);
        continue;
      }
    }
    if (exited) break; /* exited, and nothing left to read */
    pid_t w = waitpid(pid, &st, WNOHANG);
    assert_true(w == 0 || w == pid);
    exited = w == pid;
  }
  out[used] = 0;
  close(keep);
  close(master);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* One run's progress bar on a 40- and an 80-column terminal: every state redrawn in place
 * ("\r" up to the erase) fits (a longer one wrapped, and each redraw added a line) and ends
 * on a whole field (it was cut at the width: "- acc:" without its figure, "all:    2" for
 * 21s); at 80 columns the bar narrows so that the run's overall ETA shows; the epoch's final
 * line is whole. */
static void test_bar_fits_terminal(void **state) {
  (void)state;
  static char tty[1 << 16];
  const unsigned short widths[] = {40, 80};
  for (int k = 0; k < 2; k++) {
    tty_cols = widths[k];
    char args[256];
    snprintf(args, sizeof args, "train --model small.spec --data idx:good --batch 4 --epochs 2 --out bar%d", widths[k]);
    int rc = run_on_tty(args, tty, sizeof tty);
    tty_cols = 0;
    if (rc) fail_msg("train failed on a terminal:\n%s", tty);
    int redraws = 0, with_all = 0;
    for (const char *p = strchr(tty, '\r'); p; p = strchr(p + 1, '\r')) {
      const char *end = strstr(p, "\033[K");
      if (!end || memchr(p, '\n', (size_t)(end - p)) || end - p - 1 == 0) continue;
      if (!strncmp(end + 3, " - test_loss", 12)) continue; /* the final line: kept, may wrap */
      const int len = (int)(end - p - 1);
      if (len > widths[k] - 1)
        fail_msg("a redrawn line of %d columns on a %d-column terminal:\n%.*s", len, widths[k], len, p + 1);
      const char *last = NULL;
      for (const char *f = strstr(p + 1, " - "); f && f < end; f = strstr(f + 1, " - ")) last = f;
      const char *lastf = last ? last + 3 : p + 1;
      /* a field ends on its figure: "loss: 2.3068", "acc: 0.2500", "ETA:   13s", "all: 21s" */
      if (!(end[-1] >= '0' && end[-1] <= '9') && end[-1] != 's')
        fail_msg("a redrawn line cut inside a field (%d columns):\n%.*s", widths[k], len, p + 1);
      if ((!strncmp(lastf, "acc: ", 5) && end - lastf != 11) || (!strncmp(lastf, "loss: ", 6) && end - lastf != 12))
        fail_msg("a redrawn line cut inside its last field (%d columns):\n%.*s", widths[k], len, p + 1);
      with_all += strncmp(lastf, "all: ", 5) == 0;
      redraws++;
    }
    assert_true(redraws > 0);
    if (widths[k] == 80 && !with_all) fail_msg("no overall ETA on an 80-column terminal:\n%s", tty);
    assert_non_null(strstr(tty, " - test_loss: ")); /* the final line, uncut */
  }
}

/* p starts a line on the terminal: after a newline, or after a status line was cleared ("\r"
 * then erase to the end of the line) */
static int line_start(const char *buf, const char *p) {
  return (p - buf >= 1 && p[-1] == '\n') || (p - buf >= 4 && !strncmp(p - 4, "\r\033[K", 4));
}

/* compare --jobs: variants trained side by side give the results of one after another
 * (weights bitwise, histories), each epoch's line whole; on a terminal one status line under
 * them, cleared before every other line (the JSON lines side by side: test_cli_options). */
static void test_compare_jobs(void **state) {
  (void)state;
  char args[2048], a[512], b[512], ha[8192], hb[8192];
  tu_run_result r;
  static const char *const variants[] = {"batch", "none", "layer"};
  /* three variants on two lanes: the third waits for a free lane, the last running one takes
   * the threads the others give back */
  for (int jobs = 1; jobs <= 3; jobs++) {
    snprintf(args, sizeof args,
             "compare --model %s/small.spec --data idx:%s/good --norm batch,none,layer --epochs 2 --batch 16 "
             "--threads 2 --jobs %d --no-report --out %s/jobs%d",
             dir, dir, jobs, dir, jobs);
    tu_cli_run_ok(&r, dir, args, "compare --jobs");
    assert_null(strchr(r.out, '\r')); /* not a terminal: plain lines, no escapes */
    assert_null(strchr(r.out, '\033'));
    if (jobs > 1) assert_non_null(strstr(r.out, jobs == 2 ? "2 at a time on 2 threads" : "3 at a time"));
    /* the summary says whose speeds its columns are */
    assert_int_equal(strstr(r.out, "trained at a time, the cores shared out") != NULL, jobs > 1);
    int epoch_lines = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
      const char *e = strstr(line, ": epoch ");
      if (!e) continue;
      /* a whole line of its variant, from its label to its last field */
      int known = 0;
      for (int k = 0; k < 3; k++) known |= (size_t)(e - line) == strlen(variants[k]) && !strncmp(line, variants[k], strlen(variants[k]));
      if (!known || !strstr(e, "train_loss=") || !strstr(e, "samples_per_s=") || strstr(e + 1, ": epoch "))
        fail_msg("--jobs %d: a broken epoch line: '%s'", jobs, line);
      epoch_lines++;
    }
    assert_int_equal(epoch_lines, 3 * 2);
    if (jobs == 1) continue;
    snprintf(a, sizeof a, "%s/jobs1/history.csv", dir);
    snprintf(b, sizeof b, "%s/jobs%d/history.csv", dir, jobs);
    history_core(a, ha, sizeof ha);
    history_core(b, hb, sizeof hb);
    assert_string_equal(ha, hb);
    for (int k = 0; k < 3; k++) {
      snprintf(a, sizeof a, "%s/jobs1/%s/model.safetensors", dir, variants[k]);
      snprintf(b, sizeof b, "%s/jobs%d/%s/model.safetensors", dir, jobs, variants[k]);
      assert_same_checkpoint(a, b);
    }
  }
  /* on a terminal */
  static char tty[1 << 16];
  snprintf(args, sizeof args,
           "compare --model small.spec --data idx:good --norm batch,none --epochs 2 --batch 16 --threads 2 "
           "--no-report --overwrite --out jobs2");
  if (run_on_tty(args, tty, sizeof tty)) fail_msg("'%s' failed on a terminal:\n%s", args, tty);
  const char *status = strstr(tty, "| all: ");
  if (!status) fail_msg("no status line on the terminal:\n%s", tty);
  assert_null(strstr(tty, "Epoch 1/2")); /* the one-run bar's heading is not drawn */
  int lines = 0;
  for (const char *p = strstr(tty, "batch: epoch "); p; p = strstr(p + 1, "batch: epoch ")) {
    if (!line_start(tty, p)) fail_msg("an epoch line not on a line of its own:\n%s", tty);
    lines++;
  }
  assert_int_equal(lines, 2);
  /* the status line is cleared before the tables */
  const char *last = status, *table = strstr(tty, "epoch  |");
  for (const char *p = status; p; p = strstr(p + 1, "| all: ")) last = p;
  assert_non_null(table);
  assert_true(last < table);
  char between[256];
  snprintf(between, sizeof between, "%.*s", (int)(table - last < 255 ? table - last : 255), last);
  assert_non_null(strstr(between, "\r\033[K"));
  /* one after another on a terminal: the one-run bar, run by run */
  snprintf(args, sizeof args,
           "compare --model small.spec --data idx:good --norm batch,none --epochs 1 --batch 16 --jobs 1 "
           "--no-report --overwrite --out jobs2");
  if (run_on_tty(args, tty, sizeof tty)) fail_msg("'%s' failed on a terminal:\n%s", args, tty);
  assert_non_null(strstr(tty, "batch: Epoch 1/1 (run 1/2)"));
  assert_null(strstr(tty, "| all: "));
  /* a variant that fails: one error, naming it, side by side (the others stop) as one after
   * another (at lr 30 the BN variant trains on, the one without diverges at its second step) */
  for (int jobs = 1; jobs <= 2; jobs++) {
    snprintf(args, sizeof args,
             "compare --model %s/small.spec --data idx:%s/good --norm batch,none,layer --epochs 3 --batch 16 --lr 30 "
             "--threads 2 --jobs %d --quiet --no-report --out %s/jobs-fail%d",
             dir, dir, jobs, dir, jobs);
    expect_error(args, "normnet compare: none: epoch 1, batch 2", "diverged");
    snprintf(a, sizeof a, "%s/jobs-fail%d/history.csv", dir, jobs);
    assert_int_equal(access(a, F_OK), -1);
  }
  /* both diverge at once (lr 1e6): still one line */
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --norm batch,none --epochs 3 --batch 16 --lr 1e6 "
           "--threads 2 --jobs 2 --quiet --no-report --out %s/jobs-fail3",
           dir, dir, dir);
  expect_error(args, "normnet compare: ", "diverged");
  expect_error("compare --jobs 0", "--jobs", NULL);
  expect_error("compare --jobs 9", "--jobs", NULL);
}

static void test_max_steps_deterministic(void **state) {
  (void)state;
  char args[2048], a[512], b[512];
  tu_run_result r;
  for (int k = 0; k < 2; k++) {
    snprintf(args, sizeof args,
             "train --model %s/small.spec --data idx:%s/good --max-steps 5 --no-shuffle --batch 8 --quiet --out %s/steps%d",
             dir, dir, dir, k);
    tu_cli_run_ok(&r, dir, args, "max-steps run");
  }
  snprintf(a, sizeof a, "%s/steps0/model.safetensors", dir);
  snprintf(b, sizeof b, "%s/steps1/model.safetensors", dir);
  assert_same_checkpoint(a, b);
  char meta_steps[64] = "";
  char *v = NULL;
  nn_error err = {0};
  assert_int_equal(nn_checkpoint_meta(a, "normnet.optimizer_steps", &v, &err), NN_OK);
  snprintf(meta_steps, sizeof meta_steps, "%s", v ? v : "");
  free(v);
  assert_string_equal(meta_steps, "5");
}

/* Frozen BN: fine-tuning with --freeze-bn leaves every BN tensor bitwise unchanged
 * (gamma, beta, running stats, num_batches_tracked) while the other weights move. */
static void test_freeze_bn(void **state) {
  (void)state;
  char args[2048], a[512], b[512];
  tu_run_result r;
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 16 --quiet --out %s/base",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "base run");
  snprintf(args, sizeof args,
           "train --model %s/small.spec --init %s/base --freeze-bn --data idx:%s/good --epochs 1 --batch 16 "
           "--optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 0.01 --quiet --out %s/frozen",
           dir, dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "frozen run");
  snprintf(a, sizeof a, "%s/base/model.safetensors", dir);
  snprintf(b, sizeof b, "%s/frozen/model.safetensors", dir);
  nn_model *ma = NULL, *mb = NULL;
  nn_error err = {0};
  if (nn_checkpoint_load(a, NULL, &ma, &err) || nn_checkpoint_load(b, NULL, &mb, &err)) fail_msg("%s", err.msg);
  int frozen_same = 0, moved = 0;
  for (int t = 0; t < nn_model_num_tensors(ma); t++) {
    nn_tensor_view va, vb;
    nn_model_tensor(ma, t, &va);
    nn_model_tensor(mb, t, &vb);
    int layer = atoi(va.name);
    nn_layer_info li;
    nn_model_layer_info(ma, layer, &li);
    int same = va.data ? !memcmp(va.data, vb.data, va.count * sizeof(float)) : *va.count_value == *vb.count_value;
    if (!strcmp(li.kind, "batchnorm")) {
      if (!same) fail_msg("frozen BN tensor %s changed", va.name);
      frozen_same++;
    } else {
      if (same) fail_msg("tensor %s did not train", va.name);
      moved++;
    }
  }
  assert_int_equal(frozen_same, 2 * 5);
  assert_int_equal(moved, 6);
  char *text = nn_spec_to_text(nn_model_spec(mb));
  assert_non_null(strstr(text, "use_global_stats=1 freeze_affine=1"));
  free(text);
  nn_model_free(ma);
  nn_model_free(mb);
}

/* Reductions have a fixed order: training at 1 and at 2 threads gives identical weights. */
static void test_threads_bitwise(void **state) {
  (void)state;
  char args[2048], a[512], b[512];
  tu_run_result r;
  for (int t = 1; t <= 2; t++) {
    snprintf(args, sizeof args,
             "train --model %s/small.spec --data idx:%s/good --epochs 1 --batch 32 --threads %d --quiet --out %s/t%d", dir,
             dir, t, dir, t);
    run(&r, args);
    if (r.status) fail_msg("run at %d threads failed: %s", t, r.err);
  }
  snprintf(a, sizeof a, "%s/t1/model.safetensors", dir);
  snprintf(b, sizeof b, "%s/t2/model.safetensors", dir);
  assert_same_checkpoint(a, b);
}

static void test_small_batch_study(void **state) {
  (void)state;
  char args[2048], path[600];
  tu_run_result r;
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/good --budget 96 --batch 2,16 "
           "--norm batch,group:2,layer,none --out %s/study",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "study");
  assert_non_null(strstr(r.out, "BN train-mode"));
  assert_non_null(strstr(r.out, "\n2 "));
  assert_non_null(strstr(r.out, "\n16 "));
  /* the runs trained side by side (the default: one per thread) end in any order, each with
   * a whole line of its own */
  assert_non_null(strstr(r.out, "8 runs, 2 at a time on 2 threads"));
  int done[9] = {0};
  for (const char *p = strstr(r.out, "  ["); p; p = strstr(p + 1, "  [")) {
    int k = 0, runs = 0, b = 0, steps = 0;
    char norm[32];
    double acc = -1;
    if (sscanf(p, "  [%d/%d] batch %d %31s %d steps val_acc %lf", &k, &runs, &b, norm, &steps, &acc) != 6 || runs != 8 ||
        k < 1 || k > 8 || done[k]++ || steps != 96 / b || !(acc >= 0 && acc <= 1))
      fail_msg("a broken progress line: %.120s", p);
  }
  for (int k = 1; k <= 8; k++) assert_int_equal(done[k], 1);
  snprintf(path, sizeof path, "%s/study/study.csv", dir);
  char csv[4096], one_by_one[4096];
  tu_slurp(path, csv, sizeof csv);
  /* one after another: the same figures */
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/good --budget 96 --batch 2,16 "
           "--norm batch,group:2,layer,none --jobs 1 --out %s/study1",
           dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "study --jobs 1");
  assert_null(strstr(r.out, "at a time"));
  snprintf(path, sizeof path, "%s/study1/study.csv", dir);
  tu_slurp(path, one_by_one, sizeof one_by_one);
  assert_string_equal(csv, one_by_one);
  assert_non_null(strstr(csv, "16,group:2,"));
  assert_non_null(strstr(csv, "2,batch(train-mode eval),"));
  /* the same number of samples at every batch size: 48 steps of 2, 6 steps of 16 */
  char *v = NULL;
  nn_error err = {0};
  snprintf(path, sizeof path, "%s/study/b2-batch/model.safetensors", dir);
  assert_int_equal(nn_checkpoint_meta(path, "normnet.optimizer_steps", &v, &err), NN_OK);
  assert_string_equal(v, "48");
  free(v);
  snprintf(path, sizeof path, "%s/study/b16-layer/model.safetensors", dir);
  assert_int_equal(nn_checkpoint_meta(path, "normnet.optimizer_steps", &v, &err), NN_OK);
  assert_string_equal(v, "6");
  free(v);
  snprintf(path, sizeof path, "%s/study/study.png", dir);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_true(sb.st_size > 1000);
  /* on a terminal: a status line counting each run's steps, every result line on a line of
   * its own (the status cleared first), the status cleared before the table */
  static char tty[1 << 16];
  snprintf(args, sizeof args,
           "study small-batch --model small.spec --data idx:good --budget 96 --batch 2,16 --norm batch,none "
           "--out study-tty");
  if (run_on_tty(args, tty, sizeof tty)) fail_msg("'%s' failed on a terminal:\n%s", args, tty);
  if (!strstr(tty, "/48 | ") && !strstr(tty, "/48\033[K")) fail_msg("no step count of 48 on the terminal:\n%s", tty);
  int results = 0;
  for (const char *p = strstr(tty, "  ["); p; p = strstr(p + 1, "  [")) {
    if (!line_start(tty, p)) fail_msg("a result line not on a line of its own:\n%s", tty);
    results++;
  }
  assert_int_equal(results, 4);
  const char *table = strstr(tty, "final validation accuracy"), *status = strstr(tty, "| all: ");
  assert_non_null(table);
  assert_non_null(status);
  for (const char *p = status; p; p = strstr(p + 1, "| all: ")) status = p;
  assert_true(status < table);
  char between[256];
  snprintf(between, sizeof between, "%.*s", (int)(table - status < 255 ? table - status : 255), status);
  assert_non_null(strstr(between, "\r\033[K"));
  snprintf(args, sizeof args, "study large-batch");
  expect_error(args, NULL, NULL);
  /* a run that fails side by side (lr 30: the one without BN diverges at its second step; first
   * in job order, so the BN run beside it, which starts after it, is stopped early) stops the
   * others: one line naming it, and a result line only for a run that ran to its end (run twice:
   * --overwrite, or a run the first one finished would refuse the second) */
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/good --budget 96 --batch 2,16 --norm none,batch "
           "--lr 30 --overwrite --out %s/study-fail",
           dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "batch 2 none", "diverged");
  tu_cli_run(&r, dir, "", args);
  if (strstr(r.out, "batch    2  batch")) { /* it finished before the other failed */
    char *steps = NULL;
    snprintf(path, sizeof path, "%s/study-fail/b2-batch/model.safetensors", dir);
    if (nn_checkpoint_meta(path, "normnet.optimizer_steps", &steps, &err) || !steps || strcmp(steps, "48"))
      fail_msg("a result line for a run stopped at step %s:\n%s", steps ? steps : "(none)", r.out);
    free(steps);
  }
  /* every run failing as it opens (no such data), side by side: still one line (both lanes
   * fail at once in about half the runs; sixteen runs, as each fails within milliseconds) */
  snprintf(args, sizeof args,
           "study small-batch --model %s/small.spec --data idx:%s/nonexistent --budget 96 --batch 2,16 "
           "--norm batch,none --out %s/study-nodata",
           dir, dir, dir);
  for (int i = 0; i < 16; i++) tu_cli_expect_error(dir, "", args, "nonexistent", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_eval_summary),
      cmocka_unit_test(test_bad_data),
      cmocka_unit_test(test_bad_specs),
      cmocka_unit_test(test_batch_of_one_and_no_damage),
      cmocka_unit_test(test_resume_after_kill),
      cmocka_unit_test(test_run_dir_rules),
      cmocka_unit_test(test_compare_checks_first),
      cmocka_unit_test(test_compare_jobs),
      cmocka_unit_test(test_bar_fits_terminal),
      cmocka_unit_test(test_max_steps_deterministic),
      cmocka_unit_test(test_freeze_bn),
      cmocka_unit_test(test_threads_bitwise),
      cmocka_unit_test(test_small_batch_study),
  };
  return cmocka_run_group_tests(tests, tu_cli_group_setup, tu_cli_group_teardown);
}
