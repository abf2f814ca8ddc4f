/* Keras import (issue 13 part 2):
 * - round trip: every preset and a spec with every layer kind, exported to .keras and read
 *   back into a model of the same spec, gives bitwise the same tensors (running statistics
 *   included) and the input transform (Keras's Rescaling); the bare model.weights.h5 of the archive loads the same way by Keras's
 *   automatic layer names;
 * - real Keras files (tests/fixtures/keras_small_*.keras and the legacy .h5 of the same
 *   models, trained and saved by Keras 3 with gen_keras_fixtures.py): imported into the equivalent spec, normnet's eval-mode logits
 *   equal Keras's within 1e-5 (an activation inside Conv2D, padding "same", a Dense after
 *   Flatten in channels-last order);
 * - refusals name the file and the layer: wrong architecture, no spec, a PyTorch pickle or
 *   zip (with the conversion command), a Keras file where only safetensors can be read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <unistd.h>
#include <zip.h>

#include "base/rng.h"
#include "fixture.h"
#include "export_check.h"
#include "io/keras_import.h"
#include "model/model.h"
#include "nn_test.h"
#include "normnet.h"

static nn_spec *spec_of(const char *text) {
  nn_spec *s = NULL;
  nn_error err = {0};
  if (nn_spec_parse(text, "import.spec", &s, &err)) fail_msg("%s", err.msg);
  return s;
}

static nn_model *random_model(const nn_spec *s, uint64_t seed) {
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_model_create(s, &m, &err)) fail_msg("%s", err.msg);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  float *p = nn_model_params(m), *st = nn_model_state(m);
  for (size_t i = 0; i < nn_model_param_count(m); i++) p[i] = (float)nn_rng_normal(&rng);
  for (size_t i = 0; i < nn_model_state_count(m); i++) st[i] = 0.1f + (float)fabs(nn_rng_normal(&rng));
  return m;
}

static void expect_same_tensors(nn_model *a, nn_model *b) {
  assert_int_equal(nn_model_num_tensors(a), nn_model_num_tensors(b));
  for (int t = 0; t < nn_model_num_tensors(a); t++) {
    nn_tensor_view va, vb;
    nn_model_tensor(a, t, &va);
    nn_model_tensor(b, t, &vb);
    assert_string_equal(va.name, vb.name);
    if (!va.data) continue;
    assert_int_equal(va.count, vb.count);
    if (memcmp(va.data, vb.data, va.count * sizeof(float))) fail_msg("tensor %s differs after the round trip", va.name);
  }
}


/* Eval-mode outputs of a and b on the same random inputs: bit for bit (the same operations on
 * the same weights). */
static void expect_same_outputs(nn_model *a, nn_model *b, uint64_t seed) {
  const nn_layer *L = &a->layers[0];
  const size_t n = 3, per = (size_t)L->in.c * (L->in.rank == 3 ? (size_t)L->in.h * (size_t)L->in.w : 1);
  float *x = malloc(n * per * sizeof *x);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  for (size_t i = 0; i < n * per; i++) x[i] = (float)nn_rng_normal(&rng);
  const float *ya = NULL, *yb = NULL;
  nn_error err = {0};
  if (nn_model_forward(a, x, NULL, (int)n, NN_MODE_EVAL, NULL, NULL, &ya, &err)) fail_msg("%s", err.msg);
  const int out = a->layers[a->nlayers - 1].out.c;
  float *keep = malloc(n * (size_t)out * sizeof *keep);
  memcpy(keep, ya, n * (size_t)out * sizeof *keep);
  if (nn_model_forward(b, x, NULL, (int)n, NN_MODE_EVAL, NULL, NULL, &yb, &err)) fail_msg("%s", err.msg);
  assert_int_equal(b->layers[b->nlayers - 1].out.c, out);
  if (memcmp(keep, yb, n * (size_t)out * sizeof *keep)) fail_msg("the imported model's outputs differ");
  free(keep);
  free(x);
}

/* Copy model.weights.h5 out of a .keras archive. */
static void extract_weights(const char *keras, const char *h5) {
  int ze = 0;
  zip_t *za = zip_open(keras, ZIP_RDONLY, &ze);
  assert_non_null(za);
  zip_stat_t st;
  assert_int_equal(zip_stat(za, "model.weights.h5", 0, &st), 0);
  zip_file_t *zf = zip_fopen(za, "model.weights.h5", 0);
  char *buf = malloc(st.size);
  assert_int_equal(zip_fread(zf, buf, st.size), (zip_int64_t)st.size);
  zip_fclose(zf);
  zip_discard(za);
  FILE *f = fopen(h5, "wb");
  assert_int_equal(fwrite(buf, 1, st.size, f), st.size);
  fclose(f);
  free(buf);
}

