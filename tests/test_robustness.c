/* Regression tests of issue #10 (hardening): every input an attacker controls (spec, IDX,
 * image, run files, resource limits) ends in one clean error line and a non-zero exit, in
 * bounded time and memory -- never a signal, a hang or a wrapped size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "cli_run.h"
#include "layers/layer.h"
#include "nn_test.h"
#include "train/history.h"

static char *dir;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *path_in(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
  return buf;
}

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX pair of n 28x28 images (class k bright in row k) and labels, raw. */
static void write_idx_pair(const char *sub, const char *prefix, int n) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, sub);
  mkdir(p, 0777);
  size_t isz = 16 + (size_t)n * 784;
  uint8_t *img = calloc(1, isz), *lab = calloc(1, 8 + (size_t)n);
  be32(img, 0x803), be32(img + 4, (uint32_t)n), be32(img + 8, 28), be32(img + 12, 28);
  be32(lab, 0x801), be32(lab + 4, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    lab[8 + i] = (uint8_t)(i % 10);
    memset(img + 16 + (size_t)i * 784 + (size_t)(i % 10) * 2 * 28, 200, 56);
  }
  snprintf(p, sizeof p, "%s/%s/%s-images-idx3-ubyte", dir, sub, prefix);
  tu_write_file(p, img, isz);
  snprintf(p, sizeof p, "%s/%s/%s-labels-idx1-ubyte", dir, sub, prefix);
  tu_write_file(p, lab, 8 + (size_t)n);
  free(img), free(lab);
}

static void expect_error(const char *args, const char *n1, const char *n2) {
  tu_cli_expect_error(dir, "", args, n1, n2);
}

/* ---- 1. inspect: a repeated activations row wrote past a buffer; a huge epoch printed
 * 2e9 lines ---------------------------------------------------------------------------- */
static void make_run(const char *name) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  mkdir(p, 0777);
  nn_spec *s = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse("input shape=4\ndense units=3\nbatchnorm\nrelu\ndense units=2\n", "t.spec", &s, &err) ||
      nn_model_create(s, &m, &err))
    fail_msg("%s", err.msg);
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  snprintf(p, sizeof p, "%s/%s/model.safetensors", dir, name);
  if (nn_checkpoint_save(m, p, NULL, 0, &err)) fail_msg("%s", err.msg);
  nn_model_free(m);
  nn_spec_free(s);
}

static void write_act(const char *run, const char *csv) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s/activations.csv", dir, run);
  tu_write_file(p, csv, strlen(csv));
}

static void test_inspect_activations(void **state) {
  (void)state;
  make_run("run");
  char args[1024];
  snprintf(args, sizeof args, "inspect %s/run", dir);
  write_act("run", "epoch,layer,kind,mean,std\n0,1,batchnorm,1,1\n0,1,batchnorm,1,1\n");
  expect_error(args, "activations.csv:3", "repeats line 2");
  double t0 = now();
  write_act("run", "epoch,layer,kind,mean,std\n2000000000,1,batchnorm,1,1\n");
  expect_error(args, "activations.csv:2", "malformed row");
  assert_true(now() - t0 < 10);
  write_act("run", "epoch,layer,kind,mean,std\n0,1,batch\x1b[2Jnorm,1,1\n");
  expect_error(args, "activations.csv:2", NULL);
  write_act("run",
            "epoch,layer,kind,mean,std\n0,1,batchnorm,1,1\n"
            "0,1,batchnorm,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
            "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
            "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n");
  expect_error(args, "activations.csv:3", NULL);
  /* a good file: epochs out of order and with gaps are fine, one table row per epoch */
  write_act("run", "epoch,layer,kind,mean,std\n3,1,batchnorm,0.5,2\n0,1,batchnorm,1,1\n0,3,dense,2,3\n");
  tu_run_result r;
  tu_cli_run(&r, dir, "", args);
  if (r.status) fail_msg("inspect failed: %s", r.err);
  assert_non_null(strstr(r.out, "\n0      |    1.000 / 1.000    |    2.000 / 3.000"));
  assert_non_null(strstr(r.out, "\n3      |    0.500 / 2.000    |"));
  assert_null(strstr(r.out, "\n1     "));
}

