/* Line plots with cairo (ARCHITECTURE.md §5): one drawing routine renders into a PNG image surface
 * and an SVG surface. Layout follows the seeds' matplotlib figures: white background, an
 * overall title, panels side by side, each with a title, axis labels, 1-2-5 tick values,
 * a light grid, an axes box, tab10 line colors, dashed train curves, and a legend placed
 * in the corner that hides the fewest curve points. Points get markers when there are few
 * of them; an x axis whose values are all integers (epochs) gets integer ticks.
 *
 * Text in the SVG is real <text> (searchable, selectable): while drawing the SVG, text is
 * recorded with its device position, size, weight, color and rotation instead of being
 * drawn as glyph outlines, and written as <text> elements before </svg>.
 *
 * Byte-identical output: the PNG encoder writes no timestamps; cairo's SVG surface names
 * its page groups "surface<N>" from a process-wide counter, so the SVG is rendered into
 * memory and those ids are renumbered in order of first appearance before writing. */
#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "normnet_plot.h"

#define FONT "DejaVu Sans"
#define MAX_TICKS 64
#define MAX_SIZE 16384
#define MAX_MARKERS 60 /* series with more points are drawn as lines only */
#define PI 3.14159265358979323846

/* ---- palette (matplotlib tab10) ---------------------------------------------------------- */
static const unsigned char PALETTE[10][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

static void set_color(cairo_t *cr, int color) {
  int i = color % 10;
  if (i < 0) i += 10;
  cairo_set_source_rgb(cr, PALETTE[i][0] / 255.0, PALETTE[i][1] / 255.0, PALETTE[i][2] / 255.0);
}

/* ---- text helpers -------------------------------------------------------------------------- */
static int has_text(const char *s) { return s && s[0]; }

/* Text recorded for the SVG: an nn_strbuf attached to the cairo context as user data. */
static const cairo_user_data_key_t SINK_KEY;

/* Show s at the current point: drawn as glyphs into a PNG, recorded as <text> for an SVG. */
static void show_text(cairo_t *cr, const char *s) {
  nn_strbuf *t = cairo_get_user_data(cr, &SINK_KEY);
  if (!t) {
    cairo_show_text(cr, s);
    return;
  }
  double x, y, r = 0, g = 0, b = 0, a = 1;
  cairo_get_current_point(cr, &x, &y);
  cairo_user_to_device(cr, &x, &y);
  cairo_matrix_t fm, ctm;
  cairo_get_font_matrix(cr, &fm);
  cairo_get_matrix(cr, &ctm);
  double size = hypot(fm.xx, fm.yx), angle = atan2(ctm.yx, ctm.xx) * 180 / PI;
  cairo_pattern_get_rgba(cairo_get_source(cr), &r, &g, &b, &a);
  cairo_font_face_t *ff = cairo_get_font_face(cr);
  int bold = cairo_toy_font_face_get_weight(ff) == CAIRO_FONT_WEIGHT_BOLD;
  nn_strbuf_printf(t, "<text x=\"%.2f\" y=\"%.2f\" font-family=\"%s\" font-size=\"%.2f\"%s fill=\"#%02x%02x%02x\"", x, y,
                   FONT, size, bold ? " font-weight=\"bold\"" : "", (int)lround(r * 255), (int)lround(g * 255),
                   (int)lround(b * 255));
  if (fabs(angle) > 1e-6) nn_strbuf_printf(t, " transform=\"rotate(%.2f %.2f %.2f)\"", angle, x, y);
  nn_strbuf_printf(t, ">");
  for (const char *c = s; *c; c++) {
    switch (*c) {
      case '&': nn_strbuf_printf(t, "&amp;"); break;
      case '<': nn_strbuf_printf(t, "&lt;"); break;
      case '>': nn_strbuf_printf(t, "&gt;"); break;
      case '"': nn_strbuf_printf(t, "&quot;"); break;
      default: nn_strbuf_printf(t, "%c", *c); break;
    }
  }
  nn_strbuf_printf(t, "</text>\n");
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_rel_move_to(cr, e.x_advance, e.y_advance);
}

static void set_font(cairo_t *cr, double size, int bold) {
  cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

static double text_w(cairo_t *cr, const char *s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  return e.x_advance;
}

/* Select the largest font size <= size at which s fits in maxw (never below 40% of size);
 * returns it. */
static double fit_size(cairo_t *cr, const char *s, double size, int bold, double maxw) {
  set_font(cr, size, bold);
  double w = text_w(cr, s);
  if (w <= maxw || w <= 0) return size;
  double f = size * maxw / w;
  if (f < 0.4 * size) f = 0.4 * size;
  set_font(cr, f, bold);
  return f;
}

/* Draw s with its advance box aligned by ha (0 left, 0.5 center, 1 right) at x and its
 * ink box vertically aligned by va (0 top, 0.5 middle, 1 bottom) at y. */
static void draw_text(cairo_t *cr, const char *s, double x, double y, double ha, double va) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - ha * e.x_advance, y - e.y_bearing - va * e.height);
  show_text(cr, s);
  cairo_new_path(cr);
}

/* Baseline-aligned variant: the font's ascent (not the ink) sits below y, so labels with
 * and without descenders or tall glyphs line up. */
static void draw_text_top(cairo_t *cr, const char *s, double x, double y, double ha) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  double w = text_w(cr, s);
  cairo_move_to(cr, x - ha * w, y + fe.ascent);
  show_text(cr, s);
  cairo_new_path(cr);
}

