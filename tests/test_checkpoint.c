/* Checkpoints (safetensors, ARCHITECTURE.md §6): bitwise round trip, atomic saves, and a
 * state_dict written by PyTorch (tests/fixtures/gen_torch_checkpoint.py) giving PyTorch's
 * logits. Every kind of corrupt file is in test_checkpoint_corrupt.c. Files are written to a
 * fresh mkdtemp dir under /tmp. */
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt_check.h"
#include "cli_run.h"
#include "nn_test.h"

#include "fixture.h"
#include "normnet.h"

/* Number of entries of dir whose name contains `part`. */
static int count_named(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, part)) n++;
  closedir(d);
  return n;
}

static float *test_input(int n, int size) {
  float *x = malloc((size_t)n * (size_t)size * sizeof *x);
  assert_non_null(x);
  uint32_t s = 12345;
  for (int i = 0; i < n * size; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((double)(s >> 8) / (double)(1u << 24)) * 4.0f - 2.0f;
  }
  return x;
}

/* Eval-mode logits (a malloc'd copy). */
static float *eval_logits(nn_model *m, const float *x, int n) {
  nn_error err = {0};
  const float *logits = NULL;
  if (nn_model_forward(m, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &logits, &err)) fail_msg("%s", err.msg);
  size_t k = (size_t)n * (size_t)nn_model_output_size(m);
  float *c = malloc(k * sizeof *c);
  assert_non_null(c);
  memcpy(c, logits, k * sizeof *c);
  return c;
}

/* ---- (1) round trip ---------------------------------------------------------------- */

static void test_roundtrip(void **state) {
  const char *dir = *state;
  char path[1024];
  tu_join(path, dir, "small.safetensors");
  nn_model *m = tu_model(ck_small_spec, 42);
  ck_set_state(m, 17);
  nn_error err = {0};
  nn_meta_pair extra[] = {{"epoch", "3"}, {"note", "round trip \"quoted\" \xc3\xa9"}};
  if (nn_checkpoint_save(m, path, extra, 2, &err)) fail_msg("%s", err.msg);
  assert_int_equal(count_named(dir, ".tmp."), 0);

  /* The file is plain safetensors: contiguous offsets in state_dict order. */
  ck_st_file s;
  ck_st_read(path, &s);
  assert_int_equal((strlen(s.hdr_text) + 8) % 8, 0);
  uint64_t off = 0;
  for (int i = 0; i < nn_model_num_tensors(m); i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    json_t *e = json_object_get(s.hdr, v.name);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "dtype")), v.data ? "F32" : "I64");
    json_t *shape = json_object_get(e, "shape");
    assert_int_equal(json_array_size(shape), v.ndim);
    json_t *o = json_object_get(e, "data_offsets");
    assert_int_equal(json_integer_value(json_array_get(o, 0)), off);
    off += v.count * (v.data ? 4 : 8);
    assert_int_equal(json_integer_value(json_array_get(o, 1)), off);
  }
  assert_int_equal(off, s.dlen);
  assert_int_equal(json_object_size(s.hdr), nn_model_num_tensors(m) + 1);
  ck_st_free(&s);

  nn_model *b = NULL;
  if (nn_checkpoint_load(path, NULL, &b, &err)) fail_msg("%s", err.msg);
  tu_assert_same_tensors(m, b);
  char *t1 = nn_spec_to_text(nn_model_spec(m)), *t2 = nn_spec_to_text(nn_model_spec(b));
  assert_string_equal(t1, t2);

  /* Metadata. */
  char *v = NULL;
  assert_int_equal(nn_checkpoint_meta(path, "format", &v, &err), NN_OK);
  assert_string_equal(v, "normnet/1");
  free(v);
  assert_int_equal(nn_checkpoint_meta(path, "normnet.spec", &v, &err), NN_OK);
  assert_string_equal(v, t1);
  free(v);
  assert_int_equal(nn_checkpoint_meta(path, "epoch", &v, &err), NN_OK);
  assert_string_equal(v, "3");
  free(v);
  assert_int_equal(nn_checkpoint_meta(path, "note", &v, &err), NN_OK);
  assert_string_equal(v, extra[1].value);
  free(v);
  v = (char *)"sentinel";
  assert_int_equal(nn_checkpoint_meta(path, "absent", &v, &err), NN_OK);
  assert_null(v);
  free(t1);
  free(t2);

  /* Same outputs, bit for bit. */
  int n = 5, in = nn_model_input_size(m);
  float *x = test_input(n, in);
  float *ya = eval_logits(m, x, n), *yb = eval_logits(b, x, n);
  assert_memory_equal(ya, yb, (size_t)n * (size_t)nn_model_output_size(m) * sizeof(float));
  free(ya);
  free(yb);

  /* Loading with an explicit (identical) spec works too; saving again gives the same bytes. */
  nn_spec *spec = tu_spec(ck_small_spec);
  nn_model *c = NULL;
  if (nn_checkpoint_load(path, spec, &c, &err)) fail_msg("%s", err.msg);
  tu_assert_same_tensors(m, c);
  char path2[1024];
  tu_join(path2, dir, "again.safetensors");
  if (nn_checkpoint_save(c, path2, extra, 2, &err)) fail_msg("%s", err.msg);
  size_t n1, n2;
  unsigned char *b1 = tu_read_file(path, &n1), *b2 = tu_read_file(path2, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  free(b1);
  free(b2);

  /* A BN layer without affine/running stats and a model without BN round-trip too. */
  const char *other =
      "input shape=12\ndense units=8 bias=0\nbatchnorm affine=0 momentum=cumulative\nrelu\n"
      "dense units=4\nbatchnorm track_running_stats=0\ndense units=2\n";
  nn_model *o = tu_model(other, 7);
  ck_set_state(o, 5);
  char path3[1024];
  tu_join(path3, dir, "other.safetensors");
  ck_save(o, path3);
  nn_model *o2 = NULL;
  if (nn_checkpoint_load(path3, NULL, &o2, &err)) fail_msg("%s", err.msg);
  tu_assert_same_tensors(o, o2);
  float *xo = test_input(3, 12);
  float *yo = eval_logits(o, xo, 3), *yo2 = eval_logits(o2, xo, 3);
  assert_memory_equal(yo, yo2, 3 * 2 * sizeof(float));
  free(xo);
  free(yo);
  free(yo2);

  nn_model_free(o);
  nn_model_free(o2);
  nn_spec_free(spec);
  nn_model_free(c);
  free(x);
  nn_model_free(b);
  nn_model_free(m);
}

