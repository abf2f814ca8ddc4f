/* Training progress on the terminal: a Keras-like bar with the epoch's ETA and the overall
 * ETA (over the remaining epochs, and the remaining variants of compare/study) when stdout
 * is a TTY (redrawn at most 10 times a second), one plain line per epoch otherwise (and
 * under mpirun). At the end of an epoch the bar is redrawn with the epoch's real figures,
 * however it ended (all batches, --max-steps, a stop request).
 *
 * Runs training at the same time (compare --jobs) report through a panel instead: each
 * epoch's plain line, written whole under the panel's lock, and on a TTY one status line
 * under them for all the runs. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, FILE *out, int quiet, const char *label) {
  p->out = out;
  /* under mpirun a rank's stdout is a pseudo-terminal of mpirun's whatever mpirun's own
   * output is (a pipe, a log): plain lines there, so no escape codes reach a file */
  p->tty = isatty(fileno(out)) && cli_comm()->size <= 1;
  p->quiet = quiet;
  p->label = label;
  p->epochs = p->first_epoch = p->epoch = p->batches = p->last_batch = 0;
  p->t_epoch = p->t_last = p->t_start = 0;
  p->variant = p->variants = 0;
  p->json = 0;
  p->eval = "test";
  p->panel = NULL;
  p->max_steps = 0;
}

#define PANEL_RUNS 64

struct cli_panel {
  pthread_mutex_t mu;
  FILE *out;
  int tty;
  int lanes, pending;            /* runs at a time; runs not yet started */
  cli_progress *run[PANEL_RUNS]; /* the runs training now (NULL: a free place) */
  double t_last;                 /* last redraw of the status line */
  int shown;                     /* the status line is on the screen */
};

