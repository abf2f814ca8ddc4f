/* Runtime dispatch (src/base/cpu.c, src/kernels/dispatch.c): the level is chosen as NN_CPU
 * says, nn_cpu_force switches it, and every dispatched kernel's generic and AVX2+FMA variants
 * give the same bits (ARCHITECTURE.md §13), except the direct convolution, which fuses its
 * multiply-adds where the target has FMA (its variants agree to float rounding). Each case runs a kernel on fixed inputs (tails, NaN,
 * saturating values, threaded and serial sizes) once per variant and compares every output
 * byte. On a CPU without AVX2 both runs take the generic variant (nn_cpu_force caps the
 * level), and the comparison holds trivially; the kernel tests themselves run once more
 * with NN_CPU=generic (tests/CMakeLists.txt), so both variants meet their reference twins. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/cpu.h"
#include "kernels/kernels.h"
#include "nn_test.h"

/* ---- the level ------------------------------------------------------------------------ */

static void test_level_follows_env(void **state) {
  (void)state;
  /* first use in this process: NN_CPU as ctest set it (the *_generic runs) or unset */
  const char *env = getenv("NN_CPU");
  assert_int_equal(nn_cpu_level_get(), nn_cpu_parse(env, nn_cpu_detect()));
  if (env && !strcmp(env, "generic")) assert_int_equal(nn_cpu_level_get(), NN_CPU_GENERIC);
}

static void test_parse_and_force(void **state) {
  (void)state;
  assert_int_equal(nn_cpu_parse("generic", NN_CPU_AVX2), NN_CPU_GENERIC);
  assert_int_equal(nn_cpu_parse("avx2", NN_CPU_AVX2), NN_CPU_AVX2);
  assert_int_equal(nn_cpu_parse(NULL, NN_CPU_AVX2), NN_CPU_AVX2);
  assert_int_equal(nn_cpu_parse("", NN_CPU_AVX2), NN_CPU_AVX2);
  assert_int_equal(nn_cpu_parse("avx512", NN_CPU_AVX2), NN_CPU_AVX2);
  assert_int_equal(nn_cpu_parse("avx2", NN_CPU_GENERIC), NN_CPU_GENERIC); /* never above the CPU */
  assert_int_equal(nn_cpu_parse("avx2", NN_CPU_AVX512), NN_CPU_AVX2);     /* a cap */
  assert_int_equal(nn_cpu_parse("avx512", NN_CPU_AVX512), NN_CPU_AVX512);
  assert_int_equal(nn_cpu_parse(NULL, NN_CPU_AVX512), NN_CPU_AVX512);
  assert_string_equal(nn_cpu_level_name(NN_CPU_GENERIC), "generic");
  assert_string_equal(nn_cpu_level_name(NN_CPU_AVX2), "avx2");
  assert_string_equal(nn_cpu_level_name(NN_CPU_AVX512), "avx512");
  const nn_cpu_level before = nn_cpu_level_get(), best = nn_cpu_detect();
  nn_cpu_force(NN_CPU_GENERIC);
  assert_int_equal(nn_cpu_level_get(), NN_CPU_GENERIC);
  assert_int_equal(nn_cpu_force(NN_CPU_AVX2), NN_CPU_GENERIC);
  assert_int_equal(nn_cpu_level_get(), best < NN_CPU_AVX2 ? best : NN_CPU_AVX2);
  nn_cpu_force(NN_CPU_AVX512);
  assert_int_equal(nn_cpu_level_get(), best); /* capped by the CPU */
  nn_cpu_force(before);
}

/* ---- outputs of one run ------------------------------------------------------------------ */

typedef struct {
  unsigned char *p;
  size_t len, cap;
} sink;

static void put(sink *s, const void *p, size_t bytes) {
  if (s->len + bytes > s->cap) {
    s->cap = 2 * (s->len + bytes);
    unsigned char *q = realloc(s->p, s->cap);
    assert_non_null(q);
    s->p = q;
  }
  memcpy(s->p + s->len, p, bytes);
  s->len += bytes;
}

/* Inputs in [lo, hi) from a fixed seed, with a NaN, infinities and zeros of both signs
 * sprinkled in when `specials`. */
