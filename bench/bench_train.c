/* Training and inference throughput of a preset with and without BN, plus peak memory.
 *
 *   bench_train [--model lenet] [--batch 128] [--steps 60] [--threads 2]
 *
 * Each variant runs in its own process (so peak RSS is per variant): a full training
 * step (uint8 -> float batch conversion, forward, loss, backward, SGD update) on
 * Fashion-MNIST-shaped data, then eval-mode inference. Prints one line per variant:
 *   normnet lenet bn train_samples_per_s=... infer_samples_per_s=... peak_rss_mb=...
 * Compare with bench/torch_lenet.py run in the same session. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/rng.h"
#include "normnet.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_variant(const char *preset, const char *norm, int batch, int steps) {
  const nn_preset *p = nn_preset_find(preset);
  if (!p) {
    fprintf(stderr, "bench_train: unknown preset %s\n", preset);
    return 2;
  }
  nn_error err = {0};
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_optimizer *opt = NULL;
  if (nn_spec_parse(p->spec, preset, &spec, &err) || nn_spec_set_norm(spec, norm, &err) ||
      nn_model_create(spec, &m, &err) || nn_optimizer_create(&p->opt, m, &opt, &err)) {
    fprintf(stderr, "bench_train: %s\n", err.msg);
    return 1;
  }
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  nn_model_init(m, p->init, &rng);
  int in = nn_model_input_size(m), k = nn_model_output_size(m);
  float *x = malloc((size_t)batch * in * sizeof *x);
  int32_t *y = malloc((size_t)batch * sizeof *y);
  uint8_t *u8 = malloc((size_t)batch * in);
  for (int i = 0; i < batch * in; i++) u8[i] = (uint8_t)nn_rng_below(&rng, 256);
  for (int i = 0; i < batch; i++) y[i] = (int32_t)nn_rng_below(&rng, (uint32_t)k);
  double t0 = 0;
  int warm = 5;
  for (int s = 0; s < warm + steps; s++) {
    if (s == warm) t0 = now();
    for (int i = 0; i < batch * in; i++) x[i] = ((float)u8[i] / 255.0f - p->input_norm.mean) / p->input_norm.std;
    if (nn_model_forward(m, x, y, batch, NN_MODE_TRAIN, NULL, NULL, NULL, &err) || nn_model_backward(m, &err)) {
      fprintf(stderr, "bench_train: %s\n", err.msg);
      return 1;
    }
    nn_model_zero_grads(m);
    nn_optimizer_step(opt, m);
  }
  double train = (double)steps * batch / (now() - t0);
  for (int s = 0; s < warm + steps; s++) {
    if (s == warm) t0 = now();
    nn_model_forward(m, x, NULL, batch, NN_MODE_EVAL, NULL, NULL, NULL, &err);
  }
  double infer = (double)steps * batch / (now() - t0);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("normnet %s %s batch=%d train_samples_per_s=%.0f infer_samples_per_s=%.0f peak_rss_mb=%.1f\n", preset,
         strcmp(norm, "none") ? "bn" : "nobn", batch, train, infer, ru.ru_maxrss / 1024.0);
  free(x), free(y), free(u8);
  nn_optimizer_free(opt);
  nn_model_free(m);
  nn_spec_free(spec);
  return 0;
}

int main(int argc, char **argv) {
  const char *preset = "lenet", *variant = NULL;
  int batch = 128, steps = 60, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) preset = argv[i + 1];
    else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--variant")) variant = argv[i + 1];
    else {
      fprintf(stderr, "usage: bench_train [--model P] [--batch B] [--steps N] [--threads T]\n");
      return 2;
    }
  }
  if (batch < 2 || steps < 1) {
    fprintf(stderr, "bench_train: need --batch >= 2 and --steps >= 1\n");
    return 2;
  }
  if (threads > 0) nn_set_threads(threads);
  if (variant) return run_variant(preset, variant, batch, steps);
  /* one process per variant so that peak RSS is the variant's own */
  int rc = 0;
  const char *variants[] = {"batch", "none"};
  for (int v = 0; v < 2; v++) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' --model %s --batch %d --steps %d --threads %d --variant %s", argv[0], preset, batch,
             steps, threads, variants[v]);
    fflush(stdout);
    rc |= system(cmd);
  }
  return rc ? 1 : 0;
}
