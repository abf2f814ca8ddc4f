#include "nn_test.h"
#include "cli_run.h"
#include "base/rng.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

char *tu_tempdir(const char *tag) {
  size_t len = strlen(tag) + 32;
  char *dir = malloc(len);
  if (!dir) return NULL;
  snprintf(dir, len, "/tmp/normnet-%s-XXXXXX", tag);
  if (!mkdtemp(dir)) {
    free(dir);
    return NULL;
  }
  return dir;
}

const char *tu_join(char *buf, const char *dir, const char *name) {
  int n = snprintf(buf, 1024, "%s/%s", dir, name);
  assert_true(n > 0 && n < 1024);
  return buf;
}

void tu_rmtree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (!S_ISDIR(sb.st_mode)) {
    unlink(path);
    return;
  }
  chmod(path, 0700); /* a test may have made it read-only */
  DIR *d = opendir(path);
  if (d) {
    for (struct dirent *e; (e = readdir(d));) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      size_t len = strlen(path) + strlen(e->d_name) + 2;
      char *sub = malloc(len);
      if (!sub) break;
      snprintf(sub, len, "%s/%s", path, e->d_name);
      tu_rmtree(sub);
      free(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

void tu_expect_build_error(const char *text, nn_status code, const char *needle1, const char *needle2) {
  nn_spec *s = NULL;
  nn_error err = {0};
  nn_status st = nn_spec_parse(text, "t.spec", &s, &err);
  if (st == NN_OK) {
    nn_model *m = NULL;
    st = nn_model_create(s, &m, &err);
    nn_model_free(m);
  }
  nn_spec_free(s);
  if (st != code) fail_msg("status %d (%s), want %d for:\n%s", st, err.msg, code, text);
  if (needle1 && !strstr(err.msg, needle1)) fail_msg("message '%s' lacks '%s'", err.msg, needle1);
  if (needle2 && !strstr(err.msg, needle2)) fail_msg("message '%s' lacks '%s'", err.msg, needle2);
}

void tu_expect_fail(nn_status st, const nn_error *err, const void *out, nn_status want, const char *needle1,
                    const char *needle2) {
  if (st != want)
    fail_msg("status %d (%s), expected %d (%s); message: %s", st, nn_status_name(st), want, nn_status_name(want),
             err->msg);
  assert_int_equal(err->code, want);
  assert_null(out);
  if (needle1 && !strstr(err->msg, needle1)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle1);
  if (needle2 && !strstr(err->msg, needle2)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle2);
}

nn_spec *tu_spec(const char *spec_text) {
  nn_error err = {0};
  nn_spec *spec = NULL;
  if (nn_spec_parse(spec_text, "test", &spec, &err)) fail_msg("%s", err.msg);
  return spec;
}

nn_model *tu_model(const char *spec_text, uint64_t seed) {
  nn_error err = {0};
  nn_spec *spec = tu_spec(spec_text);
  nn_model *m = NULL;
  nn_status st = nn_model_create(spec, &m, &err);
  nn_spec_free(spec);
  if (st) fail_msg("%s", err.msg);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  return m;
}

void tu_assert_same_tensors(nn_model *a, nn_model *b) {
  int nt = nn_model_num_tensors(a);
  assert_int_equal(nn_model_num_tensors(b), nt);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view va, vb;
    nn_model_tensor(a, i, &va);
    nn_model_tensor(b, i, &vb);
    assert_string_equal(va.name, vb.name);
    assert_int_equal(va.ndim, vb.ndim);
    for (int d = 0; d < va.ndim; d++) assert_int_equal(va.dims[d], vb.dims[d]);
    assert_int_equal(va.count, vb.count);
    assert_int_equal(va.is_state, vb.is_state);
    if (!va.data) {
      assert_null(vb.data);
      assert_int_equal(*va.count_value, *vb.count_value);
    } else {
      assert_non_null(vb.data);
      if (memcmp(va.data, vb.data, va.count * sizeof(float)) != 0) fail_msg("tensor %s differs", va.name);
    }
  }
}

void tu_fd_check(const char *what, double (*loss)(const void *ctx), const void *ctx, double *v, size_t len,
                 const double *an, double h, double rel_tol) {
  double *fd = malloc((len ? len : 1) * sizeof *fd);
  assert_non_null(fd);
  for (size_t i = 0; i < len; i++) {
    double keep = v[i];
    v[i] = keep + h;
    double lp = loss(ctx);
    v[i] = keep - h;
    double lm = loss(ctx);
    v[i] = keep;
    fd[i] = (lp - lm) / (2 * h);
  }
  double scale = 0, err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < len; i++) scale = fmax(scale, fabs(an[i]));
  assert_true(scale > 1e-3); /* a vanishing gradient would make the check vacuous */
  for (size_t i = 0; i < len; i++)
    if (fabs(fd[i] - an[i]) > err) err = fabs(fd[i] - an[i]), worst = i;
  if (!(err / scale < rel_tol)) {
    double a = an[worst], n = fd[worst];
    free(fd);
    fail_msg("%s: finite-difference mismatch at %zu: analytic %.12g, numeric %.12g (rel %.3g)", what, worst, a, n,
             err / scale);
  }
  free(fd);
}

