#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nn_status nn_err_set(nn_error *err, nn_status code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

nn_status nn_err_prefix(nn_error *err, nn_status code, const char *fmt, ...) {
  if (err) {
    char head[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
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
