/* conv2d: x[N,C,H,W], w[OC,C,KH,KW], b[OC] or NULL, y[N,OC,OH,OW]; im2col + GEMM, or the
 * direct convolution of conv2d_direct.c where nn_conv2d_algo* picks it (forward, dW, db,
 * and dx of unpadded layers with output rows of whole vectors), or Winograd's F(2x2, 3x3) of
 * conv2d_winograd.c (3x3 stride-1 layers with 16+ channels, every pass). The forward's epilogue
 * (nn_epilogue: bias, an eval BN, the activation) runs on each output row as it is written;
 * backward_act computes dy = dz * act'(z) where it copies dy (bit for bit the separate kernels).
 *
 * The batch is cut into chunks of `cs` samples (cs depends only on the geometry, sized so
 * that a chunk's column matrix stays in L2). Per chunk, one thread:
 *   forward:  col[CKK, cs*OHW] = im2col(x chunk); tmp[OC, cs*OHW] = w @ col; y = epilogue(tmp)
 *             (scattered back to N,OC,OHW order),
 *   backward: tmp[OC, cs*OHW] = dy chunk; dW_part (+)= tmp @ col^T (or its transpose
 *             col @ tmp^T, whichever GEMM shape is faster); db_part (+)= row sums;
 *             dcol = w^T @ tmp; dx chunk = col2im(dcol).
 * Parameter gradients: chunks are dealt to at most CONV_GROUPS groups by a rule that depends
 * only on the geometry; a group's chunks run in order on one thread into that group's
 * partial, and the partials are summed in group order. So every output is reduced in a fixed
 * order, independent of the number of threads.
 *
 * Workspace (floats): slots * (margin + col + tmp) + groups * (OC*CKK + OC), where slots (one
 * per thread that may run) = min(chunks, nn_cores()) and the margin (CONV_COL_MARGIN) lies
 * before each col (col2im_s1's masked loads address a few floats before it), or the direct
 * or Winograd passes' own if larger (the passes run one after the other in it). It never
 * decreases with n: a buffer sized for the largest batch serves every smaller batch. */
#include <limits.h>
#include <omp.h>
#include <string.h>
#if (defined(__AVX512F__) && defined(__AVX512VL__)) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "base/aligned.h"
#include "base/cpu.h"
#include "base/error.h"
#include "base/threads.h"
#include "kernels/conv2d_direct.h"
#include "kernels/conv2d_winograd.h"
#include "kernels/seg.h"
#include "kernels/kernels.h"
#include "kernels/variant.h"

#define CONV_CHUNK_FLOATS (1 << 16) /* target size of one chunk's column matrix (256 KB) */
#define CONV_GROUPS 8               /* max partial gradient buffers (fixed: determinism) */
#define CONV_COL_MARGIN 16          /* floats before each slot's col, >= CONV_S1_MAX_KW - 1 */
#define CONV_S1_MAX_KW 8            /* widest kernel col2im_s1 takes */
#define CONV_PAR_FLOPS (1L << 21)   /* below this, one thread */

#if NN_VARIANT_ONCE
int nn_conv_geom_init(nn_conv_geom *g) {
  if (!g) return -1;
  g->oh = g->ow = 0;
  if (g->n < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->oc < 1 || g->kh < 1 || g->kw < 1 ||
      g->stride < 1 || g->pad < 0)
    return -1;
  long hp = (long)g->h + 2L * g->pad, wp = (long)g->w + 2L * g->pad;
  if (hp < g->kh || wp < g->kw || hp > INT_MAX || wp > INT_MAX) return -1;
  long oh = (hp - g->kh) / g->stride + 1, ow = (wp - g->kw) / g->stride + 1;
  long ckk = (long)g->c * g->kh * g->kw;
  /* every GEMM dimension and leading dimension must fit an int */
  if (ckk > INT_MAX || oh * ow > INT_MAX || (long)g->h * g->w > INT_MAX) return -1;
  g->oh = (int)oh;
  g->ow = (int)ow;
  return 0;
}
#endif

typedef struct {
  int ckk, ohw, cs, nchunks, groups, slots;
  int dw_t;                    /* partial dW kept transposed, [CKK, OC] (faster GEMM shape from 16 filters) */
  size_t col, tmp, slot, part; /* floats: col matrix, tmp, one slot, one group partial */
} conv_plan;