float *tu_fbuf(size_t n) {
  float *p = calloc(n ? n : 1, sizeof *p);
  assert_non_null(p);
  return p;
}

double *tu_dbuf(size_t n) {
  double *p = calloc(n ? n : 1, sizeof *p);
  assert_non_null(p);
  return p;
}

void tu_fill_f(float *p, size_t n, float v) {
  for (size_t i = 0; i < n; i++) p[i] = v;
}

double tu_maxabs_d(const double *v, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(v[i]) > m) m = fabs(v[i]);
  return m;
}

void tu_to_double(const float *f, double *d, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = f[i];
}

uint64_t tu_rng_next(tu_rng *r) { /* xorshift64* */
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ULL;
}

int tu_setup_tempdir(void **state) {
  *state = tu_tempdir("test");
  return *state ? 0 : -1;
}

int tu_teardown_tempdir(void **state) {
  tu_rmtree(*state);
  free(*state);
  return 0;
}

void tu_put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

void tu_write_idx_pair(const char *dir, const char *prefix, int n, int h, int w, int classes, uint64_t seed) {
  mkdir(dir, 0777);
  size_t isz = 16 + (size_t)n * h * w, lsz = 8 + (size_t)n;
  uint8_t *img = malloc(isz), *lab = malloc(lsz);
  assert_non_null(img);
  assert_non_null(lab);
  tu_put_be32(img, 0x803u), tu_put_be32(img + 4, (uint32_t)n), tu_put_be32(img + 8, (uint32_t)h), tu_put_be32(img + 12, (uint32_t)w);
  tu_put_be32(lab, 0x801u), tu_put_be32(lab + 4, (uint32_t)n);
  tu_rng r = {seed * 0x9e3779b97f4a7c15ull + 1};
  for (int i = 0; i < n; i++) {
    int k = i % classes, band = k * h / classes;
    lab[8 + i] = (uint8_t)k;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        int v = (int)(tu_rng_next(&r) % 90) + (y >= band && y < band + h / classes + 2 ? 150 : 0);
        img[16 + ((size_t)i * h + y) * w + x] = (uint8_t)(v > 255 ? 255 : v);
      }
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
  tu_write_file(path, img, isz);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
  tu_write_file(path, lab, lsz);
  free(img);
  free(lab);
}

void tu_fill_normal(nn_rng *r, float *v, size_t n, double scale, double off) {
  for (size_t i = 0; i < n; i++) v[i] = (float)(off + scale * nn_rng_normal(r));
}

void tu_fill_grouped(nn_rng *r, float *x, int n, int c, int s, int groups, int hard) {
  const size_t m = (size_t)(c / groups) * s;
  for (int t = 0; t < n * groups; t++) {
    double off = 4.0 * (nn_rng_uniform(r) - 0.5), sc = 0.2 + 2.0 * nn_rng_uniform(r);
    int kind = hard ? t % 5 : 0;
    if (kind == 2) off = 1e3, sc = 0.05;
    if (kind == 3) sc = 3e-3;
    if (kind == 4) sc = 0;
    for (size_t k = 0; k < m; k++) x[(size_t)t * m + k] = (float)(off + sc * nn_rng_normal(r));
  }
}

double tu_unif(tu_rng *r, double lo, double hi) {
  return lo + (hi - lo) * (double)(tu_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void tu_fill_pair(tu_rng *r, float *f, double *d, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++) {
    f[i] = (float)tu_unif(r, lo, hi);
    if (d) d[i] = f[i];
  }
}

void tu_fill_nan(float *f, size_t n) {
  for (size_t i = 0; i < n; i++) f[i] = NAN;
}
