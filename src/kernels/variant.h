/* Kernel variants for runtime dispatch (ARCHITECTURE.md "Runtime dispatch"; internal to
 * src/kernels/).
 *
 * A dispatched kernel file k.c is compiled twice from the same source: as itself (the
 * generic variant, with the build's flags) and through its wrapper k_avx2.c, which defines
 * NN_VARIANT_AVX2 and includes k.c again with -mavx2 -mfma (CMakeLists.txt). The file names
 * each dispatched entry point NN_V(name): name_generic in the first object, name_avx2 in the
 * second; dispatch.c defines `name` itself, which calls the variant of nn_cpu_level_get().
 * Code that must exist once (geometry checks, workspace sizes, cold paths) sits inside
 * `#if NN_VARIANT_ONCE`. The entry points are listed in dispatch.h. */
#ifndef NN_KERNELS_VARIANT_H
#define NN_KERNELS_VARIANT_H

#ifdef NN_VARIANT_AVX2
#define NN_V(name) name##_avx2
#define NN_VARIANT_ONCE 0
#else
#define NN_V(name) name##_generic
#define NN_VARIANT_ONCE 1
#endif

#include "kernels/dispatch.h"

#endif
