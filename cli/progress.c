/* Training progress on the terminal: a Keras-like bar with the epoch's ETA and the overall
 * ETA (over the remaining epochs, and the remaining variants of compare/study) when stdout
 * is a TTY (redrawn at most 10 times a second), one plain line per epoch otherwise (and
 * under mpirun). At the
 * end of an epoch the bar is redrawn with the epoch's real figures, however it ended
 * (all batches, --max-steps, a stop request). */
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now(void) {
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
}

static void on_begin(void *user, int epoch, int epochs, int batches) {
  cli_progress *p = user;
  p->epochs = epochs;
  p->epoch = epoch;
  p->batches = batches;
  p->last_batch = 0;
  p->t_epoch = now();
  p->t_last = 0;
  if (!p->first_epoch) p->first_epoch = epoch, p->t_start = p->t_epoch;
  if (p->tty && !p->quiet && !p->json) {
    fprintf(p->out, "%s%sEpoch %d/%d", p->label ? p->label : "", p->label ? ": " : "", epoch, epochs);
    if (p->variants > 1) fprintf(p->out, " (run %d/%d)", p->variant, p->variants);
    fputc('\n', p->out);
    fflush(p->out);
  }
}

static void fmt_secs(char *buf, size_t len, double s) {
  if (!isfinite(s) || s < 0) s = 0;
  if (s < 60) snprintf(buf, len, "%.0fs", s);
  else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* Seconds left in this run and in every run still to come (compare/study variants). */
static double overall_eta(const cli_progress *p, int batch) {
  double total = (double)(p->epochs - p->first_epoch + 1) * p->batches;
  double done = (double)(p->epoch - p->first_epoch) * p->batches + batch;
  if (!(done > 0) || !(total > 0)) return 0;
  double run = (now() - p->t_start) * total / done;
  double left = run * (1 - done / total);
  if (p->variants > p->variant && p->variant > 0) left += run * (p->variants - p->variant);
  return left;
}

static void bar(cli_progress *p, int batch, int batches, double loss, double acc, int final) {
  const int width = 30;
  int done = (int)((double)width * batch / batches);
  char b[64], t[16], all[16];
  for (int i = 0; i < width; i++) b[i] = i < done ? '=' : (i == done ? '>' : '.');
  if (done >= width) b[width - 1] = '=';
  b[width] = 0;
  double el = now() - p->t_epoch;
  fmt_secs(t, sizeof t, final ? el : (batch ? el * (batches - batch) / batch : 0));
  fmt_secs(all, sizeof all, overall_eta(p, batch));
  fprintf(p->out, "\r%5d/%-5d [%s] - %s %5s - loss: %.4f - acc: %.4f", batch, batches, b, final ? "   " : "ETA:", t,
          loss, acc);
  int more = !final && (p->epoch < p->epochs || p->variants > p->variant);
  if (more) fprintf(p->out, " - all: %6s", all);
  fprintf(p->out, "\033[K");
  fflush(p->out);
}

static int on_batch(void *user, int epoch, int batch, int batches, double loss, double acc) {
  cli_progress *p = user;
  (void)epoch;
  p->last_batch = batch;
  if (!p->tty || p->quiet || p->json) return 0;
  double t = now();
  if (t - p->t_last > 0.1) {
    bar(p, batch, batches, loss, acc, 0);
    p->t_last = t;
  }
  return 0;
}

/* One line per epoch for programs: {"run": ..., "epoch": 3, ..., "val_acc": 0.87, "lr": 0.1}. */
static void json_line(cli_progress *p, const nn_epoch_record *r) {
  fprintf(p->out, "{\"run\": ");
  if (p->label) cli_json_string(p->out, p->label);
  else fputs("null", p->out);
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
  cli_json_number(p->out, "%.9g", r->lr);
  fprintf(p->out, ", \"seconds\": ");
  cli_json_number(p->out, "%.3f", r->seconds);
  fprintf(p->out, ", \"samples_per_sec\": ");
  cli_json_number(p->out, "%.1f", r->samples_per_sec);
  fprintf(p->out, "}\n");
}

static void on_end(void *user, const nn_epoch_record *r) {
  cli_progress *p = user;
  if (p->json) {
    json_line(p, r);
    fflush(p->out);
    return;
  }
  if (p->quiet) return;
  if (p->tty) {
    /* the real figures of the epoch, whichever batch it ended on */
    bar(p, p->last_batch, p->batches, r->train_loss, r->train_acc, 1);
    fprintf(p->out, " - %s_loss: %.4f - %s_acc: %.4f - %.0f samples/s\n", p->eval, r->test_loss, p->eval,
            r->test_acc, r->samples_per_sec);
  } else {
    fprintf(p->out,
            "%s%sepoch %d/%d train_loss=%.4f train_acc=%.4f %s_loss=%.4f %s_acc=%.4f time=%.1fs "
            "samples_per_s=%.0f\n",
            p->label ? p->label : "", p->label ? ": " : "", r->epoch, p->epochs, r->train_loss, r->train_acc,
            p->eval, r->test_loss, p->eval, r->test_acc, r->seconds, r->samples_per_sec);
  }
  fflush(p->out);
}

nn_fit_callbacks cli_progress_callbacks(cli_progress *p) {
  return (nn_fit_callbacks){.user = p, .on_epoch_begin = on_begin, .on_batch = on_batch, .on_epoch_end = on_end};
}
