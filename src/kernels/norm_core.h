/* The normalization core shared by batchnorm.c and groupnorm.c (internal to src/kernels/;
 * pool.c's global average also sums in its 8-lane double units).
 *
 * Shapes: every primitive reads `runs` runs of `len` floats, run r starting at x + r*stride
 * (BatchNorm: one channel = N runs of S floats, stride C*S; GroupNorm: one group = 1 run
 * of (C/G)*S floats), or, for the column primitives, `rows` rows of `cw` channels at
 * stride C (BatchNorm with S = 1).
 *
 * Numerics (bitwise contract; the drivers and their tests rely on it):
 * - Sums are accumulated in double around a shift K (a float the driver chooses: a first
 *   value in forward, the float mean in backward), so 1e4 + N(0,1e-2) keeps its digits.
 * - Lanes: the run primitives keep LANES = 8*nv double accumulators (nv = 2 or 4, fixed per
 *   driver: GroupNorm 16, BatchNorm 32); lane l takes the elements at positions
 *   j % LANES == l of every run; in a run's last, partial chunk only the 8-lane units the
 *   run reaches add (the one it ends inside is padded with values contributing exactly 0:
 *   x = K, dy = 0, gamma = 1), and the final sum runs over lanes 0..LANES-1 in order, or in
 *   a fixed tree (nc_fold: the driver's choice, BatchNorm's per sample group). The
 *   column primitives accumulate each channel over rows 0..rows-1 in order. The order
 *   therefore depends on the data layout only, never on threads.
 * - Everything here is static inline: no state, no allocation, no threads. */
#ifndef NN_KERNELS_NORM_CORE_H
#define NN_KERNELS_NORM_CORE_H
#include <math.h>
#include <stddef.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "kernels/act_inline.h"
#include "kernels/kernels.h"
#include "kernels/pool_simd.h"

#define NC_PAR_MIN_ELEMS 16384 /* below this a norm kernel stays on the calling thread */
#define NC_EBLK 1024           /* fused backward: dz*act'(z) is formed in blocks of this many (32k) */

static inline int nc_parallel(int n, int c, int s) {
  return (size_t)n * (size_t)c * (size_t)s >= NC_PAR_MIN_ELEMS;
}

/* GCC/Clang generic vectors keep the accumulators in registers (arrays indexed in a loop
 * would live in memory). An 8-lane unit is one 8-double vector where the build targets
 * AVX-512, else two native 4-double vectors: a 64-byte generic vector is not native on AVX2
 * and gcc keeps such variables on the stack (every += a store-to-load round trip), which made
 * the BN statistics pass compute-bound at a third of the L2 bandwidth. The units are used
 * only through the operations below, lane by lane the same arithmetic in either form (a
 * multiply and an add stay two roundings: ISO C builds do not contract them). Vectors go
 * through pointers, never by value: no ABI dependence on the target flags. */
typedef float nc_v4f __attribute__((vector_size(16)));
typedef double nc_v4d __attribute__((vector_size(32)));
#if NN_BUILD_AVX512
typedef double nc_v8dv __attribute__((vector_size(64)));
typedef struct {
  nc_v8dv v;
} nc_v8d;
#define NC_UNIT_OP(a, op, b) ((a)->v op(b)->v)
#else
typedef struct {
  nc_v4d lo, hi; /* lanes 0-3, 4-7 */
} nc_v8d;
#define NC_UNIT_OP(a, op, b) ((a)->lo op(b)->lo, (a)->hi op(b)->hi)
#endif

/* 8 floats -> 8 doubles (exact). With AVX, one vcvtps2pd per vector (gcc 12 turns the
 * generic conversion into 2-lane conversions and shuffles). */
static inline void nc_ld8(nc_v8d *out, const float *p) {
#if NN_BUILD_AVX512
  out->v = (nc_v8dv)_mm512_cvtps_pd(_mm256_loadu_ps(p));
#elif defined(__AVX__)
  out->lo = (nc_v4d)_mm256_cvtps_pd(_mm_loadu_ps(p));
  out->hi = (nc_v4d)_mm256_cvtps_pd(_mm_loadu_ps(p + 4));
#else
  nc_v4f a, b;
  memcpy(&a, p, sizeof a);
  memcpy(&b, p + 4, sizeof b);
  out->lo = __builtin_convertvector(a, nc_v4d);
  out->hi = __builtin_convertvector(b, nc_v4d);
#endif
}

