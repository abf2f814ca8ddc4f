/* 8-float vectors for the convolution kernels written with GCC/clang vector extensions
 * (conv2d_direct.c, conv2d_winograd.c): the same source compiles to AVX2 in the avx2 variant
 * and to pairs of SSE registers in the generic one (kernels/variant.h). Internal to
 * src/kernels/. */
#ifndef NN_KERNELS_V8_H
#define NN_KERNELS_V8_H
#include <string.h>
#if defined(__FMA__)
#include <immintrin.h>
#endif

#define VL 8 /* floats per vector */

typedef float v8 __attribute__((vector_size(VL * sizeof(float))));
/* Vector helpers as macros: a 32-byte vector passed by value to a function (even an inlined
 * one) draws GCC's and clang's ABI warning in builds without AVX. VFMA fuses where the target
 * has FMA, with the intrinsic: written as a loop of __builtin_fmaf over the lanes, GCC -O2
 * made one vfmadd of it but -O3 (CMake's Release) eight scalar ones and lane inserts, and
 * LeNet trained 4x slower (bench_train, 1 thread). */
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(v8))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(v8))
#define VBCAST(s) ((v8){(s), (s), (s), (s), (s), (s), (s), (s)})
#if defined(__FMA__)
#define VFMA(acc, a, b) ((acc) = (v8)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(acc)))
#else
#define VFMA(acc, a, b) ((acc) += (a) * (b))
#endif
/* acc[m][n] += w[m] * v[n] for m < M, n < N (constants where inlined: all in registers):
 * the register-block update of the direct forward (filters x output vectors, per tap), of dx
 * (kernel columns x output rows, per filter) and of Winograd's tile GEMMs. VRANK1_OF takes
 * the vector type's broadcast and fused multiply-add (the direct forward's 16-float vectors,
 * conv2d_direct.c). */
#define VRANK1_OF(T, BCAST, FMA, acc, w, v, M, N)                                                \
  do {                                                                                           \
    _Pragma("GCC unroll 8") for (int m_ = 0; m_ < (M); m_++) {                                   \
      const T wv_ = BCAST((w)[m_]);                                                              \
      _Pragma("GCC unroll 4") for (int n_ = 0; n_ < (N); n_++) FMA((acc)[m_][n_], wv_, (v)[n_]); \
    }                                                                                            \
  } while (0)
#define VRANK1(acc, w, v, M, N) VRANK1_OF(v8, VBCAST, VFMA, acc, w, v, M, N)
/* VKEEP(v): v stays in a register. GCC folds a vector loaded once for several FMAs into
 * each FMA's memory operand, loading it again for every use; where the block's registers
 * allow it (dw_block, dx_block_pair), the load is kept (see there). */
#if defined(__AVX512F__) /* any of the 32 vector registers */
#define VKEEP(v) __asm__("" \
                         : "+v"(v))
#elif defined(__AVX__)
#define VKEEP(v) __asm__("" \
                         : "+x"(v))
#else
#define VKEEP(v) ((void)0)
#endif

#endif
