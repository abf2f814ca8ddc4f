/* CPU features for the kernels' runtime dispatch (ARCHITECTURE.md "Runtime dispatch").
 *
 * A portable build (NN_NATIVE=OFF) carries each dispatched kernel twice: the generic variant
 * (the compiler's baseline, SSE2 on x86-64) and the AVX2+FMA variant. The level the kernels
 * run is chosen once per process, on first use: the best this CPU and build support, capped by
 * the environment variable NN_CPU (`generic` forces the baseline, `avx2` caps at AVX2; unset
 * or any other value: the best). Every variant computes the same bits (the kernels' numerics
 * do not depend on the vector width), except the direct and Winograd convolutions
 * (ARCHITECTURE.md §13). NN_CPU_AVX512 runs the AVX2 variants; what it changes is the
 * convolution's algorithm rule (kernels.h, nn_conv2d_algo_at), for oneDNN's GEMM, which runs
 * 16 lanes wide there. */
#ifndef NN_BASE_CPU_H
#define NN_BASE_CPU_H

typedef enum { NN_CPU_GENERIC = 0,
               NN_CPU_AVX2 = 1,   /* AVX2 and FMA */
               NN_CPU_AVX512 = 2, /* and AVX-512 F, BW, DQ, VL (oneDNN's avx512_core) */
               NN_CPU_LEVEL_COUNT } nn_cpu_level;

/* The level the dispatched kernels run (thread-safe; the first call decides). */
nn_cpu_level nn_cpu_level_get(void);
/* The best level of this CPU and build, ignoring NN_CPU. */
nn_cpu_level nn_cpu_detect(void);
/* The level a value of NN_CPU asks for (NULL, "" or unknown: `best`), never above `best`. */
nn_cpu_level nn_cpu_parse(const char *env, nn_cpu_level best);
/* Tests: run `level` (capped at nn_cpu_detect()) from now on; returns the previous level. */
nn_cpu_level nn_cpu_force(nn_cpu_level level);
/* 1 where the CPU runs a 512-bit FMA as two 256-bit halves, one such FMA a cycle (AMD
 * family 19h, Zen 4), else 0 (Intel's AVX-512 cores run two a cycle). A tuning fact, never a
 * numerical one: a kernel that asks picks a register block whose results are the same bits
 * either way (conv2d_direct.c's dx rows). Thread-safe; decided on the first call. */
int nn_cpu_fma512_split(void);
/* Tests: answer `split` (0 or 1) from now on, whatever the CPU; returns the previous answer. */
int nn_cpu_fma512_split_force(int split);
/* "generic", "avx2" or "avx512". */
const char *nn_cpu_level_name(nn_cpu_level level);

#endif
