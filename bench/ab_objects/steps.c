/* Driver of bench/ab_objects.sh --libs OLD NEW: whole training steps of the presets, old_
 * against new_ library (every symbol of each renamed, the public API through normnet.h's
 * types), in one process: for each preset, models from both libraries with the same
 * initialization and batch, then rounds of STEPS steps of one and of the other, alternating
 * which goes first; prints each library's best round (samples per second), old/new of the
 * best rounds and the median of the rounds' old/new.
 *
 *     ab [THREADS [ROUNDS [STEPS [PRESET[:NORM]...]]]]   (defaults: 1, 15, 20, lenet cnn cifar-cnn)
 *
 * PRESET:NORM trains the preset with its normalization layers set to NORM (nn_spec_set_norm:
 * none, batch, ...), e.g. cifar-gap:none.
 *
 * Both libraries run in one OpenMP runtime; each keeps its own settings (nn_set_threads). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench_util.h"
#include "normnet.h"

#define DECL(v)                                                                                                \
  const nn_preset *v##_nn_preset_find(const char *name);                                                       \
  nn_status v##_nn_spec_parse(const char *text, const char *source, nn_spec **out, nn_error *err);             \
  nn_status v##_nn_spec_set_norm(nn_spec *s, const char *norm, nn_error *err);                                 \
  nn_status v##_nn_model_create(const nn_spec *spec, nn_model **out, nn_error *err);                           \
  nn_status v##_nn_optimizer_create(const nn_opt_config *cfg, nn_model *m, nn_optimizer **out, nn_error *err); \
  void v##_nn_model_init(nn_model *m, nn_init init, nn_rng *rng);                                              \
  void v##_nn_rng_seed(nn_rng *r, uint64_t seed);                                                              \
  void v##_nn_set_threads(int n);                                                                              \
  int v##_nn_model_input_size(const nn_model *m);                                                              \
  void v##_nn_model_zero_grads(nn_model *m);                                                                   \
  nn_status v##_nn_model_forward(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode,      \
                                 double *loss_sum, int *correct, const float **logits, nn_error *err);         \
  nn_status v##_nn_model_backward(nn_model *m, nn_error *err);                                                 \
  void v##_nn_optimizer_step(nn_optimizer *opt, nn_model *m);                                                  \
  void v##_nn_model_free(nn_model *m);                                                                         \
  void v##_nn_optimizer_free(nn_optimizer *opt);                                                               \
  void v##_nn_spec_free(nn_spec *s);
DECL(old)
DECL(new)

typedef struct {
  nn_model *m;
  nn_optimizer *opt;
  nn_status (*forward)(nn_model *, const float *, const int32_t *, int, nn_mode, double *, int *, const float **,
                       nn_error *);
  nn_status (*backward)(nn_model *, nn_error *);
  void (*zero)(nn_model *);
  void (*step)(nn_optimizer *, nn_model *);
} side;

static double round_time(side *s, const float *x, const int32_t *y, int batch, int steps) {
  nn_error err = {0};
  const double t0 = now();
  for (int k = 0; k < steps; k++) {
    s->zero(s->m);
    if (s->forward(s->m, x, y, batch, NN_MODE_TRAIN, NULL, NULL, NULL, &err) || s->backward(s->m, &err)) {
      fprintf(stderr, "ab steps: %s\n", err.msg);
      exit(1);
    }
    s->step(s->opt, s->m);
  }
  return now() - t0;
}

#define MAKE(v, name, norm, sd)                                                                                      \
  do {                                                                                                               \
    const nn_preset *p = v##_nn_preset_find(name);                                                                   \
    nn_spec *spec = NULL;                                                                                            \
    nn_error err = {0};                                                                                              \
    nn_rng rng;                                                                                                      \
    if (!p || v##_nn_spec_parse(p->spec, name, &spec, &err) || (norm && v##_nn_spec_set_norm(spec, norm, &err)) ||   \
        v##_nn_model_create(spec, &(sd).m, &err) ||                                                                  \
        v##_nn_optimizer_create(&p->opt, (sd).m, &(sd).opt, &err)) {                                                 \
      fprintf(stderr, "ab steps: %s: %s\n", name, p ? err.msg : "unknown preset");                                   \
      exit(1);                                                                                                       \
    }                                                                                                                \
    v##_nn_spec_free(spec);                                                                                          \
    v##_nn_rng_seed(&rng, 1);                                                                                        \
    v##_nn_model_init((sd).m, p->init, &rng);                                                                        \
    batch = p->batch_size, in = v##_nn_model_input_size((sd).m);                                                     \
    (sd).forward = v##_nn_model_forward, (sd).backward = v##_nn_model_backward, (sd).zero = v##_nn_model_zero_grads; \
    (sd).step = v##_nn_optimizer_step;                                                                               \
  } while (0)

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1, rounds = argc > 2 ? atoi(argv[2]) : 15;
  const int steps = argc > 3 ? atoi(argv[3]) : 20;
  static const char *defaults[] = {"lenet", "cnn", "cifar-cnn"};
  const char **presets = argc > 4 ? (const char **)argv + 4 : defaults;
  const int np = argc > 4 ? argc - 4 : 3;
  old_nn_set_threads(threads);
  new_nn_set_threads(threads);
  for (int q = 0; q < np; q++) {
    side s[2];
    int batch = 0, in = 0;
    char name[64];
    snprintf(name, sizeof name, "%s", presets[q]);
    char *colon = strchr(name, ':');
    const char *norm = colon ? colon + 1 : NULL;
    if (colon) *colon = 0;
    MAKE(old, name, norm, s[0]);
    MAKE(new, name, norm, s[1]);
    float *x = bench_fbuf((size_t)batch * (size_t)in);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    if (!y) return 1;
    for (int i = 0; i < batch; i++) y[i] = i % 10;
    double best[2] = {1e30, 1e30};
    double *pair = malloc((size_t)(rounds > 0 ? rounds : 1) * sizeof *pair); /* each round's old/new */
    if (!pair) return 1;
    for (int v = 0; v < 2; v++) round_time(&s[v], x, y, batch, steps); /* warm-up */
    for (int r = 0; r < rounds; r++) {
      double t2[2];
      for (int k = 0; k < 2; k++) {
        const int v = (r + k) % 2;
        t2[v] = round_time(&s[v], x, y, batch, steps);
        if (t2[v] < best[v]) best[v] = t2[v];
      }
      pair[r] = t2[0] / t2[1];
    }
    /* the best rounds compare each library at its fastest; the median of the rounds' ratios,
     * each from two rounds run back to back, follows a host whose speed changes meanwhile */
    const double med = rounds > 0 ? median_of(pair, rounds) : 0;
    printf("steps %-14s threads=%d old %9.0f samples/s  new %9.0f samples/s  new/old %.3f  rounds' median %.3f\n",
           presets[q], threads, (double)steps * batch / best[0], (double)steps * batch / best[1], best[0] / best[1],
           med);
    free(pair);
    old_nn_model_free(s[0].m), new_nn_model_free(s[1].m);
    old_nn_optimizer_free(s[0].opt), new_nn_optimizer_free(s[1].opt);
    free(x), free(y);
  }
  return 0;
}
