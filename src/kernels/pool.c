/* pooling: x[N,C,H,W] -> y[N,C,OH,OW], window `size`, step `stride`, no padding, floor.
 * Planes (n, c) are independent: large tensors are split over planes, small ones stay on
 * the calling thread. */
#include <limits.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "base/error.h"
#include "kernels/kernels.h"
#include "kernels/norm_core.h"
#include "kernels/pool_simd.h"
#include "kernels/variant.h"

#define POOL_PAR_ELEMS (1L << 16) /* input elements below which one thread does it all */

#if NN_VARIANT_ONCE
int nn_pool_geom_init(nn_pool_geom *g) {
  if (!g) return -1;
  g->oh = g->ow = 0;
  if (g->n < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->size < 1 || g->stride < 1) return -1;
  if (g->h < g->size || g->w < g->size) return -1;
  if ((long)g->h * g->w > INT_MAX) return -1; /* argmax is an int32 index within a plane */
  g->oh = (g->h - g->size) / g->stride + 1;
  g->ow = (g->w - g->size) / g->stride + 1;
  return 0;
}
#endif

static long pool_planes(const nn_pool_geom *g) { return (long)g->n * g->c; }
static int pool_parallel(const nn_pool_geom *g) { return pool_planes(g) * g->h * g->w >= POOL_PAR_ELEMS; }

/* The max pool's forward writes its argmax when `keep` (a constant where the plane kernels are
 * inlined: a runtime NULL test per row cost the CNN's 11x11 planes 13 %), only the values
 * otherwise (am is then NULL and never offset). */
#define POOL_INLINE static inline __attribute__((always_inline))

#ifdef __AVX2__
/* 2x2 stride-2 windows, 8 outputs at a time (AVX2; 4 for rows of 4..7). A row of OW >= 8 outputs is covered by
 * 8-wide steps, the last one moved back to end at OW: it recomputes a few outputs and writes
 * the same values again, so every row is done without a scalar tail. Inputs of 8 outputs:
 * 16 floats of each of the two input rows, split into even and odd columns in the lane order
 * of pool_simd.h (the max pool's comparisons are there, shared with the pool-fused batchnorm
 * backward). */

/* outputs [ow, ow + 8) of output row oh; i0 = plane index of the window's top-left at ow */
POOL_INLINE void maxpool8(const float *r0, const float *r1, float *y, int32_t *am, int32_t i0, int W, int keep) {
  static const int32_t two[8] = {0, 2, 8, 10, 4, 6, 12, 14}; /* 2 * lane's output, p2_max8's lane order */
  __m256 tb, tc, td;
  const __m256 best = p2_max8(r0, r1, &tb, &tc, &td);
  _mm256_storeu_ps(y, p2_in_order8(best));
  if (!keep) return;
  const __m256i ia = _mm256_add_epi32(_mm256_set1_epi32(i0), _mm256_loadu_si256((const __m256i *)(const void *)two));
  __m256 idx = _mm256_castsi256_ps(ia);
  idx = _mm256_blendv_ps(idx, _mm256_castsi256_ps(_mm256_add_epi32(ia, _mm256_set1_epi32(1))), tb);
  idx = _mm256_blendv_ps(idx, _mm256_castsi256_ps(_mm256_add_epi32(ia, _mm256_set1_epi32(W))), tc);
  idx = _mm256_blendv_ps(idx, _mm256_castsi256_ps(_mm256_add_epi32(ia, _mm256_set1_epi32(W + 1))), td);
  _mm256_storeu_si256((__m256i *)(void *)am, _mm256_castps_si256(p2_in_order8(idx)));
}

/* dy and argmax of 8 outputs taken into p2_deinterleave8's lane order (p2_in_order8 is its own
 * inverse), so that p2_interleave_store8 writes the rows straight */
