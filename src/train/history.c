/* Per-epoch history records and their CSV form. */
#include "train/history.h"

#include <errno.h>
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

nn_history *nn_history_create(void) { return calloc(1, sizeof(nn_history)); }

int nn_history_count(const nn_history *h) { return h ? h->n : 0; }
const nn_epoch_record *nn_history_get(const nn_history *h, int i) { return &h->rec[i]; }

void nn_history_free(nn_history *h) {
  if (!h) return;
  free(h->rec);
  free(h);
}

nn_status nn_history_write_csv(const nn_history *h, const char *path, nn_error *err) {
  nn_strbuf b = nn_strbuf_new();
  nn_strbuf_printf(&b, "epoch,train_loss,train_acc,test_loss,test_acc,seconds,samples_per_sec\n");
  for (int i = 0; i < h->n; i++) {
    const nn_epoch_record *r = &h->rec[i];
    nn_strbuf_printf(&b, "%d,%.6f,%.6f,%.6f,%.6f,%.3f,%.1f\n", r->epoch, r->train_loss, r->train_acc, r->test_loss,
                     r->test_acc, r->seconds, r->samples_per_sec);
  }
  if (!b.buf) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  nn_status st = nn_file_write_atomic(path, b.buf, b.len, err);
  free(b.buf);
  return st;
}

nn_status nn_history_read_csv(const char *path, int epochs, nn_history **out, nn_error *err) {
  *out = NULL;
  FILE *f = nn_file_fopen_regular(path, NULL, err);
  if (!f) return NN_ERR_IO;
  nn_history *h = calloc(1, sizeof *h);
  char line[512];
  nn_status st = h ? NN_OK : nn_err_set(err, NN_ERR_NOMEM, "out of memory");
  if (!st && (!fgets(line, sizeof line, f) || strncmp(line, "epoch,train_loss", 16)))
    st = nn_err_set(err, NN_ERR_FORMAT, "%s:1: not a normnet history (expected the header 'epoch,train_loss,...')", path);
  for (int lineno = 2; !st && h->n < epochs; lineno++) {
    nn_epoch_record r;
    if (!fgets(line, sizeof line, f)) {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s: has %d epochs, the checkpoint is at epoch %d", path, h->n, epochs);
      break;
    }
    if (sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf", &r.epoch, &r.train_loss, &r.train_acc, &r.test_loss, &r.test_acc,
               &r.seconds, &r.samples_per_sec) != 7 || r.epoch != h->n + 1)
      st = nn_err_set(err, NN_ERR_FORMAT, "%s:%d: malformed history row", path, lineno);
    else
      st = nn_history_append(h, &r, err);
  }
  fclose(f);
  if (st) {
    nn_history_free(h);
    return st;
  }
  *out = h;
  return NN_OK;
}
