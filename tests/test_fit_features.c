/* Training features of nn_fit (src/train/fit.c) and the recipe checks:
 * - gradient accumulation: K batches of B give the same parameters as one batch of K*B for
 *   a model without BN, also when the last batch and the last group are short;
 * - early stopping: on a validation set whose loss rises from the first epoch, training
 *   stops after PATIENCE more epochs and the model holds the first epoch's weights (its
 *   evaluation loss equals the recorded one bitwise);
 * - early stopping resumed: a training split in two nn_fit calls (the second given the first's
 *   history and best weights) stops at the same epoch with the same weights as one call;
 * - batch assembly ahead on a helper thread gives the batches of assembly in the step,
 *   bitwise, and leaves the data stream exact when max_steps stops inside an epoch;
 * - schedules: the lr recorded per epoch is the schedule's value at the epoch's first step,
 *   and the optimizer gets its base lr back;
 * - nn_recipe_check refuses momentum/nesterov with Adam, freeze-bn without init-from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "nn_test.h"

#define K 4

/* n 3x3 images; class c is bright in pixel c (with noise); `shift` relabels (c+shift)%K. */
static nn_dataset *make_data(int n, int shift, uint64_t seed) {
  nn_dataset *ds = NULL;
  nn_error err = {0};
  assert_int_equal(nn_dataset_new(n, 1, 3, 3, K, "test", &ds, &err), NN_OK);
  tu_rng r = {seed};
  for (int i = 0; i < n; i++) {
    int c = (int)(tu_rng_next(&r) % K);
    ds->labels[i] = (c + shift) % K;
    for (int p = 0; p < 9; p++) ds->images[(size_t)i * 9 + p] = (uint8_t)((p == c ? 180 : 0) + tu_rng_next(&r) % 60);
  }
  return ds;
}

static nn_model *make_model(const char *spec_text) {
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  assert_int_equal(nn_spec_parse(spec_text, "t", &spec, &err), NN_OK);
  assert_int_equal(nn_model_create(spec, &m, &err), NN_OK);
  nn_spec_free(spec);
  nn_rng rng;
  nn_rng_seed(&rng, 3);
  nn_model_init(m, NN_INIT_DEFAULT, &rng);
  return m;
}

/* a copy of m's parameters (freed by the caller), their count in *np */
static float *params_copy(nn_model *m, size_t *np) {
  *np = nn_model_param_count(m);
  float *p = malloc(*np * sizeof(float));
  assert_non_null(p);
  memcpy(p, nn_model_params(m), *np * sizeof(float));
  return p;
}

static const char *const MLP = "input shape=1x3x3\nflatten\ndense units=8\ntanh\ndense units=4\n";

static void train(nn_model *m, const nn_dataset *ds, int batch, int accumulate, float lr, long *steps) {
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  oc.lr = lr;
  oc.momentum = 0.9f;
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 2, fc.batch_size = batch, fc.accumulate = accumulate, fc.shuffle = 0;
  assert_int_equal(nn_fit(m, opt, ds, NULL, &fc, NULL, NULL, &err), NN_OK);
  *steps = nn_optimizer_steps(opt);
  nn_optimizer_free(opt);
}

/* nn_fit records the transform it trained with in the model (and so in a checkpoint saved
 * after it): a model trained by nn_fit carried none, and normnet eval read its checkpoint
 * with {0, 1} (accuracy 0.61 for 0.68, no warning). */
static void test_fit_records_input_norm(void **state) {
  (void)state;
  nn_dataset *ds = make_data(16, 0, 3);
  nn_model *m = make_model(MLP);
  nn_input_norm got;
  assert_int_equal(nn_model_input_norm(m, &got), 0);
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 1, fc.batch_size = 8, fc.input_norm = (nn_input_norm){0.25f, 0.5f};
  assert_int_equal(nn_fit(m, opt, ds, NULL, &fc, NULL, NULL, &err), NN_OK);
  assert_int_equal(nn_model_input_norm(m, &got), 1);
  assert_true(got.mean == 0.25f && got.std == 0.5f);
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_dataset_free(ds);
}

