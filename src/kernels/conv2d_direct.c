/* conv2d, direct, stride 1: x[N,C,H,W], w[OC,C,KH,KW], b[OC] or NULL, y[N,OC,OH,OW];
 * dW[OC,C,KH,KW] and db[OC] from dy[N,OC,OH,OW]; dx[N,C,H,W] for unpadded layers whose output
 * rows are whole vectors (at the end of this file; otherwise im2col + GEMM, conv2d.c).
 *
 * For layers with few input channels (LeNet conv1 1x5x5, the Keras CNNs' first convolutions
 * 1x3x3 and 3x3x3) im2col copies the input 9-25 times over and the GEMM gets a K of 9-27.
 *   forward: each sample is packed once in shifted rows (fwd_pack): for each input channel c
 *            and kernel column kj, the zero-padded plane's rows shifted left by kj and cut to OW,
 *            xs[c, kj, r, ow] = xpad[c, r, ow + kj] (Hp = H + 2 pad rows). On the output plane's
 *            flat index i = oh*OW + ow,
 *              y[n, oc, i] = sum over (c, ki, kj), in that order, of w[oc,c,ki,kj] * xs[c, kj, i + ki*OW]
 *            so each term is a contiguous vector of xs times a broadcast weight, for any run of
 *            outputs (no dead columns), in register blocks of FWD_OB filters x FWD_NV vectors of
 *            FV floats: 16 where the target has AVX-512, else 8 (the same sums in the same
 *            order at either width). Samples split over threads.
 *   dW:      each sample packed once into a zero-padded plane xp[C, Hp, Wp] (Wp = W + 2 pad),
 *            on the flat index i = oh*Wp + ow, i in [0, OH*Wp): dW[oc,c,ki,kj] += sum over n, i
 *            of dyp[n,oc,i] * xp[n,c, i + ki*Wp + kj], where dyp is dy on that index with zeros at
 *            ow >= OW (output rows of whole vectors are swept row by row instead, without those
 *            columns); db[oc] += sum over n, i of dyp. The samples are cut into min(N,
 *            NN_SAMPLE_GROUPS) fixed groups (sample_groups.h), split over the threads as the
 *            layers around split samples, so a thread reads only its samples' x and dy; each
 *            output keeps VL lane sums per group over its samples (in order) and i, the
 *            groups' lanes added in group order and then the lanes in a fixed order at the
 *            end; the samples are packed in batches, so that a register block runs over
 *            several before its sums go back.
 * The forward applies its epilogue (bias, an eval BN, the activation: nn_epilogue) to each
 * filter's output plane once it is written; with an activation, the backward reads
 * dy = dz * act'(z) as it packs dy.
 * Every output is computed by one thread in one fixed order: results do not depend on the
 * thread count.
 *
 * Workspace (floats): G groups of OC*(CKK+1)*VL lane sums (dW; the forward keeps its packed
 * weights there, OC*CKK floats), then per slot (one per thread that may run): the larger of
 * the forward's sample in shifted rows (C*KW*Hp*OW floats and zeros for the reads past them)
 * with one block's outputs (the plane's last, partial block), the dW pass's batch of sb
 * packed samples (C planes of Hp*Wp, then zeros) with their DW_OB_MAX rows of packed dy each
 * (Lpad = OH*Wp rounded up to two vectors), and the dx pass's (below). */
#include "kernels/conv2d_direct.h"

#include <omp.h>
#include <string.h>

#include "base/aligned.h"
#include "base/cpu.h"
#include "base/error.h"
#include "kernels/sample_groups.h"
#include "kernels/v8.h"
#include "kernels/variant.h"

/* Register blocks, measured on Zen 3 (AVX2, 16 vector registers) against 4x3, 4x2, 5x2, 8x1,
 * 8x2, 3x4 (forward) on the LeNet, CNN and CIFAR first layers: 6x2 keeps 12 accumulators + 2
 * inputs + 1 broadcast in registers. dW, since it sums over batches of samples (below),
 * against 4x3, 3x4, 3x3, 2x6 and 1x8 on LeNet's layers: 2x5 (10 accumulators, 2 dy vectors,
 * the x vector kept), 1.35x 4x3's speed on LeNet conv1 and 1.6x on conv2 (5x5 taps). */
#define FWD_OB 6 /* forward block: filters (<= 8) ... */
#define FWD_NV 2 /* ... times vectors along the output plane (<= 4) */
/* With AVX-512 VL the 8-float vectors have 32 registers: a dW block of 4x5 (20 accumulators,
 * 4 dy vectors, the x vector kept: 25 registers), measured on the Intel host of run 20
 * against 2x5, 3x5, 3x7, 4x6 (bench_kernels --only conv, builds with each block): LeNet
 * conv1's dW 1.15x at one thread and 1.26x at two (where its 6 filters split 3 + 3 went in
 * blocks of 2 and 1), conv2's 1.2x. With 16 registers 3x5 and 4x5 spill (1.4x slower). That
 * was the 8-wide block; since then, where the build targets AVX-512 the blocks run in pairs
 * of filters (dw_block_pair), up to three pairs (15 accumulators, 3 dy vectors, the x
 * vector), balanced over pairs so that only an odd count's last filter leaves half a pair
 * empty. Against blocks of up to 2 pairs (run 29, AMD Zen 4, one thread, bench/ab_objects.sh,
 * two runs): LeNet conv1's dW 1.28-1.29x (its six filters went in two blocks of 3, a quarter
 * of the FMAs on empty halves), conv2's 1.06-1.08x (4 + 6 + 6 filters, not 4 x 4). Not
 * measured on Intel. */
#if NN_BUILD_AVX512
#define DW_OB 6    /* dW block: filters (<= DW_OB_MAX) ... */
#define DW_UNIT 2  /* ... in pairs */
#define DW_REGS 32 /* vector registers */
#else
#define DW_OB 2
#define DW_UNIT 1
#define DW_REGS 16
#endif
#define DW_TK 5     /* ... times taps (<= 8) */
#define DW_OB_MAX 6 /* the largest DW_OB of any variant: the workspace fits every one */
/* dW packs this many floats of samples at a time (x planes and dy rows, about 64 KB), so
 * that a register block sums over several samples between loading and storing its lane
 * sums: a 8x8 output plane is 12 vectors, too short a loop to pay for them alone */
#define DW_BATCH_FLOATS 16384
/* dW: fixed sample groups (sample_groups.h), split over the threads */
static inline int dw_groups(int n) { return nn_sample_groups(n, NN_SAMPLE_GROUPS); }
_Static_assert(FWD_OB <= 8 && FWD_NV <= 4, "forward block beyond the kernel's arrays");

/* The forward's vectors: 16 floats where the target has AVX-512 (oneDNN's GEMM runs that wide
 * there too), else v8. Each output's sum over the taps is the same, in the same order, at
 * either width. */