static conv_plan conv_plan_make(const nn_conv_geom *g) {
  conv_plan p;
  NN_ASSERT(g->oh >= 1 && g->ow >= 1);
  p.ckk = g->c * g->kh * g->kw;
  p.ohw = g->oh * g->ow;
  size_t per = (size_t)p.ckk * (size_t)p.ohw;
  size_t cs = CONV_CHUNK_FLOATS / (per ? per : 1);
  if (cs < 1) cs = 1;
  if ((size_t)INT_MAX / (size_t)p.ohw < cs) cs = (size_t)INT_MAX / (size_t)p.ohw;
  if (cs > (size_t)g->n) cs = (size_t)g->n;
  /* no rebalancing of the last chunk: cs, chunks, slots and groups then all grow with n, so
   * the workspace for a batch of N also serves any smaller batch (e.g. an epoch's last) */
  p.nchunks = (int)(((size_t)g->n + cs - 1) / cs);
  p.cs = (int)cs;
  p.groups = p.nchunks < CONV_GROUPS ? p.nchunks : CONV_GROUPS;
  /* oneDNN's sgemm blocks M in the dozens: dW[OC, CKK] with few filters wastes most of a
   * block, its transpose dW^T[CKK, OC] does not (measured: LeNet conv2 1.4x faster, conv1
   * with 6 filters 2x slower). Depends on the geometry only. */
  p.dw_t = g->oc >= 16;
  int np = nn_cores();
  p.slots = p.nchunks < np ? p.nchunks : np;
  size_t l = (size_t)p.cs * (size_t)p.ohw;
  p.col = nn_line_floats((size_t)p.ckk * l);
  p.tmp = nn_line_floats((size_t)g->oc * l);
  p.slot = CONV_COL_MARGIN + p.col + p.tmp;
  p.part = nn_line_floats((size_t)g->oc * (size_t)p.ckk + (size_t)g->oc);
  return p;
}

#if NN_VARIANT_ONCE
/* Winograd by request, or by the rule for an output of at least min_out squared */
static int winograd_wanted(const nn_conv_geom *g, int min_out) {
  return (g->algo == NN_CONV_WINOGRAD || (g->algo == NN_CONV_AUTO && g->c >= NN_CONV_WINOGRAD_MIN_C &&
                                          g->oh >= min_out && g->ow >= min_out)) &&
         nn_conv2d_winograd_fits(g);
}

/* The rule at a level: the geometry's choice (rule_forward, rule_params, rule_data), then on
 * an AVX-512 machine the passes where oneDNN's 16-wide GEMM beats our 8-wide kernels sent to
 * im2col + GEMM (rule_wide). */
static nn_conv_algo rule_forward(const nn_conv_geom *g) {
  if (winograd_wanted(g, NN_CONV_WINOGRAD_MIN_OUT)) return NN_CONV_WINOGRAD;
  if (g->algo == NN_CONV_WINOGRAD) return NN_CONV_IM2COL;
  if (g->stride != 1 || (long)g->c * g->kh * g->kw > NN_CONV_DIRECT_MAX_TAPS) return NN_CONV_IM2COL;
  if (g->algo != NN_CONV_AUTO) return g->algo;
  long taps = (long)g->c * g->kh * g->kw;
  return taps <= NN_CONV_DIRECT_MAX_CKK || g->ow % NN_CONV_DIRECT_ROW == 0 ? NN_CONV_DIRECT : NN_CONV_IM2COL;
}

static nn_conv_algo rule_params(const nn_conv_geom *g) {
  if (winograd_wanted(g, NN_CONV_WINOGRAD_MIN_DW_OUT)) return NN_CONV_WINOGRAD;
  nn_conv_algo a = rule_forward(g);
  if (g->algo != NN_CONV_AUTO || a != NN_CONV_DIRECT) return a;
  return g->oc <= NN_CONV_DIRECT_DW_MAX_OC ? NN_CONV_DIRECT : NN_CONV_IM2COL;
}

static nn_conv_algo rule_data(const nn_conv_geom *g) {
  if (g->algo == NN_CONV_WINOGRAD || (g->algo == NN_CONV_AUTO && g->oc >= NN_CONV_WINOGRAD_MIN_C &&
                                      g->h >= NN_CONV_WINOGRAD_MIN_DX_IN && g->w >= NN_CONV_WINOGRAD_MIN_DX_IN))
    if (nn_conv2d_winograd_data_fits(g)) return NN_CONV_WINOGRAD;
  if (g->algo == NN_CONV_WINOGRAD) return NN_CONV_IM2COL;
  if (g->algo == NN_CONV_IM2COL || !nn_conv2d_direct_data_fits(g)) return NN_CONV_IM2COL;
  return g->algo == NN_CONV_DIRECT || g->oc <= NN_CONV_DIRECT_DX_MAX_OC ? NN_CONV_DIRECT : NN_CONV_IM2COL;
}

/* AVX-512 (kernels.h): oneDNN's GEMM runs 16 lanes wide. Winograd only for dW, and for the
 * forward on outputs of at least NN_CONV_SPLIT_WINOGRAD_MIN_OUT squared where 512-bit FMAs
 * run in halves (then the GEMM's width gains little over our kernels); beyond
 * NN_CONV_WIDE_DIRECT_MAX_CKK taps, dW direct only where the direct kernels run 16 wide
 * (NN_BUILD_AVX512), the forward only on rows of whole vectors (its fused epilogue) or where
 * FMAs run in halves. */
