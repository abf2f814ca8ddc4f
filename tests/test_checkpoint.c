/* Checkpoints (safetensors, ARCHITECTURE.md §6): bitwise round trip, atomic saves, every kind of
 * corrupt file rejected with a message naming the file and the problem, and a state_dict
 * written by PyTorch (tests/fixtures/gen_torch_checkpoint.py) giving PyTorch's logits.
 * Files are written to a fresh mkdtemp dir under /tmp. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nn_test.h"

#include "fixture.h"
#include "normnet.h"

static const char *SMALL_SPEC =
    "input shape=1x6x6\n"
    "conv2d filters=2 kernel=3\n"
    "batchnorm\n"
    "relu\n"
    "flatten\n"
    "dense units=3\n";

/* ---- temp dir and file helpers ------------------------------------------------------- */


/* dir/name into a caller buffer of 1024 bytes. */
static const char *jp(char *buf, const char *dir, const char *name) {
  int n = snprintf(buf, 1024, "%s/%s", dir, name);
  assert_true(n > 0 && n < 1024);
  return buf;
}

static void write_bytes(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (size) assert_int_equal(fwrite(data, 1, size, f), size);
  assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  unsigned char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

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

/* ---- safetensors helpers (independent of the library's reader) ------------------------- */

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Write [len][header text][data]. */
static void st_write_raw(const char *path, const char *hdr, const unsigned char *data, size_t dlen) {
  size_t hl = strlen(hdr);
  unsigned char *buf = malloc(8 + hl + dlen + 1);
  assert_non_null(buf);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, hdr, hl);
  if (dlen) memcpy(buf + 8 + hl, data, dlen);
  write_bytes(path, buf, 8 + hl + dlen);
  free(buf);
}

static void st_write(const char *path, const json_t *hdr, const unsigned char *data, size_t dlen) {
  char *text = json_dumps(hdr, JSON_COMPACT);
  assert_non_null(text);
  st_write_raw(path, text, data, dlen);
  free(text);
}

/* A parsed safetensors file: header JSON and a copy of the data section. */
typedef struct {
  json_t *hdr;
  char *hdr_text;
  unsigned char *data;
  size_t dlen;
} st_file;

static void st_read(const char *path, st_file *s) {
  size_t n;
  unsigned char *b = read_bytes(path, &n);
  assert_true(n >= 8);
  uint64_t hl = le64(b);
  assert_true(hl <= n - 8);
  s->hdr_text = malloc(hl + 1);
  assert_non_null(s->hdr_text);
  memcpy(s->hdr_text, b + 8, hl);
  s->hdr_text[hl] = 0;
  json_error_t je;
  s->hdr = json_loadb(s->hdr_text, hl, 0, &je);
  assert_non_null(s->hdr);
  s->dlen = n - 8 - hl;
  s->data = malloc(s->dlen + 1);
  assert_non_null(s->data);
  memcpy(s->data, b + 8 + hl, s->dlen);
  free(b);
}

static void st_free(st_file *s) {
  json_decref(s->hdr);
  free(s->hdr_text);
  free(s->data);
}

/* A fresh copy of s with the data section grown by `extra` zero bytes. */
static unsigned char *grown(const st_file *s, size_t extra) {
  unsigned char *d = calloc(s->dlen + extra + 1, 1);
  assert_non_null(d);
  memcpy(d, s->data, s->dlen);
  return d;
}

/* ---- model helpers ------------------------------------------------------------------ */

static nn_model *make_model(const char *spec_text, uint64_t seed) {
  nn_error err = {0};
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  if (nn_spec_parse(spec_text, "test", &spec, &err) || nn_model_create(spec, &m, &err)) fail_msg("%s", err.msg);
  nn_spec_free(spec);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  return m;
}

static nn_spec *parse_spec(const char *text) {
  nn_error err = {0};
  nn_spec *spec = NULL;
  if (nn_spec_parse(text, "test", &spec, &err)) fail_msg("%s", err.msg);
  return spec;
}

