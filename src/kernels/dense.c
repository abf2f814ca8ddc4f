/* dense: x[N,I], w[O,I] (PyTorch layout), b[O] or NULL, y[N,O].
 *
 * Every GEMM here runs on one thread over a block whose bounds depend only on the shape,
 * and blocks never share an output element, so results do not depend on the thread
 * count: y and dx are split by sample rows (y's in blocks of 8 unless w is over 1 MiB, dx's
 * of 32) and, when the batch has few row blocks, also by columns (the reduction over I or O
 * stays inside one GEMM), dw by output rows (the whole batch reduction inside one GEMM), db by
 * a serial loop. */
#include <omp.h>
#include <stddef.h>

#include "base/error.h"
#include "kernels/act_inline.h"
#include "kernels/kernels.h"
#include "kernels/variant.h"

#define DENSE_ROW_BLOCK 32         /* samples per block of dx, and of y with a large w */
#define DENSE_OUT_BLOCK 16         /* output rows per block for dw */
#define DENSE_COL_BLOCK 64         /* columns per block of y or dx when rows are few (half of it for 33-64) */
#define DENSE_FEW_ROWS 4           /* fewer row blocks than this: columns are split too */
#define DENSE_Y_ROWS 8             /* samples per block of y in such a batch or with a small w: */
#define DENSE_Y_SMALL_W (1L << 18) /* at most this many weights (1 MiB) */
#define DENSE_PAR_FLOPS (1L << 21) /* below this, one thread (wake-ups cost more) */

/* nn_gemm restricted to the calling thread (oneDNN goes serial inside a parallel region;
 * outside one it would spread the call over all threads and choose its own split). */
static void gemm_1t(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc) {
  if (omp_in_parallel()) {
    nn_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    nn_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    omp_set_num_threads(saved);
  }
}

static int team_size(long flops, int blocks) {
  if (flops < DENSE_PAR_FLOPS || blocks < 2) return 1;
  int t = omp_get_max_threads();
  return t < blocks ? t : blocks;
}

/* Whether a batch of n samples is a few row blocks (a training batch of 32 is one block, which
 * would leave the layer on one thread): its y and dx are then split by columns too. */
static int few_rows(int n) { return (n + DENSE_ROW_BLOCK - 1) / DENSE_ROW_BLOCK < DENSE_FEW_ROWS; }

/* Columns per block of a y or dx of a batch of n and `cols` columns: all unless the batch is a
 * few row blocks. A function of the shape only (as the row blocks), so the GEMMs, and the
 * rounding, never depend on the thread count. */
static int col_width(int n, int cols) {
  if (!few_rows(n) || cols <= DENSE_COL_BLOCK / 2) return cols;
  return cols > DENSE_COL_BLOCK ? DENSE_COL_BLOCK : DENSE_COL_BLOCK / 2; /* 33-64 columns: two blocks */
}

/* y[o] = act(norm(y[o] + b[c0 + o])) for o < len: a row's columns [c0, c0 + len), the
 * epilogue's operations in the separate kernels' order (kernels.h, nn_epilogue). */
static void dense_epi_row(const nn_epilogue *e, int c0, float *y, int len) {
  if (e->bias) {
    const float *b = e->bias + c0;
#pragma omp simd
    for (int o = 0; o < len; o++) y[o] += b[o];
  }
  if (e->mean) {
    const float *mu = e->mean + c0, *sc = e->scale + c0, *sh = e->shift + c0;
#pragma omp simd
    for (int o = 0; o < len; o++) y[o] = (y[o] - mu[o]) * sc[o] + sh[o];
  }
  act_n(e->act, y, (size_t)len);
}

/* y[r0:r1, c0:c1] = epilogue(x[r0:r1, I] @ w[c0:c1, I]^T) */
static void dense_fwd_block(const float *x, const float *w, const nn_epilogue *e, float *y, int r0, int r1, int c0,
                            int c1, int in, int out) {
  float *yb = y + (size_t)r0 * (size_t)out + c0;
  gemm_1t(0, 1, r1 - r0, c1 - c0, in, 1.0f, x + (size_t)r0 * (size_t)in, in, w + (size_t)c0 * (size_t)in, in,
          0.0f, yb, out);
  for (int i = 0; i < r1 - r0; i++) dense_epi_row(e, c0, yb + (size_t)i * (size_t)out, c1 - c0);
}

/* Bounds [*a, *b) of block k of size `block` in [0, n). */
static void block_range(int k, int block, int n, int *a, int *b) {
  *a = k * block;
  *b = *a + block < n ? *a + block : n;
}