static void test_accumulation_equals_big_batch(void **state) {
  (void)state;
  nn_dataset *ds = make_data(60, 0, 11); /* 60 = 32 + 28: the second group is short */
  nn_model *a = make_model(MLP), *b = make_model(MLP), *c = make_model(MLP);
  long sa, sb, sc;
  train(a, ds, 8, 4, 0.2f, &sa);  /* batches 8,8,8,8 | 8,8,8,4 */
  train(b, ds, 32, 1, 0.2f, &sb); /* batches 32 | 28 */
  train(c, ds, 8, 1, 0.2f, &sc);  /* no accumulation: 8 steps an epoch */
  assert_int_equal(sa, 4);
  assert_int_equal(sb, 4);
  assert_int_equal(sc, 16);
  size_t n = nn_model_param_count(a);
  const float *pa = nn_model_params(a), *pb = nn_model_params(b), *pc = nn_model_params(c);
  double maxd = 0, maxc = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    maxd = fmax(maxd, fabs((double)pa[i] - pb[i]));
    maxc = fmax(maxc, fabs((double)pa[i] - pc[i]));
    scale = fmax(scale, fabs((double)pb[i]));
  }
  assert_true(maxd <= 1e-5 * scale); /* equal up to float summation order */
  assert_true(maxc > 1e-3 * scale);  /* and the check can tell a different training apart */
  nn_model_free(a), nn_model_free(b), nn_model_free(c);
  nn_dataset_free(ds);
}

static void test_early_stop_restores_best(void **state) {
  (void)state;
  nn_dataset *train_ds = make_data(128, 0, 5), *val = make_data(64, 1, 6); /* val labels shifted: loss rises */
  nn_model *m = make_model(MLP);
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  oc.lr = 0.5f;
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 20, fc.batch_size = 16, fc.early_stop = 2, fc.eval_batch_size = 64;
  nn_history *h = NULL;
  assert_int_equal(nn_fit(m, opt, train_ds, val, &fc, NULL, &h, &err), NN_OK);
  int n = nn_history_count(h), best = 0;
  for (int i = 1; i < n; i++)
    if (nn_history_get(h, i)->test_loss < nn_history_get(h, best)->test_loss) best = i;
  assert_true(n < 20);               /* stopped early */
  assert_int_equal(n, best + 1 + 2); /* PATIENCE epochs after the best one */
  double loss, acc;
  assert_int_equal(nn_evaluate(m, val, fc.input_norm, 64, NN_MODE_EVAL, &loss, &acc, &err), NN_OK);
  assert_true(loss == nn_history_get(h, best)->test_loss); /* the best epoch's weights, bitwise */
  assert_true(loss != nn_history_get(h, n - 1)->test_loss);
  /* early stopping needs evaluation data */
  assert_int_equal(nn_fit(m, opt, train_ds, NULL, &fc, NULL, NULL, &err), NN_ERR_ARG);
  nn_history_free(h);
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_dataset_free(train_ds), nn_dataset_free(val);
}

/* Up to `epochs` of the early-stopping training of test_early_stop_resumes, from epoch
 * `first` (> 1: continuing with `previous`, `best`, the same optimizer and data stream). */
static nn_history *fit_part(nn_model *m, nn_optimizer *opt, nn_rng *stream, int first, int epochs,
                            const nn_history *previous, nn_model *best) {
  nn_dataset *train_ds = make_data(128, 0, 5), *val = make_data(64, 1, 6);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = epochs, fc.batch_size = 16, fc.early_stop = 3, fc.eval_batch_size = 64;
  fc.first_epoch = first, fc.data_rng = stream, fc.previous = previous, fc.previous_best = best;
  nn_history *h = NULL;
  nn_error err = {0};
  if (nn_fit(m, opt, train_ds, val, &fc, NULL, &h, &err)) fail_msg("%s", err.msg);
  nn_dataset_free(train_ds), nn_dataset_free(val);
  return h;
}