/* Give the running statistics and num_batches_tracked non-initial values. */
static void set_state(nn_model *m, int64_t nbt) {
  int nt = nn_model_num_tensors(m);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    if (!v.data) {
      *v.count_value = nbt;
    } else if (v.is_state) {
      for (size_t j = 0; j < v.count; j++) v.data[j] = 0.25f + 0.1f * (float)(j + 1) + (float)i;
    }
  }
}

/* Fail unless a and b have the same tensors (names, shapes) with bitwise equal values. */
static void assert_same_tensors(nn_model *a, nn_model *b) {
  int nt = nn_model_num_tensors(a);
  assert_int_equal(nn_model_num_tensors(b), nt);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view va, vb;
    nn_model_tensor(a, i, &va);
    nn_model_tensor(b, i, &vb);
    assert_string_equal(va.name, vb.name);
    assert_int_equal(va.ndim, vb.ndim);
    for (int d = 0; d < va.ndim; d++) assert_int_equal(va.dims[d], vb.dims[d]);
    assert_int_equal(va.count, vb.count);
    assert_int_equal(va.is_state, vb.is_state);
    if (!va.data) {
      assert_null(vb.data);
      assert_int_equal(*va.count_value, *vb.count_value);
    } else {
      assert_non_null(vb.data);
      if (memcmp(va.data, vb.data, va.count * sizeof(float)) != 0) fail_msg("tensor %s differs", va.name);
    }
  }
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

static void save_ok(nn_model *m, const char *path) {
  nn_error err = {0};
  if (nn_checkpoint_save(m, path, NULL, 0, &err)) fail_msg("%s", err.msg);
}

/* ---- (1) round trip ---------------------------------------------------------------- */