#if NN_VARIANT_ONCE
void nn_dense_forward(const float *x, const float *w, const float *b, float *y, int n, int in, int out) {
  const nn_epilogue e = {.bias = b};
  nn_dense_forward_epi(x, w, &e, y, n, in, out);
}
#endif

void NN_V(nn_dense_forward_epi)(const float *x, const float *w, const nn_epilogue *e, float *y, int n, int in,
                                int out) {
  NN_ASSERT(n >= 0 && in >= 0 && out >= 0);
  if (n == 0 || out == 0) return;
  /* y in blocks of 8 rows (by 64 or 32 columns in a batch of a few row blocks) unless w is
   * large (each block reads all of its columns of w). oneDNN's sgemm with w transposed runs
   * 8-row blocks at about the speed of one whole call, 32-row ones of 32 or 64 columns at up
   * to half of it: the mlp's first layer (32x784 by 128 units) in 8x64 blocks 61 us, in 32x64
   * ones 100 us, the CNN's (32x1600 by 64) in 8x32 blocks 63 us, in 32x32 ones 100 us, LeNet's
   * first (128x256 by 120) in 8-row blocks 77-91 us, in 32-row ones 99-108 us (one thread, AMD
   * Zen 4; bench_gemm_blocks, docs/performance.md run 31). */
  const int rb = few_rows(n) || (long)in * out <= DENSE_Y_SMALL_W ? DENSE_Y_ROWS : DENSE_ROW_BLOCK;
  int rows = (n + rb - 1) / rb, width = col_width(n, out);
  int cols = (out + width - 1) / width;
  int nt = team_size(2L * n * in * out, rows * cols);
  /* the same blocks on one thread or many: oneDNN's blocking (and so the rounding) may depend
   * on the GEMM's shape (AVX2 kernels do), never on which thread runs a block. Static, and
   * column after column: a thread gets the same blocks, so the same rows of w, every step, and
   * the backward's static dw blocks and the optimizer's static chunks mostly the same rows
   * again (dynamic blocks moved w between the cores' caches: the mlp's two-thread steps
   * 1.13-1.17x, run 26; 8-row blocks taken row after row, each thread reading all of w: 0.93-0.96x,
   * run 31) */
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
  for (int blk = 0; blk < rows * cols; blk++) {
    int r0, r1, c0, c1;
    block_range(blk % rows, rb, n, &r0, &r1);
    block_range(blk / rows, width, out, &c0, &c1);
    dense_fwd_block(x, w, e, y, r0, r1, c0, c1, in, out);
  }
}

/* db[o] += sum_n dy[n,o], rows added in order. */
static void dense_db(const float *dy, float *db, int n, int out) {
  for (int i = 0; i < n; i++) {
    const float *dyi = dy + (size_t)i * (size_t)out;
#pragma omp simd
    for (int o = 0; o < out; o++) db[o] += dyi[o];
  }
}

/* Task t of the backward pass: [0, dx_blocks) are dx blocks (row-major over row and column
 * blocks, dx_cols column blocks of dx_width per row block), then dw output-row blocks, then
 * (if db) one db task. */
typedef struct {
  int dx_blocks, dx_cols, dx_width, dw_blocks, n, in, out;
} bwd_tasks;

typedef enum {
  BWD_DX, /* a block of dx */
  BWD_DW, /* a block of dw's rows */
  BWD_DB  /* db */
} bwd_kind;
typedef struct {
  bwd_kind kind;
  int r0, r1, i0, i1; /* dx: rows, columns; dw: output rows [r0, r1) */
} bwd_task;

static bwd_task bwd_task_at(const bwd_tasks *b, int t) {
  bwd_task k = {BWD_DB, 0, 0, 0, 0};
  if (t < b->dx_blocks) {
    k.kind = BWD_DX;
    block_range(t / b->dx_cols, DENSE_ROW_BLOCK, b->n, &k.r0, &k.r1);
    block_range(t % b->dx_cols, b->dx_width, b->in, &k.i0, &k.i1);
  } else if (t - b->dx_blocks < b->dw_blocks) {
    k.kind = BWD_DW;
    block_range(t - b->dx_blocks, DENSE_OUT_BLOCK, b->out, &k.r0, &k.r1);
  }
  return k;
}