typedef struct {
  nn_model *m;
  nn_optimizer *opt;
  nn_rng stream;
} trainee;

static trainee trainee_new(void) {
  trainee t = {.m = make_model(MLP)};
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  oc.lr = 0.5f;
  nn_error err = {0};
  if (nn_optimizer_create(&oc, t.m, &t.opt, &err)) fail_msg("%s", err.msg);
  nn_rng_seed(&t.stream, 77);
  return t;
}

static void trainee_free(trainee *t) {
  nn_optimizer_free(t->opt);
  nn_model_free(t->m);
}

static void test_early_stop_resumes(void **state) {
  (void)state;
  /* one call: the reference stop epoch, best epoch and weights */
  trainee a = trainee_new();
  nn_history *ha = fit_part(a.m, a.opt, &a.stream, 1, 30, NULL, NULL);
  int n = nn_history_count(ha), best = 1;
  for (int i = 1; i < n; i++)
    if (nn_history_get(ha, i)->test_loss < nn_history_get(ha, best - 1)->test_loss) best = i + 1;
  assert_int_equal(n, best + 3);
  /* two calls, split after the best epoch + 1: the second must go on waiting, not start over */
  int split = best + 1;
  trainee b = trainee_new(), c = trainee_new();
  nn_history *hb = fit_part(b.m, b.opt, &b.stream, 1, split, NULL, NULL);
  nn_history *hc = fit_part(c.m, c.opt, &c.stream, 1, best, NULL, NULL); /* the best epoch's weights */
  nn_history *hb2 = fit_part(b.m, b.opt, &b.stream, split + 1, 30, hb, c.m);
  assert_int_equal(split + nn_history_count(hb2), n);
  assert_memory_equal(nn_model_params(b.m), nn_model_params(a.m), nn_model_param_count(a.m) * sizeof(float));
  /* without its best weights it cannot go on; once stopped, it refuses to go on */
  trainee d = trainee_new();
  nn_history *hd = fit_part(d.m, d.opt, &d.stream, 1, split, NULL, NULL);
  nn_dataset *train_ds = make_data(128, 0, 5), *val = make_data(64, 1, 6);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 30, fc.batch_size = 16, fc.early_stop = 3, fc.first_epoch = split + 1, fc.previous = hd;
  nn_error err = {0};
  assert_int_equal(nn_fit(d.m, d.opt, train_ds, val, &fc, NULL, NULL, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "best epoch"));
  fc.first_epoch = n + 1, fc.previous = ha;
  assert_int_equal(nn_fit(a.m, a.opt, train_ds, val, &fc, NULL, NULL, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "already ended"));
  nn_dataset_free(train_ds), nn_dataset_free(val);
  nn_history_free(ha), nn_history_free(hb), nn_history_free(hc), nn_history_free(hb2), nn_history_free(hd);
  trainee_free(&a), trainee_free(&b), trainee_free(&c), trainee_free(&d);
}

/* Batch assembly ahead (a helper thread makes batch b+1 while step b trains, when the steps
 * leave a core free: one thread here) gives the batches of assembly in the step, bitwise: with augmentation (its draws come from the data
 * stream) and shuffling, over whole epochs and a run that max_steps stops inside an epoch,
 * the parameters and the data stream left behind are the same. The stream being exact at a
 * stop inside an epoch shows that the draws of the batch assembled ahead, never trained,
 * were undone. */
