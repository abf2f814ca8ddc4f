/* End-to-end parity with PyTorch: the `lenet` preset (seed 004's BN-LeNet) and its twin
 * without BN, trained for 3 SGD steps (lr 0.1, mean cross-entropy) on one batch of 32, from
 * PyTorch's initial state_dict (tests/fixtures/lenet_sgd.txt, gen_lenet_sgd.py). Checks:
 * - the model's tensor views carry exactly PyTorch's state_dict names, order and sizes;
 * - the 3 training losses, every final tensor (parameters, running statistics, exact
 *   num_batches_tracked) and the eval-mode logits after training (rtol 1e-4, atol 1e-5);
 * - the parameter updates (final - init) against PyTorch's, relative to the update's size:
 *   without BN the sigmoid stack barely moves its first layers (|update| ~ 3e-6, below the
 *   absolute tolerance above), so this is what checks their gradients;
 * - the input pipeline: nn_dataset_batch with the preset's input_norm turns the fixture's
 *   uint8 images into torchvision's ToTensor + Normalize(0.5, 0.5) floats bit for bit.
 * On a mismatch every diverging tensor is listed (worst element, got, want) before failing,
 * so the first layer from the top that diverges locates the bug. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "normnet.h"

#define FIXTURE "lenet_sgd.txt"
#define N 32
#define IN (28 * 28)
#define CLASSES 10
#define STEPS 3
#define RTOL 1e-4
#define ATOL 1e-5
/* updates (final - init): |d_got - d_want| <= UPD_ATOL + UPD_RTOL * max|d_want| */
#define UPD_RTOL 0.03
#define UPD_ATOL 1e-7

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

/* ---- helpers ------------------------------------------------------------------------------ */

/* Names of the arrays "<prefix>init.*" in file order (the state_dict order PyTorch wrote),
 * without the "<prefix>init." part. Returns how many (at most max). */
static int fixture_init_names(const char *prefix, char names[][48], int max) {
  const char *dir = getenv("NN_FIXTURES");
  char path[1024], tok[256], want[64];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", FIXTURE);
  snprintf(want, sizeof want, "@%sinit.", prefix);
  size_t wl = strlen(want);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s", path);
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] != '@' || strncmp(line, want, wl) != 0) continue;
    if (sscanf(line, "%255s", tok) != 1) continue;
    if (n == max) fail_msg("more than %d %sinit.* arrays in %s", max, prefix, path);
    snprintf(names[n++], 48, "%s", tok + wl);
  }
  fclose(f);
  return n;
}

static nn_model *build(const char *norm) {
  nn_error err = {0};
  const nn_preset *p = nn_preset_find("lenet");
  assert_non_null(p);
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  if (nn_spec_parse(p->spec, "lenet", &spec, &err)) fail_msg("%s", err.msg);
  if (norm && nn_spec_set_norm(spec, norm, &err)) fail_msg("%s", err.msg);
  if (nn_model_create(spec, &m, &err)) fail_msg("%s", err.msg);
  nn_spec_free(spec);
  assert_int_equal(nn_model_input_size(m), IN);
  assert_int_equal(nn_model_output_size(m), CLASSES);
  return m;
}

/* Views' names must be the fixture's state_dict names in the same order, with the same sizes;
 * then copy "<prefix>init.<name>" into the model. */
static void load_init(nn_model *m, const char *prefix) {
  char names[64][48];
  int nf = fixture_init_names(prefix, names, 64);
  int nt = nn_model_num_tensors(m);
  for (int i = 0; i < nt && i < nf; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    if (strcmp(v.name, names[i]) != 0)
      fail_msg("%stensor %d: model calls it '%s', PyTorch's state_dict '%s'", prefix, i, v.name, names[i]);
  }
  if (nt != nf) fail_msg("%smodel has %d tensors, PyTorch's state_dict %d", prefix, nt, nf);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    char key[96];
    snprintf(key, sizeof key, "%sinit.%s", prefix, v.name);
    size_t cnt;
    const double *src = fx_get(fx, key, &cnt);
    if (cnt != v.count) fail_msg("%s: model has %zu values, PyTorch %zu", key, v.count, cnt);
    size_t prod = 1;
    for (int d = 0; d < v.ndim; d++) prod *= (size_t)v.dims[d];
    assert_int_equal(prod, v.count);
    if (v.count_value) {
      assert_null(v.data);
      assert_int_equal(cnt, 1);
      *v.count_value = (int64_t)src[0];
    } else {
      assert_non_null(v.data);
      for (size_t j = 0; j < cnt; j++) v.data[j] = (float)src[j];
    }
  }
}

typedef struct {
  int bad; /* number of tensors out of tolerance */
} report;

/* Compare got[n] with want[n] elementwise (|g - w| <= atol + rtol |w|); on a miss print the
 * worst element and count it. */
