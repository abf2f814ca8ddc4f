/* Protocol Buffers wire format: see protobuf.h. */
#include "export/protobuf.h"

#include <stdlib.h>
#include <string.h>

void nn_pb_free(nn_pb *b) {
  free(b->buf);
  memset(b, 0, sizeof *b);
}

static int reserve(nn_pb *b, size_t extra) {
  if (b->oom) return -1;
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  unsigned char *p = realloc(b->buf, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->buf = p;
  b->cap = cap;
  return 0;
}

void nn_pb_raw(nn_pb *b, const void *data, size_t len) {
  if (len == 0 || reserve(b, len)) return;
  memcpy(b->buf + b->len, data, len);
  b->len += len;
}

static void put_varint(nn_pb *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  nn_pb_raw(b, tmp, n);
}

static void put_key(nn_pb *b, int field, int wire) { put_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

void nn_pb_raw_f32(nn_pb *b, float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  unsigned char t[4];
  for (int i = 0; i < 4; i++) t[i] = (unsigned char)(u >> (8 * i));
  nn_pb_raw(b, t, 4);
}

void nn_pb_raw_i64(nn_pb *b, int64_t v) {
  uint64_t u = (uint64_t)v;
  unsigned char t[8];
  for (int i = 0; i < 8; i++) t[i] = (unsigned char)(u >> (8 * i));
  nn_pb_raw(b, t, 8);
}

void nn_pb_varint(nn_pb *b, int field, uint64_t v) {
  put_key(b, field, NN_PB_VARINT);
  put_varint(b, v);
}

void nn_pb_int64(nn_pb *b, int field, int64_t v) { nn_pb_varint(b, field, (uint64_t)v); }

void nn_pb_float(nn_pb *b, int field, float v) {
  put_key(b, field, NN_PB_I32);
  nn_pb_raw_f32(b, v);
}

void nn_pb_bytes(nn_pb *b, int field, const void *data, size_t len) {
  put_key(b, field, NN_PB_LEN);
  put_varint(b, len);
  nn_pb_raw(b, data, len);
}

void nn_pb_string(nn_pb *b, int field, const char *s) { nn_pb_bytes(b, field, s, strlen(s)); }

void nn_pb_message(nn_pb *b, int field, const nn_pb *msg) {
  if (msg->oom) b->oom = 1;
  nn_pb_bytes(b, field, msg->buf, msg->len);
}

static int get_varint(nn_pb_reader *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return -1;
    unsigned char c = *r->p++;
    if (shift == 63 && (c & 0x7e)) return -1; /* more than 64 bits */
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

int nn_pb_next(nn_pb_reader *r, nn_pb_field *f) {
  if (r->p >= r->end) return 0;
  uint64_t key;
  if (get_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) return -1;
  memset(f, 0, sizeof *f);
  f->field = (int)(key >> 3);
  f->wire = (int)(key & 7);
  size_t avail;
  switch (f->wire) {
    case NN_PB_VARINT:
      return get_varint(r, &f->v) ? -1 : 1;
    case NN_PB_I64:
    case NN_PB_I32: {
      size_t n = f->wire == NN_PB_I64 ? 8 : 4;
      if ((size_t)(r->end - r->p) < n) return -1;
      for (size_t i = 0; i < n; i++) f->v |= (uint64_t)r->p[i] << (8 * i);
      r->p += n;
      return 1;
    }
    case NN_PB_LEN:
      if (get_varint(r, &f->v)) return -1;
      avail = (size_t)(r->end - r->p);
      if (f->v > avail) return -1;
      f->data = r->p;
      f->len = (size_t)f->v;
      r->p += f->len;
      return 1;
    default:
      return -1;
  }
}

float nn_pb_f32_of(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
