/* conv2d by Winograd's minimal filtering F(2x2, 3x3), stride 1, 3x3 kernels: x[N,C,H,W],
 * w[OC,C,3,3], y[N,OC,OH,OW]; dx[N,C,H,W] from dy[N,OC,OH,OW], the same computation on dy
 * padded by 2 - pad with the filters turned by 180 degrees and transposed; and dW, db (at the
 * end of this file: the forward's transforms, transposed).
 *
 * Each 2x2 block of outputs (a tile; TH x TW tiles cover OH x OW, the last row and column
 * of tiles may stick out) reads a 4x4 patch d of the padded input at (2 th, 2 tw) and is
 *   y_tile = A^T [ sum over c of (G g G^T)[c] (.) (B^T d B)[c] ] A       ((.) elementwise)
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]: 16 products per channel and tile instead of 36, so the 16
 * components xi of the transformed tiles are 16 independent GEMMs with K = C:
 *   M[xi][t][oc] = sum over c (in order) of V[xi][c][t] * U[xi][c][oc]
 * U = the filters' transform (once per call), V = the input's (per sample). The sums are in a
 * different order than im2col + GEMM's, so results differ from it in the last bits (bounded
 * like any float sum: the tests hold both to the same reference twin); every output is
 * computed by one thread in one fixed order, so they do not depend on the thread count.
 *
 * Per sample (samples split over threads, one slot of scratch each):
 *   pack:   the padded input planes, split into even and odd columns (xe, xo), so that the 4
 *           columns of the patches of 8 neighbouring tiles are 4 unit-stride vectors;
 *   V:      B^T d B for 8 tiles of a tile row at a time (lanes past the row's end are stored
 *           and then overwritten by the next row, or land in the padding tiles);
 *   M:      register blocks of 5 or 6 tiles x 16 filters (up to 12 accumulators);
 *   output: A^T M A per tile, 8 filters at a time, into Ys[pixel][oc], then 8x8 transposes
 *           into the output planes and the epilogue (nn_epilogue: bias, an eval BN, the
 *           activation) over each plane.
 *
 * Workspace (floats): U (16*C*OC), then per slot xe and xo (C planes of HP x WE each), V
 * (16*C*TP), M (16*TP*OC) and Ys (OH*OW*OC); the dx pass uses the same layout with C and OC
 * exchanged; the dW pass has its groups' partial sums where U was, then the same slots. */
#include "kernels/conv2d_winograd.h"

#include <omp.h>
#include <string.h>

#include "base/error.h"
#include "kernels/sample_groups.h"
#include "kernels/v8.h"
#include "kernels/variant.h"

#define WG_RMAX 6       /* register block: 5 or 6 tiles (the fewer padding tiles; 6 on a tie), dW up to 6 channels ... */
#define WG_OB 16        /* ... times filters (two vectors) */
#define WG_GROUPS 8     /* dW: partial sums over fixed groups of samples (determinism) */
#define WG_SUM_BLK 1024 /* dW: the groups' sums are added in blocks of this many floats */

typedef struct {
  int c, h, w, oc, pad; /* the convolution this plan runs (for dx: the transposed one) */
  int oh, ow, th, tw;   /* output; tiles */
  int hp, we;           /* padded even/odd planes: rows, columns */
  int r;                /* tiles per register block */
  int tp;               /* tiles rounded up: whole register blocks, room for the last row's spill */
  size_t plane, u, slot;
  size_t dz_plane; /* dx: act_grad_from's plane for src, nonzero where src is a global average
                      pool's gradient over z (one value per plane: conv_dz_plane) */
} wplan;

static wplan wplan_make(int c, int h, int w, int oc, int pad) {
  wplan p;
  p.c = c, p.h = h, p.w = w, p.oc = oc, p.pad = pad, p.dz_plane = 0;
  p.oh = h + 2 * pad - 2;
  p.ow = w + 2 * pad - 2;
  p.th = (p.oh + 1) / 2;
  p.tw = (p.ow + 1) / 2;
  const int twv = (p.tw + VL - 1) / VL * VL; /* tiles per row in whole vectors */
  p.hp = 2 * p.th + 2;
  p.we = twv + 1;
  const int t = p.th * p.tw, spill = (p.th - 1) * p.tw + twv, need = t > spill ? t : spill;
  p.r = WG_RMAX, p.tp = (need + WG_RMAX - 1) / WG_RMAX * WG_RMAX;
  for (int r = WG_RMAX - 1; r >= 5; r--)
    if ((need + r - 1) / r * r < p.tp) p.r = r, p.tp = (need + r - 1) / r * r;
  p.plane = (size_t)p.hp * (size_t)p.we;
  p.u = (size_t)16 * (size_t)c * (size_t)oc;
  p.slot = 2 * (size_t)c * p.plane + (size_t)16 * (size_t)c * (size_t)p.tp + (size_t)16 * (size_t)p.tp * (size_t)oc +
           (size_t)p.oh * (size_t)p.ow * (size_t)oc;
  return p;
}