static void check(report *r, const char *what, const float *got, const double *want, size_t n, double rtol,
                  double atol) {
  size_t worst = 0, nbad = 0;
  double worst_ratio = 0, max_abs = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    double ratio = d / (atol + rtol * fabs(want[i]));
    if (!(ratio <= 1)) nbad++;
    if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;
    if (!(d <= max_abs)) max_abs = d;
  }
  if (nbad) {
    r->bad++;
    print_message(
        "DIVERGES %-26s %zu/%zu elements out; worst [%zu] got %.9g want %.9g (|diff| %.3g, "
        "%.3g x tolerance); max |diff| %.3g\n",
        what, nbad, n, worst, (double)got[worst], want[worst], fabs((double)got[worst] - want[worst]),
        worst_ratio, max_abs);
  }
}

static double max_abs_d(const double *v, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(v[i]) > m) m = fabs(v[i]);
  return m;
}

static int32_t *fixture_labels(void) {
  size_t n;
  const double *l = fx_get(fx, "labels", &n);
  assert_int_equal(n, N);
  int32_t *labels = malloc(N * sizeof *labels);
  assert_non_null(labels);
  for (int i = 0; i < N; i++) {
    labels[i] = (int32_t)l[i];
    assert_true(labels[i] >= 0 && labels[i] < CLASSES);
  }
  return labels;
}

/* 3 training steps from PyTorch's init, then the checks described at the top. */
static void run_case(const char *norm, const char *prefix) {
  nn_error err = {0};
  nn_model *m = build(norm);
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  nn_model_init(m, NN_INIT_DEFAULT, &rng); /* then overwritten by PyTorch's init */
  load_init(m, prefix);

  /* keep a copy of the initial parameters for the update check */
  size_t np = nn_model_param_count(m);
  float *p0 = malloc(np * sizeof *p0);
  assert_non_null(p0);
  memcpy(p0, nn_model_params(m), np * sizeof *p0);

  float *x = fx_floats(fx, "x", (size_t)N * IN);
  int32_t *labels = fixture_labels();

  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  oc.lr = 0.1f;
  nn_optimizer *opt = NULL;
  if (nn_optimizer_create(&oc, m, &opt, &err)) fail_msg("%s", err.msg);

  report r = {0};
  char key[96], what[96];
  snprintf(key, sizeof key, "%sloss", prefix);
  const double *want_loss = fx_get(fx, key, NULL);
  for (int s = 0; s < STEPS; s++) {
    double loss_sum = 0;
    int correct = 0;
    if (nn_model_forward(m, x, labels, N, NN_MODE_TRAIN, &loss_sum, &correct, NULL, &err))
      fail_msg("step %d forward: %s", s + 1, err.msg);
    double loss = loss_sum / N;
    print_message("%-6s step %d loss %.9f (PyTorch %.9f, rel diff %.2e)\n", prefix[0] ? "no-BN" : "BN", s + 1, loss,
                  want_loss[s], fabs(loss - want_loss[s]) / want_loss[s]);
    if (!(fabs(loss - want_loss[s]) <= RTOL * fabs(want_loss[s]))) {
      r.bad++;
      print_message("DIVERGES %sloss step %d: got %.9g want %.9g (rel %.3g)\n", prefix, s + 1, loss, want_loss[s],
                    fabs(loss - want_loss[s]) / fabs(want_loss[s]));
    }
    assert_true(correct >= 0 && correct <= N);
    nn_model_zero_grads(m);
    if (nn_model_backward(m, &err)) fail_msg("step %d backward: %s", s + 1, err.msg);
    nn_optimizer_step(opt, m);
  }

  /* every state_dict tensor after training */
  int nt = nn_model_num_tensors(m);
  float *params = nn_model_params(m);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    snprintf(key, sizeof key, "%sfinal.%s", prefix, v.name);
    size_t cnt;
    const double *want = fx_get(fx, key, &cnt);
    assert_int_equal(cnt, v.count);
    if (v.count_value) {
      if (*v.count_value != (int64_t)want[0]) {
        r.bad++;
        print_message("DIVERGES %s: got %lld want %lld\n", key, (long long)*v.count_value, (long long)want[0]);
      }
      continue;
    }
    check(&r, key, v.data, want, cnt, RTOL, ATOL);
    if (v.is_state) continue;
    /* the update of a trainable tensor, relative to its size */
    assert_true(v.data >= params && v.data + v.count <= params + np);
    const float *init = p0 + (v.data - params);
    snprintf(key, sizeof key, "%sinit.%s", prefix, v.name);
    const double *want0 = fx_get(fx, key, NULL);
    float *dgot = malloc(cnt * sizeof *dgot);
    double *dwant = malloc(cnt * sizeof *dwant);
    assert_non_null(dgot);
    assert_non_null(dwant);
    for (size_t j = 0; j < cnt; j++) {
      dgot[j] = v.data[j] - init[j];
      dwant[j] = want[j] - want0[j];
    }
    snprintf(what, sizeof what, "%supdate.%s", prefix, v.name);
    check(&r, what, dgot, dwant, cnt, 0, UPD_ATOL + UPD_RTOL * max_abs_d(dwant, cnt));
    free(dgot);
    free(dwant);
  }

  /* eval-mode logits after training */
  const float *logits = NULL;
  double loss_sum = 0;
  if (nn_model_forward(m, x, labels, N, NN_MODE_EVAL, &loss_sum, NULL, &logits, &err))
    fail_msg("eval forward: %s", err.msg);
  assert_non_null(logits);
  snprintf(key, sizeof key, "%seval_logits", prefix);
  size_t cnt;
  const double *want = fx_get(fx, key, &cnt);
  assert_int_equal(cnt, (size_t)N * CLASSES);
  check(&r, key, logits, want, cnt, RTOL, ATOL);

  if (r.bad) fail_msg("%s: %d quantities diverge from PyTorch (listed above)", prefix[0] ? "no-BN twin" : "BN-LeNet", r.bad);

  nn_optimizer_free(opt);
  nn_model_free(m);
  free(labels);
  free(x);
  free(p0);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_bn_lenet_matches_pytorch(void **state) {
  (void)state;
  run_case(NULL, "");
}

