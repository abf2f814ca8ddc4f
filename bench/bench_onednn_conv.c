/* normnet's convolution kernels against oneDNN's own convolution primitives, on the presets'
 * shapes, side by side in one process (issue 12: "pick per shape between im2col + GEMM, a
 * direct convolution and oneDNN's convolution primitives").
 *
 *   bench_onednn_conv [--threads T] [--seconds S]
 *
 * Per shape and pass (forward; backward data; backward weights + bias), the time per call of
 * normnet's kernel (the algorithm the library picks for the shape) and of oneDNN's primitive
 * (the implementation oneDNN picks, printed, e.g. jit:avx2), the latter once with the reorders
 * that take our N,C,H,W tensors to the primitive's blocked layouts and back (what normnet
 * would run, its tensors being plain) and once without them (the primitive alone). The two
 * sides alternate within each of 7 repetitions; each figure is the median. Then, for the
 * primitive: whether its result at T threads is bit for bit its result at 1 thread (normnet
 * promises results independent of the thread count), and its largest difference from
 * normnet's result relative to the tensor's largest magnitude. One thread: process CPU time;
 * more: wall time. Written for oneDNN 2.x (Debian 12's 2.6), whose operation descriptors
 * oneDNN 3 removed; built against oneDNN 3 it says so and exits. */
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_version.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kernels/kernels.h"

#if DNNL_VERSION_MAJOR == 2 /* oneDNN 3 replaced the operation descriptors used below */

#define REPS 7
#define MAX_REORDERS 4

static double g_seconds = 0.4;
static int g_cpu_clock; /* one thread: time by the process's CPU time */

static double clock_now(void) { return g_cpu_clock ? cpu_now() : now(); }

static void check(dnnl_status_t s, const char *what) {
  if (s != dnnl_success) {
    fprintf(stderr, "bench_onednn_conv: %s failed (oneDNN status %d)\n", what, (int)s);
    exit(1);
  }
}

static float *fbuf(size_t n) {
  float *p = calloc(n ? n : 1, sizeof *p);
  if (!p) {
    fprintf(stderr, "bench_onednn_conv: out of memory\n");
    exit(1);
  }
  return p;
}

/* A oneDNN primitive with its arguments, and the reorders that run before it (our tensors
 * into its layouts) and after it (its outputs back into ours). */
typedef struct {
  dnnl_primitive_t prim;
  dnnl_exec_arg_t args[5];
  int nargs;
  dnnl_primitive_t pre[MAX_REORDERS], post[MAX_REORDERS];
  dnnl_exec_arg_t pre_args[MAX_REORDERS][2], post_args[MAX_REORDERS][2];
  int npre, npost;
  dnnl_memory_t owned[2 * MAX_REORDERS + 5];
  void *bufs[2 * MAX_REORDERS + 5];
  int nowned;
  char impl[64];
} op;

static dnnl_memory_t op_memory(op *o, dnnl_engine_t eng, const dnnl_memory_desc_t *md, void *data) {
  void *buf = data;
  if (!buf) {
    size_t bytes = dnnl_memory_desc_get_size(md);
    buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!buf) check(dnnl_out_of_memory, "aligned_alloc");
    o->bufs[o->nowned] = buf;
  } else {
    o->bufs[o->nowned] = NULL;
  }
  dnnl_memory_t m;
  check(dnnl_memory_create(&m, md, eng, buf), "dnnl_memory_create");
  o->owned[o->nowned++] = m;
  return m;
}

static dnnl_primitive_t reorder(dnnl_engine_t eng, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
  dnnl_primitive_desc_t pd;
  check(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL), "reorder descriptor");
  dnnl_primitive_t p;
  check(dnnl_primitive_create(&p, pd), "reorder primitive");
  dnnl_primitive_desc_destroy(pd);
  return p;
}

/* Argument `arg` of the primitive: the primitive's own layout (`query`, `index`) of pd, fed
 * from (input) or written back to (output) our plain tensor `data` of layout `plain`. */
static void op_arg(op *o, dnnl_engine_t eng, const_dnnl_primitive_desc_t pd, dnnl_query_t query, int index, int arg,
                   const dnnl_memory_desc_t *plain, float *data, int output) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, query, index);
  dnnl_memory_t user = op_memory(o, eng, plain, data), mem = user;
  if (!dnnl_memory_desc_equal(md, plain)) {
    mem = op_memory(o, eng, md, NULL);
    if (output) {
      o->post[o->npost] = reorder(eng, md, plain);
      o->post_args[o->npost][0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, mem};
      o->post_args[o->npost++][1] = (dnnl_exec_arg_t){DNNL_ARG_TO, user};
    } else {
      o->pre[o->npre] = reorder(eng, plain, md);
      o->pre_args[o->npre][0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, user};
      o->pre_args[o->npre++][1] = (dnnl_exec_arg_t){DNNL_ARG_TO, mem};
    }
  }
  o->args[o->nargs++] = (dnnl_exec_arg_t){arg, mem};
}