static void test_assembly_ahead_same_batches(void **state) {
  (void)state;
  nn_dataset *ds = make_data(100, 0, 9);
  nn_augment aug = {0};
  nn_error err = {0};
  assert_int_equal(nn_augment_parse("flip,crop=1", &aug, &err), NN_OK);
  const long limits[] = {0, 9}; /* whole epochs; stopped at batch 3 of epoch 3 (4 per epoch) */
  for (size_t t = 0; t < sizeof limits / sizeof limits[0]; t++) {
    float *params[2];
    size_t np = 0;
    nn_rng stream[2];
    for (int inline_ = 0; inline_ < 2; inline_++) {
      nn_model *m = make_model(MLP);
      nn_model_set_threads(m, 1); /* a core left free: the helper assembles ahead */
      nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
      oc.lr = 0.2f;
      nn_optimizer *opt = NULL;
      assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
      nn_rng_seed(&stream[inline_], 31);
      nn_fit_config fc = nn_fit_defaults();
      fc.epochs = 3, fc.batch_size = 32, fc.augment = &aug, fc.data_rng = &stream[inline_];
      fc.max_steps = limits[t], fc.assemble_in_step = inline_;
      if (nn_fit(m, opt, ds, NULL, &fc, NULL, NULL, &err)) fail_msg("%s", err.msg);
      assert_int_equal(nn_optimizer_steps(opt), limits[t] ? limits[t] : 12);
      params[inline_] = params_copy(m, &np);
      nn_optimizer_free(opt);
      nn_model_free(m);
    }
    assert_memory_equal(params[0], params[1], np * sizeof(float));
    assert_memory_equal(&stream[0], &stream[1], sizeof stream[0]);
    free(params[0]), free(params[1]);
  }
  nn_dataset_free(ds);
}

/* Batch assembly in the step is split over the step's team when the batch is large (32 x
 * 1x32x32 values here): each image converts on its own, so the parameters after two
 * shuffled, augmented epochs are bitwise those of one thread. */
static void test_assembly_split_same_batches(void **state) {
  (void)state;
  nn_dataset *ds = NULL;
  nn_error err = {0};
  assert_int_equal(nn_dataset_new(96, 1, 32, 32, K, "test", &ds, &err), NN_OK);
  tu_rng r = {21};
  for (int i = 0; i < 96; i++) {
    ds->labels[i] = (int)(tu_rng_next(&r) % K);
    for (int p = 0; p < 1024; p++) ds->images[(size_t)i * 1024 + p] = (uint8_t)(tu_rng_next(&r) % 256);
  }
  nn_augment aug = {0};
  assert_int_equal(nn_augment_parse("flip,crop=2", &aug, &err), NN_OK);
  float *params[2];
  size_t np = 0;
  for (int t = 0; t < 2; t++) {
    nn_model *m = make_model("input shape=1x32x32\nflatten\ndense units=4\n");
    nn_model_set_threads(m, t + 1);
    nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
    oc.lr = 0.05f;
    nn_optimizer *opt = NULL;
    assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
    nn_rng stream;
    nn_rng_seed(&stream, 17);
    nn_fit_config fc = nn_fit_defaults();
    fc.epochs = 2, fc.batch_size = 32, fc.augment = &aug, fc.data_rng = &stream, fc.assemble_in_step = 1;
    if (nn_fit(m, opt, ds, NULL, &fc, NULL, NULL, &err)) fail_msg("%s", err.msg);
    params[t] = params_copy(m, &np);
    nn_optimizer_free(opt);
    nn_model_free(m);
  }
  assert_memory_equal(params[0], params[1], np * sizeof(float));
  free(params[0]), free(params[1]);
  nn_dataset_free(ds);
}