static float *input(uint64_t seed, size_t n, double lo, double hi, int specials) {
  float *f = tu_fbuf(n);
  tu_rng r = {seed};
  tu_fill_pair(&r, f, NULL, n, lo, hi);
  if (specials && n > 40) {
    f[3] = NAN, f[17] = INFINITY, f[18] = -INFINITY, f[29] = 0.0f, f[30] = -0.0f;
  }
  return f;
}

/* ---- the cases ---------------------------------------------------------------------------- */

static void case_activations(sink *s) {
  const size_t counts[] = {4099, ((size_t)1 << 17) + 5}; /* serial, threaded */
  for (int k = 0; k < 2; k++) {
    const size_t n = counts[k];
    float *x = input(11, n, -120, 120, 1), *dy = input(12, n, -2, 2, 0), *y = tu_fbuf(n), *dx = tu_fbuf(n);
    for (int i = 0; i < 64; i++) x[100 + i] = (float)(i - 32) * 0.02f; /* tanh's small branch */
    void (*fwd[3])(const float *, float *, size_t) = {nn_relu_forward, nn_sigmoid_forward, nn_tanh_forward};
    void (*bwd[3])(const float *, const float *, float *, size_t) = {nn_relu_backward, nn_sigmoid_backward,
                                                                     nn_tanh_backward};
    for (int a = 0; a < 3; a++) {
      fwd[a](x, y, n);
      bwd[a](y, dy, dx, n);
      put(s, y, n * sizeof *y);
      put(s, dx, n * sizeof *dx);
    }
    free(x), free(dy), free(y), free(dx);
  }
}

static void case_pool(sink *s) {
  const nn_pool_geom shapes[] = {
      {.n = 2, .c = 3, .h = 24, .w = 24, .size = 2, .stride = 2},   /* rows of 12: 8-wide steps */
      {.n = 3, .c = 2, .h = 19, .w = 17, .size = 2, .stride = 2},   /* 9 outputs, odd leftovers */
      {.n = 2, .c = 2, .h = 13, .w = 13, .size = 2, .stride = 2},   /* rows of 6: 4-wide steps */
      {.n = 2, .c = 2, .h = 7, .w = 7, .size = 3, .stride = 2},     /* overlapping windows */
      {.n = 128, .c = 6, .h = 24, .w = 24, .size = 2, .stride = 2}, /* LeNet pool1, threaded */
  };
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    nn_pool_geom g = shapes[k];
    assert_int_equal(nn_pool_geom_init(&g), 0);
    const size_t in = (size_t)g.n * g.c * g.h * g.w, out = (size_t)g.n * g.c * g.oh * g.ow;
    float *x = input(21 + k, in, -3, 3, 1), *dy = input(31 + k, out, -1, 1, 0);
    for (size_t i = 0; i + 7 < in; i += 7) x[i + 1] = x[i]; /* ties */
    float *y = tu_fbuf(out), *dx = tu_fbuf(in);
    int32_t *am = calloc(out, sizeof *am);
    assert_non_null(am);
    nn_maxpool2d_forward(&g, x, y, am);
    nn_maxpool2d_backward(&g, dy, am, dx);
    put(s, y, out * sizeof *y);
    put(s, am, out * sizeof *am);
    put(s, dx, in * sizeof *dx);
    nn_avgpool2d_forward(&g, x, y);
    nn_avgpool2d_backward(&g, dy, dx);
    put(s, y, out * sizeof *y);
    put(s, dx, in * sizeof *dx);
    const int planes = g.n * g.c, sz = g.h * g.w;
    nn_global_avgpool_forward(x, y, g.n, g.c, sz);
    nn_global_avgpool_backward(dy, dx, g.n, g.c, sz);
    put(s, y, (size_t)planes * sizeof *y);
    put(s, dx, in * sizeof *dx);
    free(x), free(dy), free(y), free(dx), free(am);
  }
}

static void case_dense(sink *s) {
  const int n = 7, in = 37, out = 11;
  float *x = input(41, (size_t)n * in, -1, 1, 0), *w = input(42, (size_t)out * in, -0.5, 0.5, 0);
  float *b = input(43, out, -1, 1, 0), *dy = input(44, (size_t)n * out, -1, 1, 0);
  float *y = tu_fbuf((size_t)n * out), *dx = tu_fbuf((size_t)n * in), *dw = tu_fbuf((size_t)out * in),
        *db = tu_fbuf(out);
  nn_dense_forward(x, w, b, y, n, in, out);
  nn_dense_backward(x, w, dy, dx, dw, db, n, in, out);
  put(s, y, (size_t)n * out * sizeof *y);
  put(s, dx, (size_t)n * in * sizeof *dx);
  put(s, dw, (size_t)out * in * sizeof *dw);
  put(s, db, (size_t)out * sizeof *db);
  free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
}