static void fmt_secs(char *buf, size_t len, double s) {
  if (!isfinite(s) || s < 0) s = 0;
  if (s < 60) snprintf(buf, len, "%.0fs", s);
  else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* The batches this run trains in this process: its epochs', or fewer when --max-steps ends it
 * first (*by_steps). */
static long run_batches(const cli_progress *p, int *by_steps) {
  const long all = (long)(p->epochs - p->first_epoch + 1) * p->batches;
  *by_steps = p->max_steps > 0 && p->max_steps < all;
  return *by_steps ? p->max_steps : all;
}

/* The share of this run's batches done, and *whole: the run's estimated seconds at its pace
 * so far (0 before the first batch). */
static double run_done(const cli_progress *p, int batch, double *whole) {
  int by_steps;
  double total = (double)run_batches(p, &by_steps);
  double done = (double)(p->epoch - p->first_epoch) * p->batches + batch;
  *whole = 0;
  if (!(done > 0) || !(total > 0)) return 0;
  *whole = (cli_now() - p->t_start) * total / done;
  return done / total;
}

/* Seconds left in this run and in every run still to come (compare/study variants). */
static double overall_eta(const cli_progress *p, int batch) {
  double run, share = run_done(p, batch, &run);
  double left = run * (1 - share);
  if (p->variants > p->variant && p->variant > 0) left += run * (p->variants - p->variant);
  return left;
}

static size_t columns(FILE *out) {
  struct winsize ws;
  if (!ioctl(fileno(out), TIOCGWINSZ, &ws) && ws.ws_col >= 20) return ws.ws_col;
  return 80;
}

/* "  12/469  [=====>....] - ETA:    3s - loss: 0.7872 - acc: 0.7123 - all: 21s", fitted to the
 * terminal's width by whole fields: the bar narrows (30 down to 10 marks), then the overall
 * ETA goes, then the bar, then the last fields; never a field cut in the middle. (A line
 * redrawn in place must not wrap: \r would not go back to its start. The final one, kept
 * with its epoch's figures after it, may.) */
static void bar(cli_progress *p, int batch, int batches, double loss, double acc, int final) {
  char t[16], all[16], tail[128], line[256];
  double el = cli_now() - p->t_epoch;
  fmt_secs(t, sizeof t, final ? el : (batch ? el * (batches - batch) / batch : 0));
  fmt_secs(all, sizeof all, overall_eta(p, batch));
  const int more = !final && (p->epoch < p->epochs || p->variants > p->variant);
  const int cut = final ? 1 << 20 : (int)columns(p->out) - 1; /* the final line, kept, may wrap */
  int head = snprintf(line, sizeof line, "%5d/%-5d", batch, batches), with_all = more, width = 30;
  for (;;) {
    int n = snprintf(tail, sizeof tail, " - %s %5s - loss: %.4f - acc: %.4f%s%s", final ? "   " : "ETA:", t, loss, acc,
                     with_all ? " - all: " : "", with_all ? all : "");
    width = cut - head - 3 - n; /* " [" and "]" */
    if (width >= 10 || !with_all) break;
    with_all = 0;
  }
  if (width > 30) width = 30;
  char *q = line + head;
  if (width >= 10) {
    const int done = (int)((double)width * batch / batches);
    *q++ = ' ', *q++ = '[';
    for (int i = 0; i < width; i++) *q++ = i < done || (i == width - 1 && done >= width) ? '=' : (i == done ? '>' : '.');
    *q++ = ']';
  }
  snprintf(q, sizeof line - (size_t)(q - line), "%s", tail);
  if ((int)strlen(line) > cut) { /* a narrow terminal: the fields that fit whole */
    line[cut] = 0;
    char *sep = strstr(line, " - "), *last = NULL;
    for (; sep; sep = strstr(sep + 1, " - ")) last = sep;
    if (last) *last = 0;
  }
  fprintf(p->out, "\r%s\033[K", line);
  fflush(p->out);
}

/* ---- the panel of runs training at the same time --------------------------------------- */
cli_panel *cli_panel_create(FILE *out, int lanes, int pending, int status) {
  cli_panel *pn = calloc(1, sizeof *pn);
  if (!pn) return NULL;
  if (pthread_mutex_init(&pn->mu, NULL)) {
    free(pn);
    return NULL;
  }
  pn->out = out;
  pn->tty = status && isatty(fileno(out)) && cli_comm()->size <= 1;
  pn->lanes = lanes > 0 ? lanes : 1;
  pn->pending = pending > 0 ? pending : 0;
  return pn;
}

static void panel_clear(cli_panel *pn) {
  if (!pn->shown) return;
  fputs("\r\033[K", pn->out);
  pn->shown = 0;
}

void cli_panel_free(cli_panel *pn) {
  if (!pn) return;
  panel_clear(pn);
  fflush(pn->out);
  pthread_mutex_destroy(&pn->mu);
  free(pn);
}

/* The status line, lock held: "batch 3/10 [===>......] | none 3/10 [==>.......] | all: 41s",
 * cut at the terminal's width so that \r returns to its start. */
static void panel_draw(cli_panel *pn) {
  char line[1024];
  size_t len = 0;
  double left = 0, longest = 0;
  for (int i = 0; i < PANEL_RUNS; i++) {
    const cli_progress *p = pn->run[i];
    if (!p || !p->batches) continue;
    double whole, share = run_done(p, p->last_batch, &whole);
    if (whole * (1 - share) > left) left = whole * (1 - share);
    if (whole > longest) longest = whole;
    char b[11];
    int done = (int)(10 * share);
    for (int k = 0; k < 10; k++) b[k] = k < done ? '=' : (k == done ? '>' : '.');
    b[10] = 0;
    const char *sep = len ? " | " : "", *label = p->label ? p->label : "";
    const long steps = (long)(p->epoch - p->first_epoch) * p->batches + p->last_batch;
    int by_steps;
    const long total = run_batches(p, &by_steps);
    int n = by_steps ? snprintf(line + len, sizeof line - len, "%s%s [%s] %ld/%ld", sep, label, b, steps, total)
                     : snprintf(line + len, sizeof line - len, "%s%s %d/%d [%s]", sep, label, p->epoch, p->epochs, b);
    if (n < 0 || (size_t)n >= sizeof line - len) break;
    len += (size_t)n;
  }
  if (!len) return;
  /* runs still to start: the lanes take them in turns, each as long as the longest so far */
  int turns = (pn->pending + pn->lanes - 1) / pn->lanes;
  left += longest * turns;
  char all[16];
  fmt_secs(all, sizeof all, left);
  int n = snprintf(line + len, sizeof line - len, " | all: %s", all);
  if (n > 0 && (size_t)n < sizeof line - len) len += (size_t)n;
  size_t width = columns(pn->out) - 1;
  if (len > width && width < sizeof line) line[width] = 0;
  fprintf(pn->out, "\r%s\033[K", line);
  fflush(pn->out);
  pn->shown = 1;
  pn->t_last = cli_now();
}

void cli_progress_join(cli_progress *p, cli_panel *pn) {
  if (!pn) return;
  pthread_mutex_lock(&pn->mu);
  p->panel = pn;
  for (int i = 0; i < PANEL_RUNS; i++)
    if (!pn->run[i]) {
      pn->run[i] = p;
      break;
    }
  if (pn->pending > 0) pn->pending--;
  pthread_mutex_unlock(&pn->mu);
}

void cli_progress_leave(cli_progress *p) {
  cli_panel *pn = p->panel;
  if (!pn) return;
  pthread_mutex_lock(&pn->mu);
  for (int i = 0; i < PANEL_RUNS; i++)
    if (pn->run[i] == p) pn->run[i] = NULL;
  panel_clear(pn); /* the others redraw it at their next batch: a message may follow first */
  fflush(pn->out);
  p->panel = NULL;
  pthread_mutex_unlock(&pn->mu);
}

void cli_panel_say(cli_panel *pn, const char *line) {
  if (!pn) {
    printf("%s\n", line);
    fflush(stdout);
    return;
  }
  pthread_mutex_lock(&pn->mu);
  panel_clear(pn);
  fprintf(pn->out, "%s\n", line);
  fflush(pn->out);
  if (pn->tty) panel_draw(pn);
  pthread_mutex_unlock(&pn->mu);
}

void cli_progress_say(cli_progress *p, const char *line) {
  if (p->panel) {
    cli_panel_say(p->panel, line);
    return;
  }
  fprintf(p->out, "%s\n", line);
  fflush(p->out);
}

/* ---- the callbacks -------------------------------------------------------------------- */
static void on_begin(void *user, int epoch, int epochs, int batches) {
  cli_progress *p = user;
  cli_panel *pn = p->panel; /* its status line reads these fields: written under its lock */
  if (pn) pthread_mutex_lock(&pn->mu);
  p->epochs = epochs;
  p->epoch = epoch;
  p->batches = batches;
  p->last_batch = 0;
  p->t_epoch = cli_now();
  p->t_last = 0;
  if (!p->first_epoch) p->first_epoch = epoch, p->t_start = p->t_epoch;
  if (pn) {
    pthread_mutex_unlock(&pn->mu);
    return;
  }
  if (p->tty && !p->quiet && !p->json) {
    fprintf(p->out, "%s%sEpoch %d/%d", p->label ? p->label : "", p->label ? ": " : "", epoch, epochs);
    if (p->variants > 1) fprintf(p->out, " (run %d/%d)", p->variant, p->variants);
    fputc('\n', p->out);
    fflush(p->out);
  }
}

static int on_batch(void *user, int epoch, int batch, int batches, double loss, double acc) {
  cli_progress *p = user;
  cli_panel *pn = p->panel;
  (void)epoch;
  if (pn) {
    pthread_mutex_lock(&pn->mu);
    p->last_batch = batch;
    if (pn->tty && cli_now() - pn->t_last > 0.1) panel_draw(pn);
    pthread_mutex_unlock(&pn->mu);
    return 0;
  }
  p->last_batch = batch;
  if (!p->tty || p->quiet || p->json) return 0;
  double t = cli_now();
  if (t - p->t_last > 0.1) {
    bar(p, batch, batches, loss, acc, 0);
    p->t_last = t;
  }
  return 0;
}

/* One line per epoch for programs: {"run": ..., "dir": ..., "epoch": 3, ..., "val_acc": 0.87, "lr": 0.1}. */
static void json_line(cli_progress *p, const nn_epoch_record *r) {
  fprintf(p->out, "{\"run\": ");
  const char *run = p->label ? p->label : p->dir;
  if (run) cli_json_string(p->out, run);
  else fputs("null", p->out); /* a rank without the run's directory */
  if (p->dir) {               /* where the run is (a compare variant's: DIR/batch-after for batch@after) */
    fprintf(p->out, ", \"dir\": ");
    cli_json_string(p->out, p->dir);
  }
  fprintf(p->out, ", \"epoch\": %d, \"epochs\": %d, \"batches\": %d, \"train_loss\": ", r->epoch, p->epochs,
          p->last_batch);
  cli_json_number(p->out, "%.6f", r->train_loss);
  fprintf(p->out, ", \"train_acc\": ");
  cli_json_number(p->out, "%.6f", r->train_acc);
  fprintf(p->out, ", \"%s_loss\": ", p->eval);
  cli_json_number(p->out, "%.6f", r->test_loss);
  fprintf(p->out, ", \"%s_acc\": ", p->eval);
  cli_json_number(p->out, "%.6f", r->test_acc);
  fprintf(p->out, ", \"lr\": ");
  char lr[32]; /* the optimizer's float, as history.csv writes it */
  fputs(isfinite(r->lr) ? nn_fmt_float(lr, sizeof lr, (float)r->lr) : "null", p->out);
  fprintf(p->out, ", \"seconds\": ");
  cli_json_number(p->out, "%.3f", r->seconds);
  fprintf(p->out, ", \"samples_per_sec\": ");
  cli_json_number(p->out, "%.1f", r->samples_per_sec);
  fprintf(p->out, "}\n");
}

static void on_end(void *user, const nn_epoch_record *r) {
  cli_progress *p = user;
  cli_panel *pn = p->panel;
  if (pn) {
    pthread_mutex_lock(&pn->mu);
    panel_clear(pn);
  }
  /* --max-steps ended the epoch before its last batch: its row is a part (resumed, the epoch
   * goes on from there) */
  char part[96] = "";
  if (p->last_batch > 0 && p->last_batch < p->batches)
    snprintf(part, sizeof part, " (paused after batch %d of %d)", p->last_batch, p->batches);
  if (p->json) {
    json_line(p, r);
  } else if (p->quiet) {
  } else if (p->tty && !pn) {
    /* the real figures of the epoch, whichever batch it ended on */
    bar(p, p->last_batch, p->batches, r->train_loss, r->train_acc, 1);
    fprintf(p->out, " - %s_loss: %.4f - %s_acc: %.4f - %.0f samples/s%s\n", p->eval, r->test_loss, p->eval,
            r->test_acc, r->samples_per_sec, part);
  } else {
    fprintf(p->out,
            "%s%sepoch %d/%d train_loss=%.4f train_acc=%.4f %s_loss=%.4f %s_acc=%.4f time=%.1fs "
            "samples_per_s=%.0f%s\n",
            p->label ? p->label : "", p->label ? ": " : "", r->epoch, p->epochs, r->train_loss, r->train_acc,
            p->eval, r->test_loss, p->eval, r->test_acc, r->seconds, r->samples_per_sec, part);
  }
  fflush(p->out);
  if (pn) {
    if (pn->tty) panel_draw(pn);
    pthread_mutex_unlock(&pn->mu);
  }
}

nn_fit_callbacks cli_progress_callbacks(cli_progress *p) {
  return (nn_fit_callbacks){.user = p, .on_epoch_begin = on_begin, .on_batch = on_batch, .on_epoch_end = on_end};
}
