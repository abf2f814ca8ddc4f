/* The groupnorm / layernorm / instancenorm layers (src/layers/groupnorm.c) against
 * - PyTorch nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d fixtures (tests/fixtures/norm_torch.txt,
 *   gen_norm_fixtures.py) driven through the LAYER ops of a model built from a spec, incl.
 *   InstanceNorm running statistics over three steps and eval mode;
 * - consistency: GroupNorm(1) == LayerNorm with a per-channel affine, GroupNorm(C) ==
 *   InstanceNorm (bitwise);
 * - spec and shape errors, state_dict names and shapes, checkpoints.
 * The kernel against its twin: test_groupnorm.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "fixture.h"
#include "kernels/kernels.h"
#include "nn_test.h"
#include "layers/layer.h"
#include "model/model.h"
#include "normnet.h"

#define EPS 1e-5f
/* The kernels' geometry of x[N,C,S] in `groups` groups (eps = EPS). */
#define GN_GEOM(n_, c_, s_, groups_, affine_) \
  (&(nn_norm_geom){.n = (n_), .c = (c_), .s = (s_), .groups = (groups_), .affine = (affine_), .eps = EPS})
#define FX_TOL 1e-5

/* ---- helpers ------------------------------------------------------------------------------ */


/* ---- layers built from a spec --------------------------------------------------------------- */

static nn_model *build(const char *text) {
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_spec_parse(text, "t.spec", &spec, &err) != NN_OK) fail_msg("spec: %s\n%s", err.msg, text);
  if (nn_model_create(spec, &m, &err) != NN_OK) fail_msg("model: %s\n%s", err.msg, text);
  nn_spec_free(spec);
  nn_rng r;
  nn_rng_seed(&r, 5);
  nn_model_init(m, NN_INIT_DEFAULT, &r);
  return m;
}

/* Layer 0 driven directly through its ops, with buffers of our own. */
typedef struct {
  nn_model *m;
  nn_layer *L;
  const nn_layer_ops *ops;
  int n;
  size_t cnt;
  float *scratch, *y, *dx;
} lrun;

static void lrun_open(lrun *R, const char *text, int n) {
  R->m = build(text);
  R->L = &R->m->layers[0];
  R->ops = nn_layer_table[R->L->kind];
  R->n = n;
  R->cnt = (size_t)n * nn_shape_size(R->L->in);
  R->scratch = tu_fbuf(R->ops->scratch(R->L, n));
  R->L->scratch = R->scratch;
  R->y = tu_fbuf(R->cnt);
  R->dx = tu_fbuf(R->cnt);
}

static void lrun_close(lrun *R) {
  nn_model_free(R->m);
  free(R->scratch), free(R->y), free(R->dx);
}

static void lrun_forward(lrun *R, const float *x, nn_mode mode) {
  nn_error err = {0};
  tu_fill_f(R->y, R->cnt, NAN);
  if (R->ops->forward(R->L, x, R->y, R->n, mode, &err) != NN_OK) fail_msg("forward: %s", err.msg);
}

static void lrun_backward(lrun *R, const float *x, const float *dy, nn_mode mode) {
  tu_fill_f(R->dx, R->cnt, NAN);
  nn_model_zero_grads(R->m);
  R->ops->backward(R->L, x, R->y, dy, R->dx, R->n, mode);
}

/* Load the case's weight/bias into the layer's parameters. */
static void fx_set_affine(const nn_fixture *fx, const char *cs, nn_layer *L) {
  assert_int_equal(L->nparam, 2);
  for (int t = 0; t < 2; t++) {
    float *v = fx_case_floats(fx, cs, t ? "bias" : "weight", L->param[t].count);
    memcpy(nn_param_ptr(L, L->p, t), v, L->param[t].count * sizeof *v);
    free(v);
  }
}

