/* Group normalization kernel (src/kernels/groupnorm.c) and the groupnorm / layernorm /
 * instancenorm layers (src/layers/groupnorm.c) against
 * - the double reference twins (groupnorm_ref.c): every affine kind, several shapes incl.
 *   S = 1, one-value groups, constant / large-mean / eps-sized groups, in-place use;
 * - central finite differences (on the twins);
 * - PyTorch nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d fixtures (tests/fixtures/norm_torch.txt,
 *   gen_norm_fixtures.py) driven through the LAYER ops of a model built from a spec, incl.
 *   InstanceNorm running statistics over three steps and eval mode;
 * - consistency: GroupNorm(1) == LayerNorm with a per-channel affine, GroupNorm(C) ==
 *   InstanceNorm (bitwise);
 * - spec and shape errors, state_dict names and shapes;
 * - bitwise-identical results for 1 and 2 OpenMP threads. */
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






/* |got - want| <= tol * (|want| + max|want|). */
static void assert_rel_fd(const char *what, const float *got, const double *want, size_t n, double tol) {
  assert_close_fd(what, got, want, n, tol, tol * maxabs_d(want, n));
}

static void assert_same_bits(const char *what, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof *a)) fail_msg("%s differs at %zu: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

static void fill_normal(nn_rng *r, float *v, size_t n, double scale, double off) {
  for (size_t i = 0; i < n; i++) v[i] = (float)(off + scale * nn_rng_normal(r));
}

/* x[N,C,S] with an offset and a scale drawn per (sample, group). With `hard`, groups cycle
 * through: a large mean with a small spread (1e3 + 0.05 N(0,1)), a spread of 3e-3 (variance
 * ~ eps), and a constant group (var exactly 0). */
static void fill_gn_input(nn_rng *r, float *x, int n, int c, int s, int groups, int hard) {
  const size_t m = (size_t)(c / groups) * s;
  for (int t = 0; t < n * groups; t++) {
    double off = 4.0 * (nn_rng_uniform(r) - 0.5), sc = 0.2 + 2.0 * nn_rng_uniform(r);
    int kind = hard ? t % 5 : 0;
    if (kind == 2) off = 1e3, sc = 0.05;
    if (kind == 3) sc = 3e-3;
    if (kind == 4) sc = 0;
    for (size_t k = 0; k < m; k++) x[(size_t)t * m + k] = (float)(off + sc * nn_rng_normal(r));
  }
}

static const char *affine_name(nn_gn_affine a) {
  return a == NN_GN_AFFINE_NONE ? "none" : a == NN_GN_AFFINE_CHANNEL ? "channel" : "element";
}

static size_t param_count(nn_gn_affine a, int c, int s) { return a == NN_GN_AFFINE_ELEMENT ? (size_t)c * s : (size_t)c; }

/* ---- optimized kernel vs reference twin --------------------------------------------------- */

typedef struct {
  int n, c, s, groups;
} gshape;

static const gshape shapes[] = {
    {4, 6, 25, 1}, {4, 6, 25, 3},  {4, 6, 25, 6},   {8, 5, 1, 1},   {8, 6, 1, 3},    {3, 12, 1, 12},
    {2, 16, 33, 4}, {7, 3, 7, 3},  {5, 4, 2, 2},    {1, 4, 9, 1},   {16, 32, 64, 8}, {2, 64, 1024, 1},
    {64, 8, 49, 8}, {3, 2, 17, 1}, {4, 300, 1, 1},  {6, 40, 1, 10}, {2, 3, 1000, 3}, {40, 600, 1, 1},
};

static void check_vs_ref(const gshape *sh, nn_gn_affine affine, nn_rng *r) {
  const int n = sh->n, c = sh->c, s = sh->s, G = sh->groups;
  const size_t cnt = (size_t)n * c * s, ng = (size_t)n * G, pc = param_count(affine, c, s);
  char what[160], tag[96];
  snprintf(tag, sizeof tag, "(%d,%d,%d) G=%d affine=%s", n, c, s, G, affine_name(affine));
  float *x = fbuf(cnt), *dy = fbuf(cnt), *y = fbuf(cnt), *dx = fbuf(cnt), *buf = fbuf(cnt);
  float *gamma = fbuf(pc), *beta = fbuf(pc), *dg = fbuf(pc), *db = fbuf(pc), *dg2 = fbuf(pc), *db2 = fbuf(pc);
  float *mean = fbuf(ng), *var = fbuf(ng), *invstd = fbuf(ng), *ws = fbuf(nn_groupnorm_workspace(GN_GEOM(n, c, s, G, affine)));
  double *xd = dbuf(cnt), *dyd = dbuf(cnt), *yr = dbuf(cnt), *dxr = dbuf(cnt), *gd = dbuf(pc), *bd = dbuf(pc);
  double *dgr = dbuf(pc), *dbr = dbuf(pc), *mr = dbuf(ng), *vr = dbuf(ng), *isr = dbuf(ng);
  fill_gn_input(r, x, n, c, s, G, 1);
  fill_normal(r, dy, cnt, 1.0, 0.3);
  for (size_t k = 0; k < pc; k++) {
    gamma[k] = 0.5f + nn_rng_uniform(r);
    beta[k] = (float)nn_rng_normal(r);
  }
  to_double(x, xd, cnt);
  to_double(dy, dyd, cnt);
  to_double(gamma, gd, pc);
  to_double(beta, bd, pc);
  const int aff = affine != NN_GN_AFFINE_NONE;
  const float *g = aff ? gamma : NULL, *b = aff ? beta : NULL;

  /* forward */
  fill_f(y, cnt, NAN);
  nn_groupnorm_forward(GN_GEOM(n, c, s, G, affine), x, g, b, y, mean, var, invstd);
  nn_ref_groupnorm_forward(GN_GEOM(n, c, s, G, affine), xd, aff ? gd : NULL, aff ? bd : NULL, yr, mr, vr);
  for (size_t t = 0; t < ng; t++) isr[t] = 1.0 / sqrt(vr[t] + EPS);
  snprintf(what, sizeof what, "forward y %s", tag);
  assert_rel_fd(what, y, yr, cnt, 1e-4);
  snprintf(what, sizeof what, "forward mean %s", tag);
  assert_close_fd(what, mean, mr, ng, 1e-6, 1e-6);
  snprintf(what, sizeof what, "forward var %s", tag);
  assert_close_fd(what, var, vr, ng, 1e-4, 1e-12);
  snprintf(what, sizeof what, "forward invstd %s", tag);
  assert_close_fd(what, invstd, isr, ng, 1e-4, 0);
  /* var may be skipped; in place (y == x) gives the same bits */
  memcpy(buf, x, cnt * sizeof *x);
  nn_groupnorm_forward(GN_GEOM(n, c, s, G, affine), buf, g, b, buf, mean, NULL, invstd);
  snprintf(what, sizeof what, "forward in place %s", tag);
  assert_same_bits(what, buf, y, cnt);

  /* backward: dx overwritten, dgamma/dbeta accumulated */
  fill_f(dx, cnt, NAN);
  fill_f(dg, pc, 0.25f), fill_f(db, pc, 0.25f);
  for (size_t k = 0; k < pc; k++) dgr[k] = dbr[k] = 0.25;
  nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, dy, dx, dg, db, ws);
  nn_ref_groupnorm_backward(GN_GEOM(n, c, s, G, affine), xd, aff ? gd : NULL, dyd, dxr, dgr, dbr);
  snprintf(what, sizeof what, "backward dx %s", tag);
  assert_rel_fd(what, dx, dxr, cnt, 1e-4);
  if (aff) {
    snprintf(what, sizeof what, "backward dgamma %s", tag);
    assert_rel_fd(what, dg, dgr, pc, 1e-4);
    snprintf(what, sizeof what, "backward dbeta %s", tag);
    assert_rel_fd(what, db, dbr, pc, 1e-4);
  }
  /* parts: dx only, then parameter grads only, then in place (dx == dy): the same bits */
  fill_f(buf, cnt, NAN);
  nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, dy, buf, NULL, NULL, ws);
  snprintf(what, sizeof what, "backward dx alone %s", tag);
  assert_same_bits(what, buf, dx, cnt);
  if (aff) {
    fill_f(dg2, pc, 0.25f), fill_f(db2, pc, 0.25f);
    nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, dy, NULL, dg2, db2, ws);
    snprintf(what, sizeof what, "backward dgamma alone %s", tag);
    assert_same_bits(what, dg2, dg, pc);
    snprintf(what, sizeof what, "backward dbeta alone %s", tag);
    assert_same_bits(what, db2, db, pc);
  }
  memcpy(buf, dy, cnt * sizeof *dy);
  fill_f(dg2, pc, 0.25f), fill_f(db2, pc, 0.25f);
  nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, g, mean, invstd, buf, buf, aff ? dg2 : NULL, aff ? db2 : NULL, ws);
  snprintf(what, sizeof what, "backward in place dx %s", tag);
  assert_same_bits(what, buf, dx, cnt);
  if (aff) {
    snprintf(what, sizeof what, "backward in place dgamma %s", tag);
    assert_same_bits(what, dg2, dg, pc);
  }
  free(x), free(dy), free(y), free(dx), free(buf), free(gamma), free(beta), free(dg), free(db), free(dg2);
  free(db2), free(mean), free(var), free(invstd), free(ws), free(xd), free(dyd), free(yr), free(dxr), free(gd);
  free(bd), free(dgr), free(dbr), free(mr), free(vr), free(isr);
}