#if NN_BUILD_AVX512
#define FV 16
typedef float vf __attribute__((vector_size(FV * sizeof(float))));
#define VF_BCAST(s) ((vf)_mm512_set1_ps(s))
#define VF_FMA(acc, a, b) ((acc) = (vf)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(acc)))
#else
#define FV VL
typedef v8 vf;
#define VF_BCAST(s) VBCAST(s)
#define VF_FMA(acc, a, b) VFMA(acc, a, b)
#endif
#define FWD_BLK ((size_t)FV * FWD_NV) /* outputs of one filter in a register block */
_Static_assert(DW_OB <= DW_OB_MAX && DW_TK <= 8 && (DW_UNIT == 2 ? DW_OB <= 6 : DW_OB <= 4) && DW_OB % DW_UNIT == 0,
               "dW block beyond the kernel's arrays");

typedef struct {
  int hp, wp;     /* padded input plane */
  size_t plane;   /* hp * wp */
  size_t lflat;   /* OH * Wp */
  size_t lpad;    /* lflat rounded up to two vectors (dW's packed dy rows) */
  size_t xplen;   /* packed sample, with the zeros read past the last plane */
  size_t xslen;   /* forward: the sample in shifted rows (fwd_pack), with the zeros read past it */
  size_t slot;    /* floats per slot */
  int sb;         /* dW: samples packed at a time */
  size_t glanes;  /* one sample group's lane sums: OC * (CKK + 1) * VL, on cache lines */
  size_t lanes;   /* the groups' lane sums: dw_groups(N) * glanes */
  int ckk, slots; /* C*KH*KW; slots */
} dplan;

static dplan dplan_make(const nn_conv_geom *g, int nprocs) {
  dplan p;
  p.hp = g->h + 2 * g->pad;
  p.wp = g->w + 2 * g->pad;
  p.plane = (size_t)p.hp * (size_t)p.wp;
  p.lflat = (size_t)g->oh * (size_t)p.wp;
  const size_t blk = (size_t)VL * 2;
  p.lpad = (p.lflat + blk - 1) / blk * blk;
  /* highest index read: (C-1)*plane + (lpad-1) + (KH-1)*Wp + (KW-1) */
  size_t need = (size_t)(g->c - 1) * p.plane + p.lpad + (size_t)(g->kh - 1) * (size_t)p.wp + (size_t)g->kw;
  size_t whole = (size_t)g->c * p.plane;
  p.xplen = nn_line_floats(need > whole ? need : whole);
  p.ckk = g->c * g->kh * g->kw;
  NN_ASSERT(p.ckk <= NN_CONV_DIRECT_MAX_TAPS);
  const size_t per = p.xplen + (size_t)DW_OB_MAX * p.lpad; /* one sample packed for dW */
  p.sb = per < DW_BATCH_FLOATS ? (int)(DW_BATCH_FLOATS / per) : 1;
  p.slot = (size_t)p.sb * per;
  p.xslen = nn_line_floats((size_t)g->c * (size_t)g->kw * (size_t)p.hp * (size_t)g->ow + FWD_BLK);
  const size_t fwd = p.xslen + (size_t)FWD_OB * FWD_BLK; /* and the last block's outputs */
  if (fwd > p.slot) p.slot = fwd;
  p.glanes = nn_line_floats((size_t)g->oc * ((size_t)p.ckk + 1) * VL);
  p.lanes = (size_t)dw_groups(g->n) * p.glanes; /* the slots after it on cache lines */
  int units = g->n > g->oc ? g->n : g->oc;
  p.slots = units < nprocs ? units : nprocs;
  return p;
}

/* Output rows are whole VL-float vectors (LeNet's 24 and 8): the forward, dW and dx then work
 * row by row, without the flat index's dead columns. */
static inline int whole_rows(const nn_conv_geom *g) { return g->ow % VL == 0; }

/* dx: floats of the weights packed for pairs of input channels (dx_pack_pairs), reserved in
 * every variant's workspace (one size for all) */
static size_t dx_pairs_floats(const nn_conv_geom *g) {
  return (size_t)(g->c / 2) * (size_t)g->kh * (size_t)g->oc * (size_t)g->kw * 16;
}

#if NN_VARIANT_ONCE
int nn_conv2d_direct_data_fits(const nn_conv_geom *g) {
  return g->stride == 1 && g->pad == 0 && whole_rows(g) && g->kw <= NN_CONV_DIRECT_DX_MAX_KW &&
         (long)g->c * g->kh * g->kw <= NN_CONV_DIRECT_MAX_TAPS;
}

size_t nn_conv2d_direct_workspace(const nn_conv_geom *g, int nprocs) {
  dplan p = dplan_make(g, nprocs);
  const size_t fwd = p.lanes + (size_t)p.slots * p.slot;
  /* the dx pass: the weights packed for channel pairs (dx_pack_pairs), then dy of one sample
   * per thread (with an activation) */
  const size_t dx = dx_pairs_floats(g) +
                    (size_t)(g->n < nprocs ? g->n : nprocs) * (size_t)g->oc * (size_t)g->oh * (size_t)g->ow;
  return fwd > dx ? fwd : dx;
}
#endif

/* xp = sample x[C,H,W] with `pad` zeros around each plane, zeros after the last plane */
static void pack_sample(const nn_conv_geom *g, const dplan *p, const float *x, float *xp) {
  const int pad = g->pad, w = g->w;
  for (int c = 0; c < g->c; c++) {
    float *d = xp + (size_t)c * p->plane;
    const float *s = x + (size_t)c * (size_t)g->h * (size_t)w;
    if (pad == 0) {
      memcpy(d, s, sizeof(float) * p->plane);
      continue;
    }
    /* rows of a few dozen floats: loops, not libc calls */
    for (size_t j = 0; j < (size_t)pad * (size_t)p->wp; j++) d[j] = 0.0f;
    for (int r = 0; r < g->h; r++) {
      float *dr = d + (size_t)(r + pad) * (size_t)p->wp;
      const float *sr = s + (size_t)r * (size_t)w;
      for (int j = 0; j < pad; j++) dr[j] = 0.0f;
#pragma omp simd
      for (int j = 0; j < w; j++) dr[pad + j] = sr[j];
      for (int j = pad + w; j < p->wp; j++) dr[j] = 0.0f;
    }
    float *bottom = d + (size_t)(g->h + pad) * (size_t)p->wp;
    for (size_t j = 0; j < (size_t)pad * (size_t)p->wp; j++) bottom[j] = 0.0f;
  }
  size_t whole = (size_t)g->c * p->plane;
  memset(xp + whole, 0, sizeof(float) * (p->xplen - whole));
}

/* off[t] = offset of tap t = (c*KH + ki)*KW + kj in a packed sample whose layout puts the
 * next c, ki and kj per_c, per_ki and per_kj floats further (dW's padded planes: plane, Wp, 1;
 * the forward's shifted rows: fwd_offsets) */
static void tap_offsets(const nn_conv_geom *g, size_t per_c, size_t per_ki, size_t per_kj, int *off) {
  for (int c = 0, t = 0; c < g->c; c++)
    for (int ki = 0; ki < g->kh; ki++)
      for (int kj = 0; kj < g->kw; kj++, t++)
        off[t] = (int)((size_t)c * per_c + (size_t)ki * per_ki + (size_t)kj * per_kj);
}

