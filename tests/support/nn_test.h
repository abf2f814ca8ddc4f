/* Helpers shared by the test programs (use inside cmocka tests; failures fail the test). */
#ifndef NN_TEST_H
#define NN_TEST_H
#include <stddef.h>

#include "normnet.h"

/* A fresh directory /tmp/normnet-<tag>-XXXXXX (malloc'd path; NULL if it cannot be made). */
char *tu_tempdir(const char *tag);
/* Remove a file or directory tree (making read-only directories writable first). */
void tu_rmtree(const char *path);

/* Parse `spec_text` (named "t.spec") and build the model: the first failure must have
 * status `code` and a message containing needle1 and needle2 (either may be NULL). */
void tu_expect_build_error(const char *spec_text, nn_status code, const char *needle1, const char *needle2);

/* Central differences (step h) of the scalar loss(ctx) in each v[i] against the analytic
 * gradient an[0..len): fails unless max |fd - an| / max |an| < rel_tol, and if the gradient
 * vanishes (max |an| <= 1e-3), which would make the check vacuous. */
void tu_fd_check(const char *what, double (*loss)(const void *ctx), const void *ctx, double *v, size_t len,
                 const double *an, double h, double rel_tol);

#endif