/* BatchNorm: the one-shot kernels with each fused activation, inference, and the phases. */
static void case_batchnorm(sink *s) {
  const nn_norm_geom shapes[] = {
      {.n = 4, .c = 3, .s = 49, .eps = 1e-5f},    /* S > 1, partial lane chunks */
      {.n = 16, .c = 8, .s = 144, .eps = 1e-5f},  /* S > 1, threaded channels */
      {.n = 40, .c = 37, .s = 1, .eps = 1e-3f},   /* S = 1, one range */
      {.n = 128, .c = 300, .s = 1, .eps = 1e-5f}, /* S = 1, threaded ranges */
  };
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    const nn_norm_geom *g = &shapes[k];
    const int c = g->c;
    const size_t len = (size_t)g->n * c * g->s;
    float *x = input(51 + k, len, -2, 6, 0), *dy = input(61 + k, len, -1, 1, 0);
    for (size_t i = 0; i < len; i += 5) x[i] += 1e3f; /* large mean, small spread */
    float *gm = input(71, c, 0.5, 1.5, 0), *bt = input(72, c, -1, 1, 0), *z = tu_fbuf(len), *dx = tu_fbuf(len);
    float *mean = tu_fbuf(c), *var = tu_fbuf(c), *is = tu_fbuf(c), *dg = tu_fbuf(c), *db = tu_fbuf(c), *sh = tu_fbuf(c);
    double *s1 = tu_dbuf(c), *s2 = tu_dbuf(c), *s3 = tu_dbuf(c);
    for (nn_act act = NN_ACT_NONE; act <= NN_ACT_TANH; act++) {
      nn_bn_forward_train_act(g, act, x, gm, bt, z, mean, var, is);
      nn_bn_backward_train_act(g, act, x, gm, mean, is, z, dy, dx, dg, db);
      put(s, z, len * sizeof *z);
      put(s, dx, len * sizeof *dx);
      put(s, mean, c * sizeof *mean);
      put(s, var, c * sizeof *var);
      put(s, is, c * sizeof *is);
    }
    put(s, dg, c * sizeof *dg);
    put(s, db, c * sizeof *db);
    for (nn_act act = NN_ACT_NONE; act <= NN_ACT_TANH; act++) {
      nn_bn_forward_infer_act(g, act, x, gm, bt, mean, var, z);
      put(s, z, len * sizeof *z);
    }
    nn_bn_backward_infer(g, x, gm, mean, var, dy, dx, dg, db);
    put(s, dx, len * sizeof *dx);
    nn_bn_shift(g, x, sh);
    nn_bn_moments(g, x, sh, s1, s2);
    nn_bn_forward_apply(g, x, gm, bt, sh, s1, s2, (double)g->n * g->s, z, mean, var, is);
    nn_bn_backward_sums(g, x, dy, mean, s1, s2, s3);
    nn_bn_backward_apply(g, x, gm, mean, is, dy, s1, s2, s3, (double)g->n * g->s, dx, dg, db);
    put(s, s1, c * sizeof *s1);
    put(s, s2, c * sizeof *s2);
    put(s, s3, c * sizeof *s3);
    put(s, z, len * sizeof *z);
    put(s, dx, len * sizeof *dx);
    put(s, dg, c * sizeof *dg);
    put(s, db, c * sizeof *db);
    free(x), free(dy), free(gm), free(bt), free(z), free(dx), free(mean), free(var), free(is), free(dg), free(db);
    free(sh), free(s1), free(s2), free(s3);
  }
}