/* out[o*ldo + j*FV .. + FV) (o < OB, j < NV) = sum over t < ckk, in order, of
 * wpk[t*OB + o] * xs[off[t] + j*FV .. + FV): one loop over the taps (c, ki, kj), OB*NV
 * accumulators. */
static inline __attribute__((always_inline)) void fwd_block(const float *xs, const int *off, const float *wpk,
                                                            int ckk, float *out, size_t ldo, const int OB,
                                                            const int NV) {
  vf acc[8][4]; /* OB <= 8, NV <= 4 */
#pragma GCC unroll 8
  for (int o = 0; o < OB; o++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) acc[o][j] = VF_BCAST(0.0f);
  for (int t = 0; t < ckk; t++) {
    const float *xt = xs + off[t];
    const float *wt = wpk + (size_t)t * (size_t)OB;
    vf xv[4];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) memcpy(&xv[j], xt + (size_t)j * FV, sizeof(vf));
    VRANK1_OF(vf, VF_BCAST, VF_FMA, acc, wt, xv, OB, NV);
  }
#pragma GCC unroll 8
  for (int o = 0; o < OB; o++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) memcpy(out + (size_t)o * ldo + (size_t)j * FV, &acc[o][j], sizeof(vf));
}

/* One block of OB filters and nv (FWD_NV or 1) vectors, a function per OB (as dw_ob below) */
#define FWD_OB_FN(OB)                                                                                          \
  static __attribute__((noinline)) void fwd_ob##OB(const float *xs, const int *off, const float *wpk, int ckk, \
                                                   float *out, size_t ldo, int nv) {                           \
    if (nv == FWD_NV)                                                                                          \
      fwd_block(xs, off, wpk, ckk, out, ldo, OB, FWD_NV);                                                      \
    else                                                                                                       \
      fwd_block(xs, off, wpk, ckk, out, ldo, OB, 1);                                                           \
  }
FWD_OB_FN(1)
FWD_OB_FN(2)
FWD_OB_FN(3)
FWD_OB_FN(4)
FWD_OB_FN(5)
FWD_OB_FN(6)
FWD_OB_FN(7)
FWD_OB_FN(8)
#undef FWD_OB_FN

static void fwd_dispatch(const float *xs, const int *off, const float *wpk, int ckk, float *out, size_t ldo, int ob,
                         int nv) {
  static void (*const fn[])(const float *, const int *, const float *, int, float *, size_t, int) = {
      fwd_ob1, fwd_ob2, fwd_ob3, fwd_ob4, fwd_ob5, fwd_ob6, fwd_ob7, fwd_ob8};
  _Static_assert(sizeof fn / sizeof *fn == 8, "a function per block size up to the kernel's 8");
  NN_ASSERT(ob >= 1 && ob <= 8);
  fn[ob - 1](xs, off, wpk, ckk, out, ldo, nv);
}

/* Filter blocks of at most FWD_OB, sizes balanced (32 filters: 6,6,5,5,5,5, not 6x5 + 2):
 * their number, and the first filter of block bk (bk = blocks: OC). */
static int fwd_blocks(const nn_conv_geom *g) { return (g->oc + FWD_OB - 1) / FWD_OB; }
static int fwd_block_start(const nn_conv_geom *g, int nblk, int bk) { return (int)((long)bk * g->oc / nblk); }

/* wpk = w packed block by block, tap-major within a block: the block of filters [oc0, oc0+ob)
 * at wpk + oc0*CKK, wpk[oc0*CKK + t*ob + o] = w[oc0 + o][t]. Once per call: every sample
 * reads the same. */
static void fwd_pack_weights(const nn_conv_geom *g, const dplan *p, const float *w, float *wpk) {
  const int nblk = fwd_blocks(g), ckk = p->ckk;
  for (int bk = 0; bk < nblk; bk++) {
    const int oc0 = fwd_block_start(g, nblk, bk), ob = fwd_block_start(g, nblk, bk + 1) - oc0;
    float *d = wpk + (size_t)oc0 * (size_t)ckk;
    for (int o = 0; o < ob; o++)
      for (int t = 0; t < ckk; t++) d[(size_t)t * (size_t)ob + (size_t)o] = w[(size_t)(oc0 + o) * (size_t)ckk + (size_t)t];
  }
}

/* Rows of a few dozen floats (the packings' unit): whole 8-float chunks (one vector load and
 * store each), then single floats. */
static inline void copy_run(float *d, const float *s, int n) {
  int j = 0;
  for (; j + 8 <= n; j += 8) memcpy(d + j, s + j, 8 * sizeof(float));
  for (; j < n; j++) d[j] = s[j];
}
static inline void zero_run(float *d, int n) {
  static const float z[8];
  int j = 0;
  for (; j + 8 <= n; j += 8) memcpy(d + j, z, 8 * sizeof(float));
  for (; j < n; j++) d[j] = 0.0f;
}

/* The sample in shifted rows: for input channel c and kernel column kj, the zero-padded
 * plane's rows shifted left by kj and cut to OW, xs[((c*KW + kj)*Hp + r)*OW + ow] =
 * xpad[c][r][ow + kj]; then zeros for the reads past the end. Output (oh, ow), at i = oh*OW +
 * ow, reads for tap (c, ki, kj) xs[(c*KW + kj)*Hp*OW + ki*OW + i] (fwd_offsets): every run of
 * outputs is one contiguous run of inputs, so the vectors cover the output plane without dead
 * columns, at any width. */
static void fwd_pack(const nn_conv_geom *g, const dplan *p, const float *x, float *xs) {
  const int pad = g->pad, ow = g->ow, w = g->w;
  const int r1 = p->hp < pad + g->h ? p->hp : pad + g->h; /* rows [pad, r1) hold the input */
  float *d = xs;
  for (int c = 0; c < g->c; c++) {
    const float *xc = x + (size_t)c * (size_t)g->h * (size_t)w;
    for (int kj = 0; kj < g->kw; kj++) {
      /* row r: d[j] = x[r - pad][j + kj - pad] for j in [lo, hi), where that column exists;
       * zeros around it and in the padding rows */
      int lo = pad - kj, hi = w + pad - kj;
      if (lo < 0) lo = 0;
      if (hi > ow) hi = ow;
      if (hi < lo) hi = lo;
      const int j0 = lo + kj - pad; /* the first column read, >= 0 */
      const float *row = xc;        /* input row r - pad */
      int r = 0;
      for (; r < pad; r++, d += ow) zero_run(d, ow);
      if (lo == 0 && hi == ow) /* the common case in its own loop: one copy per row */
        for (; r < r1; r++, d += ow, row += w) copy_run(d, row + j0, ow);
      else
        for (; r < r1; r++, d += ow, row += w) {
          zero_run(d, lo);
          copy_run(d + lo, row + j0, hi - lo);
          zero_run(d + hi, ow - hi);
        }
      for (; r < p->hp; r++, d += ow) zero_run(d, ow);
    }
  }
  memset(d, 0, sizeof(float) * (p->xslen - (size_t)(d - xs)));
}

