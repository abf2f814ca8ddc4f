/* normnet compare: the seeds' experiment — the same preset trained under several
 * normalizations from the same seed, a per-epoch table side by side, a summary, and the
 * curves (accuracy and loss; train dashed, validation solid; one color per variant). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define MAX_VARIANTS 8

static const char *const usage_head =
    "usage: normnet compare [--norm batch,none] [--target ACC] [--out DIR] [training options]\n"
    "\n"
    "Train the same model once per normalization (same seed, so shared layers start from the\n"
    "same weights) and compare them: a per-epoch table, a summary, DIR/history.csv,\n"
    "DIR/curves.png and DIR/curves.svg, DIR/report.html (normnet report of this compare's runs:\n"
    "curves, tables, results per class, BN statistics, recipes), and each variant's run in\n"
    "DIR/<variant>/, written with '-' for ':' and '@' (group:2 in DIR/group-2/, batch@after in\n"
    "DIR/batch-after/; the summary names each one's directory). The table, history.csv and\n"
    "--json name a variant as --norm gives it. Every variant is built and checked (spec, --init,\n"
    "data, a run already in its directory) before anything is written: a refused compare leaves\n"
    "nothing behind.\n"
    "\n"
    "  --norm LIST               comma-separated: batch, group:G, layer, instance, none (default\n"
    "                            batch,none); G must divide every normalized layer's channels;\n"
    "                            NORM@after puts the norm after the activation (batch,batch@after)\n"
    "  --target ACC              summary: first epoch whose validation accuracy reaches ACC\n"
    "                            (default 0.8)\n"
    "  --out DIR                 default runs/compare-<model>; variants that already hold a run are\n"
    "                            refused unless --overwrite\n"
    "  --no-report               skip DIR/report.html\n"
    "  --jobs N                  variants trained at once, the threads shared out among them\n"
    "                            (default: one per thread, up to the number of variants; 1: one\n"
    "                            after another on all the threads). The results do not change,\n"
    "                            only the time: two one-thread runs on two cores do not wait for\n"
    "                            each other at every layer as a two-thread run does\n";

typedef struct {
  char name[CLI_ITEM];
  char label[96]; /* legend text: "with BN", "GroupNorm (4)" */
  cli_train_result res;
  double seconds;
} variant;

static int write_history(const char *path, variant *v, int nv, const char *ev) {
  cli_text t;
  FILE *f = cli_text_open(&t);
  if (f) fprintf(f, "variant,epoch,train_loss,train_acc,%s_loss,%s_acc,seconds,samples_per_sec\n", ev, ev);
  for (int k = 0; f && k < nv; k++)
    for (int i = 0; i < nn_history_count(v[k].res.hist); i++) {
      const nn_epoch_record *r = nn_history_get(v[k].res.hist, i);
      fprintf(f, "%s,%d,%.6f,%.6f,%.6f,%.6f,%.3f,%.1f\n", v[k].name, r->epoch, r->train_loss, r->train_acc,
              r->test_loss, r->test_acc, r->seconds, r->samples_per_sec);
    }
  return cli_text_commit("compare", &t, path);
}

static int plot(const char *dir, const char *model, variant *v, int nv, nn_error *err) {
  const char *names[MAX_VARIANTS];
  const nn_history *hists[MAX_VARIANTS];
  for (int k = 0; k < nv; k++) names[k] = v[k].label, hists[k] = v[k].res.hist;
  char title[256], png[4200], svg[4200];
  snprintf(title, sizeof title, "%s: with and without normalization", model);
  snprintf(png, sizeof png, "%s/curves.png", dir);
  snprintf(svg, sizeof svg, "%s/curves.svg", dir);
  return nn_plot_histories(names, hists, nv, title, png, svg, NULL, err) ? -1 : 0;
}