/* GroupNorm / LayerNorm / InstanceNorm with each affine layout. */
static void case_groupnorm(sink *s) {
  const nn_norm_geom shapes[] = {
      {.n = 3, .c = 6, .s = 25, .groups = 3, .eps = 1e-5f},   /* GroupNorm, runs of 50 */
      {.n = 2, .c = 4, .s = 9, .groups = 4, .eps = 1e-5f},    /* InstanceNorm, runs below 16 lanes */
      {.n = 8, .c = 16, .s = 196, .groups = 1, .eps = 1e-5f}, /* LayerNorm, threaded */
      {.n = 5, .c = 12, .s = 1, .groups = 2, .eps = 1e-3f},   /* S = 1 */
  };
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    for (nn_gn_affine af = NN_GN_AFFINE_NONE; af <= NN_GN_AFFINE_ELEMENT; af++) {
      nn_norm_geom g = shapes[k];
      g.affine = af;
      const size_t len = (size_t)g.n * g.c * g.s, ng = (size_t)g.n * g.groups;
      const size_t np = af == NN_GN_AFFINE_ELEMENT ? (size_t)g.c * g.s : (size_t)g.c;
      float *x = input(81 + k, len, -3, 3, 0), *dy = input(91 + k, len, -1, 1, 0);
      tu_rng r = {7};
      for (size_t i = 0; i < len; i++) x[i] += (float)(100.0 * (i / (len / ng + 1) % 3)) + (float)tu_unif(&r, 0, 1e-3);
      float *gm = input(101, np, 0.5, 1.5, 0), *bt = input(102, np, -1, 1, 0), *y = tu_fbuf(len), *dx = tu_fbuf(len);
      float *mean = tu_fbuf(ng), *var = tu_fbuf(ng), *is = tu_fbuf(ng), *dg = tu_fbuf(np), *db = tu_fbuf(np);
      float *ws = tu_fbuf(nn_groupnorm_workspace(&g));
      nn_groupnorm_forward(&g, x, gm, bt, y, mean, var, is);
      nn_groupnorm_backward(&g, x, gm, mean, is, dy, dx, dg, db, ws);
      put(s, y, len * sizeof *y);
      put(s, dx, len * sizeof *dx);
      put(s, mean, ng * sizeof *mean);
      put(s, var, ng * sizeof *var);
      put(s, is, ng * sizeof *is);
      put(s, dg, np * sizeof *dg);
      put(s, db, np * sizeof *db);
      free(x), free(dy), free(gm), free(bt), free(y), free(dx), free(mean), free(var), free(is), free(dg), free(db);
      free(ws);
    }
  }
}

/* Convolution with its fused activation, im2col + GEMM (the copies, the epilogues and the
 * reductions of our own code around oneDNN's sgemm, which picks its kernel by CPU itself and
 * is the same in both runs). */
static void conv_run(sink *s, nn_conv_algo algo) {
  const nn_conv_geom shapes[] = {
      {.n = 3, .c = 1, .h = 28, .w = 28, .oc = 6, .kh = 5, .kw = 5, .stride = 1, .pad = 0},   /* LeNet conv1 */
      {.n = 4, .c = 6, .h = 12, .w = 12, .oc = 16, .kh = 5, .kw = 5, .stride = 1, .pad = 0},  /* LeNet conv2 */
      {.n = 2, .c = 3, .h = 17, .w = 13, .oc = 5, .kh = 3, .kw = 3, .stride = 1, .pad = 1},   /* padding, odd rows */
      {.n = 2, .c = 4, .h = 15, .w = 15, .oc = 8, .kh = 3, .kw = 3, .stride = 2, .pad = 1},   /* stride 2 */
      {.n = 64, .c = 1, .h = 28, .w = 28, .oc = 32, .kh = 3, .kw = 3, .stride = 1, .pad = 0}, /* threaded */
      {.n = 3, .c = 16, .h = 11, .w = 19, .oc = 32, .kh = 3, .kw = 3, .stride = 1, .pad = 1}, /* Winograd fits */
  };
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    nn_conv_geom g = shapes[k];
    g.algo = algo;
    assert_int_equal(nn_conv_geom_init(&g), 0);
    const size_t in = (size_t)g.n * g.c * g.h * g.w, out = (size_t)g.n * g.oc * g.oh * g.ow;
    const size_t nw = (size_t)g.oc * g.c * g.kh * g.kw;
    float *x = input(111 + k, in, -1, 1, 0), *w = input(121 + k, nw, -0.5, 0.5, 0), *b = input(131, g.oc, -1, 1, 0);
    float *dy = input(141 + k, out, -1, 1, 0), *y = tu_fbuf(out), *dx = tu_fbuf(in), *dw = tu_fbuf(nw),
          *db = tu_fbuf(g.oc), *ws = tu_fbuf(nn_conv2d_workspace(&g));
    const nn_act act = (nn_act)(k % 3); /* none, relu, sigmoid: the fused epilogues too */
    const nn_epilogue e = {.bias = b, .act = act};
    nn_conv2d_forward_epi(&g, &e, x, w, y, ws);
    nn_conv2d_backward_act(&g, act, x, w, y, dy, dx, dw, db, ws);
    put(s, y, out * sizeof *y);
    put(s, dx, in * sizeof *dx);
    put(s, dw, nw * sizeof *dw);
    put(s, db, g.oc * sizeof *db);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db), free(ws);
  }
}