static inline void maxpool8_bwd(float *r0, float *r1, const float *dy, const int32_t *am, int32_t i0, int W) {
  static const int32_t two[8] = {0, 2, 8, 10, 4, 6, 12, 14};
  const __m256i a = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(const void *)am), 0xD8);
  __m256i k = _mm256_sub_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(i0), _mm256_loadu_si256((const __m256i *)(const void *)two)));
  __m256 v = p2_in_order8(_mm256_loadu_ps(dy));
  __m256 e0 = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_setzero_si256())));
  __m256 e1 = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(1))));
  __m256 e2 = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(W))));
  __m256 e3 = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(W + 1))));
  p2_interleave_store8(r0, e0, e1);
  p2_interleave_store8(r1, e2, e3);
}

/* ((a + b) + c) + d, then * 0.25: the generic loop's order */
static inline void avgpool8(const float *r0, const float *r1, float *y) {
  __m256 a, b, c, d;
  p2_deinterleave8(r0, &a, &b);
  p2_deinterleave8(r1, &c, &d);
  __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a, b), c), d);
  _mm256_storeu_ps(y, p2_in_order8(_mm256_mul_ps(sum, _mm256_set1_ps(0.25f))));
}

static inline void avgpool8_bwd(float *r0, float *r1, const float *dy) {
  __m256 v = p2_in_order8(_mm256_mul_ps(_mm256_loadu_ps(dy), _mm256_set1_ps(0.25f)));
  p2_interleave_store8(r0, v, v);
  p2_interleave_store8(r1, v, v);
}

/* The same for rows of 4..7 outputs, 4 at a time (SSE4.1, implied by AVX2; the comparisons
 * are pool_simd.h's p2_max4). */
static inline void interleave_store4(float *dst, __m128 a, __m128 b) {
  _mm_storeu_ps(dst, _mm_unpacklo_ps(a, b));
  _mm_storeu_ps(dst + 4, _mm_unpackhi_ps(a, b));
}

POOL_INLINE void maxpool4(const float *r0, const float *r1, float *y, int32_t *am, int32_t i0, int W, int keep) {
  __m128 tb, tc, td;
  _mm_storeu_ps(y, p2_max4(r0, r1, &tb, &tc, &td));
  if (!keep) return;
  const __m128i ia = _mm_add_epi32(_mm_set1_epi32(i0), _mm_setr_epi32(0, 2, 4, 6));
  __m128 idx = _mm_castsi128_ps(ia);
  idx = _mm_blendv_ps(idx, _mm_castsi128_ps(_mm_add_epi32(ia, _mm_set1_epi32(1))), tb);
  idx = _mm_blendv_ps(idx, _mm_castsi128_ps(_mm_add_epi32(ia, _mm_set1_epi32(W))), tc);
  idx = _mm_blendv_ps(idx, _mm_castsi128_ps(_mm_add_epi32(ia, _mm_set1_epi32(W + 1))), td);
  _mm_storeu_si128((__m128i *)(void *)am, _mm_castps_si128(idx));
}

static inline void maxpool4_bwd(float *r0, float *r1, const float *dy, const int32_t *am, int32_t i0, int W) {
  __m128i k = _mm_sub_epi32(_mm_loadu_si128((const __m128i *)(const void *)am),
                            _mm_add_epi32(_mm_set1_epi32(i0), _mm_setr_epi32(0, 2, 4, 6)));
  __m128 v = _mm_loadu_ps(dy);
  __m128 e0 = _mm_and_ps(v, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_setzero_si128())));
  __m128 e1 = _mm_and_ps(v, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(1))));
  __m128 e2 = _mm_and_ps(v, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(W))));
  __m128 e3 = _mm_and_ps(v, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(W + 1))));
  interleave_store4(r0, e0, e1);
  interleave_store4(r1, e2, e3);
}

