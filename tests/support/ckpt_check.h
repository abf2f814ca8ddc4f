/* Checkpoint tests' support: a safetensors reader of the tests' own (independent of the
 * library's), model state that differs from a fresh model's, and the rejection check. */
#ifndef NN_TEST_CKPT_CHECK_H
#define NN_TEST_CKPT_CHECK_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "normnet.h"

/* A parsed safetensors file: the header as JSON and as text, and a copy of the data section. */
typedef struct {
  json_t *hdr;
  char *hdr_text;
  unsigned char *data;
  size_t dlen;
} ck_st_file;

/* Read path ([8-byte little-endian header length][header JSON][data]); fails the test if it
 * is not that. */
void ck_st_read(const char *path, ck_st_file *s);
void ck_st_free(ck_st_file *s);
/* Write [len][header text][data] (ck_st_write: the header as compact JSON), independently of
 * the library's writer. */
void ck_st_write_raw(const char *path, const char *hdr, const unsigned char *data, size_t dlen);
void ck_st_write(const char *path, const json_t *hdr, const unsigned char *data, size_t dlen);

/* The checkpoint tests' model: conv2d 2x3x3 on 1x6x6, batchnorm, relu, flatten, dense 3. */
extern const char ck_small_spec[];

/* Give the running statistics and num_batches_tracked (= nbt) non-initial values. */
void ck_set_state(nn_model *m, int64_t nbt);
/* nn_checkpoint_save(m, path) without metadata; fails the test if it fails. */
void ck_save(nn_model *m, const char *path);
/* Load path (with spec text or NULL): fails the test unless it is rejected with `code`, the
 * output left NULL and a message that starts with the path and contains w1 and w2 (either
 * may be NULL). */
void ck_expect_reject(const char *path, const char *spec_text, nn_status code, const char *w1, const char *w2);

#endif
