/* Eval-mode inference speed of a preset before and after folding BN into conv/dense.
 *
 *   bench_fold [--model lenet] [--seconds 2] [--threads 0]
 *
 * Same random weights for both models (BN gamma/beta random, running statistics moved by a
 * few training forwards), warm-up, then timing loops (clock_gettime) of about --seconds per
 * model and batch size, the two models alternating in 5 slices, best slice kept; batch 128
 * and batch 1. Prints samples/s of the original and the folded model, the speed-up, and
 * the largest logit difference between the two. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "normnet.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Samples per second of eval forwards of batch n over about `seconds`. */
static double throughput(nn_model *m, const float *x, int n, double seconds) {
  nn_error err = {0};
  for (int i = 0; i < 20; i++)
    if (nn_model_forward(m, x, NULL, n, NN_MODE_EVAL, NULL, NULL, NULL, &err)) {
      fprintf(stderr, "bench_fold: %s\n", err.msg);
      exit(1);
    }
  long iters = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 10; i++) nn_model_forward(m, x, NULL, n, NN_MODE_EVAL, NULL, NULL, NULL, &err);
    iters += 10;
    t = now() - t0;
  } while (t < seconds);
  return (double)iters * n / t;
}

int main(int argc, char **argv) {
  const char *model = "lenet";
  double seconds = 2.0;
  int threads = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
    else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_fold [--model lenet] [--seconds 2] [--threads 0]\n");
      return 2;
    }
  }
  nn_set_threads(threads);
  const nn_preset *p = nn_preset_find(model);
  if (!p) {
    fprintf(stderr, "bench_fold: unknown preset %s\n", model);
    return 2;
  }
  nn_error err = {0};
  nn_spec *spec = NULL;
  nn_model *m = NULL, *f = NULL;
  if (nn_spec_parse(p->spec, model, &spec, &err) || nn_model_create(spec, &m, &err)) {
    fprintf(stderr, "bench_fold: %s\n", err.msg);
    return 1;
  }
  nn_rng rng;
  nn_rng_seed(&rng, 7);
  nn_model_init(m, p->init, &rng);
  /* random gamma/beta, then running statistics from training forwards */
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    nn_layer_info li;
    nn_model_layer_info(m, atoi(v.name), &li);
    if (strcmp(li.kind, "batchnorm") || v.is_state || !v.data) continue;
    int w = strstr(v.name, ".weight") != NULL;
    for (size_t i = 0; i < v.count; i++) v.data[i] = w ? 0.5f + nn_rng_uniform(&rng) : nn_rng_uniform(&rng) - 0.5f;
  }
  int in = nn_model_input_size(m), big = 128;
  float *x = malloc((size_t)big * in * sizeof *x);
  if (!x) return 1;
  for (int s = 0; s < 5; s++) {
    for (size_t i = 0; i < (size_t)big * in; i++) x[i] = (float)nn_rng_normal(&rng);
    if (nn_model_forward(m, x, NULL, big, NN_MODE_TRAIN, NULL, NULL, NULL, &err)) {
      fprintf(stderr, "bench_fold: %s\n", err.msg);
      return 1;
    }
  }
  if (nn_model_fold(m, &f, &err)) {
    fprintf(stderr, "bench_fold: %s\n", err.msg);
    return 1;
  }
  for (size_t i = 0; i < (size_t)big * in; i++) x[i] = (float)nn_rng_normal(&rng);

  /* agreement of the two models on this batch */
  int k = nn_model_output_size(m);
  const float *z = NULL;
  float *zm = malloc((size_t)big * k * sizeof *zm);
  if (!zm) return 1;
  nn_model_forward(m, x, NULL, big, NN_MODE_EVAL, NULL, NULL, &z, &err);
  memcpy(zm, z, (size_t)big * k * sizeof *zm);
  nn_model_forward(f, x, NULL, big, NN_MODE_EVAL, NULL, NULL, &z, &err);
  double maxdiff = 0;
  for (int i = 0; i < big * k; i++) maxdiff = fmax(maxdiff, fabs((double)z[i] - (double)zm[i]));

  printf("bench_fold %s: %d layers, %zu params -> %d layers, %zu params; max |logit diff| %.3g\n", model,
         nn_model_num_layers(m), nn_model_param_count(m), nn_model_num_layers(f), nn_model_param_count(f), maxdiff);
  /* Original and folded alternate in `rounds` slices; the best slice of each counts, so a
   * burst of load from other processes hits both models alike and is mostly filtered. */
  const int batches[2] = {128, 1}, rounds = 5;
  for (int b = 0; b < 2; b++) {
    double so = 0, sf = 0;
    for (int r = 0; r < rounds; r++) {
      so = fmax(so, throughput(m, x, batches[b], seconds / rounds));
      sf = fmax(sf, throughput(f, x, batches[b], seconds / rounds));
    }
    printf("  batch %3d: original %10.0f samples/s  folded %10.0f samples/s  speed-up %.2fx\n", batches[b], so, sf,
           sf / so);
  }
  free(zm);
  free(x);
  nn_model_free(f);
  nn_model_free(m);
  nn_spec_free(spec);
  return 0;
}