/* *out = v in every lane. */
static inline void nc_splat(nc_v8d *out, double v) {
#if NN_BUILD_AVX512
  out->v = (nc_v8dv){v, v, v, v, v, v, v, v};
#else
  out->lo = (nc_v4d){v, v, v, v};
  out->hi = out->lo;
#endif
}

/* Lane-wise a += b, a -= b, a *= b, and a += b * c (rounded after the multiply). */
static inline void nc_add(nc_v8d *a, const nc_v8d *b) { NC_UNIT_OP(a, +=, b); }
static inline void nc_sub(nc_v8d *a, const nc_v8d *b) { NC_UNIT_OP(a, -=, b); }
static inline void nc_mul(nc_v8d *a, const nc_v8d *b) { NC_UNIT_OP(a, *=, b); }
static inline void nc_add_mul(nc_v8d *a, const nc_v8d *b, const nc_v8d *c) {
  nc_v8d p = *b;
  nc_mul(&p, c);
  nc_add(a, &p);
}

/* Lane l of v (l < 8). */
static inline double nc_lane(const nc_v8d *v, int l) {
#if NN_BUILD_AVX512
  return v->v[l];
#else
  return l < 4 ? v->lo[l] : v->hi[l - 4];
#endif
}

/* Up to four 8-lane accumulators of one quantity; a driver uses the first nv. */
typedef struct {
  nc_v8d u[4];
} nc_acc;

static inline void nc_acc_zero(nc_acc *a) {
  nc_splat(&a->u[0], 0.0);
  a->u[1] = a->u[2] = a->u[3] = a->u[0];
}

static inline double nc_lane_sum8(double s, const nc_v8d *v) {
  for (int l = 0; l < 8; l++) s += nc_lane(v, l);
  return s;
}

static inline double nc_lane_sum(const nc_acc *a, int nv) {
  double s = 0;
  for (int k = 0; k < nv; k++) s = nc_lane_sum8(s, &a->u[k]);
  return s;
}

/* How a reduction folds its lanes into one sum: in lane order (nc_lane_sum), or in a tree
 * (nc_tree_sum: BatchNorm's sample groups, where a fold per group and channel in lane order
 * cost up to 16 % of a pass). */
typedef enum { NC_FOLD_LANES,
               NC_FOLD_TREE } nc_fold;

/* The lanes in a tree: the units added lane-wise, u0 + u1 (nv = 2) or (u0 + u1) + (u2 + u3)
 * (nv = 4), then that unit's lanes ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). */
static inline double nc_tree_sum(const nc_acc *a, int nv) {
  nc_v8d v = a->u[0];
  if (nv > 1) nc_add(&v, &a->u[1]);
  if (nv > 2) {
    nc_v8d w = a->u[2];
    nc_add(&w, &a->u[3]);
    nc_add(&v, &w);
  }
  const double l04 = nc_lane(&v, 0) + nc_lane(&v, 4), l26 = nc_lane(&v, 2) + nc_lane(&v, 6);
  const double l15 = nc_lane(&v, 1) + nc_lane(&v, 5), l37 = nc_lane(&v, 3) + nc_lane(&v, 7);
  return (l04 + l26) + (l15 + l37);
}

static inline double nc_fold_sum(const nc_acc *a, int nv, nc_fold fold) {
  return fold == NC_FOLD_TREE ? nc_tree_sum(a, nv) : nc_lane_sum(a, nv);
}

/* The 8-lane units of nv a sweep keeps in registers per quantity (nv = 2 or 4, a constant at
 * every call): all four of 32 lanes where the build targets AVX-512 (32 registers, a unit one
 * register), else two (16 AVX2 registers, a unit two: all 32 lanes of two quantities would
 * spill to the stack), the lanes then in sweeps of 16. */