static void run_single_case(const nn_fixture *fx, const char *cs, const char *spec_text) {
  char name[96];
  snprintf(name, sizeof name, "%s.shape", cs);
  const double *sh = fx_get(fx, name, NULL);
  const int n = (int)sh[0];
  lrun R;
  lrun_open(&R, spec_text, n);
  assert_int_equal(R.cnt, (size_t)(sh[0] * sh[1] * sh[2] * sh[3]));
  snprintf(name, sizeof name, "%s.weight", cs);
  const int affine = fx_find(fx, name, NULL) != NULL;
  assert_int_equal(R.L->nparam, affine ? 2 : 0);
  assert_int_equal(R.L->nstate, 0);
  if (affine) fx_set_affine(fx, cs, R.L);
  float *x = fx_case_floats(fx, cs, "x", R.cnt), *dy = fx_case_floats(fx, cs, "dy", R.cnt);
  for (int mode = NN_MODE_TRAIN; mode <= NN_MODE_EVAL; mode++) { /* no train/eval difference */
    lrun_forward(&R, x, (nn_mode)mode);
    fx_case_check(fx, cs, "y", R.y, R.cnt, FX_TOL);
    lrun_backward(&R, x, dy, (nn_mode)mode);
    fx_case_check(fx, cs, "dx", R.dx, R.cnt, FX_TOL);
    if (affine) {
      fx_case_check(fx, cs, "dweight", nn_param_ptr(R.L, R.L->g, 0), R.L->param[0].count, FX_TOL);
      fx_case_check(fx, cs, "dbias", nn_param_ptr(R.L, R.L->g, 1), R.L->param[1].count, FX_TOL);
    }
  }
  free(x), free(dy);
  lrun_close(&R);
}

static void test_torch_single(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("norm_torch.txt");
  run_single_case(fx, "ln1", "input shape=6\nlayernorm\ndense units=2\n");
  run_single_case(fx, "ln3", "input shape=3x5x5\nlayernorm eps=1e-5 affine=1\nflatten\ndense units=2\n");
  const int gs[] = {1, 3, 6};
  for (int i = 0; i < 3; i++)
    for (int a = 0; a <= 1; a++) {
      char cs[32], spec[160];
      snprintf(cs, sizeof cs, "gn%d_a%d", gs[i], a);
      snprintf(spec, sizeof spec, "input shape=6x5x5\ngroupnorm groups=%d affine=%d\nflatten\ndense units=2\n", gs[i], a);
      run_single_case(fx, cs, spec);
    }
  run_single_case(fx, "in_a0", "input shape=6x5x5\ninstancenorm\nflatten\ndense units=2\n");
  run_single_case(fx, "in_a1", "input shape=6x5x5\ninstancenorm affine=1\nflatten\ndense units=2\n");
  fx_free(fx);
}

/* InstanceNorm2d(track_running_stats=True): three training steps with running statistics,
 * backward of step 3, eval forward/backward of x1 with the running statistics. */
static void run_track_case(const nn_fixture *fx, const char *cs, int affine) {
  char name[96], spec[256], field[32];
  snprintf(name, sizeof name, "%s.momentum", cs);
  const double momentum = fx_get(fx, name, NULL)[0];
  snprintf(spec, sizeof spec,
           "input shape=6x5x5\ninstancenorm affine=%d track_running_stats=1 momentum=%.17g\nflatten\ndense units=2\n",
           affine, momentum);
  lrun R;
  lrun_open(&R, spec, 4);
  nn_layer *L = R.L;
  assert_int_equal(L->nparam, affine ? 2 : 0);
  assert_int_equal(L->nstate, 2);
  assert_int_equal(L->has_batches_tracked, 1);
  if (affine) fx_set_affine(fx, cs, L);
  float *x1 = NULL;
  for (int k = 1; k <= 3; k++) {
    snprintf(field, sizeof field, "x%d", k);
    float *x = fx_case_floats(fx, cs, field, R.cnt);
    lrun_forward(&R, x, NN_MODE_TRAIN);
    snprintf(field, sizeof field, "y%d", k);
    fx_case_check(fx, cs, field, R.y, R.cnt, FX_TOL);
    snprintf(field, sizeof field, "rm%d", k);
    fx_case_check(fx, cs, field, nn_state_ptr(L, 0), 6, FX_TOL);
    snprintf(field, sizeof field, "rv%d", k);
    fx_case_check(fx, cs, field, nn_state_ptr(L, 1), 6, FX_TOL);
    snprintf(name, sizeof name, "%s.nbt%d", cs, k);
    assert_int_equal(L->batches_tracked, (int64_t)fx_get(fx, name, NULL)[0]); /* PyTorch: stays 0 */
    if (k == 3) {
      float *dy = fx_case_floats(fx, cs, "dy3", R.cnt);
      lrun_backward(&R, x, dy, NN_MODE_TRAIN);
      fx_case_check(fx, cs, "dx3", R.dx, R.cnt, FX_TOL);
      if (affine) {
        fx_case_check(fx, cs, "dweight3", nn_param_ptr(L, L->g, 0), 6, FX_TOL);
        fx_case_check(fx, cs, "dbias3", nn_param_ptr(L, L->g, 1), 6, FX_TOL);
      }
      free(dy);
    }
    if (k == 1)
      x1 = x;
    else
      free(x);
  }
  assert_int_equal(L->skipped_updates, 0);
  float *rm = tu_fbuf(6), *rv = tu_fbuf(6);
  memcpy(rm, nn_state_ptr(L, 0), 6 * sizeof *rm);
  memcpy(rv, nn_state_ptr(L, 1), 6 * sizeof *rv);
  lrun_forward(&R, x1, NN_MODE_EVAL);
  fx_case_check(fx, cs, "yeval", R.y, R.cnt, FX_TOL);
  fx_assert_same_bits("running_mean after eval", nn_state_ptr(L, 0), rm, 6);
  fx_assert_same_bits("running_var after eval", nn_state_ptr(L, 1), rv, 6);
  float *dy = fx_case_floats(fx, cs, "dyeval", R.cnt);
  lrun_backward(&R, x1, dy, NN_MODE_EVAL);
  fx_case_check(fx, cs, "dxeval", R.dx, R.cnt, FX_TOL);
  if (affine) {
    fx_case_check(fx, cs, "dweighteval", nn_param_ptr(L, L->g, 0), 6, FX_TOL);
    fx_case_check(fx, cs, "dbiaseval", nn_param_ptr(L, L->g, 1), 6, FX_TOL);
  }
  free(dy), free(x1), free(rm), free(rv);
  lrun_close(&R);
}