static void case_conv_im2col(sink *s) { conv_run(s, NN_CONV_IM2COL); }

/* The direct convolution (conv2d_direct.c) and the Winograd one (conv2d_winograd.c) fuse
 * their multiply-adds where the target has FMA: their AVX2 variants compute what a native
 * build does on an AVX2 machine, their generic variants (compiled for SSE2 in a portable
 * build) round the products separately. The two agree to float rounding (sums of 40k
 * products here: 1e-4 relative), not bit for bit (ARCHITECTURE.md §13). */
static void fma_variants_agree(nn_conv_algo algo, const char *name) {
  const nn_cpu_level before = nn_cpu_level_get();
  sink a = {0}, b = {0};
  nn_cpu_force(NN_CPU_GENERIC);
  conv_run(&a, algo);
  nn_cpu_force(NN_CPU_AVX2);
  conv_run(&b, algo);
  assert_int_equal(a.len, b.len);
  const float *fa = (const float *)(const void *)a.p, *fb = (const float *)(const void *)b.p;
  double worst = 0;
  for (size_t i = 0; i < a.len / sizeof *fa; i++) {
    const double d = fabs((double)fa[i] - (double)fb[i]) / (1.0 + fabs((double)fa[i]));
    if (d > worst) worst = d;
  }
  if (worst > 1e-4) fail_msg("%s convolution: the generic and AVX2 variants differ by %g (relative)", name, worst);
  free(a.p), free(b.p);
  nn_cpu_force(before);
}

static void test_conv_direct_variants(void **state) {
  (void)state;
  fma_variants_agree(NN_CONV_DIRECT, "direct");
}

static void test_conv_winograd_variants(void **state) {
  (void)state;
  fma_variants_agree(NN_CONV_WINOGRAD, "winograd");
}

/* ---- generic == AVX2, bit for bit ------------------------------------------------------- */

typedef struct {
  const char *name;
  void (*run)(sink *s);
} kcase;

static const kcase cases[] = {
    {"activations", case_activations},
    {"pool", case_pool},
    {"dense", case_dense},
    {"batchnorm", case_batchnorm},
    {"groupnorm", case_groupnorm},
    {"conv2d im2col", case_conv_im2col},
};

static void test_variants_bitwise(void **state) {
  (void)state;
  const nn_cpu_level before = nn_cpu_level_get();
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    sink a = {0}, b = {0};
    nn_cpu_force(NN_CPU_GENERIC);
    cases[k].run(&a);
    nn_cpu_force(NN_CPU_AVX2);
    cases[k].run(&b);
    assert_true(a.len > 0);
    assert_int_equal(a.len, b.len);
    size_t first = a.len;
    for (size_t i = 0; i < a.len && first == a.len; i++)
      if (a.p[i] != b.p[i]) first = i;
    if (first != a.len) fail_msg("%s: the generic and %s variants differ at output byte %zu of %zu", cases[k].name,
                                 nn_cpu_level_name(nn_cpu_level_get()), first, a.len);
    free(a.p), free(b.p);
  }
  nn_cpu_force(before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_level_follows_env),
      cmocka_unit_test(test_parse_and_force),
      cmocka_unit_test(test_variants_bitwise),
      cmocka_unit_test(test_conv_direct_variants),
      cmocka_unit_test(test_conv_winograd_variants),
  };
  printf("test_dispatch: this CPU and build run up to %s\n", nn_cpu_level_name(nn_cpu_detect()));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
