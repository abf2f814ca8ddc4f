/* Exporters (ARCHITECTURE.md §10), checked without Python:
 * - the protobuf encoder: varint edges (0, 127, 128, 2^63, negative int64 as 10 bytes),
 *   floats, nested messages decode back; truncated input is rejected;
 * - ONNX of every preset and of a spec with every layer kind passes the structural
 *   validator (tests/support/export_check), with the expected op sequence, input/output
 *   dims, and initializers bitwise equal to the model's tensors;
 * - Keras of every preset passes the validator (every variable where Keras expects it, with
 *   the shape Keras computes); kernels are transposed as Keras lays them out (conv
 *   [kh,kw,in,out]; dense after Flatten in channels-last feature order);
 * - both files are byte-stable: the same model gives the same bytes, through the file API too;
 * - refusals (batchnorm without running statistics) name the layer and leave the file alone;
 * - the validators reject damaged files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "export/export.h"
#include "export/protobuf.h"
#include "cli_run.h"
#include "export_check.h"
#include "model/model.h"
#include "nn_test.h"
#include "normnet.h"

/* A model with random parameters and running statistics (variances positive). */
static nn_model *build(const char *text, uint64_t seed) {
  nn_error err = {0};
  nn_spec *s = NULL;
  nn_model *m = NULL;
  if (nn_spec_parse(text, "export.spec", &s, &err) || nn_model_create(s, &m, &err)) fail_msg("%s", err.msg);
  nn_spec_free(s);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_model_init(m, NN_INIT_XAVIER_UNIFORM, &rng);
  float *p = nn_model_params(m), *st = nn_model_state(m);
  for (size_t i = 0; i < nn_model_param_count(m); i++) p[i] = (float)nn_rng_normal(&rng) * 0.3f;
  for (size_t i = 0; i < nn_model_state_count(m); i++) st[i] = 0.1f + (float)fabs(nn_rng_normal(&rng));
  return m;
}

static nn_model *preset_model(const char *name, uint64_t seed) {
  const nn_preset *p = nn_preset_find(name);
  assert_non_null(p);
  return build(p->spec, seed);
}

/* ---- protobuf ------------------------------------------------------------------------- */

static void test_protobuf_roundtrip(void **state) {
  (void)state;
  const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, (uint64_t)1 << 63, UINT64_MAX};
  nn_pb b = {0}, inner = {0};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) nn_pb_varint(&b, (int)i + 1, vals[i]);
  nn_pb_int64(&b, 20, -1);
  nn_pb_float(&b, 21, -1.5f);
  nn_pb_string(&inner, 1, "abc");
  nn_pb_message(&b, 2047, &inner);
  nn_pb empty = {0};
  nn_pb_message(&b, 22, &empty);
  assert_false(b.oom);
  /* canonical encodings of a few */
  assert_memory_equal(b.buf, "\x08\x00\x10\x01\x18\x7f\x20\x80\x01", 9);

  nn_pb_reader r = {b.buf, b.buf + b.len};
  nn_pb_field f;
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    assert_int_equal(nn_pb_next(&r, &f), 1);
    assert_int_equal(f.field, (int)i + 1);
    assert_int_equal(f.wire, NN_PB_VARINT);
    assert_true(f.v == vals[i]);
  }
  const unsigned char *neg = r.p;
  assert_int_equal(nn_pb_next(&r, &f), 1);
  assert_int_equal(r.p - neg, 2 + 10); /* key (2 bytes for field 20) + 10-byte varint */
  assert_true((int64_t)f.v == -1);
  assert_int_equal(nn_pb_next(&r, &f), 1);
  assert_int_equal(f.wire, NN_PB_I32);
  assert_true(nn_pb_f32_of((uint32_t)f.v) == -1.5f);
  assert_int_equal(nn_pb_next(&r, &f), 1);
  assert_int_equal(f.field, 2047);
  assert_int_equal(f.len, 5);
  nn_pb_reader ri = {f.data, f.data + f.len};
  nn_pb_field g;
  assert_int_equal(nn_pb_next(&ri, &g), 1);
  assert_int_equal(g.len, 3);
  assert_memory_equal(g.data, "abc", 3);
  assert_int_equal(nn_pb_next(&ri, &g), 0);
  assert_int_equal(nn_pb_next(&r, &f), 1);
  assert_int_equal(f.len, 0);
  assert_int_equal(nn_pb_next(&r, &f), 0);

  /* every truncation of the last length-delimited field is rejected, never over-read */
  for (size_t cut = 1; cut < 5; cut++) {
    nn_pb_reader t = {b.buf + b.len - 2 - 7 - cut + 1, b.buf + b.len - 2 - cut};
    int rc;
    while ((rc = nn_pb_next(&t, &f)) == 1) {
    }
    assert_int_equal(rc, -1);
  }
  const unsigned char bad_wire[] = {0x0b, 0x00}, zero_field[] = {0x00, 0x01}, long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  nn_pb_reader t1 = {bad_wire, bad_wire + 2}, t2 = {zero_field, zero_field + 2}, t3 = {long_varint, long_varint + 11};
  assert_int_equal(nn_pb_next(&t1, &f), -1);
  assert_int_equal(nn_pb_next(&t2, &f), -1);
  assert_int_equal(nn_pb_next(&t3, &f), -1);
  nn_pb_free(&b);
  nn_pb_free(&inner);
}