static void test_torch_instancenorm_running_stats(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("norm_torch.txt");
  run_track_case(fx, "in_track_a1_m0.1", 1);
  run_track_case(fx, "in_track_a0_m0.3", 0);
  fx_free(fx);
}

/* The same fixture through the whole model: nn_model_forward's arena and scratch plan,
 * act[1] = the norm layer's output; backward reaches the norm layer's parameter grads. */
static void test_torch_through_model(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("norm_torch.txt");
  const char *cs = "in_track_a1_m0.1";
  nn_model *m =
      build("input shape=6x5x5\ninstancenorm affine=1 track_running_stats=1\nflatten\ndense units=2\n");
  nn_layer *L = &m->layers[0];
  fx_set_affine(fx, cs, L);
  const int n = 4;
  const size_t cnt = (size_t)n * 150;
  float *x = fx_case_floats(fx, cs, "x1", cnt);
  int32_t labels[4] = {0, 1, 1, 0};
  nn_error err = {0};
  double loss = 0;
  if (nn_model_forward(m, x, labels, n, NN_MODE_TRAIN, &loss, NULL, NULL, &err) != NN_OK) fail_msg("%s", err.msg);
  fx_case_check(fx, cs, "y1", m->act[1], cnt, FX_TOL);
  fx_case_check(fx, cs, "rm1", nn_state_ptr(L, 0), 6, FX_TOL);
  fx_case_check(fx, cs, "rv1", nn_state_ptr(L, 1), 6, FX_TOL);
  nn_model_zero_grads(m);
  if (nn_model_backward(m, &err) != NN_OK) fail_msg("%s", err.msg);
  /* the norm layer's parameter grads from dact[1] (the dense layer's dx), checked vs the
   * reference twin driven with the same upstream gradient */
  double *xd = tu_dbuf(cnt), *dyd = tu_dbuf(cnt), *yd = tu_dbuf(cnt), *dxr = tu_dbuf(cnt), gd[6], dgr[6] = {0}, dbr[6] = {0};
  tu_to_double(x, xd, cnt);
  tu_to_double(m->dact[1], dyd, cnt);
  tu_to_double(nn_param_ptr(L, L->p, 0), gd, 6);
  nn_ref_groupnorm_backward(GN_GEOM(n, 6, 25, 6, NN_GN_AFFINE_CHANNEL), xd, gd, dyd, dxr, dgr, dbr);
  fx_assert_rel_fd("model dweight", nn_param_ptr(L, L->g, 0), dgr, 6, 1e-4);
  fx_assert_rel_fd("model dbias", nn_param_ptr(L, L->g, 1), dbr, 6, 1e-4);
  (void)yd;
  free(x), free(xd), free(dyd), free(yd), free(dxr);
  nn_model_free(m);
  fx_free(fx);
}