static void test_nobn_twin_matches_pytorch(void **state) {
  (void)state;
  run_case("none", "nobn.");
}

static void put_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  assert_int_equal(fwrite(b, 1, 4, f), 4);
}

/* The fixture's x is torchvision's ToTensor + Normalize(0.5, 0.5) of x_u8, in float32. Our
 * formula and nn_dataset_batch (through an IDX file of those bytes) give the same bits. */
static void test_input_normalization_matches_torchvision(void **state) {
  (void)state;
  size_t n;
  const double *u8 = fx_get(fx, "x_u8", &n);
  assert_int_equal(n, (size_t)N * IN);
  const double *want = fx_get(fx, "x", &n);
  assert_int_equal(n, (size_t)N * IN);
  uint8_t *bytes = malloc(n);
  float *x = malloc(n * sizeof *x);
  assert_non_null(bytes);
  assert_non_null(x);
  for (size_t i = 0; i < n; i++) {
    assert_true(u8[i] >= 0 && u8[i] <= 255 && u8[i] == floor(u8[i]));
    bytes[i] = (uint8_t)u8[i];
    float v = ((float)bytes[i] / 255.f - 0.5f) / 0.5f;
    if ((double)v != want[i]) fail_msg("x[%zu] (u8 %u): (u8/255.f - 0.5f)/0.5f = %.9g, torchvision %.17g", i, bytes[i], (double)v, want[i]);
  }

  /* the same through the library's data path: IDX files -> nn_dataset_batch(preset norm) */
  char dir[] = "/tmp/nn_lenet_torch_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char img_path[256], lbl_path[256];
  snprintf(img_path, sizeof img_path, "%s/b-images-idx3-ubyte", dir);
  snprintf(lbl_path, sizeof lbl_path, "%s/b-labels-idx1-ubyte", dir);
  FILE *f = fopen(img_path, "wb");
  assert_non_null(f);
  put_be32(f, 0x00000803);
  put_be32(f, N);
  put_be32(f, 28);
  put_be32(f, 28);
  assert_int_equal(fwrite(bytes, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
  int32_t *labels = fixture_labels();
  f = fopen(lbl_path, "wb");
  assert_non_null(f);
  put_be32(f, 0x00000801);
  put_be32(f, N);
  for (int i = 0; i < N; i++) assert_int_equal(fputc(labels[i], f), labels[i]);
  assert_int_equal(fclose(f), 0);

  nn_error err = {0};
  nn_dataset *ds = NULL;
  if (nn_dataset_load_idx(img_path, lbl_path, &ds, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_dataset_count(ds), N);
  uint32_t idx[N];
  for (int i = 0; i < N; i++) idx[i] = (uint32_t)i;
  int32_t got_labels[N];
  memset(x, 0, n * sizeof *x);
  nn_dataset_batch(ds, idx, N, nn_preset_find("lenet")->input_norm, x, got_labels);
  for (size_t i = 0; i < n; i++)
    if ((double)x[i] != want[i]) fail_msg("nn_dataset_batch x[%zu] = %.9g, torchvision %.17g", i, (double)x[i], want[i]);
  for (int i = 0; i < N; i++) assert_int_equal(got_labels[i], labels[i]);

  nn_dataset_free(ds);
  remove(img_path);
  remove(lbl_path);
  rmdir(dir);
  free(labels);
  free(bytes);
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_input_normalization_matches_torchvision),
      cmocka_unit_test(test_bn_lenet_matches_pytorch),
      cmocka_unit_test(test_nobn_twin_matches_pytorch),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