/* ---- ONNX ----------------------------------------------------------------------------- */

static void onnx_bytes(const nn_model *m, nn_input_norm norm, unsigned char **b, size_t *n) {
  nn_error err = {0};
  if (nn_export_onnx_bytes(m, norm, b, n, &err)) fail_msg("%s", err.msg);
}

static void expect_initializer(const unsigned char *b, size_t n, const char *name, const float *want, size_t count) {
  float *got = NULL;
  int64_t dims[8];
  int nd = 0;
  assert_int_equal(xc_onnx_floats(b, n, name, &got, dims, &nd), 0);
  size_t c = 1;
  for (int i = 0; i < nd; i++) c *= (size_t)dims[i];
  assert_int_equal(c, count);
  assert_memory_equal(got, want, count * sizeof *want);
  free(got);
}

static void test_onnx_presets(void **state) {
  (void)state;
  static const struct {
    const char *preset, *ops, *input;
  } cases[] = {
      {"lenet",
       "Sub Div Conv BatchNormalization Sigmoid AveragePool Conv BatchNormalization Sigmoid AveragePool Flatten Gemm "
       "BatchNormalization Sigmoid Gemm BatchNormalization Sigmoid Gemm",
       "N,1,28,28"},
      {"mlp", "Gemm BatchNormalization Relu Gemm BatchNormalization Relu Gemm BatchNormalization Relu Gemm", "N,784"},
      {"cnn",
       "Conv BatchNormalization Relu MaxPool Conv BatchNormalization Relu MaxPool Flatten Gemm BatchNormalization Relu "
       "Gemm",
       "N,1,28,28"},
      {"cifar-cnn",
       "Conv BatchNormalization Relu MaxPool Conv BatchNormalization Relu MaxPool Flatten Gemm BatchNormalization Relu "
       "Gemm",
       "N,3,32,32"},
      {"cifar-gap", "Conv BatchNormalization Relu GlobalAveragePool Flatten Gemm", "N,3,32,32"},
  };
  assert_int_equal(nn_preset_count(), (int)(sizeof cases / sizeof cases[0]));
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nn_model *m = preset_model(cases[i].preset, 10 + i);
    const nn_preset *p = nn_preset_find(cases[i].preset);
    unsigned char *b;
    size_t n;
    onnx_bytes(m, p->input_norm, &b, &n);
    xc_onnx s;
    char why[256];
    if (xc_onnx_check(b, n, &s, why, sizeof why)) fail_msg("%s: %s", cases[i].preset, why);
    assert_string_equal(s.ops, cases[i].ops);
    assert_string_equal(s.input, cases[i].input);
    assert_string_equal(s.output, "N,10");
    assert_int_equal(s.opset, 17);
    assert_string_equal(s.producer, "normnet");
    assert_string_equal(s.producer_version, nn_version()); /* onnx.checker and Netron show it */
    /* every tensor of the model is an initializer with its exact bits */
    for (int t = 0; t < nn_model_num_tensors(m); t++) {
      nn_tensor_view v;
      nn_model_tensor(m, t, &v);
      if (v.data) expect_initializer(b, n, v.name, v.data, v.count);
    }
    free(b);
    nn_model_free(m);
  }
}


