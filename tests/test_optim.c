/* Optimizers (src/optim/optimizer.c) against torch.optim:
 * - SGD (plain, momentum, nesterov, momentum + weight decay), Adam (defaults; betas, eps and
 *   L2 weight decay) and AdamW: 5 steps on the 15 parameters of "input shape=4 / dense
 *   units=3" from PyTorch's initial values and fixed gradients, compared with PyTorch's
 *   float32 parameters after every step (tests/fixtures/optim_torch.txt, gen_optim_fixtures.py);
 * - a frozen tensor (batchnorm freeze_affine=1) stays bitwise unchanged under SGD with
 *   momentum and weight decay, while the trainable tensors around it move;
 * - nn_optimizer_create rejects out-of-range configs with NN_ERR_ARG;
 * - a model large enough for the threaded update (90k parameters in two spans around a frozen
 *   tensor) gets every trainable element updated exactly once, by the same formula as a
 *   double-precision recomputation, bitwise the same on 1 and 3 threads;
 * - denormals: Adam's first moments decaying from 1e-31 under zero gradients reach the
 *   denormal range; PyTorch's Adam keeps them, each step's b1*m correctly rounded, Keras's
 *   flushes them to 0 as TensorFlow does, on one thread and on a team; the callers' own
 *   floating-point mode (denormals kept) is the same afterwards, on every thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "fixture.h"
#include "nn_test.h"
#include "normnet.h"

#define FIXTURE "optim_torch.txt"
#define STEPS 5
#define NP 15 /* dense 4 -> 3: weight (3,4) then bias (3) */
#define RTOL 1e-5
#define ATOL 1e-6

static const char *const DENSE_SPEC = "input shape=4\ndense units=3\n";

static nn_fixture *fx;

static int group_setup(void **state) {
  (void)state;
  fx = fx_load(FIXTURE);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  fx_free(fx);
  return 0;
}

static nn_model *make_model(const char *text) {
  nn_error err = {0};
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  if (nn_spec_parse(text, "test", &spec, &err) || nn_model_create(spec, &m, &err))
    fail_msg("model: %s", err.msg);
  nn_spec_free(spec);
  return m;
}

/* ---- PyTorch trajectories ---------------------------------------------------------------- */

typedef struct {
  const char *name; /* fixture prefix */
  nn_opt_config cfg;
} optim_case;

static optim_case cases[7];

static void fill_cases(void) {
  nn_opt_config c;
  c = nn_opt_defaults(NN_OPT_SGD), c.lr = 0.1f;
  cases[0] = (optim_case){"sgd", c};
  c.momentum = 0.9f;
  cases[1] = (optim_case){"sgd_mom", c};
  c.nesterov = 1;
  cases[2] = (optim_case){"sgd_nesterov", c};
  c = nn_opt_defaults(NN_OPT_SGD), c.lr = 0.05f, c.momentum = 0.9f, c.weight_decay = 1e-2f;
  cases[3] = (optim_case){"sgd_mom_wd", c};
  c = nn_opt_defaults(NN_OPT_ADAM), c.lr = 1e-3f;
  cases[4] = (optim_case){"adam", c};
  c = nn_opt_defaults(NN_OPT_ADAM), c.lr = 1e-2f, c.beta1 = 0.8f, c.beta2 = 0.99f, c.eps = 1e-7f,
  c.weight_decay = 1e-2f;
  cases[5] = (optim_case){"adam_wd", c};
  c = nn_opt_defaults(NN_OPT_ADAMW), c.lr = 1e-2f, c.weight_decay = 0.1f;
  cases[6] = (optim_case){"adamw", c};
}

static void test_matches_torch(void **state) {
  const optim_case *oc = *state;
  nn_model *m = make_model(DENSE_SPEC);
  assert_int_equal(nn_model_param_count(m), NP);
  float *init = fx_floats(fx, "init", NP);
  memcpy(nn_model_params(m), init, NP * sizeof(float));
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  if (nn_optimizer_create(&oc->cfg, m, &opt, &err)) fail_msg("optimizer %s: %s", oc->name, err.msg);
  for (int k = 1; k <= STEPS; k++) {
    char name[64], what[96];
    snprintf(name, sizeof name, "grad%d", k);
    float *g = fx_floats(fx, name, NP);
    memcpy(nn_model_grads(m), g, NP * sizeof(float));
    free(g);
    nn_optimizer_step(opt, m);
    snprintf(name, sizeof name, "%s.step%d", oc->name, k);
    snprintf(what, sizeof what, "%s params after step %d", oc->name, k);
    fx_assert_close_fd(what, nn_model_params(m), fx_get(fx, name, NULL), NP, RTOL, ATOL);
    /* the optimizer reads the gradients, never writes them */
    g = fx_floats(fx, (snprintf(name, sizeof name, "grad%d", k), name), NP);
    assert_memory_equal(nn_model_grads(m), g, NP * sizeof(float));
    free(g);
  }
  nn_optimizer_free(opt);
  nn_model_free(m);
  free(init);
}