static void test_schedule_lr_per_epoch(void **state) {
  (void)state;
  nn_dataset *ds = make_data(50, 0, 9);
  nn_model *m = make_model(MLP);
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  oc.lr = 0.1f;
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_lr_schedule s;
  assert_int_equal(nn_lr_schedule_parse("cosine", 3, &s, &err), NN_OK);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 4, fc.batch_size = 10, fc.lr_schedule = &s, fc.accumulate = 2; /* 5 batches: 3 steps an epoch */
  nn_history *h = NULL;
  assert_int_equal(nn_fit(m, opt, ds, NULL, &fc, NULL, &h, &err), NN_OK);
  assert_int_equal(nn_optimizer_steps(opt), 12);
  for (int e = 0; e < 4; e++) {
    double want = (float)nn_lr_schedule_at(&s, 0.1f, (nn_lr_position){.step = 3L * e, .steps_per_epoch = 3, .total_steps = 12});
    assert_true(fabs(nn_history_get(h, e)->lr - want) < 1e-12);
  }
  assert_true(nn_history_get(h, 0)->lr < 0.1 / 3); /* warm-up */
  assert_true(nn_optimizer_lr(opt) == 0.1f);       /* the base lr is back */
  nn_history_free(h);
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_dataset_free(ds);
}

/* An epoch resumed inside (nn_fit_position) goes on with its time: its record's seconds
 * include the training time the position carries, and its samples/s is the whole epoch's
 * samples over the whole epoch's training time, not all of them over the resumed part's. */
static void test_resumed_epoch_time(void **state) {
  (void)state;
  nn_dataset *ds = make_data(80, 0, 4);
  nn_model *m = make_model(MLP);
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  nn_optimizer *opt = NULL;
  nn_error err = {0};
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_rng stream;
  nn_fit_seed_data_rng(&stream, 7);
  nn_fit_position pos = {0};
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 1, fc.batch_size = 10, fc.max_steps = 3, fc.data_rng = &stream, fc.position = &pos;
  assert_int_equal(nn_fit(m, opt, ds, NULL, &fc, NULL, NULL, &err), NN_OK);
  assert_int_equal(pos.batch, 3);
  assert_int_equal(pos.seen, 30);
  assert_true(pos.seconds > 0 && pos.seconds < 60);
  pos.seconds = 1000; /* as if the first part had taken 1000 s */
  fc.max_steps = 0;
  nn_history *h = NULL;
  assert_int_equal(nn_fit(m, opt, ds, NULL, &fc, NULL, &h, &err), NN_OK);
  const nn_epoch_record *r = nn_history_get(h, 0);
  assert_true(r->seconds >= 1000 && r->seconds < 1060);
  assert_true(r->samples_per_sec > 80 / 1060.0 && r->samples_per_sec <= 80 / 1000.0);
  assert_int_equal(pos.batch, 0); /* the epoch ended */
  nn_history_free(h);
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_dataset_free(ds);
}

/* a data set whose samples are not the model's input is refused with both shapes, before any
 * step: the model's parameters stay as they were */
static void test_input_shape_refused(void **state) {
  (void)state;
  nn_dataset *ds = make_data(8, 0, 5);
  nn_model *m = make_model("input shape=1x4x4\nflatten\ndense units=4\n");
  size_t np;
  float *before = params_copy(m, &np);
  nn_error err = {0};
  double loss, acc;
  const nn_input_norm norm = {0.0f, 1.0f};
  assert_int_equal(nn_evaluate(m, ds, norm, 4, NN_MODE_EVAL, &loss, &acc, &err), NN_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "samples are 1x3x3 (9 values) but the model takes 16 inputs"));
  assert_memory_equal(before, nn_model_params(m), np * sizeof(float));
  free(before);
  nn_model_free(m);
  nn_dataset_free(ds);
}

/* samples of as many values in another shape (1x1x9 for 1x3x3, as 14x56 test images for
 * 28x28) are refused naming both shapes: by a model with an image input, and for a flat
 * model's test set by the training set's shape (only the value count was compared) */
