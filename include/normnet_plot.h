/* normnet_plot.h — line plots of training histories (PNG and SVG with cairo), the
 * normnet_plot library. Link it (find_package(normnet COMPONENTS plot) -> normnet::plot, or
 * pkg-config normnet-plot) only where plots are drawn: the core library never needs cairo. */
#ifndef NORMNET_PLOT_H
#define NORMNET_PLOT_H

#include "normnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- plots (cairo: PNG and SVG from one drawing routine) -------------------------------- */
typedef struct {
  const char *label;   /* legend text; lines with the same color share one legend entry */
  const double *x, *y; /* n points; NaN y values are skipped */
  int n;
  int color;  /* palette index: one color per variant */
  int dashed; /* 1: dashed (train curves), 0: solid (validation curves) */
} nn_plot_line;
typedef struct {
  const char *title, *xlabel, *ylabel;
  const nn_plot_line *lines;
  int nlines;
  int log_x; /* logarithmic x axis (batch sizes) */
} nn_plot_panel;
/* Draw panels side by side under an overall title into png_path and/or svg_path (either
 * may be NULL). Byte-identical output for identical input. */
NN_API nn_status nn_plot_write(const nn_plot_panel *panels, int npanels, const char *title, int width,
                               int height, const char *png_path, const char *svg_path, nn_error *err);
/* The same figure as one SVG document in memory (malloc'd, NUL-terminated; free it), for
 * pages that inline their plots. */
NN_API nn_status nn_plot_svg(const nn_plot_panel *panels, int npanels, const char *title, int width, int height,
                             char **svg, nn_error *err);
/* A confusion matrix as a heat map (rows: true class, columns: predicted; shade = fraction
 * of the row, each cell with its count), class names on the axes (names may be NULL or
 * shorter than the class count: indices then). PNG and/or SVG. */
NN_API nn_status nn_plot_confusion(const nn_confusion *cm, const char *const *names, int nnames, const char *title,
                                   const char *png_path, const char *svg_path, nn_error *err);

/* Training curves of runs in one figure: accuracy and loss per epoch (train dashed,
 * evaluation solid, one color per run, names in the legend), plus the learning rate when
 * it changed between epochs. Into png_path and/or svg_path, and/or *svg (malloc'd). */
NN_API nn_status nn_plot_histories(const char *const *names, const nn_history *const *hists, int nruns,
                                   const char *title, const char *png_path, const char *svg_path, char **svg,
                                   nn_error *err);

/* ---- HTML reports ------------------------------------------------------------------------- */
typedef struct {
  const char *name;              /* heading and legend label, e.g. "with BN" */
  const char *source;            /* where it came from (a run directory), or NULL */
  const nn_history *history;     /* per-epoch records, or NULL */
  const char *recipe;            /* "key value" lines shown as a table, or NULL */
  const char *spec;              /* spec text, or NULL */
  nn_model *model;               /* the trained model: its normalization layers' tensors, or NULL */
  const nn_confusion *confusion; /* results per class, or NULL */
  const char *const *class_names;
  int nclass_names;
  const char *note; /* a line under the run's heading (e.g. that early stopping ended it), or NULL */
  int partial_last; /* 1: the history's last row is part of an epoch (a paused run,
                       nn_run_epochs_done): marked so, and no candidate for the best epoch.
                       Since 0.3.0 (a new member: the struct's size changed) */
} nn_report_run;
/* One self-contained HTML page (inline SVG plots with real text, inline styles, no script)
 * reporting the runs: their curves overlaid, a summary table (what each run was evaluated
 * on: its validation split or the test set), then per run its note, history,
 * results per class with the confusion matrix, normalization layers, recipe and spec.
 * *html receives the malloc'd page. */
NN_API nn_status nn_report_html(const char *title, const nn_report_run *runs, int nruns, char **html, nn_error *err);

#ifdef __cplusplus
}
#endif

#endif