static inline void avgpool4(const float *r0, const float *r1, float *y) {
  __m128 a, b, c, d;
  p2_deinterleave4(r0, &a, &b);
  p2_deinterleave4(r1, &c, &d);
  _mm_storeu_ps(y, _mm_mul_ps(_mm_add_ps(_mm_add_ps(_mm_add_ps(a, b), c), d), _mm_set1_ps(0.25f)));
}

static inline void avgpool4_bwd(float *r0, float *r1, const float *dy) {
  __m128 v = _mm_mul_ps(_mm_loadu_ps(dy), _mm_set1_ps(0.25f));
  interleave_store4(r0, v, v);
  interleave_store4(r1, v, v);
}
#endif

#if NN_BUILD_AVX512
/* The 2x2 stride-2 max pool 16 outputs at a time where the build targets AVX-512: the even
 * and odd columns of 32 input floats with one two-source permute each, already in order, the
 * tie and NaN rule on mask registers, and a row's last outputs under a mask instead of an
 * overlapping step (26x26 planes: one masked vector per output row against two overlapping
 * 8-vectors). The same comparisons per output, in the same order, as the loops below. One
 * thread, the CNN's 26x26 and 11x11 planes 1.10-1.17x the 8-wide rows, CIFAR's 30x30
 * 1.00-1.11x (bench/ab_objects.sh, docs/performance.md run 22); the average pool gained nothing
 * this way (0.98-1.00x at 24x24) and keeps its 8- and 4-wide rows. The max pool's backward
 * runs 16 wide on rows of 5..8 outputs (the CNN's 11x11 planes 1.28-1.29x the two overlapping
 * 4-vectors and the leftover column's scalar stores, run 23); longer rows keep the 8-wide
 * steps (16 wide measured 0.90x at 30x30, run 22). */
#define MAX16_MIN_OW 5 /* output rows of at least this many outputs run 16 wide */

/* cnt (<= 16) outputs of a row; i0 = plane index of the first window's top-left */
POOL_INLINE void maxpool16(const float *r0, const float *r1, float *y, int32_t *am, int32_t i0, int W, int cnt,
                           int keep) {
  __mmask16 tb, tc, td;
  const __m512 best = p2_max16(r0, r1, cnt, &tb, &tc, &td);
  const __mmask16 k = (__mmask16)((1u << cnt) - 1u);
  _mm512_mask_storeu_ps(y, k, best);
  if (!keep) return;
  const __m512i ia = _mm512_add_epi32(_mm512_set1_epi32(i0), p2_evens16());
  __m512i idx = _mm512_mask_add_epi32(ia, tb, ia, _mm512_set1_epi32(1));
  idx = _mm512_mask_add_epi32(idx, tc, ia, _mm512_set1_epi32(W));
  idx = _mm512_mask_add_epi32(idx, td, ia, _mm512_set1_epi32(W + 1));
  _mm512_mask_storeu_epi32(am, k, idx);
}

/* The backward of an output row of cnt <= 8 outputs (short rows: the CNN's 11x11 planes) in
 * one vector per input row: lane j of each input row takes output j / 2's gradient where
 * its argmax is j's column. The store covers `width` (<= 16) lanes: a floor's leftover
 * column, lanes past 2 * cnt, is written 0 by the same store. */
static inline void maxpool16_bwd(float *r0, float *r1, const float *dy, const int32_t *am, int32_t i0, int W, int cnt,
                                 int width) {
  const __m512i half = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i col = _mm512_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
  const __mmask16 in = (__mmask16)((1u << cnt) - 1u), pairs = (__mmask16)((1u << (2 * cnt)) - 1u);
  const __m512 v = _mm512_permutexvar_ps(half, _mm512_maskz_loadu_ps(in, dy));
  const __m512i a = _mm512_permutexvar_epi32(half, _mm512_maskz_loadu_epi32(in, am));
  /* k = the argmax's offset from lane j's window top-left, less j's column (0 or 1) */
  const __m512i k = _mm512_sub_epi32(a, _mm512_add_epi32(_mm512_set1_epi32(i0), _mm512_add_epi32(half, half)));
  const __mmask16 m0 = _mm512_mask_cmpeq_epi32_mask(pairs, k, col);
  const __mmask16 m1 = _mm512_mask_cmpeq_epi32_mask(pairs, k, _mm512_add_epi32(col, _mm512_set1_epi32(W)));
  const __mmask16 st = (__mmask16)((1u << width) - 1u);
  _mm512_mask_storeu_ps(r0, st, _mm512_maskz_mov_ps(m0, v));
  _mm512_mask_storeu_ps(r1, st, _mm512_maskz_mov_ps(m1, v));
}
#endif

