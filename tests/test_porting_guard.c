/* The porting guard (issue 13): `batchnorm momentum=0.99` without a convention is Keras's
 * number read as PyTorch's; it is an error that names the line and explains both fixes.
 * Written out as convention=pytorch it is accepted (and survives the canonical text), as
 * are Keras's meaning, PyTorch's range up to 0.5, and cumulative averaging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nn_test.h"
#include "normnet.h"

static void expect_ok(const char *text) {
  nn_spec *s = NULL, *again = NULL;
  nn_error err = {0};
  if (nn_spec_parse(text, "t.spec", &s, &err)) fail_msg("%s: %s", text, err.msg);
  char *canon = nn_spec_to_text(s);
  assert_non_null(canon);
  if (nn_spec_parse(canon, "canonical", &again, &err)) fail_msg("canonical text refused: %s", err.msg);
  free(canon);
  nn_spec_free(again);
  nn_spec_free(s);
}

static void test_guard(void **state) {
  (void)state;
  tu_expect_build_error("input shape=784\ndense units=8\nbatchnorm momentum=0.99\n", NN_ERR_SPEC, "t.spec:3",
                        "convention=keras");
  tu_expect_build_error("input shape=784\ndense units=8\nbatchnorm momentum=0.99\n", NN_ERR_SPEC, "momentum=0.01",
                        "convention=pytorch");
  tu_expect_build_error("input shape=784\ndense units=8\nbatchnorm momentum=0.51 eps=1e-3\n", NN_ERR_SPEC, "t.spec:3",
                        "NEW batch");
  expect_ok("input shape=784\ndense units=8\nbatchnorm momentum=0.99 convention=pytorch\n");
  expect_ok("input shape=784\ndense units=8\nbatchnorm momentum=0.99 convention=keras\n");
  expect_ok("input shape=784\ndense units=8\nbatchnorm convention=keras\n");
  expect_ok("input shape=784\ndense units=8\nbatchnorm momentum=0.5\n");
  expect_ok("input shape=784\ndense units=8\nbatchnorm momentum=cumulative\n");
  /* the presets are unaffected */
  for (int i = 0; i < nn_preset_count(); i++) expect_ok(nn_preset_at(i)->spec);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_guard)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