/* off[t] = offset in fwd_pack's layout of tap t = (c*KH + ki)*KW + kj */
static void fwd_offsets(const nn_conv_geom *g, const dplan *p, int *off) {
  const size_t plane = (size_t)p->hp * (size_t)g->ow;
  tap_offsets(g, (size_t)g->kw * plane, (size_t)g->ow, plane, off);
}

/* The output plane of each filter block in register blocks of FWD_BLK outputs straight into y;
 * the last, partial one into tmp, copied. Then the epilogue over the filters' planes. */
static void fwd_sample(const nn_conv_geom *g, const dplan *p, const nn_epilogue *e, const int *off, const float *x,
                       const float *wpk_all, float *y, float *slot) {
  float *xs = slot, *tmp = slot + p->xslen;
  fwd_pack(g, p, x, xs);
  const size_t ohw = (size_t)g->oh * (size_t)g->ow, whole = ohw / FWD_BLK * FWD_BLK;
  const int ckk = p->ckk, nblk = fwd_blocks(g);
  for (int bk = 0; bk < nblk; bk++) {
    const int oc0 = fwd_block_start(g, nblk, bk), ob = fwd_block_start(g, nblk, bk + 1) - oc0;
    const float *wpk = wpk_all + (size_t)oc0 * (size_t)ckk;
    float *yb = y + (size_t)oc0 * ohw;
    for (size_t i = 0; i < whole; i += FWD_BLK) fwd_dispatch(xs + i, off, wpk, ckk, yb + i, ohw, ob, FWD_NV);
    for (size_t i = whole; i < ohw; i += FV) { /* the tail: one vector at a time */
      const size_t n = ohw - i < FV ? ohw - i : FV;
      fwd_dispatch(xs + i, off, wpk, ckk, tmp, FV, ob, 1);
      for (int o = 0; o < ob; o++) memcpy(yb + (size_t)o * ohw + i, tmp + (size_t)o * FV, sizeof(float) * n);
    }
    for (int o = 0; o < ob; o++) conv_epi_n(e, oc0 + o, yb + (size_t)o * ohw, yb + (size_t)o * ohw, ohw);
  }
}

void NN_V(nn_conv2d_direct_forward)(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w,
                                    float *y, float *ws, int nthreads) {
  NN_ASSERT(g->stride == 1);
  dplan p = dplan_make(g, nthreads);
  const size_t chw = (size_t)g->c * (size_t)g->h * (size_t)g->w;
  const size_t ochw = (size_t)g->oc * (size_t)g->oh * (size_t)g->ow;
  float *wpk = ws, *slots = ws + p.lanes; /* the packed weights where the dW pass keeps its lane sums */
  int off[NN_CONV_DIRECT_MAX_TAPS];       /* tap t = (c, ki, kj): its offset in a packed sample */
  fwd_offsets(g, &p, off);
  fwd_pack_weights(g, &p, w, wpk);
  int nt = nthreads < p.slots ? nthreads : p.slots;
  if (nt <= 1) {
    for (int s = 0; s < g->n; s++) fwd_sample(g, &p, e, off, x + (size_t)s * chw, wpk, y + (size_t)s * ochw, slots);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    float *slot = slots + (size_t)omp_get_thread_num() * p.slot;
#pragma omp for schedule(static)
    for (int s = 0; s < g->n; s++) fwd_sample(g, &p, e, off, x + (size_t)s * chw, wpk, y + (size_t)s * ochw, slot);
  }
}

/* The positions a dW block sweeps in a sample: `rows` rows of `len` floats, row r of the
 * packed sample at r*xrow (plus a tap's offset) and of a packed dy row at r*drow. Output rows
 * of whole vectors: OH rows of OW, x at Wp and dy at OW apart; other widths: the flat index,
 * one row of lpad (the dead columns ow >= OW hold dy = 0). */
typedef struct {
  int rows;
  size_t len, xrow, drow;
} dw_sweep;

/* lanes[o*ld + VL*t] (o < OB, t < TK) += over samples s < ns, then the sweep's rows r and
 * i in [0, len), lane-wise: dyp[s*ds + o*lpad + r*drow + i] * xp[s*xst + off[t] + r*xrow + i] */
static inline __attribute__((always_inline)) void dw_block(const float *xp, size_t xst, const int *off,
                                                           const float *dyp, size_t ds, int ns, size_t lpad,
                                                           const dw_sweep *sw, float *lanes, size_t ld, const int OB,
                                                           const int TK) {
  v8 acc[4][8]; /* OB <= 4, TK <= 8 */
#pragma GCC unroll 4
  for (int o = 0; o < OB; o++)
#pragma GCC unroll 8
    for (int t = 0; t < TK; t++) VLOAD(acc[o][t], lanes + (size_t)o * ld + (size_t)t * VL);
  int to[8]; /* the taps' offsets, in registers */
#pragma GCC unroll 8
  for (int t = 0; t < TK; t++) to[t] = off[t];
  for (int s = 0; s < ns; s++) {
    const float *xb = xp + (size_t)s * xst, *db = dyp + (size_t)s * ds;
    for (int r = 0; r < sw->rows; r++, xb += sw->xrow, db += sw->drow)
      for (size_t i = 0; i < sw->len; i += VL) {
        v8 dv[4];
#pragma GCC unroll 4
        for (int o = 0; o < OB; o++) VLOAD(dv[o], db + (size_t)o * lpad + i);
#pragma GCC unroll 8
        for (int t = 0; t < TK; t++) {
          v8 xv;
          VLOAD(xv, xb + to[t] + i);
          /* LeNet conv1's 3x3 block (9 accumulators, 3 dy vectors, this x vector: 13
           * registers) loaded each x vector 3 times, 12 loads for 9 FMAs; kept in a
           * register, its weight gradient is 1.1-1.16x faster. Bigger blocks spill with it
           * (with 16 registers; 3 stay for addresses and the loop). */
          if (OB * TK + OB + 1 <= DW_REGS - 3) VKEEP(xv);
#pragma GCC unroll 4
          for (int o = 0; o < OB; o++) VFMA(acc[o][t], dv[o], xv);
        }
      }
  }
#pragma GCC unroll 4
  for (int o = 0; o < OB; o++)
#pragma GCC unroll 8
    for (int t = 0; t < TK; t++) VSTORE(lanes + (size_t)o * ld + (size_t)t * VL, acc[o][t]);
}

#if NN_BUILD_AVX512
/* dw_block in 16-float vectors where the target has AVX-512: filters 2p and 2p+1 in the low
 * and high halves of pair p's accumulators (a zero high half for an odd last filter), each x
 * vector broadcast to both halves; each half the same lane sums as dw_block's, in the same
 * order. */