static void maxpool_plane(const nn_pool_geom *g, const float *x, float *y, int32_t *am) {
  const int W = g->w, k = g->size, st = g->stride;
  for (int oh = 0; oh < g->oh; oh++) {
    for (int ow = 0; ow < g->ow; ow++) {
      int base = oh * st * W + ow * st;
      float best = x[base];
      int bi = base;
      for (int i = 0; i < k; i++) {
        const float *xr = x + base + i * W;
        for (int j = 0; j < k; j++) {
          if (pool_takes(xr[j], best)) {
            best = xr[j];
            bi = base + i * W + j;
          }
        }
      }
      y[oh * g->ow + ow] = best;
      if (am) am[oh * g->ow + ow] = bi;
    }
  }
}

/* 2x2 windows with stride 2 (the common case): same result and tie rule, in vectors or, for
 * the shortest rows, p2_max1's selects (which vectorize). */
POOL_INLINE void maxpool_plane_2x2s2(const nn_pool_geom *g, const float *x, float *y, int32_t *am, int keep) {
  const int W = g->w, OW = g->ow;
  for (int oh = 0; oh < g->oh; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    float *yr = y + oh * OW;
    int32_t *ar = keep ? am + oh * OW : NULL;
    const int32_t base = 2 * oh * W;
#if NN_BUILD_AVX512
    if (OW >= MAX16_MIN_OW) {
      for (int ow = 0; ow < OW; ow += 16)
        maxpool16(r0 + 2 * ow, r1 + 2 * ow, yr + ow, keep ? ar + ow : NULL, base + 2 * ow, W, OW - ow < 16 ? OW - ow : 16,
                  keep);
      continue;
    }
#endif
#ifdef __AVX2__
    if (OW >= 8) {
      for (int ow = 0;; ow += 8) {
        if (ow > OW - 8) ow = OW - 8;
        maxpool8(r0 + 2 * ow, r1 + 2 * ow, yr + ow, keep ? ar + ow : NULL, base + 2 * ow, W, keep);
        if (ow == OW - 8) break;
      }
      continue;
    }
    if (OW >= 4) {
      maxpool4(r0, r1, yr, ar, base, W, keep);
      if (OW > 4) {
        const int ow = OW - 4;
        maxpool4(r0 + 2 * ow, r1 + 2 * ow, yr + ow, keep ? ar + ow : NULL, base + 2 * ow, W, keep);
      }
      continue;
    }
#endif
#pragma omp simd
    for (int ow = 0; ow < OW; ow++) {
      int k;
      yr[ow] = p2_max1(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1], &k);
      if (keep) ar[ow] = base + 2 * ow + (k & 1) + (k >> 1) * W; /* k: 0, 1, W, W + 1 */
    }
  }
}

/* the plane kernel's two forms, each a function of its own as the one form was before (inlined
 * into the loop over planes, the 11x11 planes ran 0.92x) */
static void maxpool_plane_2x2s2_argmax(const nn_pool_geom *g, const float *x, float *y, int32_t *am) {
  maxpool_plane_2x2s2(g, x, y, am, 1);
}
static void maxpool_plane_2x2s2_values(const nn_pool_geom *g, const float *x, float *y) {
  maxpool_plane_2x2s2(g, x, y, NULL, 0);
}