/* ---- consistency between the three kinds ---------------------------------------------------- */

/* GroupNorm(1) with per-channel weights == LayerNorm over CxHxW with those weights broadcast
 * over HxW; its dweight summed over HxW is GroupNorm's. */
static void test_groupnorm1_is_layernorm(void **state) {
  (void)state;
  const int n = 5, c = 6, s = 20;
  lrun G, Ln;
  lrun_open(&G, "input shape=6x4x5\ngroupnorm groups=1\nflatten\ndense units=2\n", n);
  lrun_open(&Ln, "input shape=6x4x5\nlayernorm\nflatten\ndense units=2\n", n);
  assert_int_equal(Ln.L->param[0].count, (size_t)c * s);
  nn_rng r;
  nn_rng_seed(&r, 41);
  float *gw = nn_param_ptr(G.L, G.L->p, 0), *gb = nn_param_ptr(G.L, G.L->p, 1);
  float *lw = nn_param_ptr(Ln.L, Ln.L->p, 0), *lb = nn_param_ptr(Ln.L, Ln.L->p, 1);
  for (int k = 0; k < c; k++) {
    gw[k] = 0.5f + nn_rng_uniform(&r);
    gb[k] = (float)nn_rng_normal(&r);
    for (int j = 0; j < s; j++) lw[k * s + j] = gw[k], lb[k * s + j] = gb[k];
  }
  float *x = tu_fbuf(G.cnt), *dy = tu_fbuf(G.cnt);
  tu_fill_grouped(&r, x, n, c, s, 1, 0);
  tu_fill_normal(&r, dy, G.cnt, 1.0, 0.2);
  lrun_forward(&G, x, NN_MODE_TRAIN);
  lrun_forward(&Ln, x, NN_MODE_TRAIN);
  lrun_backward(&G, x, dy, NN_MODE_TRAIN);
  lrun_backward(&Ln, x, dy, NN_MODE_TRAIN);
  double *want = tu_dbuf(G.cnt), dw[6] = {0}, dbs[6] = {0};
  tu_to_double(Ln.y, want, G.cnt);
  fx_assert_rel_fd("groupnorm(1) y vs layernorm", G.y, want, G.cnt, 1e-5);
  tu_to_double(Ln.dx, want, G.cnt);
  fx_assert_rel_fd("groupnorm(1) dx vs layernorm", G.dx, want, G.cnt, 1e-5);
  const float *ldw = nn_param_ptr(Ln.L, Ln.L->g, 0), *ldb = nn_param_ptr(Ln.L, Ln.L->g, 1);
  for (int k = 0; k < c; k++)
    for (int j = 0; j < s; j++) dw[k] += ldw[k * s + j], dbs[k] += ldb[k * s + j];
  fx_assert_rel_fd("groupnorm(1) dweight vs layernorm", nn_param_ptr(G.L, G.L->g, 0), dw, 6, 1e-5);
  fx_assert_rel_fd("groupnorm(1) dbias vs layernorm", nn_param_ptr(G.L, G.L->g, 1), dbs, 6, 1e-5);
  free(x), free(dy), free(want);
  lrun_close(&G), lrun_close(&Ln);
}

