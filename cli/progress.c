/* Training progress on the terminal: a Keras-like bar with ETA when stdout is a TTY
 * (redrawn at most 10 times a second), one plain line per epoch otherwise. */
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
  p->tty = isatty(fileno(out));
  p->quiet = quiet;
  p->label = label;
  p->epochs = 0;
  p->t_epoch = p->t_last = 0;
}

static void on_begin(void *user, int epoch, int epochs, int batches) {
  cli_progress *p = user;
  (void)batches;
  p->epochs = epochs;
  p->t_epoch = now();
  p->t_last = 0;
  if (p->tty && !p->quiet) {
    fprintf(p->out, "%s%sEpoch %d/%d\n", p->label ? p->label : "", p->label ? ": " : "", epoch, epochs);
    fflush(p->out);
  }
}

static void bar(cli_progress *p, int batch, int batches, double loss, double acc, int final) {
  const int width = 30;
  int done = (int)((double)width * batch / batches);
  char b[64];
  for (int i = 0; i < width; i++) b[i] = i < done ? '=' : (i == done ? '>' : '.');
  if (done >= width) b[width - 1] = '=';
  b[width] = 0;
  double el = now() - p->t_epoch;
  double eta = batch ? el * (batches - batch) / batch : 0;
  fprintf(p->out, "\r%5d/%-5d [%s] - %s %3.0fs - loss: %.4f - acc: %.4f", batch, batches, b,
          final ? "   " : "ETA:", final ? el : eta, loss, acc);
  fflush(p->out);
}

static int on_batch(void *user, int epoch, int batch, int batches, double loss, double acc) {
  cli_progress *p = user;
  (void)epoch;
  if (!p->tty || p->quiet) return 0;
  double t = now();
  if (batch == batches || t - p->t_last > 0.1) {
    bar(p, batch, batches, loss, acc, batch == batches);
    p->t_last = t;
  }
  return 0;
}

static void on_end(void *user, const nn_epoch_record *r) {
  cli_progress *p = user;
  if (p->quiet) return;
  if (p->tty) {
    fprintf(p->out, " - test_loss: %.4f - test_acc: %.4f - %.0f samples/s\n", r->test_loss, r->test_acc,
            r->samples_per_sec);
  } else {
    fprintf(p->out,
            "%s%sepoch %d/%d train_loss=%.4f train_acc=%.4f test_loss=%.4f test_acc=%.4f time=%.1fs "
            "samples_per_s=%.0f\n",
            p->label ? p->label : "", p->label ? ": " : "", r->epoch, p->epochs, r->train_loss, r->train_acc,
            r->test_loss, r->test_acc, r->seconds, r->samples_per_sec);
  }
  fflush(p->out);
}

nn_fit_callbacks cli_progress_callbacks(cli_progress *p) {
  return (nn_fit_callbacks){.user = p, .on_epoch_begin = on_begin, .on_batch = on_batch, .on_epoch_end = on_end};
}