static wplan wplan_forward(const nn_conv_geom *g) { return wplan_make(g->c, g->h, g->w, g->oc, g->pad); }
static wplan wplan_data(const nn_conv_geom *g) {
  wplan p = wplan_make(g->oc, g->oh, g->ow, g->c, 2 - g->pad);
  p.dz_plane = conv_dz_plane(g);
  return p;
}

/* dW's groups of samples, and the floats of one group's partial sums (Mp, then db) */
static int dw_groups(int n) { return nn_sample_groups(n, WG_GROUPS); }
static size_t dw_part(const wplan *p) { return (size_t)16 * (size_t)p->c * (size_t)p->oc + (size_t)p->oc; }

#if NN_VARIANT_ONCE
int nn_conv2d_winograd_fits(const nn_conv_geom *g) {
  return g->stride == 1 && g->kh == 3 && g->kw == 3 && g->oc % WG_OB == 0;
}

int nn_conv2d_winograd_data_fits(const nn_conv_geom *g) {
  return g->stride == 1 && g->kh == 3 && g->kw == 3 && g->c % WG_OB == 0 && g->pad <= 2;
}

size_t nn_conv2d_winograd_workspace(const nn_conv_geom *g, int nprocs) {
  size_t need = 0;
  if (nn_conv2d_winograd_fits(g)) {
    wplan p = wplan_forward(g);
    need = p.u + (size_t)nprocs * p.slot;
    size_t params = (size_t)dw_groups(g->n) * dw_part(&p) + (size_t)nprocs * p.slot;
    if (params > need) need = params;
  }
  if (nn_conv2d_winograd_data_fits(g)) {
    wplan p = wplan_data(g);
    size_t d = p.u + (size_t)nprocs * p.slot;
    if (d > need) need = d;
  }
  return need;
}
#endif

/* U[xi][c][oc] = (G g G^T)[a][b], xi = 4a + b, for the filter g = w[oc][c] (forward) or, for
 * dx, g[i][j] = w[c][oc][2-i][2-j] (c, oc: the plan's channels, i.e. the layer's oc, c), for
 * block j of (16 filters, channel c) blocks: the 16 filters' taps gathered into vectors, the
 * transforms on all 16 at once, then each component's 16 floats to U as one cache line. One
 * filter at a time straight into U (16 writes per filter C*OC floats apart: a multiple of 4 KB
 * from C*OC = 1024, one L1 set) took 37-50 ns per filter at one thread: 77-103 us a call on
 * 32 x 64 channels against 27 in blocks, 630-770 us against 280-330 on 128 x 128 (timed
 * inside bench_kernels --only conv). The same operations on each value: the same bits. */
