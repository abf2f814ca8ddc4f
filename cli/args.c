/* Option parsing shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* fmt's text into e->msg as the library writes file contents it echoes: escapes and newlines
 * as \xNN */
static void escaped(nn_error *e, const char *fmt, va_list ap) {
  char raw[1024];
  vsnprintf(raw, sizeof raw, fmt, ap);
  nn_error_set(e, NN_ERR_ARG, "%s", raw);
}

void cli_error(const char *cmd, const char *fmt, ...) {
  nn_error e;
  va_list ap;
  va_start(ap, fmt);
  escaped(&e, fmt, ap);
  va_end(ap);
  /* under mpirun rank 0 prints; side by side, the first failed job's message at the end */
  if (!cli_hold_message(e.msg) && !cli_lane_hold(e.msg)) fprintf(stderr, "normnet %s: %s\n", cmd, e.msg);
}

void cli_warn(const char *cmd, const char *fmt, ...) {
  if (!cli_is_rank0()) return;
  nn_error e;
  va_list ap;
  va_start(ap, fmt);
  escaped(&e, fmt, ap);
  va_end(ap);
  fprintf(stderr, "normnet %s: warning: %s\n", cmd, e.msg);
}

/* The length of the well-formed UTF-8 sequence at p if it encodes a character from U+00A0
 * on, else 0. U+0080..U+009F are the C1 controls (U+009B is the 8-bit CSI, which terminals
 * obey as ESC [); overlong forms, surrogates and stray bytes are refused so that no byte
 * sequence a terminal might decode to a control is kept. */
static size_t utf8_printable_len(const unsigned char *p) {
  static const unsigned least[5] = {0, 0, 0xa0, 0x800, 0x10000}; /* the smallest code point of n bytes */
  size_t n;
  unsigned cp;
  if (p[0] >= 0xc2 && p[0] <= 0xdf) n = 2, cp = p[0] & 0x1fu;
  else if (p[0] >= 0xe0 && p[0] <= 0xef) n = 3, cp = p[0] & 0x0fu;
  else if (p[0] >= 0xf0 && p[0] <= 0xf4) n = 4, cp = p[0] & 0x07u;
  else return 0;
  for (size_t k = 1; k < n; k++) {
    if ((p[k] & 0xc0) != 0x80) return 0; /* the NUL ending the string stops it too */
    cp = cp << 6 | (p[k] & 0x3fu);
  }
  if (cp < least[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return 0;
  return n;
}

const char *cli_printable(const char *s, char *buf, size_t cap) {
  size_t o = 0;
  /* o + 5 < cap leaves room for an escape or a whole UTF-8 character (at most 4 bytes) and the NUL */
  while (s && *s && o + 5 < cap) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = *p < 0x80 ? (size_t)(*p >= 0x20 && *p != 0x7f) : utf8_printable_len(p);
    if (n) {
      memcpy(buf + o, s, n);
      o += n, s += n;
    } else {
      o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
      s++;
    }
  }
  if (cap) buf[o < cap ? o : cap - 1] = 0;
  return buf;
}

int cli_fail(const char *cmd, const nn_error *err) {
  cli_error(cmd, "%s", err->msg[0] ? err->msg : "failed");
  return EXIT_FAIL;
}

/* Remembers `name` among the options tried (once each). */
static void tried(cli_args *a, const char *name) {
  if (name[0] != '-' || name[1] != '-') return;
  for (int k = 0; k < a->ntried; k++)
    if (!strcmp(a->tried[k], name)) return;
  if (a->ntried < CLI_TRIED) a->tried[a->ntried++] = name;
}

int cli_opt(cli_args *a, const char *name) {
  tried(a, name);
  const char *arg = a->argv[a->i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n)) return 0;
  if (arg[n] == '=') {
    a->val = arg + n + 1;
    a->i++;
    return 1;
  }
  if (arg[n]) return 0;
  if (a->i + 1 >= a->argc) {
    cli_error(a->cmd, "%s needs a value", name);
    a->bad = 1;
    a->val = NULL;
    a->i++;
    return 1;
  }
  const char *next = a->argv[a->i + 1];
  if (next[0] == '-' && next[1] == '-' && next[2]) { /* "--epochs --out x": the value is missing */
    cli_error(a->cmd, "%s needs a value (got the option %s)", name, next);
    a->bad = 1;
    a->val = NULL;
    a->i++;
    return 1;
  }
  a->val = next;
  a->i += 2;
  return 1;
}

int cli_flag(cli_args *a, const char *name) {
  tried(a, name);
  if (strcmp(a->argv[a->i], name)) return 0;
  a->i++;
  return 1;
}