/* ---- frozen tensors ------------------------------------------------------------------------ */

static void test_frozen_affine_untouched(void **state) {
  (void)state;
  /* dense 4->3 (12 + 3) | batchnorm weight (3), bias (3), frozen | dense 3->2 (6 + 2) */
  nn_model *m = make_model("input shape=4\ndense units=3\nbatchnorm freeze_affine=1\ndense units=2\n");
  const size_t n = nn_model_param_count(m), frozen_at = 15, frozen_n = 6;
  assert_int_equal(n, 29);
  size_t trainable = 0;
  for (int i = 0; i < nn_model_num_layers(m); i++) {
    nn_layer_info li;
    nn_model_layer_info(m, i, &li);
    if (!strcmp(li.kind, "batchnorm")) assert_int_equal(li.trainable, 0);
    trainable += li.trainable;
  }
  assert_int_equal(trainable, n - frozen_n);

  float *p = nn_model_params(m), *g = nn_model_grads(m);
  for (size_t i = 0; i < n; i++) {
    p[i] = 0.25f + 0.1f * (float)i;                            /* nonzero: weight decay would move them */
    g[i] = (i % 2 ? 1.0f : -0.5f) * (1.0f + 0.01f * (float)i); /* nonzero grads everywhere */
  }
  float before[29];
  memcpy(before, p, sizeof before);

  nn_opt_config c = nn_opt_defaults(NN_OPT_SGD);
  c.lr = 0.1f, c.momentum = 0.9f, c.weight_decay = 0.1f;
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  if (nn_optimizer_create(&c, m, &opt, &err)) fail_msg("optimizer: %s", err.msg);
  for (int k = 0; k < 3; k++) nn_optimizer_step(opt, m);

  assert_memory_equal(p + frozen_at, before + frozen_at, frozen_n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    if (i >= frozen_at && i < frozen_at + frozen_n) continue;
    if (p[i] == before[i]) fail_msg("trainable parameter %zu did not move (%g)", i, (double)p[i]);
  }
  nn_optimizer_free(opt);

  /* Adam and AdamW (decoupled decay) skip it as well */
  for (int kind = NN_OPT_ADAM; kind <= NN_OPT_ADAMW; kind++) {
    c = nn_opt_defaults((nn_opt_kind)kind);
    c.lr = 1e-2f, c.weight_decay = 0.1f;
    if (nn_optimizer_create(&c, m, &opt, &err)) fail_msg("optimizer: %s", err.msg);
    for (int k = 0; k < 3; k++) nn_optimizer_step(opt, m);
    assert_memory_equal(p + frozen_at, before + frozen_at, frozen_n * sizeof(float));
    nn_optimizer_free(opt);
  }
  nn_model_free(m);
}

/* batchnorm scale=0 keeps gamma at 1 and center=0 beta at 0 through real training steps (Keras's
 * scale=False / center=False); the other half trains. */
