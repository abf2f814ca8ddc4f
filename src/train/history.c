/* Per-epoch history records and their CSV form. */
#include "train/history.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file_read.h"
#include "base/strbuf.h"

nn_status nn_history_append(nn_history *h, const nn_epoch_record *r, nn_error *err) {
  if (h->n == h->cap) {
    int cap = h->cap ? 2 * h->cap : 16;
    nn_epoch_record *e = realloc(h->rec, (size_t)cap * sizeof *e);
    if (!e) return nn_err_set(err, NN_ERR_NOMEM, "out of memory for history");
    h->rec = e;
    h->cap = cap;
  }
  h->rec[h->n++] = *r;
  return NN_OK;
}

nn_status nn_history_set_last(nn_history *h, const nn_epoch_record *r) {
  h->rec[h->n - 1] = *r;
  return NN_OK;
}

nn_history *nn_history_create(void) { return calloc(1, sizeof(nn_history)); }

int nn_history_count(const nn_history *h) { return h ? h->n : 0; }
const nn_epoch_record *nn_history_get(const nn_history *h, int i) { return h && i >= 0 && i < h->n ? &h->rec[i] : NULL; }

void nn_history_free(nn_history *h) {
  if (!h) return;
  free(h->rec);
  free(h);
}

void nn_history_set_validation(nn_history *h, int validation) { h->validation = validation != 0; }
int nn_history_validation(const nn_history *h) { return h->validation; }

/* The columns; `lr` (the learning rate of the epoch's first step) came last, so histories
 * written before it (7 columns) still read. */
static const char *header(int validation) {
  return validation ? "epoch,train_loss,train_acc,val_loss,val_acc,seconds,samples_per_sec,lr"
                    : "epoch,train_loss,train_acc,test_loss,test_acc,seconds,samples_per_sec,lr";
}
static const size_t LR_COLUMN = 3; /* strlen(",lr") */

char *nn_history_to_text(const nn_history *h, int exact) {
  nn_strbuf b = nn_strbuf_new();
  nn_strbuf_printf(&b, "%s\n", header(h->validation));
  for (int i = 0; i < h->n; i++) {
    const nn_epoch_record *r = &h->rec[i];
    char v[7][32];
    if (exact) {
      const double d[7] = {r->train_loss, r->train_acc, r->test_loss, r->test_acc, r->seconds, r->samples_per_sec, r->lr};
      for (int k = 0; k < 7; k++) nn_fmt_double(v[k], sizeof v[k], d[k]);
      nn_strbuf_printf(&b, "%d,%s,%s,%s,%s,%s,%s,%s\n", r->epoch, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
      continue;
    }
    nn_strbuf_printf(&b, "%d,%.6f,%.6f,%.6f,%.6f,%.3f,%.1f,%s\n", r->epoch, r->train_loss, r->train_acc, r->test_loss,
                     r->test_acc, r->seconds, r->samples_per_sec, nn_fmt_float(v[0], sizeof v[0], (float)r->lr));
  }
  return b.buf;
}

nn_status nn_history_write_csv(const nn_history *h, const char *path, nn_error *err) {
  char *text = nn_history_to_text(h, 0);
  if (!text) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  nn_status st = nn_file_write_atomic(path, text, strlen(text), err);
  free(text);
  return st;
}

nn_status nn_history_parse(const char *text, const char *name, nn_history **out, nn_error *err) {
  *out = NULL;
  nn_history *h = calloc(1, sizeof *h);
  if (!h) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  nn_status st = NN_OK;
  const char *p = text, *nl = strchr(p, '\n');
  size_t hl = nl ? (size_t)(nl - p) : strlen(p);
  int with_lr = 1;
  for (int v = 0; v < 2; v++)
    for (int lr = 0; lr < 2; lr++)
      if (hl == strlen(header(v)) - (lr ? 0 : LR_COLUMN) && !strncmp(p, header(v), hl)) h->validation = v, with_lr = lr;
  if (!(hl == strlen(header(h->validation)) - (with_lr ? 0 : LR_COLUMN) && !strncmp(p, header(h->validation), hl)))
    st = nn_err_set(err, NN_ERR_FORMAT, "%s:1: not a normnet history (expected the header '%s')", name, header(0));
  for (int lineno = 2; !st && nl && nl[1]; lineno++) {
    p = nl + 1;
    nl = strchr(p, '\n');
    /* each row scanned from its own copy: sscanf measures the whole string it is given, and on
     * the rest of the text that made reading n rows take n^2 time */
    char row[512];
    const size_t len = nl ? (size_t)(nl - p) : strlen(p);
    nn_epoch_record r = {.lr = NAN};
    int used = 0, lr_used = 0, ok = len < sizeof row;
    if (ok) memcpy(row, p, len), row[len] = 0;
    ok = ok && sscanf(row, "%d,%lf,%lf,%lf,%lf,%lf,%lf%n", &r.epoch, &r.train_loss, &r.train_acc, &r.test_loss,
                      &r.test_acc, &r.seconds, &r.samples_per_sec, &used) == 7;
    if (ok && with_lr) {
      ok = sscanf(row + used, ",%lf%n", &r.lr, &lr_used) == 1;
      used += lr_used;
    }
    if (!ok || row[used] || r.epoch != h->n + 1)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s:%d: malformed history row", name, lineno);
    else
      st = nn_history_append(h, &r, err);
  }
  if (st) {
    nn_history_free(h);
    return st;
  }
  *out = h;
  return NN_OK;
}

nn_status nn_history_read_csv(const char *path, int epochs, nn_history **out, nn_error *err) {
  *out = NULL;
  off_t size = 0;
  FILE *f = nn_file_fopen_regular(path, &size, err);
  if (!f) return NN_ERR_IO;
  if (size > (off_t)(64 << 20)) {
    fclose(f);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: %lld bytes is too large for a history", path, (long long)size);
  }
  char *text = malloc((size_t)size + 1);
  size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
  fclose(f);
  if (!text) return nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  text[got] = 0;
  nn_status st = strlen(text) != got ? nn_err_set(err, NN_ERR_FORMAT, "%s: contains a NUL byte", path)
                                     : nn_history_parse(text, path, out, err);
  free(text);
  if (!st && (epochs < 0 || nn_history_count(*out) < epochs))
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: has %d epochs, %d were asked for", path, nn_history_count(*out), epochs);
  if (st) {
    nn_history_free(*out);
    *out = NULL;
    return st;
  }
  (*out)->n = epochs; /* the first `epochs` rows */
  return NN_OK;
}