/* ---- axes and ticks ------------------------------------------------------------------------ */
typedef struct {
  int log;              /* values are log10(x) internally */
  double lo, hi;        /* view limits in internal units */
  int n;                /* ticks */
  double at[MAX_TICKS]; /* internal units */
  char label[MAX_TICKS][24];
} axis;

static int finite_pt(const nn_plot_line *l, int i, int log_x) {
  return isfinite(l->x[i]) && isfinite(l->y[i]) && (!log_x || l->x[i] > 0);
}

/* Data range of one coordinate over a panel's usable points; returns 0 when none. */
static int data_range(const nn_plot_panel *p, int which_y, double *lo, double *hi, int *all_pow2) {
  int any = 0;
  *lo = INFINITY;
  *hi = -INFINITY;
  if (all_pow2) *all_pow2 = 1;
  for (int k = 0; k < p->nlines; k++) {
    const nn_plot_line *l = &p->lines[k];
    for (int i = 0; i < l->n; i++) {
      if (!finite_pt(l, i, p->log_x)) continue;
      double v = which_y ? l->y[i] : (p->log_x ? log10(l->x[i]) : l->x[i]);
      if (all_pow2 && !which_y) {
        int e;
        if (frexp(l->x[i], &e) != 0.5) *all_pow2 = 0;
      }
      v = fmin(fmax(v, -1e300), 1e300); /* keep hi - lo finite */
      if (v < *lo) *lo = v;
      if (v > *hi) *hi = v;
      any = 1;
    }
  }
  return any;
}

/* Whether every usable x value is an integer (epochs): ticks then step by whole numbers. */
static int integer_x(const nn_plot_panel *p) {
  int any = 0;
  for (int k = 0; k < p->nlines; k++)
    for (int i = 0; i < p->lines[k].n; i++) {
      if (!finite_pt(&p->lines[k], i, p->log_x)) continue;
      if (p->lines[k].x[i] != floor(p->lines[k].x[i])) return 0;
      any = 1;
    }
  return any;
}

/* View limits with a 5% margin; a zero-width range is padded. */
static void set_limits(axis *a, int any, double lo, double hi) {
  if (!any) {
    lo = 0; /* an empty panel shows 0..1 (1..10 on a log axis) */
    hi = 1;
  } else if (hi - lo <= 0) {
    double pad = a->log ? log10(2.0) : (lo != 0 ? fabs(lo) * 0.1 : 0.5);
    lo -= pad;
    hi += pad;
  }
  double m = 0.05 * (hi - lo);
  a->lo = lo - m;
  a->hi = hi + m;
}

static double nice_floor(double v) { /* largest 1-2-5 number <= v */
  double e = pow(10, floor(log10(v)));
  double f = v / e;
  return (f >= 5 ? 5 : f >= 2 ? 2
                              : 1) *
         e;
}

static double next_nice(double step) { /* the 1-2-5 number after step */
  double e = pow(10, floor(log10(step) + 1e-9));
  double f = step / e;
  if (f < 1.5) return 2 * e;
  if (f < 3.5) return 5 * e;
  return 10 * e;
}

static void fmt_number(char *out, size_t cap, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  if (v < 0 && cap > 4) { /* a typographic minus sign (U+2212), as matplotlib draws */
    memcpy(out, "\xe2\x88\x92", 3);
    out += 3;
    cap -= 3;
    v = -v;
  }
  double mag = fmax(fabs(v), step);
  if (mag >= 1e6 || (mag < 1e-4 && mag > 0)) { /* enough digits to tell ticks apart */
    int sig = (int)ceil(log10(mag / step) - 1e-9) + 1;
    snprintf(out, cap, "%.*g", sig < 1 ? 1 : sig > 15 ? 15
                                                      : sig,
             v);
    return;
  }
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (dec > 8) dec = 8;
  snprintf(out, cap, "%.*f", dec, v);
}

static void fmt_value(char *out, size_t cap, double v) {
  if (v >= 1 && v < 1e7 && v == floor(v)) snprintf(out, cap, "%.0f", v);
  else snprintf(out, cap, "%g", v);
}

/* Linear ticks at multiples of a 1-2-5 step: the smallest step giving at most maxticks
 * ticks (and, when maxw > 0, labels no wider than the spacing allows). */
static void linear_ticks(cairo_t *cr, axis *a, int maxticks, double span_px, double gap_px,
                         int value_space, double min_step) {
  double r = value_space ? pow(10, a->hi) - pow(10, a->lo) : a->hi - a->lo;
  double lo = value_space ? pow(10, a->lo) : a->lo, hi = value_space ? pow(10, a->hi) : a->hi;
  a->n = 0;
  if (!(r > 0) || !isfinite(r)) return;
  if (maxticks < 2) maxticks = 2;
  if (maxticks > MAX_TICKS) maxticks = MAX_TICKS;
  double step = nice_floor(r / maxticks);
  if (step < min_step) step = min_step;
  for (int tries = 0; tries < 60; tries++, step = next_nice(step)) { // NOLINT(cert-flp30-c): counted by tries
    double i0 = ceil(lo / step - 1e-9), i1 = floor(hi / step + 1e-9);
    if (i1 - i0 + 1 > maxticks) continue;
    a->n = 0;
    for (int j = 0; j <= (int)(i1 - i0) && a->n < MAX_TICKS; j++) {
      double v = (i0 + j) * step;
      if (value_space && v <= 0) continue;
      a->at[a->n] = value_space ? log10(v) : v;
      fmt_number(a->label[a->n], sizeof a->label[0], v, step);
      a->n++;
    }
    if (gap_px <= 0 || a->n < 2) return;
    /* labels must not collide: widest label plus a gap within the tick spacing */
    double spacing = span_px * (a->at[1] - a->at[0]) / (a->hi - a->lo), widest = 0;
    for (int t = 0; t < a->n; t++) widest = fmax(widest, text_w(cr, a->label[t]));
    if (widest + gap_px <= spacing) return;
  }
}