static void test_half_affine_fixed(void **state) {
  (void)state;
  for (int half = 0; half < 2; half++) { /* 0: scale=0, 1: center=0 */
    nn_model *m = tu_model(half ? "input shape=4\ndense units=3\nbatchnorm center=0\nrelu\ndense units=2\n"
                                : "input shape=4\ndense units=3\nbatchnorm scale=0\nrelu\ndense units=2\n",
                           7); /* initialized: gamma 1, beta 0 */
    float *gamma = NULL, *beta = NULL;
    for (int t = 0; t < nn_model_num_tensors(m); t++) {
      nn_tensor_view v;
      nn_model_tensor(m, t, &v);
      if (!strcmp(v.name, "1.weight")) gamma = v.data;
      if (!strcmp(v.name, "1.bias")) beta = v.data;
    }
    assert_non_null(gamma);
    assert_non_null(beta);
    float x[8 * 4];
    int32_t y[8];
    for (int i = 0; i < 32; i++) x[i] = (float)((i * 7) % 11) * 0.3f - 1.0f;
    for (int i = 0; i < 8; i++) y[i] = i % 2;
    nn_opt_config c = nn_opt_defaults(NN_OPT_ADAM);
    c.lr = 0.05f, c.weight_decay = 0.1f;
    nn_optimizer *opt = NULL;
    nn_error err = {0};
    if (nn_optimizer_create(&c, m, &opt, &err)) fail_msg("optimizer: %s", err.msg);
    assert_int_equal(nn_optimizer_num_tensors(opt, m), 2 * 5); /* 2 dense x 2 + the trained half */
    for (int k = 0; k < 5; k++) {
      nn_model_zero_grads(m);
      if (nn_model_forward(m, x, y, 8, NN_MODE_TRAIN, NULL, NULL, NULL, &err) || nn_model_backward(m, &err))
        fail_msg("%s", err.msg);
      nn_optimizer_step(opt, m);
    }
    for (int i = 0; i < 3; i++) {
      const float fixed = half ? beta[i] : gamma[i], trained = half ? gamma[i] : beta[i];
      if (fixed != (half ? 0.0f : 1.0f)) fail_msg("%s=0: the fixed half moved to %g", half ? "center" : "scale", (double)fixed);
      if (trained == (half ? 1.0f : 0.0f)) fail_msg("%s=0: the trained half did not move", half ? "center" : "scale");
    }
    nn_optimizer_free(opt);
    nn_model_free(m);
  }
}

/* ---- config validation ----------------------------------------------------------------------- */

static void expect_rejected(nn_model *m, const nn_opt_config *c, const char *what) {
  static char sentinel;
  nn_optimizer *opt = (nn_optimizer *)(void *)&sentinel; /* must be reset to NULL */
  nn_error err = {0};
  nn_status s = nn_optimizer_create(c, m, &opt, &err);
  if (s != NN_ERR_ARG) {
    if (s == NN_OK) nn_optimizer_free(opt);
    fail_msg("%s: expected NN_ERR_ARG, got %d", what, (int)s);
  }
  assert_int_equal(err.code, NN_ERR_ARG);
  assert_true(err.msg[0] != '\0');
  assert_null(opt);
}

static void expect_accepted(nn_model *m, const nn_opt_config *c, const char *what) {
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  if (nn_optimizer_create(c, m, &opt, &err)) fail_msg("%s: rejected: %s", what, err.msg);
  assert_non_null(opt);
  nn_optimizer_free(opt);
}