static void test_kernel_vs_reference(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 31);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int a = 0; a < 3; a++) check_vs_ref(&shapes[i], (nn_gn_affine)a, &r);
}

/* A group of one value normalizes to 0 (y = beta), with finite gradients. */
static void test_degenerate_groups(void **state) {
  (void)state;
  const int n = 2, c = 4, s = 1;
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 1e4f}, y[8], mean[8], var[8], is[8], dy[8] = {1, -2, 3, 4, 5, 6, 7, 8};
  float gamma[4] = {2, 2, 2, 2}, beta[4] = {0.5f, -1, 2, 3}, dx[8], dg[4] = {0}, db[4] = {0}, ws[64];
  assert_true(nn_groupnorm_workspace(GN_GEOM(n, c, s, c, NN_GN_AFFINE_CHANNEL)) <= 64);
  nn_groupnorm_forward(GN_GEOM(n, c, s, c, NN_GN_AFFINE_CHANNEL), x, gamma, beta, y, mean, var, is);
  for (int i = 0; i < 8; i++) {
    assert_true(var[i] == 0.0f);
    assert_true(mean[i] == x[i]);
    assert_true(y[i] == beta[i % 4]);
  }
  nn_groupnorm_backward(GN_GEOM(n, c, s, c, NN_GN_AFFINE_CHANNEL), x, gamma, mean, is, dy, dx, dg, db, ws);
  for (int i = 0; i < 8; i++) assert_true(dx[i] == 0.0f);
  for (int k = 0; k < 4; k++) {
    assert_true(dg[k] == 0.0f);
    assert_true(db[k] == dy[k] + dy[k + 4]);
  }
}

