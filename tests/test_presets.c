/* Every preset of ARCHITECTURE.md §2 trains from the CLI, with and without normalization, on small
 * data sets made here in each format (IDX for the 28x28 presets, CIFAR-10 binary for the
 * 32x32x3 ones); bad CIFAR inputs give one-line errors naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "normnet.h"
#include "nn_test.h"

static char dir[256];

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) fail_msg("cannot write %s", path);
}

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void make_idx(const char *prefix, int n) {
  char path[512];
  uint8_t *img = malloc(16 + (size_t)n * 784), *lab = malloc(8 + (size_t)n);
  be32(img, 0x803), be32(img + 4, (uint32_t)n), be32(img + 8, 28), be32(img + 12, 28);
  be32(lab, 0x801), be32(lab + 4, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    lab[8 + i] = (uint8_t)(i % 10);
    for (int j = 0; j < 784; j++) img[16 + (size_t)i * 784 + j] = (uint8_t)((j / 28 == 2 * (i % 10)) ? 220 : (i * 31 + j * 7) % 60);
  }
  snprintf(path, sizeof path, "%s/idx/%s-images-idx3-ubyte", dir, prefix);
  write_file(path, img, 16 + (size_t)n * 784);
  snprintf(path, sizeof path, "%s/idx/%s-labels-idx1-ubyte", dir, prefix);
  write_file(path, lab, 8 + (size_t)n);
  free(img), free(lab);
}

/* CIFAR-10 batch: records of label + 3072 bytes. `bad_label` puts a 10 in record 1. */
static void make_cifar(const char *sub, const char *name, int n, int bad_label, int truncate) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  mkdir(path, 0777);
  size_t sz = (size_t)n * 3073;
  uint8_t *b = malloc(sz);
  for (int i = 0; i < n; i++) {
    uint8_t *r = b + (size_t)i * 3073;
    r[0] = (uint8_t)(i % 10);
    for (int j = 0; j < 3072; j++) r[1 + j] = (uint8_t)((j % 32 == 3 * (i % 10)) ? 230 : (i * 17 + j * 3) % 50);
  }
  if (bad_label) b[3073] = 10;
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
  write_file(path, b, sz - (size_t)truncate);
  free(b);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/normnet-presets-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char path[512];
  snprintf(path, sizeof path, "%s/idx", dir);
  mkdir(path, 0777);
  make_idx("train", 64);
  make_idx("t10k", 20);
  for (int k = 1; k <= 5; k++) {
    char name[32];
    snprintf(name, sizeof name, "data_batch_%d.bin", k);
    make_cifar("cifar", name, 12, 0, 0);
  }
  make_cifar("cifar", "test_batch.bin", 10, 0, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rmtree(dir);
  return 0;
}

