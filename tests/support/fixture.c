#include "fixture.h"
#include "nn_test.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct {
  char name[256];
  double *v;
  size_t n;
} fx_array;

struct nn_fixture {
  fx_array *a;
  size_t n, cap;
};

nn_fixture *fx_load(const char *file) {
  const char *dir = getenv("NN_FIXTURES");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", file);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open fixture %s", path);
  nn_fixture *fx = calloc(1, sizeof *fx);
  char tok[256];
  while (fscanf(f, "%255s", tok) == 1) {
    if (tok[0] == '#') {
      int ch;
      while ((ch = fgetc(f)) != EOF && ch != '\n') {}
      continue;
    }
    if (tok[0] != '@') fail_msg("%s: expected '@name count', got '%s'", path, tok);
    size_t count;
    if (fscanf(f, "%zu", &count) != 1) fail_msg("%s: no count after %s", path, tok);
    if (fx->n == fx->cap) {
      fx->cap = fx->cap ? 2 * fx->cap : 64;
      fx->a = realloc(fx->a, fx->cap * sizeof *fx->a);
    }
    fx_array *a = &fx->a[fx->n++];
    snprintf(a->name, sizeof a->name, "%s", tok + 1);
    a->n = count;
    a->v = malloc((count ? count : 1) * sizeof(double));
    for (size_t i = 0; i < count; i++)
      if (fscanf(f, "%lf", &a->v[i]) != 1) fail_msg("%s: array %s short at %zu of %zu", path, a->name, i, count);
  }
  fclose(f);
  return fx;
}

void fx_free(nn_fixture *fx) {
  if (!fx) return;
  for (size_t i = 0; i < fx->n; i++) free(fx->a[i].v);
  free(fx->a);
  free(fx);
}

const double *fx_find(const nn_fixture *fx, const char *name, size_t *count) {
  for (size_t i = 0; i < fx->n; i++)
    if (strcmp(fx->a[i].name, name) == 0) {
      if (count) *count = fx->a[i].n;
      return fx->a[i].v;
    }
  return NULL;
}

const double *fx_get(const nn_fixture *fx, const char *name, size_t *count) {
  const double *v = fx_find(fx, name, count);
  if (!v) fail_msg("fixture has no array '%s'", name);
  return v;
}

float *fx_floats(const nn_fixture *fx, const char *name, size_t expect_count) {
  size_t n = 0;
  const double *v = fx_get(fx, name, &n);
  if (n != expect_count) fail_msg("fixture array '%s' has %zu values, expected %zu", name, n, expect_count);
  float *out = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) out[i] = (float)v[i];
  return out;
}

double *fx_doubles(const nn_fixture *fx, const char *name, size_t expect_count) {
  size_t n = 0;
  const double *v = fx_get(fx, name, &n);
  if (n != expect_count) fail_msg("fixture array '%s' has %zu values, expected %zu", name, n, expect_count);
  double *out = malloc((n ? n : 1) * sizeof(double));
  memcpy(out, v, n * sizeof(double));
  return out;
}

static void check_close(const char *what, size_t i, double got, double want, double rtol, double atol) {
  if (!(fabs(got - want) <= atol + rtol * fabs(want)))
    fail_msg("%s[%zu]: got %.9g, want %.9g (|diff| %.3g > atol %.1g + rtol %.1g * |want|)", what, i, got,
             want, fabs(got - want), atol, rtol);
}

void fx_assert_close_fd(const char *what, const float *got, const double *want, size_t n, double rtol, double atol) {
  for (size_t i = 0; i < n; i++) check_close(what, i, got[i], want[i], rtol, atol);
}

void fx_assert_close_dd(const char *what, const double *got, const double *want, size_t n, double rtol, double atol) {
  for (size_t i = 0; i < n; i++) check_close(what, i, got[i], want[i], rtol, atol);
}

void fx_case_check(const nn_fixture *fx, const char *cs, const char *field, const float *got, size_t n, double tol) {
  char name[256];
  size_t cnt;
  snprintf(name, sizeof name, "%s.%s", cs, field);
  const double *want = fx_get(fx, name, &cnt);
  if (cnt != n) fail_msg("fixture %s has %zu values, expected %zu", name, cnt, n);
  fx_assert_close_fd(name, got, want, n, tol, tol);
}

float *fx_case_floats(const nn_fixture *fx, const char *cs, const char *field, size_t n) {
  char name[256];
  snprintf(name, sizeof name, "%s.%s", cs, field);
  return fx_floats(fx, name, n);
}

void fx_assert_rel_fd(const char *what, const float *got, const double *want, size_t n, double tol) {
  fx_assert_close_fd(what, got, want, n, tol, tol * tu_maxabs_d(want, n));
}

void fx_assert_same_bits(const char *what, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof *a)) fail_msg("%s differs at %zu: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

void fx_assert_all_finite(const char *what, const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) fail_msg("%s[%zu] is not finite (%g)", what, i, (double)v[i]);
}

void fx_assert_kernel_close(const char *what, const float *got, const double *want, size_t n) {
  fx_assert_close_fd(what, got, want, n, 1e-4, 1e-5 * tu_maxabs_d(want, n) + 1e-30);
}

void fx_assert_kernel_close_dd(const char *what, const double *got, const double *want, size_t n) {
  fx_assert_close_dd(what, got, want, n, 1e-12, 1e-12 * tu_maxabs_d(want, n) + 1e-300);
}