static void test_input_shape_same_count_refused(void **state) {
  (void)state;
  nn_dataset *ds = make_data(8, 0, 5), *other = NULL;
  nn_error err = {0};
  assert_int_equal(nn_dataset_new(8, 1, 1, 9, K, "test", &other, &err), NN_OK);
  memcpy(other->images, ds->images, 8 * 9), memcpy(other->labels, ds->labels, 8 * sizeof *ds->labels);
  nn_model *m = make_model(MLP);
  double loss, acc;
  const nn_input_norm norm = {0.0f, 1.0f};
  assert_int_equal(nn_evaluate(m, other, norm, 4, NN_MODE_EVAL, &loss, &acc, &err), NN_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "the data set samples are 1x1x9 but the model takes 1x3x3"));
  /* every door a data set comes through: the per-class evaluation (eval, report), the
   * recalibration and the check callers that feed records themselves use (predict) */
  nn_confusion cm;
  assert_int_equal(nn_evaluate_confusion(m, other, norm, 4, NN_MODE_EVAL, &cm, &err), NN_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "1x1x9 but the model takes 1x3x3"));
  const nn_recalibrate_config rc = {.batch_size = 4, .batches = 1, .seed = 1};
  assert_int_equal(nn_model_recalibrate(m, other, norm, &rc, &err), NN_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "1x1x9 but the model takes 1x3x3"));
  assert_int_equal(nn_model_check_data(m, other, &err), NN_ERR_SHAPE);
  assert_int_equal(nn_model_check_data(m, ds, &err), NN_OK);
  nn_model_free(m);
  m = make_model("input shape=9\ndense units=4\n");
  if (nn_evaluate(m, other, norm, 4, NN_MODE_EVAL, &loss, &acc, &err)) fail_msg("a flat model: %s", err.msg);
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  nn_optimizer *opt = NULL;
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 1, fc.batch_size = 4;
  assert_int_equal(nn_fit(m, opt, ds, other, &fc, NULL, NULL, &err), NN_ERR_SHAPE);
  assert_non_null(strstr(err.msg, "the test set samples are 1x1x9 but the training set's are 1x3x3"));
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_dataset_free(other);
  nn_dataset_free(ds);
}

/* An input std below NN_INPUT_STD_MIN (a denormal one made every input infinite) is refused
 * by every door the transform comes through: the check itself, a model's recorded
 * transform, nn_fit and nn_evaluate; the floor itself is accepted. */
static void test_input_std_floor(void **state) {
  (void)state;
  nn_error err = {0};
  const nn_input_norm denormal = {0.5f, 1e-45f}, below = {0.5f, 9e-7f}, floor = {0.5f, NN_INPUT_STD_MIN};
  assert_int_equal(nn_input_norm_check(denormal, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "the std must be a finite number >= 1e-06"));
  assert_int_equal(nn_input_norm_check(below, &err), NN_ERR_ARG);
  assert_int_equal(nn_input_norm_check(floor, &err), NN_OK);
  nn_dataset *ds = make_data(8, 0, 5);
  nn_model *m = make_model(MLP);
  assert_int_equal(nn_model_set_input(m, &denormal, NULL, &err), NN_ERR_ARG);
  double loss, acc;
  assert_int_equal(nn_evaluate(m, ds, denormal, 4, NN_MODE_EVAL, &loss, &acc, &err), NN_ERR_ARG);
  nn_opt_config oc = nn_opt_defaults(NN_OPT_SGD);
  nn_optimizer *opt = NULL;
  assert_int_equal(nn_optimizer_create(&oc, m, &opt, &err), NN_OK);
  nn_fit_config fc = nn_fit_defaults();
  fc.epochs = 1, fc.batch_size = 4, fc.input_norm = denormal;
  assert_int_equal(nn_fit(m, opt, ds, NULL, &fc, NULL, NULL, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "std 1.4013e-45"));
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_dataset_free(ds);
}