static void dense_bwd_task(const bwd_tasks *b, int t, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db) {
  const bwd_task k = bwd_task_at(b, t);
  const int n = b->n, in = b->in, out = b->out;
  if (k.kind == BWD_DX) /* dx[r0:r1, i0:i1] = dy[r0:r1, O] @ w[O, i0:i1] */
    gemm_1t(0, 0, k.r1 - k.r0, k.i1 - k.i0, out, 1.0f, dy + (size_t)k.r0 * (size_t)out, out, w + k.i0, in, 0.0f,
            dx + (size_t)k.r0 * (size_t)in + k.i0, in);
  else if (k.kind == BWD_DW) /* dw[r0:r1, I] += dy[N, r0:r1]^T @ x[N, I] */
    gemm_1t(1, 0, k.r1 - k.r0, in, n, 1.0f, dy + k.r0, out, x, in, 1.0f, dw + (size_t)k.r0 * (size_t)in, in);
  else
    dense_db(dy, db, n, out);
}

/* Multiply-adds of task t (db's adds counted as such). */
static double bwd_task_cost(const bwd_tasks *b, int t) {
  const bwd_task k = bwd_task_at(b, t);
  if (k.kind == BWD_DX) return (double)(k.r1 - k.r0) * (k.i1 - k.i0) * b->out;
  if (k.kind == BWD_DW) return (double)(k.r1 - k.r0) * b->in * b->n;
  return (double)b->n * b->out;
}

/* Thread k of nt takes the tasks [*t0, *t1) whose middle falls in the k-th nt-th of the
 * summed cost: contiguous runs of about equal work. A static count split had left e.g. the
 * mlp's first layer (8 dW blocks and db) 5 blocks on one thread and 3 on the other, LeNet's
 * first (4 dx and 8 dW blocks, a dx block about twice a dW one) 5.5 and 2.4 M multiply-adds. */
static void bwd_share(const bwd_tasks *b, int tasks, int k, int nt, int *t0, int *t1) {
  double total = 0;
  for (int t = 0; t < tasks; t++) total += bwd_task_cost(b, t);
  *t0 = tasks, *t1 = tasks;
  if (!(total > 0)) { /* no work to weigh: thread 0 takes all */
    if (k == 0) *t0 = 0;
    return;
  }
  double before = 0;
  for (int t = 0; t < tasks; t++) {
    const double c = bwd_task_cost(b, t);
    int owner = (int)((before + 0.5 * c) * nt / total);
    if (owner > nt - 1) owner = nt - 1;
    if (owner == k && *t0 == tasks) *t0 = t;
    if (owner > k) {
      *t1 = t;
      break;
    }
    before += c;
  }
  if (*t0 == tasks) *t1 = tasks; /* no task of its own */
}

void NN_V(nn_dense_backward)(const float *x, const float *w, const float *dy, float *dx, float *dw,
                             float *db, int n, int in, int out) {
  NN_ASSERT(n >= 0 && in >= 0 && out >= 0);
  if (dx && n > 0 && in > 0 && out == 0) {
    for (size_t i = 0; i < (size_t)n * (size_t)in; i++) dx[i] = 0.0f;
  }
  if (n == 0 || out == 0) return;
  const int rows = (n + DENSE_ROW_BLOCK - 1) / DENSE_ROW_BLOCK, dx_width = in > 0 ? col_width(n, in) : 1;
  const int dx_cols = (in + dx_width - 1) / dx_width;
  const bwd_tasks b = {.dx_blocks = dx && in > 0 ? rows * dx_cols : 0,
                       .dx_cols = dx_cols,
                       .dx_width = dx_width,
                       .dw_blocks = dw && in > 0 ? (out + DENSE_OUT_BLOCK - 1) / DENSE_OUT_BLOCK : 0,
                       .n = n,
                       .in = in,
                       .out = out};
  const int tasks = b.dx_blocks + b.dw_blocks + (db ? 1 : 0);
  const long flops = 2L * n * in * out * ((dx ? 1 : 0) + (dw ? 1 : 0));
  const int nt = team_size(flops, tasks);
  if (nt <= 1) {
    for (int t = 0; t < tasks; t++) dense_bwd_task(&b, t, x, w, dy, dx, dw, db);
    return;
  }
  /* a fixed share per thread: see nn_dense_forward_epi */
#pragma omp parallel num_threads(nt)
  {
    int t0, t1;
    bwd_share(&b, tasks, omp_get_thread_num(), omp_get_num_threads(), &t0, &t1);
    for (int t = t0; t < t1; t++) dense_bwd_task(&b, t, x, w, dy, dx, dw, db);
  }
}