/* GroupNorm(C) == InstanceNorm (same kernel, same groups): the same bits. */
static void test_groupnormC_is_instancenorm(void **state) {
  (void)state;
  for (int affine = 0; affine <= 1; affine++) {
    const int n = 3, c = 6, s = 35;
    char gspec[128], ispec[128];
    snprintf(gspec, sizeof gspec, "input shape=6x5x7\ngroupnorm groups=6 affine=%d\nflatten\ndense units=2\n", affine);
    snprintf(ispec, sizeof ispec, "input shape=6x5x7\ninstancenorm affine=%d\nflatten\ndense units=2\n", affine);
    lrun G, I;
    lrun_open(&G, gspec, n);
    lrun_open(&I, ispec, n);
    nn_rng r;
    nn_rng_seed(&r, 42);
    if (affine)
      for (int k = 0; k < c; k++) {
        float w = 0.5f + nn_rng_uniform(&r), b = (float)nn_rng_normal(&r);
        nn_param_ptr(G.L, G.L->p, 0)[k] = nn_param_ptr(I.L, I.L->p, 0)[k] = w;
        nn_param_ptr(G.L, G.L->p, 1)[k] = nn_param_ptr(I.L, I.L->p, 1)[k] = b;
      }
    float *x = tu_fbuf(G.cnt), *dy = tu_fbuf(G.cnt);
    tu_fill_grouped(&r, x, n, c, s, c, 1);
    tu_fill_normal(&r, dy, G.cnt, 1.0, 0.2);
    lrun_forward(&G, x, NN_MODE_TRAIN);
    lrun_forward(&I, x, NN_MODE_TRAIN);
    lrun_backward(&G, x, dy, NN_MODE_TRAIN);
    lrun_backward(&I, x, dy, NN_MODE_TRAIN);
    fx_assert_same_bits("groupnorm(C) y vs instancenorm", G.y, I.y, G.cnt);
    fx_assert_same_bits("groupnorm(C) dx vs instancenorm", G.dx, I.dx, G.cnt);
    if (affine) /* layer 0's weight and bias grads open the flat gradient buffer */
      fx_assert_same_bits("groupnorm(C) dweight/dbias vs instancenorm", G.m->grads, I.m->grads, 2 * (size_t)c);
    free(x), free(dy);
    lrun_close(&G), lrun_close(&I);
  }
}

/* ---- spec, shapes, state_dict ----------------------------------------------------------------- */

static void test_spec_and_shape_errors(void **state) {
  (void)state;
  tu_expect_build_error("input shape=6x5x5\ngroupnorm groups=4\nflatten\ndense units=2\n", NN_ERR_SHAPE, "t.spec:2",
                        "6 input channels are not divisible by groups=4");
  tu_expect_build_error("input shape=6x5x5\ngroupnorm groups=12\nflatten\ndense units=2\n", NN_ERR_SHAPE, "groups=12", "6 input");
  tu_expect_build_error("input shape=12\ninstancenorm\ndense units=2\n", NN_ERR_SHAPE, "t.spec:2", "CxHxW");
  tu_expect_build_error("input shape=6x5x5\ngroupnorm\nflatten\ndense units=2\n", NN_ERR_SPEC, "t.spec:2",
                        "missing required key 'groups'");
  tu_expect_build_error("input shape=6x5x5\ngroupnorm groups=0\nflatten\ndense units=2\n", NN_ERR_SPEC, "t.spec:2", "groups");
  tu_expect_build_error("input shape=6x5x5\nlayernorm eps=0\nflatten\ndense units=2\n", NN_ERR_SPEC, "t.spec:2", "eps");
  tu_expect_build_error("input shape=6x5x5\nlayernorm groups=2\nflatten\ndense units=2\n", NN_ERR_SPEC, "unknown key 'groups'",
                        NULL);
  tu_expect_build_error("input shape=6x5x5\ninstancenorm momentum=1.5\nflatten\ndense units=2\n", NN_ERR_SPEC, "momentum", NULL);
  tu_expect_build_error("input shape=6x5x5\ngroupnorm groups=3 track_running_stats=1\nflatten\ndense units=2\n", NN_ERR_SPEC,
                        "unknown key 'track_running_stats'", NULL);
  /* groupnorm and layernorm also take flat input */
  nn_model_free(build("input shape=12\ngroupnorm groups=3\nlayernorm\ndense units=2\n"));
}

/* Instance statistics of one spatial element: an error naming the layer in training (PyTorch's
 * check); eval with running statistics is fine. */
static void test_instancenorm_one_spatial_element(void **state) {
  (void)state;
  float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  nn_error err = {0};
  lrun R;
  lrun_open(&R, "input shape=6x1x1\ninstancenorm track_running_stats=1\nflatten\ndense units=2\n", 2);
  nn_status st = R.ops->forward(R.L, x, R.y, 2, NN_MODE_TRAIN, &err);
  assert_int_equal(st, NN_ERR_BATCH);
  if (!strstr(err.msg, "layer 0 (instancenorm, line 2)") || !strstr(err.msg, "spatial"))
    fail_msg("message: %s", err.msg);
  lrun_forward(&R, x, NN_MODE_EVAL); /* running stats 0 / 1 */
  for (int i = 0; i < 12; i++) assert_float_equal(R.y[i], x[i] / sqrtf(1.0f + EPS), 1e-6);
  lrun_close(&R);
}