static void filter_block(const wplan *p, const float *w, int flip, float *U, int j) {
  const int ob = j / p->c * WG_OB, c = j % p->c;
  float g[9][WG_OB], t[4][3][WG_OB], blk[16][WG_OB]; /* [.][oc - ob] */
  for (int k = 0; k < WG_OB; k++) {
    const size_t oc = (size_t)ob + (size_t)k;
    const float *f = w + (flip ? (size_t)c * (size_t)p->oc + oc : oc * (size_t)p->c + (size_t)c) * 9;
    if (flip)
      for (int q = 0; q < 9; q++) g[q][k] = f[8 - q];
    else
      for (int q = 0; q < 9; q++) g[q][k] = f[q];
  }
  for (int i = 0; i < 3; i++) { /* t = G g */
#pragma omp simd
    for (int k = 0; k < WG_OB; k++) {
      t[0][i][k] = g[i][k];
      t[1][i][k] = 0.5f * (g[i][k] + g[3 + i][k] + g[6 + i][k]);
      t[2][i][k] = 0.5f * (g[i][k] - g[3 + i][k] + g[6 + i][k]);
      t[3][i][k] = g[6 + i][k];
    }
  }
  for (int a = 0; a < 4; a++) { /* (G g) G^T */
#pragma omp simd
    for (int k = 0; k < WG_OB; k++) {
      blk[4 * a][k] = t[a][0][k];
      blk[4 * a + 1][k] = 0.5f * (t[a][0][k] + t[a][1][k] + t[a][2][k]);
      blk[4 * a + 2][k] = 0.5f * (t[a][0][k] - t[a][1][k] + t[a][2][k]);
      blk[4 * a + 3][k] = t[a][2][k];
    }
  }
  const size_t st = (size_t)p->c * (size_t)p->oc; /* one component further */
  float *u = U + (size_t)c * (size_t)p->oc + (size_t)ob;
  for (int xi = 0; xi < 16; xi++) memcpy(u + (size_t)xi * st, blk[xi], sizeof blk[xi]);
}

/* The (16 filters, channel) blocks of U */
static int filter_blocks(const wplan *p) { return p->oc / WG_OB * p->c; }

/* e[k] = s[2k], d[k] = s[2k + 1] for the n floats of s; `room` floats may be written at e and
 * at d (the AVX2 path writes whole vectors, zeros past the row, where room allows). */
static void split_row(const float *s, int n, float *e, float *d, int room) {
  int q = 0;
#ifdef __AVX2__
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (; q < n && q / 2 + VL <= room; q += 2 * VL) {
    const __m256 lo = _mm256_maskload_ps(s + q, _mm256_cmpgt_epi32(_mm256_set1_epi32(n - q), iota));
    const __m256 hi = _mm256_maskload_ps(s + q + VL, _mm256_cmpgt_epi32(_mm256_set1_epi32(n - q - VL), iota));
    const __m256 ev = _mm256_shuffle_ps(lo, hi, 0x88), od = _mm256_shuffle_ps(lo, hi, 0xDD); /* lanes 0 1 4 5 2 3 6 7 */
    _mm256_storeu_ps(e + q / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
    _mm256_storeu_ps(d + q / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xD8)));
  }
#else
  (void)room;
#endif
  for (; q + 1 < n; q += 2) e[q / 2] = s[q], d[q / 2] = s[q + 1];
  if (q < n) e[q / 2] = s[q];
}

/* xe, xo = the even and odd columns of the padded planes of one sample: src (C planes of
 * H x W), or for dx dz * act'(z) (z, dz: the layer's output and its gradient; with p->dz_plane,
 * dz has one value per plane, act_grad_from). Only the
 * input's own positions are written: the padding stays the zeros the call started with. */
static void pack(const wplan *p, nn_act act, const float *z, const float *src, float *xe, float *xo, float *row) {
  for (int c = 0; c < p->c; c++)
    for (int r = 0; r < p->h; r++) {
      const size_t at = ((size_t)c * (size_t)p->h + (size_t)r) * (size_t)p->w;
      const float *s = act_grad_or_dz(act, z, src, p->dz_plane, at, row, (size_t)p->w);
      const size_t o = (size_t)c * p->plane + (size_t)(r + p->pad) * (size_t)p->we;
      /* padded column q + pad: even ones to xe, odd ones to xo; s[2k] goes to column ke of
       * plane e, s[2k + 1] to column kd of plane d */
      const int odd = p->pad & 1, ke = p->pad / 2, kd = ke + odd;
      float *e = (odd ? xo : xe) + o + ke, *d = (odd ? xe : xo) + o + kd;
      split_row(s, p->w, e, d, p->we - kd);
    }
}