void NN_V(nn_maxpool2d_forward)(const nn_pool_geom *g, const float *x, float *y, int32_t *argmax) {
  const long planes = pool_planes(g);
  const size_t in = (size_t)g->h * (size_t)g->w, out = (size_t)g->oh * (size_t)g->ow;
  const int fast = g->size == 2 && g->stride == 2;
#pragma omp parallel for schedule(static) if (pool_parallel(g))
  for (long p = 0; p < planes; p++) {
    const float *xp = x + (size_t)p * in;
    float *yp = y + (size_t)p * out;
    int32_t *ap = argmax ? argmax + (size_t)p * out : NULL;
    if (fast && ap)
      maxpool_plane_2x2s2_argmax(g, xp, yp, ap);
    else if (fast)
      maxpool_plane_2x2s2_values(g, xp, yp);
    else
      maxpool_plane(g, xp, yp, ap);
  }
}

/* 2x2 stride 2 backward: windows do not overlap, so each dx is written once (dy at the
 * window's argmax, 0 elsewhere, 0 in the floor's leftover row/column) without a memset. */
static void maxpool_plane_2x2s2_bwd(const nn_pool_geom *g, const float *dyp, const int32_t *ap, float *dxp) {
  const int W = g->w, OW = g->ow;
  for (int oh = 0; oh < g->oh; oh++) {
    float *r0 = dxp + 2 * oh * W, *r1 = r0 + W;
    const float *dr = dyp + oh * OW;
    const int32_t *ar = ap + oh * OW;
    const int32_t base = 2 * oh * W;
#if NN_BUILD_AVX512
    if (OW >= MAX16_MIN_OW && OW <= 8) {
      const int width = W <= 16 ? W : 2 * OW;
      maxpool16_bwd(r0, r1, dr, ar, base, W, OW, width);
      if (W > width) r0[W - 1] = r1[W - 1] = 0.0f;
      continue;
    }
#endif
#ifdef __AVX2__
    if (OW >= 8) {
      for (int ow = 0;; ow += 8) {
        if (ow > OW - 8) ow = OW - 8;
        maxpool8_bwd(r0 + 2 * ow, r1 + 2 * ow, dr + ow, ar + ow, base + 2 * ow, W);
        if (ow == OW - 8) break;
      }
      if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
      continue;
    }
    if (OW >= 4) {
      maxpool4_bwd(r0, r1, dr, ar, base, W);
      if (OW > 4) {
        const int ow = OW - 4;
        maxpool4_bwd(r0 + 2 * ow, r1 + 2 * ow, dr + ow, ar + ow, base + 2 * ow, W);
      }
      if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
      continue;
    }
#endif
#pragma omp simd
    for (int ow = 0; ow < OW; ow++) {
      int32_t k = ar[ow] - (base + 2 * ow); /* 0, 1, W or W + 1 */
      float v = dr[ow];
      r0[2 * ow] = k == 0 ? v : 0.0f;
      r0[2 * ow + 1] = k == 1 ? v : 0.0f;
      r1[2 * ow] = k == W ? v : 0.0f;
      r1[2 * ow + 1] = k == W + 1 ? v : 0.0f;
    }
    if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
  }
  for (int ih = 2 * g->oh; ih < g->h; ih++)
    for (int iw = 0; iw < W; iw++) dxp[ih * W + iw] = 0.0f;
}

void NN_V(nn_maxpool2d_backward)(const nn_pool_geom *g, const float *dy, const int32_t *argmax, float *dx) {
  const long planes = pool_planes(g);
  const size_t in = (size_t)g->h * (size_t)g->w, out = (size_t)g->oh * (size_t)g->ow;
  const int fast = g->size == 2 && g->stride == 2;
#pragma omp parallel for schedule(static) if (pool_parallel(g))
  for (long p = 0; p < planes; p++) {
    float *dxp = dx + (size_t)p * in;
    const float *dyp = dy + (size_t)p * out;
    const int32_t *ap = argmax + (size_t)p * out;
    if (fast) {
      maxpool_plane_2x2s2_bwd(g, dyp, ap, dxp);
      continue;
    }
    memset(dxp, 0, sizeof(float) * in);
    for (size_t o = 0; o < out; o++) dxp[ap[o]] += dyp[o];
  }
}