static void test_save_bad_args(void **state) {
  const char *dir = *state;
  char path[1024];
  tu_join(path, dir, "x.safetensors");
  nn_model *m = tu_model(ck_small_spec, 1);
  nn_error err = {0};
  nn_meta_pair reserved[] = {{"format", "mine"}};
  assert_int_equal(nn_checkpoint_save(m, path, reserved, 1, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "reserved"));
  nn_meta_pair dup[] = {{"a", "1"}, {"a", "2"}};
  assert_int_equal(nn_checkpoint_save(m, path, dup, 2, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "twice"));
  nn_meta_pair null_value[] = {{"a", NULL}};
  assert_int_equal(nn_checkpoint_save(m, path, null_value, 1, &err), NN_ERR_ARG);
  nn_meta_pair bad_utf8[] = {{"a", "\xff\xfe"}};
  assert_int_equal(nn_checkpoint_save(m, path, bad_utf8, 1, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "UTF-8"));
  nn_meta_pair bad_key[] = {{"\xc3(", "1"}};
  assert_int_equal(nn_checkpoint_save(m, path, bad_key, 1, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "UTF-8"));
  assert_int_equal(count_named(dir, "x.safetensors"), 0);
  nn_model_free(m);
}

/* ---- (2) atomic saves -------------------------------------------------------------- */

static void assert_unchanged(const char *path, const unsigned char *want, size_t want_len) {
  size_t n;
  unsigned char *b = tu_read_file(path, &n);
  assert_int_equal(n, want_len);
  assert_memory_equal(b, want, n);
  free(b);
}