/* V[xi][c][t] = (B^T d B)[a][b] for every tile t, 8 tiles of a tile row at a time. */
static void input_transform(const wplan *p, const float *xe, const float *xo, float *V) {
  const size_t st = (size_t)p->c * (size_t)p->tp; /* one component further */
  for (int c = 0; c < p->c; c++)
    for (int th = 0; th < p->th; th++)
      for (int tw = 0; tw < p->tw; tw += VL) {
        v8 d[4][4], t[4][4];
#pragma GCC unroll 8
        for (int i = 0; i < 4; i++) {
          const size_t o = (size_t)c * p->plane + (size_t)(2 * th + i) * (size_t)p->we + (size_t)tw;
          VLOAD(d[i][0], xe + o);
          VLOAD(d[i][1], xo + o);
          VLOAD(d[i][2], xe + o + 1);
          VLOAD(d[i][3], xo + o + 1);
        }
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++) { /* t = B^T d */
          t[0][j] = d[0][j] - d[2][j];
          t[1][j] = d[1][j] + d[2][j];
          t[2][j] = d[2][j] - d[1][j];
          t[3][j] = d[1][j] - d[3][j];
        }
        float *v = V + (size_t)c * (size_t)p->tp + (size_t)th * (size_t)p->tw + (size_t)tw;
#pragma GCC unroll 8
        for (int a = 0; a < 4; a++) { /* (B^T d) B */
          v8 r0 = t[a][0] - t[a][2], r1 = t[a][1] + t[a][2], r2 = t[a][2] - t[a][1], r3 = t[a][1] - t[a][3];
          float *va = v + (size_t)(4 * a) * st;
          VSTORE(va, r0);
          VSTORE(va + st, r1);
          VSTORE(va + 2 * st, r2);
          VSTORE(va + 3 * st, r3);
        }
      }
}

/* m[t0 + r][ob + j] = sum over c of v[c][t0 + r] * u[c][ob + j], r < R, j < 16: one register
 * block (R constant where inlined) */