static void test_onnx_every_kind(void **state) {
  (void)state;
  nn_model *m = build(xc_every_kind, 7);
  unsigned char *b;
  size_t n;
  onnx_bytes(m, (nn_input_norm){0.25f, 2.0f}, &b, &n);
  xc_onnx s;
  char why[256];
  if (xc_onnx_check(b, n, &s, why, sizeof why)) fail_msg("%s", why);
  assert_string_equal(s.ops,
                      "Sub Div Conv Reshape InstanceNormalization Reshape Mul Add Tanh Conv InstanceNormalization Relu "
                      "AveragePool BatchNormalization LayerNormalization BatchNormalization Sigmoid MaxPool Flatten "
                      "BatchNormalization Gemm LayerNormalization Reshape InstanceNormalization Reshape Mul Add Gemm");
  assert_string_equal(s.output, "N,5");
  free(b);
  nn_model_free(m);
}

/* ---- Keras ---------------------------------------------------------------------------- */

static void keras_bytes(const nn_model *m, nn_input_norm norm, unsigned char **b, size_t *n) {
  nn_error err = {0};
  if (nn_export_keras_bytes(m, norm, b, n, &err)) fail_msg("%s", err.msg);
}

static void test_keras_presets(void **state) {
  (void)state;
  static const struct {
    const char *preset, *classes;
  } cases[] = {
      {"lenet",
       "InputLayer Rescaling Conv2D BatchNormalization Activation AveragePooling2D Conv2D BatchNormalization Activation "
       "AveragePooling2D Flatten Dense BatchNormalization Activation Dense BatchNormalization Activation Dense "
       "Activation"},
      {"mlp",
       "InputLayer Dense BatchNormalization Activation Dense BatchNormalization Activation Dense BatchNormalization "
       "Activation Dense Activation"},
      {"cnn",
       "InputLayer Conv2D BatchNormalization Activation MaxPooling2D Conv2D BatchNormalization Activation MaxPooling2D "
       "Flatten Dense BatchNormalization Activation Dense Activation"},
      {"cifar-cnn",
       "InputLayer Conv2D BatchNormalization Activation MaxPooling2D Conv2D BatchNormalization Activation MaxPooling2D "
       "Flatten Dense BatchNormalization Activation Dense Activation"},
      {"cifar-gap", "InputLayer Conv2D BatchNormalization Activation GlobalAveragePooling2D Dense Activation"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nn_model *m = preset_model(cases[i].preset, 20 + i);
    unsigned char *b;
    size_t n;
    keras_bytes(m, nn_preset_find(cases[i].preset)->input_norm, &b, &n);
    xc_keras s;
    char why[256];
    if (xc_keras_check(b, n, &s, why, sizeof why)) fail_msg("%s: %s", cases[i].preset, why);
    assert_string_equal(s.classes, cases[i].classes);
    /* one Keras variable per model tensor (num_batches_tracked has none) */
    int tensors = 0;
    for (int t = 0; t < nn_model_num_tensors(m); t++) {
      nn_tensor_view v;
      nn_model_tensor(m, t, &v);
      tensors += v.data != NULL;
    }
    assert_int_equal(s.nvars, tensors);
    free(b);
    nn_model_free(m);
  }
}

/* cnn: conv kernels as [kh,kw,in,out]; the dense after Flatten reads NHWC features; BN
 * variables in Keras's order gamma, beta, moving_mean, moving_variance. */
static void test_keras_layouts(void **state) {
  (void)state;
  nn_model *m = preset_model("cnn", 31);
  unsigned char *b;
  size_t n;
  keras_bytes(m, (nn_input_norm){0, 1}, &b, &n);
  float *k = NULL;
  int dims[8], nd;
  const nn_layer *conv = &m->layers[4], *dense = &m->layers[9], *bn = &m->layers[1];
  assert_int_equal(conv->kind, NN_LAYER_CONV2D);
  assert_int_equal(dense->kind, NN_LAYER_DENSE);
  assert_int_equal(xc_keras_var(b, n, "conv2d_1", 0, &k, dims, &nd), 0);
  assert_int_equal(nd, 4);
  const int O = 64, I = 32, K = 3;
  assert_int_equal(dims[0], K), assert_int_equal(dims[2], I), assert_int_equal(dims[3], O);
  for (int o = 0; o < O; o += 7)
    for (int i = 0; i < I; i += 5)
      for (int y = 0; y < K; y++)
        for (int x = 0; x < K; x++)
          assert_true(k[((y * K + x) * I + i) * O + o] == conv->p[((o * I + i) * K + y) * K + x]);
  free(k);
  /* dense after Flatten of 64x5x5 */
  const int C = dense->in.c == 1600 ? 64 : -1, H = 5, W = 5, U = 64;
  assert_int_equal(C, 64);
  assert_int_equal(xc_keras_var(b, n, "dense", 0, &k, dims, &nd), 0);
  assert_int_equal(nd, 2), assert_int_equal(dims[0], C * H * W), assert_int_equal(dims[1], U);
  for (int c = 0; c < C; c += 3)
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++)
        for (int u = 0; u < U; u += 9)
          assert_true(k[((h * W + w) * C + c) * U + u] == dense->p[(size_t)u * C * H * W + (size_t)c * H * W + h * W + w]);
  free(k);
  for (int v = 0; v < 4; v++) {
    assert_int_equal(xc_keras_var(b, n, "batch_normalization", v, &k, dims, &nd), 0);
    const float *want = v < 2 ? bn->p + bn->param[v].offset : bn->st + bn->state[v - 2].offset;
    assert_memory_equal(k, want, 32 * sizeof *k);
    free(k);
  }
  free(b);
  nn_model_free(m);
}