static void test_round_trip(void **state) {
  const char *dir = *state;
  char path[512], h5[512];
  snprintf(path, sizeof path, "%s/rt.keras", dir);
  snprintf(h5, sizeof h5, "%s/rt.weights.h5", dir);
  for (int i = -1; i < nn_preset_count(); i++) {
    nn_spec *s = spec_of(i < 0 ? xc_every_kind : nn_preset_at(i)->spec);
    nn_model *a = random_model(s, 40 + (uint64_t)i), *b = NULL, *c = NULL;
    nn_error err = {0};
    if (nn_export_keras(a, (nn_input_norm){0.5f, 0.25f}, path, &err)) fail_msg("%s", err.msg);
    if (nn_checkpoint_load(path, s, &b, &err)) fail_msg("%s", err.msg);
    expect_same_tensors(a, b);
    nn_input_norm norm;
    assert_int_equal(nn_model_input_norm(b, &norm), 1); /* the Rescaling layer came back */
    assert_true(norm.mean == 0.5f && norm.std == 0.25f);
    extract_weights(path, h5);
    if (nn_checkpoint_load(h5, s, &c, &err)) fail_msg("%s: %s", h5, err.msg);
    expect_same_tensors(a, c);
    nn_model_free(c);
    /* without the spec: the architecture from the exported config computes the same outputs */
    if (nn_checkpoint_load(path, NULL, &c, &err)) fail_msg("%s without a spec: %s", path, err.msg);
    expect_same_outputs(a, c, 70 + (uint64_t)i);
    assert_int_equal(nn_model_input_norm(c, &norm), 1);
    nn_model_free(a), nn_model_free(b), nn_model_free(c);
    nn_spec_free(s);
  }
}

/* A real Keras file's logits for the fixture's inputs, within 1e-5 of Keras's: with the given
 * spec, or (spec_text NULL) with the architecture read from the file's own config. */
static void real_case(const nn_fixture *fx, const char *name, const char *ext, const char *spec_text, int c, int h,
                      int w) {
  char path[4096], key[64];
  snprintf(path, sizeof path, "%s/keras_%s.%s", getenv("NN_FIXTURES"), name, ext);
  nn_spec *s = spec_text ? spec_of(spec_text) : NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (nn_checkpoint_load(path, s, &m, &err)) fail_msg("%s", err.msg);
  snprintf(key, sizeof key, "%s.x", name);
  size_t n = 5, per = (size_t)c * h * w;
  float *x = fx_floats(fx, key, n * per);
  nn_input_norm norm;
  if (nn_model_input_norm(m, &norm)) /* a Rescaling layer: the transform the data pipeline applies */
    for (size_t i = 0; i < n * per; i++) x[i] = (x[i] - norm.mean) / norm.std;
  const float *logits = NULL;
  assert_int_equal(nn_model_forward(m, x, NULL, (int)n, NN_MODE_EVAL, NULL, NULL, &logits, &err), NN_OK);
  snprintf(key, sizeof key, "%s.logits", name);
  fx_assert_close_fd(key, logits, fx_get(fx, key, NULL), n * 3, 1e-5, 1e-5);
  free(x);
  nn_model_free(m);
  nn_spec_free(s);
}

static void test_real_keras_files(void **state) {
  (void)state;
  nn_fixture *fx = fx_load("keras_real.txt");
  static const char *const ext[2] = {"keras", "h5"}; /* Keras 3's format, and the legacy HDF5 of seed 001 */
  for (int e = 0; e < 2; e++) {
    real_case(fx, "small_mlp", ext[e], "input shape=6\ndense units=5\nbatchnorm convention=keras\nrelu\ndense units=3\n",
              1, 1, 6);
    real_case(fx, "small_cnn", ext[e],
              "input shape=2x6x6\nconv2d filters=4 kernel=3 pad=1\nrelu\nbatchnorm convention=keras\nmaxpool2d "
              "size=2\nflatten\ndense units=3\n",
              2, 6, 6);
    /* without a spec: the architecture from the file's config */
    real_case(fx, "small_mlp", ext[e], NULL, 1, 1, 6);
    real_case(fx, "small_cnn", ext[e], NULL, 2, 6, 6);
    /* as the seeds write models: Rescaling, activations and the final softmax inside layers */
    real_case(fx, "small_seed", ext[e], NULL, 2, 6, 6);
    real_case(fx, "small_seed", ext[e],
              "input shape=2x6x6\nconv2d filters=4 kernel=3 pad=1\nrelu\nbatchnorm convention=keras\navgpool2d "
              "size=2\nflatten\ndropout rate=0.1\ndense units=8\ntanh\nlayernorm eps=1e-3\ndense units=3\n",
              2, 6, 6);
    /* seed 001 §10's functional model: one chain of layers */
    real_case(fx, "small_func", ext[e], NULL, 2, 6, 6);
  }
  fx_free(fx);
  /* padding "same" where it is symmetric: a stride-2 convolution of a 7x7 input (one row and
   * column each side), a 2x2 pool of a 4x4 one (none); BatchNormalization(scale=False) and
   * (center=False): gamma 1, beta 0 kept fixed (they were refused: "center and scale differ").
   * Each from the file's config and as a spec. */
  static const struct {
    const char *fixture, *name, *spec;
    int c, hw;
  } more[] = {
      {"keras_padding.txt", "small_strided",
       "input shape=2x7x7\nconv2d filters=4 kernel=3 stride=2 pad=1\nrelu\nbatchnorm convention=keras\nmaxpool2d "
       "size=2\nflatten\ndense units=3\n",
       2, 7},
      {"keras_bn_half.txt", "small_bn_half",
       "input shape=2x6x6\nconv2d filters=4 kernel=3 pad=1\nbatchnorm convention=keras scale=0\nrelu\nmaxpool2d "
       "size=2\nflatten\ndense units=8\nbatchnorm convention=keras center=0\ntanh\ndense units=3\n",
       2, 6},
  };
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
    fx = fx_load(more[i].fixture);
    for (int e = 0; e < 2; e++) {
      real_case(fx, more[i].name, ext[e], NULL, more[i].c, more[i].hw, more[i].hw);
      real_case(fx, more[i].name, ext[e], more[i].spec, more[i].c, more[i].hw, more[i].hw);
    }
    fx_free(fx);
  }
}