static void op_finish(op *o, dnnl_primitive_desc_t pd) {
  const char *impl = "?";
  check(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&impl), "impl query");
  snprintf(o->impl, sizeof o->impl, "%s", impl);
  check(dnnl_primitive_create(&o->prim, pd), "primitive");
  dnnl_primitive_desc_destroy(pd);
}

static void op_run(op *o, dnnl_stream_t st, int with_reorders) {
  for (int i = 0; with_reorders && i < o->npre; i++) check(dnnl_primitive_execute(o->pre[i], st, 2, o->pre_args[i]), "reorder");
  check(dnnl_primitive_execute(o->prim, st, o->nargs, o->args), "execute");
  for (int i = 0; with_reorders && i < o->npost; i++) check(dnnl_primitive_execute(o->post[i], st, 2, o->post_args[i]), "reorder");
  check(dnnl_stream_wait(st), "stream wait");
}

static void op_free(op *o) {
  dnnl_primitive_destroy(o->prim);
  for (int i = 0; i < o->npre; i++) dnnl_primitive_destroy(o->pre[i]);
  for (int i = 0; i < o->npost; i++) dnnl_primitive_destroy(o->post[i]);
  for (int i = 0; i < o->nowned; i++) dnnl_memory_destroy(o->owned[i]), free(o->bufs[i]);
}

typedef struct {
  nn_conv_geom g;
  float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ws; /* normnet's */
  float *oy, *odx, *odw, *odb;                   /* oneDNN's outputs, plain */
  op fwd, bwd_data, bwd_weights;
  dnnl_stream_t st;
} bench_case;

enum { FWD,
       BWD_DATA,
       BWD_WEIGHTS };

static void ours(bench_case *c, int pass) {
  if (pass == FWD) nn_conv2d_forward(&c->g, c->x, c->w, c->b, c->y, c->ws);
  else if (pass == BWD_DATA) nn_conv2d_backward(&c->g, c->x, c->w, c->dy, c->dx, NULL, NULL, c->ws);
  else {
    memset(c->dw, 0, sizeof(float) * (size_t)c->g.oc * c->g.c * c->g.kh * c->g.kw);
    memset(c->db, 0, sizeof(float) * (size_t)c->g.oc);
    nn_conv2d_backward(&c->g, c->x, c->w, c->dy, NULL, c->dw, c->db, c->ws);
  }
}

static op *theirs(bench_case *c, int pass) { return pass == FWD ? &c->fwd : pass == BWD_DATA ? &c->bwd_data
                                                                                             : &c->bwd_weights; }