/* ---- 2-4. sizes from a spec: wrapped parameter count, truncated flatten, model bombs -- */
static void test_spec_sizes(void **state) {
  (void)state;
  char p[1024], args[2048];
  /* 65536 dense layers of 2^24 x 2^24 weights: the total wrapped to 0, then segfaulted */
  FILE *f = fopen(path_in(p, sizeof p, "wrap.spec"), "w");
  assert_non_null(f);
  fputs("input shape=16777216\n", f);
  for (int i = 0; i < 65536; i++) fputs("dense units=16777216 bias=0\n", f);
  fclose(f);
  snprintf(args, sizeof args, "summary --model %s", p);
  double t0 = now();
  expect_error(args, "wrap.spec:2: layer 0 (dense): weight [16777216x16777216]", "1073741824 parameters");
  /* 2^30 + 2^15 parameters in 3 lines took 52 s and 8.4 GB; now refused before allocating */
  const char *big = "input shape=32768\ndense units=32768\ndense units=10\n";
  tu_write_file(path_in(p, sizeof p, "big.spec"), big, strlen(big));
  snprintf(args, sizeof args, "summary --model %s", p);
  expect_error(args, "big.spec:2: layer 0 (dense)", "--max-params");
  /* a 4-GiB output per sample */
  const char *wide = "input shape=1x64x64\nconv2d filters=1048576 kernel=1\nflatten\ndense units=10\n";
  tu_write_file(path_in(p, sizeof p, "wide.spec"), wide, strlen(wide));
  snprintf(args, sizeof args, "summary --model %s", p);
  expect_error(args, "wide.spec:2: layer 0 (conv2d): an output of 1048576x64x64", NULL);
  assert_true(now() - t0 < 20);
  /* --max-params raises the limit: the 2^30-parameter summary is then allowed (not run: 8 GB) */
  snprintf(args, sizeof args, "summary --model %s/big.spec --max-params 100000", dir);
  expect_error(args, "above 100000 parameters", NULL);
  snprintf(args, sizeof args, "summary --model %s/big.spec --max-params=-3", dir);
  expect_error(args, "--max-params", NULL);
  /* the library: the same limits through nn_spec_set_max_params */
  tu_expect_build_error("input shape=16777216x16777216x16777216\ndense units=2\n", NN_ERR_ARG, "input shape=", NULL);
  nn_spec *s = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  assert_int_equal(nn_spec_parse("input shape=8\ndense units=4\ndense units=2\n", "s", &s, &err), NN_OK);
  nn_spec_set_max_params(s, 45);
  assert_int_equal(nn_model_create(s, &m, &err), NN_ERR_ARG); /* 36 + 10 = 46 > 45 */
  assert_non_null(strstr(err.msg, "s:3: layer 1 (dense): bias [2]"));
  nn_spec_set_max_params(s, 46);
  assert_int_equal(nn_model_create(s, &m, &err), NN_OK);
  assert_int_equal((int)nn_model_param_count(m), 46);
  nn_model_free(m);
  nn_spec_free(s);
}

/* 3. flatten truncated C*H*W to an int ("flatten (None, 0)"); its shape rule refuses now. */
static void test_flatten_overflow(void **state) {
  (void)state;
  nn_layer_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  nn_shape out = {0, 0, 0, 0};
  char why[256] = "";
  const nn_layer_ops *flat = nn_layer_table[NN_LAYER_FLATTEN];
  assert_int_equal(flat->shape(&cfg, (nn_shape){3, 1048576, 64, 64}, &out, why, sizeof why), -1);
  assert_non_null(strstr(why, "flattening 1048576x64x64"));
  assert_int_equal(flat->shape(&cfg, (nn_shape){3, 16777216, 16777216, 16777216}, &out, why, sizeof why), -1);
  assert_int_equal(flat->shape(&cfg, (nn_shape){3, 6, 4, 4}, &out, why, sizeof why), 0);
  assert_int_equal(out.c, 96);
}

/* ---- 4. IDX bombs: bounded inflation, only regular files ------------------------------ */
static void write_gz(const char *path, const uint8_t *head, size_t hl, size_t zeros) {
  gzFile g = gzopen(path, "wb9");
  assert_non_null(g);
  assert_int_equal(gzwrite(g, head, (unsigned)hl), (int)hl);
  static uint8_t z[1 << 16];
  for (size_t done = 0; done < zeros; done += sizeof z)
    assert_true(gzwrite(g, z, (unsigned)(zeros - done < sizeof z ? zeros - done : sizeof z)) > 0);
  assert_int_equal(gzclose(g), Z_OK);
}