static void test_bad_configs_rejected(void **state) {
  (void)state;
  nn_model *m = make_model(DENSE_SPEC);
  nn_opt_config c;
#define REJECT(kind, stmt)                    \
  do {                                        \
    c = nn_opt_defaults(kind);                \
    stmt;                                     \
    expect_rejected(m, &c, #kind ": " #stmt); \
  } while (0)
  for (int k = NN_OPT_SGD; k <= NN_OPT_ADAMW; k++) {
    const nn_opt_kind kind = (nn_opt_kind)k;
    REJECT(kind, c.lr = 0);
    REJECT(kind, c.lr = -0.1f);
    REJECT(kind, c.lr = NAN);
    REJECT(kind, c.weight_decay = -1e-4f);
  }
  REJECT(NN_OPT_SGD, c.momentum = 1.0f);
  REJECT(NN_OPT_SGD, c.momentum = 1.5f);
  REJECT(NN_OPT_SGD, c.momentum = -0.1f);
  REJECT(NN_OPT_SGD, c.nesterov = 1);
  REJECT(NN_OPT_SGD, (c.nesterov = 1, c.momentum = 0));
  REJECT(NN_OPT_ADAM, c.beta1 = 1.0f);
  REJECT(NN_OPT_ADAM, c.beta2 = 1.0f);
  REJECT(NN_OPT_ADAM, c.beta1 = -0.1f);
  REJECT(NN_OPT_ADAMW, c.beta1 = 1.0f);
  REJECT(NN_OPT_ADAMW, c.beta2 = 1.5f);
  REJECT(NN_OPT_ADAM, c.eps = 0);
  REJECT(NN_OPT_SGD, c.kind = (nn_opt_kind)3);
#undef REJECT

  /* the edges that are allowed */
  for (int k = NN_OPT_SGD; k <= NN_OPT_ADAMW; k++) {
    c = nn_opt_defaults((nn_opt_kind)k);
    expect_accepted(m, &c, "defaults");
    c.weight_decay = 0;
    expect_accepted(m, &c, "weight_decay 0");
  }
  c = nn_opt_defaults(NN_OPT_SGD), c.momentum = 0.999f, c.nesterov = 1;
  expect_accepted(m, &c, "sgd nesterov momentum 0.999");
  c = nn_opt_defaults(NN_OPT_ADAM), c.beta1 = 0, c.beta2 = 0;
  expect_accepted(m, &c, "adam betas 0");
  nn_model_free(m);
}


/* ---- the threaded update ------------------------------------------------------------------ */

/* One step of cfg in double from (p, g, m1, m2) as floats; returns the new parameter. */
static double ref_update(const nn_opt_config *c, long step, double p, double g, double *m1, double *m2) {
  if (c->kind == NN_OPT_SGD) {
    double d = g + c->weight_decay * p;
    if (c->momentum > 0) {
      *m1 = step == 1 ? d : c->momentum * *m1 + d;
      d = c->nesterov ? d + c->momentum * *m1 : *m1;
    }
    return p - c->lr * d;
  }
  double d = g;
  if (c->kind == NN_OPT_ADAMW) p *= 1.0 - (double)c->lr * c->weight_decay;
  else d += c->weight_decay * p;
  *m1 = c->beta1 * *m1 + (1.0 - c->beta1) * d;
  *m2 = c->beta2 * *m2 + (1.0 - c->beta2) * d * d;
  double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
  if (c->keras_eps) return p - c->lr * sqrt(bc2) / bc1 * *m1 / (sqrt(*m2) + c->eps);
  return p - c->lr / bc1 * *m1 / (sqrt(*m2) / sqrt(bc2) + c->eps);
}

/* The update of config c on 1 and 3 threads against ref_update, and bitwise the same. */
static void threaded_case(const char *name, const nn_opt_config *c, uint64_t seed) {
  const char *spec = "input shape=300\ndense units=300\nbatchnorm freeze_affine=1\ndense units=10\n";
  const size_t frozen_at = 300 * 300 + 300, frozen_n = 600;
  int saved = omp_get_max_threads();
  float *out[2] = {NULL, NULL};
  size_t n = 0;
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t == 0 ? 1 : 3);
    nn_model *m = make_model(spec);
    n = nn_model_param_count(m);
    assert_true(n - frozen_n >= 65536); /* above the optimizer's threading threshold */
    float *p = nn_model_params(m), *g = nn_model_grads(m);
    double *rp = tu_dbuf(n), *m1 = tu_dbuf(n), *m2 = tu_dbuf(n);
    tu_rng r = {seed};
    for (size_t i = 0; i < n; i++) rp[i] = p[i] = (float)((double)(tu_rng_next(&r) >> 40) / 16777216.0 - 0.5);
    nn_optimizer *opt = NULL;
    nn_error err = {0};
    if (nn_optimizer_create(c, m, &opt, &err)) fail_msg("%s: %s", name, err.msg);
    for (long step = 1; step <= 3; step++) {
      for (size_t i = 0; i < n; i++) g[i] = (float)((double)(tu_rng_next(&r) >> 40) / 16777216.0 - 0.5);
      nn_optimizer_step(opt, m);
      for (size_t i = 0; i < n; i++)
        if (i < frozen_at || i >= frozen_at + frozen_n) rp[i] = ref_update(c, step, rp[i], g[i], &m1[i], &m2[i]);
    }
    char what[96];
    snprintf(what, sizeof what, "%s threaded update, %d threads", name, t == 0 ? 1 : 3);
    fx_assert_close_fd(what, p, rp, n, 1e-4, 1e-6);
    out[t] = malloc(n * sizeof(float));
    assert_non_null(out[t]);
    memcpy(out[t], p, n * sizeof(float));
    nn_optimizer_free(opt);
    nn_model_free(m);
    free(rp), free(m1), free(m2);
  }
  omp_set_num_threads(saved);
  assert_memory_equal(out[0], out[1], n * sizeof(float));
  free(out[0]), free(out[1]);
}

static void test_threaded_update(void **state) {
  (void)state;
  fill_cases();
  for (int ci = 0; ci < 7; ci++) threaded_case(cases[ci].name, &cases[ci].cfg, 0x5EED0000ULL + (uint64_t)ci);
  /* Keras's form of Adam and AdamW (its own compiled loops), with an eps large enough against
   * sqrt(v) that PyTorch's form would miss the reference by far more than the tolerance */
  for (int decoupled = 0; decoupled < 2; decoupled++) {
    nn_opt_config c = nn_opt_defaults(decoupled ? NN_OPT_ADAMW : NN_OPT_ADAM);
    c.lr = 1e-2f, c.eps = 1e-2f, c.keras_eps = 1, c.weight_decay = decoupled ? 0.1f : 1e-2f;
    threaded_case(decoupled ? "keras_adamw" : "keras_adam", &c, 0x5EED0100ULL + (uint64_t)decoupled);
  }
}

