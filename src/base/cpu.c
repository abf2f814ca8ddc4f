/* CPU feature detection and the dispatch level (cpu.h). */
#include "base/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int chosen = -1; /* nn_cpu_level, or -1 before the first use */

nn_cpu_level nn_cpu_detect(void) {
#if defined(NN_DISPATCH_AVX2) && (defined(__x86_64__) || defined(__i386__))
  /* libgcc/compiler-rt check the OS saves the YMM state (XCR0) before reporting AVX2 */
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return NN_CPU_GENERIC;
  /* and the ZMM state (XCR0) before AVX-512 */
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return NN_CPU_AVX512;
  return NN_CPU_AVX2;
#endif
  return NN_CPU_GENERIC;
}

nn_cpu_level nn_cpu_parse(const char *env, nn_cpu_level best) {
  if (env && !strcmp(env, "generic")) return NN_CPU_GENERIC;
  if (env && !strcmp(env, "avx2") && best > NN_CPU_AVX2) return NN_CPU_AVX2;
  return best;
}

nn_cpu_level nn_cpu_level_get(void) {
  int v = atomic_load_explicit(&chosen, memory_order_relaxed);
  if (v >= 0) return (nn_cpu_level)v;
  /* Racing first calls compute the same value; the first store wins. */
  int expected = -1;
  v = (int)nn_cpu_parse(getenv("NN_CPU"), nn_cpu_detect());
  if (!atomic_compare_exchange_strong(&chosen, &expected, v)) v = expected;
  return (nn_cpu_level)v;
}

nn_cpu_level nn_cpu_force(nn_cpu_level level) {
  const nn_cpu_level best = nn_cpu_detect(), prev = nn_cpu_level_get();
  atomic_store(&chosen, (int)(level > best ? best : level));
  return prev;
}

static atomic_int split = -1; /* nn_cpu_fma512_split's answer, or -1 before the first use */

static int detect_fma512_split(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
  const int amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* "AuthenticAMD" */
  if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return 0;
  const unsigned base = (a >> 8) & 0xfu, family = base == 0xfu ? base + ((a >> 20) & 0xffu) : base;
  return family == 0x19u; /* Zen 3 and 4; Zen 3 has no AVX-512 to ask about. Zen 5 (1Ah): not measured, 0 */
#else
  return 0;
#endif
}

int nn_cpu_fma512_split(void) {
  int v = atomic_load_explicit(&split, memory_order_relaxed);
  if (v >= 0) return v;
  int expected = -1;
  v = detect_fma512_split();
  if (!atomic_compare_exchange_strong(&split, &expected, v)) v = expected;
  return v;
}

int nn_cpu_fma512_split_force(int s) {
  const int prev = nn_cpu_fma512_split();
  atomic_store(&split, s ? 1 : 0);
  return prev;
}

static const char *const level_names[] = {"generic", "avx2", "avx512"};
_Static_assert(sizeof level_names / sizeof *level_names == NN_CPU_LEVEL_COUNT, "a name per level");

const char *nn_cpu_level_name(nn_cpu_level level) {
  return level >= 0 && level < NN_CPU_LEVEL_COUNT ? level_names[level] : "generic";
}
