/* normnet plot: the curves of any runs overlaid in one figure. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const usage =
    "usage: normnet plot RUNDIR|COMPAREDIR... --out FILE.png|FILE.svg [--svg FILE.svg] [--title TEXT]\n"
    "\n"
    "Overlay the training curves of runs (accuracy and loss per epoch, train dashed,\n"
    "evaluation solid, one color per run; the learning rate too when a schedule changed it).\n"
    "A directory written by 'normnet compare' stands for all its variants. A run's label is\n"
    "its directory's name (a compare variant's: its normalization, \"with BN\"); labels that\n"
    "runs would share get the parent directories that tell them apart (runs/a/batch and\n"
    "runs/b/batch: \"a/batch\", \"b/batch\"; two compare directories: \"cmp-lenet/with BN\").\n"
    "\n"
    "  --out FILE                the figure, in the format of FILE's extension: .png or .svg\n"
    "  --svg FILE                an SVG as well (with --out FILE.png: both formats)\n"
    "  --title TEXT              the figure's title\n";


int cmd_plot(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "plot"};
  const char *out = NULL, *png = NULL, *svg = NULL, *title = NULL;
  cli_runs *rs = calloc(1, sizeof *rs);
  int rc = rs ? EXIT_OK : EXIT_FAIL, ndirs = 0;
  while (!rc && a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage, stdout);
      free(rs);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--svg")) svg = a.val;
    else if (cli_opt(&a, "--title")) title = a.val;
    else if (argv[a.i][0] == '-') rc = cli_unknown(&a);
    else rc = cli_runs_read("plot", argv[a.i++], rs), ndirs++;
    if (a.bad) rc = EXIT_USAGE;
  }
  if (!rc && !ndirs) {
    cli_error("plot", "needs run directories (see normnet plot --help)");
    rc = EXIT_USAGE;
  }
  if (!rc && !out && !svg) {
    cli_error("plot", "needs --out FILE.png or --out FILE.svg");
    rc = EXIT_USAGE;
  }
  /* the format of --out is its extension's; --svg always writes SVG */
  if (!rc && out) {
    if (cli_has_ext(out, ".png")) png = out;
    else if (!cli_has_ext(out, ".svg")) {
      cli_error("plot", "--out %s: the format follows the extension, .png or .svg", out);
      rc = EXIT_USAGE;
    } else if (svg && strcmp(svg, out)) {
      cli_error("plot", "--out %s and --svg %s both ask for an SVG file; give one", out, svg);
      rc = EXIT_USAGE;
    } else svg = out;
  }
  if (!rc && svg && !cli_has_ext(svg, ".svg")) {
    cli_error("plot", "--svg %s: an SVG file must end in .svg", svg);
    rc = EXIT_USAGE;
  }
  if (!rc) rc = cli_make_parent("plot", png);
  if (!rc) rc = cli_make_parent("plot", svg);
  if (!rc) {
    const char *names[CLI_MAX_RUNS];
    const nn_history *hists[CLI_MAX_RUNS];
    for (int k = 0; k < rs->n; k++) names[k] = rs->run[k].name, hists[k] = rs->run[k].hist;
    nn_error err = {0};
    if (nn_plot_histories(names, hists, rs->n, title, png, svg, NULL, &err)) rc = cli_fail("plot", &err);
    else printf("wrote %s%s%s (%d run%s)\n", png ? png : "", png && svg ? ", " : "", svg ? svg : "", rs->n,
                rs->n == 1 ? "" : "s");
  }
  if (rs) cli_runs_free(rs);
  free(rs);
  return rc;
}