static void test_roundtrip(void **state) {
  const char *dir = *state;
  char path[1024];
  jp(path, dir, "small.safetensors");
  nn_model *m = make_model(SMALL_SPEC, 42);
  set_state(m, 17);
  nn_error err = {0};
  nn_meta_pair extra[] = {{"epoch", "3"}, {"note", "round trip \"quoted\" \xc3\xa9"}};
  if (nn_checkpoint_save(m, path, extra, 2, &err)) fail_msg("%s", err.msg);
  assert_int_equal(count_named(dir, ".tmp."), 0);

  /* The file is plain safetensors: contiguous offsets in state_dict order. */
  st_file s;
  st_read(path, &s);
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
  st_free(&s);

  nn_model *b = NULL;
  if (nn_checkpoint_load(path, NULL, &b, &err)) fail_msg("%s", err.msg);
  assert_same_tensors(m, b);
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
  nn_spec *spec = parse_spec(SMALL_SPEC);
  nn_model *c = NULL;
  if (nn_checkpoint_load(path, spec, &c, &err)) fail_msg("%s", err.msg);
  assert_same_tensors(m, c);
  char path2[1024];
  jp(path2, dir, "again.safetensors");
  if (nn_checkpoint_save(c, path2, extra, 2, &err)) fail_msg("%s", err.msg);
  size_t n1, n2;
  unsigned char *b1 = read_bytes(path, &n1), *b2 = read_bytes(path2, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  free(b1);
  free(b2);

  /* A BN layer without affine/running stats and a model without BN round-trip too. */
  const char *other =
      "input shape=12\ndense units=8 bias=0\nbatchnorm affine=0 momentum=cumulative\nrelu\n"
      "dense units=4\nbatchnorm track_running_stats=0\ndense units=2\n";
  nn_model *o = make_model(other, 7);
  set_state(o, 5);
  char path3[1024];
  jp(path3, dir, "other.safetensors");
  save_ok(o, path3);
  nn_model *o2 = NULL;
  if (nn_checkpoint_load(path3, NULL, &o2, &err)) fail_msg("%s", err.msg);
  assert_same_tensors(o, o2);
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
  jp(path, dir, "x.safetensors");
  nn_model *m = make_model(SMALL_SPEC, 1);
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
  unsigned char *b = read_bytes(path, &n);
  assert_int_equal(n, want_len);
  assert_memory_equal(b, want, n);
  free(b);
}

static void test_atomic(void **state) {
  const char *dir = *state;
  char path[1024], bad[1024], sub[1024];
  jp(path, dir, "good.safetensors");
  nn_model *a = make_model(SMALL_SPEC, 1), *b = make_model(SMALL_SPEC, 2);
  set_state(b, 99);
  save_ok(a, path);
  size_t good_len;
  unsigned char *good = read_bytes(path, &good_len);
  nn_error err = {0};

  /* A directory that does not exist. */
  jp(bad, dir, "no-such-dir/c.safetensors");
  assert_int_equal(nn_checkpoint_save(b, bad, NULL, 0, &err), NN_ERR_IO);
  assert_int_equal(strncmp(err.msg, bad, strlen(bad)), 0);
  assert_non_null(strstr(err.msg, "temporary"));

  /* A path whose directory part is a file. */
  jp(bad, path, "x.safetensors");
  assert_int_equal(nn_checkpoint_save(b, bad, NULL, 0, &err), NN_ERR_IO);
  assert_unchanged(path, good, good_len);

  /* A directory that is not writable (only meaningful when not root). */
  if (geteuid() != 0) {
    jp(sub, dir, "ro");
    assert_int_equal(mkdir(sub, 0500), 0);
    jp(bad, sub, "c.safetensors");
    assert_int_equal(nn_checkpoint_save(b, bad, NULL, 0, &err), NN_ERR_IO);
    assert_int_equal(count_named(sub, ""), 2); /* . and .. */
    chmod(sub, 0700);
  }

  /* Failure at the last step: the target is a directory, so the rename fails. */
  jp(sub, dir, "adir");
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
  save_ok(b, path);
  assert_int_equal(count_named(dir, ".tmp."), 0);
  nn_model *c = NULL;
  if (nn_checkpoint_load(path, NULL, &c, &err)) fail_msg("%s", err.msg);
  assert_same_tensors(b, c);
  struct stat fst;
  assert_int_equal(stat(path, &fst), 0);
  assert_int_equal(fst.st_mode & 0777, 0644);

  nn_model_free(c);
  free(good);
  nn_model_free(a);
  nn_model_free(b);
}

/* ---- (3) corrupt files ------------------------------------------------------------- */

/* Load path (with spec text or NULL); fail unless it is rejected with `code` and a message
 * that starts with the path and contains every given word. */
static void expect_reject(const char *path, const char *spec_text, nn_status code, const char *w1, const char *w2) {
  nn_error err = {0};
  nn_model *m = (nn_model *)&err; /* must be reset to NULL */
  nn_spec *spec = spec_text ? parse_spec(spec_text) : NULL;
  nn_status s = nn_checkpoint_load(path, spec, &m, &err);
  nn_spec_free(spec);
  if (s == NN_OK) {
    nn_model_free(m);
    fail_msg("%s: loaded, expected an error with '%s'", path, w1);
  }
  assert_null(m);
  if (s != code) fail_msg("status %d (%s), expected %d: %s", s, nn_status_name(s), code, err.msg);
  assert_int_equal(err.code, code);
  if (strncmp(err.msg, path, strlen(path)) != 0) fail_msg("message does not start with the path: %s", err.msg);
  if (w1 && !strstr(err.msg, w1)) fail_msg("message lacks '%s': %s", w1, err.msg);
  if (w2 && !strstr(err.msg, w2)) fail_msg("message lacks '%s': %s", w2, err.msg);
  print_message("  ok: %s\n", err.msg);
}

static void set_offsets(json_t *hdr, const char *name, json_int_t b, json_int_t e) {
  json_t *t = json_object_get(hdr, name);
  assert_non_null(t);
  assert_int_equal(json_object_set_new(t, "data_offsets", json_pack("[I,I]", b, e)), 0);
}

static json_int_t offset_of(json_t *hdr, const char *name, int which) {
  json_t *t = json_object_get(hdr, name);
  assert_non_null(t);
  return json_integer_value(json_array_get(json_object_get(t, "data_offsets"), (size_t)which));
}

static void test_corrupt(void **state) {
  const char *dir = *state;
  char good[1024], p[1024];
  jp(good, dir, "good.safetensors");
  nn_model *m = make_model(SMALL_SPEC, 3);
  set_state(m, 4);
  save_ok(m, good);
  st_file s;
  st_read(good, &s);
  json_t *h;

  /* File shorter than the 8-byte length. */
  jp(p, dir, "short.safetensors");
  write_bytes(p, "\x10\0\0\0\0", 5);
  expect_reject(p, NULL, NN_ERR_FORMAT, "short", NULL);

  /* Empty file. */
  jp(p, dir, "empty.safetensors");
  write_bytes(p, "", 0);
  expect_reject(p, NULL, NN_ERR_FORMAT, "short", NULL);

  /* Header length larger than the file. */
  jp(p, dir, "hlen.safetensors");
  write_bytes(p, "\xe8\x03\0\0\0\0\0\0{}", 10);
  expect_reject(p, NULL, NN_ERR_FORMAT, "header length", "larger than the file");

  /* Header length absurdly large (and larger than the file). */
  write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  expect_reject(p, NULL, NN_ERR_FORMAT, "header length", NULL);

  /* Header not JSON. */
  jp(p, dir, "notjson.safetensors");
  st_write_raw(p, "{\"0.weight\": {\"dtype\": ", s.data, s.dlen);
  expect_reject(p, NULL, NN_ERR_FORMAT, "not valid JSON", NULL);
  st_write_raw(p, "safetensors?", s.data, s.dlen);
  expect_reject(p, NULL, NN_ERR_FORMAT, "JSON", NULL);
  /* JSON followed by garbage inside the header length. */
  st_write_raw(p, "{} x", s.data, s.dlen);
  expect_reject(p, NULL, NN_ERR_FORMAT, "JSON", NULL);

  /* Header JSON not an object. */
  jp(p, dir, "array.safetensors");
  st_write_raw(p, "[1, 2, 3]", s.data, s.dlen);
  expect_reject(p, NULL, NN_ERR_FORMAT, "not a JSON object", NULL);

  /* Tensor entry not an object. */
  jp(p, dir, "entry.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(h, "0.bias", json_integer(3));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "0.bias", "not an object");

  /* Tensor missing dtype. */
  jp(p, dir, "nodtype.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_del(json_object_get(h, "1.bias"), "dtype");
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "1.bias", "dtype");

  /* Unknown dtype string. */
  jp(p, dir, "unkdtype.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "1.bias"), "dtype", json_string("F31"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "1.bias", "unknown dtype");

  /* Wrong dtype (same byte size, so only the dtype is wrong). */
  jp(p, dir, "dtype.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "0.bias"), "dtype", json_string("I32"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "0.bias", "dtype I32");
  /* num_batches_tracked as a float. */
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "1.num_batches_tracked"), "dtype", json_string("F64"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "1.num_batches_tracked", "dtype F64");

  /* Shape does not match the byte size. */
  jp(p, dir, "size.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape", json_pack("[i,i]", 3, 33));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "size mismatch");
  /* Negative and non-integer dimensions. */
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape", json_pack("[i,i]", -3, -32));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "shape");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape", json_pack("[f,i]", 3.0, 32));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "shape");
  /* A shape whose element count overflows. */
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape",
                      json_pack("[I,I,I]", (json_int_t)1 << 40, (json_int_t)1 << 40, (json_int_t)1 << 40));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "size mismatch");

  /* Offsets out of bounds, malformed or reversed. */
  jp(p, dir, "bounds.safetensors");
  h = json_deep_copy(s.hdr);
  set_offsets(h, "4.bias", (json_int_t)s.dlen, (json_int_t)s.dlen + 12);
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "out of bounds");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.bias"), "data_offsets", json_pack("[i]", 0));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "data_offsets");
  h = json_deep_copy(s.hdr);
  set_offsets(h, "4.bias", 12, 0);
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "data_offsets");
  h = json_deep_copy(s.hdr);
  set_offsets(h, "4.bias", -12, 0);
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "data_offsets");

  /* Overlapping tensors (same size, so each entry alone is valid). */
  jp(p, dir, "overlap.safetensors");
  h = json_deep_copy(s.hdr);
  json_int_t b1 = offset_of(h, "1.weight", 0);
  set_offsets(h, "1.bias", b1 + 4, b1 + 12);
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "overlapping", "1.bias");
  /* A zero-length tensor sorted between two overlapping ones must not hide the overlap
   * (regression: neighbours were compared pairwise, and an empty one broke the chain). */
  {
    static const char *hdr =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    unsigned char bytes[16] = {0};
    size_t hl = strlen(hdr), pad = (8 - hl % 8) % 8;
    char padded[512];
    snprintf(padded, sizeof padded, "%s%*s", hdr, (int)pad, "");
    st_write_raw(p, padded, bytes, 12);
    nn_checkpoint *c = NULL;
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_open(p, &c, &err), NN_ERR_FORMAT);
    assert_null(c);
    assert_non_null(strstr(err.msg, "overlapping"));
    assert_non_null(strstr(err.msg, "'a'"));
    assert_non_null(strstr(err.msg, "'b'"));
    /* and empty tensors anywhere, without overlaps, are fine */
    static const char *ok =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    hl = strlen(ok), pad = (8 - hl % 8) % 8;
    snprintf(padded, sizeof padded, "%s%*s", ok, (int)pad, "");
    st_write_raw(p, padded, bytes, 12);
    if (nn_checkpoint_open(p, &c, &err)) fail_msg("%s", err.msg);
    nn_checkpoint_close(c);
  }

  /* Duplicate keys. */
  jp(p, dir, "dup.safetensors");
  {
    const char *dup = "{\"1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},";
    size_t n = strlen(dup) + strlen(s.hdr_text) + 1;
    char *t = malloc(n);
    assert_non_null(t);
    snprintf(t, n, "%s%s", dup, s.hdr_text + 1);
    st_write_raw(p, t, s.data, s.dlen);
    free(t);
  }
  expect_reject(p, NULL, NN_ERR_FORMAT, "JSON", "duplicate");

  /* A tensor the spec needs is missing. */
  jp(p, dir, "missing.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_del(h, "1.running_var");
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "missing tensor", "1.running_var");

  /* A shape that differs from what the spec needs. */
  expect_reject(good, "input shape=1x6x6\nconv2d filters=3 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=3\n",
                NN_ERR_SHAPE, "'0.weight' has shape [2,1,3,3]", "needs [3,1,3,3]");
  jp(p, dir, "nbtshape.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "1.num_batches_tracked"), "shape", json_pack("[i]", 1));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_SHAPE, "1.num_batches_tracked", "shape [1]");

  /* Truncated data section. */
  jp(p, dir, "trunc.safetensors");
  {
    size_t n;
    unsigned char *b = read_bytes(good, &n);
    write_bytes(p, b, n - 10);
    free(b);
  }
  expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "truncated");

  /* An extra tensor the spec does not know; "optim.*" is allowed. */
  jp(p, dir, "extra.safetensors");
  {
    unsigned char *d = grown(&s, 16);
    h = json_deep_copy(s.hdr);
    json_object_set_new(h, "9.weight", json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", "F32", "shape", 2, 2, "data_offsets", (json_int_t)s.dlen, (json_int_t)s.dlen + 16));
    st_write(p, h, d, s.dlen + 16);
    json_decref(h);
    expect_reject(p, NULL, NN_ERR_FORMAT, "unexpected tensor", "9.weight");

    h = json_deep_copy(s.hdr);
    json_object_set_new(h, "optim.m.0.weight", json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", "BF16", "shape", 2, 4, "data_offsets", (json_int_t)s.dlen, (json_int_t)s.dlen + 16));
    st_write(p, h, d, s.dlen + 16);
    json_decref(h);
    free(d);
    nn_error err = {0};
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, NULL, &o, &err)) fail_msg("%s", err.msg);
    assert_same_tensors(m, o);
    nn_model_free(o);
  }

  /* Metadata problems. */
  jp(p, dir, "meta.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "__metadata__"), "epoch", json_integer(3));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "__metadata__", "epoch");
  h = json_deep_copy(s.hdr);
  json_object_set_new(h, "__metadata__", json_string("x"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "__metadata__", NULL);
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "__metadata__"), "format", json_string("normnet/9"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "unsupported", "normnet/9");
  {
    char *v = NULL; /* the metadata of a newer format can still be read */
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_meta(p, "format", &v, &err), NN_OK);
    assert_string_equal(v, "normnet/9");
    free(v);
  }
  h = json_deep_copy(s.hdr); /* another producer's format tag is not ours to judge */
  json_object_set_new(json_object_get(h, "__metadata__"), "format", json_string("pt"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  {
    nn_error err = {0};
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, NULL, &o, &err)) fail_msg("%s", err.msg);
    assert_same_tensors(m, o);
    nn_model_free(o);
  }
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "__metadata__"), "normnet.spec", json_string("input shape=1x6x6\nbogus\n"));
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "normnet.spec:2", "bogus");
  {
    char *v = NULL;
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_meta(p, "normnet.spec", &v, &err), NN_OK);
    assert_string_equal(v, "input shape=1x6x6\nbogus\n");
    free(v);
  }

  /* A state_dict without metadata: rejected without a spec, loaded with one. */
  jp(p, dir, "plain.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_del(h, "__metadata__");
  st_write(p, h, s.data, s.dlen);
  json_decref(h);
  expect_reject(p, NULL, NN_ERR_FORMAT, "has no normnet metadata", "--model");
  {
    nn_error err = {0};
    nn_spec *spec = parse_spec(SMALL_SPEC);
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, spec, &o, &err)) fail_msg("%s", err.msg);
    assert_same_tensors(m, o);
    nn_model_free(o);
    nn_spec_free(spec);
    char *v = (char *)"sentinel";
    assert_int_equal(nn_checkpoint_meta(p, "normnet.spec", &v, &err), NN_OK);
    assert_null(v);
  }

  /* F64 float tensors are accepted and rounded (exactly, for float32 values). */
  jp(p, dir, "f64.safetensors");
  {
    json_int_t b = offset_of(s.hdr, "4.weight", 0), e = offset_of(s.hdr, "4.weight", 1);
    size_t cnt = (size_t)(e - b) / 4;
    unsigned char *d = grown(&s, cnt * 8);
    for (size_t j = 0; j < cnt; j++) {
      float f;
      memcpy(&f, s.data + b + 4 * j, 4);
      double x = f;
      uint64_t u;
      memcpy(&u, &x, 8);
      for (int k = 0; k < 8; k++) d[s.dlen + 8 * j + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    h = json_deep_copy(s.hdr);
    json_object_set_new(json_object_get(h, "4.weight"), "dtype", json_string("F64"));
    set_offsets(h, "4.weight", (json_int_t)s.dlen, (json_int_t)s.dlen + (json_int_t)cnt * 8);
    st_write(p, h, d, s.dlen + cnt * 8);
    json_decref(h);
    free(d);
    nn_error err = {0};
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, NULL, &o, &err)) fail_msg("%s", err.msg);
    assert_same_tensors(m, o);
    nn_model_free(o);
  }

  /* Not a file at all. */
  jp(p, dir, "nonexistent.safetensors");
  expect_reject(p, NULL, NN_ERR_IO, "cannot open", NULL);
  {
    char *v = (char *)"sentinel";
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_meta(p, "format", &v, &err), NN_ERR_IO);
    assert_null(v);
    assert_int_equal(strncmp(err.msg, p, strlen(p)), 0);
  }
  expect_reject(dir, NULL, NN_ERR_IO, "directory", NULL);

  st_free(&s);
  nn_model_free(m);
}

/* ---- (4) a checkpoint written by PyTorch -------------------------------------------- */

static void test_torch_fixture(void **state) {
  (void)state;
  const char *fdir = getenv("NN_FIXTURES");
  assert_non_null(fdir);
  char path[1024];
  jp(path, fdir, "torch_small.safetensors");

  /* No normnet metadata: the spec must be given. */
  expect_reject(path, NULL, NN_ERR_FORMAT, "has no normnet metadata", NULL);

  nn_error err = {0};
  nn_spec *spec = parse_spec(SMALL_SPEC);
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
  jp(out, tmpdir, "resaved.safetensors");
  save_ok(m, out);
  nn_model *m2 = NULL;
  if (nn_checkpoint_load(out, NULL, &m2, &err)) fail_msg("%s", err.msg);
  assert_same_tensors(m, m2);
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
      cmocka_unit_test_setup_teardown(test_corrupt, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test(test_torch_fixture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
