/* Model spec text (ARCHITECTURE.md §6): parse with line-numbered errors, print canonically.
 *
 *     # comment
 *     input shape=1x28x28        (or shape=784 for flat input)
 *     conv2d filters=6 kernel=5
 *     batchnorm momentum=0.1 eps=1e-5
 *     ...
 * Unknown layers, unknown or repeated keys, missing required keys and bad values are
 * errors "SOURCE:LINE: ...", never warnings.
 *
 * Keras spellings: `activation=relu|sigmoid|tanh|softmax|linear` on dense/conv2d expands to
 * the layer plus its activation line; a last `softmax` line (or activation=softmax on the
 * last layer) is kept and shown, the cross-entropy loss applying it (the outputs stay
 * logits, as PyTorch's CrossEntropyLoss wants). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_read.h"
#include "base/strbuf.h"
#include "model/spec.h"

#define MAX_TOKENS 32

static void known_layers(char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int k = 0; k < NN_LAYER__COUNT && used < len; k++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? " " : "", nn_layer_table[k]->name);
}

static void known_keys(const nn_key *keys, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; keys[i].name && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "", keys[i].name);
  if (!keys[0].name) snprintf(buf, len, "none");
}

static int parse_number(const nn_key *key, const char *v, unsigned char *base, char *expect, size_t elen) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  snprintf(expect, elen, "a number in [%g, %g]%s", key->min, key->max,
           key->type == NN_KEY_MOMENTUM ? " or 'cumulative'" : "");
  if (errno || end == v || *end || !isfinite(d) || d < key->min || d > key->max) return -1;
  memcpy(base, &d, sizeof d);
  return 0;
}

/* Parse one value into cfg at key->offset. Returns 0 or -1 with `expect` describing the form. */
static int parse_value(const nn_key *key, const char *v, nn_layer_cfg *cfg, char *expect, size_t elen) {
  char *end;
  unsigned char *base = (unsigned char *)cfg + key->offset;
  switch (key->type) {
    case NN_KEY_INT: {
      errno = 0;
      long x = strtol(v, &end, 10);
      snprintf(expect, elen, "an integer in [%g, %g]", key->min, key->max);
      if (errno || end == v || *end || x < key->min || x > key->max) return -1;
      int i = (int)x;
      memcpy(base, &i, sizeof i);
      return 0;
    }
    case NN_KEY_BOOL: {
      snprintf(expect, elen, "0 or 1 (or true/false)");
      int b;
      if (!strcmp(v, "1") || !strcmp(v, "true")) b = 1;
      else if (!strcmp(v, "0") || !strcmp(v, "false")) b = 0;
      else return -1;
      memcpy(base, &b, sizeof b);
      return 0;
    }
    case NN_KEY_MOMENTUM:
      if (!strcmp(v, "cumulative") || !strcmp(v, "none")) {
        double d = NN_BN_CUMULATIVE;
        memcpy(base, &d, sizeof d);
        return 0;
      }
      return parse_number(key, v, base, expect, elen);
    case NN_KEY_DOUBLE:
      return parse_number(key, v, base, expect, elen);
    case NN_KEY_CONVENTION: {
      snprintf(expect, elen, "pytorch or keras");
      int c;
      if (!strcmp(v, "pytorch") || !strcmp(v, "torch")) c = NN_BN_PYTORCH;
      else if (!strcmp(v, "keras")) c = NN_BN_KERAS;
      else return -1;
      memcpy(base, &c, sizeof c);
      return 0;
    }
  }
  return -1;
}

static int parse_shape(const char *v, nn_shape *s) {
  int d[3], k = 0;
  const char *p = v;
  for (;;) {
    char *end;
    errno = 0;
    long x = strtol(p, &end, 10);
    if (errno || end == p || x < 1 || x > (1 << 24)) return -1;
    d[k++] = (int)x;
    if (*end == 0) break;
    /* After the third dimension only the end of the value may follow: a fourth dimension or
     * a dangling 'x' is a typo, not something to drop. */
    if (*end != 'x' || k == 3) return -1;
    p = end + 1;
  }
  if (k == 1) *s = (nn_shape){1, d[0], 1, 1};
  else if (k == 3) *s = (nn_shape){3, d[0], d[1], d[2]};
  else return -1;
  return 0;
}

