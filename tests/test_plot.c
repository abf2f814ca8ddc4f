/* Plots (cairo, ARCHITECTURE.md §5): a 2-panel accuracy/loss figure written as PNG and SVG is a
 * valid file of the requested size whose curves are drawn in the palette colors; repeated
 * writes are byte-identical; log-x panels and awkward data (NaN, single points, constant
 * values, empty panels) draw; an unwritable path fails with NN_ERR_IO naming it; SVG text is
 * real, escaped <text>; a 2-epoch run gets integer epoch ticks only; `normnet plot --out`
 * writes the format of the file's extension (.png, .svg) and refuses any other; its legend
 * gives every run a distinct label, with the parent directories that tell apart runs whose
 * names collide.
 * Set NN_PLOT_KEEP=dir to keep copies of the figures for looking at them. */
#define _POSIX_C_SOURCE 200809L
#include <cairo.h>
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "normnet_plot.h"
#include "cli_run.h"

/* tab10, as in src/report/plot.c */
static const int PAL[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

/* ---- temp dir and file helpers ------------------------------------------------------------- */
static char tmpdir[64];

static int setup_tmp(void **state) {
  (void)state;
  strcpy(tmpdir, "/tmp/normnet-test-plot-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static const char *const NAMES[] = {"a.png", "a.svg", "b.png", "b.svg", "log.png", "log.svg", "odd.png", "odd.svg", "text.svg", "cm.png", "cm.svg", "inline.svg"};

static int teardown_tmp(void **state) {
  (void)state;
  char p[128];
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", tmpdir, NAMES[i]);
    unlink(p);
  }
  rmdir(tmpdir);
  /* Release cairo's font and pattern caches, then fontconfig's configuration (which cairo
   * loaded), so LeakSanitizer sees a clean exit. fontconfig is not linked into the test
   * directly; libcairo has already loaded it, so look FcFini up there. */
  cairo_debug_reset_static_data();
  void *fc = dlopen("libfontconfig.so.1", RTLD_LAZY);
  if (fc) {
    void (*fc_fini)(void);
    *(void **)(&fc_fini) = dlsym(fc, "FcFini");
    if (fc_fini) fc_fini();
    dlclose(fc);
  }
  return 0;
}

static const char *tp(char *buf, const char *name) {
  snprintf(buf, 128, "%s/%s", tmpdir, name);
  return buf;
}

/* A non-empty file (malloc'd, NUL-terminated). */
static unsigned char *slurp(const char *path, size_t *n) {
  unsigned char *b = tu_read_file(path, n);
  assert_true(*n > 0);
  return b;
}

static void assert_same_bytes(const char *p1, const char *p2) {
  size_t n1, n2;
  unsigned char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(a, b, n1);
  free(a);
  free(b);
}

static void keep_copy(const char *path, const char *name) {
  const char *dir = getenv("NN_PLOT_KEEP");
  if (!dir || !*dir) return;
  size_t n;
  unsigned char *b = slurp(path, &n);
  char out[1024];
  snprintf(out, sizeof out, "%s/%s", dir, name);
  FILE *f = fopen(out, "wb");
  if (f) {
    fwrite(b, 1, n, f);
    fclose(f);
  }
  free(b);
}

/* ---- PNG checks ---------------------------------------------------------------------------- */
static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_png_header(const char *path, int w, int h) {
  size_t n;
  unsigned char *b = slurp(path, &n);
  static const unsigned char sig[8] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A};
  assert_true(n > 33);
  assert_memory_equal(b, sig, 8);
  assert_memory_equal(b + 12, "IHDR", 4);
  assert_int_equal(be32(b + 16), (uint32_t)w);
  assert_int_equal(be32(b + 20), (uint32_t)h);
  free(b);
}

typedef struct {
  long white, nonwhite;
  long color[10]; /* pixels within a small distance of each palette color */
} pixel_stats;

static pixel_stats png_stats(const char *path, int w, int h) {
  pixel_stats s = {0};
  cairo_surface_t *img = cairo_image_surface_create_from_png(path);
  assert_int_equal(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
  assert_int_equal(cairo_image_surface_get_width(img), w);
  assert_int_equal(cairo_image_surface_get_height(img), h);
  cairo_format_t fmt = cairo_image_surface_get_format(img);
  assert_true(fmt == CAIRO_FORMAT_RGB24 || fmt == CAIRO_FORMAT_ARGB32);
  cairo_surface_flush(img);
  const unsigned char *data = cairo_image_surface_get_data(img);
  int stride = cairo_image_surface_get_stride(img);
  for (int y = 0; y < h; y++) {
    const uint32_t *row = (const uint32_t *)(const void *)(data + (size_t)y * (size_t)stride);
    for (int x = 0; x < w; x++) {
      int r = (int)(row[x] >> 16 & 255), g = (int)(row[x] >> 8 & 255), b = (int)(row[x] & 255);
      if (r == 255 && g == 255 && b == 255) s.white++;
      else s.nonwhite++;
      for (int c = 0; c < 10; c++)
        if (abs(r - PAL[c][0]) + abs(g - PAL[c][1]) + abs(b - PAL[c][2]) <= 24) s.color[c]++;
    }
  }
  cairo_surface_destroy(img);
  return s;
}

static void check_svg(const char *path) {
  size_t n;
  unsigned char *b = slurp(path, &n);
  assert_true(n > 100);
  assert_memory_equal(b, "<?xml", 5);
  assert_non_null(strstr((const char *)b, "<svg"));
  assert_non_null(strstr((const char *)b, "</svg>"));
  free(b);
}

/* ---- the figure: accuracy and loss, two variants, train dashed, val solid ----------------- */
#define EPOCHS 10
typedef struct {
  double x[EPOCHS], acc[4][EPOCHS], loss[4][EPOCHS];
  nn_plot_line acc_lines[4], loss_lines[4];
  nn_plot_panel panels[2];
} figure;

static void make_figure(figure *f) {
  static const char *labels[2] = {"with BN", "without BN"};
  for (int e = 0; e < EPOCHS; e++) f->x[e] = e + 1;
  for (int v = 0; v < 2; v++)
    for (int split = 0; split < 2; split++) { /* 0 train, 1 val */
      int k = 2 * v + split;
      double speed = v == 0 ? 0.6 : 0.25, top = v == 0 ? 0.93 : 0.88;
      for (int e = 0; e < EPOCHS; e++) {
        double t = 1 - exp(-speed * (e + 1));
        f->acc[k][e] = 0.1 + (top - 0.1) * t + (split ? -0.015 * e / EPOCHS : 0.01 * e / EPOCHS) + 0.004 * sin(3.0 * e + k);
        f->loss[k][e] = 2.3 * exp(-speed * (e + 1)) + 0.2 + (split ? 0.02 * e / EPOCHS : -0.01 * e / EPOCHS);
      }
      f->acc_lines[k] = (nn_plot_line){labels[v], f->x, f->acc[k], EPOCHS, v, split == 0};
      f->loss_lines[k] = (nn_plot_line){labels[v], f->x, f->loss[k], EPOCHS, v, split == 0};
    }
  f->panels[0] = (nn_plot_panel){"Accuracy", "epoch", "accuracy", f->acc_lines, 4, 0};
  f->panels[1] = (nn_plot_panel){"Loss", "epoch", "cross-entropy loss", f->loss_lines, 4, 0};
}

static void test_two_panels(void **state) {
  (void)state;
  figure f;
  make_figure(&f);
  char p1[128], s1[128], p2[128], s2[128];
  const int W = 1100, H = 420;
  nn_error err = {0};
  assert_int_equal(nn_plot_write(f.panels, 2, "LeNet on Fashion-MNIST (dashed: train, solid: validation)", W, H,
                                 tp(p1, "a.png"), tp(s1, "a.svg"), &err),
                   NN_OK);
  check_png_header(p1, W, H);
  check_svg(s1);
  pixel_stats s = png_stats(p1, W, H);
  assert_true(s.white > (long)W * H / 2); /* a white background */
  assert_true(s.nonwhite > 2000);         /* and something drawn on it */
  /* both variant colors appear as curves (4 curves each ~ 2 px wide) */
  assert_true(s.color[0] > 400);
  assert_true(s.color[1] > 400);
  assert_true(s.color[2] < 50); /* unused palette color: absent */
  keep_copy(p1, "plot-two-panels.png");
  keep_copy(s1, "plot-two-panels.svg");

  /* identical input, identical bytes (SVG surface ids renumbered, no timestamps) */
  assert_int_equal(nn_plot_write(f.panels, 2, "LeNet on Fashion-MNIST (dashed: train, solid: validation)", W, H,
                                 tp(p2, "b.png"), tp(s2, "b.svg"), &err),
                   NN_OK);
  assert_same_bytes(p1, p2);
  assert_same_bytes(s1, s2);

  /* either output alone */
  unlink(p2);
  unlink(s2);
  assert_int_equal(nn_plot_write(f.panels, 2, NULL, W, H, p2, NULL, &err), NN_OK);
  assert_int_equal(access(s2, F_OK), -1);
  check_png_header(p2, W, H);
  assert_int_equal(nn_plot_write(f.panels, 2, NULL, W, H, NULL, s2, &err), NN_OK);
  check_svg(s2);
}

static void test_log_x(void **state) {
  (void)state;
  double bs[6] = {16, 32, 64, 128, 256, 512}, a0[6] = {0.91, 0.905, 0.9, 0.89, 0.87, 0.84},
         a1[6] = {0.88, 0.875, 0.86, 0.84, 0.8, 0.74}, lr[5] = {1e-4, 1e-3, 1e-2, 1e-1, 1},
         l0[5] = {1.9, 1.1, 0.5, 0.4, 2.2};
  nn_plot_line l1[2] = {{"BN", bs, a0, 6, 3, 0}, {"no BN", bs, a1, 6, 4, 0}};
  nn_plot_line l2[1] = {{"BN", lr, l0, 5, 3, 0}};
  nn_plot_panel p[2] = {{"Accuracy vs batch size", "batch size", "validation accuracy", l1, 2, 1},
                        {"Loss vs learning rate", "learning rate", "loss", l2, 1, 1}};
  char png[128], svg[128];
  nn_error err = {0};
  assert_int_equal(nn_plot_write(p, 2, "log x", 900, 380, tp(png, "log.png"), tp(svg, "log.svg"), &err), NN_OK);
  check_png_header(png, 900, 380);
  check_svg(svg);
  pixel_stats s = png_stats(png, 900, 380);
  assert_true(s.color[3] > 200);
  assert_true(s.color[4] > 100);
  keep_copy(png, "plot-log.png");
}

static void test_awkward_data(void **state) {
  (void)state;
  double x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, ynan[8] = {0.5, 0.6, NAN, 0.7, NAN, 0.8, 0.82, NAN},
         yflat[8] = {0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3}, one[1] = {0.42}, allnan[3] = {NAN, NAN, NAN};
  nn_plot_line a[3] = {{"gaps", x, ynan, 8, 0, 0}, {"single", x + 3, one, 1, 2, 1}, {NULL, x, allnan, 3, 5, 0}};
  nn_plot_line b[1] = {{"flat", x, yflat, 8, 1, 1}};
  nn_plot_line c[1] = {{"nothing", x, allnan, 3, 6, 0}};
  nn_plot_panel p[4] = {{"NaN gaps + single point", "epoch", "y", a, 3, 0},
                        {"constant", "epoch", "y", b, 1, 0},
                        {"empty", NULL, NULL, NULL, 0, 0},
                        {"all NaN, log x", "x", "y", c, 1, 1}};
  char png[128], svg[128];
  nn_error err = {0};
  assert_int_equal(nn_plot_write(p, 4, NULL, 1400, 360, tp(png, "odd.png"), tp(svg, "odd.svg"), &err), NN_OK);
  check_png_header(png, 1400, 360);
  check_svg(svg);
  keep_copy(png, "plot-odd.png");
  pixel_stats s = png_stats(png, 1400, 360);
  assert_true(s.color[0] > 50); /* gapped curve */
  assert_true(s.color[2] > 5);  /* single point drawn as a dot */
  assert_true(s.color[1] > 50); /* constant line */

  /* a tiny figure still draws */
  assert_int_equal(nn_plot_write(p, 4, "tiny", 40, 30, png, NULL, &err), NN_OK);
  check_png_header(png, 40, 30);
}

static void test_errors(void **state) {
  (void)state;
  figure f;
  make_figure(&f);
  char bad[160];
  snprintf(bad, sizeof bad, "%s/no-such-dir/plot.png", tmpdir);
  nn_error err = {0};
  assert_int_equal(nn_plot_write(f.panels, 2, "t", 400, 300, bad, NULL, &err), NN_ERR_IO);
  assert_int_equal(err.code, NN_ERR_IO);
  assert_non_null(strstr(err.msg, bad));
  snprintf(bad, sizeof bad, "%s/no-such-dir/plot.svg", tmpdir);
  memset(&err, 0, sizeof err);
  assert_int_equal(nn_plot_write(f.panels, 2, "t", 400, 300, NULL, bad, &err), NN_ERR_IO);
  assert_non_null(strstr(err.msg, bad));
  /* bad arguments */
  assert_int_equal(nn_plot_write(f.panels, 2, "t", 0, 300, NULL, NULL, &err), NN_ERR_ARG);
  assert_int_equal(nn_plot_write(NULL, 2, "t", 400, 300, NULL, NULL, &err), NN_ERR_ARG);
  nn_plot_line l = {"x", NULL, NULL, 3, 0, 0};
  nn_plot_panel p = {"p", "x", "y", &l, 1, 0};
  assert_int_equal(nn_plot_write(&p, 1, "t", 400, 300, NULL, NULL, &err), NN_ERR_ARG);
  /* err may be NULL */
  assert_int_equal(nn_plot_write(f.panels, 2, "t", 400, 300, "/nonexistent-dir/x.png", NULL, NULL), NN_ERR_IO);
}

static void test_svg_text_and_integer_ticks(void **state) {
  (void)state;
  double x[2] = {1, 2}, y[2] = {0.31, 0.42}, y2[2] = {0.2, 0.3};
  nn_plot_line l[2] = {{"with BN", x, y, 2, 0, 0}, {"a<b & \"c\"", x, y2, 2, 1, 1}};
  nn_plot_panel p = {"Accuracy", "epoch", "accuracy", l, 2, 0};
  char s1[128];
  nn_error err = {0};
  assert_int_equal(nn_plot_write(&p, 1, "two epochs", 600, 400, NULL, tp(s1, "text.svg"), &err), NN_OK);
  size_t n;
  char *svg = (char *)slurp(s1, &n);
  assert_non_null(strstr(svg, ">two epochs</text>"));
  assert_non_null(strstr(svg, ">with BN</text>"));
  assert_non_null(strstr(svg, ">a&lt;b &amp; &quot;c&quot;</text>"));
  assert_non_null(strstr(svg, ">epoch</text>"));
  assert_non_null(strstr(svg, "rotate(-90")); /* the y label */
  assert_non_null(strstr(svg, ">1</text>"));
  assert_non_null(strstr(svg, ">2</text>"));
  assert_null(strstr(svg, ">1.5</text>"));
  assert_null(strstr(svg, ">1.2</text>"));
  assert_null(strstr(svg, ">1.0</text>"));
  /* the text sits inside the document */
  assert_true(strstr(svg, "<text") < strstr(svg, "</svg>"));
  free(svg);
}

static void test_norm_labels(void **state) {
  (void)state;
  static const char *const cases[][2] = {{"batch", "with BN"}, {"none", "without BN"}, {"group:4", "GroupNorm (4)"}, {"layer", "LayerNorm"}, {"instance", "InstanceNorm"}, {"batch@after", "with BN, after the activation"}, {"mystery", "mystery"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[96];
    nn_norm_label(cases[i][0], buf, sizeof buf);
    assert_string_equal(buf, cases[i][1]);
  }
}

static void test_confusion_and_inline_svg(void **state) {
  (void)state;
  long counts[9] = {50, 3, 1, 4, 40, 0, 7, 2, 90};
  nn_confusion cm = {.classes = 3, .counts = counts, .samples = 197};
  const char *names[2] = {"T-shirt/top", "Trouser"}; /* fewer names than classes: index 2 */
  char p1[128], s1[128];
  nn_error err = {0};
  assert_int_equal(nn_plot_confusion(&cm, names, 2, "confusion <test>", tp(p1, "cm.png"), tp(s1, "cm.svg"), &err), NN_OK);
  unsigned w, h;
  size_t n;
  unsigned char *png = slurp(p1, &n);
  assert_memory_equal(png, "\x89PNG", 4);
  w = (unsigned)png[16] << 24 | (unsigned)png[17] << 16 | (unsigned)png[18] << 8 | png[19];
  h = (unsigned)png[20] << 24 | (unsigned)png[21] << 16 | (unsigned)png[22] << 8 | png[23];
  assert_true(w >= 200 && h >= 3 * 44);
  free(png);
  keep_copy(p1, "confusion.png");
  char *svg = (char *)slurp(s1, &n);
  assert_non_null(strstr(svg, ">T-shirt/top</text>"));
  assert_non_null(strstr(svg, ">Trouser</text>"));
  assert_non_null(strstr(svg, ">2</text>"));
  assert_non_null(strstr(svg, ">90</text>"));
  assert_non_null(strstr(svg, ">confusion &lt;test&gt;</text>"));
  assert_non_null(strstr(svg, ">predicted class</text>"));
  free(svg);
  nn_confusion empty = {0};
  assert_int_equal(nn_plot_confusion(&empty, NULL, 0, NULL, tp(p1, "cm.png"), NULL, &err), NN_ERR_ARG);
  /* the in-memory SVG equals the file nn_plot_write writes */
  double x[3] = {1, 2, 3}, y[3] = {0.5, 0.7, 0.8};
  nn_plot_line l = {"with BN", x, y, 3, 0, 0};
  nn_plot_panel p = {"Accuracy", "epoch", "accuracy", &l, 1, 0};
  char *mem = NULL;
  assert_int_equal(nn_plot_svg(&p, 1, "t", 500, 300, &mem, &err), NN_OK);
  assert_int_equal(nn_plot_write(&p, 1, "t", 500, 300, NULL, tp(s1, "inline.svg"), &err), NN_OK);
  char *file = (char *)slurp(s1, &n);
  assert_int_equal(strlen(mem), n);
  assert_memory_equal(mem, file, n);
  free(file);
  free(mem);
}

/* ---- normnet plot (the binary NN_CLI names) on runs trained on tu_cli_group_setup's data -- */
static void cli_train(const char *out) {
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args, "train --model %s/small.spec --data idx:%s/good --max-steps 2 --threads 1 --quiet --out %s/%s",
           tu_cli_dir, tu_cli_dir, tu_cli_dir, out);
  tu_cli_run_ok(&r, tu_cli_dir, args, out);
}

/* --out FILE: PNG for .png, SVG for .svg (any case), a usage error naming the file otherwise */
static void test_cli_out_format(void **state) {
  (void)state;
  const char *dir = tu_cli_dir;
  char args[2048], path[512];
  tu_run_result r;
  cli_train("run");
  snprintf(args, sizeof args, "plot %s/run --out %s/p.svg", dir, dir);
  tu_cli_run_ok(&r, dir, args, "plot --out p.svg");
  snprintf(path, sizeof path, "%s/p.svg", dir);
  check_svg(path);
  snprintf(args, sizeof args, "plot %s/run --out %s/P.SVG", dir, dir);
  tu_cli_run_ok(&r, dir, args, "plot --out P.SVG");
  snprintf(path, sizeof path, "%s/P.SVG", dir);
  check_svg(path);
  snprintf(args, sizeof args, "plot %s/run --out %s/p.png", dir, dir);
  tu_cli_run_ok(&r, dir, args, "plot --out p.png");
  snprintf(path, sizeof path, "%s/p.png", dir);
  check_png_header(path, 1200, 500);
  /* --out FILE.png --svg FILE.svg: both */
  snprintf(args, sizeof args, "plot %s/run --out %s/both.png --svg %s/both.svg", dir, dir, dir);
  tu_cli_run_ok(&r, dir, args, "plot --out both.png --svg both.svg");
  snprintf(path, sizeof path, "%s/both.png", dir);
  check_png_header(path, 1200, 500);
  snprintf(path, sizeof path, "%s/both.svg", dir);
  check_svg(path);
  /* any other extension: exit 2, one line naming the file, nothing written */
  static const char *const bad[] = {"p.txt", "p", "p.svg.gz", "png"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(args, sizeof args, "plot %s/run --out %s/%s", dir, dir, bad[i]);
    tu_cli_expect_error(dir, "", args, bad[i], ".png or .svg");
    tu_cli_run(&r, dir, "", args);
    assert_int_equal(r.status, 2);
    snprintf(path, sizeof path, "%s/%s", dir, bad[i]);
    assert_int_equal(access(path, F_OK), -1);
  }
  snprintf(args, sizeof args, "plot %s/run --out %s/a.svg --svg %s/b.svg", dir, dir, dir);
  tu_cli_expect_error(dir, "", args, "a.svg", "b.svg");
  snprintf(args, sizeof args, "plot %s/run", dir);
  tu_cli_expect_error(dir, "", args, "--out FILE.png", NULL);
}

static void cli_compare(const char *out) {
  char args[2048];
  tu_run_result r;
  snprintf(args, sizeof args,
           "compare --model %s/small.spec --data idx:%s/good --max-steps 2 --threads 1 --jobs 1 --quiet --no-report "
           "--out %s/%s",
           tu_cli_dir, tu_cli_dir, tu_cli_dir, out);
  tu_cli_run_ok(&r, tu_cli_dir, args, out);
}

/* The legend of `normnet plot ARGS --out labels.svg` (malloc'd SVG text). */
static char *cli_plot_svg(const char *runs) {
  char args[2048], path[512];
  tu_run_result r;
  snprintf(args, sizeof args, "plot %s --out %s/labels.svg", runs, tu_cli_dir);
  tu_cli_run_ok(&r, tu_cli_dir, args, args);
  snprintf(path, sizeof path, "%s/labels.svg", tu_cli_dir);
  size_t n;
  return (char *)slurp(path, &n);
}

static void expect_labels(const char *runs, const char *const *labels, int n, const char *absent) {
  char *svg = cli_plot_svg(runs), text[300];
  for (int i = 0; i < n; i++) {
    snprintf(text, sizeof text, ">%s</text>", labels[i]);
    if (!strstr(svg, text)) fail_msg("plot %s: no legend entry '%s'", runs, labels[i]);
  }
  if (absent && strstr(svg, absent)) fail_msg("plot %s: the legend has '%s'", runs, absent);
  free(svg);
}

/* Runs whose directories end alike (a/batch, b/batch), two compare directories: each run its
 * own label, with the parent directories that tell it apart; one run or one compare
 * directory keeps its plain labels. */
static void test_cli_distinct_labels(void **state) {
  (void)state;
  char runs[2048];
  const char *d = tu_cli_dir;
  cli_train("a/batch");
  cli_train("b/batch");
  cli_compare("cmp1");
  cli_compare("cmp2");
  snprintf(runs, sizeof runs, "%s/a/batch %s/b/batch", d, d);
  expect_labels(runs, (const char *[]){"a/batch", "b/batch"}, 2, ">batch</text>");
  snprintf(runs, sizeof runs, "%s/cmp1 %s/cmp2", d, d);
  expect_labels(runs, (const char *[]){"cmp1/with BN", "cmp1/without BN", "cmp2/with BN", "cmp2/without BN"},
                4, ">with BN</text>");
  /* trailing slashes name the same directories */
  snprintf(runs, sizeof runs, "%s/a/batch/ %s/b/batch/", d, d);
  expect_labels(runs, (const char *[]){"a/batch", "b/batch"}, 2, NULL);
  /* one directory named twice: numbered */
  snprintf(runs, sizeof runs, "%s/a/batch %s/a/./batch", d, d);
  expect_labels(runs, (const char *[]){"batch", "batch (2)"}, 2, "a/batch");
  /* no collision: the labels as they were */
  snprintf(runs, sizeof runs, "%s/a/batch", d);
  expect_labels(runs, (const char *[]){"batch"}, 1, "a/batch");
  snprintf(runs, sizeof runs, "%s/cmp1", d);
  expect_labels(runs, (const char *[]){"with BN", "without BN"}, 2, "cmp1/");
  snprintf(runs, sizeof runs, "%s/cmp1 %s/a/batch", d, d);
  expect_labels(runs, (const char *[]){"with BN", "without BN", "batch"}, 3, "/batch<");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_confusion_and_inline_svg),
      cmocka_unit_test(test_norm_labels),
      cmocka_unit_test(test_svg_text_and_integer_ticks),
      cmocka_unit_test(test_two_panels),
      cmocka_unit_test(test_log_x),
      cmocka_unit_test(test_awkward_data),
      cmocka_unit_test(test_errors),
      cmocka_unit_test_setup_teardown(test_cli_out_format, tu_cli_group_setup, tu_cli_group_teardown),
      cmocka_unit_test_setup_teardown(test_cli_distinct_labels, tu_cli_group_setup, tu_cli_group_teardown),
  };
  return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