static inline int nc_sweep_units(int nv) { return NN_BUILD_AVX512 ? nv : 2; }

/* The 8-lane unit of a run's last, partial chunk that starts at o: the run's own floats
 * when it lies inside the run, a copy in pad8 filled with `fill` past len when the run ends
 * inside it, NULL when it lies wholly past the end (its lanes would only add zeros). */
static inline const float *nc_unit(const float *p, size_t o, size_t len, float fill, float *pad8) {
  if (o + 8 <= len) return p + o;
  if (o >= len) return NULL;
  for (size_t l = 0; l < 8; l++) pad8[l] = o + l < len ? p[o + l] : fill;
  return pad8;
}

/* Prefetch of the next run: BatchNorm's runs are a channel's planes, a few KB each at a stride
 * of C planes, and the hardware prefetcher starts again at every one of them (cold in a
 * training step: the tensor came through L3). While the first sweep over a group reads
 * chunk j of run r, the same chunk of run r + 1 is requested: a `lanes`-float chunk at p + j.
 * Only for runs of at least NC_PREFETCH_LEN floats: shorter ones (LeNet's 8x8 planes) measured
 * slower with it, the hardware catching their short constant stride by itself. */
#define NC_PREFETCH_LEN 256
/* whether run r (of `reach` runs from here on, len floats each) prefetches run r + 1 in the
 * sweep over lanes [off, off + 16): the first sweep only */
static inline int nc_ahead(int off, size_t r, size_t reach, size_t len) {
  return !off && r + 1 < reach && len >= NC_PREFETCH_LEN;
}
static inline void nc_prefetch(const float *p, size_t j, int lanes) {
  const char *c = (const char *)(p + j);
  for (int b = 0; b < lanes * (int)sizeof(float); b += 64) __builtin_prefetch(c + b);
}

/* ---- forward moments --------------------------------------------------------------------- */

/* One 8-lane step: d = x - K; a1 += d; a2 += d*d. */
static inline void nc_mom8(nc_v8d *a1, nc_v8d *a2, const float *v, const nc_v8d *K) {
  nc_v8d d;
  nc_ld8(&d, v);
  nc_sub(&d, K);
  nc_add(a1, &d);
  nc_add_mul(a2, &d, &d);
}

/* Lanes [off, off + 8*U) of every chunk of `lanes` floats of `runs` runs of len floats (run
 * r at x + r*stride; `reach` >= runs runs exist from x on: the first sweep, off = 0,
 * prefetches run r + 1 while it is one of them), into the U units s1[0..U), s2[0..U) (U a
 * constant at every call). The accumulators are copied to locals so that they stay in
 * registers across the runs: short runs (a 11x11 plane is 121 floats) would otherwise reload
 * them every few chunks. A run's last, partial chunk adds only the units the run reaches (a
 * lane past the end would add exactly 0). */
static inline __attribute__((always_inline)) void nc_mom_sweep(nc_v8d *s1, nc_v8d *s2, const int U, const float *x,
                                                               size_t runs, size_t stride, size_t len, size_t reach,
                                                               int lanes, int off, float K, const nc_v8d *Kv) {
  nc_v8d a[4], c[4];
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) a[u] = s1[u], c[u] = s2[u];
  const size_t full = len - len % (size_t)lanes;
  for (size_t r = 0; r < runs; r++) {
    const float *p = x + r * stride, *next = nc_ahead(off, r, reach, len) ? p + stride : NULL;
    for (size_t j = 0; j < full; j += (size_t)lanes) {
      if (next) nc_prefetch(next, j, lanes);
#pragma GCC unroll 4
      for (int u = 0; u < U; u++) nc_mom8(&a[u], &c[u], p + j + off + 8 * u, Kv);
    }
    for (int u = 0; full < len && u < U; u++) {
      float pad[8];
      const float *v = nc_unit(p, full + (size_t)off + 8 * (size_t)u, len, K, pad);
      if (!v) break;
      nc_mom8(&a[u], &c[u], v, Kv);
    }
  }
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) s1[u] = a[u], s2[u] = c[u];
}

