/* Reading a run's activations.csv back (normnet inspect). Every value is checked, so a
 * file from anywhere cannot make the reader or its users index, allocate or print beyond
 * what the limits below allow. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file_read.h"

#define MAX_ROWS (1 << 20)
#define MAX_EPOCH 10000000L
#define MAX_LAYER 65535L
#define LINE_MAX_LEN 256

static int cmp_row(const void *a, const void *b) {
  const nn_activation_row *x = a, *y = b;
  if (x->epoch != y->epoch) return x->epoch < y->epoch ? -1 : 1;
  if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
  return x->line < y->line ? -1 : x->line > y->line;
}

/* "INT," with the value in [0, max]; advances *p past the comma. */
static int field_int(char **p, long max, int *out) {
  char *end;
  errno = 0;
  long v = strtol(*p, &end, 10);
  if (errno || end == *p || *end != ',' || v < 0 || v > max || !isdigit((unsigned char)**p)) return -1;
  *out = (int)v;
  *p = end + 1;
  return 0;
}

static int parse_row(char *line, nn_activation_row *r) {
  char *p = line;
  if (field_int(&p, MAX_EPOCH, &r->epoch) || field_int(&p, MAX_LAYER, &r->layer)) return -1;
  size_t k = 0;
  while (k + 1 < sizeof r->kind && (islower((unsigned char)p[k]) || isdigit((unsigned char)p[k]) || p[k] == '_'))
    r->kind[k] = p[k], k++;
  if (k == 0 || p[k] != ',') return -1;
  r->kind[k] = 0;
  p += k + 1;
  char *end;
  r->mean = strtod(p, &end);
  if (end == p || *end != ',') return -1;
  p = end + 1;
  r->std = strtod(p, &end);
  if (end == p || (*end && strcmp(end, "\n") && strcmp(end, "\r\n"))) return -1;
  return 0;
}

nn_status nn_activations_read_csv(const char *path, nn_activation_row **rows, int *n, nn_error *err) {
  *rows = NULL;
  *n = 0;
  FILE *f = nn_file_fopen_regular(path, NULL, err);
  if (!f) return NN_ERR_IO;
  char line[LINE_MAX_LEN];
  nn_activation_row *v = NULL;
  int cnt = 0, cap = 0;
  nn_status st = NN_OK;
  if (!fgets(line, sizeof line, f) || strncmp(line, "epoch,layer,kind,mean,std", 25) ||
      (line[25] && strcmp(line + 25, "\n") && strcmp(line + 25, "\r\n")))
    st = nn_err_set(err, NN_ERR_FORMAT, "%s:1: not an activations file (expected the header 'epoch,layer,kind,mean,std')",
                    path);
  for (int lineno = 2; !st && fgets(line, sizeof line, f); lineno++) {
    size_t len = strlen(line);
    if (len + 1 == sizeof line && line[len - 1] != '\n') {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s:%d: line longer than %d bytes", path, lineno, LINE_MAX_LEN - 2);
      break;
    }
    nn_activation_row r = {.line = lineno};
    if (parse_row(line, &r)) {
      st = nn_err_set(err, NN_ERR_FORMAT,
                      "%s:%d: malformed row (expected EPOCH,LAYER,KIND,MEAN,STD with EPOCH in [0, %ld], LAYER in "
                      "[0, %ld], KIND of [a-z0-9_])",
                      path, lineno, MAX_EPOCH, MAX_LAYER);
      break;
    }
    if (cnt == MAX_ROWS) {
      st = nn_err_set(err, NN_ERR_FORMAT, "%s:%d: more than %d rows", path, lineno, MAX_ROWS);
      break;
    }
    if (cnt == cap) {
      int c = cap ? 2 * cap : 64;
      nn_activation_row *g = realloc(v, (size_t)c * sizeof *g);
      if (!g) {
        st = nn_err_set(err, NN_ERR_NOMEM, "%s:%d: out of memory", path, lineno);
        break;
      }
      v = g, cap = c;
    }
    v[cnt++] = r;
  }
  if (!st && ferror(f)) st = nn_err_set(err, NN_ERR_IO, "%s: read error", path);
  fclose(f);
  if (!st) {
    if (cnt) qsort(v, (size_t)cnt, sizeof *v, cmp_row);
    for (int i = 1; i < cnt && !st; i++)
      if (v[i].epoch == v[i - 1].epoch && v[i].layer == v[i - 1].layer)
        st = nn_err_set(err, NN_ERR_FORMAT, "%s:%d: epoch %d layer %d repeats line %d", path, v[i].line, v[i].epoch,
                        v[i].layer, v[i - 1].line);
  }
  if (st) {
    free(v);
    return st;
  }
  *rows = v;
  *n = cnt;
  return NN_OK;
}
