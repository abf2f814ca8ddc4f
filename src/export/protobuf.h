/* A minimal Protocol Buffers wire-format encoder and reader (enough for ONNX).
 *
 *   field key = (field_number << 3) | wire_type, as a varint
 *   wire 0: varint (int32/int64/enum; negative values as 10-byte two's complement)
 *   wire 1: 8 bytes little-endian (fixed64/double)
 *   wire 2: varint length + bytes (string, bytes, nested message, packed repeated)
 *   wire 5: 4 bytes little-endian (fixed32/float)
 *
 * The encoder appends to a growable buffer; a nested message is built in its own buffer
 * and appended whole, so every length is exact and the output is canonical for the order
 * the fields are written in (write them in field-number order). After an allocation
 * failure the buffer is marked (oom) and later writes are ignored. */
#ifndef NN_EXPORT_PROTOBUF_H
#define NN_EXPORT_PROTOBUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  unsigned char *buf;
  size_t len, cap;
  int oom;
} nn_pb;

enum { NN_PB_VARINT = 0,
       NN_PB_I64 = 1,
       NN_PB_LEN = 2,
       NN_PB_I32 = 5 };

void nn_pb_free(nn_pb *b);
void nn_pb_varint(nn_pb *b, int field, uint64_t v);
void nn_pb_int64(nn_pb *b, int field, int64_t v);
void nn_pb_float(nn_pb *b, int field, float v);
void nn_pb_bytes(nn_pb *b, int field, const void *data, size_t len);
void nn_pb_string(nn_pb *b, int field, const char *s);
/* Append `msg` as a length-delimited field (an empty message is written too). */
void nn_pb_message(nn_pb *b, int field, const nn_pb *msg);
/* Append raw bytes with no key (building a payload, e.g. floats as little-endian). */
void nn_pb_raw(nn_pb *b, const void *data, size_t len);
void nn_pb_raw_f32(nn_pb *b, float v);
void nn_pb_raw_i64(nn_pb *b, int64_t v);

/* Reading: one field at a time from [p, end). */
typedef struct {
  const unsigned char *p, *end;
} nn_pb_reader;

typedef struct {
  int field, wire;
  uint64_t v;                /* varint, I64 and I32 values */
  const unsigned char *data; /* LEN payload */
  size_t len;
} nn_pb_field;

/* 1: a field was read; 0: clean end of input; -1: malformed (truncated varint, length
 * past the end, unknown wire type, field number 0). */
int nn_pb_next(nn_pb_reader *r, nn_pb_field *f);
float nn_pb_f32_of(uint32_t bits);

#endif