/* Runs per group of the reductions: a group is swept once per sweep of lanes, so it is kept
 * to about NC_GROUP floats per tensor (L1-resident for a second sweep). Each lane still adds
 * its elements in (run, position) order: the grouping never changes a result. */
#define NC_GROUP 2048
static inline size_t nc_group_runs(size_t len) { return len == 0 || len >= NC_GROUP ? 1 : NC_GROUP / len; }

/* s1 = sum(x - K), s2 = sum((x - K)^2) over the runs, 8*nv lanes. */
static inline void nc_moments(const float *x, size_t runs, size_t stride, size_t len, float K, int nv,
                              nc_fold fold, double *s1, double *s2) {
  nc_v8d Kv;
  nc_splat(&Kv, (double)K);
  nc_acc a1, a2;
  nc_acc_zero(&a1);
  nc_acc_zero(&a2);
  const int lanes = 8 * nv, U = nc_sweep_units(nv);
  const size_t gr = nc_group_runs(len);
  for (size_t r0 = 0; r0 < runs; r0 += gr) {
    const size_t n = runs - r0 < gr ? runs - r0 : gr;
    const float *p = x + r0 * stride;
    for (int off = 0; off < lanes; off += 8 * U)
      nc_mom_sweep(a1.u + off / 8, a2.u + off / 8, U, p, n, stride, len, runs - r0, lanes, off, K, &Kv);
  }
  *s1 = nc_fold_sum(&a1, nv, fold);
  *s2 = nc_fold_sum(&a2, nv, fold);
}

/* Columns: a1[k] += x - K[k], a2[k] += (x - K[k])^2 for channels k < cw of rows 0..rows-1. */
static inline void nc_col_moments(const float *x, int rows, size_t stride, int cw, const double *Kd, double *a1,
                                  double *a2) {
  for (int i = 0; i < rows; i++) {
    const float *p = x + (size_t)i * stride;
#pragma omp simd
    for (int k = 0; k < cw; k++) {
      double d = (double)p[k] - Kd[k];
      a1[k] += d;
      a2[k] += d * d;
    }
  }
}

/* ---- finishing the statistics -------------------------------------------------------------
 * From m values with s1 = sum(x-K), s2 = sum((x-K)^2): off = mean - K, the biased variance
 * (clamped at 0; NaN kept so that a running update can refuse it), invstd = 1/sqrt(var+eps). */
typedef struct {
  double off, var, invstd;
} nc_stats;

static inline nc_stats nc_finish(double s1, double s2, double m, float eps) {
  nc_stats st;
  st.off = s1 / m;
  double v = s2 / m - st.off * st.off;
  if (v < 0) v = 0;
  st.var = v;
  st.invstd = 1.0 / sqrt(v + (double)eps);
  return st;
}

/* ---- backward reductions ------------------------------------------------------------------ */

/* One 8-lane step: d = x - K, e = dy (times gamma when gm): ad += d (unless ad is NULL),
 * ae += e, aed += e*d. */
static inline void nc_bwd8(nc_v8d *ad, nc_v8d *ae, nc_v8d *aed, const float *v, const float *g, const float *gm,
                           const nc_v8d *K) {
  nc_v8d d, e;
  nc_ld8(&d, v);
  nc_ld8(&e, g);
  if (gm) {
    nc_v8d w;
    nc_ld8(&w, gm);
    nc_mul(&e, &w);
  }
  nc_sub(&d, K);
  if (ad) nc_add(ad, &d);
  nc_add(ae, &e);
  nc_add_mul(aed, &e, &d);
}

/* Lanes [off, off + 8*U) of `runs` runs (as nc_mom_sweep: the accumulators kept in
 * registers across the runs; run r of x at x + r*xs, of dy at dy + r*ds; gm only with runs ==
 * 1; `reach` runs exist, the first sweep prefetches the next one of each strided input), into
 * the units ad[0..U) (unless with_d is 0), ae[0..U), aed[0..U); with_d and U are constants at
 * every call, so the pass without sum(x - K) keeps no dead accumulator. */
