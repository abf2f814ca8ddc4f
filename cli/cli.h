/* The normnet command line: shared pieces of the subcommands. The CLI owns the terminal:
 * errors go to stderr as one line "normnet CMD: message", results to stdout. */
#ifndef NN_CLI_H
#define NN_CLI_H
#include <stdatomic.h>
#include <stdio.h>

#include "normnet.h"
#include "normnet_plot.h"

enum { EXIT_OK = 0,
       EXIT_FAIL = 1,
       EXIT_USAGE = 2 };

enum { CLI_TRIED = 80 };

/* Argument cursor: one "--name value" or "--name=value" at a time. */
typedef struct {
  int argc;
  char **argv;
  int i;
  const char *cmd;
  const char *val; /* value of the last matched option */
  int bad;         /* an option was given without its value */
  /* the options tried against an argument so far (the command's vocabulary, for the
   * suggestion of cli_unknown) */
  const char *tried[CLI_TRIED];
  int ntried;
} cli_args;

/* True if argv[i] is option `name` taking a value; sets a->val and advances. */
int cli_opt(cli_args *a, const char *name);
/* True if argv[i] is the flag `name` (no value); advances. */
int cli_flag(cli_args *a, const char *name);
/* The name of names[0..n) (each compared from its byte `skip` on) closest to word[0:len]:
 * at most 1 edit for a word of 3-4 letters, 2 from 5 (a swap of neighbours is one edit);
 * NULL if none is that close. */
const char *cli_closest(const char *word, size_t len, const char *const *names, int n, size_t skip);
/* Report an unknown argument and return EXIT_USAGE; an option the command has a close
 * spelling of, or another tool's name for (--batch-size, --learning-rate), gets "did you
 * mean --x?". */
int cli_unknown(cli_args *a);

/* Parse numbers with range checks; on failure print "normnet CMD: --opt: ..." and return -1. */
int cli_int(const cli_args *a, const char *opt, long min, long max, int *out);
int cli_u64(const cli_args *a, const char *opt, unsigned long long *out);
int cli_float(const cli_args *a, const char *opt, double min, double max, float *out);

/* 1 if path ends in ext (".png") after a file name, ignoring the case of ASCII letters. */
int cli_has_ext(const char *path, const char *ext);

/* Split a comma-separated option value into items. Returns the number of items, or -1
 * after an error naming opt (an empty item, more than max items, or one longer than
 * CLI_ITEM - 1 characters). */
enum { CLI_ITEM = 64 };
int cli_list(const char *cmd, const char *opt, const char *text, char (*items)[CLI_ITEM], int max);

/* Parse "MEAN,STD" for --input-norm: nothing after it, and the library's rule for a transform
 * (nn_input_norm_check: both finite, STD >= NN_INPUT_STD_MIN); -1 after printing why. */
int cli_input_norm(const cli_args *a, const char *text, nn_input_norm *out);

/* JSON output: a string with its quotes and escapes; a number (NaN/Inf as null). */
void cli_json_string(FILE *f, const char *s);
void cli_json_number(FILE *f, const char *fmt, double v);

void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "normnet CMD: warning: ..." on stderr, escaped as cli_error's messages; rank 0 alone
 * under mpirun. */