/* Whether labels fit along a horizontal axis of span_px pixels. */
static int labels_fit(cairo_t *cr, const axis *a, double span_px, double gap_px) {
  if (gap_px <= 0) return 1;
  for (int t = 1; t < a->n; t++) {
    double d = span_px * (a->at[t] - a->at[t - 1]) / (a->hi - a->lo);
    double need = 0.5 * (text_w(cr, a->label[t]) + text_w(cr, a->label[t - 1])) + gap_px;
    if (d < need) return 0;
  }
  return 1;
}

/* Log axis ticks: powers of two when every x is one, else powers of ten (falling back to
 * 1-2-5 multiples, then linear values, when the range spans too few decades). */
static void log_ticks(cairo_t *cr, axis *a, int pow2, int maxticks, double span_px, double gap_px) {
  if (maxticks < 2) maxticks = 2;
  double base = pow2 ? log10(2.0) : 1.0;
  int k0 = (int)ceil(a->lo / base - 1e-9), k1 = (int)floor(a->hi / base + 1e-9);
  for (int every = 1; every <= k1 - k0 + 1; every++) {
    a->n = 0;
    for (int k = k0; k <= k1 && a->n < MAX_TICKS; k++) {
      if (((k % every) + every) % every) continue;
      a->at[a->n] = k * base;
      if (!pow2 && (k < -4 || k > 6)) snprintf(a->label[a->n], sizeof a->label[0], "1e%d", k);
      else fmt_value(a->label[a->n], sizeof a->label[0], pow(pow2 ? 2.0 : 10.0, k));
      a->n++;
    }
    if (a->n <= maxticks && labels_fit(cr, a, span_px, gap_px)) break;
  }
  if (a->n >= 2) return;
  if (!pow2) { /* 1-2-5 x 10^k */
    a->n = 0;
    for (int k = (int)floor(a->lo) - 1; k <= (int)ceil(a->hi) && a->n < MAX_TICKS; k++) {
      static const double m[3] = {1, 2, 5};
      for (int j = 0; j < 3 && a->n < MAX_TICKS; j++) {
        double v = m[j] * pow(10.0, k), lv = log10(v);
        if (lv < a->lo - 1e-12 || lv > a->hi + 1e-12) continue;
        a->at[a->n] = lv;
        fmt_value(a->label[a->n], sizeof a->label[0], v);
        a->n++;
      }
    }
    if (a->n >= 2 && a->n <= maxticks && labels_fit(cr, a, span_px, gap_px)) return;
  }
  linear_ticks(cr, a, maxticks, span_px, gap_px, 1, 0);
}

/* ---- legend -------------------------------------------------------------------------------- */
/* Legend entries: one per distinct non-empty label, in first-appearance order. */
static int is_first_label(const nn_plot_panel *p, int k) {
  const char *s = p->lines[k].label;
  if (!has_text(s)) return 0;
  for (int j = 0; j < k; j++)
    if (p->lines[j].label && !strcmp(p->lines[j].label, s)) return 0;
  return 1;
}

static void label_styles(const nn_plot_panel *p, int k, int *dashed, int *solid) {
  *dashed = *solid = 0;
  for (int j = k; j < p->nlines; j++) {
    if (!p->lines[j].label || strcmp(p->lines[j].label, p->lines[k].label)) continue;
    if (p->lines[j].dashed) *dashed = 1;
    else *solid = 1;
  }
}

/* ---- one panel ----------------------------------------------------------------------------- */
typedef struct {
  double fs;     /* base font size */
  double lw;     /* curve line width */
  double x0, y0; /* plot area top-left */
  double w, h;   /* plot area size */
} frame;

static double px_x(const frame *f, const axis *a, double v) { return f->x0 + (v - a->lo) / (a->hi - a->lo) * f->w; }
static double px_y(const frame *f, const axis *a, double v) { return f->y0 + f->h - (v - a->lo) / (a->hi - a->lo) * f->h; }

static void set_dash(cairo_t *cr, int dashed, double lw) {
  if (dashed) {
    double d[2] = {3.7 * lw, 1.6 * lw};
    cairo_set_dash(cr, d, 2, 0);
  } else {
    cairo_set_dash(cr, NULL, 0, 0);
  }
}