/* A 3-D shape whose last dimension looks like channels (1 or 3) while the first two look
 * like an image's height and width (4 or more) is the channels-last order of Keras/NumPy
 * images: refuse it with the CxHxW order spelled out. */
static nn_status check_channels_first(const nn_spec *s, int lineno, const char *text, nn_error *err) {
  const nn_shape *in = &s->input;
  int last_like = in->w == 1 || in->w == 3, spatial_first = in->c >= 4 && in->h >= 4;
  if (in->rank != 3 || !last_like || !spatial_first) return NN_OK;
  return nn_err_set(err, NN_ERR_SPEC,
                    "%s:%d: input shape=%s looks channels-last (HxWxC, as Keras writes it); normnet reads CxHxW "
                    "(channels first, as PyTorch): write shape=%dx%dx%d",
                    s->source, lineno, text, in->w, in->c, in->h);
}

/* Take `activation=NAME` out of a dense/conv2d line: *act receives the activation layer kind,
 * -1 for none (linear), or -2 for softmax. */
static nn_status take_activation(const nn_spec *s, int lineno, char **tok, int *ntok, int *act, nn_error *err) {
  *act = -1;
  for (int t = 1; t < *ntok; t++) {
    if (strncmp(tok[t], "activation=", 11)) continue;
    const char *v = tok[t] + 11;
    if (!strcmp(v, "relu") || !strcmp(v, "sigmoid") || !strcmp(v, "tanh")) *act = nn_layer_kind_find(v);
    else if (!strcmp(v, "softmax")) *act = -2;
    else if (strcmp(v, "linear"))
      return nn_err_set(err, NN_ERR_SPEC,
                        "%s:%d: %s: bad value '%s' for activation (expected relu, sigmoid, tanh, "
                        "softmax or linear)",
                        s->source, lineno, tok[0], v);
    for (int u = t + 1; u < *ntok; u++) tok[u - 1] = tok[u];
    (*ntok)--;
    for (int u = t; u < *ntok; u++)
      if (!strncmp(tok[u], "activation=", 11))
        return nn_err_set(err, NN_ERR_SPEC, "%s:%d: %s: key 'activation' given twice", s->source, lineno, tok[0]);
    return NN_OK;
  }
  return NN_OK;
}