static inline __attribute__((always_inline)) void gemm_block(const wplan *p, const float *u, const float *v, float *m,
                                                             int t0, int ob, const int R) {
  v8 acc[WG_RMAX][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = VBCAST(0.0f);
  for (int c = 0; c < p->c; c++) {
    v8 w2[2];
    VLOAD(w2[0], u + (size_t)c * (size_t)p->oc + (size_t)ob);
    VLOAD(w2[1], u + (size_t)c * (size_t)p->oc + (size_t)ob + VL);
    VKEEP(w2[0]);
    VKEEP(w2[1]);
    VRANK1(acc, v + (size_t)c * (size_t)p->tp + (size_t)t0, w2, R, 2);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    float *dst = m + (size_t)(t0 + r) * (size_t)p->oc + (size_t)ob;
    VSTORE(dst, acc[r][0]);
    VSTORE(dst + VL, acc[r][1]);
  }
}

/* M[xi][t][oc] = sum over c of V[xi][c][t] * U[xi][c][oc], blocks of p->r tiles x WG_OB filters. */
static void batched_gemm(const wplan *p, const float *U, const float *V, float *M) {
  const size_t C = (size_t)p->c, OC = (size_t)p->oc, TP = (size_t)p->tp;
  for (int xi = 0; xi < 16; xi++) {
    const float *u = U + (size_t)xi * C * OC, *v = V + (size_t)xi * C * TP;
    float *m = M + (size_t)xi * TP * OC;
    for (int ob = 0; ob < p->oc; ob += WG_OB)
      for (int t0 = 0; t0 < p->tp; t0 += p->r) switch (p->r) {
          case 4: gemm_block(p, u, v, m, t0, ob, 4); break;
          case 5: gemm_block(p, u, v, m, t0, ob, 5); break;
          default: gemm_block(p, u, v, m, t0, ob, WG_RMAX); break;
        }
  }
}

/* (A^T M A) of tile t for filters [o, o + 8): the four outputs, each a vector over the
 * filters; column by column of M, so that only a few of its vectors are live at a time */
#define TILE_OUT(p, M, t, o, y00, y01, y10, y11)                         \
  do {                                                                   \
    const size_t st_ = (size_t)(p)->tp * (size_t)(p)->oc;                \
    const float *m_ = (M) + (size_t)(t) * (size_t)(p)->oc + (size_t)(o); \
    v8 s0_[4], s1_[4];                                                   \
    _Pragma("GCC unroll 4") for (int j_ = 0; j_ < 4; j_++) { /* A^T M */ \
      v8 a_, b_, c_, d_;                                                 \
      VLOAD(a_, m_ + (size_t)j_ * st_);                                  \
      VLOAD(b_, m_ + (size_t)(4 + j_) * st_);                            \
      VLOAD(c_, m_ + (size_t)(8 + j_) * st_);                            \
      VLOAD(d_, m_ + (size_t)(12 + j_) * st_);                           \
      s0_[j_] = a_ + b_ + c_;                                            \
      s1_[j_] = b_ - c_ - d_;                                            \
    }                                                                    \
    (y00) = s0_[0] + s0_[1] + s0_[2], (y01) = s0_[1] - s0_[2] - s0_[3];  \
    (y10) = s1_[0] + s1_[1] + s1_[2], (y11) = s1_[1] - s1_[2] - s1_[3];  \
  } while (0)

/* Ys[h][w][oc] = (A^T M A)[i][j] of tile (th, tw) for h = 2 th + i, w = 2 tw + j inside the
 * output: four vector stores per tile and 8 filters */
static void output_transform(const wplan *p, const float *M, float *Ys) {
  const size_t OC = (size_t)p->oc, row = (size_t)p->ow * OC;
  for (int th = 0; th < p->th; th++)
    for (int tw = 0; tw < p->tw; tw++) {
      const int two_h = 2 * th + 1 < p->oh, two_w = 2 * tw + 1 < p->ow;
      float *q = Ys + ((size_t)(2 * th) * (size_t)p->ow + (size_t)(2 * tw)) * OC;
      for (int o = 0; o < p->oc; o += VL) {
        v8 y00, y01, y10, y11;
        TILE_OUT(p, M, th * p->tw + tw, o, y00, y01, y10, y11);
        VSTORE(q + o, y00);
        if (two_w) VSTORE(q + OC + (size_t)o, y01);
        if (two_h) {
          VSTORE(q + row + (size_t)o, y10);
          if (two_w) VSTORE(q + row + OC + (size_t)o, y11);
        }
      }
    }
}

#ifdef __AVX2__
/* r[i][j] <-> r[j][i] */
static inline void transpose8(v8 r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps((__m256)r[i], (__m256)r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps((__m256)r[i], (__m256)r[i + 1]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 4; i++) {
    r[i] = (v8)_mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = (v8)_mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

/* b[j][i] = a[i][j] for the m x n matrix a into b (n x m): 8x8 blocks by transposes (AVX2),
 * the edges one by one. Ys[pixel][oc] <-> the output planes [oc][pixel]. */
static void transpose(const float *a, size_t m, size_t n, float *b) {
  size_t i0 = 0;
#ifdef __AVX2__
  for (; i0 + VL <= m; i0 += VL) {
    size_t j0 = 0;
    for (; j0 + VL <= n; j0 += VL) {
      v8 r[8];
#pragma GCC unroll 8
      for (int k = 0; k < VL; k++) VLOAD(r[k], a + (i0 + (size_t)k) * n + j0);
      transpose8(r);
#pragma GCC unroll 8
      for (int l = 0; l < VL; l++) VSTORE(b + (j0 + (size_t)l) * m + i0, r[l]);
    }
    for (; j0 < n; j0++)
      for (size_t k = 0; k < VL; k++) b[j0 * m + i0 + k] = a[(i0 + k) * n + j0];
  }
#endif
  for (; i0 < m; i0++)
    for (size_t j = 0; j < n; j++) b[j * m + i0] = a[i0 * n + j];
}

/* One call: U, then the samples, over up to `nthreads` threads. e: the forward's epilogue
 * (NULL for dx); act, z: for dx, dy = dz * act'(z) (src = dz). */
static void run(const wplan *p, int n, const nn_epilogue *e, nn_act act, const float *z, const float *src,
                const float *w, int flip, float *dst, float *ws, int nthreads) {
  float *U = ws;
  const size_t in = (size_t)p->c * (size_t)p->h * (size_t)p->w, out = (size_t)p->oc * (size_t)p->oh * (size_t)p->ow;
  const size_t ohw = (size_t)p->oh * (size_t)p->ow;
  if (nthreads > n) nthreads = n;
#pragma omp parallel num_threads(nthreads > 1 ? nthreads : 1)
  {
    float *xe = ws + p->u + (size_t)omp_get_thread_num() * p->slot, *xo = xe + (size_t)p->c * p->plane;
    float *V = xo + (size_t)p->c * p->plane, *M = V + (size_t)16 * (size_t)p->c * (size_t)p->tp;
    float *Ys = M + (size_t)16 * (size_t)p->tp * (size_t)p->oc;
    /* padding and the tiles past the last: zeros (the row buffer for act_grad: M's start,
     * free until the GEMM) */
    memset(xe, 0, sizeof(float) * (2 * (size_t)p->c * p->plane + (size_t)16 * (size_t)p->c * (size_t)p->tp));
    /* U split over the team too: computed ahead of the region, one thread took 81 us of a
     * 700-900 us call at two threads on the CNNs' second layers and about 700 us on 128 x 128
     * channels while the other waited */
#pragma omp for schedule(static)
    for (int j = 0; j < filter_blocks(p); j++) filter_block(p, w, flip, U, j);
#pragma omp for schedule(dynamic, 1)
    for (int s = 0; s < n; s++) {
      pack(p, act, z ? z + (size_t)s * in : NULL, src + (size_t)s * (p->dz_plane ? (size_t)p->c : in), xe, xo, M);
      input_transform(p, xe, xo, V);
      batched_gemm(p, U, V, M);
      float *ys = dst + (size_t)s * out;
      output_transform(p, M, Ys);
      transpose(Ys, (size_t)p->oh * (size_t)p->ow, (size_t)p->oc, ys);
      if (e)
        for (int oc = 0; oc < p->oc; oc++) conv_epi_n(e, oc, ys + (size_t)oc * ohw, ys + (size_t)oc * ohw, ohw);
    }
  }
}

/* ---- dW, db: dW[oc][c] = G^T [ sum over samples, tiles of (A dy A^T) (.) (B^T d B) ] G --------
 * (the forward's transforms, transposed: y = A^T [(G g) (.) (B^T d B)] A is linear in g).
 * Per sample: V as in the forward; the layer's dy (dz * act'(z)) staged as Ds[pixel][oc] and
 * transformed tile by tile into Y[xi][t][oc] (zeros where a tile sticks out of the output);
 * then Mp[xi][c][oc] += sum over t of V[xi][c][t] * Y[xi][t][oc] in register blocks of up to
 * 6 channels x 16 filters, and db[oc] += sum over t of Y[5][t][oc] (component (1, 1) of a
 * tile is the sum of its four dy). Samples are split into WG_GROUPS fixed groups, each summing
 * its samples in order into its own Mp; the groups are added in order at the end: results do
 * not depend on the thread count. */

/* Y[xi][t][oc] = (A dy A^T) of each tile t, from Ds[pixel][oc] */
static void dy_transform(const wplan *p, const float *Ds, float *Y) {
  const size_t OC = (size_t)p->oc, T = (size_t)p->th * (size_t)p->tw, st = T * OC, row = (size_t)p->ow * OC;
  for (int th = 0; th < p->th; th++)
    for (int tw = 0; tw < p->tw; tw++) {
      const int two_h = 2 * th + 1 < p->oh, two_w = 2 * tw + 1 < p->ow;
      const float *q = Ds + ((size_t)(2 * th) * (size_t)p->ow + (size_t)(2 * tw)) * OC;
      float *yt = Y + ((size_t)th * (size_t)p->tw + (size_t)tw) * OC;
      for (size_t o = 0; o < OC; o += VL) {
        v8 d00, d01 = VBCAST(0.0f), d10 = VBCAST(0.0f), d11 = VBCAST(0.0f);
        VLOAD(d00, q + o);
        if (two_w) VLOAD(d01, q + OC + o);
        if (two_h) {
          VLOAD(d10, q + row + o);
          if (two_w) VLOAD(d11, q + row + OC + o);
        }
        /* u = A dy (rows: dy0, dy0 + dy1, dy0 - dy1, -dy1), then u A^T along the columns */
        const v8 u[4][2] = {{d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
#pragma GCC unroll 4
        for (int a = 0; a < 4; a++) {
          float *ya = yt + (size_t)(4 * a) * st + o;
          const v8 y0 = u[a][0], y1 = u[a][0] + u[a][1], y2 = u[a][0] - u[a][1], y3 = -u[a][1];
          VSTORE(ya, y0);
          VSTORE(ya + st, y1);
          VSTORE(ya + 2 * st, y2);
          VSTORE(ya + 3 * st, y3);
        }
      }
    }
}

/* m[r][ob + j] += sum over t < T of v[r*tp + t] * y[t][ob + j], r < R, j < 16 */
static inline __attribute__((always_inline)) void dw_block(const wplan *p, const float *v, const float *y, float *m,
                                                           int T, const int R) {
  const size_t OC = (size_t)p->oc, tp = (size_t)p->tp;
  v8 acc[WG_RMAX][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    VLOAD(acc[r][0], m + (size_t)r * OC);
    VLOAD(acc[r][1], m + (size_t)r * OC + VL);
  }
  for (int t = 0; t < T; t++) {
    v8 y2[2];
    VLOAD(y2[0], y + (size_t)t * OC);
    VLOAD(y2[1], y + (size_t)t * OC + VL);
    VKEEP(y2[0]);
    VKEEP(y2[1]);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const v8 b = VBCAST(v[(size_t)r * tp + (size_t)t]);
      VFMA(acc[r][0], b, y2[0]);
      VFMA(acc[r][1], b, y2[1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    VSTORE(m + (size_t)r * OC, acc[r][0]);
    VSTORE(m + (size_t)r * OC + VL, acc[r][1]);
  }
}

/* Mp[xi][c][oc] += sum over t of V[xi][c][t] * Y[xi][t][oc]; db[oc] += sum over t of Y[5][t][oc] */
static void dw_accumulate(const wplan *p, const float *V, const float *Y, float *Mp, float *db) {
  const int T = p->th * p->tw;
  const size_t C = (size_t)p->c, OC = (size_t)p->oc, TP = (size_t)p->tp;
  for (int xi = 0; xi < 16; xi++) {
    const float *v = V + (size_t)xi * C * TP, *y = Y + (size_t)xi * (size_t)T * OC;
    float *m = Mp + (size_t)xi * C * OC;
    for (int c0 = 0; c0 < p->c; c0 += WG_RMAX)
      for (size_t ob = 0; ob < OC; ob += WG_OB) {
        const float *vb = v + (size_t)c0 * TP, *yb = y + ob;
        float *mb = m + (size_t)c0 * OC + ob;
        switch (p->c - c0 < WG_RMAX ? p->c - c0 : WG_RMAX) {
          case 1: dw_block(p, vb, yb, mb, T, 1); break;
          case 2: dw_block(p, vb, yb, mb, T, 2); break;
          case 3: dw_block(p, vb, yb, mb, T, 3); break;
          case 4: dw_block(p, vb, yb, mb, T, 4); break;
          case 5: dw_block(p, vb, yb, mb, T, 5); break;
          default: dw_block(p, vb, yb, mb, T, WG_RMAX); break;
        }
      }
  }
  const float *y5 = Y + (size_t)5 * (size_t)T * OC;
  for (int t = 0; t < T; t++)
    for (size_t o = 0; o < OC; o++) db[o] += y5[(size_t)t * OC + o];
}

/* dw[oc][c] += G^T m G and db += the groups' db, m[xi] = the groups' Mp[xi][c][oc] added in
 * order (into group 0's, element by element: the same sums at any thread count); 8 filters at a
 * time. Called by every thread of the pass's team (a team of one on one thread): the elements
 * and then the input channels are split over it (orphaned worksharing loops; the CNN's second
 * layer adds 8 groups of 128 KB, which one thread of two added alone before). */
static void dw_reduce(const wplan *p, int groups, float *parts, float *dw, float *db) {
  const size_t C = (size_t)p->c, OC = (size_t)p->oc, part = dw_part(p), st = C * OC;
  const long blocks = (long)((part + WG_SUM_BLK - 1) / WG_SUM_BLK);
#pragma omp for schedule(static)
  for (long b = 0; b < blocks; b++) {
    const size_t j0 = (size_t)b * WG_SUM_BLK, j1 = j0 + WG_SUM_BLK < part ? j0 + WG_SUM_BLK : part;
    for (int gi = 1; gi < groups; gi++) {
      const float *q = parts + (size_t)gi * part;
#pragma omp simd
      for (size_t j = j0; j < j1; j++) parts[j] += q[j];
    }
  }
#pragma omp for schedule(static)
  for (size_t c = 0; c < C; c++)
    for (size_t o = 0; o < OC; o += VL) {
      v8 m[16], s[3][4];
#pragma GCC unroll 16
      for (int xi = 0; xi < 16; xi++) VLOAD(m[xi], parts + (size_t)xi * st + c * OC + o);
#pragma GCC unroll 4
      for (int b = 0; b < 4; b++) { /* G^T m */
        s[0][b] = m[b] + 0.5f * m[4 + b] + 0.5f * m[8 + b];
        s[1][b] = 0.5f * m[4 + b] - 0.5f * m[8 + b];
        s[2][b] = 0.5f * m[4 + b] + 0.5f * m[8 + b] + m[12 + b];
      }
#pragma GCC unroll 3
      for (int i = 0; i < 3; i++) { /* (G^T m) G */
        const v8 w0 = s[i][0] + 0.5f * s[i][1] + 0.5f * s[i][2], w1 = 0.5f * s[i][1] - 0.5f * s[i][2],
                 w2 = 0.5f * s[i][1] + 0.5f * s[i][2] + s[i][3];
        for (int l = 0; l < VL; l++) {
          float *d = dw + ((o + (size_t)l) * C + c) * 9 + (size_t)(3 * i);
          d[0] += w0[l], d[1] += w1[l], d[2] += w2[l];
        }
      }
    }
  if (db) {
#pragma omp single
    for (size_t oc = 0; oc < OC; oc++) db[oc] += parts[st * 16 + oc];
  }
}

void NN_V(nn_conv2d_winograd_backward_params)(const nn_conv_geom *g, nn_act act, const float *x, const float *z,
                                              const float *dz, float *dw, float *db, float *ws, int nthreads) {
  NN_ASSERT(nn_conv2d_winograd_fits(g));
  const wplan p = wplan_forward(g);
  const int n = g->n, groups = dw_groups(n);
  if (n < 1) return; /* no samples: nothing to add */
  const size_t in = (size_t)p.c * (size_t)p.h * (size_t)p.w, out = (size_t)p.oc * (size_t)p.oh * (size_t)p.ow;
  const size_t part = dw_part(&p);
  float *parts = ws, *slots = ws + (size_t)groups * part;
  if (nthreads > groups) nthreads = groups;
#pragma omp parallel num_threads(nthreads > 1 ? nthreads : 1)
  {
    float *xe = slots + (size_t)omp_get_thread_num() * p.slot, *xo = xe + (size_t)p.c * p.plane;
    float *V = xo + (size_t)p.c * p.plane, *Y = V + (size_t)16 * (size_t)p.c * (size_t)p.tp;
    float *Ds = Y + (size_t)16 * (size_t)p.tp * (size_t)p.oc;
    memset(xe, 0, sizeof(float) * 2 * (size_t)p.c * p.plane);
#pragma omp for schedule(dynamic, 1)
    for (int gi = 0; gi < groups; gi++) {
      float *Mp = parts + (size_t)gi * part;
      memset(Mp, 0, sizeof(float) * part);
      for (int s = nn_group_start(n, groups, gi); s < nn_group_start(n, groups, gi + 1); s++) {
        pack(&p, NN_ACT_NONE, NULL, x + (size_t)s * in, xe, xo, NULL);
        input_transform(&p, xe, xo, V);
        /* dy planes into Y's space first (where formed): staged before Y is written */
        const float *dys = act_grad_or_dz(act, z, dz, conv_dz_plane(g), (size_t)s * out, Y, out);
        transpose(dys, (size_t)p.oc, (size_t)p.oh * (size_t)p.ow, Ds);
        dy_transform(&p, Ds, Y);
        dw_accumulate(&p, V, Y, Mp, Mp + part - (size_t)p.oc);
      }
    }
    dw_reduce(&p, groups, parts, dw, db);
  }
}

void NN_V(nn_conv2d_winograd_forward)(const nn_conv_geom *g, const nn_epilogue *e, const float *x, const float *w,
                                      float *y, float *ws, int nthreads) {
  NN_ASSERT(nn_conv2d_winograd_fits(g));
  const wplan p = wplan_forward(g);
  run(&p, g->n, e, NN_ACT_NONE, NULL, x, w, 0, y, ws, nthreads);
}

void NN_V(nn_conv2d_winograd_backward_data)(const nn_conv_geom *g, nn_act act, const float *w, const float *z,
                                            const float *dz, float *dx, float *ws, int nthreads) {
  NN_ASSERT(nn_conv2d_winograd_data_fits(g));
  const wplan p = wplan_data(g);
  run(&p, g->n, NULL, act, z, dz, w, 1, dx, ws, nthreads);
}