static void expect_load_error(const char *path, const char *spec_text, nn_status code, const char *n1, const char *n2) {
  nn_spec *s = spec_text ? spec_of(spec_text) : NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  nn_status st = nn_checkpoint_load(path, s, &m, &err);
  if (st != code || !strstr(err.msg, n1) || (n2 && !strstr(err.msg, n2)))
    fail_msg("%s: status %d, message '%s'", path, st, err.msg);
  assert_null(m);
  nn_spec_free(s);
}

static void test_refusals(void **state) {
  const char *dir = *state;
  char path[4096], pt[512], zpt[512];
  snprintf(path, sizeof path, "%s/keras_small_mlp.keras", getenv("NN_FIXTURES"));
  /* another architecture: the first layer whose shape differs is named */
  expect_load_error(path, "input shape=6\ndense units=4\nbatchnorm convention=keras\nrelu\ndense units=3\n", NN_ERR_SHAPE,
                    "layer 0 (dense, line 2)", "units");
  expect_load_error(path, "input shape=6\ndense units=5\nbatchnorm\nrelu\ndense units=3\n", NN_ERR_SHAPE,
                    "layer 1 (batchnorm, line 3)", "epsilon");
  expect_load_error(path, "input shape=6\ndense units=5\nrelu\ndense units=3\n", NN_ERR_SHAPE, "3 Keras layers", "2 layers");
  /* a weights-only file has no architecture: the spec must be given */
  char wpath[512];
  snprintf(wpath, sizeof wpath, "%s/only.weights.h5", dir);
  extract_weights(path, wpath);
  expect_load_error(wpath, NULL, NN_ERR_FORMAT, "Keras", "--model");
  snprintf(path, sizeof path, "%s/keras_small_mlp.h5", getenv("NN_FIXTURES"));
  expect_load_error(path, "input shape=6\ndense units=5\nrelu\ndense units=3\n", NN_ERR_SHAPE, "3 legacy Keras layers",
                    "2 layers");
  expect_load_error(path, "input shape=6\ndense units=4\nbatchnorm convention=keras\nrelu\ndense units=3\n", NN_ERR_SHAPE,
                    "layer 0 (dense, line 2)", "6x5");
  /* a zip bomb: weights that inflate 80 MB of zeros from a few hundred KB are refused before
   * anything is allocated for them */
  char bomb[512];
  snprintf(bomb, sizeof bomb, "%s/bomb.keras", dir);
  {
    const size_t zeros = (size_t)80 << 20;
    char *z = calloc(zeros, 1);
    assert_non_null(z);
    static const char cfg1[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", "
        "\"config\": {\"name\": \"in\", \"batch_shape\": [null, 4]}}, {\"class_name\": \"Dense\", "
        "\"config\": {\"name\": \"d\", \"units\": 3}}]}}";
    int ze = 0;
    zip_t *zb = zip_open(bomb, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    assert_non_null(zb);
    assert_true(zip_file_add(zb, "config.json", zip_source_buffer(zb, cfg1, strlen(cfg1), 0), 0) >= 0);
    assert_true(zip_file_add(zb, "model.weights.h5", zip_source_buffer(zb, z, zeros, 0), 0) >= 0);
    assert_int_equal(zip_close(zb), 0);
    free(z);
  }
  expect_load_error(bomb, NULL, NN_ERR_FORMAT, "model.weights.h5 would inflate", "20 times its compressed size");
  /* PyTorch: a legacy pickle and a zip with data.pkl */
  snprintf(pt, sizeof pt, "%s/model.pt", dir);
  static const char pickle[] = "\x80\x02}q\x00X\x01\x00\x00\x00aq\x01.";
  FILE *f = fopen(pt, "wb");
  assert_int_equal(fwrite(pickle, 1, sizeof pickle - 1, f), sizeof pickle - 1);
  fclose(f);
  expect_load_error(pt, NULL, NN_ERR_FORMAT, "PyTorch", "tools/torch_interop.py from-torch");
  /* a safetensors file whose header length begins like a pickle's mark (80 02..05: 640, 896,
   * 1152, 1408 bytes, and 640 + 65536) is read as what it is */
  static const size_t lens[] = {640, 896, 1152, 1408, 640 + 65536};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    char st[512], *hdr = malloc(lens[i] + 1), *val = NULL;
    assert_non_null(hdr);
    int used = snprintf(hdr, lens[i] + 1,
                        "{\"__metadata__\":{\"normnet.spec\":\"x\"},\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
                        "\"data_offsets\":[0,4]}}");
    memset(hdr + used, ' ', lens[i] - (size_t)used); /* padded with spaces, as safetensors allows */
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)lens[i] >> (8 * b));
    snprintf(st, sizeof st, "%s/header%zu.safetensors", dir, lens[i]);
    FILE *sf = fopen(st, "wb");
    assert_non_null(sf);
    const float one = 1.0f;
    assert_int_equal(fwrite(len8, 1, 8, sf), 8);
    assert_int_equal(fwrite(hdr, 1, lens[i], sf), lens[i]);
    assert_int_equal(fwrite(&one, sizeof one, 1, sf), 1);
    assert_int_equal(fclose(sf), 0);
    free(hdr);
    nn_error serr = {0};
    if (nn_checkpoint_meta(st, "normnet.spec", &val, &serr)) fail_msg("header of %zu bytes: %s", lens[i], serr.msg);
    assert_string_equal(val, "x");
    free(val);
  }
  snprintf(zpt, sizeof zpt, "%s/model2.pt", dir);
  int ze = 0;
  zip_t *za = zip_open(zpt, ZIP_CREATE | ZIP_TRUNCATE, &ze);
  static const char pkl[] = "\x80\x02}q\x00.";
  zip_file_add(za, "model2/data.pkl", zip_source_buffer(za, pkl, sizeof pkl - 1, 0), 0);
  assert_int_equal(zip_close(za), 0);
  expect_load_error(zpt, "input shape=6\ndense units=3\n", NN_ERR_FORMAT, "PyTorch", "from-torch");
  expect_load_error(zpt, NULL, NN_ERR_FORMAT, "PyTorch", "from-torch");
  /* where only a safetensors file can be read */
  char *v = NULL;
  nn_error err = {0};
  assert_int_equal(nn_checkpoint_meta(pt, "normnet.spec", &v, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "from-torch"));
  assert_int_equal(nn_checkpoint_meta(path, "normnet.spec", &v, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "Keras"));
}

