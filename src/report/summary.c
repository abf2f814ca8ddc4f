/* Keras-style model summary: one row per layer with output shape and parameter count;
 * totals split into trainable and non-trainable (BN running mean/var count as
 * non-trainable, as Keras counts its moving statistics). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normnet.h"

typedef struct {
  char *buf;
  size_t len, cap;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...) {
  if (!t->buf) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (t->len + (size_t)n + 1 > t->cap) {
    size_t cap = 2 * (t->len + (size_t)n + 1);
    char *b = realloc(t->buf, cap);
    if (!b) {
      free(t->buf);
      t->buf = NULL;
      return;
    }
    t->buf = b, t->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  t->len += (size_t)n;
}

static void rule(text *t, char c) {
  char line[112];
  memset(line, c, sizeof line - 1);
  line[sizeof line - 1] = 0;
  add(t, "%s\n", line);
}

char *nn_model_summary(const nn_model *m) {
  text t = {malloc(4096), 0, 4096};
  size_t trainable = 0, fixed = 0;
  rule(&t, '_');
  add(&t, " %-24s %-20s %10s   %s\n", "Layer (type)", "Output Shape", "Param #", "Options");
  rule(&t, '=');
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    char name[40], shape[48];
    snprintf(name, sizeof name, "%d %s", i, li.kind);
    if (li.out_rank == 1) snprintf(shape, sizeof shape, "(None, %d)", li.out_c);
    else snprintf(shape, sizeof shape, "(None, %d, %d, %d)", li.out_c, li.out_h, li.out_w);
    add(&t, " %-24s %-20s %10zu   %s\n", name, shape, li.trainable + li.non_trainable, li.detail);
    trainable += li.trainable;
    fixed += li.non_trainable;
  }
  rule(&t, '=');
  add(&t, "Total params: %zu (%.2f KB)\n", trainable + fixed, (double)(trainable + fixed) * 4 / 1024);
  add(&t, "Trainable params: %zu\n", trainable);
  add(&t, "Non-trainable params: %zu\n", fixed);
  rule(&t, '_');
  return t.buf;
}