/* ---- finite differences on the reference twins --------------------------------------------
 * L = sum(w .* y); the twins' backward with dy = w must be dL/dx, dL/dgamma, dL/dbeta. */

typedef struct {
  int n, c, s, groups;
  nn_gn_affine affine;
  const double *x, *gamma, *beta, *w;
  double *y;
} fd_ctx;

static double fd_loss(const void *ctx) {
  const fd_ctx *f = ctx;
  nn_ref_groupnorm_forward(GN_GEOM(f->n, f->c, f->s, f->groups, f->affine), f->x, f->gamma, f->beta, f->y, NULL, NULL);
  size_t cnt = (size_t)f->n * f->c * f->s;
  double l = 0;
  for (size_t i = 0; i < cnt; i++) l += f->w[i] * f->y[i];
  return l;
}

static void fd_check(const char *what, fd_ctx *f, double *v, size_t len, const double *an) {
  tu_fd_check(what, fd_loss, f, v, len, an, 1e-5, 1e-6);
}

static void fd_case(int n, int c, int s, int groups, nn_gn_affine affine, nn_rng *r) {
  const size_t cnt = (size_t)n * c * s, pc = param_count(affine, c, s);
  const int aff = affine != NN_GN_AFFINE_NONE;
  double *x = dbuf(cnt), *w = dbuf(cnt), *y = dbuf(cnt), *dx = dbuf(cnt);
  double *gamma = dbuf(pc), *beta = dbuf(pc), *dg = dbuf(pc), *db = dbuf(pc);
  float *xf = fbuf(cnt);
  char what[128];
  fill_gn_input(r, xf, n, c, s, groups, 0);
  to_double(xf, x, cnt);
  for (size_t i = 0; i < cnt; i++) w[i] = nn_rng_normal(r);
  for (size_t k = 0; k < pc; k++) {
    gamma[k] = 0.5 + nn_rng_uniform(r);
    beta[k] = nn_rng_normal(r);
    dg[k] = db[k] = 0;
  }
  fd_ctx f = {n, c, s, groups, affine, x, aff ? gamma : NULL, aff ? beta : NULL, w, y};
  nn_ref_groupnorm_backward(GN_GEOM(n, c, s, groups, affine), x, f.gamma, w, dx, dg, db);
  snprintf(what, sizeof what, "ref dx (%d,%d,%d) G=%d %s", n, c, s, groups, affine_name(affine));
  fd_check(what, &f, x, cnt, dx);
  if (aff) {
    snprintf(what, sizeof what, "ref dgamma (%d,%d,%d) G=%d %s", n, c, s, groups, affine_name(affine));
    fd_check(what, &f, gamma, pc, dg);
    snprintf(what, sizeof what, "ref dbeta (%d,%d,%d) G=%d %s", n, c, s, groups, affine_name(affine));
    fd_check(what, &f, beta, pc, db);
  }
  free(x), free(w), free(y), free(dx), free(gamma), free(beta), free(dg), free(db), free(xf);
}

