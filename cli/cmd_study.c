/* normnet study small-batch: seeds 000/002/003's pitfall measured — final validation
 * accuracy against batch size for each normalization, with the same number of training
 * samples at every batch size, and the train-vs-eval-mode gap of the BN models. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_B 8
#define MAX_N 6

static const char *const usage =
    "usage: normnet study small-batch [--model PRESET] [--batch 2,4,8,32,128]\n"
    "                                [--norm batch,group:2,layer,none] [--budget SAMPLES]\n"
    "                                [--out DIR] [training options]\n"
    "       normnet study sync-bn [--procs 1,2,4] ...   (SyncBN over processes: normnet study sync-bn --help)\n"
    "\n"
    "small-batch trains the model once per (batch size, normalization) with the same number\n"
    "of training samples (--budget, default 60000 = one Fashion-MNIST epoch; steps = budget /\n"
    "batch) and the preset's learning rate, then prints and plots the final validation\n"
    "accuracy against batch size (DIR/study.png, DIR/study.csv). For BN it also evaluates\n"
    "each trained model in train mode (batch statistics, batches of the training size) next\n"
    "to eval mode: the 'forgot model.eval()' gap. Each run is in DIR/bB-NORM (':' written '-'),\n"
    "and DIR/report.html shows this study's runs. Every run is built and checked (spec, --init,\n"
    "data, a run already in its directory: refused unless --overwrite) before anything is\n"
    "written: a refused study leaves nothing behind.\n"
    "\n"
    "  --jobs N                  runs trained at once, the threads shared out among them\n"
    "                            (default: one per thread; 1: one after another on all the\n"
    "                            threads); the results do not change, only the time\n";

/* The model of ckpt on the test split of the data it was trained on, with its input transform. */
double cli_study_eval(const char *ckpt, int train_mode, int batch, int threads, nn_error *err, int *fail) {
  nn_model *m = NULL;
  nn_dataset *ds = NULL;
  double loss, acc = NAN;
  nn_input_norm norm = {0};
  if (nn_checkpoint_load(ckpt, NULL, &m, err) || (nn_model_set_threads(m, threads), nn_model_input_norm(m, &norm), 0) ||
      nn_dataset_open(nn_model_data_source(m), NN_SPLIT_TEST, &ds, err) ||
      nn_evaluate(m, ds, norm, batch, train_mode ? NN_MODE_TRAIN : NN_MODE_EVAL, &loss, &acc, err))
    *fail = 1;
  nn_dataset_free(ds);
  nn_model_free(m);
  return acc;
}

/* The study's runs, one per (batch size i, normalization n), k = i * nn + n, as lanes' jobs. */
typedef struct {
  const cli_train_opts *o;
  const char *out;
  int nb, nn, budget;
  const int *batch;
  char (*norms)[CLI_ITEM];
  double (*acc)[MAX_N];
  double *train_mode; /* per batch size: the BN run's accuracy in train mode */
  double t0;
  atomic_int done;
  cli_panel *panel; /* on a terminal: one status line for the runs in training */
} study;

/* Run k's directory DIR/bB-NORM (':' written '-') */
static void run_dir(const study *s, int k, char *dir, size_t len) {
  snprintf(dir, len, "%s/b%d-%s", s->out, s->batch[k / s->nn], s->norms[k % s->nn]);
  for (char *p = dir + strlen(s->out) + 1; *p; p++)
    if (*p == ':') *p = '-';
}

/* Run k's training options; the strings they point to live in t. */
typedef struct {
  char dir[4096], label[96], bsz[32], nsteps[32];
} run_text;
static cli_train_opts run_opts(const study *s, int k, run_text *t) {
  const int i = k / s->nn, n = k % s->nn;
  run_dir(s, k, t->dir, sizeof t->dir);
  cli_train_opts vo = *s->o;
  snprintf(t->bsz, sizeof t->bsz, "%d", s->batch[i]);
  snprintf(t->nsteps, sizeof t->nsteps, "%d", s->budget / s->batch[i]);
  cli_train_override(&vo, "norm", "--norm", s->norms[n]);
  cli_train_override(&vo, "batch", "--batch", t->bsz);
  cli_train_override(&vo, "epochs", "--budget", "1000000"); /* --max-steps ends the run */
  cli_train_override(&vo, "max-steps", "--budget", t->nsteps);
  vo.out = t->dir;
  vo.quiet = 1;
  /* vo.overwrite is the user's: a run already in its directory is refused without --overwrite,
   * as train and compare refuse it */
  snprintf(t->label, sizeof t->label, "batch %d %s", s->batch[i], s->norms[n]);
  vo.label = t->label; /* names the run in its error messages */
  return vo;
}