static inline __attribute__((always_inline)) void dw_block_pair(const float *xp, size_t xst, const int *off,
                                                                const float *dyp, size_t ds, int ns, size_t lpad,
                                                                const dw_sweep *sw, float *lanes, size_t ld,
                                                                const int OB, const int TK) {
  const int NP = (OB + 1) / 2;
  __m512 acc[3][8]; /* NP <= 3, TK <= 8 */
#pragma GCC unroll 3
  for (int q = 0; q < NP; q++)
#pragma GCC unroll 8
    for (int t = 0; t < TK; t++) {
      const __m256 lo = _mm256_loadu_ps(lanes + (size_t)(2 * q) * ld + (size_t)t * VL);
      acc[q][t] = 2 * q + 1 < OB ? _mm512_insertf32x8(_mm512_castps256_ps512(lo),
                                                      _mm256_loadu_ps(lanes + (size_t)(2 * q + 1) * ld + (size_t)t * VL), 1)
                                 : _mm512_zextps256_ps512(lo);
    }
  int to[8]; /* the taps' offsets, in registers */
#pragma GCC unroll 8
  for (int t = 0; t < TK; t++) to[t] = off[t];
  for (int s = 0; s < ns; s++) {
    const float *xb = xp + (size_t)s * xst, *db = dyp + (size_t)s * ds;
    for (int r = 0; r < sw->rows; r++, xb += sw->xrow, db += sw->drow)
      for (size_t i = 0; i < sw->len; i += VL) {
        __m512 dv[3];
#pragma GCC unroll 3
        for (int q = 0; q < NP; q++) {
          const __m256 lo = _mm256_loadu_ps(db + (size_t)(2 * q) * lpad + i);
          dv[q] = 2 * q + 1 < OB
                      ? _mm512_insertf32x8(_mm512_castps256_ps512(lo), _mm256_loadu_ps(db + (size_t)(2 * q + 1) * lpad + i), 1)
                      : _mm512_zextps256_ps512(lo);
        }
#pragma GCC unroll 8
        for (int t = 0; t < TK; t++) {
          const __m512 xv = _mm512_broadcast_f32x8(_mm256_loadu_ps(xb + to[t] + i));
#pragma GCC unroll 3
          for (int q = 0; q < NP; q++) acc[q][t] = _mm512_fmadd_ps(dv[q], xv, acc[q][t]);
        }
      }
  }
#pragma GCC unroll 3
  for (int q = 0; q < NP; q++)
#pragma GCC unroll 8
    for (int t = 0; t < TK; t++) {
      _mm256_storeu_ps(lanes + (size_t)(2 * q) * ld + (size_t)t * VL, _mm512_castps512_ps256(acc[q][t]));
      if (2 * q + 1 < OB) _mm256_storeu_ps(lanes + (size_t)(2 * q + 1) * ld + (size_t)t * VL, _mm512_extractf32x8_ps(acc[q][t], 1));
    }
}
#endif

/* a block by dw_block_pair where the build has it, except a single filter (its pairs would be
 * half zeros) */
static inline __attribute__((always_inline)) void dw_run(const float *xp, size_t xst, const int *off, const float *dyp,
                                                         size_t ds, int ns, size_t lpad, const dw_sweep *sw,
                                                         float *lanes, size_t ld, const int OB, const int TK) {
#if NN_BUILD_AVX512
  if (OB > 1)
    dw_block_pair(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, TK);
  else
    dw_block(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, 1, TK);
#else
  dw_block(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, TK);
#endif
}

/* One block of OB filters and tk (<= DW_TK) taps. A function per OB: in one function with
 * every block's code the hot loops ran up to 1.25x slower (LeNet conv2's dW, run 29), as
 * they do whenever the code around them moves. */
#define DW_OB_FN(OB)                                                                                             \
  static __attribute__((noinline)) void dw_ob##OB(const float *xp, size_t xst, const int *off, const float *dyp, \
                                                  size_t ds, int ns, size_t lpad, const dw_sweep *sw,            \
                                                  float *lanes, size_t ld, int tk) {                             \
    switch (tk) {                                                                                                \
      case 1: dw_run(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, 1); break;                              \
      case 2: dw_run(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, 2); break;                              \
      case 3: dw_run(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, 3); break;                              \
      case 4: dw_run(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, 4); break;                              \
      case 5: dw_run(xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, OB, 5); break;                              \
      default: NN_ASSERT(0);                                                                                     \
    }                                                                                                            \
  }
_Static_assert(DW_TK == 5, "dw_ob has a case for every tap count up to DW_TK");
DW_OB_FN(1)
DW_OB_FN(2)
#if DW_OB >= 3
DW_OB_FN(3)
DW_OB_FN(4)
#endif
#if DW_OB >= 5
DW_OB_FN(5)
DW_OB_FN(6)
#endif
#undef DW_OB_FN
_Static_assert(DW_OB == 2 || DW_OB == 4 || DW_OB == 6, "a dw_ob function for every block size up to DW_OB");

/* one block of ob (<= DW_OB) filters and tk (<= DW_TK) taps */
static void dw_dispatch(const float *xp, size_t xst, const int *off, const float *dyp, size_t ds, int ns,
                        size_t lpad, const dw_sweep *sw, float *lanes, size_t ld, int ob, int tk) {
  static void (*const fn[])(const float *, size_t, const int *, const float *, size_t, int, size_t, const dw_sweep *,
                            float *, size_t, int) = { dw_ob1,
                                                      dw_ob2,
#if DW_OB >= 3
                                                      dw_ob3,
                                                      dw_ob4,
#endif
#if DW_OB >= 5
                                                      dw_ob5,
                                                      dw_ob6
#endif
  };
  _Static_assert(sizeof fn / sizeof *fn == DW_OB, "a function per block size");
  NN_ASSERT(ob >= 1 && ob <= DW_OB);
  fn[ob - 1](xp, xst, off, dyp, ds, ns, lpad, sw, lanes, ld, tk);
}

/* Block bo's first filter (bo = nob: nf) of nf filters in nu units of DW_UNIT, nob blocks */
static inline int dw_block_start(int nf, int nu, int nob, int bo) {
  const int f = DW_UNIT * (int)((long)bo * nu / nob);
  return f < nf ? f : nf;
}

/* Every filter's lane sums over samples [n0, n1) into lanes_all (one group's). Samples go in
 * batches of p->sb: their packed planes at xp + s*xplen, and per filter block their dy rows
 * at dyp + (s*DW_OB + o)*lpad; each lane still adds over the samples in order. dw, db: which
 * sums are wanted (NULL: not). */
