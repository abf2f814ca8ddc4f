/* normnet report: one self-contained HTML page about runs (nn_report_html). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet report RUNDIR|COMPAREDIR... [--out FILE.html] [--title TEXT] [--no-eval]\n"
    "\n"
    "Write one HTML page, readable without a server (plots are inline SVG, nothing is\n"
    "fetched): the runs' curves overlaid, a summary table, and for each run its history,\n"
    "its results per class with the confusion matrix (evaluated now on the run's own\n"
    "evaluation data, in eval mode), what its normalization layers learned, its recipe and\n"
    "its spec. A directory written by 'normnet compare' stands for all its variants. Runs are\n"
    "labelled as in 'normnet plot': the directory's name or the variant's normalization, with\n"
    "the parent directories that tell apart runs that would share a label (\"a/batch\").\n"
    "\n"
    "  --out FILE                default: DIR/report.html for a single directory\n"
    "  --title TEXT              page title (default: the directories)\n"
    "  --no-eval                 skip the per-class evaluation\n"
    "  --batch B                 evaluation batch size (default 256)\n"
    "  --threads N               worker threads of each run's evaluation (default: the library's choice)\n";

/* The recipe as "key value" lines. */
static char *recipe_text(const nn_recipe *r) {
  size_t cap = 8192, used = 0;
  char *t = malloc(cap);
  for (int k = 0; t && k < nn_recipe_num_keys(); k++) {
    char v[1200];
    nn_recipe_get(r, k, v, sizeof v);
    int n = snprintf(t + used, cap - used, "%s %s\n", nn_recipe_key(k), v[0] ? v : "-");
    if (n > 0 && used + (size_t)n < cap) used += (size_t)n;
  }
  return t;
}

int cli_report_write(const char *cmd, const char *const *dirs, int ndirs, const char *out, const cli_report_opts *o) {
  cli_runs *rs = calloc(1, sizeof *rs);
  nn_report_run *runs = calloc(CLI_MAX_RUNS, sizeof *runs);
  nn_confusion *cms = calloc(CLI_MAX_RUNS, sizeof *cms);
  char **texts = calloc(2 * CLI_MAX_RUNS, sizeof *texts);
  const char **names = calloc((size_t)CLI_MAX_RUNS * 1024, sizeof *names);
  char(*notes)[256] = calloc(CLI_MAX_RUNS, sizeof *notes);
  int rc = rs && runs && cms && texts && names && notes ? EXIT_OK : (cli_error(cmd, "out of memory"), EXIT_FAIL);
  nn_error err = {0};
  if (!rc && o->group) rc = cli_runs_read_group(cmd, dirs, ndirs, rs);
  else
    for (int i = 0; !rc && i < ndirs; i++) rc = cli_runs_read(cmd, dirs[i], rs);
  for (int k = 0; !rc && k < rs->n; k++) {
    cli_run *r = &rs->run[k];
    texts[2 * k] = recipe_text(r->recipe);
    texts[2 * k + 1] = nn_spec_to_text(nn_model_spec(r->model));
    runs[k] = (nn_report_run){r->name, r->dir, r->hist, texts[2 * k], texts[2 * k + 1], r->model, NULL, NULL, 0, NULL,
                              r->run && nn_run_epochs_done(r->run) < nn_history_count(r->hist)};
    const int stopped = r->run ? nn_run_stopped_early(r->run) : 0;
    if (stopped) { /* what the model is: not the last epoch's weights */
      const int best = nn_run_best_epoch(r->run);
      snprintf(notes[k], sizeof notes[k],
               "Early stopping ended this run after epoch %d (no better %s loss for %d epochs): the model holds the "
               "weights of epoch %d, the lowest %s loss.",
               stopped, nn_history_validation(r->hist) ? "validation" : "test", r->recipe->early_stop, best,
               nn_history_validation(r->hist) ? "validation" : "test");
      runs[k].note = notes[k];
    }
    if (!o->evaluate) continue;
    nn_model_set_threads(r->model, o->threads);
    /* per-class results on the run's own evaluation data (its validation split or test set) */
    if (nn_run_load_eval_data(r->run, &err)) { /* the per-class results need it; the rest does not */
      cli_error(cmd, "%s (--no-eval: a report without the results per class)", err.msg);
      rc = EXIT_FAIL;
      break;
    }
    const nn_dataset *eval = nn_run_eval_data(r->run);
    if (nn_evaluate_confusion(r->model, eval, r->recipe->input_norm, o->batch, NN_MODE_EVAL, &cms[k], &err)) {
      rc = cli_fail(cmd, &err);
      break;
    }
    int nc = cms[k].classes < 1024 ? cms[k].classes : 1024;
    for (int c = 0; c < nc; c++) names[(size_t)k * 1024 + c] = nn_dataset_class_name(eval, c);
    runs[k].confusion = &cms[k];
    runs[k].class_names = names + (size_t)k * 1024;
    runs[k].nclass_names = nc;
  }
  char *html = NULL;
  if (!rc && (nn_report_html(o->title, runs, rs->n, &html, &err) || nn_file_write_atomic(out, html, strlen(html), &err)))
    rc = cli_fail(cmd, &err);
  if (!rc && !o->quiet) printf("wrote %s (%d run%s)\n", out, rs->n, rs->n == 1 ? "" : "s");
  free(html);
  for (int k = 0; rs && k < rs->n; k++) {
    if (cms) nn_confusion_free(&cms[k]);
    if (texts) free(texts[2 * k]), free(texts[2 * k + 1]);
  }
  if (rs) cli_runs_free(rs);
  free(rs), free(runs), free(cms), free(texts), free(names), free(notes);
  return rc;
}