static int study_run(void *ctx, int k, cli_lane *lane) {
  study *s = ctx;
  const int share = lane->threads;
  const int i = k / s->nn, n = k % s->nn, runs = s->nb * s->nn, steps = s->budget / s->batch[i];
  run_text t;
  cli_train_opts vo = run_opts(s, k, &t);
  const char *dir = t.dir, *label = t.label;
  vo.lane = lane;
  vo.panel = s->panel;
  cli_train_result res;
  int rc = cli_train_run("study", &vo, NULL, &res);
  int h = nn_history_count(res.hist);
  s->acc[i][n] = h ? nn_history_get(res.hist, h - 1)->test_acc : NAN;
  cli_train_result_free(&res);
  if (rc) return rc; /* failed, or stopped because another run failed: no result to show */
  if (!strcmp(s->norms[n], "batch")) {
    char ckpt[4200];
    int fail = 0;
    nn_error err = {0};
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", dir);
    /* the lane's share; with spare threads taken and no --threads, the library's choice */
    const int eval_threads = lane->threads > share && !s->o->threads ? 0 : lane->threads;
    s->train_mode[i] = cli_study_eval(ckpt, 1, s->batch[i], eval_threads, &err, &fail);
    if (fail) return cli_lane_fail("study", label, err.msg);
  }
  const int done = atomic_fetch_add(&s->done, 1) + 1;
  const double el = cli_now() - s->t0;
  char left[64] = "";
  if (done < runs) snprintf(left, sizeof left, ", about %.0fs left", el / done * (runs - done));
  char line[256]; /* whole lines when runs end side by side, above the status line */
  snprintf(line, sizeof line, "  [%d/%d] batch %4d  %-10s %6d steps  val_acc %.4f  (%.0fs so far%s)", done, runs,
           s->batch[i], s->norms[n], steps, s->acc[i][n], el, left);
  cli_panel_say(s->panel, line);
  return EXIT_OK;
}