/* Edit distance of a[0:la] and b[0:lb] (insertions, deletions, substitutions and swaps of
 * two neighbours: "trian" is one edit from "train"), or a value above `cap` once it must
 * exceed it; both at most 63 characters. */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb, int cap) {
  int prev2[64], prev[64], row[64];
  if (la > 63 || lb > 63) return cap + 1;
  for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int best = row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int v = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < v) v = prev[j] + 1;
      if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < v) v = prev2[j - 2] + 1;
      row[j] = v;
      if (v < best) best = v;
    }
    if (best > cap) return cap + 1;
    memcpy(prev2, prev, sizeof prev);
    memcpy(prev, row, sizeof row);
  }
  return prev[lb];
}

const char *cli_closest(const char *word, size_t len, const char *const *names, int n, size_t skip) {
  const char *best = NULL;
  int best_d = len < 3 ? 0 : len < 5 ? 1
                                     : 2;
  for (int k = 0; k < n; k++) {
    if (strlen(names[k]) < skip) continue;
    const char *name = names[k] + skip;
    int d = edit_distance(word, len, name, strlen(name), best_d);
    if (d <= best_d && (!best || d < best_d)) best = names[k], best_d = d;
  }
  return best;
}

/* 1 if s[0:ls] contains w[0:lw] (lw <= ls). */
static int contains(const char *s, size_t ls, const char *w, size_t lw) {
  for (size_t i = 0; i + lw <= ls; i++)
    if (!memcmp(s + i, w, lw)) return 1;
  return 0;
}

/* Other tools' names for normnet's options (PyTorch scripts, Keras's fit, argparse habits). */
static const struct {
  const char *name, *ours;
} other_names[] = {
    {"spec", "--model"},
    {"preset", "--model"},
    {"dataset", "--data"},
    {"batch-size", "--batch"},
    {"batch_size", "--batch"},
    {"bs", "--batch"},
    {"learning-rate", "--lr"},
    {"learning_rate", "--lr"},
    {"output", "--out"},
    {"output-dir", "--out"},
    {"outdir", "--out"},
    {"optim", "--optimizer"},
    {"schedule", "--lr-schedule"},
    {"scheduler", "--lr-schedule"},
    {"wd", "--weight-decay"},
    {"num-threads", "--threads"},
    {"jobs", "--threads"},
    {"patience", "--early-stop"},
    {"num-epochs", "--epochs"},
    {"n-epochs", "--epochs"},
    {"normalization", "--norm"},
};

/* The option of a->tried a user most likely meant by `arg` ("--name" or "--name=value"), or
 * NULL: another tool's name for it, then the closest spelling (cli_closest), then a name
 * containing the word or contained in it (4+ letters). */
static const char *suggestion(const cli_args *a, const char *arg) {
  if (arg[0] != '-') return NULL;
  const char *key = arg + (arg[1] == '-' ? 2 : 1);
  const size_t len = strcspn(key, "=");
  if (!len) return NULL;
  for (size_t k = 0; k < sizeof other_names / sizeof *other_names; k++)
    if (strlen(other_names[k].name) == len && !strncmp(key, other_names[k].name, len))
      for (int t = 0; t < a->ntried; t++)
        if (!strcmp(a->tried[t], other_names[k].ours)) return a->tried[t];
  const char *best = cli_closest(key, len, a->tried, a->ntried, 2);
  if (best || len < 4) return best;
  for (int t = 0; t < a->ntried; t++) {
    const char *name = a->tried[t] + 2;
    size_t nl = strlen(name);
    if (nl >= 4 && ((nl < len && contains(key, len, name, nl)) || (nl > len && contains(name, nl, key, len))))
      return a->tried[t];
  }
  return NULL;
}

int cli_unknown(cli_args *a) {
  const char *arg = a->argv[a->i], *s = suggestion(a, arg);
  if (s) cli_error(a->cmd, "unknown argument '%s' (did you mean %s? see 'normnet %s --help')", arg, s, a->cmd);
  else cli_error(a->cmd, "unknown argument '%s' (see 'normnet %s --help')", arg, a->cmd);
  return EXIT_USAGE;
}

int cli_int(const cli_args *a, const char *opt, long min, long max, int *out) {
  char *end;
  errno = 0;
  long v = a->val ? strtol(a->val, &end, 10) : 0;
  if (!a->val || errno || end == a->val || *end || v < min || v > max) {
    cli_error(a->cmd, "%s: expected an integer in [%ld, %ld], got '%s'", opt, min, max, a->val ? a->val : "");
    return -1;
  }
  *out = (int)v;
  return 0;
}

int cli_u64(const cli_args *a, const char *opt, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = a->val ? strtoull(a->val, &end, 10) : 0;
  if (!a->val || errno || end == a->val || *end || a->val[0] == '-') {
    cli_error(a->cmd, "%s: expected a non-negative integer, got '%s'", opt, a->val ? a->val : "");
    return -1;
  }
  *out = v;
  return 0;
}

int cli_float(const cli_args *a, const char *opt, double min, double max, float *out) {
  char *end;
  errno = 0;
  double v = a->val ? strtod(a->val, &end) : 0;
  if (!a->val || errno || end == a->val || *end || !isfinite(v) || v < min || v > max) {
    cli_error(a->cmd, "%s: expected a number in [%g, %g], got '%s'", opt, min, max, a->val ? a->val : "");
    return -1;
  }
  *out = (float)v;
  return 0;
}

