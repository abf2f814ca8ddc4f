/* normnet predict: top-k classes with probabilities for images (PNG/PGM) or for data set
 * records by index, with class names where the data set has them. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet predict [--model] RUNDIR|--checkpoint FILE [--top K] [--threads N] IMAGE...\n"
    "       normnet predict --model RUNDIR --data SOURCE --index I[,J,...] [--split test|train]\n"
    "\n"
    "Print the top-K classes (default 3) with probabilities, in eval mode. Images are PNG or\n"
    "PGM of the model's input size; --index takes records of a data set instead (and shows\n"
    "the true label). Class names come from the data set the model was trained on\n"
    "(Fashion-MNIST, CIFAR-10), or --classes NAME,NAME,...\n"
    "  --input-norm MEAN,STD     override the pixel transform stored in the checkpoint (STD >= 1e-6)\n";

enum { MAX_CLASS_NAMES = 64,
       MAX_INDEXES = 256 };
typedef struct {
  const char *const *names;
  int n;
  char given[MAX_CLASS_NAMES][CLI_ITEM]; /* --classes */
  const char *list[MAX_CLASS_NAMES];
} class_names;

static int names_for(class_names *cn, const char *data, const char *classes) {
  memset(cn, 0, sizeof *cn);
  if (!classes) {
    while (cn->n < MAX_CLASS_NAMES && (cn->list[cn->n] = nn_data_source_class_name(data, cn->n))) cn->n++;
    cn->names = cn->list;
    return 0;
  }
  int n = cli_list("predict", "--classes", classes, cn->given, MAX_CLASS_NAMES);
  if (n < 0) return -1;
  for (int i = 0; i < n; i++) cn->list[i] = cn->given[i];
  cn->names = cn->list, cn->n = n;
  return 0;
}