static nn_conv_algo rule_wide(const nn_conv_geom *g, nn_conv_pass pass, nn_conv_algo a) {
  if (g->algo != NN_CONV_AUTO) return a;
  const int halves = nn_cpu_fma512_split();
  if (a == NN_CONV_WINOGRAD) {
    const int big = g->oh >= NN_CONV_SPLIT_WINOGRAD_MIN_OUT && g->ow >= NN_CONV_SPLIT_WINOGRAD_MIN_OUT;
    return pass == NN_CONV_PASS_PARAMS || (pass == NN_CONV_PASS_FORWARD && halves && big) ? a : NN_CONV_IM2COL;
  }
  if (a != NN_CONV_DIRECT || (long)g->c * g->kh * g->kw <= NN_CONV_WIDE_DIRECT_MAX_CKK) return a;
  if (pass == NN_CONV_PASS_PARAMS) return NN_BUILD_AVX512 ? a : NN_CONV_IM2COL;
  if (pass == NN_CONV_PASS_FORWARD) return halves || g->ow % NN_CONV_DIRECT_ROW == 0 ? a : NN_CONV_IM2COL;
  return a;
}

nn_conv_algo nn_conv2d_algo_at(const nn_conv_geom *g, nn_conv_pass pass, nn_cpu_level level) {
  const nn_conv_algo a = pass == NN_CONV_PASS_FORWARD ? rule_forward(g) : pass == NN_CONV_PASS_PARAMS ? rule_params(g)
                                                                                                      : rule_data(g);
  return level >= NN_CPU_AVX512 ? rule_wide(g, pass, a) : a;
}

nn_conv_algo nn_conv2d_algo(const nn_conv_geom *g) {
  return nn_conv2d_algo_at(g, NN_CONV_PASS_FORWARD, nn_cpu_level_get());
}
nn_conv_algo nn_conv2d_algo_params(const nn_conv_geom *g) {
  return nn_conv2d_algo_at(g, NN_CONV_PASS_PARAMS, nn_cpu_level_get());
}
nn_conv_algo nn_conv2d_algo_data(const nn_conv_geom *g) {
  return nn_conv2d_algo_at(g, NN_CONV_PASS_DATA, nn_cpu_level_get());
}

const char *nn_conv2d_algo_name(nn_conv_algo a) {
  return a == NN_CONV_DIRECT ? "direct" : a == NN_CONV_WINOGRAD ? "winograd"
                                                                : "im2col+gemm";
}

size_t nn_conv2d_workspace(const nn_conv_geom *g) {
  conv_plan p = conv_plan_make(g);
  size_t need = (size_t)p.slots * p.slot + (size_t)p.groups * p.part;
  /* the passes run one after the other in the same scratch */
  /* the AVX2 rule's choices: the AVX-512 rule only ever trades them for im2col (sized above),
   * so the scratch does not depend on the level */
  if (rule_forward(g) == NN_CONV_DIRECT || rule_params(g) == NN_CONV_DIRECT || rule_data(g) == NN_CONV_DIRECT) {
    size_t direct = nn_conv2d_direct_workspace(g, nn_cores());
    if (direct > need) need = direct;
  }
  if (rule_forward(g) == NN_CONV_WINOGRAD || rule_params(g) == NN_CONV_WINOGRAD || rule_data(g) == NN_CONV_WINOGRAD) {
    size_t wino = nn_conv2d_winograd_workspace(g, nn_cores());
    if (wino > need) need = wino;
  }
  return need;
}
#endif

static void chunk_range(const nn_conv_geom *g, const conv_plan *p, int ci, int *s0, int *cnt) {
  int a = ci * p->cs;
  int e = a + p->cs < g->n ? a + p->cs : g->n;
  *s0 = a;
  *cnt = e - a;
}

/* Range [lo, hi) of output columns (or rows) whose input index o*stride - pad + k lies in
 * [0, size). */
