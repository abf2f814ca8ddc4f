/* normnet inspect: what a trained model's normalization layers learned (seed 004 step 5:
 * gamma, beta, running mean and variance) and, for runs trained with --track-activations,
 * how each hidden layer's pre-activation mean and spread moved over training. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet inspect --model RUNDIR|CHECKPOINT|COMPAREDIR   (or the same without --model)\n"
    "\n"
    "For each normalization layer: gamma, beta, running mean and running variance as\n"
    "min / mean / max and the first 5 values. For a run trained with --track-activations:\n"
    "each hidden layer's pre-activation mean and standard deviation per epoch (on a fixed\n"
    "probe batch) as a table and as RUNDIR/activations.png. A directory written by\n"
    "'normnet compare' inspects every variant in it.\n";

static void print_stats(const char *what, const float *v, size_t n) {
  double lo = INFINITY, hi = -INFINITY, s = 0;
  for (size_t i = 0; i < n; i++) {
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
    s += v[i];
  }
  printf("    %-13s min %9.4f  mean %9.4f  max %9.4f  first:", what, lo, s / (double)n, hi);
  for (size_t i = 0; i < n && i < 5; i++) printf(" %.4f", v[i]);
  printf("%s\n", n > 5 ? " ..." : "");
}

static int inspect_params(const char *ckpt) {
  nn_model *m = NULL;
  int rc = cli_checkpoint_load("inspect", ckpt, NULL, &m);
  if (!rc) rc = cli_model_finite("inspect", ckpt, m, 0);
  if (rc) return rc;
  nn_input_norm in;
  int known = nn_model_input_norm(m, &in);
  const char *data = nn_model_data_source(m);
  char pc[CLI_PRINTABLE], pd[CLI_PRINTABLE];
  printf("%s\n  trained on %s, input ", cli_printable(ckpt, pc, sizeof pc),
         data[0] ? cli_printable(data, pd, sizeof pd) : "(not recorded)");
  if (known) printf("(u8/255 - %g) / %g\n", in.mean, in.std);
  else printf("transform not recorded\n");
  int shown = 0;
  for (int t = 0, layer = -1; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    int idx = v.layer;
    nn_layer_info li;
    nn_model_layer_info(m, idx, &li);
    if (!nn_layer_kind_is_norm(li.kind_id)) continue;
    if (idx != layer) {
      printf("  layer %d %s (line %d): %s\n", idx, li.kind, li.line, li.detail);
      layer = idx;
      shown++;
    }
    const char *suffix = strchr(v.name, '.') + 1;
    if (!v.data) {
      printf("    %-13s %lld\n", suffix, (long long)*v.count_value);
      continue;
    }
    const char *what = v.role == NN_TENSOR_WEIGHT ? "gamma (weight)" : v.role == NN_TENSOR_BIAS ? "beta (bias)"
                                                                                                : suffix;
    print_stats(what, v.data, v.count);
  }
  if (!shown) printf("  no normalization layers\n");
  nn_model_free(m);
  return EXIT_OK;
}

/* Table and plot of DIR/activations.csv; *found = 0 if there is none. */
static int inspect_activations(const char *dir, const char *label, int *found) {
  char path[4200];
  snprintf(path, sizeof path, "%s/activations.csv", dir);
  struct stat sb;
  *found = lstat(path, &sb) == 0;
  if (!*found) return EXIT_OK;
  nn_activation_row *rows = NULL;
  int n = 0;
  nn_error err = {0};
  if (nn_activations_read_csv(path, &rows, &n, &err)) return cli_fail("inspect", &err);
  /* rows are sorted by (epoch, layer), each pair once: the tracked layers in index order,
   * and the distinct epochs */
  int layers[64], nl = 0, ne = 0;
  for (int i = 0; i < n; i++) {
    int seen = 0;
    for (int k = 0; k < nl; k++) seen |= layers[k] == rows[i].layer;
    if (!seen && nl < 64) layers[nl++] = rows[i].layer;
    ne += i == 0 || rows[i].epoch != rows[i - 1].epoch;
  }
  for (int a = 1; a < nl; a++) /* insertion sort: layer order */
    for (int b = a; b > 0 && layers[b - 1] > layers[b]; b--) {
      int t = layers[b];
      layers[b] = layers[b - 1], layers[b - 1] = t;
    }
  printf("\n%s: pre-activation mean / std of each hidden layer on the probe batch (epoch 0 = initial)\n", label);
  printf("%-6s", "epoch");
  for (int k = 0; k < nl; k++) {
    const char *kind = "";
    for (int i = 0; i < n; i++)
      if (rows[i].layer == layers[k]) kind = rows[i].kind;
    char h[48];
    snprintf(h, sizeof h, "%d %s", layers[k], kind);
    printf(" | %-19s", h);
  }
  printf("\n");
  for (int i = 0; i < n;) {
    int e = rows[i].epoch, j = i;
    while (j < n && rows[j].epoch == e) j++;
    printf("%-6d", e);
    for (int k = 0; k < nl; k++) {
      int hit = 0;
      for (int r = i; r < j; r++)
        if (rows[r].layer == layers[k]) {
          printf(" | %8.3f / %-8.3f", rows[r].mean, rows[r].std);
          hit = 1;
        }
      if (!hit) printf(" | %-19s", "");
    }
    printf("\n");
    i = j;
  }
  /* plot: mean and std per layer over epochs (each layer has at most one row per epoch) */
  double *buf = calloc((size_t)(nl ? nl : 1) * 3 * (size_t)(ne ? ne : 1), sizeof *buf);
  nn_plot_line *means = calloc((size_t)(nl ? nl : 1), sizeof *means), *stds = calloc((size_t)(nl ? nl : 1), sizeof *stds);
  char(*names)[48] = calloc((size_t)(nl ? nl : 1), sizeof *names);
  int rc = EXIT_OK;
  if (!buf || !means || !stds || !names) {
    cli_error("inspect", "%s: out of memory for the plot", path);
    rc = EXIT_FAIL;
  } else {
    for (int k = 0; k < nl; k++) {
      double *x = buf + (size_t)k * 3 * (size_t)ne, *mu = x + ne, *sd = mu + ne;
      int cnt = 0;
      for (int i = 0; i < n; i++)
        if (rows[i].layer == layers[k]) {
          x[cnt] = rows[i].epoch, mu[cnt] = rows[i].mean, sd[cnt] = rows[i].std;
          snprintf(names[k], sizeof names[k], "layer %d (%s)", layers[k], rows[i].kind);
          cnt++;
        }
      means[k] = (nn_plot_line){names[k], x, mu, cnt, k, 0};
      stds[k] = (nn_plot_line){names[k], x, sd, cnt, k, 0};
    }
    nn_plot_panel panels[2] = {{"Pre-activation mean", "epoch", "mean", means, nl, 0},
                               {"Pre-activation standard deviation", "epoch", "std", stds, nl, 0}};
    char title[256], png[4200];
    snprintf(title, sizeof title, "%s: activation statistics over training", label);
    snprintf(png, sizeof png, "%s/activations.png", dir);
    if (nn_plot_write(panels, 2, title, 1200, 480, png, NULL, &err)) rc = cli_fail("inspect", &err);
    else printf("wrote %s\n", png);
  }
  free(buf), free(means), free(stds), free(names), free(rows);
  return rc;
}