static void test_spec_round_trip(void **state) {
  (void)state;
  const char *text =
      "input shape=6x5x5\ngroupnorm groups=3 eps=0.001 affine=0\nlayernorm\n"
      "instancenorm eps=2e-05 affine=1 track_running_stats=1 momentum=0.25\nflatten\ndense units=2\n";
  nn_spec *s = NULL, *s2 = NULL;
  nn_error err = {0};
  assert_int_equal(nn_spec_parse(text, "t.spec", &s, &err), NN_OK);
  char *out = nn_spec_to_text(s);
  assert_non_null(strstr(out, "groupnorm groups=3 eps=0.001 affine=0\n"));
  assert_non_null(strstr(out, "layernorm eps=1e-05 affine=1\n"));
  assert_non_null(strstr(out, "instancenorm eps=2e-05 affine=1 track_running_stats=1 momentum=0.25\n"));
  assert_int_equal(nn_spec_parse(out, "t2.spec", &s2, &err), NN_OK);
  char *out2 = nn_spec_to_text(s2);
  assert_string_equal(out, out2);
  /* defaults are PyTorch's */
  nn_spec *d = NULL;
  assert_int_equal(nn_spec_parse("input shape=6x5x5\ngroupnorm groups=2\ninstancenorm\nflatten\ndense units=2\n",
                                 "d.spec", &d, &err),
                   NN_OK);
  char *dt = nn_spec_to_text(d);
  assert_non_null(strstr(dt, "groupnorm groups=2 eps=1e-05 affine=1\n"));
  assert_non_null(strstr(dt, "instancenorm eps=1e-05 affine=0 track_running_stats=0 momentum=0.1\n"));
  free(out), free(out2), free(dt);
  nn_spec_free(s), nn_spec_free(s2), nn_spec_free(d);
}

static void expect_tensor(nn_model *m, int idx, const char *name, int ndim, const int *dims, int is_state) {
  nn_tensor_view v;
  nn_model_tensor(m, idx, &v);
  assert_string_equal(v.name, name);
  assert_int_equal(v.ndim, ndim);
  for (int d = 0; d < ndim; d++) assert_int_equal(v.dims[d], dims[d]);
  assert_int_equal(v.is_state, is_state);
}

static void test_state_dict_names(void **state) {
  (void)state;
  const int c6[1] = {6}, chw[3] = {6, 5, 5};
  nn_model *m = build(
      "input shape=6x5x5\nlayernorm\ngroupnorm groups=2\ninstancenorm\n"
      "instancenorm affine=1 track_running_stats=1\nflatten\ndense units=2\n");
  assert_int_equal(nn_model_num_tensors(m), 2 + 2 + 0 + 5 + 2);
  expect_tensor(m, 0, "0.weight", 3, chw, 0);
  expect_tensor(m, 1, "0.bias", 3, chw, 0);
  expect_tensor(m, 2, "1.weight", 1, c6, 0);
  expect_tensor(m, 3, "1.bias", 1, c6, 0);
  expect_tensor(m, 4, "3.weight", 1, c6, 0);
  expect_tensor(m, 5, "3.bias", 1, c6, 0);
  expect_tensor(m, 6, "3.running_mean", 1, c6, 1);
  expect_tensor(m, 7, "3.running_var", 1, c6, 1);
  expect_tensor(m, 8, "3.num_batches_tracked", 0, NULL, 1);
  /* PyTorch's initial values: weight 1, bias 0, running mean 0, running var 1 */
  const nn_layer *L = &m->layers[3];
  for (int k = 0; k < 6; k++) {
    assert_true(L->p[k] == 1.0f && L->p[6 + k] == 0.0f);
    assert_true(nn_state_ptr(L, 0)[k] == 0.0f && nn_state_ptr(L, 1)[k] == 1.0f);
  }
  const float *lw = m->layers[0].p;
  for (int k = 0; k < 150; k++) assert_true(lw[k] == 1.0f && lw[150 + k] == 0.0f);
  nn_model_free(m);
  m = build("input shape=6\nlayernorm\ndense units=2\n");
  expect_tensor(m, 0, "0.weight", 1, c6, 0);
  nn_model_free(m);
}

