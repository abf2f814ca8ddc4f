#include "ckpt_check.h"
#include "cli_run.h"
#include "nn_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

const char ck_small_spec[] =
    "input shape=1x6x6\n"
    "conv2d filters=2 kernel=3\n"
    "batchnorm\n"
    "relu\n"
    "flatten\n"
    "dense units=3\n";

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

void ck_st_read(const char *path, ck_st_file *s) {
  size_t n;
  unsigned char *b = tu_read_file(path, &n);
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

void ck_st_free(ck_st_file *s) {
  json_decref(s->hdr);
  free(s->hdr_text);
  free(s->data);
}

void ck_set_state(nn_model *m, int64_t nbt) {
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

void ck_save(nn_model *m, const char *path) {
  nn_error err = {0};
  if (nn_checkpoint_save(m, path, NULL, 0, &err)) fail_msg("%s", err.msg);
}

void ck_expect_reject(const char *path, const char *spec_text, nn_status code, const char *w1, const char *w2) {
  nn_error err = {0};
  nn_model *m = (nn_model *)&err; /* must be reset to NULL */
  nn_spec *spec = spec_text ? tu_spec(spec_text) : NULL;
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

/* Write [len][header text][data]. */
void ck_st_write_raw(const char *path, const char *hdr, const unsigned char *data, size_t dlen) {
  size_t hl = strlen(hdr);
  unsigned char *buf = malloc(8 + hl + dlen + 1);
  assert_non_null(buf);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, hdr, hl);
  if (dlen) memcpy(buf + 8 + hl, data, dlen);
  tu_write_file(path, buf, 8 + hl + dlen);
  free(buf);
}

void ck_st_write(const char *path, const json_t *hdr, const unsigned char *data, size_t dlen) {
  char *text = json_dumps(hdr, JSON_COMPACT);
  assert_non_null(text);
  ck_st_write_raw(path, text, data, dlen);
  free(text);
}
