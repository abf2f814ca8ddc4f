/* normnet study sync-bn: what synchronizing BN statistics across processes changes
 * (ARCHITECTURE.md §9). The same recipe at the same global batch is trained on K = 1, 2, 4
 * processes (mpirun, oversubscribed is fine) with --sync-bn on and off; for each run the
 * final validation accuracy in eval mode, the accuracy of the same model evaluated in train
 * mode with batches of the size each process normalized over (B with SyncBN, B/K without),
 * and their gap. With SyncBN every K computes the K = 1 model; without it each process
 * normalizes a batch of B/K: the small-batch pitfall returns as K grows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#define MAX_K 8

static const char *const usage =
    "usage: normnet study sync-bn [--procs 1,2,4] [--mpirun PATH] [--out DIR] [training options]\n"
    "\n"
    "Train the recipe (default: lenet, batch 128, one epoch) once per process count K and\n"
    "--sync-bn on/off with mpirun -np K (oversubscribed), all at the same global --batch, then\n"
    "print each model's validation accuracy in eval mode, in train mode (batch statistics over\n"
    "the batch each process normalized: B with SyncBN, ceil(B/K) without) and their gap;\n"
    "DIR/study.csv (default runs/study-sync-bn) holds the table, DIR/kK-on|off the runs. Every\n"
    "run is built and checked (spec, --init, data, a run already in its directory: refused\n"
    "unless --overwrite) before the first one starts: a refused study leaves nothing behind.\n"
    "The training options are train's, below, except --sync-bn and --resume: the study sets them.\n"
    "\n"
    "  --epochs N                default 1 here (unless --max-steps is given), not the preset's\n";

/* 1 if execvp would find `name`: an executable regular file at that path (one with a '/'),
 * or in a directory of PATH. */
static int program_exists(const char *name) {
  struct stat sb;
  char path[4096];
  if (strchr(name, '/')) return stat(name, &sb) == 0 && S_ISREG(sb.st_mode) && access(name, X_OK) == 0;
  const char *dirs = getenv("PATH");
  for (const char *d = dirs ? dirs : "/usr/bin:/bin"; *d;) {
    const size_t len = strcspn(d, ":");
    snprintf(path, sizeof path, "%.*s/%s", (int)len, len ? d : ".", name);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0) return 1;
    d += len + (d[len] == ':');
  }
  return 0;
}

/* Run one training as a child: mpirun -np k SELF train ARGS (k = 1: SELF train ARGS). */
static int spawn(const char *mpirun, int k, char **args, int nargs, const char *sync, const char *dir) {
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return -1;
  self[len] = 0;
  char *argv[64 + 16];
  int n = 0;
  char np[16], launcher[4096], mode[8], out[4096]; /* writable copies for execvp */
  snprintf(launcher, sizeof launcher, "%s", mpirun);
  snprintf(mode, sizeof mode, "%s", sync);
  snprintf(out, sizeof out, "%s", dir);
  snprintf(np, sizeof np, "%d", k);
  if (k > 1) {
    argv[n++] = launcher;
    if (geteuid() == 0) argv[n++] = "--allow-run-as-root";
    argv[n++] = "--oversubscribe";
    argv[n++] = "-np";
    argv[n++] = np;
  }
  argv[n++] = self;
  argv[n++] = "train";
  for (int i = 0; i < nargs && n < 64; i++) argv[n++] = args[i];
  if (k > 1) { /* one process normalizes the whole batch either way */
    argv[n++] = "--sync-bn";
    argv[n++] = mode;
  }
  argv[n++] = "--out";
  argv[n++] = out;
  argv[n++] = "--quiet"; /* --overwrite only if the user gave it (in args): check_runs refused a run in dir */
  argv[n] = NULL;
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) < 0) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Every run (K, sync) is built and checked here (spec, --init, data, a run already in its
 * directory, refused unless --overwrite) before any is spawned; a refused study leaves
 * nothing behind (a run freed unsaved removes the directories it made). */
static int check_runs(const cli_train_opts *o, const char *out, const int *procs, int nk) {
  for (int i = 0; i < nk; i++)
    for (int s = 0; s < (procs[i] > 1 ? 2 : 1); s++) {
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/k%d-%s", out, procs[i], s ? "off" : "on");
      cli_train_opts vo = *o;
      cli_train_override(&vo, "sync-bn", "--sync-bn", s ? "0" : "1");
      vo.out = dir;
      nn_run *run = NULL;
      int rc = cli_train_open("study", &vo, &run);
      nn_run_free(run);
      if (rc) return rc;
    }
  return EXIT_OK;
}