/* Non-finite instance statistics: running update refused, state untouched, counted. */
static void test_running_update_refuses_nonfinite(void **state) {
  (void)state;
  lrun R;
  lrun_open(&R, "input shape=2x2x2\ninstancenorm track_running_stats=1\nflatten\ndense units=2\n", 2);
  float x[16] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};
  lrun_forward(&R, x, NN_MODE_TRAIN);
  assert_int_equal(R.L->skipped_updates, 0);
  float rm[2] = {nn_state_ptr(R.L, 0)[0], nn_state_ptr(R.L, 0)[1]};
  float rv[2] = {nn_state_ptr(R.L, 1)[0], nn_state_ptr(R.L, 1)[1]};
  /* channel 0 of sample 0: mean 2.5, biased var 1.25 -> unbiased 5/3 */
  assert_float_equal(rm[0], 0.1 * (2.5 + 2.5) / 2, 1e-7);
  assert_float_equal(rv[0], 0.9 + 0.1 * (5.0 / 3.0), 1e-6);
  x[3] = INFINITY;
  lrun_forward(&R, x, NN_MODE_TRAIN);
  assert_int_equal(R.L->skipped_updates, 1);
  fx_assert_same_bits("running_mean kept", nn_state_ptr(R.L, 0), rm, 2);
  fx_assert_same_bits("running_var kept", nn_state_ptr(R.L, 1), rv, 2);
  lrun_close(&R);
}

/* Checkpoint round trip (safetensors with the spec in its metadata) and the summary table. */
static void test_checkpoint_round_trip(void **state) {
  (void)state;
  /* in a fresh directory of its own: the generic-kernel build of this test runs beside it
   * (ctest -j), and one fixed name in the working directory raced */
  char *dir = tu_tempdir("gn-ckpt"), path[1024];
  assert_non_null(dir);
  snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
  nn_model *m = build(
      "input shape=6x5x5\nlayernorm eps=1e-06\ngroupnorm groups=3\n"
      "instancenorm affine=1 track_running_stats=1 momentum=0.2\nflatten\ndense units=3\n");
  nn_rng r;
  nn_rng_seed(&r, 44);
  for (size_t i = 0; i < m->nparams; i++) m->params[i] = (float)nn_rng_normal(&r);
  for (size_t i = 0; i < m->nstate; i++) m->state[i] = 0.5f + nn_rng_uniform(&r);
  nn_error err = {0};
  if (nn_checkpoint_save(m, path, NULL, 0, &err) != NN_OK) fail_msg("%s", err.msg);
  nn_model *m2 = NULL;
  if (nn_checkpoint_load(path, NULL, &m2, &err) != NN_OK) fail_msg("%s", err.msg);
  tu_rmtree(dir);
  free(dir);
  char *t1 = nn_spec_to_text(m->spec), *t2 = nn_spec_to_text(m2->spec);
  assert_string_equal(t1, t2);
  assert_int_equal(m2->nparams, m->nparams);
  assert_int_equal(m2->nstate, m->nstate);
  fx_assert_same_bits("params after load", m2->params, m->params, m->nparams);
  fx_assert_same_bits("state after load", m2->state, m->state, m->nstate);
  char *sum = nn_model_summary(m2);
  assert_non_null(strstr(sum, "layernorm"));
  assert_non_null(strstr(sum, "groupnorm"));
  assert_non_null(strstr(sum, "instancenorm"));
  free(t1), free(t2), free(sum);
  nn_model_free(m), nn_model_free(m2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torch_single),
      cmocka_unit_test(test_torch_instancenorm_running_stats),
      cmocka_unit_test(test_torch_through_model),
      cmocka_unit_test(test_groupnorm1_is_layernorm),
      cmocka_unit_test(test_groupnormC_is_instancenorm),
      cmocka_unit_test(test_spec_and_shape_errors),
      cmocka_unit_test(test_instancenorm_one_spatial_element),
      cmocka_unit_test(test_spec_round_trip),
      cmocka_unit_test(test_state_dict_names),
      cmocka_unit_test(test_running_update_refuses_nonfinite),
      cmocka_unit_test(test_checkpoint_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