static void print_tables(variant *v, char (*dirs)[4200], int nv, double target, const char *valname,
                         const char *ev, int lanes) {
  int maxn = 0;
  for (int k = 0; k < nv; k++)
    if (nn_history_count(v[k].res.hist) > maxn) maxn = nn_history_count(v[k].res.hist);
  printf("\n%-6s", "epoch");
  for (int k = 0; k < nv; k++) printf(" | %-37s", v[k].name);
  printf("\n%-6s", "");
  char el[16], ea[16], best_col[32];
  snprintf(el, sizeof el, "%s_loss", ev);
  snprintf(ea, sizeof ea, "%s_acc", ev);
  snprintf(best_col, sizeof best_col, "best %s_acc", ev);
  for (int k = 0; k < nv; k++) printf(" | %8s %8s %9s %9s", "loss", "acc", el, ea);
  printf("\n");
  for (int i = 0; i < maxn; i++) {
    printf("%-6d", i + 1);
    for (int k = 0; k < nv; k++) {
      if (i >= nn_history_count(v[k].res.hist)) {
        printf(" | %37s", "");
        continue;
      }
      const nn_epoch_record *r = nn_history_get(v[k].res.hist, i);
      printf(" | %8.4f %8.4f %9.4f %9.4f", r->train_loss, r->train_acc, r->test_loss, r->test_acc);
    }
    printf("\n");
  }
  printf("\n%-12s %13s %7s %18s %12s %10s %12s  %s\n", "variant", best_col, "epoch", "first >= target", "final acc",
         "s/epoch", "samples/s", "run");
  for (int k = 0; k < nv; k++) {
    int n = nn_history_count(v[k].res.hist), best = 0, first = 0;
    double secs = 0, sps = 0;
    for (int i = 0; i < n; i++) {
      const nn_epoch_record *r = nn_history_get(v[k].res.hist, i);
      if (i < v[k].res.epochs_done) { /* a paused epoch's partial row is no candidate */
        if (r->test_acc > nn_history_get(v[k].res.hist, best)->test_acc) best = i;
        if (!first && r->test_acc >= target) first = r->epoch;
      }
      secs += r->seconds;
      sps += r->samples_per_sec;
    }
    char reach[32];
    if (first) snprintf(reach, sizeof reach, "epoch %d", first);
    else snprintf(reach, sizeof reach, "never");
    if (!n) continue;
    char best_acc[32] = "-", best_at[16] = "-"; /* none before a first finished epoch */
    if (v[k].res.epochs_done > 0) {
      snprintf(best_acc, sizeof best_acc, "%.4f", nn_history_get(v[k].res.hist, best)->test_acc);
      snprintf(best_at, sizeof best_at, "%d", best + 1);
    }
    printf("%-12s %13s %7s %18s %12.4f %10.1f %12.0f  %s\n", v[k].name, best_acc, best_at, reach,
           nn_history_get(v[k].res.hist, n - 1)->test_acc, secs / n, sps / n, dirs[k]);
  }
  printf("(target %s accuracy %.2f)\n", valname, target);
  if (lanes > 1) /* the speeds are not those of one run on the whole machine */
    printf("(%d variants trained at a time, the cores shared out: s/epoch and samples/s are each one's own)\n", lanes);
}

/* A variant's training as a lane's job (--jobs) */
typedef struct {
  variant *v;
  cli_train_opts *vo;
  nn_run **runs; /* built by the checks and kept for the first lanes, else NULL */
} variants;

static int train_variant(void *ctx, int k, cli_lane *lane) {
  variants *c = ctx;
  c->vo[k].lane = lane;
  if (c->runs[k]) nn_model_set_threads(nn_run_model(c->runs[k]), lane->threads);
  int rc = cli_train_run("compare", &c->vo[k], c->runs[k], &c->v[k].res);
  c->runs[k] = NULL; /* cli_train_run frees it */
  return rc;
}