int cli_study_sync_bn(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 2, .cmd = "study"};
  cli_train_opts o;
  cli_train_defaults(&o);
  const char *pl = "1,2,4", *out = "runs/study-sync-bn", *mpirun = "mpirun";
  char *fwd[64]; /* training options, passed on as given */
  int nfwd = 0, has_len = 0;
  while (a.i < argc) {
    int bad = 0, at = a.i;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      static const char *const set_here[] = {"--sync-bn", "--epochs", NULL};
      fputs(usage, stdout);
      cli_train_options_print(stdout, set_here);
      return EXIT_OK;
    }
    if (cli_opt(&a, "--procs")) pl = a.val;
    else if (cli_opt(&a, "--out")) out = a.val;
    else if (cli_opt(&a, "--mpirun")) mpirun = a.val;
    else if (cli_opt(&a, "--sync-bn") || !strcmp(argv[at], "--resume")) {
      cli_error("study", "%s: the study chooses it", argv[at]);
      return EXIT_USAGE;
    } else if (cli_train_option(&a, &o, &bad)) {
      has_len |= !strncmp(argv[at], "--epochs", 8) || !strncmp(argv[at], "--max-steps", 11);
      for (int i = at; i < a.i && nfwd < 60; i++) fwd[nfwd++] = argv[i];
    } else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  if (!has_len) fwd[nfwd++] = "--epochs", fwd[nfwd++] = "1";
  char items[MAX_K][CLI_ITEM];
  int procs[MAX_K], nk = cli_list("study", "--procs", pl, items, MAX_K);
  if (nk <= 0) return EXIT_USAGE;
  for (int i = 0; i < nk; i++) {
    char *end;
    long v = strtol(items[i], &end, 10);
    if (*end || v < 1 || v > 64) {
      cli_error("study", "--procs: '%s' is not a process count in [1, 64]", items[i]);
      return EXIT_USAGE;
    }
    procs[i] = (int)v;
  }
  const nn_preset *p = nn_preset_find(o.model);
  const char *data = cli_train_value(&o, "data", "fashion-mnist");
  int batch = atoi(cli_train_value(&o, "batch", "0"));
  if (batch <= 0) batch = p ? p->batch_size : 32;
  for (int i = 0; i < nk; i++)
    for (int j = 0; j < i; j++)
      if (procs[i] == procs[j]) { /* the second would find the first's run in its directory */
        cli_error("study", "--procs: %d is given twice", procs[i]);
        return EXIT_USAGE;
      }
  for (int i = 0; i < nk; i++)
    if (procs[i] > 1 && !program_exists(mpirun)) { /* before the first run trains */
      cli_error("study", "--mpirun %s: no such program (install Open MPI's mpirun, or give its path)", mpirun);
      return EXIT_USAGE;
    }
  int rc = check_runs(&o, out, procs, nk);
  if (rc) return rc;
  nn_error derr = {0};
  if (nn_file_make_dirs(out, &derr)) return cli_fail("study", &derr);
  printf("sync-bn study: %s on %s, global batch %d, processes %s, --sync-bn on and off\n", o.model, data, batch, pl);
  printf("%3s %4s %8s %9s %10s %10s %8s\n", "K", "sync", "BN batch", "train_loss", "val_acc", "train-mode", "gap");
  cli_text t;
  FILE *f = cli_text_open(&t);
  if (f) fprintf(f, "procs,sync_bn,bn_batch,train_loss,val_acc,train_mode_acc,gap\n");
  nn_error err = {0};
  for (int i = 0; i < nk; i++)
    for (int s = 0; s < (procs[i] > 1 ? 2 : 1); s++) {
      const char *sync = s ? "off" : "on";
      char dir[4096], ckpt[4200], hist[4200];
      snprintf(dir, sizeof dir, "%s/k%d-%s", out, procs[i], sync);
      rc = spawn(mpirun, procs[i], fwd, nfwd, sync, dir);
      if (rc) {
        cli_error("study", "the run -np %d --sync-bn %s failed (exit %d%s)", procs[i], sync, rc,
                  rc == 127 ? ": a program it starts was not found" : "; its messages are above");
        return EXIT_FAIL;
      }
      snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", dir);
      snprintf(hist, sizeof hist, "%s/history.csv", dir);
      nn_history *h = NULL;
      char *ep = NULL;
      int epochs = 0, fail = 0;
      if (nn_checkpoint_meta(ckpt, "normnet.epoch", &ep, &err) || !ep || sscanf(ep, "%d", &epochs) != 1 ||
          nn_history_read_csv(hist, epochs, &h, &err) || epochs < 1) {
        free(ep);
        nn_history_free(h);
        return cli_fail("study", &err);
      }
      free(ep);
      const nn_epoch_record *r = nn_history_get(h, epochs - 1);
      int bn_batch = s ? (batch + procs[i] - 1) / procs[i] : batch;
      double tm = cli_study_eval(ckpt, 1, bn_batch, 0, &err, &fail);
      if (fail) {
        nn_history_free(h);
        return cli_fail("study", &err);
      }
      printf("%3d %4s %8d %9.4f %10.4f %10.4f %+8.4f\n", procs[i], sync, bn_batch, r->train_loss, r->test_acc, tm,
             r->test_acc - tm);
      if (f)
        fprintf(f, "%d,%s,%d,%.6f,%.6f,%.6f,%.6f\n", procs[i], sync, bn_batch, r->train_loss, r->test_acc, tm,
                r->test_acc - tm);
      nn_history_free(h);
    }
  char path[4200];
  snprintf(path, sizeof path, "%s/study.csv", out);
  if (cli_text_commit("study", &t, path)) return EXIT_FAIL;
  printf(
      "(val_acc: eval mode, running statistics; train-mode: batch statistics over batches of 'BN batch';\n"
      " gap = val_acc - train-mode)\nwrote %s\n",
      path);
  return EXIT_OK;
}