void cli_warn(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print err.msg as "normnet CMD: msg" and return EXIT_FAIL. */
int cli_fail(const char *cmd, const nn_error *err);
/* s for the terminal: control bytes (an escape sequence in a file name, a data source read
 * from a checkpoint, a class name), C1 controls (U+0080..U+009F) and bytes that are not
 * well-formed UTF-8 as \xNN, as errors write them; other UTF-8 kept. Into buf
 * (cap bytes, cut if longer), which it returns. */
const char *cli_printable(const char *s, char *buf, size_t cap);
enum { CLI_PRINTABLE = 1024 }; /* a cap that holds any path the CLI prints whole */

/* Text files: fprintf into memory (cli_text_open gives the stream), then cli_text_commit
 * writes it through the library's atomic writer (it prints the error, returns EXIT_*). */
typedef struct {
  FILE *f;
  char *buf;
  size_t len;
} cli_text;
FILE *cli_text_open(cli_text *t);
int cli_text_commit(const char *cmd, cli_text *t, const char *path);
/* The directory holding path's last component: what comes before its last '/' ("/" for
 * "/x", "." for a bare name), into buf; NULL if it does not fit in cap bytes. */
const char *cli_parent_dir(const char *path, char *buf, size_t cap);
/* Create the directories an output file's path names before its last '/' (as train --out
 * creates its run directory); 0, or EXIT_FAIL after the message. */
int cli_make_parent(const char *cmd, const char *path);
/* An output file that would replace one of a run directory's own files (its checkpoint,
 * best model, history, spec, activations, lock: `export RUN --out RUN/model.safetensors`)
 * is refused naming the option; 0 if path is safe to write. */
int cli_out_spares_run(const char *cmd, const char *opt, const char *path);
/* An output file that is the input checkpoint `in` (`fold --model X --out X` replaced its
 * own input) is refused naming the option; 0 if out is another file. */
int cli_out_spares_input(const char *cmd, const char *opt, const char *out, const char *in);

/* --model resolution: a preset name, a spec file, a checkpoint file, or a run directory
 * holding model.safetensors. */
typedef struct {
  const nn_preset *preset; /* set for presets */
  nn_spec *spec;           /* parsed spec (preset/spec file), or NULL for a checkpoint */
  char checkpoint[4096];   /* set for checkpoints/run dirs */
  char what[4200];         /* the argument as given, for messages: "--model runs/x" or "runs/x" */
} cli_model;
/* The model argument of a command: --model X, --checkpoint X (when `checkpoint` is set), or
 * a first argument without an option (*flag NULL then). Returns 1 if it took the argument. */
int cli_model_opt(cli_args *a, int checkpoint, const char **arg, const char **flag);
/* 1 if the name is a checkpoint's: safetensors, Keras and PyTorch files go to the checkpoint
 * loader (which imports the Keras ones and explains how to convert the PyTorch ones). */
int cli_is_checkpoint_name(const char *arg);
/* A preset name, spec file, checkpoint or run directory. `flag` is the option the user gave
 * it with ("--model", "--init"), named in the error messages, or NULL when it came as a
 * positional argument. */
int cli_model_resolve(const char *cmd, const char *flag, const char *arg, cli_model *out);
/* Remove "--max-params N" (any position) from argv and keep N for cli_model_resolve;
 * -1 after printing an error for a bad value. */
int cli_take_max_params(int *argc, char **argv);
void cli_model_free(cli_model *m);
/* The trained model of eval and predict: a resolved run or checkpoint, or --checkpoint ckpt
 * (may be NULL; with a preset or spec for its architecture), not both; refused (error
 * printed, EXIT_USAGE) if neither is trained. */
int cli_model_trained(const char *cmd, cli_model *cm, const char *ckpt);
/* A Keras file (HDF5, or a .keras zip) read first by a child process under a time limit
 * (keras_probe.c): EXIT_OK, or EXIT_FAIL after one line when libhdf5 crashed, hung or printed
 * reading it. Any other file: EXIT_OK at once. cli_keras_probe_child is that child's side
 * (`normnet --probe-keras FILE`). */
int cli_keras_probe(const char *cmd, const char *path);
int cli_keras_probe_child(const char *path);
/* nn_checkpoint_load under --max-params: a checkpoint's recorded spec gets the limit before
 * the model is built (spec, when given, carries its own). */
int cli_checkpoint_load(const char *cmd, const char *path, const nn_spec *spec, nn_model **out);
/* The architecture of a resolved checkpoint (cm->checkpoint: a run, a safetensors checkpoint
 * or a Keras file) as cm->spec, to train afresh (under --max-params), and its input
 * transform (*has_norm 0 if it records none). */
int cli_model_checkpoint_spec(const char *cmd, cli_model *cm, nn_input_norm *norm, int *has_norm);
/* With --max-params given: whether the checkpoint's recorded model is within it (loaded
 * under the limit and freed; an error printed if not). EXIT_OK at once without it. */
int cli_checkpoint_check(const char *cmd, const char *path);
/* Load the model of a resolved --model (building and initialising a fresh one for a spec,
 * loading the checkpoint otherwise), after applying --norm (may be NULL). */
int cli_model_build(const char *cmd, cli_model *cm, const char *norm, nn_init init, unsigned long long seed,
                    nn_model **out);
/* A loaded model's weights and statistics all finite? If a tensor holds NaN or an infinity,
 * the first is named (file `what`, tensor, index): an error and EXIT_FAIL when `refuse` (its
 * outputs would not be numbers: eval, predict, export), else a warning and EXIT_OK. */
int cli_model_finite(const char *cmd, const char *what, nn_model *m, int refuse);
/* What a trained model reads: --input-norm / --data when given (NULL if not), else what the
 * model records, else the preset's transform and fashion-mnist. *data_from says which, for
 * the output ("recorded in the model", "--data", ...). */
int cli_model_input(const char *cmd, const cli_model *cm, const nn_model *m, const char *norm_arg,
                    const char *data_arg, nn_input_norm *norm, const char **data, const char **data_from);

/* Monotonic seconds (progress, the study's elapsed time). */
double cli_now(void);

/* Progress display (TTY: a Keras-like bar with ETA; otherwise one line per epoch). */
typedef struct cli_panel cli_panel;
typedef struct {
  FILE *out;
  int tty, quiet;
  double t_epoch, t_last, t_start;
  int epochs, first_epoch, epoch, batches, last_batch;
  const char *label;
  int variant, variants; /* this run's place among compare/study runs (1-based; 0: a single run) */
  int json;              /* one JSON object per epoch instead of text */
  const char *dir;       /* the run's directory ("run" of a JSON line without a label), or NULL */
  const char *eval;      /* "val" or "test": what the evaluation columns measure */
  cli_panel *panel;      /* shared with runs training at the same time (cli_progress_join), or NULL */
  long max_steps;        /* the run ends after this many more batches (--max-steps; 0: its epochs) */
} cli_progress;
void cli_progress_init(cli_progress *p, FILE *out, int quiet, const char *label);
nn_fit_callbacks cli_progress_callbacks(cli_progress *p);
/* A line of text (no newline) on p's stream: above the panel's status line when p is on one. */
void cli_progress_say(cli_progress *p, const char *line);

/* Runs that train at the same time (compare, study) share a panel: their lines, whole and
 * one at a time, and on a TTY one status line under them for all of them (each run's epoch,
 * or its steps when --max-steps ends it, the share done, the overall ETA), redrawn at most
 * 10 times a second. `lanes` runs train at a time; `pending`: the runs to start (each join
 * takes one). `status`: draw the status line (on a TTY; not for --quiet or --json). NULL
 * without memory. */
cli_panel *cli_panel_create(FILE *out, int lanes, int pending, int status);
/* Clear the status line and free (NULL: nothing). */
void cli_panel_free(cli_panel *pn);
/* A line of text (no newline) on the panel's stream, above its status line (pn NULL: stdout). */
void cli_panel_say(cli_panel *pn, const char *line);
/* p (initialised, not yet training) reports through the panel until cli_progress_leave. */
void cli_progress_join(cli_progress *p, cli_panel *pn);
void cli_progress_leave(cli_progress *p);

/* ---- lanes: jobs side by side (compare, study; cli/lanes.c) -----------------------------
 * Job k runs as job(ctx, k, lane) on one of the lanes (threads of the CLI; the calling thread
 * is lane 0), each lane taking the next job until none is left or one failed (returned
 * non-zero). The threads are shared out among the lanes, the first taking the remainder; a
 * job hands its lane to the training it runs (cli_train_opts.lane). The jobs must keep their
 * output whole (a cli_panel, or one printf per line). */
typedef struct {
  int threads;       /* this lane's threads; the training adds the spare ones it takes */
  atomic_int *spare; /* threads of lanes with no job left: a training takes them all at its
                      * next batch (then the library chooses again if no --threads was given);
                      * NULL with one lane */
  atomic_int *stop;  /* set when a job failed: the others stop at their next batch, quietly
                      * (NULL with one lane) */
  /* with several lanes a failing job's first message is held here ("label: message": a library
   * message and a variant or run name; cli_lane_hold), and only the first failed job's in job
   * order that left one is printed (a job stopped by another's failure leaves none) */
  char error[sizeof(((nn_error *)0)->msg) + 2 * CLI_ITEM];
} cli_lane;
typedef int (*cli_lane_job)(void *ctx, int k, cli_lane *lane);
/* `threads` below is the user's --threads (0: not given, then the lanes share
 * nn_threads_max(); one lane passes 0 on, the library's choice per step). */
/* The lanes for njobs jobs: --jobs (0: one per thread), at most njobs (compare and study do
 * not run under mpirun: normnet.c refuses every command but train there). */
int cli_lanes_count(int jobs, int njobs, int threads);
/* Run jobs 0..njobs-1 on nlanes lanes sharing the threads; the code of the first failed job
 * in job order. */
int cli_lanes_run(const char *cmd, int njobs, int nlanes, int threads, cli_lane_job job, void *ctx);
/* With more than one lane, "PREFIX4 variants, 2 at a time on 2 threads (--jobs 1: one after
 * another)" on stdout. */
void cli_lanes_print(const char *prefix, int njobs, const char *what, int lanes, int threads);
/* A job's failure "label: msg" (label may be NULL) through cli_error: printed now, or held
 * for the end on a lane's thread side by side. Returns EXIT_FAIL. */
int cli_lane_fail(const char *cmd, const char *label, const char *msg);
/* On a thread running a lane's job side by side, keep msg (the job's first) for the end and
 * return 1; else 0 (cli_error prints it). A job that fails without a message (stopped because
 * another failed) leaves none, and the lanes print the first failed job's in job order that has one. */
int cli_lane_hold(const char *msg);

/* ---- training jobs (train, compare, study) ---------------------------------------------
 * Options become recipe overrides (key = value text, checked by nn_recipe_set) applied to
 * the preset's recipe in the order given; nothing is a sentinel. */
typedef struct {
  const char *key;  /* recipe key */
  const char *flag; /* the option that set it, for messages ("--lr") */
  const char *value;
} cli_override;
#define CLI_MAX_OVERRIDES 64
typedef struct {
  const char *model, *out, *resume, *label;
  cli_override ov[CLI_MAX_OVERRIDES];
  int nov;
  int threads, quiet, track_activations, overwrite;
  int model_given;       /* --model was given (refused with --resume) */
  int crash_after_epoch; /* testing aid: SIGKILL right after saving this epoch */
  int json;              /* --json: one JSON object per epoch on stdout, no text */
  int variant, variants; /* compare: this variant's place, for the overall ETA */
  /* compare/study --jobs: */
  cli_panel *panel; /* the panel shared with the runs training beside this one, or NULL */
  cli_lane *lane;   /* the lane it trains on (its threads instead of `threads`), or NULL */
} cli_train_opts;

typedef struct {
  int epoch, layer;
  double mean, std;
} cli_activation;

typedef struct {
  nn_history *hist; /* every epoch of the run, resumed ones included */
  size_t params;
  int validation;    /* evaluated on a validation split (val_*), else the test set (test_*) */
  int epochs;        /* the recipe's epochs (early stopping may end before) */
  int best_epoch;    /* what best.safetensors holds (nn_run_best_epoch) */
  int epochs_done;   /* hist's rows but a paused epoch's partial last row (nn_run_epochs_done) */
  int stopped_early; /* the epoch early stopping ended the run at, or 0 */
  int early_stop;    /* the recipe's patience (0: off) and min delta, as recorded */
  double early_stop_delta;
  cli_activation *act; /* with --track-activations */
  int nact, capact;
} cli_train_result;

/* The help of the training options (train's, and of the commands that train) to f, without
 * the entries of the options in skip (NULL-terminated, may be NULL): those a command sets
 * itself or documents its own way. */
void cli_train_options_print(FILE *f, const char *const *skip);
void cli_train_defaults(cli_train_opts *o);
/* Consume one training option at a->i: 1 if consumed (*bad set on a bad value), 0 if not. */
int cli_train_option(cli_args *a, cli_train_opts *o, int *bad);
/* Add (or replace) an override; the strings must outlive the job. */
int cli_train_override(cli_train_opts *o, const char *key, const char *flag, const char *value);
/* The value an override sets for key, or `dflt`. */
const char *cli_train_value(const cli_train_opts *o, const char *key, const char *dflt);
/* Build (or resume) the run o describes: model, data, directory; EXIT_OK or the exit code,
 * its message printed. */
int cli_train_open(const char *cmd, const cli_train_opts *o, nn_run **run);
/* Train o's run: `run` as cli_train_open made it (owned, freed here), or NULL to open it
 * first. res receives the results (cli_train_result_free), also on failure. */
int cli_train_run(const char *cmd, const cli_train_opts *o, nn_run *run, cli_train_result *res);
void cli_train_result_free(cli_train_result *r);

/* ---- under mpirun (cli/dist.c) ---------------------------------------------------------- */
int cli_dist_start(int *argc, char ***argv);
nn_comm *cli_comm(void);
int cli_is_rank0(void);
/* On ranks other than 0: keep the error line for the agreement instead of printing it (1). */
int cli_hold_message(const char *msg);
/* Collective: the exit code of the lowest failing rank (0 if none), its message printed once. */
int cli_dist_agree(int rc);
/* Agree on the exit code if that is still due, then leave MPI. */
int cli_dist_finish(int rc);

/* ---- runs read back (report, plot) -------------------------------------------------------- */
enum { CLI_MAX_RUNS = 64 };
typedef struct {
  char dir[4096];
  char name[256]; /* legend and heading: the directory's name, or a compare variant's label,
                   * distinct among the runs read (see cli_runs_read) */
  int group;      /* the directory of runs it came from (1, 2, ...), or 0 for a run named itself */
  nn_run *run;    /* read only, without its data (nn_run_open_view) */
  const nn_recipe *recipe;
  nn_model *model;
  const nn_history *hist;
} cli_run;
typedef struct {
  cli_run run[CLI_MAX_RUNS];
  int n, groups;
} cli_runs;
/* Append the run in directory `arg`, or every run in its subdirectories (a compare
 * directory); 0 or an exit status after printing the error. Then names every run read so far
 * distinctly: a run by its directory's name, a compare variant by its normalization ("with
 * BN"; by its subdirectory's name when two variants of the directory share one); names that
 * several runs would share get the parent directories that tell them apart ("a/batch" and
 * "b/batch"; "cmp-lenet/with BN": every variant of such a compare directory), the same number
 * of them for every run that needs them. */
int cli_runs_read(const char *cmd, const char *arg, cli_runs *rs);
/* The runs in dirs as one directory of runs, as cli_runs_read reads compare's output (the
 * variants of one compare or study, named by their normalization). */
int cli_runs_read_group(const char *cmd, const char *const *dirs, int n, cli_runs *rs);
void cli_runs_free(cli_runs *rs);
/* How cli_report_write works: with evaluate, each run's per-class results on its own
 * evaluation data, in batches of `batch`, on `threads` threads per model (0: the library's
 * choice); quiet leaves out the "wrote" line. */
typedef struct {
  const char *title;
  int evaluate, batch, threads, quiet;
  int group; /* dirs are the variants of one compare or study (cli_runs_read_group) */
} cli_report_opts;
/* The HTML report of the runs in dirs (nn_report_html) written to out. 0 or an exit status
 * (error printed). */
int cli_report_write(const char *cmd, const char *const *dirs, int ndirs, const char *out, const cli_report_opts *o);

int cmd_train(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_fold(int argc, char **argv);
int cmd_recalibrate(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* normnet study sync-bn (cli/cmd_study_sync_bn.c) */
int cli_study_sync_bn(int argc, char **argv);
/* Accuracy of a checkpoint on the data it was trained on in train mode (batch statistics over batches of
 * `batch`) or eval mode, on `threads` threads (0: the library's choice); *fail set with err on
 * failure (cli/cmd_study.c). */
double cli_study_eval(const char *ckpt, int train_mode, int batch, int threads, nn_error *err, int *fail);

#endif
