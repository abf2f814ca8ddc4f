/* The AVX2+FMA variant of u8_normalize.c's dispatched kernel: the same source compiled again
 * with -mavx2 -mfma (CMakeLists.txt; runtime dispatch, variant.h). */
#define NN_VARIANT_AVX2
#include "kernels/u8_normalize.c" // NOLINT(bugprone-suspicious-include): one source, two variants