static void test_reference_finite_differences(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 32);
  for (int a = 0; a < 3; a++) {
    fd_case(3, 6, 4, 1, (nn_gn_affine)a, &r);
    fd_case(2, 6, 5, 3, (nn_gn_affine)a, &r);
    fd_case(2, 4, 6, 4, (nn_gn_affine)a, &r);
    fd_case(4, 5, 1, 1, (nn_gn_affine)a, &r);
    fd_case(3, 6, 1, 2, (nn_gn_affine)a, &r);
  }
}

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
  R->scratch = fbuf(R->ops->scratch(R->L, n));
  R->L->scratch = R->scratch;
  R->y = fbuf(R->cnt);
  R->dx = fbuf(R->cnt);
}

static void lrun_close(lrun *R) {
  nn_model_free(R->m);
  free(R->scratch), free(R->y), free(R->dx);
}

static void lrun_forward(lrun *R, const float *x, nn_mode mode) {
  nn_error err = {0};
  fill_f(R->y, R->cnt, NAN);
  if (R->ops->forward(R->L, x, R->y, R->n, mode, &err) != NN_OK) fail_msg("forward: %s", err.msg);
}

static void lrun_backward(lrun *R, const float *x, const float *dy, nn_mode mode) {
  fill_f(R->dx, R->cnt, NAN);
  nn_model_zero_grads(R->m);
  R->ops->backward(R->L, x, R->y, dy, R->dx, R->n, mode);
}

static void fx_check(const nn_fixture *fx, const char *cs, const char *field, const float *got, size_t n) {
  char name[256];
  size_t cnt;
  snprintf(name, sizeof name, "%s.%s", cs, field);
  const double *want = fx_get(fx, name, &cnt);
  if (cnt != n) fail_msg("fixture %s has %zu values, expected %zu", name, cnt, n);
  assert_close_fd(name, got, want, n, FX_TOL, FX_TOL);
}

static float *fx_arr(const nn_fixture *fx, const char *cs, const char *field, size_t n) {
  char name[256];
  snprintf(name, sizeof name, "%s.%s", cs, field);
  return fx_floats(fx, name, n);
}