/* nn_checkpoint_load_spec of a .keras archive holding only `config` as its config.json. */
static nn_status config_spec(const char *dir, const char *config, nn_spec **out, nn_error *err) {
  char path[512];
  snprintf(path, sizeof path, "%s/config-only.keras", dir);
  int ze = 0;
  zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
  assert_non_null(za);
  assert_true(zip_file_add(za, "config.json", zip_source_buffer(za, config, strlen(config), 0), 0) >= 0);
  assert_int_equal(zip_close(za), 0);
  return nn_checkpoint_load_spec(path, out, err);
}

/* The architecture from a config: a functional model must be one chain (a branch is
 * refused); a layer whose numbers would not be Keras's is refused by name; a softmax before
 * the last layer too. */
static void test_config_architectures(void **state) {
  const char *dir = *state;
  static const char head[] =
      "{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", "
      "\"config\": {\"name\": \"in\", \"batch_shape\": [null, 4]}}, {\"class_name\": \"Dense\", "
      "\"config\": {\"name\": \"a\", \"units\": 3}, \"inbound_nodes\": [{\"args\": [{\"config\": "
      "{\"keras_history\": [\"in\", 0, 0]}}]}]}, {\"class_name\": \"Dense\", \"config\": {\"name\": "
      "\"b\", \"units\": 2}, \"inbound_nodes\": [{\"args\": [{\"config\": {\"keras_history\": [\"";
  static const char tail[] = "\", 0, 0]}}]}]}], \"input_layers\": [[\"in\", 0, 0]], \"output_layers\": [[\"b\", 0, 0]]}}";
  char cfg[2048];
  nn_spec *sp = NULL;
  nn_error err = {0};
  snprintf(cfg, sizeof cfg, "%sa%s", head, tail); /* in -> a -> b */
  if (config_spec(dir, cfg, &sp, &err)) fail_msg("a chain: %s", err.msg);
  char *text = nn_spec_to_text(sp);
  assert_non_null(strstr(text, "dense units=3"));
  assert_non_null(strstr(text, "dense units=2"));
  free(text);
  nn_spec_free(sp);
  snprintf(cfg, sizeof cfg, "%sin%s", head, tail); /* b takes the input, not a: a branch */
  assert_int_equal(config_spec(dir, cfg, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "one chain (class Functional)"));
  /* padding "same" that pads more after than before (TensorFlow's split of an odd total) is
   * refused, saying so; where it pads nothing or alike on each side it is normnet's padding */
  static const char same_pad[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, %d, %d, 1]}}, {\"class_name\": \"Conv2D\", \"config\": {\"name\": "
      "\"c\", \"filters\": 2, \"kernel_size\": [%d, %d], \"strides\": [%d, %d], \"padding\": \"same\"}}, "
      "{\"class_name\": \"MaxPooling2D\", \"config\": {\"name\": \"p\", \"pool_size\": [2, 2], \"padding\": "
      "\"same\"}}]}}";
  static const struct {
    int h, w, k, s;
    const char *spec, *why;
  } same_cases[] = {
      {9, 9, 3, 2, "conv2d filters=2 kernel=3 stride=2 pad=1 bias=1\nmaxpool2d size=2 stride=2\n", NULL},   /* 5x5: pool refused */
      {11, 11, 3, 2, "conv2d filters=2 kernel=3 stride=2 pad=1 bias=1\nmaxpool2d size=2 stride=2\n", NULL}, /* 6x6 */
      {8, 8, 5, 1, "conv2d filters=2 kernel=5 stride=1 pad=2 bias=1\nmaxpool2d size=2 stride=2\n", NULL},
      {8, 8, 3, 2, NULL, "Keras layer 1 'c' (Conv2D): padding 'same' on a 8x8 input with kernel 3, stride 2 pads 1 and 1"},
      {7, 8, 3, 2, NULL, "pads 2 and 1 rows and columns"}, /* 7 rows pad 2, 8 columns 1: not alike */
      {8, 8, 2, 1, NULL, "kernel 2, stride 1 pads 1 and 1"},
  };
  for (size_t i = 0; i < sizeof same_cases / sizeof same_cases[0]; i++) {
    snprintf(cfg, sizeof cfg, same_pad, same_cases[i].h, same_cases[i].w, same_cases[i].k, same_cases[i].k,
             same_cases[i].s, same_cases[i].s);
    nn_status st = config_spec(dir, cfg, &sp, &err);
    if (i == 0) { /* the convolution's 5x5 output: the pool would pad */
      assert_int_equal(st, NN_ERR_FORMAT);
      assert_non_null(strstr(err.msg, "Keras layer 2 'p' (MaxPooling2D): padding 'same' that pads a 5x5 input"));
      continue;
    }
    if (same_cases[i].spec) {
      if (st) fail_msg("same case %zu: %s", i, err.msg);
      text = nn_spec_to_text(sp);
      if (!strstr(text, same_cases[i].spec)) fail_msg("same case %zu: %s", i, text);
      free(text);
      nn_spec_free(sp);
    } else {
      assert_int_equal(st, NN_ERR_FORMAT);
      if (!strstr(err.msg, same_cases[i].why)) fail_msg("same case %zu: %s", i, err.msg);
    }
  }
  /* hostile numbers: a pool stride of 0 (a division by zero in the shape walk), a kernel
   * larger than its input */
  static const char hostile[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 4, 4, 1]}}, {\"class_name\": \"%s\", \"config\": {\"name\": "
      "\"x\", \"filters\": 2, \"kernel_size\": [%d, %d], \"pool_size\": [2, 2], \"strides\": [%d, %d]}}]}}";
  snprintf(cfg, sizeof cfg, hostile, "MaxPooling2D", 3, 3, 0, 0);
  assert_int_equal(config_spec(dir, cfg, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "'x' (MaxPooling2D): a pool or stride below 1"));
  snprintf(cfg, sizeof cfg, hostile, "Conv2D", 5, 5, 1, 1);
  assert_int_equal(config_spec(dir, cfg, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "'x' (Conv2D): a 5x5 kernel on a 4x4 input"));
  /* a value that is there but no integer in range is refused naming its key (strides of
   * 2^40 were read as the default 1); an absent one still takes the default */
  static const char big_stride[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 4, 4, 1]}}, {\"class_name\": \"Conv2D\", \"config\": {\"name\": "
      "\"x\", \"filters\": 2, \"kernel_size\": %s%s}}]}}";
  static const struct {
    const char *kernel, *strides, *needle;
  } bad_ints[] = {{"[3, 3]", ", \"strides\": [1099511627776, 1099511627776]", "'x' (Conv2D): strides is not an integer"},
                  {"[3, 3]", ", \"strides\": [1, 2.5]", "'x' (Conv2D): strides is not an integer"},
                  {"[\"3\", \"3\"]", "", "'x' (Conv2D): kernel_size is not an integer"},
                  {"[3, 3]", "", NULL}};
  for (size_t i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
    snprintf(cfg, sizeof cfg, big_stride, bad_ints[i].kernel, bad_ints[i].strides);
    nn_status st = config_spec(dir, cfg, &sp, &err);
    if (!bad_ints[i].needle) { /* strides absent: 1 */
      if (st) fail_msg("no strides: %s", err.msg);
      text = nn_spec_to_text(sp);
      assert_non_null(strstr(text, "conv2d filters=2 kernel=3 stride=1 pad=0"));
      free(text);
      nn_spec_free(sp);
      continue;
    }
    assert_int_equal(st, NN_ERR_FORMAT);
    if (!strstr(err.msg, bad_ints[i].needle)) fail_msg("case %zu: %s", i, err.msg);
  }
  static const char dilated[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 8, 8, 1]}}, {\"class_name\": \"Conv2D\", \"config\": {\"name\": "
      "\"c\", \"filters\": 2, \"kernel_size\": [3, 3], \"dilation_rate\": [2, 2]}}]}}";
  assert_int_equal(config_spec(dir, dilated, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "Keras layer 1 'c' (Conv2D): dilation"));
  static const char early_softmax[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 4]}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", "
      "\"units\": 3, \"activation\": \"softmax\"}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"e\", "
      "\"units\": 2}}]}}";
  assert_int_equal(config_spec(dir, early_softmax, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "Keras layer 1 'd' (Dense): activation 'softmax', which normnet does not have there"));
  /* seed 001 §13: augmentation prepended as a nested Sequential (Keras's own config.json
   * shape), the identity at inference */
  static const char augmented[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"Sequential\", \"config\": {\"name\": "
      "\"sequential\", \"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"in1\", \"batch_shape\": "
      "[null, 8, 8, 3]}}, {\"class_name\": \"RandomFlip\", \"config\": {\"mode\": \"horizontal\"}}, {\"class_name\": "
      "\"RandomRotation\", \"config\": {\"factor\": 0.1}}]}}, {\"class_name\": \"RandomZoom\", \"config\": {}}, "
      "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 2, \"kernel_size\": [3, 3]}}, "
      "{\"class_name\": \"Flatten\", \"config\": {}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", "
      "\"units\": 3, \"activation\": \"softmax\"}}]}}";
  if (config_spec(dir, augmented, &sp, &err)) fail_msg("augmentation layers: %s", err.msg);
  text = nn_spec_to_text(sp);
  assert_non_null(strstr(text, "input shape=3x8x8\nconv2d filters=2 kernel=3"));
  free(text);
  nn_spec_free(sp);
  /* a nested Sequential that computes something is no identity */
  static const char nested_dense[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 4]}}, {\"class_name\": \"Sequential\", \"config\": {\"name\": "
      "\"inner\", \"layers\": [{\"class_name\": \"Dense\", \"config\": {\"units\": 3}}]}}]}}";
  assert_int_equal(config_spec(dir, nested_dense, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "'inner' (Sequential): a Sequential, which normnet does not have"));
  /* Keras's Fashion-MNIST tutorial: a grey (28, 28) input flattened first is 1x28x28; the
   * same input into a Dense (which Keras applies row by row) is refused, saying how */
  static const char grey2d[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 28, 28]}}, {\"class_name\": \"%s\", \"config\": {\"name\": "
      "\"f\", \"units\": 5}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 3}}]}}";
  snprintf(cfg, sizeof cfg, grey2d, "Flatten");
  if (config_spec(dir, cfg, &sp, &err)) fail_msg("a (28, 28) input: %s", err.msg);
  text = nn_spec_to_text(sp);
  assert_non_null(strstr(text, "input shape=1x28x28\nflatten\ndense units=3"));
  free(text);
  nn_spec_free(sp);
  snprintf(cfg, sizeof cfg, grey2d, "Dense");
  assert_int_equal(config_spec(dir, cfg, &sp, &err), NN_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "a 2-D input (28, 28) that is not flattened first"));
  /* GroupNormalization's groups are runs of features: after Flatten of an image with several
   * pixels and channels Keras's runs (HxWxC) are not normnet's (CxHxW); one channel, or a
   * global pool, flatten alike */
  static const char gn_after[] =
      "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
      "{\"name\": \"in\", \"batch_shape\": [null, 4, 4, %d]}}, {\"class_name\": \"%s\", \"config\": {\"name\": "
      "\"f\"}}, {\"class_name\": \"GroupNormalization\", \"config\": {\"name\": \"g\", \"groups\": 2}}]}}";
  const struct {
    int channels;
    const char *flatten;
    int refused;
  } gn[] = {{2, "Flatten", 1}, {1, "Flatten", 0}, {2, "GlobalAveragePooling2D", 0}};
  for (size_t i = 0; i < sizeof gn / sizeof gn[0]; i++) {
    snprintf(cfg, sizeof cfg, gn_after, gn[i].channels, gn[i].flatten);
    nn_status st = config_spec(dir, cfg, &sp, &err);
    if (!gn[i].refused) {
      if (st) fail_msg("GroupNormalization after %s of %d channels: %s", gn[i].flatten, gn[i].channels, err.msg);
      nn_spec_free(sp);
    } else {
      assert_int_equal(st, NN_ERR_FORMAT);
      assert_non_null(strstr(err.msg, "'g' (GroupNormalization): groups of a flattened image's features"));
    }
  }
}

