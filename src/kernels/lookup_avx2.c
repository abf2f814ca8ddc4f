/* The AVX2+FMA variant of lookup.c's dispatched kernel: the same source compiled again with
 * -mavx2 -mfma (CMakeLists.txt; runtime dispatch, variant.h). */
#define NN_VARIANT_AVX2
#include "kernels/lookup.c" // NOLINT(bugprone-suspicious-include): one source, two variants