static void test_keras_every_kind(void **state) {
  (void)state;
  nn_model *m = build(xc_every_kind, 8);
  unsigned char *b;
  size_t n;
  keras_bytes(m, (nn_input_norm){0.25f, 2.0f}, &b, &n);
  xc_keras s;
  char why[256];
  if (xc_keras_check(b, n, &s, why, sizeof why)) fail_msg("%s", why);
  assert_string_equal(s.classes,
                      "InputLayer Rescaling ZeroPadding2D Conv2D GroupNormalization Activation Conv2D "
                      "GroupNormalization Activation AveragePooling2D BatchNormalization LayerNormalization "
                      "BatchNormalization Activation MaxPooling2D Dropout Flatten BatchNormalization Dense "
                      "LayerNormalization GroupNormalization Dense Activation");
  free(b);
  nn_model_free(m);
}

/* ---- byte stability, files, refusals, validators failing ------------------------------- */

static void test_byte_stable_and_files(void **state) {
  const char *dir = *state;
  char p1[512], p2[512];
  for (int keras = 0; keras < 2; keras++) {
    nn_model *a = preset_model("lenet", 5), *c = preset_model("lenet", 5);
    nn_input_norm norm = {0.5f, 0.5f};
    unsigned char *b1, *b2;
    size_t n1, n2;
    if (keras) keras_bytes(a, norm, &b1, &n1), keras_bytes(c, norm, &b2, &n2);
    else onnx_bytes(a, norm, &b1, &n1), onnx_bytes(c, norm, &b2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    snprintf(p1, sizeof p1, "%s/m1.%s", dir, keras ? "keras" : "onnx");
    snprintf(p2, sizeof p2, "%s/m2.%s", dir, keras ? "keras" : "onnx");
    nn_error err = {0};
    assert_int_equal(keras ? nn_export_keras(a, norm, p1, &err) : nn_export_onnx(a, norm, p1, &err), NN_OK);
    assert_int_equal(keras ? nn_export_keras(c, norm, p2, &err) : nn_export_onnx(c, norm, p2, &err), NN_OK);
    size_t f1, f2;
    unsigned char *d1 = tu_read_file(p1, &f1), *d2 = tu_read_file(p2, &f2);
    assert_non_null(d1), assert_non_null(d2);
    assert_int_equal(f1, n1), assert_int_equal(f2, n1);
    assert_memory_equal(d1, b1, n1);
    assert_memory_equal(d2, b1, n1);
    /* a different weight changes the bytes */
    nn_model_params(c)[0] += 1.0f;
    free(b2);
    if (keras) keras_bytes(c, norm, &b2, &n2);
    else onnx_bytes(c, norm, &b2, &n2);
    assert_true(n1 != n2 || memcmp(b1, b2, n1) != 0);
    free(b1), free(b2), free(d1), free(d2);
    nn_model_free(a), nn_model_free(c);
  }
}

static void test_refusals(void **state) {
  const char *dir = *state;
  nn_model *m = build("input shape=6\ndense units=4\nbatchnorm track_running_stats=0\ndense units=2\n", 3);
  char path[512];
  snprintf(path, sizeof path, "%s/keep.onnx", dir);
  FILE *f = fopen(path, "wb");
  fputs("previous", f);
  fclose(f);
  for (int keras = 0; keras < 2; keras++) {
    nn_error err = {0};
    nn_status st = keras ? nn_export_keras(m, (nn_input_norm){0, 1}, path, &err)
                         : nn_export_onnx(m, (nn_input_norm){0, 1}, path, &err);
    assert_int_equal(st, NN_ERR_ARG);
    assert_non_null(strstr(err.msg, "keep.onnx"));
    assert_non_null(strstr(err.msg, "layer 1 (batchnorm, line 3)"));
    assert_non_null(strstr(err.msg, "track_running_stats=0"));
    size_t n;
    unsigned char *d = tu_read_file(path, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(d, "previous", 8);
    free(d);
  }
  nn_error err = {0};
  assert_int_equal(nn_export_onnx(m, (nn_input_norm){0, 0}, path, &err), NN_ERR_ARG);
  nn_model_free(m);
}

static void test_validators_reject_damage(void **state) {
  (void)state;
  nn_model *m = preset_model("mlp", 9);
  unsigned char *b;
  size_t n;
  char why[256];
  xc_onnx so;
  onnx_bytes(m, (nn_input_norm){0, 1}, &b, &n);
  assert_int_equal(xc_onnx_check(b, n - 1, &so, why, sizeof why), -1);
  assert_int_equal(xc_onnx_check(b, n / 2, &so, why, sizeof why), -1);
  /* rename the graph output so that nothing produces it */
  unsigned char *hit = NULL;
  for (size_t i = 0; i + 6 <= n; i++)
    if (!memcmp(b + i, "logits", 6)) hit = b + i;
  assert_non_null(hit);
  hit[0] = 'L';
  assert_int_equal(xc_onnx_check(b, n, &so, why, sizeof why), -1);
  assert_non_null(strstr(why, "logits"));
  free(b);

  xc_keras sk;
  keras_bytes(m, (nn_input_norm){0, 1}, &b, &n);
  assert_int_equal(xc_keras_check(b, n - 10, &sk, why, sizeof why), -1);
  /* a dense with one unit fewer than its stored kernel */
  unsigned char *u = NULL;
  for (size_t i = 0; i + 12 <= n; i++)
    if (!memcmp(b + i, "\"units\":128", 11)) u = b + i;
  assert_non_null(u);
  memcpy(u, "\"units\":127", 11);
  assert_int_equal(xc_keras_check(b, n, &sk, why, sizeof why), -1);
  free(b);
  nn_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_protobuf_roundtrip),
      cmocka_unit_test(test_onnx_presets),
      cmocka_unit_test(test_onnx_every_kind),
      cmocka_unit_test(test_keras_presets),
      cmocka_unit_test(test_keras_layouts),
      cmocka_unit_test(test_keras_every_kind),
      cmocka_unit_test(test_byte_stable_and_files),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_validators_reject_damage),
  };
  return cmocka_run_group_tests(tests, tu_setup_tempdir, tu_teardown_tempdir);
}