static void test_idx_bombs(void **state) {
  (void)state;
  write_idx_pair("d", "train", 20);
  char ip[1024], lp[1024], gz[1024];
  snprintf(lp, sizeof lp, "%s/d/train-labels-idx1-ubyte", dir);
  snprintf(ip, sizeof ip, "%s/d/train-images-idx3-ubyte", dir);
  nn_dataset *ds = NULL;
  nn_error err = {0};
  /* 20 images, then 64 MiB of zeros after them: only 64 KiB of the tail is inflated */
  uint8_t head[16 + 20 * 784] = {0};
  be32(head, 0x803), be32(head + 4, 20), be32(head + 8, 28), be32(head + 12, 28);
  write_gz(path_in(gz, sizeof gz, "bomb.gz"), head, sizeof head, (size_t)64 << 20);
  double t0 = now();
  assert_int_equal(nn_dataset_load_idx(gz, lp, &ds, &err), NN_ERR_FORMAT);
  assert_true(now() - t0 < 2);
  assert_non_null(strstr(err.msg, "at least 65536 trailing bytes"));
  /* a header announcing 2^31 x 2^16 pixels in a tiny gzip file: refused before inflating */
  be32(head + 4, 0x7fffffff), be32(head + 8, 256), be32(head + 12, 256);
  write_gz(gz, head, 16, 1000);
  t0 = now();
  assert_int_equal(nn_dataset_load_idx(gz, lp, &ds, &err), NN_ERR_FORMAT);
  assert_true(now() - t0 < 1);
  assert_non_null(strstr(err.msg, "inflates to at most"));
  /* a raw header announcing more than the file holds: refused before allocating */
  tu_write_file(gz, head, 16);
  assert_int_equal(nn_dataset_load_idx(gz, lp, &ds, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "truncated"));
  /* a symlink to /dev/zero: a character device, refused at once */
  char zl[1024];
  path_in(zl, sizeof zl, "zero-images-idx3-ubyte");
  assert_int_equal(symlink("/dev/zero", zl), 0);
  assert_int_equal(nn_dataset_load_idx(zl, lp, &ds, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "character device"));
  /* a directory */
  assert_int_equal(nn_dataset_load_idx(dir, lp, &ds, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "a directory"));
  assert_null(ds);
  /* the good pair still loads */
  assert_int_equal(nn_dataset_load_idx(ip, lp, &ds, &err), NN_OK);
  assert_int_equal(nn_dataset_count(ds), 20);
  nn_dataset_free(ds);
}

/* ---- 5. a FIFO given as a file hung forever ------------------------------------------ */
/* A long history is read in linear time: 300,000 rows (an 11 MB checkpoint's history) took
 * over a minute when every row's sscanf measured the rest of the text; a row longer than any
 * real one is malformed. */
static void test_history_long(void **state) {
  (void)state;
  const char *head = "epoch,train_loss,train_acc,test_loss,test_acc,seconds,samples_per_sec,lr\n";
  const int rows = 300000;
  size_t cap = strlen(head) + (size_t)rows * 40 + 1, len = 0;
  char *text = malloc(cap);
  assert_non_null(text);
  len += (size_t)snprintf(text, cap, "%s", head);
  for (int i = 1; i <= rows; i++) len += (size_t)snprintf(text + len, cap - len, "%d,1,0.5,1,0.5,0.1,100,0.001\n", i);
  nn_history *h = NULL;
  nn_error err = {0};
  double t0 = now();
  assert_int_equal(nn_history_parse(text, "long.csv", &h, &err), NN_OK);
  assert_true(now() - t0 < 20);
  assert_int_equal(nn_history_count(h), rows);
  nn_history_free(h);
  snprintf(text, cap, "%s1,1,0.5,1,0.5,0.1,100,0.001%0600d\n", head, 0); /* a 630-byte row */
  assert_int_equal(nn_history_parse(text, "wide.csv", &h, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "wide.csv:2: malformed history row"));
  free(text);
}