int cmd_compare(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "compare"};
  cli_train_opts o;
  cli_train_defaults(&o);
  const char *norms = "batch,none", *out = NULL;
  float target = 0.8f;
  int no_report = 0, jobs = 0;
  while (a.i < argc) {
    int bad = 0;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage_head, stdout);
      cli_train_options_print(stdout, NULL);
      return EXIT_OK;
    }
    if (cli_train_option(&a, &o, &bad)) {
    } else if (cli_opt(&a, "--norm")) norms = a.val;
    else if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--target")) bad = cli_float(&a, "--target", 0, 1, &target);
    else if (cli_flag(&a, "--no-report")) no_report = 1;
    else if (cli_opt(&a, "--jobs")) bad = cli_int(&a, "--jobs", 1, MAX_VARIANTS, &jobs);
    else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  variant v[MAX_VARIANTS];
  char names[MAX_VARIANTS][CLI_ITEM];
  int nv = cli_list("compare", "--norm", norms, names, MAX_VARIANTS);
  if (nv < 0) return EXIT_USAGE;
  for (int k = 0; k < nv; k++) {
    memset(&v[k], 0, sizeof v[k]);
    memcpy(v[k].name, names[k], sizeof v[k].name);
    nn_norm_label(names[k], v[k].label, sizeof v[k].label);
  }
  if (!nv) {
    cli_error("compare", "--norm: no variant given");
    return EXIT_USAGE;
  }
  char defout[512];
  if (!out) {
    snprintf(defout, sizeof defout, "runs/compare-%s", o.model);
    for (char *p = defout + 5; *p; p++)
      if (*p == '/') *p = '_';
    out = defout;
  }
  int rc = EXIT_OK;
  /* the comparison's table, curves and report go into DIR itself: never over a run's own */
  char held[4200];
  struct stat sb;
  snprintf(held, sizeof held, "%s/model.safetensors", out);
  if (lstat(held, &sb) == 0) {
    cli_error("compare", "--out %s holds a run (%s), whose history.csv the comparison's table would replace: write elsewhere",
              out, held);
    return EXIT_USAGE;
  }
  char dirs[MAX_VARIANTS][4200];
  cli_train_opts vo[MAX_VARIANTS];
  for (int k = 0; k < nv; k++) {
    snprintf(dirs[k], sizeof dirs[k], "%s/%s", out, v[k].name);
    for (char *p = dirs[k] + strlen(out) + 1; *p; p++)
      if (*p == ':' || *p == '/' || *p == '@') *p = '-';
    for (int j = 0; j < k; j++)
      if (!strcmp(dirs[j], dirs[k])) { /* the second would find the first's run in its directory */
        cli_error("compare", "--norm: '%s' and '%s' would share the run directory %s", v[j].name, v[k].name, dirs[k]);
        return EXIT_USAGE;
      }
    vo[k] = o;
    cli_train_override(&vo[k], "norm", "--norm", v[k].name);
    vo[k].out = dirs[k];
    vo[k].label = v[k].name;
    vo[k].variant = k + 1, vo[k].variants = nv;
  }
  /* results do not depend on the thread count: only the time does */
  int lanes = cli_lanes_count(jobs, nv, o.threads);
  /* every variant is built and checked (spec, --init, data, a run already in its directory)
   * before any trains; a refused compare leaves nothing behind, as a run freed unsaved
   * removes the directories it made. Those that start at once train the run built for
   * them; the others are built again when their turn comes, so that only the running
   * variants' data is in memory. */
  nn_run *runs[MAX_VARIANTS] = {0};
  for (int k = 0; k < nv && !rc; k++) {
    rc = cli_train_open("compare", &vo[k], &runs[k]);
    if (k >= lanes) nn_run_free(runs[k]), runs[k] = NULL;
  }
  nn_error derr = {0};
  if (!rc && nn_file_make_dirs(out, &derr)) rc = cli_fail("compare", &derr);
  cli_panel *panel = NULL;
  if (!rc && lanes > 1) {
    if (!(panel = cli_panel_create(stdout, lanes, nv, !o.quiet && !o.json))) {
      cli_error("compare", "out of memory");
      rc = EXIT_FAIL;
    }
    if (!o.quiet && !o.json)
      cli_lanes_print("normnet compare: ", nv, "variants", lanes, o.threads);
  }
  for (int k = 0; k < nv; k++) vo[k].panel = panel;
  if (!rc) {
    variants c = {v, vo, runs};
    rc = cli_lanes_run("compare", nv, lanes, o.threads, train_variant, &c);
  }
  cli_panel_free(panel);
  for (int k = 0; k < nv; k++) nn_run_free(runs[k]);
  if (!rc) {
    int validation = v[0].res.validation;
    const char *valname = validation ? "validation" : "test", *ev = validation ? "val" : "test";
    if (!o.json) print_tables(v, dirs, nv, target, valname, ev, lanes);
    char path[4200];
    nn_error err = {0};
    snprintf(path, sizeof path, "%s/history.csv", out);
    if (write_history(path, v, nv, ev)) {
      rc = EXIT_FAIL;
    } else if (plot(out, o.model, v, nv, &err)) {
      rc = err.msg[0] ? cli_fail("compare", &err) : (cli_error("compare", "out of memory"), EXIT_FAIL);
    } else {
      if (!o.json) printf("wrote %s/history.csv, %s/curves.png, %s/curves.svg\n", out, out, out);
      char report[4200], title[512];
      snprintf(report, sizeof report, "%s/report.html", out);
      snprintf(title, sizeof title, "normnet compare: %s", o.model);
      cli_report_opts ro = {.title = title, .evaluate = 1, .batch = 256, .threads = o.threads, .quiet = o.json, .group = 1};
      const char *vdirs[MAX_VARIANTS]; /* this compare's runs, not every run in DIR */
      for (int k = 0; k < nv; k++) vdirs[k] = dirs[k];
      if (!no_report) rc = cli_report_write("compare", vdirs, nv, report, &ro);
    }
  }
  for (int k = 0; k < nv; k++) cli_train_result_free(&v[k].res);
  return rc;
}
