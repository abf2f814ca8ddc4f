#include "normnet.h"

#include <omp.h>

void nn_set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}