/* Load the case's weight/bias into the layer's parameters. */
static void fx_set_affine(const nn_fixture *fx, const char *cs, nn_layer *L) {
  assert_int_equal(L->nparam, 2);
  for (int t = 0; t < 2; t++) {
    float *v = fx_arr(fx, cs, t ? "bias" : "weight", L->param[t].count);
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
  float *x = fx_arr(fx, cs, "x", R.cnt), *dy = fx_arr(fx, cs, "dy", R.cnt);
  for (int mode = NN_MODE_TRAIN; mode <= NN_MODE_EVAL; mode++) { /* no train/eval difference */
    lrun_forward(&R, x, (nn_mode)mode);
    fx_check(fx, cs, "y", R.y, R.cnt);
    lrun_backward(&R, x, dy, (nn_mode)mode);
    fx_check(fx, cs, "dx", R.dx, R.cnt);
    if (affine) {
      fx_check(fx, cs, "dweight", nn_param_ptr(R.L, R.L->g, 0), R.L->param[0].count);
      fx_check(fx, cs, "dbias", nn_param_ptr(R.L, R.L->g, 1), R.L->param[1].count);
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
    float *x = fx_arr(fx, cs, field, R.cnt);
    lrun_forward(&R, x, NN_MODE_TRAIN);
    snprintf(field, sizeof field, "y%d", k);
    fx_check(fx, cs, field, R.y, R.cnt);
    snprintf(field, sizeof field, "rm%d", k);
    fx_check(fx, cs, field, nn_state_ptr(L, 0), 6);
    snprintf(field, sizeof field, "rv%d", k);
    fx_check(fx, cs, field, nn_state_ptr(L, 1), 6);
    snprintf(name, sizeof name, "%s.nbt%d", cs, k);
    assert_int_equal(L->batches_tracked, (int64_t)fx_get(fx, name, NULL)[0]); /* PyTorch: stays 0 */
    if (k == 3) {
      float *dy = fx_arr(fx, cs, "dy3", R.cnt);
      lrun_backward(&R, x, dy, NN_MODE_TRAIN);
      fx_check(fx, cs, "dx3", R.dx, R.cnt);
      if (affine) {
        fx_check(fx, cs, "dweight3", nn_param_ptr(L, L->g, 0), 6);
        fx_check(fx, cs, "dbias3", nn_param_ptr(L, L->g, 1), 6);
      }
      free(dy);
    }
    if (k == 1)
      x1 = x;
    else
      free(x);
  }
  assert_int_equal(L->skipped_updates, 0);
  float *rm = fbuf(6), *rv = fbuf(6);
  memcpy(rm, nn_state_ptr(L, 0), 6 * sizeof *rm);
  memcpy(rv, nn_state_ptr(L, 1), 6 * sizeof *rv);
  lrun_forward(&R, x1, NN_MODE_EVAL);
  fx_check(fx, cs, "yeval", R.y, R.cnt);
  assert_same_bits("running_mean after eval", nn_state_ptr(L, 0), rm, 6);
  assert_same_bits("running_var after eval", nn_state_ptr(L, 1), rv, 6);
  float *dy = fx_arr(fx, cs, "dyeval", R.cnt);
  lrun_backward(&R, x1, dy, NN_MODE_EVAL);
  fx_check(fx, cs, "dxeval", R.dx, R.cnt);
  if (affine) {
    fx_check(fx, cs, "dweighteval", nn_param_ptr(L, L->g, 0), 6);
    fx_check(fx, cs, "dbiaseval", nn_param_ptr(L, L->g, 1), 6);
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
  float *x = fx_arr(fx, cs, "x1", cnt);
  int32_t labels[4] = {0, 1, 1, 0};
  nn_error err = {0};
  double loss = 0;
  if (nn_model_forward(m, x, labels, n, NN_MODE_TRAIN, &loss, NULL, NULL, &err) != NN_OK) fail_msg("%s", err.msg);
  fx_check(fx, cs, "y1", m->act[1], cnt);
  fx_check(fx, cs, "rm1", nn_state_ptr(L, 0), 6);
  fx_check(fx, cs, "rv1", nn_state_ptr(L, 1), 6);
  nn_model_zero_grads(m);
  if (nn_model_backward(m, &err) != NN_OK) fail_msg("%s", err.msg);
  /* the norm layer's parameter grads from dact[1] (the dense layer's dx), checked vs the
   * reference twin driven with the same upstream gradient */
  double *xd = dbuf(cnt), *dyd = dbuf(cnt), *yd = dbuf(cnt), *dxr = dbuf(cnt), gd[6], dgr[6] = {0}, dbr[6] = {0};
  to_double(x, xd, cnt);
  to_double(m->dact[1], dyd, cnt);
  to_double(nn_param_ptr(L, L->p, 0), gd, 6);
  nn_ref_groupnorm_backward(GN_GEOM(n, 6, 25, 6, NN_GN_AFFINE_CHANNEL), xd, gd, dyd, dxr, dgr, dbr);
  assert_rel_fd("model dweight", nn_param_ptr(L, L->g, 0), dgr, 6, 1e-4);
  assert_rel_fd("model dbias", nn_param_ptr(L, L->g, 1), dbr, 6, 1e-4);
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
  float *x = fbuf(G.cnt), *dy = fbuf(G.cnt);
  fill_gn_input(&r, x, n, c, s, 1, 0);
  fill_normal(&r, dy, G.cnt, 1.0, 0.2);
  lrun_forward(&G, x, NN_MODE_TRAIN);
  lrun_forward(&Ln, x, NN_MODE_TRAIN);
  lrun_backward(&G, x, dy, NN_MODE_TRAIN);
  lrun_backward(&Ln, x, dy, NN_MODE_TRAIN);
  double *want = dbuf(G.cnt), dw[6] = {0}, dbs[6] = {0};
  to_double(Ln.y, want, G.cnt);
  assert_rel_fd("groupnorm(1) y vs layernorm", G.y, want, G.cnt, 1e-5);
  to_double(Ln.dx, want, G.cnt);
  assert_rel_fd("groupnorm(1) dx vs layernorm", G.dx, want, G.cnt, 1e-5);
  const float *ldw = nn_param_ptr(Ln.L, Ln.L->g, 0), *ldb = nn_param_ptr(Ln.L, Ln.L->g, 1);
  for (int k = 0; k < c; k++)
    for (int j = 0; j < s; j++) dw[k] += ldw[k * s + j], dbs[k] += ldb[k * s + j];
  assert_rel_fd("groupnorm(1) dweight vs layernorm", nn_param_ptr(G.L, G.L->g, 0), dw, 6, 1e-5);
  assert_rel_fd("groupnorm(1) dbias vs layernorm", nn_param_ptr(G.L, G.L->g, 1), dbs, 6, 1e-5);
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
    float *x = fbuf(G.cnt), *dy = fbuf(G.cnt);
    fill_gn_input(&r, x, n, c, s, c, 1);
    fill_normal(&r, dy, G.cnt, 1.0, 0.2);
    lrun_forward(&G, x, NN_MODE_TRAIN);
    lrun_forward(&I, x, NN_MODE_TRAIN);
    lrun_backward(&G, x, dy, NN_MODE_TRAIN);
    lrun_backward(&I, x, dy, NN_MODE_TRAIN);
    assert_same_bits("groupnorm(C) y vs instancenorm", G.y, I.y, G.cnt);
    assert_same_bits("groupnorm(C) dx vs instancenorm", G.dx, I.dx, G.cnt);
    if (affine) /* layer 0's weight and bias grads open the flat gradient buffer */
      assert_same_bits("groupnorm(C) dweight/dbias vs instancenorm", G.m->grads, I.m->grads, 2 * (size_t)c);
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
  const char *text = "input shape=6x5x5\ngroupnorm groups=3 eps=0.001 affine=0\nlayernorm\n"
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
  nn_model *m = build("input shape=6x5x5\nlayernorm\ngroupnorm groups=2\ninstancenorm\n"
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
  assert_same_bits("running_mean kept", nn_state_ptr(R.L, 0), rm, 2);
  assert_same_bits("running_var kept", nn_state_ptr(R.L, 1), rv, 2);
  lrun_close(&R);
}

/* Checkpoint round trip (safetensors with the spec in its metadata) and the summary table. */
static void test_checkpoint_round_trip(void **state) {
  (void)state;
  const char *path = "test_groupnorm_ckpt.safetensors";
  nn_model *m = build("input shape=6x5x5\nlayernorm eps=1e-06\ngroupnorm groups=3\n"
                      "instancenorm affine=1 track_running_stats=1 momentum=0.2\nflatten\ndense units=3\n");
  nn_rng r;
  nn_rng_seed(&r, 44);
  for (size_t i = 0; i < m->nparams; i++) m->params[i] = (float)nn_rng_normal(&r);
  for (size_t i = 0; i < m->nstate; i++) m->state[i] = 0.5f + nn_rng_uniform(&r);
  nn_error err = {0};
  if (nn_checkpoint_save(m, path, NULL, 0, &err) != NN_OK) fail_msg("%s", err.msg);
  nn_model *m2 = NULL;
  if (nn_checkpoint_load(path, NULL, &m2, &err) != NN_OK) fail_msg("%s", err.msg);
  remove(path);
  char *t1 = nn_spec_to_text(m->spec), *t2 = nn_spec_to_text(m2->spec);
  assert_string_equal(t1, t2);
  assert_int_equal(m2->nparams, m->nparams);
  assert_int_equal(m2->nstate, m->nstate);
  assert_same_bits("params after load", m2->params, m->params, m->nparams);
  assert_same_bits("state after load", m2->state, m->state, m->nstate);
  char *sum = nn_model_summary(m2);
  assert_non_null(strstr(sum, "layernorm"));
  assert_non_null(strstr(sum, "groupnorm"));
  assert_non_null(strstr(sum, "instancenorm"));
  free(t1), free(t2), free(sum);
  nn_model_free(m), nn_model_free(m2);
}

/* ---- thread-count independence ---------------------------------------------------------------- */

static void run_threads_case(int n, int c, int s, int G, nn_gn_affine affine, nn_rng *r) {
  const size_t cnt = (size_t)n * c * s, ng = (size_t)n * G, pc = param_count(affine, c, s);
  float *x = fbuf(cnt), *dy = fbuf(cnt), *gamma = fbuf(pc), *beta = fbuf(pc), *ws = fbuf(nn_groupnorm_workspace(GN_GEOM(n, c, s, G, affine)));
  float *y[2], *dx[2], *dg[2], *db[2], *mean[2], *var[2], *is[2];
  fill_gn_input(r, x, n, c, s, G, 1);
  fill_normal(r, dy, cnt, 1.0, 0.1);
  for (size_t k = 0; k < pc; k++) gamma[k] = 0.5f + nn_rng_uniform(r), beta[k] = (float)nn_rng_normal(r);
  for (int t = 0; t < 2; t++) {
    y[t] = fbuf(cnt), dx[t] = fbuf(cnt), dg[t] = fbuf(pc), db[t] = fbuf(pc);
    mean[t] = fbuf(ng), var[t] = fbuf(ng), is[t] = fbuf(ng);
    fill_f(dg[t], pc, 0), fill_f(db[t], pc, 0);
    omp_set_num_threads(t + 1);
    nn_groupnorm_forward(GN_GEOM(n, c, s, G, affine), x, gamma, beta, y[t], mean[t], var[t], is[t]);
    nn_groupnorm_backward(GN_GEOM(n, c, s, G, affine), x, gamma, mean[t], is[t], dy, dx[t], dg[t], db[t], ws);
  }
  omp_set_num_threads(2);
  char what[96];
  snprintf(what, sizeof what, "(%d,%d,%d) G=%d %s 1 vs 2 threads", n, c, s, G, affine_name(affine));
  assert_same_bits(what, y[0], y[1], cnt);
  assert_same_bits(what, mean[0], mean[1], ng);
  assert_same_bits(what, var[0], var[1], ng);
  assert_same_bits(what, is[0], is[1], ng);
  assert_same_bits(what, dx[0], dx[1], cnt);
  assert_same_bits(what, dg[0], dg[1], pc);
  assert_same_bits(what, db[0], db[1], pc);
  for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dg[t]), free(db[t]), free(mean[t]), free(var[t]), free(is[t]);
  free(x), free(dy), free(gamma), free(beta), free(ws);
}

static void test_threads_bitwise(void **state) {
  (void)state;
  nn_rng r;
  nn_rng_seed(&r, 43);
  for (int a = 0; a < 3; a++) {
    run_threads_case(32, 16, 64, 4, (nn_gn_affine)a, &r);  /* GroupNorm */
    run_threads_case(8, 16, 576, 1, (nn_gn_affine)a, &r);  /* LayerNorm over CxHxW */
    run_threads_case(16, 32, 49, 32, (nn_gn_affine)a, &r); /* InstanceNorm */
    run_threads_case(64, 512, 1, 1, (nn_gn_affine)a, &r);  /* LayerNorm over C */
    run_threads_case(64, 32, 9, 8, (nn_gn_affine)a, &r);   /* GroupNorm, S < 16 */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel_vs_reference),
      cmocka_unit_test(test_degenerate_groups),
      cmocka_unit_test(test_reference_finite_differences),
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
      cmocka_unit_test(test_threads_bitwise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