static int inspect_run(const char *dir, const char *label) {
  char ckpt[8192];
  snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", dir);
  int rc = inspect_params(ckpt), found;
  if (!rc) rc = inspect_activations(dir, label, &found);
  return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cmd_inspect(int argc, char **argv) {
  /* --model X, as every other command takes a model, or a lone X */
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "inspect"};
  const char *arg = NULL, *flag = NULL;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    if (!cli_model_opt(&a, 0, &arg, &flag)) return cli_unknown(&a);
    if (a.bad) return EXIT_USAGE;
  }
  if (!arg) {
    cli_error("inspect", "expected --model RUNDIR|CHECKPOINT|COMPAREDIR (see normnet inspect --help)");
    return EXIT_USAGE;
  }
  struct stat sb;
  if (stat(arg, &sb) != 0) {
    cli_error("inspect", "%s: %s", arg, strerror(errno));
    return EXIT_FAIL;
  }
  if (!S_ISDIR(sb.st_mode)) return inspect_params(arg);
  char ckpt[4200];
  snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", arg);
  if (stat(ckpt, &sb) == 0) return inspect_run(arg, arg);
  /* a compare directory: every subdirectory holding a run */
  DIR *d = opendir(arg);
  if (!d) {
    cli_error("inspect", "%s: %s", arg, strerror(errno));
    return EXIT_FAIL;
  }
  char *subs[64];
  int ns = 0, rc = EXIT_OK;
  for (struct dirent *e; (e = readdir(d)) && ns < 64;) {
    if (e->d_name[0] == '.') continue;
    snprintf(ckpt, sizeof ckpt, "%s/%s/model.safetensors", arg, e->d_name);
    if (stat(ckpt, &sb) == 0) subs[ns++] = strdup(e->d_name);
  }
  closedir(d);
  if (!ns) {
    cli_error("inspect", "%s: no model.safetensors here or in its subdirectories", arg);
    return EXIT_FAIL;
  }
  qsort(subs, (size_t)ns, sizeof *subs, cmp_str);
  for (int i = 0; i < ns; i++) {
    char dir[4200 + 256];
    snprintf(dir, sizeof dir, "%s/%s", arg, subs[i]);
    if (!rc) rc = inspect_run(dir, subs[i]);
    if (i + 1 < ns && !rc) printf("\n");
    free(subs[i]);
  }
  return rc;
}