/* 2x2 stride 2: the generic loop's sum order ((a + b) + c) + d, and / 4 == * 0.25 exactly */
static void avgpool_plane_2x2s2(const nn_pool_geom *g, const float *xp, float *yp) {
  const int W = g->w, OW = g->ow;
  for (int oh = 0; oh < g->oh; oh++) {
    const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
    float *yr = yp + oh * OW;
#ifdef __AVX2__
    if (OW >= 8) {
      for (int ow = 0;; ow += 8) {
        if (ow > OW - 8) ow = OW - 8;
        avgpool8(r0 + 2 * ow, r1 + 2 * ow, yr + ow);
        if (ow == OW - 8) break;
      }
      continue;
    }
    if (OW >= 4) {
      avgpool4(r0, r1, yr);
      if (OW > 4) {
        const int ow = OW - 4;
        avgpool4(r0 + 2 * ow, r1 + 2 * ow, yr + ow);
      }
      continue;
    }
#endif
#pragma omp simd
    for (int ow = 0; ow < OW; ow++) yr[ow] = (((r0[2 * ow] + r0[2 * ow + 1]) + r1[2 * ow]) + r1[2 * ow + 1]) * 0.25f;
  }
}

/* 2x2 stride 2 backward: windows do not overlap, every covered dx is dy/4; the floor's
 * leftover last row/column get 0 */
static void avgpool_plane_2x2s2_bwd(const nn_pool_geom *g, const float *dyp, float *dxp) {
  const int W = g->w, OW = g->ow;
  for (int oh = 0; oh < g->oh; oh++) {
    float *r0 = dxp + 2 * oh * W, *r1 = r0 + W;
    const float *dr = dyp + oh * OW;
#ifdef __AVX2__
    if (OW >= 8) {
      for (int ow = 0;; ow += 8) {
        if (ow > OW - 8) ow = OW - 8;
        avgpool8_bwd(r0 + 2 * ow, r1 + 2 * ow, dr + ow);
        if (ow == OW - 8) break;
      }
      if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
      continue;
    }
    if (OW >= 4) {
      avgpool4_bwd(r0, r1, dr);
      if (OW > 4) {
        const int ow = OW - 4;
        avgpool4_bwd(r0 + 2 * ow, r1 + 2 * ow, dr + ow);
      }
      if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
      continue;
    }
#endif
#pragma omp simd
    for (int ow = 0; ow < OW; ow++) {
      float v = dr[ow] * 0.25f;
      r0[2 * ow] = v;
      r0[2 * ow + 1] = v;
      r1[2 * ow] = v;
      r1[2 * ow + 1] = v;
    }
    if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
  }
  for (int ih = 2 * g->oh; ih < g->h; ih++)
    for (int iw = 0; iw < W; iw++) dxp[ih * W + iw] = 0.0f;
}

void NN_V(nn_avgpool2d_forward)(const nn_pool_geom *g, const float *x, float *y) {
  const long planes = pool_planes(g);
  const size_t in = (size_t)g->h * (size_t)g->w, out = (size_t)g->oh * (size_t)g->ow;
  const int W = g->w, k = g->size, st = g->stride;
  const float area = (float)(k * k);
  const int fast = k == 2 && st == 2;
#pragma omp parallel for schedule(static) if (pool_parallel(g))
  for (long p = 0; p < planes; p++) {
    const float *xp = x + (size_t)p * in;
    float *yp = y + (size_t)p * out;
    if (fast) {
      avgpool_plane_2x2s2(g, xp, yp);
      continue;
    }
    for (int oh = 0; oh < g->oh; oh++) {
      for (int ow = 0; ow < g->ow; ow++) {
        const float *xw = xp + (size_t)oh * st * W + (size_t)ow * st;
        float s = 0.0f;
        for (int i = 0; i < k; i++)
          for (int j = 0; j < k; j++) s += xw[i * W + j];
        yp[oh * g->ow + ow] = s / area;
      }
    }
  }
}