static nn_status parse_line(nn_spec *s, int lineno, char **tok, int ntok, nn_error *err) {
  const char *src = s->source;
  if (s->softmax_line)
    return nn_err_set(err, NN_ERR_SPEC,
                      "%s:%d: '%s' after the softmax of line %d: softmax can only end the model (the loss applies it)",
                      src, lineno, tok[0], s->softmax_line);
  if (!strcmp(tok[0], "softmax")) {
    if (!s->n)
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: softmax needs a layer before it (it can only end the model)", src,
                        lineno);
    if (ntok != 1)
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: softmax takes no keys, got '%s'", src, lineno, tok[1]);
    s->softmax_line = lineno;
    return NN_OK;
  }
  if (!strcmp(tok[0], "input")) {
    if (s->input_line)
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: second 'input' line (the first is line %d)", src, lineno,
                        s->input_line);
    if (s->n)
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: 'input' must come before the first layer", src, lineno);
    if (ntok != 2 || strncmp(tok[1], "shape=", 6) || parse_shape(tok[1] + 6, &s->input))
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: expected 'input shape=CxHxW' or 'input shape=N', got '%s'", src,
                        lineno, ntok > 1 ? tok[1] : "input");
    nn_status st = check_channels_first(s, lineno, tok[1] + 6, err);
    if (st) return st;
    s->input_line = lineno;
    return NN_OK;
  }
  int kind = nn_layer_kind_find(tok[0]);
  if (kind < 0) {
    char known[256];
    known_layers(known, sizeof known);
    return nn_err_set(err, NN_ERR_SPEC, "%s:%d: unknown layer '%s' (known: input %s)", src, lineno, tok[0], known);
  }
  if (!s->input_line)
    return nn_err_set(err, NN_ERR_SPEC, "%s:%d: the spec must start with 'input shape=...' before '%s'", src,
                      lineno, tok[0]);
  int act = -1;
  if (kind == NN_LAYER_DENSE || kind == NN_LAYER_CONV2D) {
    nn_status st = take_activation(s, lineno, tok, &ntok, &act, err);
    if (st) return st;
  }
  const nn_layer_ops *ops = nn_layer_table[kind];
  nn_layer_spec ls = {.kind = (nn_layer_kind)kind, .line = lineno};
  ops->defaults(&ls.cfg);
  unsigned given = 0;
  for (int t = 1; t < ntok; t++) {
    char *eq = strchr(tok[t], '=');
    if (!eq || eq == tok[t] || !eq[1])
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: %s: expected key=value, got '%s'", src, lineno, tok[0], tok[t]);
    *eq = 0;
    const char *key = tok[t], *val = eq + 1;
    int k;
    for (k = 0; ops->keys[k].name; k++)
      if (!strcmp(ops->keys[k].name, key)) break;
    if (!ops->keys[k].name) {
      char known[256];
      known_keys(ops->keys, known, sizeof known);
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: %s: unknown key '%s' (known: %s)", src, lineno, tok[0], key, known);
    }
    if (given & (1u << k))
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: %s: key '%s' given twice", src, lineno, tok[0], key);
    char expect[96];
    if (parse_value(&ops->keys[k], val, &ls.cfg, expect, sizeof expect))
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: %s: bad value '%s' for %s (expected %s)", src, lineno, tok[0], val,
                        key, expect);
    given |= 1u << k;
  }
  for (int k = 0; ops->keys[k].name; k++)
    if (ops->keys[k].required && !(given & (1u << k)))
      return nn_err_set(err, NN_ERR_SPEC, "%s:%d: %s: missing required key '%s'", src, lineno, tok[0],
                        ops->keys[k].name);
  if (ops->finalize && ops->finalize(&ls.cfg, given, err) != NN_OK)
    return nn_err_prefix(err, NN_ERR_SPEC, "%s:%d: %s: ", src, lineno, tok[0]);
  nn_status st = nn_spec_append(s, &ls, err);
  if (st || act == -1) return st;
  if (act == -2) {
    s->softmax_line = lineno;
    return NN_OK;
  }
  nn_layer_spec as = {.kind = (nn_layer_kind)act, .line = lineno};
  nn_layer_table[act]->defaults(&as.cfg);
  return nn_spec_append(s, &as, err);
}

nn_status nn_spec_parse(const char *text, const char *source, nn_spec **out, nn_error *err) {
  *out = NULL;
  nn_spec *s = calloc(1, sizeof *s);
  char *buf = strdup(text ? text : "");
  if (!s || !buf) {
    free(s);
    free(buf);
    return nn_err_set(err, NN_ERR_NOMEM, "out of memory parsing a spec");
  }
  snprintf(s->source, sizeof s->source, "%s", source ? source : "spec");
  nn_status st = NN_OK;
  int lineno = 0;
  for (char *line = buf; line && st == NN_OK; lineno++) {
    char *next = strchr(line, '\n');
    if (next) *next++ = 0;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *tok[MAX_TOKENS];
    int ntok = 0;
    char *save = NULL; /* strtok_r: specs are parsed on several threads at once (compare, study) */
    for (char *p = strtok_r(line, " \t\r", &save); p; p = strtok_r(NULL, " \t\r", &save)) {
      if (ntok == MAX_TOKENS) {
        st = nn_err_set(err, NN_ERR_SPEC, "%s:%d: too many tokens", s->source, lineno + 1);
        break;
      }
      tok[ntok++] = p;
    }
    if (st == NN_OK && ntok) st = parse_line(s, lineno + 1, tok, ntok, err);
    line = next;
  }
  if (st == NN_OK && !s->input_line)
    st = nn_err_set(err, NN_ERR_SPEC, "%s: no 'input shape=...' line", s->source);
  else if (st == NN_OK && s->n == 0)
    st = nn_err_set(err, NN_ERR_SPEC, "%s: no layers after 'input'", s->source);
  free(buf);
  if (st != NN_OK) {
    nn_spec_free(s);
    return st;
  }
  *out = s;
  return NN_OK;
}