static void setup(bench_case *c, dnnl_engine_t eng) {
  const nn_conv_geom *g = &c->g;
  dnnl_dims_t sd = {g->n, g->c, g->h, g->w}, wd = {g->oc, g->c, g->kh, g->kw}, bd = {g->oc}, dd = {g->n, g->oc, g->oh, g->ow};
  dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
  dnnl_memory_desc_t us, uw, ub, ud, as, aw, ad;
  check(dnnl_memory_desc_init_by_tag(&us, 4, sd, dnnl_f32, dnnl_nchw), "md");
  check(dnnl_memory_desc_init_by_tag(&uw, 4, wd, dnnl_f32, dnnl_oihw), "md");
  check(dnnl_memory_desc_init_by_tag(&ub, 1, bd, dnnl_f32, dnnl_x), "md");
  check(dnnl_memory_desc_init_by_tag(&ud, 4, dd, dnnl_f32, dnnl_nchw), "md");
  check(dnnl_memory_desc_init_by_tag(&as, 4, sd, dnnl_f32, dnnl_format_tag_any), "md");
  check(dnnl_memory_desc_init_by_tag(&aw, 4, wd, dnnl_f32, dnnl_format_tag_any), "md");
  check(dnnl_memory_desc_init_by_tag(&ad, 4, dd, dnnl_f32, dnnl_format_tag_any), "md");

  dnnl_convolution_desc_t fd, bdd, bwd;
  dnnl_primitive_desc_t fpd, bdpd, bwpd, hint;
  check(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &as, &aw, &ub, &ad,
                                           strides, pad, pad),
        "forward descriptor");
  check(dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL), "forward primitive descriptor");
  check(dnnl_primitive_desc_clone(&hint, fpd), "clone");
  op_arg(&c->fwd, eng, fpd, dnnl_query_src_md, 0, DNNL_ARG_SRC, &us, c->x, 0);
  op_arg(&c->fwd, eng, fpd, dnnl_query_weights_md, 0, DNNL_ARG_WEIGHTS, &uw, c->w, 0);
  op_arg(&c->fwd, eng, fpd, dnnl_query_weights_md, 1, DNNL_ARG_BIAS, &ub, c->b, 0);
  op_arg(&c->fwd, eng, fpd, dnnl_query_dst_md, 0, DNNL_ARG_DST, &ud, c->oy, 1);
  op_finish(&c->fwd, fpd);

  check(dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &as, &aw, &ad, strides, pad, pad),
        "backward data descriptor");
  check(dnnl_primitive_desc_create(&bdpd, &bdd, NULL, eng, hint), "backward data primitive descriptor");
  op_arg(&c->bwd_data, eng, bdpd, dnnl_query_diff_dst_md, 0, DNNL_ARG_DIFF_DST, &ud, c->dy, 0);
  op_arg(&c->bwd_data, eng, bdpd, dnnl_query_weights_md, 0, DNNL_ARG_WEIGHTS, &uw, c->w, 0);
  op_arg(&c->bwd_data, eng, bdpd, dnnl_query_diff_src_md, 0, DNNL_ARG_DIFF_SRC, &us, c->odx, 1);
  op_finish(&c->bwd_data, bdpd);

  check(dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &as, &aw, &ub, &ad, strides, pad,
                                                    pad),
        "backward weights descriptor");
  check(dnnl_primitive_desc_create(&bwpd, &bwd, NULL, eng, hint), "backward weights primitive descriptor");
  op_arg(&c->bwd_weights, eng, bwpd, dnnl_query_src_md, 0, DNNL_ARG_SRC, &us, c->x, 0);
  op_arg(&c->bwd_weights, eng, bwpd, dnnl_query_diff_dst_md, 0, DNNL_ARG_DIFF_DST, &ud, c->dy, 0);
  op_arg(&c->bwd_weights, eng, bwpd, dnnl_query_diff_weights_md, 0, DNNL_ARG_DIFF_WEIGHTS, &uw, c->odw, 1);
  op_arg(&c->bwd_weights, eng, bwpd, dnnl_query_diff_weights_md, 1, DNNL_ARG_DIFF_BIAS, &ub, c->odb, 1);
  op_finish(&c->bwd_weights, bwpd);
  dnnl_primitive_desc_destroy(hint);
}

/* Median seconds per call of normnet's pass, oneDNN's with reorders and without, alternating. */
static void time_pass(bench_case *c, int pass, double med[3]) {
  double t[3][REPS];
  int calls = 1;
  double t0 = clock_now();
  do ours(c, pass), calls++;
  while (clock_now() - t0 < 0.02 && calls < 1000);
  calls = (int)(g_seconds / 3 / REPS / ((clock_now() - t0) / calls)) + 1;
  for (int r = 0; r < REPS; r++)
    for (int side = 0; side < 3; side++) {
      double a = clock_now();
      for (int i = 0; i < calls; i++) side == 0 ? ours(c, pass) : op_run(theirs(c, pass), c->st, side == 1);
      t[side][r] = (clock_now() - a) / calls;
    }
  for (int side = 0; side < 3; side++) {
    qsort(t[side], REPS, sizeof(double), cmp_double);
    med[side] = t[side][REPS / 2];
  }
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - (double)b[i]));
    m = fmax(m, fabs((double)b[i]));
  }
  return m > 0 ? d / m : d;
}

