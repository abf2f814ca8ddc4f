/* Option parsing shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_error(const char *cmd, const char *fmt, ...) {
  char raw[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  /* arguments are echoed as the library echoes file contents: escapes and newlines as \xNN */
  nn_error e;
  nn_error_set(&e, NN_ERR_ARG, "%s", raw);
  /* under mpirun rank 0 prints; side by side, the first failed job's message at the end */
  if (!cli_hold_message(e.msg) && !cli_lane_hold(e.msg)) fprintf(stderr, "normnet %s: %s\n", cmd, e.msg);
}

int cli_fail(const char *cmd, const nn_error *err) {
  cli_error(cmd, "%s", err->msg[0] ? err->msg : "failed");
  return EXIT_FAIL;
}

int cli_opt(cli_args *a, const char *name) {
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
  if (strcmp(a->argv[a->i], name)) return 0;
  a->i++;
  return 1;
}

int cli_unknown(cli_args *a) {
  cli_error(a->cmd, "unknown argument '%s' (see 'normnet %s --help')", a->argv[a->i], a->cmd);
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
  if (sscanf(text, "%f,%f", &v.mean, &v.std) != 2 || !(v.std > 0) || !isfinite(v.mean)) {
    cli_error(a->cmd, "--input-norm: expected MEAN,STD with STD > 0, got '%s'", text);
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
