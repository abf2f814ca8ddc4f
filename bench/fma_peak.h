/* The FMA peak of the current OpenMP team, measured: 10 independent AVX2 FMA chains per
 * thread (latency 4-5 cycles x 2 FMA pipes), written out so that they stay in registers.
 * Compiled for AVX2 + FMA in any x86 build (a portable one too) and run where the CPU has
 * them (base/cpu.h); elsewhere the peak is NaN. Header-only, shared by bench_kernels and
 * bench_train (each bench C file is one program). */
#ifndef NN_BENCH_FMA_PEAK_H
#define NN_BENCH_FMA_PEAK_H
#include <math.h>
#include <omp.h>

#include "base/cpu.h"

#define FMA_PEAK_ITERS 100000

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static inline void fma_peak_body(double *out) {
#pragma omp parallel
  {
    const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(1e-3f), c2 = _mm256_set1_ps(2e-3f),
           c3 = _mm256_set1_ps(3e-3f), c4 = _mm256_set1_ps(4e-3f), c5 = _mm256_set1_ps(5e-3f),
           c6 = _mm256_set1_ps(6e-3f), c7 = _mm256_set1_ps(7e-3f), c8 = _mm256_set1_ps(8e-3f),
           c9 = _mm256_set1_ps(9e-3f);
    for (int it = 0; it < FMA_PEAK_ITERS; it++) {
      c0 = _mm256_fmadd_ps(c0, m, a), c1 = _mm256_fmadd_ps(c1, m, a), c2 = _mm256_fmadd_ps(c2, m, a);
      c3 = _mm256_fmadd_ps(c3, m, a), c4 = _mm256_fmadd_ps(c4, m, a), c5 = _mm256_fmadd_ps(c5, m, a);
      c6 = _mm256_fmadd_ps(c6, m, a), c7 = _mm256_fmadd_ps(c7, m, a), c8 = _mm256_fmadd_ps(c8, m, a);
      c9 = _mm256_fmadd_ps(c9, m, a);
    }
    __m256 t = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(_mm256_add_ps(c6, c7), _mm256_add_ps(c8, c9))));
    float s[8];
    _mm256_storeu_ps(s, t);
#pragma omp atomic
    *out += s[0];
  }
}

/* The same with 12 chains of 16-wide FMAs, where the CPU has AVX-512 (NAN elsewhere): the
 * peak of the 512-bit pipes, which oneDNN's GEMM and the direct convolution's 16-wide paths
 * use (docs/performance.md, run 20). */
__attribute__((target("avx512f"))) static inline void fma_peak512_body(double *out) {
#pragma omp parallel
  {
    const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    __m512 c[12];
    for (int i = 0; i < 12; i++) c[i] = _mm512_set1_ps((float)i * 1e-3f);
    for (int it = 0; it < FMA_PEAK_ITERS; it++) {
      c[0] = _mm512_fmadd_ps(c[0], m, a), c[1] = _mm512_fmadd_ps(c[1], m, a), c[2] = _mm512_fmadd_ps(c[2], m, a);
      c[3] = _mm512_fmadd_ps(c[3], m, a), c[4] = _mm512_fmadd_ps(c[4], m, a), c[5] = _mm512_fmadd_ps(c[5], m, a);
      c[6] = _mm512_fmadd_ps(c[6], m, a), c[7] = _mm512_fmadd_ps(c[7], m, a), c[8] = _mm512_fmadd_ps(c[8], m, a);
      c[9] = _mm512_fmadd_ps(c[9], m, a), c[10] = _mm512_fmadd_ps(c[10], m, a), c[11] = _mm512_fmadd_ps(c[11], m, a);
    }
    __m512 t = c[0];
    for (int i = 1; i < 12; i++) t = _mm512_add_ps(t, c[i]);
    float s[16];
    _mm512_storeu_ps(s, t);
#pragma omp atomic
    *out += s[0];
  }
}

/* Seconds of one call of `body` on the team, timed with `clock`: the fastest of 5
 * repetitions of 20 calls, after one call that wakes the team. */
static inline double fma_peak_seconds(void (*body)(double *), double (*clock)(void)) {
  double sink = 0, best = INFINITY;
  body(&sink);
  for (int r = 0; r < 5; r++) {
    double t0 = clock();
    for (int i = 0; i < 20; i++) body(&sink);
    double t = (clock() - t0) / 20;
    if (t < best) best = t;
  }
  return best;
}

/* GFLOP/s of the team (2 per FMA lane) */
static inline double fma_peak_gflops(double (*clock)(void)) {
  if (nn_cpu_detect() < NN_CPU_AVX2) return NAN;
  return (double)omp_get_max_threads() * FMA_PEAK_ITERS * 10 * 8 * 2 / fma_peak_seconds(fma_peak_body, clock) / 1e9;
}

/* the same for the 16-wide chains */
static inline double fma_peak512_gflops(double (*clock)(void)) {
  if (nn_cpu_detect() < NN_CPU_AVX512) return NAN;
  return (double)omp_get_max_threads() * FMA_PEAK_ITERS * 12 * 16 * 2 / fma_peak_seconds(fma_peak512_body, clock) /
         1e9;
}
#else
static inline double fma_peak_gflops(double (*clock)(void)) {
  (void)clock;
  return NAN;
}
static inline double fma_peak512_gflops(double (*clock)(void)) {
  (void)clock;
  return NAN;
}
#endif

#endif