nn_status nn_spec_load(const char *path, nn_spec **out, nn_error *err) {
  *out = NULL;
  FILE *f = nn_file_fopen_regular(path, NULL, err);
  if (!f) return NN_ERR_IO;
  size_t cap = 4096, len = 0;
  char *text = malloc(cap);
  size_t got;
  while (text && (got = fread(text + len, 1, cap - len - 1, f)) > 0) {
    len += got;
    if (len + 1 == cap) {
      char *t = cap < (1u << 24) ? realloc(text, cap *= 2) : NULL;
      if (!t) free(text);
      text = t;
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (!text) return nn_err_set(err, NN_ERR_NOMEM, "%s: spec too large or out of memory", path);
  if (bad) {
    free(text);
    return nn_err_set(err, NN_ERR_IO, "%s: read error", path);
  }
  text[len] = 0;
  if (strlen(text) != len) {
    free(text);
    return nn_err_set(err, NN_ERR_SPEC, "%s: not a text file (contains a NUL byte)", path);
  }
  nn_status st = nn_spec_parse(text, path, out, err);
  free(text);
  return st;
}

/* ---- printing -------------------------------------------------------------------------- */
static void print_value(nn_strbuf *b, const nn_key *key, const nn_layer_cfg *cfg) {
  const unsigned char *base = (const unsigned char *)cfg + key->offset;
  int i;
  double d;
  switch (key->type) {
    case NN_KEY_INT:
    case NN_KEY_BOOL:
      memcpy(&i, base, sizeof i);
      nn_strbuf_printf(b, " %s=%d", key->name, i);
      break;
    case NN_KEY_MOMENTUM:
    case NN_KEY_DOUBLE:
      memcpy(&d, base, sizeof d);
      if (key->type == NN_KEY_MOMENTUM && d < 0)
        nn_strbuf_printf(b, " %s=cumulative", key->name);
      else {
        char num[32];
        nn_fmt_double(num, sizeof num, d);
        nn_strbuf_printf(b, " %s=%s", key->name, num);
      }
      break;
    case NN_KEY_CONVENTION:
      memcpy(&i, base, sizeof i);
      nn_strbuf_printf(b, " %s=%s", key->name, i == NN_BN_KERAS ? "keras" : "pytorch");
      break;
  }
}

char *nn_spec_to_text(const nn_spec *s) {
  nn_strbuf b = nn_strbuf_new();
  char shp[64];
  nn_shape_format(s->input, shp, sizeof shp);
  nn_strbuf_printf(&b, "input shape=%s\n", shp);
  for (int i = 0; i < s->n; i++) {
    const nn_layer_spec *ls = &s->layers[i];
    const nn_layer_ops *ops = nn_layer_table[ls->kind];
    nn_strbuf_printf(&b, "%s", ops->name);
    for (int k = 0; ops->keys[k].name; k++) print_value(&b, &ops->keys[k], &ls->cfg);
    nn_strbuf_printf(&b, "\n");
  }
  if (s->softmax_line) nn_strbuf_printf(&b, "softmax\n");
  return b.buf;
}