static void draw_curves(cairo_t *cr, const nn_plot_panel *p, const frame *f, const axis *ax,
                        const axis *ay) {
  cairo_save(cr);
  cairo_rectangle(cr, f->x0, f->y0, f->w, f->h);
  cairo_clip(cr);
  cairo_set_line_width(cr, f->lw);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  for (int k = 0; k < p->nlines; k++) {
    const nn_plot_line *l = &p->lines[k];
    set_color(cr, l->color);
    set_dash(cr, l->dashed, f->lw);
    int run = 0; /* points in the current unbroken run */
    for (int i = 0; i < l->n; i++) {
      if (!finite_pt(l, i, p->log_x)) {
        run = 0;
        continue;
      }
      double X = px_x(f, ax, p->log_x ? log10(l->x[i]) : l->x[i]), Y = px_y(f, ay, l->y[i]);
      if (run == 0) cairo_move_to(cr, X, Y);
      else cairo_line_to(cr, X, Y);
      run++;
    }
    cairo_stroke(cr);
    /* markers on every point of a short series (validation: filled, train: hollow); isolated
     * points (single-point series, or a point between NaNs) always get a dot */
    int usable = 0;
    for (int i = 0; i < l->n; i++) usable += finite_pt(l, i, p->log_x);
    int markers = usable <= MAX_MARKERS;
    cairo_set_dash(cr, NULL, 0, 0);
    for (int i = 0; i < l->n; i++) {
      if (!finite_pt(l, i, p->log_x)) continue;
      int prev = i > 0 && finite_pt(l, i - 1, p->log_x), next = i + 1 < l->n && finite_pt(l, i + 1, p->log_x);
      if (prev || next) {
        if (!markers) continue;
        double X = px_x(f, ax, p->log_x ? log10(l->x[i]) : l->x[i]), Y = px_y(f, ay, l->y[i]);
        cairo_new_sub_path(cr);
        cairo_arc(cr, X, Y, 1.7 * f->lw, 0, 2 * PI);
        if (l->dashed) {
          cairo_set_source_rgb(cr, 1, 1, 1);
          cairo_fill_preserve(cr);
          set_color(cr, l->color);
          cairo_set_line_width(cr, 0.7 * f->lw);
          cairo_stroke(cr);
          cairo_set_line_width(cr, f->lw);
        } else {
          cairo_fill(cr);
        }
        continue;
      }
      double X = px_x(f, ax, p->log_x ? log10(l->x[i]) : l->x[i]), Y = px_y(f, ay, l->y[i]);
      cairo_new_sub_path(cr);
      cairo_arc(cr, X, Y, 1.6 * f->lw, 0, 2 * PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);
}

/* Points of the drawn curves (segments sampled every ~3 px) inside a box. */
static long curve_hits(const nn_plot_panel *p, const frame *f, const axis *ax, const axis *ay,
                       double bx, double by, double bw, double bh) {
  long hits = 0;
  for (int k = 0; k < p->nlines; k++) {
    const nn_plot_line *l = &p->lines[k];
    double pxp = 0, pyp = 0;
    int have = 0;
    for (int i = 0; i < l->n; i++) {
      if (!finite_pt(l, i, p->log_x)) {
        have = 0;
        continue;
      }
      double X = px_x(f, ax, p->log_x ? log10(l->x[i]) : l->x[i]), Y = px_y(f, ay, l->y[i]);
      int steps = 1;
      if (have) {
        double len = hypot(X - pxp, Y - pyp);
        steps = len > 3 ? (int)fmin(ceil(len / 3), 2000) : 1;
      }
      for (int s = have ? 1 : steps; s <= steps; s++) {
        double t = (double)s / steps, qx = have ? pxp + t * (X - pxp) : X, qy = have ? pyp + t * (Y - pyp) : Y;
        if (qx >= bx && qx <= bx + bw && qy >= by && qy <= by + bh) hits++;
      }
      pxp = X;
      pyp = Y;
      have = 1;
    }
  }
  return hits;
}

static void draw_legend(cairo_t *cr, const nn_plot_panel *p, const frame *f, const axis *ax,
                        const axis *ay) {
  int entries = 0, any_both = 0;
  for (int k = 0; k < p->nlines; k++) {
    if (!is_first_label(p, k)) continue;
    int d, s;
    label_styles(p, k, &d, &s);
    if (d && s) any_both = 1;
    entries++;
  }
  if (!entries) return;
  double lf = 0.9 * f->fs;
  set_font(cr, lf, 0);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  double pad = 0.5 * lf, row = 1.35 * lf, seg = 2.0 * lf, gap = 0.35 * lf;
  double sample_w = any_both ? 2 * seg + gap : seg, textw = 0;
  for (int k = 0; k < p->nlines; k++)
    if (is_first_label(p, k)) textw = fmax(textw, text_w(cr, p->lines[k].label));
  double maxtext = f->w - 2 * pad - sample_w - 0.6 * lf - 2 * 0.6 * lf;
  if (textw > maxtext && maxtext > 0) { /* shrink to fit the panel width */
    lf *= fmax(0.5, maxtext / textw);
    set_font(cr, lf, 0);
    cairo_font_extents(cr, &fe);
    textw = fmin(textw, maxtext);
    pad = 0.5 * lf;
    row = 1.35 * lf;
  }
  double bw = pad + sample_w + 0.6 * lf + textw + pad, bh = 2 * pad + entries * row - (row - lf) * 0.5;
  double m = 0.6 * lf; /* inset from the axes box */
  /* candidates in matplotlib's "best" order */
  const double pos[8][2] = {{1, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 0.5}, {0, 0.5}, {0.5, 1}, {0.5, 0}};
  double bx = 0, by = 0;
  long best = -1;
  for (int c = 0; c < 8; c++) {
    double cx = f->x0 + m + pos[c][0] * (f->w - 2 * m - bw), cy = f->y0 + m + pos[c][1] * (f->h - 2 * m - bh);
    long h = curve_hits(p, f, ax, ay, cx, cy, bw, bh);
    if (best < 0 || h < best) {
      best = h;
      bx = cx;
      by = cy;
    }
    if (h == 0) break;
  }
  /* box: white, slightly translucent, light border, rounded like matplotlib's */
  double r = 0.3 * lf;
  cairo_new_sub_path(cr);
  cairo_arc(cr, bx + bw - r, by + r, r, -PI / 2, 0);
  cairo_arc(cr, bx + bw - r, by + bh - r, r, 0, PI / 2);
  cairo_arc(cr, bx + r, by + bh - r, r, PI / 2, PI);
  cairo_arc(cr, bx + r, by + r, r, PI, 1.5 * PI);
  cairo_close_path(cr);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
  cairo_set_line_width(cr, fmax(0.8, 0.07 * lf));
  cairo_set_dash(cr, NULL, 0, 0);
  cairo_stroke(cr);

  double y = by + pad + 0.5 * lf;
  cairo_set_line_width(cr, f->lw);
  for (int k = 0; k < p->nlines; k++) {
    if (!is_first_label(p, k)) continue;
    int d, s;
    label_styles(p, k, &d, &s);
    double sx = bx + pad;
    set_color(cr, p->lines[k].color);
    if (d && s) {
      set_dash(cr, 1, f->lw);
      cairo_move_to(cr, sx, y);
      cairo_line_to(cr, sx + seg, y);
      cairo_stroke(cr);
      set_dash(cr, 0, f->lw);
      cairo_move_to(cr, sx + seg + gap, y);
      cairo_line_to(cr, sx + 2 * seg + gap, y);
      cairo_stroke(cr);
    } else {
      set_dash(cr, d, f->lw);
      double off = 0.5 * (sample_w - seg);
      cairo_move_to(cr, sx + off, y);
      cairo_line_to(cr, sx + off + seg, y);
      cairo_stroke(cr);
    }
    set_dash(cr, 0, f->lw);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_save(cr);
    cairo_rectangle(cr, bx, by, bw - pad * 0.5, bh);
    cairo_clip(cr);
    cairo_move_to(cr, sx + sample_w + 0.6 * lf, y + 0.5 * (fe.ascent - fe.descent) * 0.9);
    show_text(cr, p->lines[k].label);
    cairo_restore(cr);
    cairo_new_path(cr);
    y += row;
  }
}

static void draw_panel(cairo_t *cr, const nn_plot_panel *p, double left, double top, double pw,
                       double ph, double fs) {
  const double tick = 0.35 * fs, tickpad = 0.3 * fs;
  frame f = {.fs = fs, .lw = fmax(1.2, 0.17 * fs)};
  /* vertical layout: title above, tick labels + xlabel below */
  set_font(cr, fs, 0);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  double line_h = fe.ascent + fe.descent;
  double title_h = has_text(p->title) ? 1.15 * fs * 1.2 + 0.6 * fs : 0.4 * fs;
  double xlab_h = has_text(p->xlabel) ? line_h + 0.25 * fs : 0;
  double ylab_w = has_text(p->ylabel) ? line_h + 0.25 * fs : 0;
  f.y0 = top + title_h;
  f.h = ph - title_h - (tick + tickpad + line_h + xlab_h + 0.2 * fs);
  if (f.h < 10) f.h = 10;

  axis ax = {.log = p->log_x}, ay = {0};
  double lo, hi;
  int pow2 = 0;
  int any = data_range(p, 0, &lo, &hi, &pow2);
  pow2 = pow2 && any;
  set_limits(&ax, any, lo, hi);
  any = data_range(p, 1, &lo, &hi, NULL);
  set_limits(&ay, any, lo, hi);

  set_font(cr, 0.9 * fs, 0);
  linear_ticks(cr, &ay, (int)(f.h / (2.1 * fs)), 0, 0, 0, 0);
  double ytw = 0;
  for (int t = 0; t < ay.n; t++) ytw = fmax(ytw, text_w(cr, ay.label[t]));
  f.x0 = left + ylab_w + ytw + tickpad + tick;
  f.w = pw - (f.x0 - left) - 0.9 * fs;
  if (f.w < 10) f.w = 10;
  int maxx = (int)(f.w / (3.0 * fs));
  if (ax.log) log_ticks(cr, &ax, pow2, maxx, f.w, 1.2 * fs);
  else linear_ticks(cr, &ax, maxx, f.w, 1.2 * fs, 0, integer_x(p) ? 1.0 : 0.0);

  /* grid */
  cairo_set_dash(cr, NULL, 0, 0);
  cairo_set_line_width(cr, fmax(0.6, 0.07 * fs));
  cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
  for (int t = 0; t < ax.n; t++) {
    double X = round(px_x(&f, &ax, ax.at[t])) + 0.5;
    cairo_move_to(cr, X, f.y0);
    cairo_line_to(cr, X, f.y0 + f.h);
  }
  for (int t = 0; t < ay.n; t++) {
    double Y = round(px_y(&f, &ay, ay.at[t])) + 0.5;
    cairo_move_to(cr, f.x0, Y);
    cairo_line_to(cr, f.x0 + f.w, Y);
  }
  cairo_stroke(cr);

  int any_line = 0;
  for (int k = 0; k < p->nlines; k++)
    for (int i = 0; i < p->lines[k].n && !any_line; i++) any_line = finite_pt(&p->lines[k], i, p->log_x);
  draw_curves(cr, p, &f, &ax, &ay);

  /* axes box and outward ticks */
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, fmax(1.0, 0.08 * fs));
  cairo_rectangle(cr, f.x0, f.y0, f.w, f.h);
  cairo_stroke(cr);
  set_font(cr, 0.9 * fs, 0);
  for (int t = 0; t < ax.n; t++) {
    double X = round(px_x(&f, &ax, ax.at[t])) + 0.5;
    cairo_move_to(cr, X, f.y0 + f.h);
    cairo_line_to(cr, X, f.y0 + f.h + tick);
    cairo_stroke(cr);
    draw_text_top(cr, ax.label[t], X, f.y0 + f.h + tick + tickpad * 0.5, 0.5);
  }
  for (int t = 0; t < ay.n; t++) {
    double Y = round(px_y(&f, &ay, ay.at[t])) + 0.5;
    cairo_move_to(cr, f.x0 - tick, Y);
    cairo_line_to(cr, f.x0, Y);
    cairo_stroke(cr);
    draw_text(cr, ay.label[t], f.x0 - tick - tickpad, Y, 1, 0.5);
  }
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  if (!any_line) {
    set_font(cr, fs, 0);
    cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
    draw_text(cr, "no data", f.x0 + 0.5 * f.w, f.y0 + 0.5 * f.h, 0.5, 0.5);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  }
  /* axis labels and title */
  if (has_text(p->xlabel)) {
    fit_size(cr, p->xlabel, fs, 0, f.w);
    draw_text_top(cr, p->xlabel, f.x0 + 0.5 * f.w, f.y0 + f.h + tick + tickpad * 0.5 + line_h + 0.25 * fs, 0.5);
  }
  if (has_text(p->ylabel)) {
    fit_size(cr, p->ylabel, fs, 0, f.h);
    cairo_save(cr);
    cairo_translate(cr, left, f.y0 + 0.5 * f.h);
    cairo_rotate(cr, -PI / 2);
    draw_text_top(cr, p->ylabel, 0, 0, 0.5);
    cairo_restore(cr);
  }
  if (has_text(p->title)) {
    fit_size(cr, p->title, 1.15 * fs, 0, f.w);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, f.x0 + 0.5 * f.w - 0.5 * text_w(cr, p->title), f.y0 - 0.6 * fs);
    show_text(cr, p->title);
    cairo_new_path(cr);
  }
  draw_legend(cr, p, &f, &ax, &ay);
}

