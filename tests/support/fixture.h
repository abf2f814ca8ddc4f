/* Test support: committed numeric fixtures and closeness checks.
 *
 * Fixture file format (text, written by the tests/fixtures/gen_*.py generators):
 *     # comment lines
 *     @name count
 *     v0 v1 v2 ...        (count numbers, any whitespace, printed with %.17g)
 * Names are free-form without spaces, e.g. "case3.x", "case3.running_mean". */
#ifndef NN_TEST_FIXTURE_H
#define NN_TEST_FIXTURE_H
#include <stddef.h>

typedef struct nn_fixture nn_fixture;

/* Load $NN_FIXTURES/<file>; fails the current cmocka test if missing or malformed. */
nn_fixture *fx_load(const char *file);
void fx_free(nn_fixture *fx);
/* Array by name; fails the test if absent. *count (may be NULL) receives its length. */
const double *fx_get(const nn_fixture *fx, const char *name, size_t *count);
/* Like fx_get but returns NULL when absent. */
const double *fx_find(const nn_fixture *fx, const char *name, size_t *count);
/* Copy an array into a new float / double buffer (caller frees). */
float *fx_floats(const nn_fixture *fx, const char *name, size_t expect_count);
double *fx_doubles(const nn_fixture *fx, const char *name, size_t expect_count);

/* Arrays of a named case, "CASE.FIELD": fx_case_check compares got[0..n) to it (the fixture
 * must hold exactly n values) with rtol = atol = tol; fx_case_floats copies it out. */
void fx_case_check(const nn_fixture *fx, const char *cs, const char *field, const float *got, size_t n, double tol);
float *fx_case_floats(const nn_fixture *fx, const char *cs, const char *field, size_t n);

/* Fail the test (with the first bad index) unless |got - want| <= atol + rtol * |want|
 * for every element. `what` names the quantity in the message. */
void fx_assert_close_fd(const char *what, const float *got, const double *want, size_t n, double rtol, double atol);
/* |got - want| <= tol * (|want| + max|want|): relative, with the array's scale as the floor
 * for elements that cancel to ~0. */
void fx_assert_rel_fd(const char *what, const float *got, const double *want, size_t n, double tol);
/* An optimized kernel against its reference twin: rtol 1e-4 and atol 1e-5 times the largest
 * reference magnitude (doubles: 1e-12 and 1e-12). */
void fx_assert_kernel_close(const char *what, const float *got, const double *want, size_t n);
void fx_assert_kernel_close_dd(const char *what, const double *got, const double *want, size_t n);
/* Every v[i] is finite. */
void fx_assert_all_finite(const char *what, const float *v, size_t n);
/* got and want are bitwise equal (float by float). */
void fx_assert_same_bits(const char *what, const float *got, const float *want, size_t n);
void fx_assert_close_dd(const char *what, const double *got, const double *want, size_t n, double rtol, double atol);

#endif