/* ---- denormals ---------------------------------------------------------------------------- */

/* 1 when this thread computes FLT_MIN / 4 as the denormal it is (no flush-to-zero mode). */
static int keeps_denormals(void) {
  volatile float tiny = FLT_MIN, q = 0.25f;
  return tiny * q != 0.0f;
}

/* `steps` Adam steps on every parameter of `spec`: the first with gradient 1e-30 (m1 =
 * 1e-31, m2 = 0: its square underflows), then zero gradients, so that m1 only decays by
 * beta1. The first moments after them into m1 (n floats). */
static void decay_moments(const char *spec, nn_opt_config c, int threads, int steps, float *m1, size_t n) {
  int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  nn_model *m = make_model(spec);
  assert_int_equal(nn_model_param_count(m), n);
  float *g = nn_model_grads(m);
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  if (nn_optimizer_create(&c, m, &opt, &err)) fail_msg("%s", err.msg);
  for (int s = 0; s < steps; s++) {
    for (size_t i = 0; i < n; i++) g[i] = s == 0 ? 1e-30f : 0.0f;
    nn_optimizer_step(opt, m);
  }
  size_t at = 0;
  for (int t = 0; t < nn_optimizer_num_tensors(opt, m); t++) {
    nn_tensor_view v;
    nn_optimizer_tensor(opt, m, t, &v);
    if (strstr(v.name, "exp_avg_sq")) continue;
    assert_true(at + (size_t)v.count <= n);
    memcpy(m1 + at, v.data, (size_t)v.count * sizeof(float));
    at += (size_t)v.count;
  }
  assert_int_equal(at, n);
  nn_optimizer_free(opt);
  nn_model_free(m);
  omp_set_num_threads(saved);
}

static void test_denormal_moments(void **state) {
  (void)state;
  enum { DECAY_STEPS = 200 }; /* 1e-31 * 0.9^k < FLT_MIN from k = 154 */
  /* the expected first moment: b1*m rounded once to float (a float product is exact in
   * double), denormal results included, then + (1 - b1)*0 */
  const float b1 = 0.9f;
  float want = (1.0f - b1) * 1e-30f;
  for (int s = 1; s < DECAY_STEPS; s++) want = (float)((double)b1 * (double)want);
  assert_true(want > 0.0f && want < FLT_MIN); /* the test reaches the denormal range */
  static const char *const specs[2] = {DENSE_SPEC, "input shape=300\ndense units=300\n"};
  for (int k = 0; k < 2; k++) {
    nn_model *probe = make_model(specs[k]);
    const size_t n = nn_model_param_count(probe);
    nn_model_free(probe);
    if (k == 1) assert_true(n >= 65536); /* the optimizer's threaded update */
    float *m1 = malloc(n * sizeof *m1);
    assert_non_null(m1);
    for (int keras = 0; keras < 2; keras++)
      for (int threads = 1; threads <= 3; threads += 2) {
        nn_opt_config c = nn_opt_defaults(NN_OPT_ADAM);
        c.keras_eps = keras, c.eps = keras ? 1e-7f : 1e-8f;
        decay_moments(specs[k], c, threads, DECAY_STEPS, m1, n);
        for (size_t i = 0; i < n; i++) {
          const float w = keras ? 0.0f : want;
          if (memcmp(&m1[i], &w, sizeof w))
            fail_msg("%s Adam, %zu parameters, %d threads: exp_avg[%zu] = %a, want %a", keras ? "Keras" : "PyTorch",
                     n, threads, i, (double)m1[i], (double)w);
        }
        /* the mode was this update's own: denormals are kept here and on the team's threads */
        assert_true(keeps_denormals());
        int kept = 1;
#pragma omp parallel num_threads(3) reduction(&& \
                                              : kept)
        kept = keeps_denormals();
        assert_true(kept);
      }
    free(m1);
  }
}

int main(void) {
  fill_cases();
  struct CMUnitTest tests[8 + 4];
  int n = 0;
  for (int i = 0; i < 7; i++) {
    static char names[7][64];
    snprintf(names[i], sizeof names[i], "torch_%s", cases[i].name);
    tests[n++] = (struct CMUnitTest){names[i], test_matches_torch, NULL, NULL, &cases[i]};
  }
  tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_frozen_affine_untouched);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_half_affine_fixed);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_bad_configs_rejected);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_threaded_update);
  tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_denormal_moments);
  return _cmocka_run_group_tests("test_optim", tests, (size_t)n, group_setup, group_teardown);
}
