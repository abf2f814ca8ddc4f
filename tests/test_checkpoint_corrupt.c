/* Checkpoints (safetensors, ARCHITECTURE.md §6): every kind of corrupt file is rejected with
 * a message naming the file and the problem (short files, bad header lengths and JSON, bad
 * dtypes, shapes and offsets, overlaps, duplicate keys, missing and unexpected tensors,
 * metadata), while what safetensors allows (optimizer state, another producer's format tag, a
 * plain state_dict with a spec, F64 tensors) loads. Files are written to a fresh mkdtemp dir. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt_check.h"
#include "cli_run.h"
#include "nn_test.h"

#include "normnet.h"

/* ---- safetensors writers (independent of the library's) ------------------------------ */

/* A fresh copy of s with the data section grown by `extra` zero bytes. */
static unsigned char *grown(const ck_st_file *s, size_t extra) {
  unsigned char *d = calloc(s->dlen + extra + 1, 1);
  assert_non_null(d);
  memcpy(d, s->data, s->dlen);
  return d;
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
  tu_join(good, dir, "good.safetensors");
  nn_model *m = tu_model(ck_small_spec, 3);
  ck_set_state(m, 4);
  ck_save(m, good);
  ck_st_file s;
  ck_st_read(good, &s);
  json_t *h;

  /* File shorter than the 8-byte length. */
  tu_join(p, dir, "short.safetensors");
  tu_write_file(p, "\x10\0\0\0\0", 5);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "short", NULL);

  /* Empty file. */
  tu_join(p, dir, "empty.safetensors");
  tu_write_file(p, "", 0);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "short", NULL);

  /* Header length larger than the file. */
  tu_join(p, dir, "hlen.safetensors");
  tu_write_file(p, "\xe8\x03\0\0\0\0\0\0{}", 10);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "header length", "larger than the file");

  /* Header length absurdly large (and larger than the file). */
  tu_write_file(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "header length", NULL);

  /* Header not JSON. */
  tu_join(p, dir, "notjson.safetensors");
  ck_st_write_raw(p, "{\"0.weight\": {\"dtype\": ", s.data, s.dlen);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "not valid JSON", NULL);
  ck_st_write_raw(p, "safetensors?", s.data, s.dlen);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "JSON", NULL);
  /* JSON followed by garbage inside the header length. */
  ck_st_write_raw(p, "{} x", s.data, s.dlen);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "JSON", NULL);

  /* Header JSON not an object. */
  tu_join(p, dir, "array.safetensors");
  ck_st_write_raw(p, "[1, 2, 3]", s.data, s.dlen);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "not a JSON object", NULL);

  /* Tensor entry not an object. */
  tu_join(p, dir, "entry.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(h, "0.bias", json_integer(3));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "0.bias", "not an object");

  /* Tensor missing dtype. */
  tu_join(p, dir, "nodtype.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_del(json_object_get(h, "1.bias"), "dtype");
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "1.bias", "dtype");

  /* Unknown dtype string. */
  tu_join(p, dir, "unkdtype.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "1.bias"), "dtype", json_string("F31"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "1.bias", "unknown dtype");

  /* Wrong dtype (same byte size, so only the dtype is wrong). */
  tu_join(p, dir, "dtype.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "0.bias"), "dtype", json_string("I32"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "0.bias", "dtype I32");
  /* num_batches_tracked as a float. */
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "1.num_batches_tracked"), "dtype", json_string("F64"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "1.num_batches_tracked", "dtype F64");

  /* Shape does not match the byte size. */
  tu_join(p, dir, "size.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape", json_pack("[i,i]", 3, 33));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "size mismatch");
  /* Negative and non-integer dimensions. */
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape", json_pack("[i,i]", -3, -32));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "shape");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape", json_pack("[f,i]", 3.0, 32));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "shape");
  /* A shape whose element count overflows. */
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.weight"), "shape",
                      json_pack("[I,I,I]", (json_int_t)1 << 40, (json_int_t)1 << 40, (json_int_t)1 << 40));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.weight", "size mismatch");

  /* Offsets out of bounds, malformed or reversed. */
  tu_join(p, dir, "bounds.safetensors");
  h = json_deep_copy(s.hdr);
  set_offsets(h, "4.bias", (json_int_t)s.dlen, (json_int_t)s.dlen + 12);
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "out of bounds");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "4.bias"), "data_offsets", json_pack("[i]", 0));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "data_offsets");
  h = json_deep_copy(s.hdr);
  set_offsets(h, "4.bias", 12, 0);
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "data_offsets");
  h = json_deep_copy(s.hdr);
  set_offsets(h, "4.bias", -12, 0);
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "data_offsets");

  /* Overlapping tensors (same size, so each entry alone is valid). */
  tu_join(p, dir, "overlap.safetensors");
  h = json_deep_copy(s.hdr);
  json_int_t b1 = offset_of(h, "1.weight", 0);
  set_offsets(h, "1.bias", b1 + 4, b1 + 12);
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "overlapping", "1.bias");
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
    ck_st_write_raw(p, padded, bytes, 12);
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
    ck_st_write_raw(p, padded, bytes, 12);
    if (nn_checkpoint_open(p, &c, &err)) fail_msg("%s", err.msg);
    nn_checkpoint_close(c);
  }

  /* Duplicate keys. */
  tu_join(p, dir, "dup.safetensors");
  {
    const char *dup = "{\"1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},";
    size_t n = strlen(dup) + strlen(s.hdr_text) + 1;
    char *t = malloc(n);
    assert_non_null(t);
    snprintf(t, n, "%s%s", dup, s.hdr_text + 1);
    ck_st_write_raw(p, t, s.data, s.dlen);
    free(t);
  }
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "JSON", "duplicate");

  /* A tensor the spec needs is missing. */
  tu_join(p, dir, "missing.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_del(h, "1.running_var");
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "missing tensor", "1.running_var");

  /* A shape that differs from what the spec needs. */
  ck_expect_reject(good, "input shape=1x6x6\nconv2d filters=3 kernel=3\nbatchnorm\nrelu\nflatten\ndense units=3\n",
                   NN_ERR_SHAPE, "'0.weight' has shape [2,1,3,3]", "needs [3,1,3,3]");
  tu_join(p, dir, "nbtshape.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "1.num_batches_tracked"), "shape", json_pack("[i]", 1));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_SHAPE, "1.num_batches_tracked", "shape [1]");

  /* Truncated data section. */
  tu_join(p, dir, "trunc.safetensors");
  {
    size_t n;
    unsigned char *b = tu_read_file(good, &n);
    tu_write_file(p, b, n - 10);
    free(b);
  }
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "4.bias", "truncated");

  /* An extra tensor the spec does not know; "optim.*" is allowed. */
  tu_join(p, dir, "extra.safetensors");
  {
    unsigned char *d = grown(&s, 16);
    h = json_deep_copy(s.hdr);
    json_object_set_new(h, "9.weight", json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", "F32", "shape", 2, 2, "data_offsets", (json_int_t)s.dlen, (json_int_t)s.dlen + 16));
    ck_st_write(p, h, d, s.dlen + 16);
    json_decref(h);
    ck_expect_reject(p, NULL, NN_ERR_FORMAT, "unexpected tensor", "9.weight");

    h = json_deep_copy(s.hdr);
    json_object_set_new(h, "optim.m.0.weight", json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", "BF16", "shape", 2, 4, "data_offsets", (json_int_t)s.dlen, (json_int_t)s.dlen + 16));
    ck_st_write(p, h, d, s.dlen + 16);
    json_decref(h);
    free(d);
    nn_error err = {0};
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, NULL, &o, &err)) fail_msg("%s", err.msg);
    tu_assert_same_tensors(m, o);
    nn_model_free(o);
  }

  /* Metadata problems. */
  tu_join(p, dir, "meta.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "__metadata__"), "epoch", json_integer(3));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "__metadata__", "epoch");
  h = json_deep_copy(s.hdr);
  json_object_set_new(h, "__metadata__", json_string("x"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "__metadata__", NULL);
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "__metadata__"), "format", json_string("normnet/9"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "unsupported", "normnet/9");
  {
    char *v = NULL; /* the metadata of a newer format can still be read */
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_meta(p, "format", &v, &err), NN_OK);
    assert_string_equal(v, "normnet/9");
    free(v);
  }
  h = json_deep_copy(s.hdr); /* another producer's format tag is not ours to judge */
  json_object_set_new(json_object_get(h, "__metadata__"), "format", json_string("pt"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  {
    nn_error err = {0};
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, NULL, &o, &err)) fail_msg("%s", err.msg);
    tu_assert_same_tensors(m, o);
    nn_model_free(o);
  }
  h = json_deep_copy(s.hdr);
  json_object_set_new(json_object_get(h, "__metadata__"), "normnet.spec", json_string("input shape=1x6x6\nbogus\n"));
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "normnet.spec:2", "bogus");
  {
    char *v = NULL;
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_meta(p, "normnet.spec", &v, &err), NN_OK);
    assert_string_equal(v, "input shape=1x6x6\nbogus\n");
    free(v);
  }

  /* A state_dict without metadata: rejected without a spec, loaded with one. */
  tu_join(p, dir, "plain.safetensors");
  h = json_deep_copy(s.hdr);
  json_object_del(h, "__metadata__");
  ck_st_write(p, h, s.data, s.dlen);
  json_decref(h);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "has no normnet metadata", "--model");
  {
    nn_error err = {0};
    nn_spec *spec = tu_spec(ck_small_spec);
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, spec, &o, &err)) fail_msg("%s", err.msg);
    tu_assert_same_tensors(m, o);
    nn_model_free(o);
    nn_spec_free(spec);
    char *v = (char *)"sentinel";
    assert_int_equal(nn_checkpoint_meta(p, "normnet.spec", &v, &err), NN_OK);
    assert_null(v);
  }

  /* F64 float tensors are accepted and rounded (exactly, for float32 values). */
  tu_join(p, dir, "f64.safetensors");
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
    ck_st_write(p, h, d, s.dlen + cnt * 8);
    json_decref(h);
    free(d);
    nn_error err = {0};
    nn_model *o = NULL;
    if (nn_checkpoint_load(p, NULL, &o, &err)) fail_msg("%s", err.msg);
    tu_assert_same_tensors(m, o);
    nn_model_free(o);
  }

  /* Not a file at all. */
  tu_join(p, dir, "nonexistent.safetensors");
  ck_expect_reject(p, NULL, NN_ERR_IO, "cannot open", NULL);
  {
    char *v = (char *)"sentinel";
    nn_error err = {0};
    assert_int_equal(nn_checkpoint_meta(p, "format", &v, &err), NN_ERR_IO);
    assert_null(v);
    assert_int_equal(strncmp(err.msg, p, strlen(p)), 0);
  }
  ck_expect_reject(dir, NULL, NN_ERR_IO, "directory", NULL);

  ck_st_free(&s);
  nn_model_free(m);
}

/* A large file whose first 8 bytes already say it is no checkpoint is refused from them: a
 * 2 GiB sparse file of junk was read whole into memory first (4 GiB: 4.2 GB and 22 s). */
static void test_refused_before_reading(void **state) {
  const char *dir = *state;
  char p[512];
  snprintf(p, sizeof p, "%s/sparse.safetensors", dir);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  static const unsigned char junk[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(fwrite(junk, 1, 8, f), 8);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(truncate(p, (off_t)2 << 30), 0); /* a hole: no disk used */
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  ck_expect_reject(p, NULL, NN_ERR_FORMAT, "header length 18446744073709551615 is larger than the file", NULL);
  getrusage(RUSAGE_SELF, &after);
  if (after.ru_maxrss - before.ru_maxrss > 256 * 1024) /* KB */
    fail_msg("refusing it took %ld MB", (after.ru_maxrss - before.ru_maxrss) / 1024);
  unlink(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_corrupt, tu_setup_tempdir, tu_teardown_tempdir),
      cmocka_unit_test_setup_teardown(test_refused_before_reading, tu_setup_tempdir, tu_teardown_tempdir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