static void valid_range(int size, int out, int stride, int pad, int k, int *lo, int *hi) {
  int a = pad - k; /* need o*stride >= a */
  int l = a <= 0 ? 0 : (a + stride - 1) / stride;
  int num = size - 1 + pad - k; /* need o*stride <= num */
  int h = num < 0 ? 0 : num / stride + 1;
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* rows x len block copy / add between strided rows (stride-1 im2col/col2im inner loops),
 * with the row-length dispatch hoisted out of the row loop. */
static void copy_rows(float *d, size_t dst_st, const float *src, size_t src_st, int rows, int len) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  if (len == 8) {
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st) _mm256_storeu_ps(d, _mm256_loadu_ps(src));
    return;
  }
  if (len == 24) {
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st) {
      _mm256_storeu_ps(d, _mm256_loadu_ps(src));
      _mm256_storeu_ps(d + 8, _mm256_loadu_ps(src + 8));
      _mm256_storeu_ps(d + 16, _mm256_loadu_ps(src + 16));
    }
    return;
  }
  if (len <= 16) {
    const __mmask16 m = (__mmask16)(len == 16 ? 0xFFFFu : (1u << len) - 1u);
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st)
      _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, src));
    return;
  }
  if (len <= 32) {
    const __mmask16 m = (__mmask16)(len == 32 ? 0xFFFFu : (1u << (len - 16)) - 1u);
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st) {
      _mm512_storeu_ps(d, _mm512_loadu_ps(src));
      _mm512_mask_storeu_ps(d + 16, m, _mm512_maskz_loadu_ps(m, src + 16));
    }
    return;
  }
#endif
  for (int r = 0; r < rows; r++, d += dst_st, src += src_st) seg_copy(d, src, len);
}

static void add_rows(float *d, size_t dst_st, const float *src, size_t src_st, int rows, int len) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  /* unmasked or 8-wide masked only: see seg_add */
  if (len == 8) {
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st)
      _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(src)));
    return;
  }
  if (len == 16) {
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st)
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(src)));
    return;
  }
  if (len == 24) {
    for (int r = 0; r < rows; r++, d += dst_st, src += src_st) {
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(src)));
      _mm256_storeu_ps(d + 16, _mm256_add_ps(_mm256_loadu_ps(d + 16), _mm256_loadu_ps(src + 16)));
    }
    return;
  }
#endif
  for (int r = 0; r < rows; r++, d += dst_st, src += src_st) seg_add(d, src, len);
}

/* col[CKK, cnt*OHW] from the cnt samples at x (zero padding). Rows are written in order. */
static void im2col(const nn_conv_geom *g, const float *x, int cnt, float *col) {
  const int H = g->h, W = g->w, OH = g->oh, OW = g->ow, st = g->stride, pad = g->pad;
  const size_t hw = (size_t)H * (size_t)W, chw = (size_t)g->c * hw, ohw = (size_t)OH * (size_t)OW;
  const size_t L = (size_t)cnt * ohw;
  for (int c = 0; c < g->c; c++) {
    for (int ki = 0; ki < g->kh; ki++) {
      int oh_lo, oh_hi;
      valid_range(H, OH, st, pad, ki, &oh_lo, &oh_hi);
      for (int kj = 0; kj < g->kw; kj++) {
        int ow_lo, ow_hi;
        valid_range(W, OW, st, pad, kj, &ow_lo, &ow_hi);
        const int off = kj - pad; /* input column = ow*st + off, >= 0 for ow >= ow_lo */
        const int len = ow_hi - ow_lo, right = OW - ow_hi;
        float *row = col + (size_t)((c * g->kh + ki) * g->kw + kj) * L;
        for (int s = 0; s < cnt; s++) {
          float *d = row + (size_t)s * ohw;
          if (oh_lo >= oh_hi || len <= 0) { /* this tap never meets the input: zeros */
            seg_zero(d, OH * OW);
            continue;
          }
          const float *xp = x + (size_t)s * chw + (size_t)c * hw;
          seg_zero(d, oh_lo * OW);
          float *dr = d + (size_t)oh_lo * (size_t)OW;
          const float *xr = xp + (size_t)(oh_lo * st - pad + ki) * (size_t)W;
          if (st == 1 && ow_lo == 0 && right == 0) {
            copy_rows(dr, (size_t)OW, xr + off, (size_t)W, oh_hi - oh_lo, len);
          } else {
            for (int oh = oh_lo; oh < oh_hi; oh++, dr += OW, xr += (size_t)st * (size_t)W) {
              if (ow_lo) seg_zero(dr, ow_lo);
              if (st == 1) {
                seg_copy(dr + ow_lo, xr + ow_lo + off, len);
              } else {
                for (int ow = ow_lo; ow < ow_hi; ow++) dr[ow] = xr[ow * st + off];
              }
              if (right) seg_zero(dr + ow_hi, right);
            }
          }
          seg_zero(d + (size_t)oh_hi * (size_t)OW, (OH - oh_hi) * OW);
        }
      }
    }
  }
}

/* dx (cnt samples, already zeroed) += col2im(dcol). Each dx element receives its terms in
 * the fixed (ki, kj) order. (ki, kj) is outermost so that successive read-modify-write
 * passes over the same dx row (shifted by one column) are far apart: back to back, the
 * misaligned reloads of just-stored vectors stall on store forwarding. */
