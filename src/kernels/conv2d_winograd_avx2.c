/* The AVX2+FMA variant of conv2d_winograd.c's dispatched kernels: the same source compiled again
 * with -mavx2 -mfma (CMakeLists.txt; runtime dispatch, variant.h). */
#define NN_VARIANT_AVX2
#include "kernels/conv2d_winograd.c" // NOLINT(bugprone-suspicious-include): one source, two variants
