#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy src to dst (capacity cap) with every byte outside printable ASCII written as \xNN,
 * so that text echoed from a file (a spec token, a checkpoint key, a file name) can carry
 * no terminal escape, newline or invalid UTF-8 into the one-line message. An escape that
 * does not fit whole is dropped. */
static void escape_into(char *dst, size_t cap, const char *src) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)src; *p && o + 1 < cap; p++) {
    if (*p >= 0x20 && *p < 0x7f) {
      dst[o++] = (char)*p;
    } else {
      if (o + 4 >= cap) break;
      dst[o++] = '\\', dst[o++] = 'x', dst[o++] = hex[*p >> 4], dst[o++] = hex[*p & 15];
    }
  }
  dst[o] = 0;
}

nn_status nn_error_set(nn_error *err, nn_status code, const char *fmt, ...) {
  if (err) {
    char raw[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_into(err->msg, sizeof err->msg, raw);
    err->code = code;
  }
  return code;
}

nn_status nn_err_prefix(nn_error *err, nn_status code, const char *fmt, ...) {
  if (err) {
    char raw[sizeof err->msg], head[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_into(head, sizeof head, raw);
    size_t cap = sizeof err->msg - 1, hl = strlen(head), ol = strlen(err->msg);
    if (hl > cap) hl = cap;
    if (ol > cap - hl) ol = cap - hl;
    memmove(err->msg + hl, err->msg, ol);
    memcpy(err->msg, head, hl);
    err->msg[hl + ol] = 0;
    err->code = code;
  }
  return code;
}

void nn_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "normnet: internal error: %s:%d: assertion '%s' failed\n", file, line, expr);
  abort();
}

const char *nn_status_name(nn_status s) {
  switch (s) {
    case NN_OK: return "ok";
    case NN_ERR_ARG: return "invalid argument";
    case NN_ERR_IO: return "i/o error";
    case NN_ERR_FORMAT: return "bad file format";
    case NN_ERR_SPEC: return "bad model spec";
    case NN_ERR_SHAPE: return "shape mismatch";
    case NN_ERR_BATCH: return "batch cannot be normalized";
    case NN_ERR_NUMERIC: return "non-finite value";
    case NN_ERR_NOMEM: return "out of memory";
  }
  return "unknown status";
}
