/* Keras-style model summary: one row per layer with output shape and parameter count;
 * totals split into trainable and non-trainable (BN running mean/var count as
 * non-trainable, as Keras counts its moving statistics). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "model/spec.h"
#include "normnet.h"

static void rule(nn_strbuf *t, char c) {
  char line[112];
  memset(line, c, sizeof line - 1);
  line[sizeof line - 1] = 0;
  nn_strbuf_printf(t, "%s\n", line);
}

char *nn_model_summary(const nn_model *m) {
  nn_strbuf t = nn_strbuf_new();
  size_t trainable = 0, fixed = 0;
  rule(&t, '_');
  nn_strbuf_printf(&t, " %-24s %-20s %10s   %s\n", "Layer (type)", "Output Shape", "Param #", "Options");
  rule(&t, '=');
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    char name[40], shape[48];
    snprintf(name, sizeof name, "%d %s", i, li.kind);
    if (li.out_rank == 1) snprintf(shape, sizeof shape, "(None, %d)", li.out_c);
    else snprintf(shape, sizeof shape, "(None, %d, %d, %d)", li.out_c, li.out_h, li.out_w);
    nn_strbuf_printf(&t, " %-24s %-20s %10zu   %s\n", name, shape, li.trainable + li.non_trainable, li.detail);
    trainable += li.trainable;
    fixed += li.non_trainable;
  }
  if (nn_model_spec(m)->softmax_line) {
    char name[40], shape[48];
    snprintf(name, sizeof name, "%d softmax", nn_model_num_layers(m));
    snprintf(shape, sizeof shape, "(None, %d)", nn_model_output_size(m));
    nn_strbuf_printf(&t, " %-24s %-20s %10d   %s\n", name, shape, 0,
                     "applied by the cross-entropy loss (the model outputs logits)");
  }
  rule(&t, '=');
  nn_strbuf_printf(&t, "Total params: %zu (%.2f KB)\n", trainable + fixed, (double)(trainable + fixed) * 4 / 1024);
  nn_strbuf_printf(&t, "Trainable params: %zu\n", trainable);
  nn_strbuf_printf(&t, "Non-trainable params: %zu\n", fixed);
  rule(&t, '_');
  return t.buf;
}