int cli_list(const char *cmd, const char *opt, const char *text, char (*items)[CLI_ITEM], int max) {
  int n = 0;
  for (const char *p = text; *p;) {
    size_t len = strcspn(p, ",");
    if (!len || (p[len] == ',' && !p[len + 1])) { /* ",a", "a,,b", "a," */
      cli_error(cmd, "%s: an empty value in '%s'", opt, text);
      return -1;
    }
    if (n == max) {
      cli_error(cmd, "%s: at most %d values in '%s'", opt, max, text);
      return -1;
    }
    if (len >= CLI_ITEM) {
      cli_error(cmd, "%s: '%.*s' is longer than %d characters", opt, (int)len, p, CLI_ITEM - 1);
      return -1;
    }
    memcpy(items[n], p, len);
    items[n++][len] = 0;
    p += len;
    if (*p == ',') p++;
  }
  return n;
}

int cli_input_norm(const cli_args *a, const char *text, nn_input_norm *out) {
  nn_input_norm v;
  nn_error err = {0};
  int used = 0;
  if (sscanf(text, "%f,%f%n", &v.mean, &v.std, &used) != 2 || text[used]) {
    cli_error(a->cmd, "--input-norm: expected MEAN,STD, got '%s'", text);
    return -1;
  }
  if (nn_input_norm_check(v, &err)) { /* the library's rule, which it applies to every transform */
    cli_error(a->cmd, "--input-norm: %s", err.msg);
    return -1;
  }
  *out = v;
  return 0;
}

FILE *cli_text_open(cli_text *t) {
  t->buf = NULL;
  t->len = 0;
  t->f = open_memstream(&t->buf, &t->len);
  return t->f;
}

const char *cli_parent_dir(const char *path, char *buf, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) return snprintf(buf, cap, "."), buf;
  const size_t len = slash == path ? 1 : (size_t)(slash - path); /* "/x": the root */
  if (len >= cap) return NULL;
  memcpy(buf, path, len);
  buf[len] = 0;
  return buf;
}

int cli_out_spares_run(const char *cmd, const char *opt, const char *path) {
  static const char *const own[] = {"model.safetensors", "best.safetensors", "history.csv",
                                    "spec.txt", "activations.csv", "lock"};
  const char *slash = path ? strrchr(path, '/') : NULL, *base = slash ? slash + 1 : path;
  int is_own = 0;
  for (size_t i = 0; base && i < sizeof own / sizeof own[0]; i++) is_own |= !strcmp(base, own[i]);
  char dir[4096], ckpt[4200];
  if (!is_own || !cli_parent_dir(path, dir, sizeof dir)) return 0;
  snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", dir);
  if (access(ckpt, F_OK) != 0) return 0; /* not in a run directory */
  cli_error(cmd, "%s %s: that is a file of the run in %s; write the output elsewhere", opt, path, dir);
  return EXIT_USAGE;
}

int cli_out_spares_input(const char *cmd, const char *opt, const char *out, const char *in) {
  struct stat os, is;
  /* by the file, not its name ("./x", "d/../x" and a hard link are the input too); an output
   * that does not exist yet cannot be the input, which does */
  if (stat(out, &os) || stat(in, &is) || os.st_dev != is.st_dev || os.st_ino != is.st_ino) return 0;
  cli_error(cmd, "%s %s: that is the input checkpoint %s; write the output elsewhere", opt, out, in);
  return EXIT_USAGE;
}

int cli_make_parent(const char *cmd, const char *path) {
  char dir[4096];
  /* none to make: no directory named, or one too long (left to the writer's own error) */
  if (!path || !strchr(path, '/') || !cli_parent_dir(path, dir, sizeof dir)) return 0;
  nn_error err = {0};
  return nn_file_make_dirs(dir, &err) ? cli_fail(cmd, &err) : 0;
}

int cli_text_commit(const char *cmd, cli_text *t, const char *path) {
  nn_error err = {0};
  int bad = !t->f || fclose(t->f) != 0;
  t->f = NULL;
  int rc = EXIT_OK;
  if (bad) {
    cli_error(cmd, "%s: out of memory building the file", path);
    rc = EXIT_FAIL;
  } else if (nn_file_write_atomic(path, t->buf, t->len, &err)) {
    rc = cli_fail(cmd, &err);
  }
  free(t->buf);
  t->buf = NULL;
  return rc;
}

/* 1 if path ends in ext (".png"), ignoring the case of ASCII letters. */
int cli_has_ext(const char *path, const char *ext) {
  size_t n = strlen(path), m = strlen(ext);
  if (n <= m || path[n - m - 1] == '/') return 0;
  for (size_t i = 0; i < m; i++) {
    char c = path[n - m + i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != ext[i]) return 0;
  }
  return 1;
}