/* The one drawing routine behind both outputs. */
static void draw_figure(cairo_t *cr, const nn_plot_panel *panels, int npanels, const char *title,
                        double W, double H) {
  cairo_font_options_t *fo = cairo_font_options_create();
  cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
  cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
  cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
  cairo_set_font_options(cr, fo);
  cairo_font_options_destroy(fo);

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  int np = npanels > 0 ? npanels : 1;
  double fs = fmin(H / 32.0, W / np / 30.0); /* 13 px for a 1100x420 two-panel figure */
  fs = fmax(6.0, fmin(fs, 24.0));
  double top = 0.6 * fs;
  if (has_text(title)) {
    double ts = fit_size(cr, title, 1.35 * fs, 1, W - 2 * fs);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text_top(cr, title, 0.5 * W, 0.5 * fs, 0.5);
    top = 0.5 * fs + ts * 1.3 + 0.2 * fs;
  }
  double margin = 0.6 * fs, pw = (W - 2 * margin) / np;
  for (int i = 0; i < npanels; i++)
    draw_panel(cr, &panels[i], margin + i * pw + (i ? 0.8 * fs : 0), top, pw - (i ? 0.8 * fs : 0),
               H - top - 0.3 * fs, fs);
}

/* ---- output -------------------------------------------------------------------------------- */
typedef struct {
  unsigned char *p;
  size_t n, cap;
  int oom;
} membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int len) {
  membuf *b = closure;
  if (b->oom) return CAIRO_STATUS_NO_MEMORY;
  if (b->n + len > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + len) cap *= 2;
    unsigned char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return CAIRO_STATUS_NO_MEMORY;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, len);
  b->n += len;
  return CAIRO_STATUS_SUCCESS;
}

