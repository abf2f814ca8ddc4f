/* The run report: one self-contained HTML page (no script, no external file: plots are
 * inline SVG with real <text>, styles inline) with, for one run or several (a compare
 * directory): the curves overlaid, a summary table, and per run the history, the results
 * per class with the confusion matrix, the normalization layers' learned parameters and
 * running statistics (what `normnet inspect` prints), the recipe and the spec. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "normnet_plot.h"

static void esc(nn_strbuf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '&': nn_strbuf_printf(b, "&amp;"); break;
      case '<': nn_strbuf_printf(b, "&lt;"); break;
      case '>': nn_strbuf_printf(b, "&gt;"); break;
      case '"': nn_strbuf_printf(b, "&quot;"); break;
      case '\'': nn_strbuf_printf(b, "&#39;"); break;
      default: nn_strbuf_printf(b, "%c", *s); break;
    }
  }
}

static void num(nn_strbuf *b, const char *fmt, double v) {
  if (isfinite(v)) nn_strbuf_printf(b, fmt, v);
  else nn_strbuf_printf(b, "&ndash;");
}

static const char STYLE[] =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:2em auto;max-width:1240px;color:#222;"
    "padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}"
    "h3{margin-top:1.4em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
    "th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}"
    "td.l,th.l{text-align:left}pre{background:#f7f7f7;padding:.8em;border:1px solid #e4e4e4;overflow:auto}"
    "figure{margin:1em 0}figure svg{max-width:100%;height:auto}.src{color:#666;font-size:.9em}"
    "table.cm td{min-width:2.6em}";

/* Curves of every run in one figure (nn_plot_histories), inline. */
static nn_status curves(nn_strbuf *b, const nn_report_run *runs, int nruns, nn_error *err) {
  const char **names = calloc((size_t)nruns, sizeof *names);
  const nn_history **hists = calloc((size_t)nruns, sizeof *hists); // NOLINT(bugprone-sizeof-expression): an array of pointers
  char *svg = NULL;
  nn_status st = names && hists ? NN_OK : nn_err_set(err, NN_ERR_NOMEM, "report: out of memory for the plots");
  for (int k = 0; !st && k < nruns; k++) names[k] = runs[k].name, hists[k] = runs[k].history;
  if (!st) st = nn_plot_histories(names, hists, nruns, NULL, NULL, NULL, &svg, err);
  if (!st) {
    const char *start = strstr(svg, "<svg"); /* inline: without the XML declaration */
    nn_strbuf_printf(b, "<figure class=\"curves\">%s</figure>\n", start ? start : svg);
  }
  free(svg), free(names), free(hists);
  return st;
}

/* The row of the best evaluation accuracy among the finished epochs (a paused run's partial
 * last row is none: the epoch goes on), the first one on ties; -1 if there is none. */
static int best_epoch(const nn_report_run *r) {
  const nn_history *h = r->history;
  int best = -1;
  for (int i = 0; i < nn_history_count(h) - (r->partial_last != 0); i++)
    if (best < 0 || nn_history_get(h, i)->test_acc > nn_history_get(h, best)->test_acc) best = i;
  return best;
}

static void summary(nn_strbuf *b, const nn_report_run *runs, int nruns) {
  nn_strbuf_printf(b,
                   "<table class=\"summary\"><tr><th class=\"l\">run</th><th>epochs</th><th>best eval acc</th>"
                   "<th>at epoch</th><th>final eval acc</th><th>final eval loss</th><th>evaluated on</th>"
                   "<th>s/epoch</th><th>samples/s</th></tr>\n");
  for (int k = 0; k < nruns; k++) {
    const nn_history *h = runs[k].history;
    const int n = nn_history_count(h), part = n && runs[k].partial_last, best = best_epoch(&runs[k]);
    nn_strbuf_printf(b, "<tr><td class=\"l\"><a href=\"#run-%d\">", k + 1);
    esc(b, runs[k].name);
    nn_strbuf_printf(b, "</a></td><td>%d%s</td>", n - part, part ? " and part of one" : "");
    if (!n) {
      nn_strbuf_printf(b, "<td colspan=\"7\">no finished epoch</td></tr>\n");
      continue;
    }
    const nn_epoch_record *last = nn_history_get(h, n - 1);
    double secs = 0, sps = 0;
    for (int i = 0; i < n; i++) secs += nn_history_get(h, i)->seconds, sps += nn_history_get(h, i)->samples_per_sec;
    if (best < 0) {
      nn_strbuf_printf(b, "<td>-</td><td>-</td>");
    } else {
      num(b, "<td>%.4f</td>", nn_history_get(h, best)->test_acc);
      nn_strbuf_printf(b, "<td>%d</td>", nn_history_get(h, best)->epoch);
    }
    num(b, "<td>%.4f</td>", last->test_acc);
    num(b, "<td>%.4f</td>", last->test_loss);
    nn_strbuf_printf(b, "<td>%s</td>", nn_history_validation(h) ? "validation split" : "test set");
    num(b, "<td>%.1f</td>", secs / n);
    num(b, "<td>%.0f</td></tr>\n", sps / n);
  }
  nn_strbuf_printf(b, "</table>\n");
}

