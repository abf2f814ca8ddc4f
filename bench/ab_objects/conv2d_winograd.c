/* Driver of bench/ab_objects.sh for src/kernels/conv2d_winograd.c: the Winograd F(2x2, 3x3)
 * forward (bias epilogue), dW/db and dx on the presets' second layers and two of
 * bench_kernels' "rule" shapes with more channels, old_ against new_ objects, one thread,
 * each the minimum of 40 calls taken in alternation (conv_ab.h). */
#include "conv_ab.h"

CONV_AB_DECL(old, winograd)
CONV_AB_DECL(new, winograd)

int main(void) {
  static const conv_ab_fns fns[2] = {CONV_AB_FNS(old, winograd), CONV_AB_FNS(new, winograd)};
  conv_ab_shape(fns, "winograd", "cnn conv2 32x32x13x13 oc64", 32, 32, 13, 64, 3, 1);
  conv_ab_shape(fns, "winograd", "cifar conv2 32x32x15x15 oc64", 32, 32, 15, 64, 3, 1);
  conv_ab_shape(fns, "winograd", "rule c64 8x8 oc64", 32, 64, 8, 64, 3, 1);
  conv_ab_shape(fns, "winograd", "rule c128 6x6 oc128", 32, 128, 6, 128, 3, 1);
  return 0;
}
