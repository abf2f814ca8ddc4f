/* Runs named on the command line (report, plot): a run directory (holding
 * model.safetensors), or a directory of runs (compare's output: every subdirectory that is
 * a run, in name order), read without being locked or changed and without their data
 * (nn_run_open_view: plotting a run copied from another machine needs no data set). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static int is_run(const char *dir) {
  char path[4200];
  struct stat sb;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add(const char *cmd, cli_runs *rs, const char *dir, int in_group) {
  if (rs->n == CLI_MAX_RUNS) {
    cli_error(cmd, "at most %d runs", CLI_MAX_RUNS);
    return EXIT_USAGE;
  }
  cli_run *r = &rs->run[rs->n];
  memset(r, 0, sizeof *r);
  snprintf(r->dir, sizeof r->dir, "%s", dir);
  nn_error err = {0};
  if (nn_run_open_view(dir, &r->run, &err)) return cli_fail(cmd, &err);
  r->recipe = nn_run_recipe(r->run);
  r->model = nn_run_model(r->run);
  r->hist = nn_run_history(r->run);
  /* a compare variant is named by its normalization ("with BN"); a run by its directory */
  const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  if (in_group) nn_norm_label(r->recipe->norm, r->name, sizeof r->name);
  else snprintf(r->name, sizeof r->name, "%s", base);
  for (int i = 0; i < rs->n; i++)
    if (!strcmp(rs->run[i].name, r->name)) {
      snprintf(r->name, sizeof r->name, "%s", base); /* two runs of one label: their directory names */
      break;
    }
  rs->n++;
  return EXIT_OK;
}

int cli_runs_read(const char *cmd, const char *arg, cli_runs *rs) {
  struct stat sb;
  if (stat(arg, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    cli_error(cmd, "%s: not a run directory (train --out) or a directory of runs (compare --out)", arg);
    return EXIT_USAGE;
  }
  if (strlen(arg) >= 4000) {
    cli_error(cmd, "%.60s...: path too long", arg);
    return EXIT_USAGE;
  }
  if (is_run(arg)) return add(cmd, rs, arg, 0);
  DIR *d = opendir(arg);
  if (!d) {
    cli_error(cmd, "%s: cannot read the directory", arg);
    return EXIT_FAIL;
  }
  char *names[CLI_MAX_RUNS] = {0};
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < CLI_MAX_RUNS;) {
    if (e->d_name[0] == '.') continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", arg, e->d_name);
    if (is_run(sub) && (names[n] = strdup(sub))) n++;
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  int rc = n ? EXIT_OK : (cli_error(cmd, "%s: holds no run (no model.safetensors in it or its subdirectories)", arg), EXIT_USAGE);
  for (int i = 0; i < n; i++) {
    if (!rc) rc = add(cmd, rs, names[i], 1);
    free(names[i]);
  }
  return rc;
}

void cli_runs_free(cli_runs *rs) {
  for (int i = 0; i < rs->n; i++) nn_run_free(rs->run[i].run);
  rs->n = 0;
}