static void col2im_add(const nn_conv_geom *g, const float *dcol, int cnt, float *dx) {
  const int H = g->h, W = g->w, OH = g->oh, OW = g->ow, st = g->stride, pad = g->pad;
  const size_t hw = (size_t)H * (size_t)W, chw = (size_t)g->c * hw, ohw = (size_t)OH * (size_t)OW;
  const size_t L = (size_t)cnt * ohw;
  for (int ki = 0; ki < g->kh; ki++) {
    int oh_lo, oh_hi;
    valid_range(H, OH, st, pad, ki, &oh_lo, &oh_hi);
    for (int kj = 0; kj < g->kw; kj++) {
      int ow_lo, ow_hi;
      valid_range(W, OW, st, pad, kj, &ow_lo, &ow_hi);
      const int off = kj - pad;
      const int len = ow_hi - ow_lo;
      if (oh_lo >= oh_hi || len <= 0) continue; /* this tap never meets the input */
      for (int c = 0; c < g->c; c++) {
        const float *row = dcol + (size_t)((c * g->kh + ki) * g->kw + kj) * L;
        for (int s = 0; s < cnt; s++) {
          float *xr = dx + (size_t)s * chw + (size_t)c * hw + (size_t)(oh_lo * st - pad + ki) * (size_t)W;
          const float *dr = row + (size_t)s * ohw + (size_t)oh_lo * (size_t)OW;
          if (st == 1) {
            add_rows(xr + ow_lo + off, (size_t)W, dr + ow_lo, (size_t)OW, oh_hi - oh_lo, len);
          } else {
            for (int oh = oh_lo; oh < oh_hi; oh++, dr += OW, xr += (size_t)st * (size_t)W)
              for (int ow = ow_lo; ow < ow_hi; ow++) xr[ow * st + off] += dr[ow];
          }
        }
      }
    }
  }
}

#if defined(__AVX2__)
/* col2im for stride 1 and rows of at least 8, overwriting dx: each vector of 8 dx values is
 * summed over its taps in registers, (ki, kj) in the order col2im_add adds them, and stored once
 * (no zero fill, no read-modify-write per tap; col2im's 11-wide rows of cnn conv2 also ran 3
 * of 11 adds scalar). A tap's lanes whose column falls outside the output (padding, the
 * kernel's overhang) are masked loads of 0.0: adding +0.0 changes no sum (one that starts at
 * +0.0 is never -0.0), so dx is col2im_add's bit for bit. Those masked-off lanes may lie up to
 * KW - 1 floats before dcol (the slot's margin) or after it (still in the slot). */
static int col2im_s1_fits(const nn_conv_geom *g) {
  return g->stride == 1 && g->w >= 8 && g->kw <= CONV_S1_MAX_KW;
}
_Static_assert(CONV_COL_MARGIN >= CONV_S1_MAX_KW - 1, "col2im_s1's masked loads stay inside the slot");

/* Output rows ih of CB channels from dc (tap (c, 0, 0) of the first channel): CB independent
 * sums per row (one would be a chain of KH*KW dependent adds). */
static inline __attribute__((always_inline)) void col2im_s1_rows(const nn_conv_geom *g, const float *dc,
                                                                 size_t tap_rows, size_t L, const __m256i *m,
                                                                 float *xr, size_t hw, const int CB, const int KW) {
  const int H = g->h, W = g->w, OH = g->oh, OW = g->ow, KH = g->kh, pad = g->pad;
  for (int ih = 0; ih < H; ih++, xr += W) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int b = 0; b < CB; b++) acc[b] = _mm256_setzero_ps();
    for (int ki = 0; ki < KH; ki++) {
      const int oh = ih + pad - ki;
      if (oh < 0 || oh >= OH) continue; /* this tap row never meets dx row ih */
      const float *src = dc + (size_t)ki * (size_t)KW * L + (size_t)oh * (size_t)OW;
#pragma GCC unroll 8
      for (int kj = 0; kj < KW; kj++, src += L)
#pragma GCC unroll 4
        for (int b = 0; b < CB; b++)
          acc[b] = _mm256_add_ps(acc[b], _mm256_maskload_ps(src + (size_t)b * tap_rows - kj, m[kj]));
    }
#pragma GCC unroll 4
    for (int b = 0; b < CB; b++) _mm256_storeu_ps(xr + (size_t)b * hw, acc[b]);
  }
}

/* The channels of one sample in blocks of 4, with KW known at compile time. */
static inline __attribute__((always_inline)) void col2im_s1_sample(const nn_conv_geom *g, const float *dc,
                                                                   size_t tap_rows, size_t L, const __m256i *m,
                                                                   float *xs, const int KW) {
  const size_t hw = (size_t)g->h * (size_t)g->w;
  int c = 0;
  for (; c + 4 <= g->c; c += 4) col2im_s1_rows(g, dc + (size_t)c * tap_rows, tap_rows, L, m, xs + (size_t)c * hw, hw, 4, KW);
  for (; c < g->c; c++) col2im_s1_rows(g, dc + (size_t)c * tap_rows, tap_rows, L, m, xs + (size_t)c * hw, hw, 1, KW);
}

