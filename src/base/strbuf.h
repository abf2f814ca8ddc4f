/* A growable string for building text reports (spec text, summaries), and numbers as the
 * shortest text that reads back to them. */
#ifndef NN_BASE_STRBUF_H
#define NN_BASE_STRBUF_H
#include <stddef.h>

typedef struct {
  char *buf; /* NULL after an allocation failure: later appends are ignored */
  size_t len, cap;
} nn_strbuf;

/* Start with an empty string (buf is NULL if out of memory). */
nn_strbuf nn_strbuf_new(void);
void nn_strbuf_printf(nn_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The shortest %g text that reads back (strtod, then a cast for a float) to exactly v: a
 * float lr of 0.001 is "0.001", not %.9g's "0.00100000005". Into buf, which they return
 * (for use as a printf argument). */
const char *nn_fmt_float(char *buf, size_t len, float v);
const char *nn_fmt_double(char *buf, size_t len, double v);

#endif
