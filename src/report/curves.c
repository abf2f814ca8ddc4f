/* Training curves of one or more runs in one figure, as `compare`, `plot` and the report
 * draw them: accuracy and loss per epoch (train dashed, evaluation solid, one color per
 * run), and the learning rate when a schedule changed it. */
#include <math.h>
#include <stdlib.h>

#include "base/error.h"
#include "normnet_plot.h"

/* 1 if the learning rate changed between epochs in any run (a schedule): worth a panel. */
static int lr_varies(const nn_history *const *h, int n) {
  for (int k = 0; k < n; k++)
    for (int i = 1; i < nn_history_count(h[k]); i++) {
      double a = nn_history_get(h[k], i - 1)->lr, c = nn_history_get(h[k], i)->lr;
      if (isfinite(a) && isfinite(c) && a != c) return 1;
    }
  return 0;
}

nn_status nn_plot_histories(const char *const *names, const nn_history *const *hists, int nruns, const char *title,
                            const char *png_path, const char *svg_path, char **svg, nn_error *err) {
  if (svg) *svg = NULL;
  if (nruns < 1 || !names || !hists) return nn_err_set(err, NN_ERR_ARG, "plot: no run to draw");
  int total = 0;
  for (int k = 0; k < nruns; k++) total += nn_history_count(hists[k]);
  double *buf = calloc((size_t)(total ? total : 1) * 6, sizeof *buf);
  nn_plot_line *acc = calloc((size_t)nruns * 2, sizeof *acc), *loss = calloc((size_t)nruns * 2, sizeof *loss);
  nn_plot_line *lrs = calloc((size_t)nruns, sizeof *lrs);
  nn_status st = buf && acc && loss && lrs ? NN_OK : nn_err_set(err, NN_ERR_NOMEM, "plot: out of memory");
  if (!st) {
    double *p = buf;
    for (int k = 0; k < nruns; k++) {
      int n = nn_history_count(hists[k]);
      double *x = p, *ta = x + n, *va = ta + n, *tl = va + n, *vl = tl + n, *lr = vl + n;
      p += 6 * (size_t)n;
      for (int i = 0; i < n; i++) {
        const nn_epoch_record *r = nn_history_get(hists[k], i);
        x[i] = r->epoch, ta[i] = r->train_acc, va[i] = r->test_acc, tl[i] = r->train_loss, vl[i] = r->test_loss;
        lr[i] = r->lr;
      }
      acc[2 * k] = (nn_plot_line){names[k], x, ta, n, k, 1};
      acc[2 * k + 1] = (nn_plot_line){names[k], x, va, n, k, 0};
      loss[2 * k] = (nn_plot_line){names[k], x, tl, n, k, 1};
      loss[2 * k + 1] = (nn_plot_line){names[k], x, vl, n, k, 0};
      lrs[k] = (nn_plot_line){names[k], x, lr, n, k, 0};
    }
    nn_plot_panel panels[3] = {
        {"Accuracy (train dashed, evaluation solid)", "epoch", "accuracy", acc, 2 * nruns, 0},
        {"Loss (train dashed, evaluation solid)", "epoch", "cross-entropy loss", loss, 2 * nruns, 0},
        {"Learning rate (first step of each epoch)", "epoch", "learning rate", lrs, nruns, 0},
    };
    int np = lr_varies(hists, nruns) ? 3 : 2, w = np == 3 ? 1500 : 1200;
    if (png_path || svg_path) st = nn_plot_write(panels, np, title, w, 500, png_path, svg_path, err);
    if (!st && svg) st = nn_plot_svg(panels, np, title, w, 460, svg, err);
  }
  free(acc), free(loss), free(lrs), free(buf);
  return st;
}