int cmd_report(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "report"};
  const char *out = NULL, *title = NULL;
  int no_eval = 0, batch = 256, threads = 0;
  const char **dirs = calloc((size_t)argc, sizeof *dirs);
  int ndirs = 0, rc = dirs ? EXIT_OK : EXIT_FAIL;
  while (!rc && a.i < argc) {
    int bad = 0;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      free(dirs);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--title")) title = a.val;
    else if (cli_flag(&a, "--no-eval")) no_eval = 1;
    else if (cli_opt(&a, "--batch")) bad = cli_int(&a, "--batch", 1, 1 << 20, &batch);
    else if (cli_opt(&a, "--threads")) bad = cli_int(&a, "--threads", 1, 1024, &threads);
    else if (argv[a.i][0] == '-') rc = cli_unknown(&a);
    else dirs[ndirs++] = argv[a.i++];
    if (bad || a.bad) rc = EXIT_USAGE;
  }
  if (!rc && !ndirs) {
    cli_error("report", "needs a run directory or a compare directory (see normnet report --help)");
    rc = EXIT_USAGE;
  }
  if (!rc && !out && ndirs > 1) {
    cli_error("report", "--out FILE.html is needed for several directories");
    rc = EXIT_USAGE;
  }
  if (!rc && out && !cli_has_ext(out, ".html") && !cli_has_ext(out, ".htm")) {
    cli_error("report", "--out %s: the report is an HTML page: name it .html", out);
    rc = EXIT_USAGE;
  }
  char defout[4200], deftitle[1024];
  if (!rc && !out) snprintf(defout, sizeof defout, "%s/report.html", dirs[0]), out = defout;
  if (!rc && !title) {
    size_t used = (size_t)snprintf(deftitle, sizeof deftitle, "normnet report:");
    for (int i = 0; i < ndirs && used < sizeof deftitle; i++)
      used += (size_t)snprintf(deftitle + used, sizeof deftitle - used, " %s", dirs[i]);
    title = deftitle;
  }
  cli_report_opts ro = {.title = title, .evaluate = !no_eval, .batch = batch, .threads = threads};
  if (!rc) rc = cli_make_parent("report", out);
  if (!rc) rc = cli_report_write("report", dirs, ndirs, out, &ro);
  free(dirs);
  return rc;
}