static void dw_group(const nn_conv_geom *g, const dplan *p, nn_act act, const float *x, const float *z,
                     const float *dz, const float *dw, const float *db, float *lanes_all, float *slot, int n0,
                     int n1) {
  const size_t ld = ((size_t)p->ckk + 1) * VL; /* lanes per filter */
  const size_t chw = (size_t)g->c * (size_t)g->h * (size_t)g->w, ohw = (size_t)g->oh * (size_t)g->ow;
  const int whole = whole_rows(g);
  const dw_sweep sw = whole ? (dw_sweep){g->oh, (size_t)g->ow, (size_t)p->wp, (size_t)g->ow}
                            : (dw_sweep){1, p->lpad, 0, 0};
  float *xp = slot, *dyp = slot + (size_t)p->sb * p->xplen;
  /* unpadded input, output rows of whole vectors: the sweep reads only inside a sample's
   * planes (the last tap's last row ends at its last value), so it reads x itself, samples
   * chw apart, instead of a packed copy (LeNet's two layers: 840 KB a step not copied) */
  const int unpacked = g->pad == 0 && whole;
  const size_t xst = unpacked ? chw : p->xplen;
  int off[NN_CONV_DIRECT_MAX_TAPS]; /* tap t = (c, ki, kj): its offset in xp */
  tap_offsets(g, p->plane, (size_t)p->wp, 1, off);
  memset(lanes_all, 0, sizeof(float) * (size_t)g->oc * ld);
  const int ntb = (p->ckk + DW_TK - 1) / DW_TK;                   /* tap blocks, sizes balanced */
  const int nf = g->oc, nu = (nf + DW_UNIT - 1) / DW_UNIT;        /* filters, their units (pairs or one) */
  const int nob = (nu + DW_OB / DW_UNIT - 1) / (DW_OB / DW_UNIT); /* filter blocks, sizes balanced over units */
  const size_t ds = (size_t)DW_OB * p->lpad;                      /* one sample's dy rows */
  /* on the flat index the packing below writes only the columns ow < OW of each row: the
   * other columns and the rows past OH, which the sweep reads, stay the zeros written here
   * (whole-vector rows read only what the packing writes) */
  if (!whole) memset(dyp, 0, sizeof(float) * (size_t)p->sb * ds);
  for (int s0 = n0; s0 < n1; s0 += p->sb) {
    const int ns = n1 - s0 < p->sb ? n1 - s0 : p->sb;
    for (int s = 0; dw && !unpacked && s < ns; s++)
      pack_sample(g, p, x + (size_t)(s0 + s) * chw, xp + (size_t)s * p->xplen);
    const float *xs = unpacked ? x + (size_t)s0 * chw : xp;
    for (int bo = 0; bo < nob; bo++) {
      const int oc0 = dw_block_start(nf, nu, nob, bo), ob = dw_block_start(nf, nu, nob, bo + 1) - oc0;
      for (int s = 0; s < ns; s++)
        for (int o = 0; o < ob; o++) { /* dy row o of sample s = dz[s0+s, oc0+o] * act'(z) */
          float *d = dyp + (size_t)s * ds + (size_t)o * p->lpad;
          const size_t at = ((size_t)(s0 + s) * (size_t)g->oc + (size_t)(oc0 + o)) * ohw;
          if (whole) /* rows back to back, as in dz: one call */
            act_grad_from(act, z, dz, conv_dz_plane(g), at, d, ohw);
          else /* on the flat index: rows Wp apart */
            for (int oh = 0; oh < g->oh; oh++) {
              const size_t r = at + (size_t)oh * (size_t)g->ow;
              act_grad_from(act, z, dz, conv_dz_plane(g), r, d + (size_t)oh * (size_t)p->wp, (size_t)g->ow);
            }
          if (db) {
            float *lb = lanes_all + (size_t)(oc0 + o) * ld + (size_t)p->ckk * VL;
            v8 a, v;
            VLOAD(a, lb);
            for (size_t i = 0; i < (size_t)sw.rows * sw.len; i += VL) { /* what the sweep reads */
              VLOAD(v, d + i);
              a += v;
            }
            VSTORE(lb, a);
          }
        }
      if (!dw) continue;
      float *lanes = lanes_all + (size_t)oc0 * ld;
      for (int bt = 0; bt < ntb; bt++) {
        const int t0 = (int)((long)bt * p->ckk / ntb), tk = (int)((long)(bt + 1) * p->ckk / ntb) - t0;
        dw_dispatch(xs, xst, off + t0, dyp, ds, ns, p->lpad, &sw, lanes + (size_t)t0 * VL, ld, ob, tk);
      }
    }
  }
}

/* Filter oc's sums: the G groups' lanes added lane by lane in group order, then the lanes in
 * a fixed tree, into dw and db. */
static void dw_finish(const dplan *p, const float *lanes_all, int groups, int oc, float *dw, float *db) {
  const size_t ld = ((size_t)p->ckk + 1) * VL;
  for (int t = 0; t <= p->ckk; t++) {
    float l[VL];
    const float *src = lanes_all + (size_t)oc * ld + (size_t)t * VL;
    for (int i = 0; i < VL; i++) l[i] = src[i];
    for (int k = 1; k < groups; k++)
      for (int i = 0; i < VL; i++) l[i] += src[(size_t)k * p->glanes + (size_t)i];
    const float s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    if (t < p->ckk) {
      if (dw) dw[(size_t)oc * (size_t)p->ckk + (size_t)t] += s;
    } else if (db) {
      db[oc] += s;
    }
  }
}

void NN_V(nn_conv2d_direct_backward_params)(const nn_conv_geom *g, nn_act act, const float *x, const float *z,
                                            const float *dz, float *dw, float *db, float *ws, int nthreads) {
  NN_ASSERT(g->stride == 1);
  if (!dw && !db) return;
  dplan p = dplan_make(g, nthreads);
  float *slots = ws + p.lanes;
  const int groups = dw_groups(g->n);
  int nt = nthreads < p.slots ? nthreads : p.slots;
  if (nt > groups) nt = groups;
#pragma omp parallel num_threads(nt > 1 ? nt : 1) if (nt > 1)
  {
    float *slot = slots + (size_t)omp_get_thread_num() * p.slot;
#pragma omp for schedule(static)
    for (int k = 0; k < groups; k++)
      dw_group(g, &p, act, x, z, dz, dw, db, ws + (size_t)k * p.glanes, slot, nn_group_start(g->n, groups, k),
               nn_group_start(g->n, groups, k + 1));
#pragma omp for schedule(static)
    for (int oc = 0; oc < g->oc; oc++) dw_finish(&p, ws, groups, oc, dw, db);
  }
}

/* ---- dx: stride 1, no padding, OW a multiple of VL -------------------------------------
 * dx[n,c,ih,iw] = sum over kj of t[kj](ih, iw - kj), where t[kj](ih, ow) = sum over ki, then
 * oc, in order, of w[oc,c,ki,kj] * dy[n,oc,ih-ki,ow] (the ki with 0 <= ih - ki < OH): for each
 * input channel c, R rows of dx and one vector of VL output columns, the KW x R vectors
 * t are summed over (ki, oc) in registers (per pair: R loads of dy, KW weight broadcasts),
 * then added into the dx row at their shifts, kj in order. What im2col + GEMM computes,
 * without writing and reading back the C*KH*KW x OH*OW column matrix, and with one pass over
 * each dx row per column vector (the shifted adds ran once per ki before run 16: LeNet
 * conv2's dx at 58 GFLOP/s, now 73). Samples split over threads; each dx by one thread.
 * Where the target has AVX-512, two input channels at once (dx_block_pair): 16-float vectors,
 * channel c in the low half and c+1 in the high one, each half the same sums as dx_block's. */