int cmd_study(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    fputs(usage, stdout);
    return EXIT_OK;
  }
  if (argc >= 2 && !strcmp(argv[1], "sync-bn")) return cli_study_sync_bn(argc, argv);
  if (argc < 2) {
    cli_error("study", "needs a study: small-batch or sync-bn (see normnet study --help)");
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "small-batch")) {
    cli_error("study", "unknown study '%s' (available: small-batch, sync-bn; see normnet study --help)", argv[1]);
    return EXIT_USAGE;
  }
  cli_args a = {.argc = argc, .argv = argv, .i = 2, .cmd = "study"};
  cli_train_opts o;
  cli_train_defaults(&o);
  const char *bl = "2,4,8,32,128", *nl = "batch,group:2,layer,none", *out = "runs/study-small-batch";
  int budget = 60000, jobs = 0;
  while (a.i < argc) {
    int bad = 0;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      static const char *const set_here[] = {"--batch", "--epochs", "--max-steps", NULL}; /* lists, --budget */
      fputs(usage, stdout);
      cli_train_options_print(stdout, set_here);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--batch")) bl = a.val; /* a list here, before the training option */
    else if (cli_opt(&a, "--norm")) nl = a.val;
    else if (!strcmp(argv[a.i], "--batches") || !strcmp(argv[a.i], "--norms")) {
      cli_error("study", "%s is spelled %s now (a comma-separated list, as in compare)", argv[a.i],
                argv[a.i][2] == 'b' ? "--batch" : "--norm");
      return EXIT_USAGE;
    } else if (cli_train_option(&a, &o, &bad)) {
    } else if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--budget")) bad = cli_int(&a, "--budget", 2, 1 << 30, &budget);
    else if (cli_opt(&a, "--jobs")) bad = cli_int(&a, "--jobs", 1, MAX_B * MAX_N, &jobs);
    else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  for (int i = 0; i < o.nov; i++) /* each run's length is the budget's (run_opts sets both) */
    if (!strcmp(o.ov[i].key, "epochs") || !strcmp(o.ov[i].key, "max-steps")) {
      cli_error("study", "%s: each run of the study trains for --budget samples (default 60000)", o.ov[i].flag);
      return EXIT_USAGE;
    }
  char bs[MAX_B][CLI_ITEM], norms[MAX_N][CLI_ITEM];
  int nb = cli_list("study", "--batch", bl, bs, MAX_B), nn = cli_list("study", "--norm", nl, norms, MAX_N);
  if (nb <= 0 || nn <= 0) return EXIT_USAGE;
  int batch[MAX_B];
  for (int i = 0; i < nb; i++) {
    char *end;
    long v = strtol(bs[i], &end, 10);
    if (*end || v < 2 || v > budget) {
      cli_error("study", "--batch: '%s' is not a batch size in [2, budget]", bs[i]);
      return EXIT_USAGE;
    }
    batch[i] = (int)v;
  }
  double acc[MAX_B][MAX_N], train_mode[MAX_B];
  for (int i = 0; i < nb; i++) train_mode[i] = NAN;
  const int runs = nb * nn;
  study st = {.o = &o, .out = out, .nb = nb, .nn = nn, .budget = budget, .batch = batch, .norms = norms, .acc = acc, .train_mode = train_mode};
  /* every run is built and checked (spec, --init, data, a run already in its directory)
   * before any trains (a refused study leaves nothing behind: a run freed unsaved removes
   * the directories it made); each run is built again when its turn comes */
  for (int k = 0; k < runs; k++) {
    run_text t;
    cli_train_opts vo = run_opts(&st, k, &t);
    for (int j = 0; j < k; j++) {
      char other[4096];
      run_dir(&st, j, other, sizeof other);
      if (!strcmp(other, t.dir)) { /* the second would find the first's run in its directory */
        cli_error("study", "--batch/--norm: two runs would share the run directory %s (a batch size or a normalization given twice)", t.dir);
        return EXIT_USAGE;
      }
    }
    nn_run *run = NULL;
    int rc = cli_train_open("study", &vo, &run);
    nn_run_free(run);
    if (rc) return rc;
  }
  nn_error derr = {0};
  if (nn_file_make_dirs(out, &derr)) return cli_fail("study", &derr);
  printf("small-batch study: %s on %s, %d training samples per run (steps = %d / batch), norms %s\n", o.model,
         cli_train_value(&o, "data", "fashion-mnist"), budget, budget, nl);
  /* results do not depend on the thread count: only the time does */
  const int lanes = cli_lanes_count(jobs, runs, o.threads);
  cli_lanes_print("", runs, "runs", lanes, o.threads);
  st.t0 = cli_now();
  if (!(st.panel = cli_panel_create(stdout, lanes, runs, 1))) {
    cli_error("study", "out of memory");
    return EXIT_FAIL;
  }
  int rc = cli_lanes_run("study", runs, lanes, o.threads, study_run, &st);
  cli_panel_free(st.panel);
  if (rc) return rc;
  /* table */
  printf("\nfinal validation accuracy (eval mode) after %d samples\n%-7s", budget, "batch");
  for (int k = 0; k < nn; k++) printf(" %10s", norms[k]);
  printf(" | %12s %12s\n", "BN train-mode", "gap");
  for (int i = 0; i < nb; i++) {
    printf("%-7d", batch[i]);
    int bk = -1;
    for (int k = 0; k < nn; k++) {
      printf(" %10.4f", acc[i][k]);
      if (!strcmp(norms[k], "batch")) bk = k;
    }
    if (bk >= 0) printf(" | %12.4f %+12.4f", train_mode[i], acc[i][bk] - train_mode[i]);
    printf("\n");
  }
  printf(
      "(BN train-mode: the same BN model evaluated with batch statistics in batches of the training size;\n"
      " gap = eval-mode minus train-mode accuracy)\n");
  /* csv + plot */
  char path[4200];
  snprintf(path, sizeof path, "%s/study.csv", out);
  cli_text t;
  FILE *f = cli_text_open(&t);
  if (f) {
    fprintf(f, "batch,norm,val_acc\n");
    for (int i = 0; i < nb; i++)
      for (int k = 0; k < nn; k++) fprintf(f, "%d,%s,%.6f\n", batch[i], norms[k], acc[i][k]);
    for (int i = 0; i < nb; i++) fprintf(f, "%d,batch(train-mode eval),%.6f\n", batch[i], train_mode[i]);
  }
  if (cli_text_commit("study", &t, path)) return EXIT_FAIL;
  double x[MAX_B], y[MAX_N][MAX_B], ytm[MAX_B];
  nn_plot_line lines[MAX_N + 1];
  char labels[MAX_N][96];
  for (int i = 0; i < nb; i++) x[i] = batch[i], ytm[i] = train_mode[i];
  for (int k = 0; k < nn; k++) {
    for (int i = 0; i < nb; i++) y[k][i] = acc[i][k];
    nn_norm_label(norms[k], labels[k], sizeof labels[k]);
    lines[k] = (nn_plot_line){labels[k], x, y[k], nb, k, 0};
  }
  lines[nn] = (nn_plot_line){"with BN, evaluated in train mode", x, ytm, nb, nn, 1};
  char title[256], png[4200];
  snprintf(title, sizeof title, "%s: small batches, %d training samples per run", o.model, budget);
  snprintf(png, sizeof png, "%s/study.png", out);
  nn_plot_panel panel = {"Final validation accuracy vs batch size", "batch size", "accuracy", lines, nn + 1, 1};
  if (nn_plot_write(&panel, 1, title, 900, 520, png, NULL, &derr)) return cli_fail("study", &derr);
  printf("wrote %s, %s\n", path, png);
  /* every run of this study (not every run in DIR) in one page, without per-class
   * evaluation: the table above is the study's result */
  char report[4200];
  snprintf(report, sizeof report, "%s/report.html", out);
  cli_report_opts ro = {.title = title, .batch = 256, .group = 1};
  char(*dirs)[4096] = malloc((size_t)runs * sizeof *dirs);
  const char **rdirs = malloc((size_t)runs * sizeof *rdirs);
  rc = dirs && rdirs ? EXIT_OK : (cli_error("study", "out of memory"), EXIT_FAIL);
  for (int k = 0; !rc && k < runs; k++) run_dir(&st, k, dirs[k], sizeof dirs[k]), rdirs[k] = dirs[k];
  if (!rc) rc = cli_report_write("study", rdirs, runs, report, &ro);
  free(dirs), free(rdirs);
  return rc;
}
