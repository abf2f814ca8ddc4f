/* The dispatched kernels' entry points (dispatch.h): each calls the variant of the level
 * chosen once per process (base/cpu.h). Without AVX2 variants in the build (not x86, or a
 * compiler without -mavx2), only the generic ones exist. */
#include "base/cpu.h"
#include "kernels/dispatch.h"

#ifdef NN_DISPATCH_AVX2
#define NN_DEFINE_DISPATCH(name, params, args) \
  void name params {                           \
    if (nn_cpu_level_get() >= NN_CPU_AVX2)     \
      name##_avx2 args;                        \
    else                                       \
      name##_generic args;                     \
  }
#else
#define NN_DEFINE_DISPATCH(name, params, args) \
  void name params { name##_generic args; }
#endif
NN_DISPATCHED_KERNELS(NN_DEFINE_DISPATCH)
