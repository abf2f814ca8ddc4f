/* Driver of bench/ab_objects.sh for src/kernels/conv2d_direct.c: the direct convolution's
 * forward (bias epilogue), dW/db and dx on the presets' shapes that run direct, old_ against
 * new_ objects, one thread, each the minimum of 40 calls taken in alternation (conv_ab.h). */
#include "conv_ab.h"

CONV_AB_DECL(old, direct)
CONV_AB_DECL(new, direct)

int main(void) {
  static const conv_ab_fns fns[2] = {CONV_AB_FNS(old, direct), CONV_AB_FNS(new, direct)};
  /* data: 0 no dx pass (a first layer) */
  conv_ab_shape(fns, "conv", "lenet conv1 128x1x28x28 oc6 k5", 128, 1, 28, 6, 5, 0);
  conv_ab_shape(fns, "conv", "lenet conv2 128x6x12x12 oc16 k5", 128, 6, 12, 16, 5, 1);
  conv_ab_shape(fns, "conv", "cnn conv1 32x1x28x28 oc32 k3", 32, 1, 28, 32, 3, 0);
  return 0;
}
