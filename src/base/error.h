/* Error reporting: the two tiers of ARCHITECTURE.md §3.
 * - nn_err_set: anything a user or a file can cause -> a status plus a message.
 * - NN_ASSERT: a broken invariant of the library itself -> file:line, abort(). */
#ifndef NN_BASE_ERROR_H
#define NN_BASE_ERROR_H
#include "normnet.h"

/* Fill err (may be NULL) with a printf-style message; returns code so callers can
 * write `return nn_err_set(err, NN_ERR_FORMAT, "...")`. The library's short name for the
 * public nn_error_set (normnet.h). */
#define nn_err_set nn_error_set

/* Prefix an existing message with context ("file.idx: " + msg). Keeps the code. */
nn_status nn_err_prefix(nn_error *err, nn_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void nn_assert_fail(const char *expr, const char *file, int line);
#define NN_ASSERT(e) ((e) ? (void)0 : nn_assert_fail(#e, __FILE__, __LINE__))

#endif