static void test_recipe_refusals(void **state) {
  (void)state;
  nn_error err = {0};
  nn_recipe r = nn_recipe_default(nn_preset_find("lenet"));
  assert_int_equal(nn_recipe_check(&r, &err), NN_OK);
  assert_int_equal(nn_recipe_set(&r, "optimizer", "adam", &err), NN_OK);
  assert_int_equal(nn_recipe_set(&r, "momentum", "0.9", &err), NN_OK);
  assert_int_equal(nn_recipe_check(&r, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "momentum 0.9 is an SGD setting"));
  r = nn_recipe_default(nn_preset_find("lenet"));
  assert_int_equal(nn_recipe_set(&r, "optimizer", "adamw", &err), NN_OK);
  assert_int_equal(nn_recipe_set(&r, "nesterov", "1", &err), NN_OK);
  assert_int_equal(nn_recipe_check(&r, &err), NN_ERR_ARG);
  r = nn_recipe_default(nn_preset_find("lenet"));
  assert_int_equal(nn_recipe_set(&r, "freeze-bn", "1", &err), NN_OK);
  assert_int_equal(nn_recipe_check(&r, &err), NN_ERR_ARG);
  assert_non_null(strstr(err.msg, "--init"));
  assert_int_equal(nn_recipe_set(&r, "init-from", "runs/x/model.safetensors", &err), NN_OK);
  assert_int_equal(nn_recipe_check(&r, &err), NN_OK);
  /* schedules and early stopping by key, both orders of onecycle and warmup refused */
  r = nn_recipe_default(NULL);
  assert_int_equal(nn_recipe_set(&r, "warmup", "10", &err), NN_OK);
  assert_int_equal(nn_recipe_set(&r, "lr-schedule", "onecycle", &err), NN_ERR_ARG);
  r = nn_recipe_default(NULL);
  assert_int_equal(nn_recipe_set(&r, "lr-schedule", "onecycle", &err), NN_OK);
  assert_int_equal(nn_recipe_set(&r, "warmup", "10", &err), NN_ERR_ARG);
  assert_int_equal(nn_recipe_set(&r, "early-stop", "3:0.01", &err), NN_OK);
  assert_int_equal(r.early_stop, 3);
  assert_true(r.early_stop_delta == 0.01);
  assert_int_equal(nn_recipe_set(&r, "early-stop", "x", &err), NN_ERR_ARG);
  assert_int_equal(nn_recipe_set(&r, "early-stop", "3:", &err), NN_ERR_ARG);
  assert_int_equal(nn_recipe_set(&r, "early-stop", "3:-1", &err), NN_ERR_ARG);
  assert_int_equal(nn_recipe_set(&r, "accumulate", "0", &err), NN_ERR_ARG);
  assert_int_equal(nn_recipe_set(&r, "lr-schedule", "step:2:0.5", &err), NN_OK);
  /* every key prints back to what it parses from */
  for (int k = 0; k < nn_recipe_num_keys(); k++) {
    char buf[1200];
    nn_recipe_get(&r, k, buf, sizeof buf);
    nn_recipe copy = r;
    if (!strcmp(nn_recipe_key(k), "data") || !strcmp(nn_recipe_key(k), "norm")) continue;
    assert_int_equal(nn_recipe_set(&copy, nn_recipe_key(k), buf, &err), NN_OK);
  }
  char buf[64];
  for (int k = 0; k < nn_recipe_num_keys(); k++)
    if (!strcmp(nn_recipe_key(k), "lr-schedule")) nn_recipe_get(&r, k, buf, sizeof buf);
  assert_string_equal(buf, "step:2:0.5");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accumulation_equals_big_batch),
      cmocka_unit_test(test_fit_records_input_norm),
      cmocka_unit_test(test_early_stop_restores_best),
      cmocka_unit_test(test_early_stop_resumes),
      cmocka_unit_test(test_assembly_ahead_same_batches),
      cmocka_unit_test(test_assembly_split_same_batches),
      cmocka_unit_test(test_schedule_lr_per_epoch),
      cmocka_unit_test(test_resumed_epoch_time),
      cmocka_unit_test(test_recipe_refusals),
      cmocka_unit_test(test_input_shape_refused),
      cmocka_unit_test(test_input_shape_same_count_refused),
      cmocka_unit_test(test_input_std_floor),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