static void test_atomic(void **state) {
  const char *dir = *state;
  char path[1024], bad[1024], sub[1024];
  tu_join(path, dir, "good.safetensors");
  nn_model *a = tu_model(ck_small_spec, 1), *b = tu_model(ck_small_spec, 2);
  ck_set_state(b, 99);
  ck_save(a, path);
  size_t good_len;
  unsigned char *good = tu_read_file(path, &good_len);
  nn_error err = {0};

  /* A directory that does not exist. */
  tu_join(bad, dir, "no-such-dir/c.safetensors");
  assert_int_equal(nn_checkpoint_save(b, bad, NULL, 0, &err), NN_ERR_IO);
  assert_int_equal(strncmp(err.msg, bad, strlen(bad)), 0);
  assert_non_null(strstr(err.msg, "temporary"));

  /* A path whose directory part is a file. */
  tu_join(bad, path, "x.safetensors");
  assert_int_equal(nn_checkpoint_save(b, bad, NULL, 0, &err), NN_ERR_IO);
  assert_unchanged(path, good, good_len);

  /* A directory that is not writable (only meaningful when not root). */
  if (geteuid() != 0) {
    tu_join(sub, dir, "ro");
    assert_int_equal(mkdir(sub, 0500), 0);
    tu_join(bad, sub, "c.safetensors");
    assert_int_equal(nn_checkpoint_save(b, bad, NULL, 0, &err), NN_ERR_IO);
    assert_int_equal(count_named(sub, ""), 2); /* . and .. */
    chmod(sub, 0700);
  }

  /* Failure at the last step: the target is a directory, so the rename fails. */
  tu_join(sub, dir, "adir");
  assert_int_equal(mkdir(sub, 0700), 0);
  assert_int_equal(nn_checkpoint_save(b, sub, NULL, 0, &err), NN_ERR_IO);
  assert_int_equal(strncmp(err.msg, sub, strlen(sub)), 0);
  assert_non_null(strstr(err.msg, "rename"));
  struct stat st;
  assert_int_equal(stat(sub, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(count_named(dir, ".tmp."), 0);

  /* Failure in the middle of writing (the disk "fills up" after 256 bytes): the old file
   * stays byte-identical and no temporary file is left. */
  struct rlimit old_lim, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
  void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old_lim;
  lim.rlim_cur = 256;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  nn_status s = nn_checkpoint_save(b, path, NULL, 0, &err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
  signal(SIGXFSZ, old_sig);
  assert_int_equal(s, NN_ERR_IO);
  assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
  assert_non_null(strstr(err.msg, "write"));
  assert_unchanged(path, good, good_len);
  assert_int_equal(count_named(dir, ".tmp."), 0);

  /* And a successful save replaces the file completely. */
  ck_save(b, path);
  assert_int_equal(count_named(dir, ".tmp."), 0);
  nn_model *c = NULL;
  if (nn_checkpoint_load(path, NULL, &c, &err)) fail_msg("%s", err.msg);
  tu_assert_same_tensors(b, c);
  struct stat fst;
  assert_int_equal(stat(path, &fst), 0);
  assert_int_equal(fst.st_mode & 0777, 0644);

  nn_model_free(c);
  free(good);
  nn_model_free(a);
  nn_model_free(b);
}

/* ---- (3) a checkpoint written by PyTorch -------------------------------------------- */

static void test_torch_fixture(void **state) {
  (void)state;
  const char *fdir = getenv("NN_FIXTURES");
  assert_non_null(fdir);
  char path[1024];
  tu_join(path, fdir, "torch_small.safetensors");

  /* No normnet metadata: the spec must be given. */
  ck_expect_reject(path, NULL, NN_ERR_FORMAT, "has no normnet metadata", NULL);

  nn_error err = {0};
  nn_spec *spec = tu_spec(ck_small_spec);
  nn_model *m = NULL;
  if (nn_checkpoint_load(path, spec, &m, &err)) fail_msg("%s", err.msg);
  nn_spec_free(spec);

  int nt = nn_model_num_tensors(m), found = 0;
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    if (strcmp(v.name, "1.num_batches_tracked") == 0) {
      assert_int_equal(*v.count_value, 3);
      found = 1;
    }
  }
  assert_true(found);

  nn_fixture *fx = fx_load("torch_small.txt");
  int n = 5;
  float *x = fx_floats(fx, "x", (size_t)n * 36);
  size_t nl;
  const double *want = fx_get(fx, "logits", &nl);
  assert_int_equal(nl, (size_t)n * 3);
  const float *logits = NULL;
  if (nn_model_forward(m, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &logits, &err)) fail_msg("%s", err.msg);
  fx_assert_close_fd("torch logits", logits, want, nl, 1e-5, 1e-5);

  /* Saved again by normnet, it still gives the same logits (now with metadata). */
  char *tmpdir = NULL;
  {
    char t[] = "/tmp/normnet-test-ckpt-XXXXXX";
    assert_non_null(mkdtemp(t));
    tmpdir = strdup(t);
  }
  char out[1024];
  tu_join(out, tmpdir, "resaved.safetensors");
  ck_save(m, out);
  nn_model *m2 = NULL;
  if (nn_checkpoint_load(out, NULL, &m2, &err)) fail_msg("%s", err.msg);
  tu_assert_same_tensors(m, m2);
  if (nn_model_forward(m2, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &logits, &err)) fail_msg("%s", err.msg);
  fx_assert_close_fd("resaved logits", logits, want, nl, 1e-5, 1e-5);
  tu_rmtree(tmpdir);
  free(tmpdir);

  nn_model_free(m2);
  free(x);
  fx_free(fx);
  nn_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_save_bad_args, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_atomic, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test(test_torch_fixture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