void NN_V(nn_avgpool2d_backward)(const nn_pool_geom *g, const float *dy, float *dx) {
  const long planes = pool_planes(g);
  const size_t in = (size_t)g->h * (size_t)g->w, out = (size_t)g->oh * (size_t)g->ow;
  const int W = g->w, k = g->size, st = g->stride;
  const float area = (float)(k * k);
  const int fast = k == 2 && st == 2;
#pragma omp parallel for schedule(static) if (pool_parallel(g))
  for (long p = 0; p < planes; p++) {
    float *dxp = dx + (size_t)p * in;
    const float *dyp = dy + (size_t)p * out;
    if (fast) {
      avgpool_plane_2x2s2_bwd(g, dyp, dxp);
      continue;
    }
    memset(dxp, 0, sizeof(float) * in);
    for (int oh = 0; oh < g->oh; oh++) {
      for (int ow = 0; ow < g->ow; ow++) {
        float v = dyp[oh * g->ow + ow] / area;
        float *dw = dxp + (size_t)oh * st * W + (size_t)ow * st;
        for (int i = 0; i < k; i++)
          for (int j = 0; j < k; j++) dw[i * W + j] += v;
      }
    }
  }
}

/* global average pool: x[N,C,S] -> y[N,C]. A plane's sum is kept in double as 16 running
 * sums (value j goes to sum j % 16: two 8-lane units of norm_core.h, in registers), added in
 * lane order at the end: one running sum was a chain of dependent adds, 4 cycles a value
 * (26 % of a cifar-gap step), and an array of sums was kept in memory by GCC. */
static double gap_plane_sum(const float *xp, int s) {
  nc_v8d a, b, u, v;
  nc_splat(&a, 0.0);
  b = a;
  int j = 0;
  for (; j + 16 <= s; j += 16) {
    nc_ld8(&u, xp + j);
    nc_ld8(&v, xp + j + 8);
    nc_add(&a, &u), nc_add(&b, &v);
  }
  double lane[16];
  memcpy(lane, &a, sizeof a), memcpy(lane + 8, &b, sizeof b);
  for (int l = 0; j < s; j++, l++) lane[l] += xp[j];
  double sum = 0.0;
  for (int l = 0; l < 16; l++) sum += lane[l];
  return sum;
}

void NN_V(nn_global_avgpool_forward)(const float *x, float *y, int n, int c, int s) {
  NN_ASSERT(n >= 0 && c >= 0 && s >= 1);
  const long planes = (long)n * c;
#pragma omp parallel for schedule(static) if (planes * s >= POOL_PAR_ELEMS)
  for (long p = 0; p < planes; p++) y[p] = (float)(gap_plane_sum(x + (size_t)p * (size_t)s, s) / s);
}

void NN_V(nn_global_avgpool_backward)(const float *dy, float *dx, int n, int c, int s) {
  NN_ASSERT(n >= 0 && c >= 0 && s >= 1);
  const long planes = (long)n * c;
#pragma omp parallel for schedule(static) if (planes * s >= POOL_PAR_ELEMS)
  for (long p = 0; p < planes; p++) {
    float *dxp = dx + (size_t)p * (size_t)s;
    const float v = dy[p] / (float)s;
#pragma omp simd /* GCC -O2's cheap cost model keeps a loop with a remainder scalar */
    for (int j = 0; j < s; j++) dxp[j] = v;
  }
}
