/* normnet train: fit a preset or spec on a data set, report each epoch, write the run. */
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage_head =
    "usage: normnet train [options]\n"
    "       normnet train --resume RUNDIR [--epochs N] [--max-steps N] [--threads N] [--quiet] [--json]\n"
    "\n"
    "Train a model, evaluating it after every epoch in eval mode (on the test split, or on the\n"
    "validation split with --val-split).\n"
    "\n"
    "  --norm batch|group:G|layer|instance|none  keep BN, replace it by GroupNorm/LayerNorm/\n"
    "                            InstanceNorm, or remove it\n"
    "  --out DIR                 write the run (DIR and its parents are created):\n"
    "                            DIR/model.safetensors (every epoch, with optimizer state, recipe\n"
    "                            and history), DIR/best.safetensors (the best evaluation accuracy;\n"
    "                            with --early-stop the lowest evaluation loss), DIR/history.csv,\n"
    "                            DIR/spec.txt; saves are atomic. A directory that holds a run is\n"
    "                            refused (--overwrite replaces it)\n"
    "  --resume DIR              continue the run in DIR with its recorded recipe (only --epochs,\n"
    "                            --max-steps, --threads, --quiet, --json and --out DIR may be\n"
    "                            given); the result equals an uninterrupted run bitwise\n";

int cmd_train(int argc, char **argv) {
  cli_args a = {.argc = argc, .argv = argv, .i = 1, .cmd = "train"};
  cli_train_opts o;
  cli_train_defaults(&o);
  while (a.i < argc) {
    int bad = 0;
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(usage_head, stdout);
      cli_train_options_print(stdout, NULL);
      return EXIT_OK;
    }
    if (cli_train_option(&a, &o, &bad)) {
    } else if (cli_opt(&a, "--norm")) cli_train_override(&o, "norm", "--norm", a.val);
    else if (cli_opt(&a, "--out")) o.out = a.val;
    else if (cli_opt(&a, "--resume")) o.resume = a.val;
    else if (cli_opt(&a, "--crash-after-epoch")) bad = cli_int(&a, "--crash-after-epoch", 1, 1000000, &o.crash_after_epoch);
    else return cli_unknown(&a);
    if (bad || a.bad) return EXIT_USAGE;
  }
  struct stat rs, os; /* "--out RUN/" or RUN's absolute path name the run too */
  const int same = o.resume && o.out &&
                   (!strcmp(o.resume, o.out) ||
                    (!stat(o.resume, &rs) && !stat(o.out, &os) && rs.st_dev == os.st_dev && rs.st_ino == os.st_ino));
  if (o.resume && o.out && !same) {
    cli_error("train", "--resume writes into the run it resumes; drop --out");
    return EXIT_USAGE;
  }
  if (cli_train_value(&o, "bn-placement", NULL) && !strcmp(cli_train_value(&o, "norm", ""), "none")) {
    cli_error("train", "--bn-placement places normalization layers, and --norm none has none: drop one");
    return EXIT_USAGE;
  }
  if (cli_train_value(&o, "sync-bn", NULL) && cli_comm()->size == 1)
    cli_warn("train",
             "--sync-bn changes nothing in one process (it is for mpirun -np K: one process normalizes "
             "its whole batch)");
  if (!cli_is_rank0()) o.quiet = 1, o.json = 0; /* under mpirun rank 0 alone prints */
  cli_train_result res;
  int rc = cli_train_run("train", &o, NULL, &res);
  if (!rc && cli_train_value(&o, "max-steps", NULL) && !o.out && !o.resume)
    cli_warn("train", "--max-steps without --out: the paused run is not saved, so no --resume can go on from it");
  int n = nn_history_count(res.hist);
  if (!rc && n > 0 && !o.quiet && !o.json) {
    const nn_epoch_record *last = nn_history_get(res.hist, n - 1);
    char pd[CLI_PRINTABLE];
    const char *dir = o.resume ? o.resume : o.out;
    if (dir) dir = cli_printable(dir, pd, sizeof pd);
    const char *ev = res.validation ? "val" : "test";
    /* best: what best.safetensors holds, as the library chose it (accuracy, or early stopping's
     * lowest loss); early stopping as the run records it (a resumed run's too) */
    char es[64];
    if (res.early_stop_delta > 0) snprintf(es, sizeof es, "%d:%g", res.early_stop, res.early_stop_delta);
    else snprintf(es, sizeof es, "%d", res.early_stop);
    const nn_epoch_record *best = res.best_epoch > 0 ? nn_history_get(res.hist, res.best_epoch - 1) : last;
    if (res.early_stop)
      printf("final: %s_acc=%.4f %s_loss=%.4f (best: epoch %d, %s_loss %.4f, %s_acc %.4f), %.0f samples/s%s%s\n", ev,
             last->test_acc, ev, last->test_loss, best->epoch, ev, best->test_loss, ev, best->test_acc,
             last->samples_per_sec, dir ? ", run saved in " : ", not saved (--out DIR keeps a run)", dir ? dir : "");
    else
      printf("final: %s_acc=%.4f %s_loss=%.4f (best %s_acc %.4f at epoch %d), %.0f samples/s%s%s\n", ev, last->test_acc,
             ev, last->test_loss, ev, best->test_acc, best->epoch, last->samples_per_sec, dir ? ", run saved in " : ", not saved (--out DIR keeps a run)",
             dir ? dir : "");
    if (res.stopped_early)
      printf(
          "stopped early after epoch %d (--early-stop %s): the model holds the weights of epoch %d, the lowest "
          "%s_loss %.4f by its rule\n",
          res.stopped_early, es, best->epoch, ev, best->test_loss);
  }
  cli_train_result_free(&res);
  return rc;
}