/* Renumber cairo's process-global "surface<N>" ids (id="surfaceN", #surfaceN) in order of
 * first appearance, so identical figures give identical files. In place: new numbers are
 * never longer than old ones (the k-th distinct id is >= k). */
static void svg_normalize(membuf *b) {
  long seen[256];
  int nseen = 0;
  static const char key[] = "surface";
  const size_t kl = sizeof key - 1;
  size_t r = 0, w = 0;
  while (r < b->n) {
    if (r > 0 && (b->p[r - 1] == '"' || b->p[r - 1] == '#') && r + kl < b->n && !memcmp(b->p + r, key, kl) &&
        b->p[r + kl] >= '0' && b->p[r + kl] <= '9') {
      size_t q = r + kl;
      long v = 0;
      while (q < b->n && b->p[q] >= '0' && b->p[q] <= '9' && v < 100000000) v = v * 10 + (b->p[q++] - '0');
      int id = -1;
      for (int i = 0; i < nseen; i++)
        if (seen[i] == v) id = i;
      if (id < 0 && nseen < 256) {
        seen[nseen] = v;
        id = nseen++;
      }
      if (id >= 0) {
        char num[24];
        int nl = snprintf(num, sizeof num, "%d", id + 1);
        if ((size_t)nl <= q - r - kl) {
          memmove(b->p + w, key, kl);
          memcpy(b->p + w + kl, num, (size_t)nl);
          w += kl + (size_t)nl;
          r = q;
          continue;
        }
      }
    }
    b->p[w++] = b->p[r++];
  }
  b->n = w;
}

/* Put the recorded <text> elements just before the closing </svg>, above the drawing. */
static cairo_status_t svg_insert_text(membuf *b, const nn_strbuf *t) {
  static const char end[] = "</svg>";
  size_t el = sizeof end - 1, at = b->n;
  while (at >= el && memcmp(b->p + at - el, end, el)) at--;
  if (at < el || !t->len) return CAIRO_STATUS_SUCCESS;
  at -= el;
  size_t tail = b->n - at;
  if (mem_write(b, (const unsigned char *)t->buf, (unsigned)t->len) != CAIRO_STATUS_SUCCESS) return CAIRO_STATUS_NO_MEMORY;
  memmove(b->p + at + t->len, b->p + at, tail);
  memcpy(b->p + at, t->buf, t->len);
  return CAIRO_STATUS_SUCCESS;
}