#if NN_BUILD_AVX512
/* dx rows per block: 4 x KW accumulators in 32 registers (LeNet conv2 1.1x 2 rows' on the Intel
 * host of run 20, two 512-bit FMAs a cycle: more FMAs share each dy load); 2 where a 512-bit
 * FMA runs in two halves (nn_cpu_fma512_split; AMD Zen 4, run 29: LeNet conv2's dx 1.16x 4
 * rows'), whose one FMA a cycle is the limit: a block of 4 rows spends 23 % of LeNet conv2's
 * FMAs on rows outside dy's plane (zeros), of 2 rows 9 %. The same sums either way: a row's
 * accumulators start at +0 and the zero rows add +-0 to them. */
#define DX_R_MAX 4
#else
#define DX_R_MAX 2
#endif

/* row[kj + i] += t[kj][i] (i < VL), kj in order: the R x KW block's sums for one dx row, at
 * column vector col. Each dx value gets them from the blocks of one or (where column vectors
 * meet) two consecutive col, so the row needs no zeroing first: at col = 0 it starts from
 * zeros, further on from the KW - 1 columns the previous vector's block wrote past its end
 * and zeros after them (the same +0 the memset wrote; 0.4 MB a LeNet step not written).
 * Adding the shifted vectors one by one in memory reloads just-stored, overlapping vectors (a
 * store-forwarding stall each); with AVX2 the row's 8 + (KW - 1) values stay in two
 * registers (lanes rotated by kj, each lane added where its column falls) and are stored
 * once. */
static inline __attribute__((always_inline)) void dx_add_row(float *row, int col, const v8 *t, const int KW) {
#if defined(__AVX2__)
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i hmask = _mm256_cmpgt_epi32(_mm256_set1_epi32(KW - 1), iota); /* columns 8 .. 8+KW-2 */
  __m256 lo = col ? _mm256_maskload_ps(row, hmask) : _mm256_setzero_ps(), hi = _mm256_setzero_ps();
#pragma GCC unroll 5
  for (int kj = 0; kj < KW; kj++) {
    const __m256 rot = _mm256_permutevar8x32_ps(
        (__m256)t[kj], _mm256_and_si256(_mm256_sub_epi32(iota, _mm256_set1_epi32(kj)), _mm256_set1_epi32(7)));
    const __m256 in_lo = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(kj - 1)));
    lo = _mm256_blendv_ps(lo, _mm256_add_ps(lo, rot), in_lo);
    if (kj) hi = _mm256_blendv_ps(_mm256_add_ps(hi, rot), hi, in_lo);
  }
  _mm256_storeu_ps(row, lo);
  _mm256_maskstore_ps(row + VL, hmask, hi);
#else
  float v[VL];
  for (int i = col ? KW - 1 : 0; i < VL + KW - 1; i++) row[i] = 0.0f;
#pragma GCC unroll 5
  for (int kj = 0; kj < KW; kj++) {
    VSTORE(v, t[kj]);
    for (int i = 0; i < VL; i++) row[kj + i] += v[i];
  }
#endif
}

/* The dy rows r < R of a block at (ih, col) for kernel row ki: dp[r] and the step to the next
 * filter's, or zeros (step 0) for a row outside the plane (it adds zeros). */
static inline __attribute__((always_inline)) void dx_rows(const nn_conv_geom *g, const float *dy, int ih, int ki,
                                                          int col, const int R, const float **dp, size_t *step) {
  static const float zeros[VL] = {0};
  const size_t ohw = (size_t)g->oh * (size_t)g->ow;
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    const int oh = ih + r - ki;
    const int in = oh >= 0 && oh < g->oh;
    dp[r] = in ? dy + (size_t)oh * (size_t)g->ow + (size_t)col : zeros;
    step[r] = in ? ohw : 0;
  }
}

/* the ki with a dy row for some of the R dx rows from ih: ih - ki <= OH - 1 and ih + R - 1 - ki >= 0 */
static inline int dx_ki_lo(const nn_conv_geom *g, int ih) { return ih - g->oh + 1 > 0 ? ih - g->oh + 1 : 0; }
static inline int dx_ki_hi(const nn_conv_geom *g, int ih, int R) { return ih + R - 1 < g->kh - 1 ? ih + R - 1 : g->kh - 1; }

static inline __attribute__((always_inline)) void dx_block(const nn_conv_geom *g, const float *w, const float *dy,
                                                           float *dxc, int c, int ih, int col, const int R,
                                                           const int KW) {
  const size_t ckk = (size_t)g->c * (size_t)g->kh * (size_t)KW;
  v8 acc[NN_CONV_DIRECT_DX_MAX_KW][DX_R_MAX];
#pragma GCC unroll 5
  for (int kj = 0; kj < KW; kj++)
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[kj][r] = VBCAST(0.0f);
  for (int ki = dx_ki_lo(g, ih), khi = dx_ki_hi(g, ih, R); ki <= khi; ki++) {
    const float *dp[DX_R_MAX];
    size_t step[DX_R_MAX];
    dx_rows(g, dy, ih, ki, col, R, dp, step);
    const float *wp = w + ((size_t)c * (size_t)g->kh + (size_t)ki) * (size_t)KW; /* w[0, c, ki, 0] */
    for (int oc = 0; oc < g->oc; oc++, wp += ckk) {
      v8 dv[DX_R_MAX];
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) VLOAD(dv[r], dp[r] + (size_t)oc * step[r]);
      VRANK1(acc, wp, dv, KW, R);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    v8 t[NN_CONV_DIRECT_DX_MAX_KW];
#pragma GCC unroll 5
    for (int kj = 0; kj < KW; kj++) t[kj] = acc[kj][r];
    dx_add_row(dxc + (size_t)(ih + r) * (size_t)g->w + (size_t)col, col, t, KW);
  }
}

/* wpk = w for the pairs of input channels (2p, 2p+1), p < C/2, as 16-float vectors:
 * wpk[(((p*KH + ki)*OC + oc)*KW + kj)*16 + h*8 + i] = w[oc, 2p+h, ki, kj] (i < 8). Once per
 * call, dx_pairs_floats(g) floats. */
static void dx_pack_pairs(const nn_conv_geom *g, const float *w, float *wpk) {
  const size_t ckk = (size_t)g->c * (size_t)g->kh * (size_t)g->kw;
  for (int p = 0; p < g->c / 2; p++)
    for (int ki = 0; ki < g->kh; ki++)
      for (int oc = 0; oc < g->oc; oc++)
        for (int kj = 0; kj < g->kw; kj++, wpk += 16)
          for (int h = 0; h < 2; h++) {
            const float v = w[(size_t)oc * ckk + ((size_t)(2 * p + h) * (size_t)g->kh + (size_t)ki) * (size_t)g->kw + (size_t)kj];
            for (int i = 0; i < 8; i++) wpk[h * 8 + i] = v;
          }
}

