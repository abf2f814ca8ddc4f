/* Learning-rate schedules (src/optim/schedule.c) against torch.optim.lr_scheduler:
 * - constant, step:E:G (StepLR per epoch), cosine (CosineAnnealingLR per step), onecycle
 *   (OneCycleLR) and a linear warm-up chained with each: the lr of every optimizer step
 *   equals PyTorch's (tests/fixtures/lr_torch.txt, gen_lr_fixtures.py);
 * - bad schedule texts and onecycle with a warmup are refused with NN_ERR_ARG;
 * - the text form parses back to the same schedule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "normnet.h"

/* Mirrors CASES in gen_lr_fixtures.py. */
static const struct {
  const char *name, *text;
  long warmup;
  double lr;
  long spe, total;
} cases[] = {
    {"constant", "constant", 0, 0.1, 7, 30},
    {"step", "step:3:0.5", 0, 0.1, 7, 70},
    {"cosine", "cosine", 0, 0.05, 10, 50},
    {"onecycle", "onecycle", 0, 0.4, 10, 50},
    {"onecycle_odd", "onecycle", 0, 0.01, 13, 37},
    {"cosine_warmup", "cosine", 5, 0.1, 8, 40},
    {"step_warmup", "step:2:0.1", 4, 0.2, 5, 30},
    {"constant_warmup", "constant", 3, 0.5, 4, 12},
};

static void test_against_torch(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("lr_torch.txt");
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char name[64];
    snprintf(name, sizeof name, "%s.lr", cases[c].name);
    size_t n;
    const double *want = fx_get(fx, name, &n);
    assert_int_equal(n, (size_t)cases[c].total);
    nn_lr_schedule s;
    nn_error err = {0};
    assert_int_equal(nn_lr_schedule_parse(cases[c].text, cases[c].warmup, &s, &err), NN_OK);
    double *got = malloc(n * sizeof *got);
    assert_non_null(got);
    for (size_t t = 0; t < n; t++) got[t] = nn_lr_schedule_at(&s, cases[c].lr, (nn_lr_position){.step = (long)t, .steps_per_epoch = cases[c].spe, .total_steps = cases[c].total});
    fx_assert_close_dd(name, got, want, n, 1e-9, 1e-15);
    free(got);
  }
  fx_free(fx);
}

static void test_shapes(void **state) {
  (void)state;
  nn_lr_schedule s;
  nn_error err = {0};
  /* cosine ends near 0, onecycle starts at lr/25 and peaks at lr after 30% of the steps */
  assert_int_equal(nn_lr_schedule_parse("cosine", 0, &s, &err), NN_OK);
  assert_true(nn_lr_schedule_at(&s, 1.0, (nn_lr_position){.step = 99, .steps_per_epoch = 10, .total_steps = 100}) < 1e-3);
  assert_int_equal(nn_lr_schedule_parse("onecycle", 0, &s, &err), NN_OK);
  assert_true(fabs(nn_lr_schedule_at(&s, 1.0, (nn_lr_position){.step = 0, .steps_per_epoch = 10, .total_steps = 100}) - 0.04) < 1e-12);
  assert_true(fabs(nn_lr_schedule_at(&s, 1.0, (nn_lr_position){.step = 29, .steps_per_epoch = 10, .total_steps = 100}) - 1.0) < 1e-12);
}

static void test_refusals(void **state) {
  (void)state;
  static const char *const bad[] = {"step", "step:0:0.5", "step:2", "step:2:0", "step:2:1.5", "step:x:0.5",
                                    "cosine2", "exp", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    nn_lr_schedule s;
    nn_error err = {0};
    assert_int_equal(nn_lr_schedule_parse(bad[i], 0, &s, &err), NN_ERR_ARG);
    assert_non_null(strstr(err.msg, "schedule"));
  }
  nn_lr_schedule s;
  nn_error err = {0};
  assert_int_equal(nn_lr_schedule_parse("onecycle", 10, &s, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "warm"));
  assert_int_equal(nn_lr_schedule_parse("cosine", -1, &s, &err), NN_ERR_ARG);
}

static void test_format_roundtrip(void **state) {
  (void)state;
  static const char *const texts[] = {"constant", "step:3:0.5", "cosine", "onecycle", "step:10:0.125"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    nn_lr_schedule s, t;
    nn_error err = {0};
    char buf[64];
    assert_int_equal(nn_lr_schedule_parse(texts[i], 0, &s, &err), NN_OK);
    nn_lr_schedule_format(&s, buf, sizeof buf);
    assert_string_equal(buf, texts[i]);
    assert_int_equal(nn_lr_schedule_parse(buf, 0, &t, &err), NN_OK);
    assert_memory_equal(&s, &t, sizeof s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_torch),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_format_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
