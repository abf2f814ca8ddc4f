/* A growable string for building text reports (spec text, summaries), and numbers as the
 * shortest text that reads back to them. */
#ifndef NN_BASE_STRBUF_H
#define NN_BASE_STRBUF_H
#include <stddef.h>

#include "normnet.h" /* nn_fmt_float, public */

typedef struct {
  char *buf; /* NULL after an allocation failure: later appends are ignored */
  size_t len, cap;
} nn_strbuf;

/* Start with an empty string (buf is NULL if out of memory). */
nn_strbuf nn_strbuf_new(void);
void nn_strbuf_printf(nn_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* nn_fmt_float's (normnet.h) for a double: the shortest %g text that strtod reads back to
 * exactly v, into buf, which it returns (for use as a printf argument). */
const char *nn_fmt_double(char *buf, size_t len, double v);

#endif