#if NN_BUILD_AVX512
/* dx_block for input channels 2p (dx plane dxc) and 2p+1 (dxc + H*W) at once: each dy vector
 * broadcast to both halves of a 16-float vector, times the pair's packed weights (wpk at the
 * pair's first row), accumulated, then each half added into its own rows by dx_add_row. */
static inline __attribute__((always_inline)) void dx_block_pair(const nn_conv_geom *g, const float *wpk,
                                                                const float *dy, float *dxc, int ih, int col,
                                                                const int R, const int KW) {
  const size_t per_ki = (size_t)g->oc * (size_t)KW * 16;
  __m512 acc[NN_CONV_DIRECT_DX_MAX_KW][DX_R_MAX];
#pragma GCC unroll 5
  for (int kj = 0; kj < KW; kj++)
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[kj][r] = _mm512_setzero_ps();
  for (int ki = dx_ki_lo(g, ih), khi = dx_ki_hi(g, ih, R); ki <= khi; ki++) {
    const float *dp[DX_R_MAX];
    size_t step[DX_R_MAX];
    dx_rows(g, dy, ih, ki, col, R, dp, step);
    const float *wp = wpk + (size_t)ki * per_ki;
    for (int oc = 0; oc < g->oc; oc++, wp += (size_t)KW * 16) {
      __m512 dv[DX_R_MAX];
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) dv[r] = _mm512_broadcast_f32x8(_mm256_loadu_ps(dp[r] + (size_t)oc * step[r]));
#pragma GCC unroll 5
      for (int kj = 0; kj < KW; kj++) {
        __m512 wv = _mm512_loadu_ps(wp + (size_t)kj * 16);
        /* one load for the R rows: folded into each FMA, a block of 2 rows loaded 12 vectors
         * for 10 FMAs, more than Zen 4's one 512-bit load a cycle feeds (LeNet conv2's dx
         * 1.15x kept) */
        if (R > 1) VKEEP(wv);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[kj][r] = _mm512_fmadd_ps(wv, dv[r], acc[kj][r]);
      }
    }
  }
  const size_t hw = (size_t)g->h * (size_t)g->w;
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    v8 lo[NN_CONV_DIRECT_DX_MAX_KW], hi[NN_CONV_DIRECT_DX_MAX_KW];
#pragma GCC unroll 5
    for (int kj = 0; kj < KW; kj++) {
      lo[kj] = (v8)_mm512_castps512_ps256(acc[kj][r]);
      hi[kj] = (v8)_mm512_extractf32x8_ps(acc[kj][r], 1);
    }
    float *row = dxc + (size_t)(ih + r) * (size_t)g->w + (size_t)col;
    dx_add_row(row, col, lo, KW);
    dx_add_row(row + hw, col, hi, KW);
  }
}
#endif

/* One sample with KW and the block's rows R known at compile time (the accumulators then stay
 * in registers). */
static inline __attribute__((always_inline)) void dx_sample_kw(const nn_conv_geom *g, const float *w,
                                                               const float *wpk, const float *dy, float *dx,
                                                               const int KW, const int R) {
  const size_t hw = (size_t)g->h * (size_t)g->w;
  int c = 0;
#if NN_BUILD_AVX512
  for (; c + 1 < g->c; c += 2) {
    float *dxc = dx + (size_t)c * hw;
    const float *wp = wpk + (size_t)(c / 2) * (size_t)g->kh * (size_t)g->oc * (size_t)KW * 16;
    int ih = 0;
    for (; ih + R <= g->h; ih += R)
      for (int col = 0; col < g->ow; col += VL) dx_block_pair(g, wp, dy, dxc, ih, col, R, KW);
    for (; ih < g->h; ih++)
      for (int col = 0; col < g->ow; col += VL) dx_block_pair(g, wp, dy, dxc, ih, col, 1, KW);
  }
#else
  (void)wpk;
#endif
  for (; c < g->c; c++) {
    float *dxc = dx + (size_t)c * hw;
    int ih = 0;
    for (; ih + R <= g->h; ih += R)
      for (int col = 0; col < g->ow; col += VL) dx_block(g, w, dy, dxc, c, ih, col, R, KW);
    for (; ih < g->h; ih++)
      for (int col = 0; col < g->ow; col += VL) dx_block(g, w, dy, dxc, c, ih, col, 1, KW);
  }
}

#define DX_SAMPLE_KW_CASES(R)                             \
  switch (g->kw) {                                        \
    case 1: dx_sample_kw(g, w, wpk, dy, dx, 1, R); break; \
    case 2: dx_sample_kw(g, w, wpk, dy, dx, 2, R); break; \
    case 3: dx_sample_kw(g, w, wpk, dy, dx, 3, R); break; \
    case 4: dx_sample_kw(g, w, wpk, dy, dx, 4, R); break; \
    case 5: dx_sample_kw(g, w, wpk, dy, dx, 5, R); break; \
    default: NN_ASSERT(0);                                \
  }

/* rows: the blocks' dx rows, 2 or (where the build has AVX-512) 4 */
static void dx_sample(const nn_conv_geom *g, const float *w, const float *wpk, const float *dy, float *dx, int rows) {
#if NN_BUILD_AVX512
  if (rows == 4) {
    DX_SAMPLE_KW_CASES(4)
    return;
  }
#endif
  (void)rows;
  DX_SAMPLE_KW_CASES(2)
}
#undef DX_SAMPLE_KW_CASES
_Static_assert(NN_CONV_DIRECT_DX_MAX_KW == 5, "dx_sample has a case for every KW up to the maximum");

void NN_V(nn_conv2d_direct_backward_data)(const nn_conv_geom *g, nn_act act, const float *w, const float *z,
                                          const float *dz, float *dx, float *ws, int nthreads) {
  NN_ASSERT(nn_conv2d_direct_data_fits(g));
  const size_t chw = (size_t)g->c * (size_t)g->h * (size_t)g->w;
  const size_t ochw = (size_t)g->oc * (size_t)g->oh * (size_t)g->ow;
  float *wpk = ws, *dys_all = ws + dx_pairs_floats(g);
  if (NN_BUILD_AVX512) dx_pack_pairs(g, w, wpk);
  const int rows = NN_BUILD_AVX512 && nn_cpu_fma512_split() ? 2 : DX_R_MAX;
  int nt = nthreads < g->n ? nthreads : g->n;
#pragma omp parallel num_threads(nt > 1 ? nt : 1) if (nt > 1)
  {
    float *dyb = dys_all + (size_t)omp_get_thread_num() * ochw; /* dy = dz * act'(z), one sample */
#pragma omp for schedule(static)
    for (int s = 0; s < g->n; s++) {
      const float *dys = act_grad_or_dz(act, z, dz, conv_dz_plane(g), (size_t)s * ochw, dyb, ochw);
      dx_sample(g, w, wpk, dys, dx + (size_t)s * chw, rows);
    }
  }
}