/* A model of 40000 layers (and its optimizer's moments) builds, saves, loads and reports its
 * outputs in linear-ish time: looking for unexpected tensors walked the model once per file entry (a
 * 2000-layer run's checkpoint took 24 s to load), finding a tensor by name or by index walked
 * the file's or the model's (20k layers: 66 s), and the outputs' checks the fused runs from the
 * first layer for every layer; saving walked the layers for each of the optimizer's tensors. */
static void test_many_layers_load(void **state) {
  (void)state;
  const int layers = 39999; /* dense, batchnorm, relu: the last two one fused run in training */
  size_t cap = 64 + (size_t)layers * 16, len = 0;
  char *spec = malloc(cap), path[600];
  assert_non_null(spec);
  len += (size_t)snprintf(spec, cap, "input shape=4\n");
  for (int i = 0; i < layers; i += 3) len += (size_t)snprintf(spec + len, cap - len, "dense units=2\nbatchnorm\nrelu\n");
  const double t0 = now();
  nn_model *m = tu_model(spec, 3), *back = NULL;
  nn_error err = {0};
  nn_opt_config oc = nn_opt_defaults(NN_OPT_ADAM);
  nn_optimizer *opt = NULL;
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  snprintf(path, sizeof path, "%s/deep.safetensors", dir);
  /* with the optimizer's moments, as a run saves it: entries beyond the model's tensors */
  assert_int_equal(nn_checkpoint_save_training(m, opt, path, NULL, 0, &err), NN_OK);
  nn_optimizer_free(opt);
  if (nn_checkpoint_load(path, NULL, &back, &err)) fail_msg("%s", err.msg);
  tu_assert_same_tensors(m, back);
  float x[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};
  if (nn_model_forward(back, x, NULL, 2, NN_MODE_TRAIN, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
  double *mx = malloc((size_t)layers * sizeof *mx);
  assert_non_null(mx);
  nn_model_output_maxabs(back, mx);
  assert_true(mx[0] >= 0 && mx[1] == -1 && mx[2] >= 0); /* the batchnorm's output is not kept: -1 */
  assert_true(mx[layers - 3] >= 0 && mx[layers - 2] == -1 && mx[layers - 1] >= 0);
  assert_int_equal(nn_model_first_bad_output(back, NULL, NULL), -1);
  free(mx);
  const double took = now() - t0;
  print_message("  %d layers: built, saved, loaded and checked in %.2f s\n", layers, took);
  if (took > 20) fail_msg("building, saving, loading and checking %d layers took %.1f s", layers, took);
  nn_model_free(m), nn_model_free(back);
  free(spec);
}

static void test_fifo(void **state) {
  (void)state;
  char ff[1024], args[2048], lp[1024];
  path_in(ff, sizeof ff, "pipe");
  assert_int_equal(mkfifo(ff, 0600), 0);
  double t0 = now();
  /* `timeout` turns a hang into exit 124, which tu_cli_expect_error rejects */
  snprintf(args, sizeof args, "summary --model %s", ff);
  tu_cli_expect_error(dir, "timeout 20", args, "pipe: is a FIFO", NULL);
  /* a checkpoint is sniffed (safetensors, Keras, PyTorch) before it is parsed: that open too */
  snprintf(args, sizeof args, "eval --checkpoint %s --model lenet", ff);
  tu_cli_expect_error(dir, "timeout 20", args, "pipe: is a FIFO", NULL);
  nn_error err = {0};
  nn_dataset *ds = NULL;
  snprintf(lp, sizeof lp, "%s/d/train-labels-idx1-ubyte", dir);
  assert_int_equal(nn_dataset_load_idx(ff, lp, &ds, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "FIFO"));
  uint8_t px[16];
  assert_int_equal(nn_image_load(ff, (nn_dims){.c = 1, .h = 4, .w = 4}, px, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, "FIFO"));
  nn_spec *s = NULL;
  assert_int_equal(nn_spec_load(ff, &s, &err), NN_ERR_IO);
  nn_history *h = NULL;
  assert_int_equal(nn_history_read_csv(ff, 1, &h, &err), NN_ERR_IO);
  nn_activation_row *rows = NULL;
  int n = 0;
  assert_int_equal(nn_activations_read_csv(ff, &rows, &n, &err), NN_ERR_IO);
  assert_true(now() - t0 < 20);
}

/* ---- 6. resource limits: no signal under ulimit -v or -f, nothing partial left ------- */
/* Whether `normnet --version` exits 0 three times out of three under the shell prefix. Near
 * its lower end a memory limit breaks the process before main: the dynamic loader cannot map
 * a shared library (exit 127), or a library constructor fails (GnuTLS, which HDF5 pulls in
 * through libcurl, prints "Error in GnuTLS initialization" and crashes), and not always at
 * the same limit. Such a limit says nothing about normnet's own handling of memory. */
static int starts_under(const char *prefix) {
  for (int i = 0; i < 3; i++) {
    tu_run_result r;
    tu_cli_run(&r, dir, prefix, "--version");
    if (r.status != 0) return 0;
  }
  return 1;
}

static void test_resource_limits(void **state) {
  (void)state;
  write_idx_pair("d", "train", 64);
  write_idx_pair("d", "t10k", 16);
  char args[2048], prefix[256], p[1024];
  /* every memory limit from "cannot allocate" up to "trains": a clean outcome (below about
   * 85 MiB the process cannot start: see starts_under; those limits are skipped over). ASan
   * reserves terabytes of shadow memory, so a sanitized CLI cannot run under ulimit -v;
   * there, ASan's allocator refuses each allocation above a size instead (it prints a
   * "==PID==WARNING" line of its own per refusal, ignored here). */
#if defined(__SANITIZE_ADDRESS__)
  const int first = 1, step = 15, last = 256;
  const char *limit_fmt = "ASAN_OPTIONS=$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=%d";
  const int scale = 1;
#else
  /* from below the dynamic loader's needs up, in steps finer than the window where the
   * data loads but training cannot run, until a run trains */
  const int first = 48, step = 12, last = 1024;
  const char *limit_fmt = "ulimit -v %d;";
  const int scale = 1024;
#endif
  int ok = 0, failed = 0;
  for (int mb = first; mb <= last && !ok; mb += step) {
    snprintf(args, sizeof args, "train --model lenet --data idx:%s/d --epochs 1 --batch 32 --max-steps 2 --out %s/lim%d",
             dir, dir, mb);
    snprintf(prefix, sizeof prefix, limit_fmt, mb * scale);
    tu_run_result r;
    tu_cli_run(&r, dir, prefix, args);
    if (r.status == 0) {
      ok++;
      continue;
    }
    if (!starts_under(prefix)) continue; /* it fails before main: not normnet's code */
    failed++;
    char *own = r.err; /* our lines: drop the sanitizer's own "==PID==" lines */
    while (own[0] == '=' && own[1] == '=' && strchr(own, '\n')) own = strchr(own, '\n') + 1;
    const char *nl = strchr(own, '\n');
    if (r.status != 1 || !nl || nl[1] || !strstr(own, "out of memory"))
      fail_msg("%s: exit %d, stderr:\n%s", prefix, r.status, r.err);
  }
  if (!ok || !failed) fail_msg("the sweep must cross the limit: %d runs trained, %d refused", ok, failed);
  /* a 50-KiB file-size limit: the checkpoint cannot be written -> EFBIG, one line, exit 1,
   * no partial or temporary file left in the run directory (made beforehand: one the run
   * made itself goes when it is left empty) */
  assert_int_equal(mkdir(path_in(p, sizeof p, "fsz"), 0755), 0);
  snprintf(args, sizeof args, "train --model lenet --data idx:%s/d --epochs 1 --batch 32 --max-steps 2 --out %s/fsz", dir,
           dir);
  tu_cli_expect_error(dir, "ulimit -f 50;", args, "model.safetensors", "File too large");
  struct stat sb;
  assert_int_not_equal(stat(path_in(p, sizeof p, "fsz/model.safetensors"), &sb), 0);
  char ls[4096];
  snprintf(args, sizeof args, "ls -a '%s/fsz' > '%s/ls.txt'", dir, dir);
  assert_int_equal(system(args), 0);
  tu_slurp(path_in(p, sizeof p, "ls.txt"), ls, sizeof ls);
  if (strstr(ls, "tmp")) fail_msg("a temporary file is left behind:\n%s", ls);
}

/* ---- Keras files the HDF5 library cannot read safely: a child process reads them first;
 * a crash (SIGSEGV) or a trace printed at exit is one line and exit 1 (gen_hostile_h5.py) ---- */
static void test_hostile_hdf5(void **state) {
  (void)state;
  static const char *const files[] = {"hostile_h5_segv.h5", "hostile_h5_trace.h5"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char args[2048], path[1024];
    snprintf(path, sizeof path, "%s/%s", getenv("NN_FIXTURES"), files[i]);
    assert_int_equal(nn_checkpoint_uses_hdf5(path), 1); /* what the CLI reads in a child first */
    snprintf(args, sizeof args, "summary --model %s", path);
    tu_run_result r;
    tu_cli_run(&r, dir, "", args);
    const char *nl = strchr(r.err, '\n');
    if (r.status != 1 || !strstr(r.err, files[i]) || !nl || nl[1])
      fail_msg("%s: exit %d, stderr (expected one line naming the file):\n%s", files[i], r.status, r.err);
  }
  char p[1024];
  snprintf(p, sizeof p, "%s/keras_small_mlp.keras", getenv("NN_FIXTURES"));
  assert_int_equal(nn_checkpoint_uses_hdf5(p), 1);
  snprintf(p, sizeof p, "%s/torch_small.safetensors", getenv("NN_FIXTURES"));
  assert_int_equal(nn_checkpoint_uses_hdf5(p), 0);
  assert_int_equal(nn_checkpoint_uses_hdf5(dir), 0); /* a directory */
}

/* ---- 7. terminal injection: bytes from files are escaped in messages ----------------- */
static void test_escaped_messages(void **state) {
  (void)state;
  char p[1024], args[2048];
  const char *spec = "input shape=4\nbad\x1b[31mlayer\x07 units=3\n";
  tu_write_file(path_in(p, sizeof p, "esc.spec"), spec, strlen(spec));
  snprintf(args, sizeof args, "summary --model %s", p);
  expect_error(args, "unknown layer 'bad\\x1b[31mlayer\\x07'", NULL);
  tu_run_result r;
  tu_cli_run(&r, dir, "", args);
  for (const char *c = r.err; *c; c++)
    if ((unsigned char)*c < 0x20 && *c != '\n') fail_msg("a control byte 0x%02x reached stderr", (unsigned char)*c);
  /* the library escapes too: non-ASCII and newlines never reach a message */
  nn_spec *s = NULL;
  nn_error err = {0};
  assert_int_not_equal(nn_spec_parse("input shape=4\nd\xc3\xa9nse\n", "x", &s, &err), NN_OK);
  assert_non_null(strstr(err.msg, "d\\xc3\\xa9nse"));
  /* and so does its public formatter (the CLI's errors go through it) */
  assert_int_equal(nn_error_set(&err, NN_ERR_IO, "%s: %d", "a\nb\x1b", 7), NN_ERR_IO);
  assert_int_equal(err.code, NN_ERR_IO);
  assert_string_equal(err.msg, "a\\x0ab\\x1b: 7");
  assert_int_equal(nn_error_set(NULL, NN_ERR_ARG, "x"), NN_ERR_ARG);
}

/* ---- 9. the numeric guard names the first layer whose output went bad ---------------- */
static void test_first_bad_output(void **state) {
  (void)state;
  nn_spec *s = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse("input shape=4\ndense units=3\nbatchnorm\nrelu\ndense units=2\n", "g.spec", &s, &err) ||
      nn_model_create(s, &m, &err))
    fail_msg("%s", err.msg);
  nn_rng rng;
  nn_rng_seed(&rng, 2);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  float x[8] = {0.5f, -1, 2, 0.25f, 1, 1, -0.5f, 3};
  int32_t y[2] = {0, 1};
  for (int mode = NN_MODE_TRAIN; mode <= NN_MODE_EVAL; mode++) {
    assert_int_equal(nn_model_forward(m, x, y, 2, (nn_mode)mode, NULL, NULL, NULL, &err), NN_OK);
    assert_int_equal(nn_model_first_bad_output(m, NULL, NULL), -1);
    double mx[4], lim[4], v = 0;
    nn_model_output_maxabs(m, mx);
    /* train mode: batchnorm (layer 1) ran fused with relu, its output not kept */
    assert_true(mode == NN_MODE_TRAIN ? mx[1] == -1 : mx[1] > 0);
    for (int i = 0; i < 4; i++) lim[i] = mx[i] < 0 ? 0 : mx[i];
    assert_int_equal(nn_model_first_bad_output(m, lim, NULL), -1); /* at the maxima: nothing beyond */
    lim[3] = mx[3] / 2;
    assert_int_equal(nn_model_first_bad_output(m, lim, &v), 3);
    assert_true(fabs(v) > lim[3]);
    lim[0] = mx[0] / 2;
    assert_int_equal(nn_model_first_bad_output(m, lim, &v), 0); /* the first one is named */
  }
  /* a NaN input poisons the first dense layer: it is named, not a later one */
  x[5] = NAN;
  assert_int_equal(nn_model_forward(m, x, y, 2, NN_MODE_EVAL, NULL, NULL, NULL, &err), NN_OK);
  double v = 0;
  assert_int_equal(nn_model_first_bad_output(m, NULL, &v), 0);
  assert_true(isnan(v));
  double mx[4];
  nn_model_output_maxabs(m, mx);
  assert_true(isnan(mx[0]));
  nn_model_free(m);
  nn_spec_free(s);
}

/* ---- 9. --lr 1e6 ended with exit 0 and losses of 1e17-1e23: the loss never became NaN -- */
static void test_divergence_guard(void **state) {
  (void)state;
  char args[4096], spec[1024];
  write_idx_pair("dv", "train", 64);
  write_idx_pair("dv", "t10k", 32);
  path_in(spec, sizeof spec, "dv.spec");
  const char *text = "input shape=1x28x28\nflatten\ndense units=32\nrelu\ndense units=10\n";
  tu_write_file(spec, text, strlen(text));
  /* the default factor (1e4) stops it in epoch 1 and names the layer that exploded */
  snprintf(args, sizeof args,
           "train --model %s --data idx:%s/dv --optimizer sgd --lr 1e6 --epochs 3 --batch 16 --quiet --out %s/dv1",
           spec, dir, dir);
  expect_error(args, "training diverged; the first bad output is layer", "epoch 1, batch 2 of 4 (step 2)");
  /* a looser factor lets it go further, to a later step */
  snprintf(args, sizeof args,
           "train --model %s --data idx:%s/dv --optimizer sgd --lr 1e6 --epochs 3 --batch 16 --quiet "
           "--divergence-factor 1e30 --nan-check --out %s/dv2",
           spec, dir, dir);
  tu_run_result r;
  tu_cli_run(&r, dir, "", args);
  if (r.status == 0) {
    /* it may legitimately finish: then every recorded loss is finite */
    assert_null(strstr(r.err, "diverged"));
  } else {
    assert_int_equal(r.status, 1);
    assert_null(strstr(r.err, "(step 2)"));
  }
  /* an infinite input ((x - 1e35) / 1e-6) with --nan-check: stopped at step 1, the first layer named */
  snprintf(args, sizeof args,
           "train --model %s --data idx:%s/dv --input-norm 1e35,1e-6 --nan-check --epochs 1 --batch 16 --quiet "
           "--out %s/dv3",
           spec, dir, dir);
  expect_error(args, "(step 1)", "the first bad output is layer 0 (flatten, line 2)");
  /* the factor is part of the recipe: a resume may not change it */
  snprintf(args, sizeof args, "train --resume %s/dv2 --divergence-factor 10", dir);
  if (r.status == 0) expect_error(args, "--divergence-factor", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_divergence_guard),
      cmocka_unit_test(test_inspect_activations),
      cmocka_unit_test(test_spec_sizes),
      cmocka_unit_test(test_flatten_overflow),
      cmocka_unit_test(test_idx_bombs),
      cmocka_unit_test(test_history_long),
      cmocka_unit_test(test_many_layers_load),
      cmocka_unit_test(test_fifo),
      cmocka_unit_test(test_resource_limits),
      cmocka_unit_test(test_escaped_messages),
      cmocka_unit_test(test_hostile_hdf5),
      cmocka_unit_test(test_first_bad_output),
  };
  dir = tu_tempdir("robust");
  if (!dir) return 1;
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  tu_rmtree(dir);
  free(dir);
  return rc;
}