static nn_status write_file(const char *path, const membuf *b, nn_error *err) {
  nn_status st = nn_file_write_atomic(path, b->p, b->n, err);
  return st;
}

static nn_status cairo_fail(const char *path, cairo_status_t st, nn_error *err) {
  if (st == CAIRO_STATUS_NO_MEMORY) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory drawing the plot", path);
  return nn_err_set(err, NN_ERR_IO, "%s: cannot draw plot: %s", path, cairo_status_to_string(st));
}

/* What to draw: the panels of nn_plot_write or a confusion matrix, behind one renderer. */
typedef struct {
  const nn_plot_panel *panels;
  int npanels;
  const char *title;
  const nn_confusion *cm;
  const char *const *names;
  int nnames;
} figure_src;

static void draw_confusion(cairo_t *cr, const figure_src *f, double W, double H);

static void draw_any(cairo_t *cr, const figure_src *f, double W, double H) {
  if (f->cm) draw_confusion(cr, f, W, H);
  else draw_figure(cr, f->panels, f->npanels, f->title, W, H);
}

static nn_status render_png(const figure_src *f, int width, int height, const char *path, nn_error *err) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t *cr = cairo_create(s);
  draw_any(cr, f, width, height);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  membuf b = {0};
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png_stream(s, mem_write, &b);
  cairo_surface_destroy(s);
  nn_status rc = st == CAIRO_STATUS_SUCCESS ? write_file(path, &b, err) : cairo_fail(path, st, err);
  free(b.p);
  return rc;
}

/* The SVG document in memory (NUL-terminated in b->p). */
static cairo_status_t render_svg_mem(const figure_src *f, int width, int height, membuf *b) {
  cairo_surface_t *s = cairo_svg_surface_create_for_stream(mem_write, b, width, height);
  cairo_svg_surface_restrict_to_version(s, CAIRO_SVG_VERSION_1_1);
  cairo_svg_surface_set_document_unit(s, CAIRO_SVG_UNIT_PX); /* same size as the PNG in a browser */
  cairo_t *cr = cairo_create(s);
  nn_strbuf texts = nn_strbuf_new();
  cairo_set_user_data(cr, &SINK_KEY, &texts, NULL);
  draw_any(cr, f, width, height);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_finish(s);
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
  cairo_surface_destroy(s);
  if (st == CAIRO_STATUS_SUCCESS && (b->oom || !texts.buf)) st = CAIRO_STATUS_NO_MEMORY;
  if (st == CAIRO_STATUS_SUCCESS) {
    svg_normalize(b);
    st = svg_insert_text(b, &texts);
  }
  if (st == CAIRO_STATUS_SUCCESS) st = mem_write(b, (const unsigned char *)"", 1);
  if (st == CAIRO_STATUS_SUCCESS) b->n--; /* the NUL is not part of the file */
  free(texts.buf);
  return st;
}

static nn_status render_svg(const figure_src *f, int width, int height, const char *path, nn_error *err) {
  membuf b = {0};
  cairo_status_t st = render_svg_mem(f, width, height, &b);
  nn_status rc = st == CAIRO_STATUS_SUCCESS ? write_file(path, &b, err) : cairo_fail(path, st, err);
  free(b.p);
  return rc;
}

static nn_status check_panels(const nn_plot_panel *panels, int npanels, int width, int height, nn_error *err) {
  if (npanels < 0 || (npanels > 0 && !panels))
    return nn_err_set(err, NN_ERR_ARG, "plot: %d panels at %p", npanels, (const void *)panels);
  if (width < 16 || height < 16 || width > MAX_SIZE || height > MAX_SIZE)
    return nn_err_set(err, NN_ERR_ARG, "plot: size %dx%d is outside 16..%d", width, height, MAX_SIZE);
  for (int i = 0; i < npanels; i++) {
    const nn_plot_panel *p = &panels[i];
    if (p->nlines < 0 || (p->nlines > 0 && !p->lines))
      return nn_err_set(err, NN_ERR_ARG, "plot: panel %d has %d lines at %p", i, p->nlines, (const void *)p->lines);
    for (int k = 0; k < p->nlines; k++) {
      const nn_plot_line *l = &p->lines[k];
      if (l->n < 0 || (l->n > 0 && (!l->x || !l->y)))
        return nn_err_set(err, NN_ERR_ARG, "plot: panel %d line %d has %d points without x or y", i, k, l->n);
    }
  }
  return NN_OK;
}

nn_status nn_plot_svg(const nn_plot_panel *panels, int npanels, const char *title, int width, int height, char **svg,
                      nn_error *err) {
  *svg = NULL;
  nn_status rc = check_panels(panels, npanels, width, height, err);
  if (rc) return rc;
  figure_src f = {.panels = panels, .npanels = npanels, .title = title};
  membuf b = {0};
  cairo_status_t st = render_svg_mem(&f, width, height, &b);
  if (st != CAIRO_STATUS_SUCCESS) {
    free(b.p);
    return cairo_fail("svg", st, err);
  }
  *svg = (char *)b.p;
  return NN_OK;
}