static inline __attribute__((always_inline)) void nc_bwd_sweep(nc_v8d *ad, nc_v8d *ae, nc_v8d *aed, const int U,
                                                               const int with_d, const float *x, size_t xs,
                                                               const float *dy, size_t ds, const float *gm,
                                                               size_t runs, size_t len, size_t reach, int lanes,
                                                               int off, float K, const nc_v8d *Kv) {
  nc_v8d d[4], e[4], f[4];
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) {
    if (with_d) d[u] = ad[u];
    e[u] = ae[u], f[u] = aed[u];
  }
  const size_t full = len - len % (size_t)lanes;
  for (size_t r = 0; r < runs; r++) {
    const float *px = x + r * xs, *pg = dy + r * ds;
    const int ahead = nc_ahead(off, r, reach, len);
    const float *nx = ahead && xs ? px + xs : NULL, *ng = ahead && ds ? pg + ds : NULL;
    for (size_t j = 0; j < full; j += (size_t)lanes) {
      const size_t o = j + (size_t)off;
      if (nx) nc_prefetch(nx, j, lanes);
      if (ng) nc_prefetch(ng, j, lanes);
#pragma GCC unroll 4
      for (int u = 0; u < U; u++)
        nc_bwd8(with_d ? &d[u] : NULL, &e[u], &f[u], px + o + 8 * u, pg + o + 8 * u, gm ? gm + o + 8 * u : NULL, Kv);
    }
    for (int u = 0; full < len && u < U; u++) {
      float padx[8], pady[8], padg[8];
      const size_t o = full + (size_t)off + 8 * (size_t)u;
      const float *v = nc_unit(px, o, len, K, padx);
      if (!v) break;
      const float *g = nc_unit(pg, o, len, 0.0f, pady), *w = gm ? nc_unit(gm, o, len, 1.0f, padg) : NULL;
      nc_bwd8(with_d ? &d[u] : NULL, &e[u], &f[u], v, g, w, Kv);
    }
  }
#pragma GCC unroll 4
  for (int u = 0; u < U; u++) {
    if (with_d) ad[u] = d[u];
    ae[u] = e[u], aed[u] = f[u];
  }
}

/* Adds `runs` runs of len values of x and dy (run r at x + r*xs, dy + r*ds), with e = dy,
 * or dy*gm when gm != NULL (runs == 1): ad += x - K (unless ad is NULL), ae += e,
 * aed += e * (x - K); 8*nv lanes (Kv = K splat), in sweeps of nc_sweep_units(nv) units; `reach`
 * >= runs runs exist from x, dy on (prefetched ahead). */
static inline void nc_bwd_run(nc_acc *ad, nc_acc *ae, nc_acc *aed, const float *x, size_t xs, const float *dy,
                              size_t ds, const float *gm, size_t runs, size_t len, size_t reach, float K,
                              const nc_v8d *Kv, int nv) {
  const int lanes = 8 * nv, U = nc_sweep_units(nv);
  for (int off = 0; off < lanes; off += 8 * U) {
    const int k = off / 8;
    if (ad)
      nc_bwd_sweep(ad->u + k, ae->u + k, aed->u + k, U, 1, x, xs, dy, ds, gm, runs, len, reach, lanes, off, K, Kv);
    else
      nc_bwd_sweep(NULL, ae->u + k, aed->u + k, U, 0, x, xs, dy, ds, gm, runs, len, reach, lanes, off, K, Kv);
  }
}

/* dy given as the gradient of a 2x2 stride-2 pool (floor) over the runs (planes of w columns
 * and len / w rows): run r's pool output gradient at p + r*ps, (w/2) columns, (len/w/2) rows;
 * max: a max pool (each window's gradient goes to its argmax, found again in the pool's input,
 * the run of z), else an average pool. w = 0: a global average pool, one value p[r*ps] per
 * run (nc_bwd_sums forms e from it with act_grad_from; nc_up2_run is for 2x2 pools). */
typedef struct {
  const float *p;
  size_t ps;
  int w, max;
} nc_up2;

