#include "base/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

nn_strbuf nn_strbuf_new(void) {
  nn_strbuf b = {malloc(1024), 0, 1024};
  if (b.buf) b.buf[0] = 0;
  return b;
}

void nn_strbuf_printf(nn_strbuf *b, const char *fmt, ...) {
  if (!b->buf) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t cap = 2 * (b->len + (size_t)n + 1);
    char *nb = realloc(b->buf, cap);
    if (!nb) {
      free(b->buf);
      b->buf = NULL;
      return;
    }
    b->buf = nb, b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

const char *nn_fmt_float(char *buf, size_t len, float v) {
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, len, "%.*g", prec, (double)v);
    if ((float)strtod(buf, NULL) == v) break;
  }
  return buf;
}

const char *nn_fmt_double(char *buf, size_t len, double v) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  return buf;
}