static void col2im_s1(const nn_conv_geom *g, const float *dcol, int cnt, float *dx) {
  const int W = g->w, OW = g->ow, KW = g->kw, pad = g->pad;
  const size_t hw = (size_t)g->h * (size_t)W, chw = (size_t)g->c * hw, ohw = (size_t)g->oh * (size_t)OW;
  const size_t L = (size_t)cnt * ohw, tap_rows = (size_t)g->kh * (size_t)KW * L;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), ow_end = _mm256_set1_epi32(OW);
  for (int iw0 = 0;; iw0 += 8) {
    if (iw0 > W - 8) iw0 = W - 8; /* the last vector ends at W, overlapping: same values again */
    __m256i m[CONV_S1_MAX_KW];    /* lanes of tap column kj inside the output: 0 <= ow < OW */
    for (int kj = 0; kj < KW; kj++) {
      const __m256i ow = _mm256_add_epi32(iota, _mm256_set1_epi32(iw0 + pad - kj));
      m[kj] = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), ow), _mm256_cmpgt_epi32(ow_end, ow));
    }
    for (int s = 0; s < cnt; s++) {
      const float *dc = dcol + (size_t)s * ohw + (size_t)(iw0 + pad); /* tap (0, 0, 0) */
      float *xs = dx + (size_t)s * chw + (size_t)iw0;
      switch (KW) {
        case 3: col2im_s1_sample(g, dc, tap_rows, L, m, xs, 3); break;
        case 5: col2im_s1_sample(g, dc, tap_rows, L, m, xs, 5); break;
        default: col2im_s1_sample(g, dc, tap_rows, L, m, xs, KW); break;
      }
    }
    if (iw0 == W - 8) break;
  }
}
#endif

/* dx (cnt samples) = col2im(dcol), overwritten: col2im_s1 where it applies, else col2im_add
 * into zeros. */
static void col2im(const nn_conv_geom *g, const float *dcol, int cnt, float *dx) {
#if defined(__AVX2__)
  if (col2im_s1_fits(g)) {
    col2im_s1(g, dcol, cnt, dx);
    return;
  }
#endif
  memset(dx, 0, sizeof(float) * (size_t)cnt * (size_t)g->c * (size_t)g->h * (size_t)g->w);
  col2im_add(g, dcol, cnt, dx);
}

static void conv_fwd_chunk(const nn_conv_geom *g, const conv_plan *p, int ci, const nn_epilogue *e, const float *x,
                           const float *w, float *y, float *slot) {
  int s0, cnt;
  chunk_range(g, p, ci, &s0, &cnt);
  const size_t ohw = (size_t)p->ohw, chw = (size_t)g->c * (size_t)g->h * (size_t)g->w;
  const int L = cnt * p->ohw;
  float *col = slot + CONV_COL_MARGIN, *tmp = col + p->col;
  im2col(g, x + (size_t)s0 * chw, cnt, col);
  nn_gemm(0, 0, g->oc, L, p->ckk, 1.0f, w, p->ckk, col, L, 0.0f, tmp, L);
  for (int s = 0; s < cnt; s++)
    for (int oc = 0; oc < g->oc; oc++)
      conv_epi_n(e, oc, tmp + (size_t)oc * (size_t)L + (size_t)s * ohw,
                 y + ((size_t)(s0 + s) * (size_t)g->oc + (size_t)oc) * ohw, ohw);
}

/* Team size for `units` independent units of work; 1 = run on the calling thread. */
static int conv_team(const nn_conv_geom *g, const conv_plan *p, int units) {
  long flops = 2L * g->n * g->oc * (long)p->ckk * p->ohw;
  if (flops < CONV_PAR_FLOPS || units < 2) return 1;
  int t = omp_get_max_threads();
  if (t > p->slots) t = p->slots;
  if (t > units) t = units;
  return t < 1 ? 1 : t;
}

/* The algorithm this variant runs for a pass the shape rule assigned `a`. The direct kernel
 * is written for 8-wide vectors: compiled without AVX2 (the generic variant of a portable
 * build) its register blocks split and spill, and LeNet conv1's forward ran 13x slower than
 * im2col + GEMM (bench_kernels, NN_CPU=generic). There the rule's direct choice runs im2col;
 * an explicit request (g->algo) still runs direct. */
static nn_conv_algo conv_variant_algo(const nn_conv_geom *g, nn_conv_algo a) {
#ifdef __AVX2__
  (void)g;
  return a;
#else
  return g->algo == NN_CONV_AUTO ? NN_CONV_IM2COL : a;
#endif
}

/* Team size for the direct and Winograd passes over `units` independent units (samples,
 * filters or groups of samples). */
