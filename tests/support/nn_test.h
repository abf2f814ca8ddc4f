/* Helpers shared by the test programs (use inside cmocka tests; failures fail the test). */
#ifndef NN_TEST_H
#define NN_TEST_H
#include <stddef.h>
#include <stdint.h>

#include "normnet.h"

/* A fresh directory /tmp/normnet-<tag>-XXXXXX (malloc'd path; NULL if it cannot be made). */
char *tu_tempdir(const char *tag);
/* dir/name into buf (1024 bytes; a longer path fails the test); returns buf. */
const char *tu_join(char *buf, const char *dir, const char *name);
/* Remove a file or directory tree (making read-only directories writable first). */
void tu_rmtree(const char *path);

/* Parse `spec_text` (named "t.spec") and build the model: the first failure must have
 * status `code` and a message containing needle1 and needle2 (either may be NULL). */
void tu_expect_build_error(const char *spec_text, nn_status code, const char *needle1, const char *needle2);
/* A failed call: status st and err->code are `want`, its output `out` was left NULL, and the
 * message contains needle1 and needle2 (either may be NULL). */
void tu_expect_fail(nn_status st, const nn_error *err, const void *out, nn_status want, const char *needle1,
                    const char *needle2);

/* ---- models ---- */
/* Parse spec_text (named "test"): the spec, or fail the test with the parser's message. */
nn_spec *tu_spec(const char *spec_text);
/* The model of spec_text, initialised (NN_INIT_DEFAULT) from the library's RNG seeded with seed. */
nn_model *tu_model(const char *spec_text, uint64_t seed);
/* Fail unless a and b have the same tensors (names, shapes, roles) with bitwise equal values
 * (num_batches_tracked included). */
void tu_assert_same_tensors(nn_model *a, nn_model *b);

/* Central differences (step h) of the scalar loss(ctx) in each v[i] against the analytic
 * gradient an[0..len): fails unless max |fd - an| / max |an| < rel_tol, and if the gradient
 * vanishes (max |an| <= 1e-3), which would make the check vacuous. */
void tu_fd_check(const char *what, double (*loss)(const void *ctx), const void *ctx, double *v, size_t len,
                 const double *an, double h, double rel_tol);

/* ---- buffers and numbers ---- */
/* Zeroed buffers (never NULL: failing to allocate fails the test). */
float *tu_fbuf(size_t n);
double *tu_dbuf(size_t n);
void tu_fill_f(float *p, size_t n, float v);
double tu_maxabs_d(const double *v, size_t n);
void tu_to_double(const float *f, double *d, size_t n);
/* v[i] = off + scale * N(0,1) from the library's RNG. */
void tu_fill_normal(nn_rng *r, float *v, size_t n, double scale, double off);
/* x[N,C,S] with an offset and a scale drawn per (sample, group). With `hard`, groups cycle
 * through: a large mean with a small spread (1e3 + 0.05 N(0,1)), a spread of 3e-3 (variance
 * ~ eps), and a constant group (var exactly 0). */
void tu_fill_grouped(nn_rng *r, float *x, int n, int c, int s, int groups, int hard);

/* A tiny RNG of the tests' own (xorshift64*), independent of the library's nn_rng. */
typedef struct {
  uint64_t s;
} tu_rng;
uint64_t tu_rng_next(tu_rng *r);
/* Uniform in [lo, hi) from the tests' RNG. */
double tu_unif(tu_rng *r, double lo, double hi);
/* f[i] random in [lo, hi); d[i] = (double)f[i] exactly (d may be NULL). */
void tu_fill_pair(tu_rng *r, float *f, double *d, size_t n, double lo, double hi);
/* NaN everywhere (an output a kernel must overwrite). */
void tu_fill_nan(float *f, size_t n);

/* p[0..4) = v, big-endian (IDX headers). */
void tu_put_be32(uint8_t *p, uint32_t v);
/* Write DIR/PREFIX-images-idx3-ubyte and DIR/PREFIX-labels-idx1-ubyte (DIR is created): n
 * images of h x w with labels i % classes; class k is bright in a band of rows that moves
 * with k, over noise from `seed`, so the task is learnable. */
void tu_write_idx_pair(const char *dir, const char *prefix, int n, int h, int w, int classes, uint64_t seed);

/* cmocka group fixtures: *state = a fresh temp dir (tu_tempdir("test")), removed after. */
int tu_setup_tempdir(void **state);
int tu_teardown_tempdir(void **state);

#endif