/* dy[0..len) of run r as the pool's backward writes it: every value dp/4 (average), or dp at
 * its window's argmax in z (the pool's input) and 0 elsewhere (max: the windows do not
 * overlap). The argmax is the forward's, found by the same comparisons in the same order
 * (pool_simd.h, which pool.c's forward uses), so the forward need not write
 * it: z's run is read here just before act_grad_n reads it again from L1. A twin of pool.c's
 * plane backward (test_pool_fusion holds them bitwise equal) rather than a call to it: a call
 * in nc_bwd_sums's loop makes it keep its accumulators around the call on every path, and
 * calling pool.c's plane kernel through a pointer measured 0.94x on the CNN's unfused BN2
 * backward (bench/ab_objects.sh ... batchnorm.c, two runs; the fused ones 1.00-1.01x). */
static inline void nc_up2_run(const nc_up2 *u, size_t r, size_t len, const float *z, float *dy) {
  const float *p = u->p + r * u->ps;
  const size_t w = (size_t)u->w, ow = w / 2, rows = len / w;
  for (size_t i = 0; i + 2 * w <= len; i += 2 * w, p += ow) {
    /* both rows in one loop: a memcpy of one short row was a libc call per row, 1.5 % of a
     * LeNet step */
    float *d = dy + i, *e = d + w;
    if (w & 1) d[w - 1] = e[w - 1] = 0.0f; /* the floor's leftover column */
    if (u->max) {
      const float *z0 = z + i, *z1 = z0 + w;
#if NN_BUILD_AVX512
      for (size_t j = 0; j < ow; j += 16)
        p2_max_bwd16(z0 + 2 * j, z1 + 2 * j, p + j, d + 2 * j, e + 2 * j, ow - j < 16 ? (int)(ow - j) : 16);
      continue;
#elif defined(__AVX2__)
      if (ow >= 8) { /* 8 windows at a time, the last step moved back to end at ow */
        for (size_t j = 0;; j += 8) {
          if (j > ow - 8) j = ow - 8;
          p2_max_bwd8(z0 + 2 * j, z1 + 2 * j, p + j, d + 2 * j, e + 2 * j);
          if (j == ow - 8) break;
        }
        continue;
      }
#endif
      for (size_t j = 0; j < ow; j++) {
        int k;
        (void)p2_max1(z0[2 * j], z0[2 * j + 1], z1[2 * j], z1[2 * j + 1], &k);
        const float v = p[j];
        d[2 * j] = k == 0 ? v : 0.0f;
        d[2 * j + 1] = k == 1 ? v : 0.0f;
        e[2 * j] = k == 2 ? v : 0.0f;
        e[2 * j + 1] = k == 3 ? v : 0.0f;
      }
      continue;
    }
#pragma omp simd
    for (size_t j = 0; j < ow; j++) {
      const float v = p[j] * 0.25f;
      d[2 * j] = v;
      d[2 * j + 1] = v;
      e[2 * j] = v;
      e[2 * j + 1] = v;
    }
  }
  if (rows & 1) /* the floor's leftover row */
    for (size_t j = len - w; j < len; j++) dy[j] = 0.0f;
}

/* sd = sum(x - K), se = sum(e), sed = sum(e * (x - K)) over `runs` runs of x and dy (run r
 * at offset r*stride), with e = dy, or dy*gm (gm != NULL, for runs == 1 only), or, with an
 * activation act, e = dy*act'(z) (dy is then the gradient w.r.t. z = act(...)). With an
 * activation, e is stored to eout (laid out as dy, and may be dy itself: each e is formed
 * from the dy at its own position) group by group and summed while the group is in L1, or,
 * with eout NULL, formed in blocks of NC_EBLK (a multiple of every lane count, so the lanes
 * see the same elements) and dropped. With up (an activation, len <= NC_EBLK), dy is NULL and
 * each run's dy is formed from the pool's gradient in L1 just before its e. */
