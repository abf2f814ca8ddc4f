/* Explicit-state RNG (xoshiro256**, seeded by splitmix64). No global state:
 * every user owns an nn_rng and passes it in. */
#ifndef NN_BASE_RNG_H
#define NN_BASE_RNG_H
#include <stdint.h>
#include "normnet.h"

/* nn_rng_seed, nn_rng_next and nn_rng_uniform are public (normnet.h). */
/* Uniform integer in [0, n). n > 0. Unbiased (rejection). */
uint32_t nn_rng_below(nn_rng *r, uint32_t n);
/* Standard normal (Box-Muller, no cached second value: state stays 4 words). */
double nn_rng_normal(nn_rng *r);
/* Fisher-Yates shuffle of idx[0..n). */
void nn_rng_shuffle(nn_rng *r, uint32_t *idx, uint32_t n);

#endif