nn_status nn_plot_write(const nn_plot_panel *panels, int npanels, const char *title, int width,
                        int height, const char *png_path, const char *svg_path, nn_error *err) {
  nn_status rc = check_panels(panels, npanels, width, height, err);
  if (rc) return rc;
  figure_src f = {.panels = panels, .npanels = npanels, .title = title};
  if (png_path) rc = render_png(&f, width, height, png_path, err);
  if (rc == NN_OK && svg_path) rc = render_svg(&f, width, height, svg_path, err);
  return rc;
}

/* ---- confusion matrix ------------------------------------------------------------------------ */
/* Cells shaded by the row's fraction (matplotlib's Blues), each with its count; rows are the
 * true classes, columns the predicted ones, names (or indices) on both axes. */
enum { CM_CELL_MIN = 14,
       CM_FONT = 12 };

static double cm_cell(int k) { return k <= 10 ? 44.0 : fmax(CM_CELL_MIN, 440.0 / k); }

static void class_name(const figure_src *f, int i, char *buf, size_t len) {
  if (f->names && i < f->nnames && f->names[i]) snprintf(buf, len, "%s", f->names[i]);
  else snprintf(buf, len, "%d", i);
}

static double cm_label_w(cairo_t *cr, const figure_src *f) {
  double w = 0;
  char name[64];
  for (int i = 0; i < f->cm->classes; i++) {
    class_name(f, i, name, sizeof name);
    w = fmax(w, text_w(cr, name));
  }
  return w;
}

static void draw_confusion(cairo_t *cr, const figure_src *f, double W, double H) {
  (void)H;
  const nn_confusion *cm = f->cm;
  int k = cm->classes;
  double cell = cm_cell(k), fs = CM_FONT;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  set_font(cr, fs, 0);
  double lw = cm_label_w(cr, f), x0 = 2.2 * fs + lw + 0.6 * fs, y0 = 3.2 * fs;
  if (has_text(f->title)) {
    fit_size(cr, f->title, 1.2 * fs, 1, W - 2 * fs);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text_top(cr, f->title, 0.5 * W, 0.6 * fs, 0.5);
  }
  char num[32], name[64];
  for (int t = 0; t < k; t++) {
    long row = 0;
    for (int p = 0; p < k; p++) row += cm->counts[(size_t)t * k + p];
    for (int p = 0; p < k; p++) {
      long c = cm->counts[(size_t)t * k + p];
      double v = row ? (double)c / (double)row : 0;
      cairo_set_source_rgb(cr, (247 - v * 239) / 255.0, (251 - v * 203) / 255.0, (255 - v * 148) / 255.0);
      cairo_rectangle(cr, x0 + p * cell, y0 + t * cell, cell, cell);
      cairo_fill(cr);
      if (cell >= 24) {
        snprintf(num, sizeof num, "%ld", c);
        fit_size(cr, num, fs * fmin(1.0, cell / 44.0), 0, cell - 4);
        if (v > 0.5) cairo_set_source_rgb(cr, 1, 1, 1);
        else cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        draw_text(cr, num, x0 + (p + 0.5) * cell, y0 + (t + 0.5) * cell, 0.5, 0.5);
      }
    }
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x0, y0, k * cell, k * cell);
  cairo_stroke(cr);
  set_font(cr, fs, 0);
  for (int i = 0; i < k; i++) {
    class_name(f, i, name, sizeof name);
    draw_text(cr, name, x0 - 0.4 * fs, y0 + (i + 0.5) * cell, 1, 0.5);
    cairo_save(cr);
    cairo_translate(cr, x0 + (i + 0.5) * cell, y0 + k * cell + 0.4 * fs);
    cairo_rotate(cr, -PI / 4);
    draw_text(cr, name, 0, 0, 1, 0.5);
    cairo_restore(cr);
  }
  cairo_save(cr);
  cairo_translate(cr, 0.4 * fs, y0 + 0.5 * k * cell);
  cairo_rotate(cr, -PI / 2);
  draw_text_top(cr, "true class", 0, 0, 0.5);
  cairo_restore(cr);
  draw_text_top(cr, "predicted class", x0 + 0.5 * k * cell, y0 + k * cell + 0.9 * fs + 0.75 * lw, 0.5);
}

nn_status nn_plot_confusion(const nn_confusion *cm, const char *const *names, int nnames, const char *title,
                            const char *png_path, const char *svg_path, nn_error *err) {
  if (!cm || cm->classes < 1 || !cm->counts) return nn_err_set(err, NN_ERR_ARG, "plot: empty confusion matrix");
  if (cm->classes > 1000) return nn_err_set(err, NN_ERR_ARG, "plot: %d classes are too many to draw", cm->classes);
  figure_src f = {.title = title, .cm = cm, .names = names, .nnames = names ? nnames : 0};
  /* the size follows the class count and the longest class name */
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 16, 16);
  cairo_t *cr = cairo_create(s);
  set_font(cr, CM_FONT, 0);
  double lw = cm_label_w(cr, &f);
  cairo_destroy(cr);
  cairo_surface_destroy(s);
  double cell = cm_cell(cm->classes), grid = cell * cm->classes;
  int width = (int)ceil(2.2 * CM_FONT + lw + 0.6 * CM_FONT + grid + 2 * CM_FONT);
  int height = (int)ceil(3.2 * CM_FONT + grid + 0.75 * lw + 3.0 * CM_FONT);
  if (width < 200) width = 200;
  if (width > MAX_SIZE || height > MAX_SIZE) return nn_err_set(err, NN_ERR_ARG, "plot: confusion matrix too large");
  nn_status rc = NN_OK;
  if (png_path) rc = render_png(&f, width, height, png_path, err);
  if (rc == NN_OK && svg_path) rc = render_svg(&f, width, height, svg_path, err);
  return rc;
}
