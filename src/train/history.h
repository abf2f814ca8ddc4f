#ifndef NN_TRAIN_HISTORY_H
#define NN_TRAIN_HISTORY_H
#include "normnet.h"

struct nn_history {
  nn_epoch_record *rec;
  int n, cap;
};


#endif