static void bench_shape(dnnl_engine_t eng, dnnl_stream_t st, const char *name, int n, int ch, int h, int w, int oc,
                        int k, int threads) {
  bench_case c = {.g = {.n = n, .c = ch, .h = h, .w = w, .oc = oc, .kh = k, .kw = k, .stride = 1, .pad = 0}, .st = st};
  nn_conv_geom_init(&c.g);
  const size_t nx = (size_t)n * ch * h * w, nw = (size_t)oc * ch * k * k, ny = (size_t)n * oc * c.g.oh * c.g.ow;
  c.x = fbuf(nx), c.w = fbuf(nw), c.b = fbuf(oc), c.y = fbuf(ny), c.dy = fbuf(ny), c.dx = fbuf(nx), c.dw = fbuf(nw);
  c.db = fbuf(oc), c.ws = fbuf(nn_conv2d_workspace(&c.g));
  c.oy = fbuf(ny), c.odx = fbuf(nx), c.odw = fbuf(nw), c.odb = fbuf(oc);
  unsigned s = 12345;
  for (size_t i = 0; i < nx; i++) s = s * 1103515245u + 12345u, c.x[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
  for (size_t i = 0; i < nw; i++) s = s * 1103515245u + 12345u, c.w[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
  for (size_t i = 0; i < ny; i++) s = s * 1103515245u + 12345u, c.dy[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
  for (int i = 0; i < oc; i++) c.b[i] = 0.01f * (float)i;
  bench_case c1 = c; /* the same inputs; its own oneDNN outputs and primitives, made at one thread */
  c1.oy = fbuf(ny), c1.odx = fbuf(nx), c1.odw = fbuf(nw), c1.odb = fbuf(oc);
  omp_set_num_threads(1);
  setup(&c1, eng);
  omp_set_num_threads(threads);
  setup(&c, eng);
  static const char *const pass_name[] = {"fwd", "bwd data", "bwd weights"};
  const double flops = 2.0 * (double)ny * ch * k * k;
  for (int pass = FWD; pass <= BWD_WEIGHTS; pass++) {
    op *o = theirs(&c, pass);
    float *out = pass == FWD ? c.oy : pass == BWD_DATA ? c.odx
                                                       : c.odw;
    const float *mine = pass == FWD ? c.y : pass == BWD_DATA ? c.dx
                                                             : c.dw;
    const size_t cnt = pass == FWD ? ny : pass == BWD_DATA ? nx
                                                           : nw;
    /* oneDNN at one thread, then at `threads`: the same bits? (each with primitives created
     * at that thread count: oneDNN plans its split when it creates a primitive) */
    float *one = fbuf(cnt);
    op_run(theirs(&c1, pass), st, 1);
    memcpy(one, pass == FWD ? c1.oy : pass == BWD_DATA ? c1.odx
                                                       : c1.odw,
           cnt * sizeof *one);
    op_run(o, st, 1);
    const int same = !memcmp(one, out, cnt * sizeof *one);
    ours(&c, pass);
    const double diff = rel_diff(out, mine, cnt);
    double med[3];
    time_pass(&c, pass, med);
    printf(
        "%-34s %-11s normnet %8.1f us  oneDNN %-10s %8.1f us with reorders (%5.2fx), %8.1f us alone (%5.2fx)  "
        "%5.1f GFLOP/s  bitwise t1=t%d: %s  rel diff %.1e\n",
        name, pass_name[pass], med[0] * 1e6, o->impl, med[1] * 1e6, med[0] / med[1], med[2] * 1e6, med[0] / med[2],
        flops / med[2] * 1e-9, threads, same ? "yes" : "NO", diff);
    fflush(stdout);
    free(one);
  }
  op_free(&c.fwd), op_free(&c.bwd_data), op_free(&c.bwd_weights);
  op_free(&c1.fwd), op_free(&c1.bwd_data), op_free(&c1.bwd_weights);
  free(c1.oy), free(c1.odx), free(c1.odw), free(c1.odb);
  free(c.x), free(c.w), free(c.b), free(c.y), free(c.dy), free(c.dx), free(c.dw), free(c.db), free(c.ws);
  free(c.oy), free(c.odx), free(c.odw), free(c.odb);
}

int main(int argc, char **argv) {
  int threads = omp_get_max_threads();
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) g_seconds = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_onednn_conv [--threads T] [--seconds S]\n");
      return 2;
    }
  }
  if (threads < 1) threads = 1;
  omp_set_num_threads(threads);
  g_cpu_clock = threads == 1;
  printf("threads=%d clock=%s; speedups are normnet time / oneDNN time (> 1: oneDNN faster)\n", threads,
         threads == 1 ? "process CPU time" : "wall");
  dnnl_engine_t eng;
  dnnl_stream_t st;
  check(dnnl_engine_create(&eng, dnnl_cpu, 0), "engine");
  check(dnnl_stream_create(&st, eng, dnnl_stream_default_flags), "stream");
  bench_shape(eng, st, "lenet conv1 128x1x28x28 oc6 k5", 128, 1, 28, 28, 6, 5, threads);
  bench_shape(eng, st, "lenet conv2 128x6x12x12 oc16 k5", 128, 6, 12, 12, 16, 5, threads);
  bench_shape(eng, st, "cnn conv1 32x1x28x28 oc32 k3", 32, 1, 28, 28, 32, 3, threads);
  bench_shape(eng, st, "cnn conv2 32x32x13x13 oc64 k3", 32, 32, 13, 13, 64, 3, threads);
  bench_shape(eng, st, "cifar conv1 32x3x32x32 oc32 k3", 32, 3, 32, 32, 32, 3, threads);
  bench_shape(eng, st, "cifar conv2 32x32x15x15 oc64 k3", 32, 32, 15, 15, 64, 3, threads);
  dnnl_stream_destroy(st);
  dnnl_engine_destroy(eng);
  return 0;
}
#else
int main(void) {
  fprintf(stderr, "bench_onednn_conv: written for oneDNN 2.x; this is oneDNN %d.%d\n", DNNL_VERSION_MAJOR,
          DNNL_VERSION_MINOR);
  return 2;
}
#endif