static int direct_team(const nn_conv_geom *g, int units) {
  long flops = 2L * g->n * g->oc * (long)g->c * g->kh * g->kw * g->oh * g->ow;
  if (flops < CONV_PAR_FLOPS || units < 2) return 1;
  int t = omp_get_max_threads(), np = nn_cores();
  if (t > np) t = np;
  if (t > units) t = units;
  return t < 1 ? 1 : t;
}

#if NN_VARIANT_ONCE
void nn_conv2d_forward(const nn_conv_geom *g, const float *x, const float *w, const float *b, float *y,
                       float *ws) {
  const nn_epilogue e = {.bias = b};
  nn_conv2d_forward_epi(g, &e, x, w, y, ws);
}
#endif

void NN_V(nn_conv2d_forward_epi)(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w, float *y,
                                 float *ws) {
  const nn_conv_algo a = conv_variant_algo(g, nn_conv2d_algo(g));
  if (a == NN_CONV_DIRECT) {
    NN_V(nn_conv2d_direct_forward)
    (g, e, x, w, y, ws, direct_team(g, g->n));
    return;
  }
  if (a == NN_CONV_WINOGRAD) {
    NN_V(nn_conv2d_winograd_forward)
    (g, e, x, w, y, ws, direct_team(g, g->n));
    return;
  }
  conv_plan p = conv_plan_make(g);
  int nt = conv_team(g, &p, p.nchunks);
  if (nt <= 1) {
    /* serial: keep oneDNN on this thread too, so the result matches the threaded path */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int ci = 0; ci < p.nchunks; ci++) conv_fwd_chunk(g, &p, ci, e, x, w, y, ws);
    omp_set_num_threads(saved);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    float *slot = ws + (size_t)omp_get_thread_num() * p.slot;
#pragma omp for schedule(dynamic, 1)
    for (int ci = 0; ci < p.nchunks; ci++) conv_fwd_chunk(g, &p, ci, e, x, w, y, slot);
  }
}

/* One chunk of the backward pass. `first` = first chunk of its group (partials are
 * overwritten rather than accumulated). pdw/pdb: the group's partials or NULL. */
static void conv_bwd_chunk(const nn_conv_geom *g, const conv_plan *p, int ci, int first, nn_act act,
                           const float *x, const float *w, const float *z, const float *dz, float *dx, float *pdw,
                           float *pdb, float *slot) {
  int s0, cnt;
  chunk_range(g, p, ci, &s0, &cnt);
  const size_t ohw = (size_t)p->ohw, chw = (size_t)g->c * (size_t)g->h * (size_t)g->w;
  const int L = cnt * p->ohw;
  float *col = slot + CONV_COL_MARGIN, *tmp = col + p->col;
  /* tmp[OC, cnt*OHW] = dy chunk = dz * act'(z) */
  for (int s = 0; s < cnt; s++)
    for (int oc = 0; oc < g->oc; oc++) {
      const size_t at = ((size_t)(s0 + s) * (size_t)g->oc + (size_t)oc) * ohw;
      act_grad_from(act, z, dz, conv_dz_plane(g), at, tmp + (size_t)oc * (size_t)L + (size_t)s * ohw, ohw);
    }
  if (pdb) {
    for (int oc = 0; oc < g->oc; oc++) {
      const float *r = tmp + (size_t)oc * (size_t)L;
      float acc[16] = {0};
      int q = 0;
      for (; q + 16 <= L; q += 16)
        for (int j = 0; j < 16; j++) acc[j] += r[q + j];
      for (int j = 0; q < L; q++, j++) acc[j] += r[q];
      float sum = 0.0f;
      for (int j = 0; j < 16; j++) sum += acc[j];
      pdb[oc] = first ? sum : pdb[oc] + sum;
    }
  }
  if (pdw) {
    im2col(g, x + (size_t)s0 * chw, cnt, col);
    if (p->dw_t) /* dW^T[CKK, OC] (+)= col[CKK, L] @ tmp[OC, L]^T */
      nn_gemm(0, 1, p->ckk, g->oc, L, 1.0f, col, L, tmp, L, first ? 0.0f : 1.0f, pdw, g->oc);
    else /* dW[OC, CKK] (+)= tmp[OC, L] @ col[CKK, L]^T */
      nn_gemm(0, 1, g->oc, p->ckk, L, 1.0f, tmp, L, col, L, first ? 0.0f : 1.0f, pdw, p->ckk);
  }
  if (dx) {
    /* dcol[CKK, L] = w[OC, CKK]^T @ tmp[OC, L], then the dx chunk = col2im(dcol) */
    nn_gemm(1, 0, p->ckk, L, g->oc, 1.0f, w, p->ckk, tmp, L, 0.0f, col, L);
    col2im(g, col, cnt, dx + (size_t)s0 * chw);
  }
}