/* A leading Rescaling: normnet's exports take [0, 1] pixels (lenet's (0.5, 0.5) is
 * Rescaling(2, -1)); Keras's Rescaling(1./255) and (1./127.5, -1) take raw 0-255 pixels (read
 * as [0, 1] inputs, a Rescaling(1./255) divided by 255 twice: a Keras-trained model scored
 * 0.10 against Keras's 0.75). The exporter's own Rescaling (its name says so) is read as
 * written whatever its scale: an input std of 25 came back as raw-pixel (0.002, 0.098). */
static void test_rescaling_input(void **state) {
  const char *dir = *state;
  const struct {
    double scale, offset;
    int raw;
    float mean, std;
  } cases[] = {{2.0, -1.0, 1, 0.5f, 0.5f}, {1.0 / 0.3081, -0.1307 / 0.3081, 1, 0.1307f, 0.3081f}, {1.0 / 255, 0, 1, 0, 1}, {1.0 / 127.5, -1.0, 1, 0.5f, 0.5f}, {1.0 / 25, -0.5 / 25, 0, 0.5f, 25}, {2.0, -1.0, 0, 0.5f, 0.5f}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nn_input_norm n = nn_keras_rescaling_norm(cases[i].scale, cases[i].offset, cases[i].raw);
    if (fabsf(n.mean - cases[i].mean) > 1e-6f || fabsf(n.std - cases[i].std) > 1e-6f)
      fail_msg("Rescaling(%g, %g): (u8/255 - %g) / %g, expected (u8/255 - %g) / %g", cases[i].scale, cases[i].offset,
               n.mean, n.std, cases[i].mean, cases[i].std);
  }
  char path[512];
  snprintf(path, sizeof path, "%s/std25.keras", dir);
  nn_spec *s = spec_of("input shape=1x4x4\nflatten\ndense units=3\n");
  nn_model *a = random_model(s, 9), *b = NULL;
  nn_error err = {0};
  nn_input_norm norm = {0.5f, 25.0f};
  if (nn_export_keras(a, norm, path, &err) || nn_checkpoint_load(path, NULL, &b, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nn_model_input_norm(b, &norm), 1);
  if (fabsf(norm.mean - 0.5f) > 1e-6f || fabsf(norm.std - 25.0f) > 1e-4f)
    fail_msg("an export with input std 25 came back as (%g, %g)", norm.mean, norm.std);
  nn_model_free(b);
  /* a Rescaling that is no usable transform (scale 1e308: std 1e-308) is refused naming the
   * file and the layer (the message named neither) */
  if (nn_export_keras(a, (nn_input_norm){0.5f, 0.5f}, path, &err)) fail_msg("%s", err.msg);
  int ze = 0;
  zip_t *za = zip_open(path, 0, &ze);
  assert_non_null(za);
  zip_stat_t zs;
  assert_int_equal(zip_stat(za, "config.json", 0, &zs), 0);
  char *text = calloc(zs.size + 1, 1);
  zip_file_t *zf = zip_fopen(za, "config.json", 0);
  assert_int_equal(zip_fread(zf, text, zs.size), (zip_int64_t)zs.size);
  zip_fclose(zf);
  json_t *cfg = json_loads(text, 0, NULL), *layers = json_object_get(json_object_get(cfg, "config"), "layers");
  free(text);
  for (size_t i = 0; i < json_array_size(layers); i++)
    if (!strcmp(json_string_value(json_object_get(json_array_get(layers, i), "class_name")), "Rescaling"))
      json_object_set_new(json_object_get(json_array_get(layers, i), "config"), "scale", json_real(1e308));
  text = json_dumps(cfg, JSON_COMPACT);
  json_decref(cfg);
  assert_true(zip_file_replace(za, zip_name_locate(za, "config.json", 0), zip_source_buffer(za, text, strlen(text), 0), 0) == 0);
  assert_int_equal(zip_close(za), 0);
  free(text);
  expect_load_error(path, NULL, NN_ERR_ARG, "std25.keras: Keras layer 1 'normnet_input' (Rescaling): ",
                    "the std must be");
  nn_model_free(a);
  nn_spec_free(s);
}

/* batchnorm scale=0 / center=0 travel as Keras's scale=False / center=False: the export
 * stores only the trained half, the import (with or without the spec) fills the fixed one;
 * a fixed half that is not 1 / 0 has no Keras form and is refused, naming it. */
static void test_bn_half_affine(void **state) {
  const char *dir = *state;
  char path[512];
  snprintf(path, sizeof path, "%s/half.keras", dir);
  nn_spec *s = spec_of(
      "input shape=2x4x4\nconv2d filters=3 kernel=3\nbatchnorm scale=0\nrelu\nflatten\ndense "
      "units=4\nbatchnorm convention=keras center=0\ndense units=2\n");
  nn_model *a = random_model(s, 5), *b = NULL, *c = NULL;
  const nn_layer *bn1 = &a->layers[1], *bn2 = &a->layers[5];
  for (int i = 0; i < 3; i++) nn_param_ptr(bn1, bn1->p, 0)[i] = 1.0f; /* what training keeps */
  for (int i = 0; i < 4; i++) nn_param_ptr(bn2, bn2->p, 1)[i] = 0.0f;
  nn_error err = {0};
  if (nn_export_keras(a, (nn_input_norm){0, 1}, path, &err)) fail_msg("%s", err.msg);
  if (nn_checkpoint_load(path, s, &b, &err) || nn_checkpoint_load(path, NULL, &c, &err)) fail_msg("%s", err.msg);
  expect_same_tensors(a, b);
  expect_same_outputs(a, c, 3);
  char *text = nn_spec_to_text(nn_model_spec(c));
  if (!strstr(text, "affine=1 track_running_stats=1 convention=keras use_global_stats=0 freeze_affine=0 center=1 scale=0") ||
      !strstr(text, "center=0 scale=1"))
    fail_msg("the imported spec lost the fixed halves:\n%s", text);
  free(text);
  nn_layer_info info; /* the fixed half is no trainable parameter: beta's 3, gamma's 4 are */
  nn_model_layer_info(c, 1, &info);
  assert_int_equal(info.trainable, 3);
  nn_model_layer_info(c, 5, &info);
  assert_int_equal(info.trainable, 4);
  nn_param_ptr(bn1, bn1->p, 0)[2] = 0.5f;
  assert_int_equal(nn_export_keras(a, (nn_input_norm){0, 1}, path, &err), NN_ERR_ARG);
  if (!strstr(err.msg, "layer 1 (batchnorm") || !strstr(err.msg, "scale=0 but its gamma[2] is 0.5, not 1"))
    fail_msg("%s", err.msg);
  nn_model_free(a), nn_model_free(b), nn_model_free(c);
  nn_spec_free(s);
}

/* HDF5 refuses to open an in-memory image whose name exists on disk: a file named
 * model.weights.h5 in the working directory (where a user unpacks a .keras) must not break
 * importing, nor be touched by exporting. */
static void test_file_named_like_the_image(void **state) {
  const char *dir = *state;
  char here[4096], path[4096], out[512];
  assert_non_null(getcwd(here, sizeof here));
  snprintf(path, sizeof path, "%s/keras_small_mlp.keras", getenv("NN_FIXTURES"));
  snprintf(out, sizeof out, "%s/model.weights.h5", dir);
  FILE *f = fopen(out, "wb");
  fputs("precious", f);
  fclose(f);
  assert_int_equal(chdir(dir), 0);
  nn_spec *s = spec_of("input shape=6\ndense units=5\nbatchnorm convention=keras\nrelu\ndense units=3\n");
  nn_model *m = NULL;
  nn_error err = {0};
  nn_status st = nn_checkpoint_load(path, s, &m, &err);
  if (!st) st = nn_export_keras(m, (nn_input_norm){0, 1}, "again.keras", &err);
  assert_int_equal(chdir(here), 0);
  if (st) fail_msg("%s", err.msg);
  char buf[16] = {0};
  f = fopen(out, "rb");
  assert_int_equal(fread(buf, 1, sizeof buf, f), 8);
  fclose(f);
  assert_string_equal(buf, "precious");
  nn_model_free(m);
  nn_spec_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip), cmocka_unit_test(test_real_keras_files),
                                     cmocka_unit_test(test_refusals), cmocka_unit_test(test_config_architectures),
                                     cmocka_unit_test(test_file_named_like_the_image), cmocka_unit_test(test_rescaling_input),
                                     cmocka_unit_test(test_bn_half_affine)};
  return cmocka_run_group_tests(tests, tu_setup_tempdir, tu_teardown_tempdir);
}
