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
  char ckpt[4200];
  snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", dir);
  int rc = cli_checkpoint_check(cmd, ckpt); /* --max-params, before the view builds the model */
  if (rc) return rc;
  if (nn_run_open_view(dir, &r->run, &err)) return cli_fail(cmd, &err);
  r->recipe = nn_run_recipe(r->run);
  r->model = nn_run_model(r->run);
  r->hist = nn_run_history(r->run);
  r->group = in_group ? rs->groups : 0;
  rs->n++;
  return EXIT_OK;
}

/* ---- names: distinct among the runs read --------------------------------------------------- */
enum { MAX_PARTS = 64 };
typedef struct {
  char text[4096];             /* the directory, '/' replaced by NUL */
  const char *part[MAX_PARTS]; /* its components, without empty ones and "." */
  int n;
  struct stat sb; /* which directory it is, however it is spelled */
} path_parts;

static void split(const char *dir, path_parts *p) {
  snprintf(p->text, sizeof p->text, "%s", dir);
  p->n = 0;
  if (stat(dir, &p->sb)) memset(&p->sb, 0, sizeof p->sb);
  for (char *s = p->text, *t; s; s = t) {
    t = strchr(s, '/');
    if (t) *t++ = 0;
    if (!*s || !strcmp(s, ".")) continue;
    if (p->n == MAX_PARTS) memmove(p->part, p->part + 1, (MAX_PARTS - 1) * sizeof *p->part), p->n--;
    p->part[p->n++] = s;
  }
}

/* The last component of the run's directory (the directory as given if it has none: "."). */
static const char *last_part(const cli_run *r, const path_parts *p) { return p->n ? p->part[p->n - 1] : r->dir; }

static int same_dir(const path_parts *a, const path_parts *b) {
  if (a->sb.st_ino || b->sb.st_ino) return a->sb.st_dev == b->sb.st_dev && a->sb.st_ino == b->sb.st_ino;
  if (a->n != b->n) return 0;
  for (int c = 0; c < a->n; c++)
    if (strcmp(a->part[c], b->part[c])) return 0;
  return 1;
}

/* Whether run i's name is that of an earlier run (of its group only, or in another directory
 * only when pp is given). */
static int same_name_before(const cli_runs *rs, int i, int group_only, const path_parts *pp) {
  for (int j = 0; j < i; j++)
    if ((!group_only || rs->run[j].group == rs->run[i].group) && (!pp || !same_dir(&pp[i], &pp[j])) &&
        !strcmp(rs->run[j].name, rs->run[i].name))
      return 1;
  return 0;
}

/* The runs' names without parents: a run's directory name; a compare variant's normalization,
 * or the subdirectory names of all its group when two variants share a normalization. */
static void base_names(cli_runs *rs, const path_parts *pp) {
  for (int i = 0; i < rs->n; i++) {
    cli_run *r = &rs->run[i];
    if (r->group) nn_norm_label(r->recipe->norm, r->name, sizeof r->name);
    else snprintf(r->name, sizeof r->name, "%s", last_part(r, &pp[i]));
  }
  int by_dir[CLI_MAX_RUNS + 1] = {0}; /* groups named by their subdirectories */
  for (int i = 0; i < rs->n; i++)
    if (rs->run[i].group && same_name_before(rs, i, 1, NULL)) by_dir[rs->run[i].group] = 1;
  for (int i = 0; i < rs->n; i++)
    if (by_dir[rs->run[i].group]) snprintf(rs->run[i].name, sizeof rs->run[i].name, "%s", last_part(&rs->run[i], &pp[i]));
}

/* The names of runs that collide with a run of another directory get the last k parent
 * directories, k the fewest (the same for all of them) that tell them apart. */
static void prefix_parents(cli_runs *rs, const path_parts *pp) {
  char base[CLI_MAX_RUNS][256];
  int prefix[CLI_MAX_RUNS] = {0}, group_prefix[CLI_MAX_RUNS + 1] = {0}, depth = 0;
  for (int i = 0; i < rs->n; i++) {
    snprintf(base[i], sizeof base[i], "%s", rs->run[i].name);
    for (int j = 0; j < rs->n; j++)
      if (j != i && !same_dir(&pp[i], &pp[j]) && !strcmp(rs->run[i].name, rs->run[j].name)) prefix[i] = 1;
    if (prefix[i]) group_prefix[rs->run[i].group] = 1;
  }
  /* every variant of a compare directory that one of them is in */
  for (int i = 0; i < rs->n; i++) {
    prefix[i] |= rs->run[i].group && group_prefix[rs->run[i].group];
    if (prefix[i] && pp[i].n - 1 > depth) depth = pp[i].n - 1;
  }
  for (int k = 1; k <= depth; k++) {
    for (int i = 0; i < rs->n; i++) {
      if (!prefix[i]) continue;
      char *name = rs->run[i].name;
      size_t cap = sizeof rs->run[i].name, used = 0;
      name[0] = 0;
      for (int c = pp[i].n - 1 - k > 0 ? pp[i].n - 1 - k : 0; c < pp[i].n - 1 && used < cap; c++)
        used += (size_t)snprintf(name + used, cap - used, "%s/", pp[i].part[c]);
      if (used < cap) snprintf(name + used, cap - used, "%s", base[i]);
    }
    int distinct = 1;
    for (int i = 0; i < rs->n && distinct; i++) distinct = !same_name_before(rs, i, 0, pp);
    if (distinct) return;
  }
}

static int name_runs(const char *cmd, cli_runs *rs) {
  path_parts *pp = malloc((size_t)rs->n * sizeof *pp);
  if (!pp) {
    cli_error(cmd, "out of memory");
    return EXIT_FAIL;
  }
  for (int i = 0; i < rs->n; i++) split(rs->run[i].dir, &pp[i]);
  base_names(rs, pp);
  prefix_parents(rs, pp);
  /* one directory named twice: numbered */
  for (int i = 0; i < rs->n; i++) {
    char name[256];
    snprintf(name, sizeof name, "%s", rs->run[i].name);
    for (int copy = 2; same_name_before(rs, i, 0, NULL); copy++)
      snprintf(rs->run[i].name, sizeof rs->run[i].name, "%.200s (%d)", name, copy);
  }
  free(pp);
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
  if (is_run(arg)) {
    int rc = add(cmd, rs, arg, 0);
    return rc ? rc : name_runs(cmd, rs);
  }
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
  if (!rc) rc = cli_runs_read_group(cmd, (const char *const *)names, n, rs);
  for (int i = 0; i < n; i++) free(names[i]);
  return rc;
}

int cli_runs_read_group(const char *cmd, const char *const *dirs, int n, cli_runs *rs) {
  rs->groups++;
  int rc = EXIT_OK;
  for (int i = 0; i < n && !rc; i++) rc = add(cmd, rs, dirs[i], 1);
  return rc ? rc : name_runs(cmd, rs);
}

void cli_runs_free(cli_runs *rs) {
  for (int i = 0; i < rs->n; i++) nn_run_free(rs->run[i].run);
  rs->n = 0;
}