static int run(const char *args, char *err, size_t errlen) {
  char cmd[4096], path[512];
  snprintf(path, sizeof path, "%s/err.txt", dir);
  snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s' </dev/null", getenv("NN_CLI"), args, path);
  int st = system(cmd);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
  err[n] = 0;
  if (f) fclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_every_preset_trains(void **state) {
  (void)state;
  if (!getenv("NN_CLI")) fail_msg("NN_CLI is not set");
  int checked = 0;
  for (int i = 0; i < nn_preset_count(); i++) {
    const nn_preset *p = nn_preset_at(i);
    int cifar = strstr(p->spec, "3x32x32") != NULL;
    for (int twin = 0; twin < 2; twin++) {
      char args[2048], err[4096], out[600];
      snprintf(out, sizeof out, "%s/run-%s-%d", dir, p->name, twin);
      snprintf(args, sizeof args, "train --model %s --norm %s --data %s:%s/%s --max-steps 3 --batch 8 --quiet --out %s",
               p->name, twin ? "none" : "batch", cifar ? "cifar10" : "idx", dir, cifar ? "cifar" : "idx", out);
      if (run(args, err, sizeof err)) fail_msg("preset %s (norm %s) failed: %s", p->name, twin ? "none" : "batch", err);
      /* the run wrote a loadable checkpoint whose loss is finite on the test split */
      char ckpt[700];
      snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", out);
      nn_model *m = NULL;
      nn_dataset *ds = NULL;
      nn_error e = {0};
      char src[600];
      snprintf(src, sizeof src, "%s:%s/%s", cifar ? "cifar10" : "idx", dir, cifar ? "cifar" : "idx");
      if (nn_checkpoint_load(ckpt, NULL, &m, &e) || nn_dataset_open(src, NN_SPLIT_TEST, &ds, &e)) fail_msg("%s", e.msg);
      double loss, acc;
      assert_int_equal(nn_evaluate(m, ds, p->input_norm, 16, NN_MODE_EVAL, &loss, &acc, &e), NN_OK);
      assert_true(loss > 0 && loss < 50);
      int has_bn = 0;
      for (int l = 0; l < nn_model_num_layers(m); l++) {
        nn_layer_info li;
        nn_model_layer_info(m, l, &li);
        has_bn |= !strcmp(li.kind, "batchnorm");
      }
      assert_int_equal(has_bn, !twin);
      nn_model_free(m);
      nn_dataset_free(ds);
      checked++;
    }
  }
  assert_int_equal(checked, 2 * 5);
}

static void expect_error(const char *args, const char *needle1, const char *needle2) {
  char err[4096];
  int st = run(args, err, sizeof err);
  if (st == 0) fail_msg("'%s' succeeded", args);
  const char *nl = strchr(err, '\n');
  if (!nl || nl[1]) fail_msg("'%s': expected one line on stderr, got:\n%s", args, err);
  if (needle1 && !strstr(err, needle1)) fail_msg("'%s': stderr lacks '%s': %s", args, needle1, err);
  if (needle2 && !strstr(err, needle2)) fail_msg("'%s': stderr lacks '%s': %s", args, needle2, err);
}

static void test_bad_cifar(void **state) {
  (void)state;
  char args[1024];
  for (int k = 1; k <= 5; k++) {
    char name[32];
    snprintf(name, sizeof name, "data_batch_%d.bin", k);
    make_cifar("trunc", name, 4, 0, k == 2 ? 100 : 0);
    make_cifar("label", name, 4, k == 3, 0);
  }
  make_cifar("trunc", "test_batch.bin", 4, 0, 0);
  make_cifar("label", "test_batch.bin", 4, 0, 0);
  snprintf(args, sizeof args, "train --model cifar-gap --data cifar10:%s/trunc --max-steps 1", dir);
  expect_error(args, "data_batch_2.bin", "3073");
  snprintf(args, sizeof args, "train --model cifar-gap --data cifar10:%s/label --max-steps 1", dir);
  expect_error(args, "data_batch_3.bin", "label 10");
  snprintf(args, sizeof args, "train --model cifar-gap --data cifar10:%s/missing --max-steps 1", dir);
  expect_error(args, "missing", NULL);
  /* a 28x28 preset on CIFAR data: the shapes do not fit */
  snprintf(args, sizeof args, "train --model lenet --data cifar10:%s/cifar --max-steps 1", dir);
  expect_error(args, "3072", "784");
}

/* Messages name a preset's layers by the line of its spec text as `summary`, the README and a
 * run's spec.txt show it (input on line 1): the first layer on line 2, and the same lines
 * after the text the library records in a checkpoint is read back (the presets' texts began
 * with a comment line, so lenet's conv2d was "line 3" in a fresh run and line 2 after it). */
static void test_preset_lines(void **state) {
  (void)state;
  for (int i = 0; i < nn_preset_count(); i++) {
    const nn_preset *p = nn_preset_at(i);
    nn_spec *s = NULL, *back = NULL;
    nn_model *a = NULL, *b = NULL;
    nn_error err = {0};
    if (nn_spec_parse(p->spec, p->name, &s, &err) || nn_model_create(s, &a, &err)) fail_msg("%s: %s", p->name, err.msg);
    char *text = nn_spec_to_text(s);
    assert_non_null(text);
    if (nn_spec_parse(text, "spec.txt", &back, &err) || nn_model_create(back, &b, &err)) fail_msg("%s: %s", p->name, err.msg);
    assert_int_equal(nn_model_num_layers(a), nn_model_num_layers(b));
    for (int l = 0; l < nn_model_num_layers(a); l++) {
      nn_layer_info ia, ib;
      nn_model_layer_info(a, l, &ia);
      nn_model_layer_info(b, l, &ib);
      if (ia.line != ib.line || (l == 0 && ia.line != 2))
        fail_msg("%s layer %d: line %d in the preset, %d in its recorded text", p->name, l, ia.line, ib.line);
    }
    free(text);
    nn_model_free(a), nn_model_free(b);
    nn_spec_free(s), nn_spec_free(back);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_preset_trains), cmocka_unit_test(test_bad_cifar),
                                     cmocka_unit_test(test_preset_lines)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