static void print_top(const char *what, const float *p, int k, int top, const class_names *cn, int truth) {
  int order[1024];
  int n = k < 1024 ? k : 1024;
  for (int i = 0; i < n; i++) order[i] = i;
  for (int i = 0; i < top && i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (p[order[j]] > p[order[i]]) {
        int t = order[i];
        order[i] = order[j], order[j] = t;
      }
  char pr[CLI_PRINTABLE];
  printf("%s:", cli_printable(what, pr, sizeof pr));
  for (int i = 0; i < top && i < n; i++) {
    int c = order[i];
    if (c < cn->n) printf("  %d. %s (%d) %.4f", i + 1, cli_printable(cn->names[c], pr, sizeof pr), c, p[c]);
    else printf("  %d. class %d %.4f", i + 1, c, p[c]);
  }
  if (truth >= 0 && truth < cn->n) printf("  [true: %s]", cli_printable(cn->names[truth], pr, sizeof pr));
  else if (truth >= 0) printf("  [true: class %d]", truth);
  printf("\n");
}

int cmd_predict(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "predict"};
  const char *model_arg = NULL, *ckpt = NULL, *data = NULL, *index = NULL, *split = "test", *classes = NULL;
  const char *input_norm = NULL, *model_flag = "--model"; /* NULL: the model came first, without it */
  int top = 3, nimg = 0, split_given = 0, threads = 0;
  const char **images = calloc((size_t)argc, sizeof *images);
  if (!images) return EXIT_FAIL;
  int rc = EXIT_OK;
  while (a.i < argc && !rc) {
    int bad = 0;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      free(images);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--model")) model_arg = a.val;
    else if (cli_opt(&a, "--checkpoint")) ckpt = a.val;
    else if (cli_opt(&a, "--data")) data = a.val;
    else if (cli_opt(&a, "--index")) index = a.val;
    else if (cli_opt(&a, "--split")) split = a.val, split_given = 1;
    else if (cli_opt(&a, "--classes")) classes = a.val;
    else if (cli_opt(&a, "--input-norm")) input_norm = a.val;
    else if (cli_opt(&a, "--top")) bad = cli_int(&a, "--top", 1, 1000, &top);
    else if (cli_opt(&a, "--threads")) bad = cli_int(&a, "--threads", 1, 1024, &threads);
    else if (argv[a.i][0] == '-') rc = cli_unknown(&a);
    else images[nimg++] = argv[a.i++];
    if (bad || a.bad) rc = EXIT_USAGE;
  }
  struct stat sb;
  if (!rc && !model_arg && !ckpt && nimg > 0 &&
      ((stat(images[0], &sb) == 0 && S_ISDIR(sb.st_mode)) || cli_is_checkpoint_name(images[0]))) {
    model_arg = images[0], model_flag = NULL; /* the model first, as the other commands take it */
    memmove(images, images + 1, (size_t)--nimg * sizeof *images);
  }
  cli_model cm = {0};
  if (!rc && !model_arg && !ckpt) {
    cli_error("predict", "needs a trained model: --model RUNDIR|CHECKPOINT or --checkpoint FILE");
    rc = EXIT_USAGE;
  }
  if (!rc && !nimg && !index) {
    cli_error("predict", "give image files, or --data SOURCE --index I");
    rc = EXIT_USAGE;
  }
  if (!rc && strcmp(split, "test") && strcmp(split, "train")) {
    cli_error("predict", "--split: expected test or train, got '%s'", split);
    rc = EXIT_USAGE;
  }
  if (!rc && split_given && !index) {
    cli_error("predict", "--split %s chooses the records of --index; images have none", split);
    rc = EXIT_USAGE;
  }
  if (!rc && model_arg) rc = cli_model_resolve("predict", model_flag, model_arg, &cm);
  if (!rc) rc = cli_model_trained("predict", &cm, ckpt);
  nn_model *m = NULL;
  nn_dataset *ds = NULL;
  nn_error err = {0};
  nn_input_norm norm = {0.0f, 1.0f};
  const char *source = NULL, *source_from = NULL;
  if (!rc) rc = cli_model_build("predict", &cm, NULL, NN_INIT_DEFAULT, 0, &m);
  if (!rc) rc = cli_model_finite("predict", cm.checkpoint, m, 1);
  if (!rc && threads) nn_model_set_threads(m, threads);
  if (!rc) rc = cli_model_input("predict", &cm, m, input_norm, data, &norm, &source, &source_from);
  if (!rc && index) {
    if (nn_dataset_open(source, strcmp(split, "test") ? NN_SPLIT_TRAIN : NN_SPLIT_TEST, &ds, &err) ||
        nn_model_check_data(m, ds, &err)) /* the records are copied into the model's input */
      rc = cli_fail("predict", &err);
    else {
      char pr[CLI_PRINTABLE];
      printf("data %s/%s (%s)\n", cli_printable(source, pr, sizeof pr), split, source_from);
    }
  }
  class_names cn;
  if (names_for(&cn, source ? source : "", classes) && !rc) rc = EXIT_USAGE;
  int in = m ? nn_model_input_size(m) : 0, k = m ? nn_model_output_size(m) : 0;
  if (!rc && classes && cn.n != k) { /* a name per output, or the top-k would be mislabeled */
    cli_error("predict", "--classes names %d classes but the model has %d outputs", cn.n, k);
    rc = EXIT_USAGE;
  }
  float *x = in ? malloc((size_t)in * sizeof *x) : NULL;
  uint8_t *px = in ? malloc((size_t)in) : NULL;
  if (!rc && (!x || !px)) rc = EXIT_FAIL;
  nn_dims dims = m ? nn_model_input_shape(m) : (nn_dims){.c = 1, .h = 1, .w = in};
  for (int i = 0; !rc && i < nimg; i++) {
    if (nn_image_load(images[i], dims, px, &err)) {
      rc = cli_fail("predict", &err);
      break;
    }
    for (int j = 0; j < in; j++) x[j] = ((float)px[j] / 255.0f - norm.mean) / norm.std;
    if (nn_model_forward(m, x, NULL, 1, NN_MODE_EVAL, NULL, NULL, NULL, &err)) rc = cli_fail("predict", &err);
    else print_top(images[i], nn_model_probs(m), k, top, &cn, -1);
  }
  if (!rc && index) {
    char list[MAX_INDEXES][CLI_ITEM];
    int nidx = cli_list("predict", "--index", index, list, MAX_INDEXES);
    if (nidx < 0) rc = EXIT_USAGE;
    for (int ii = 0; ii < nidx && !rc; ii++) {
      const char *t = list[ii];
      char *end;
      long id = strtol(t, &end, 10);
      if (*end || id < 0 || id >= nn_dataset_count(ds)) {
        cli_error("predict", "--index: '%s' is not a record index in [0, %d)", t, nn_dataset_count(ds));
        rc = EXIT_USAGE;
        break;
      }
      uint32_t u = (uint32_t)id;
      int32_t label;
      nn_dataset_batch(ds, &u, 1, norm, x, &label);
      char what[64];
      snprintf(what, sizeof what, "record %ld", id);
      if (nn_model_forward(m, x, NULL, 1, NN_MODE_EVAL, NULL, NULL, NULL, &err)) rc = cli_fail("predict", &err);
      else print_top(what, nn_model_probs(m), k, top, &cn, label);
    }
  }
  free(x), free(px), free(images);
  nn_dataset_free(ds);
  nn_model_free(m);
  cli_model_free(&cm);
  return rc;
}