static inline void nc_bwd_sums(const float *x, const float *dy, const nc_up2 *up, const float *gm, const float *z,
                               nn_act act, float *eout, size_t runs, size_t stride, size_t len, float K, int nv,
                               nc_fold fold, double *sd, double *se, double *sed) {
  nc_v8d Kv;
  nc_splat(&Kv, (double)K);
  nc_acc ad, ae, aed;
  nc_acc_zero(&ad);
  nc_acc_zero(&ae);
  nc_acc_zero(&aed);
  float e[NC_EBLK];
  if (!act) {
    const size_t gr = nc_group_runs(len);
    for (size_t r0 = 0; r0 < runs; r0 += gr) {
      const size_t n = runs - r0 < gr ? runs - r0 : gr, o = r0 * stride;
      nc_bwd_run(&ad, &ae, &aed, x + o, stride, dy + o, stride, gm, n, len, runs - r0, K, &Kv, nv);
    }
  } else if (eout || len <= NC_EBLK) {
    /* e of a group of whole runs, into eout (at dy's places) or into the block (run after
     * run, as many as it holds), then its sums */
    float u[NC_EBLK]; /* with up: the run's dy */
    const size_t gr = eout ? nc_group_runs(len) : NC_EBLK / (len ? len : 1), es = eout ? stride : len;
    for (size_t r0 = 0; r0 < runs; r0 += gr) {
      const size_t n = runs - r0 < gr ? runs - r0 : gr, o = r0 * stride;
      float *eg = eout ? eout + o : e;
      for (size_t r = 0; r < n; r++) {
        const float *zr = z + o + r * stride;
        if (up && !up->w) { /* global: e from the run's one value */
          act_grad_from(act, zr, up->p + (r0 + r) * up->ps, len, 0, eg + r * es, len);
          continue;
        }
        if (up) nc_up2_run(up, r0 + r, len, zr, u);
        act_grad_n(act, zr, up ? u : dy + o + r * stride, eg + r * es, len);
      }
      nc_bwd_run(&ad, &ae, &aed, x + o, stride, eg, es, NULL, n, len, eout ? runs - r0 : n, K, &Kv, nv);
    }
  } else {
    for (size_t r = 0; r < runs; r++) {
      const size_t o = r * stride;
      for (size_t j0 = 0; j0 < len; j0 += NC_EBLK) {
        const size_t bl = len - j0 < NC_EBLK ? len - j0 : NC_EBLK;
        act_grad_n(act, z + o + j0, dy + o + j0, e, bl);
        nc_bwd_run(&ad, &ae, &aed, x + o + j0, 0, e, 0, NULL, 1, bl, 1, K, &Kv, nv);
      }
    }
  }
  *sd = nc_fold_sum(&ad, nv, fold);
  *se = nc_fold_sum(&ae, nv, fold);
  *sed = nc_fold_sum(&aed, nv, fold);
}

/* The same sums over one short run, in element order (no lanes). */
static inline void nc_bwd_sums_seq(const float *x, const float *dy, const float *gm, size_t len, float K, double *sd,
                                   double *se, double *sed) {
  double a = 0, b = 0, c = 0;
  for (size_t j = 0; j < len; j++) {
    double d = (double)x[j] - (double)K, e = dy[j];
    if (gm) e *= gm[j];
    a += d;
    b += e;
    c += e * d;
  }
  *sd = a, *se = b, *sed = c;
}

/* Columns: ad[k] += x - K[k] (when ad != NULL), ady[k] += dy, adyd[k] += dy*(x - K[k]). */
static inline void nc_col_bwd_sums(const float *x, const float *dy, int rows, size_t stride, int cw, const double *Kd,
                                   double *ad, double *ady, double *adyd) {
  for (int i = 0; i < rows; i++) {
    const size_t o = (size_t)i * stride;
    if (ad) {
#pragma omp simd
      for (int k = 0; k < cw; k++) {
        double d = (double)x[o + k] - Kd[k], e = dy[o + k];
        ad[k] += d;
        ady[k] += e;
        adyd[k] += e * d;
      }
    } else {
#pragma omp simd
      for (int k = 0; k < cw; k++) {
        double e = dy[o + k];
        ady[k] += e;
        adyd[k] += e * ((double)x[o + k] - Kd[k]);
      }
    }
  }
}

/* ---- running statistics -------------------------------------------------------------------- */

/* run = (1 - w) * run + w * batch, in double, rounded once. */
static inline void nc_ema(float *run, double batch, double w) { *run = (float)((1.0 - w) * (double)*run + w * batch); }

#endif