static void history(nn_strbuf *b, const nn_report_run *run) {
  const nn_history *h = run->history;
  const int n = nn_history_count(h);
  const char *ev = nn_history_validation(h) ? "val" : "test";
  nn_strbuf_printf(b,
                   "<h3>History</h3>\n<table class=\"history\"><tr><th>epoch</th><th>train loss</th>"
                   "<th>train acc</th><th>%s loss</th><th>%s acc</th><th>lr</th><th>seconds</th>"
                   "<th>samples/s</th></tr>\n",
                   ev, ev);
  for (int i = 0; i < n; i++) {
    const nn_epoch_record *r = nn_history_get(h, i);
    nn_strbuf_printf(b, "<tr><td>%d%s</td>", r->epoch, run->partial_last && i == n - 1 ? " (paused inside)" : "");
    num(b, "<td>%.4f</td>", r->train_loss);
    num(b, "<td>%.4f</td>", r->train_acc);
    num(b, "<td>%.4f</td>", r->test_loss);
    num(b, "<td>%.4f</td>", r->test_acc);
    num(b, "<td>%.6g</td>", r->lr);
    num(b, "<td>%.1f</td>", r->seconds);
    num(b, "<td>%.0f</td></tr>\n", r->samples_per_sec);
  }
  nn_strbuf_printf(b, "</table>\n");
}

static void class_name(nn_strbuf *b, const nn_report_run *r, int i) {
  if (r->class_names && i < r->nclass_names && r->class_names[i]) esc(b, r->class_names[i]);
  else nn_strbuf_printf(b, "%d", i);
}

static void per_class(nn_strbuf *b, const nn_report_run *r) {
  const nn_confusion *cm = r->confusion;
  int k = cm->classes;
  nn_strbuf_printf(b, "<h3>Results per class</h3>\n<p>%ld samples: loss %.4f, accuracy %.4f.</p>\n", cm->samples,
                   cm->loss, cm->accuracy);
  nn_strbuf_printf(b, "<table class=\"cm\"><tr><th class=\"l\">true \\ predicted</th>");
  for (int p = 0; p < k; p++) {
    nn_strbuf_printf(b, "<th>");
    class_name(b, r, p);
    nn_strbuf_printf(b, "</th>");
  }
  nn_strbuf_printf(b, "<th>accuracy</th></tr>\n");
  for (int t = 0; t < k; t++) {
    long row = 0;
    for (int p = 0; p < k; p++) row += cm->counts[(size_t)t * k + p];
    nn_strbuf_printf(b, "<tr><th class=\"l\">");
    class_name(b, r, t);
    nn_strbuf_printf(b, "</th>");
    for (int p = 0; p < k; p++) {
      long c = cm->counts[(size_t)t * k + p];
      double v = row ? (double)c / (double)row : 0;
      nn_strbuf_printf(b, "<td style=\"background:rgb(%d,%d,%d);color:%s\">%ld</td>", (int)lround(247 - v * 239),
                       (int)lround(251 - v * 203), (int)lround(255 - v * 148), v > 0.5 ? "#fff" : "#222", c);
    }
    num(b, "<td>%.4f</td></tr>\n", nn_confusion_class_accuracy(cm, t));
  }
  nn_strbuf_printf(b, "</table>\n");
}