static void conv_bwd_group(const nn_conv_geom *g, const conv_plan *p, int gi, nn_act act, const float *x,
                           const float *w, const float *z, const float *dz, float *dx, float *dw, float *db,
                           float *ws_part, float *slot) {
  /* group gi owns chunks [gi*nchunks/groups, (gi+1)*nchunks/groups) */
  int c0 = (int)((long)gi * p->nchunks / p->groups);
  int c1 = (int)((long)(gi + 1) * p->nchunks / p->groups);
  float *part = ws_part + (size_t)gi * p->part;
  float *pdw = dw ? part : NULL;
  float *pdb = db ? part + (size_t)g->oc * (size_t)p->ckk : NULL;
  for (int ci = c0; ci < c1; ci++) conv_bwd_chunk(g, p, ci, ci == c0, act, x, w, z, dz, dx, pdw, pdb, slot);
}

/* out[j] += sum over groups (in order) of the partials; j in [j0, j1). The partial of j
 * sits at off + j, or for a transposed dW (tr = OC) at off + (j % CKK) * OC + j / CKK. */
static void conv_reduce(const conv_plan *p, const float *ws_part, float *out, size_t off, int tr, size_t j0,
                        size_t j1) {
  for (size_t j = j0; j < j1; j++) {
    size_t at = off + (tr ? (j % (size_t)p->ckk) * (size_t)tr + j / (size_t)p->ckk : j);
    float s = ws_part[at];
    for (int gi = 1; gi < p->groups; gi++) s += ws_part[(size_t)gi * p->part + at];
    out[j] += s;
  }
}

#if NN_VARIANT_ONCE
void nn_conv2d_backward(const nn_conv_geom *g, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db, float *ws) {
  nn_conv2d_backward_act(g, NN_ACT_NONE, x, w, NULL, dy, dx, dw, db, ws);
}
#endif

void NN_V(nn_conv2d_backward_act)(const nn_conv_geom *g, nn_act act, const float *x, const float *w, const float *z,
                                  const float *dz, float *dx, float *dw, float *db, float *ws) {
  const nn_conv_algo ap = dw || db ? conv_variant_algo(g, nn_conv2d_algo_params(g)) : NN_CONV_IM2COL;
  if (ap == NN_CONV_DIRECT) {
    NN_V(nn_conv2d_direct_backward_params)
    (g, act, x, z, dz, dw, db, ws, direct_team(g, g->oc));
    dw = db = NULL; /* dx (if asked) below */
  }
  if (ap == NN_CONV_WINOGRAD && dw) {
    NN_V(nn_conv2d_winograd_backward_params)
    (g, act, x, z, dz, dw, db, ws, direct_team(g, g->n));
    dw = db = NULL;
  }
  const nn_conv_algo ad = dx ? conv_variant_algo(g, nn_conv2d_algo_data(g)) : NN_CONV_IM2COL;
  if (ad == NN_CONV_DIRECT) {
    NN_V(nn_conv2d_direct_backward_data)
    (g, act, w, z, dz, dx, ws, direct_team(g, g->n));
    dx = NULL; /* dw, db (if asked and not done) below */
  }
  if (ad == NN_CONV_WINOGRAD) {
    NN_V(nn_conv2d_winograd_backward_data)
    (g, act, w, z, dz, dx, ws, direct_team(g, g->n));
    dx = NULL;
  }
  conv_plan p = conv_plan_make(g);
  if (!dx && !dw && !db) return;
  float *ws_part = ws + (size_t)p.slots * p.slot;
  const size_t nw = (size_t)g->oc * (size_t)p.ckk, nb = (size_t)g->oc;
  const int tr = p.dw_t ? g->oc : 0;
  int nt = conv_team(g, &p, p.groups);
  if (nt <= 1) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int gi = 0; gi < p.groups; gi++) conv_bwd_group(g, &p, gi, act, x, w, z, dz, dx, dw, db, ws_part, ws);
    omp_set_num_threads(saved);
    if (dw) conv_reduce(&p, ws_part, dw, 0, tr, 0, nw);
    if (db) conv_reduce(&p, ws_part, db, nw, 0, 0, nb);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    float *slot = ws + (size_t)omp_get_thread_num() * p.slot;
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < p.groups; gi++) conv_bwd_group(g, &p, gi, act, x, w, z, dz, dx, dw, db, ws_part, slot);
    if (dw) {
      /* split dw into fixed blocks of 64; each element summed over groups in order */
      const int blocks = (int)((nw + 63) / 64);
#pragma omp for schedule(static)
      for (int bk = 0; bk < blocks; bk++) {
        size_t j0 = (size_t)bk * 64, j1 = j0 + 64 < nw ? j0 + 64 : nw;
        conv_reduce(&p, ws_part, dw, 0, tr, j0, j1);
      }
    }
#pragma omp single nowait
    if (db) conv_reduce(&p, ws_part, db, nw, 0, 0, nb);
  }
}
