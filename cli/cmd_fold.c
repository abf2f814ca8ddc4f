/* normnet fold: fold every BatchNorm into the dense/conv layer before it, for inference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet fold [--model|--checkpoint] RUNDIR|CHECKPOINT --out FILE\n"
    "\n"
    "Fold each batchnorm into the dense or conv2d layer right before it (in double):\n"
    "W' = W*gamma/sqrt(var+eps), b' = (b-mean)*gamma/sqrt(var+eps) + beta. The result has no\n"
    "batchnorm layers and the same eval-mode outputs; the check on a random batch is printed.\n";

int cmd_fold(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "fold"};
  const char *in = NULL, *in_flag = NULL, *out = NULL;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_model_opt(&a, 1, &in, &in_flag)) {
    } else return cli_unknown(&a);
    if (a.bad) return EXIT_USAGE;
  }
  if (!in || !out) {
    cli_error("fold", "needs --checkpoint FILE (or --model RUNDIR) and --out FILE");
    return EXIT_USAGE;
  }
  if (cli_out_spares_run("fold", "--out", out)) return EXIT_USAGE;
  cli_model cm;
  int rc = cli_model_resolve("fold", in_flag, in, &cm);
  if (rc) return rc;
  if (!cm.checkpoint[0]) {
    cli_error("fold", "%s is not a trained checkpoint or run directory", in);
    cli_model_free(&cm);
    return EXIT_USAGE;
  }
  if ((rc = cli_out_spares_input("fold", "--out", out, cm.checkpoint))) {
    cli_model_free(&cm);
    return rc;
  }
  nn_model *m = NULL, *f = NULL;
  nn_error err = {0};
  if ((rc = cli_checkpoint_load("fold", cm.checkpoint, NULL, &m)) || (rc = cli_model_finite("fold", cm.checkpoint, m, 1))) {
  } else if (nn_model_fold(m, &f, &err)) rc = cli_fail("fold", &err);
  double maxdiff = 0;
  int n = 64, k = 0;
  if (!rc) {
    /* same outputs: both models on one random batch in eval mode */
    int in_size = nn_model_input_size(m);
    k = nn_model_output_size(m);
    float *x = malloc((size_t)n * in_size * sizeof *x), *ref = malloc((size_t)n * k * sizeof *ref);
    nn_rng rng;
    nn_rng_seed(&rng, 1);
    for (int i = 0; x && i < n * in_size; i++) x[i] = 2.0f * nn_rng_uniform(&rng) - 1.0f;
    const float *y = NULL;
    if (!x || !ref || nn_model_forward(m, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &y, &err)) rc = EXIT_FAIL;
    else {
      memcpy(ref, y, (size_t)n * k * sizeof *ref);
      if (nn_model_forward(f, x, NULL, n, NN_MODE_EVAL, NULL, NULL, &y, &err)) rc = EXIT_FAIL;
      for (int i = 0; !rc && i < n * k; i++) maxdiff = fmax(maxdiff, fabs((double)y[i] - ref[i]));
    }
    if (rc) rc = err.msg[0] ? cli_fail("fold", &err) : (cli_error("fold", "out of memory"), EXIT_FAIL);
    free(x), free(ref);
  }
  if (!rc) {
    /* the folded model keeps the input transform and data source (model state) */
    nn_meta_pair meta[1] = {{"normnet.folded_from", cm.checkpoint}};
    if (nn_checkpoint_save(f, out, meta, 1, &err)) rc = cli_fail("fold", &err);
  }
  if (!rc)
    printf(
        "folded %s -> %s: %d -> %d layers, %zu -> %zu parameters, max |logit difference| %.3g on a random "
        "batch of %d\n",
        cm.checkpoint, out, nn_model_num_layers(m), nn_model_num_layers(f), nn_model_param_count(m),
        nn_model_param_count(f), maxdiff, n);
  if (!rc && nn_model_num_layers(f) == nn_model_num_layers(m)) /* said, not refused: a script may fold any model */
    printf("nothing folded: no batchnorm with fixed statistics right after a conv2d or dense layer\n");
  nn_model_free(m);
  nn_model_free(f);
  cli_model_free(&cm);
  return rc;
}