/* min / mean / max of every tensor of every normalization layer (inspect's table). */
static void norm_layers(nn_strbuf *b, nn_model *m) {
  int shown = 0;
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    int idx = atoi(v.name);
    nn_layer_info li;
    nn_model_layer_info(m, idx, &li);
    if (!strstr(li.kind, "norm")) continue;
    if (!shown++)
      nn_strbuf_printf(b,
                       "<h3>Normalization layers</h3>\n<table class=\"norm\"><tr><th class=\"l\">layer</th>"
                       "<th class=\"l\">tensor</th><th>count</th><th>min</th><th>mean</th><th>max</th></tr>\n");
    const char *suffix = strchr(v.name, '.') ? strchr(v.name, '.') + 1 : v.name;
    const char *what = !strcmp(suffix, "weight") ? "gamma (weight)" : !strcmp(suffix, "bias") ? "beta (bias)"
                                                                                              : suffix;
    nn_strbuf_printf(b, "<tr><td class=\"l\">%d %s (line %d)</td><td class=\"l\">%s</td>", idx, li.kind, li.line, what);
    if (!v.data) {
      nn_strbuf_printf(b, "<td>1</td><td colspan=\"3\">%lld</td></tr>\n", (long long)*v.count_value);
      continue;
    }
    double lo = INFINITY, hi = -INFINITY, s = 0;
    for (size_t i = 0; i < v.count; i++) {
      lo = fmin(lo, v.data[i]), hi = fmax(hi, v.data[i]);
      s += v.data[i];
    }
    nn_strbuf_printf(b, "<td>%zu</td>", v.count);
    num(b, "<td>%.4f</td>", lo);
    num(b, "<td>%.4f</td>", v.count ? s / (double)v.count : NAN);
    num(b, "<td>%.4f</td></tr>\n", hi);
  }
  if (shown) nn_strbuf_printf(b, "</table>\n");
  else nn_strbuf_printf(b, "<h3>Normalization layers</h3>\n<p>none</p>\n");
}

/* "key value" lines as a two-column table. */
static void recipe(nn_strbuf *b, const char *text) {
  nn_strbuf_printf(b, "<h3>Recipe</h3>\n<table class=\"recipe\">\n");
  for (const char *p = text; *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    size_t key = 0;
    while (key < len && p[key] != ' ' && p[key] != '=' && p[key] != '\t') key++;
    char k[128], v[1200];
    snprintf(k, sizeof k, "%.*s", (int)(key < sizeof k ? key : sizeof k - 1), p);
    size_t vs = key < len ? key + 1 : len;
    snprintf(v, sizeof v, "%.*s", (int)(len - vs < sizeof v ? len - vs : sizeof v - 1), p + vs);
    if (k[0]) {
      nn_strbuf_printf(b, "<tr><th class=\"l\">");
      esc(b, k);
      nn_strbuf_printf(b, "</th><td class=\"l\">");
      esc(b, v);
      nn_strbuf_printf(b, "</td></tr>\n");
    }
    p += len + (eol != NULL);
  }
  nn_strbuf_printf(b, "</table>\n");
}

nn_status nn_report_html(const char *title, const nn_report_run *runs, int nruns, char **html, nn_error *err) {
  *html = NULL;
  if (nruns < 1 || !runs) return nn_err_set(err, NN_ERR_ARG, "report: no run to report");
  nn_strbuf b = nn_strbuf_new();
  nn_strbuf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
  esc(&b, title);
  nn_strbuf_printf(&b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", STYLE);
  esc(&b, title);
  nn_strbuf_printf(&b, "</h1>\n");
  nn_status st = curves(&b, runs, nruns, err);
  if (!st && nruns > 1) {
    nn_strbuf_printf(&b, "<h2>Summary</h2>\n");
    summary(&b, runs, nruns);
  }
  for (int k = 0; !st && k < nruns; k++) {
    const nn_report_run *r = &runs[k];
    nn_strbuf_printf(&b, "<section id=\"run-%d\">\n<h2>", k + 1);
    esc(&b, r->name);
    nn_strbuf_printf(&b, "</h2>\n");
    if (r->source) {
      nn_strbuf_printf(&b, "<p class=\"src\">");
      esc(&b, r->source);
      nn_strbuf_printf(&b, "</p>\n");
    }
    if (r->note) {
      nn_strbuf_printf(&b, "<p class=\"note\">");
      esc(&b, r->note);
      nn_strbuf_printf(&b, "</p>\n");
    }
    if (nruns == 1) summary(&b, r, 1);
    if (nn_history_count(r->history)) history(&b, r);
    if (r->confusion && r->confusion->counts) per_class(&b, r);
    if (r->model) norm_layers(&b, r->model);
    if (r->recipe) recipe(&b, r->recipe);
    if (r->spec) {
      nn_strbuf_printf(&b, "<h3>Spec</h3>\n<pre>");
      esc(&b, r->spec);
      nn_strbuf_printf(&b, "</pre>\n");
    }
    nn_strbuf_printf(&b, "</section>\n");
  }
  nn_strbuf_printf(&b, "<p class=\"src\">Written by normnet report.</p>\n</body>\n</html>\n");
  if (!st && !b.buf) st = nn_err_set(err, NN_ERR_NOMEM, "report: out of memory");
  if (st) {
    free(b.buf);
    return st;
  }
  *html = b.buf;
  return NN_OK;
}
