#ifndef NN_TRAIN_HISTORY_H
#define NN_TRAIN_HISTORY_H
#include "normnet.h"

struct nn_history {
  nn_epoch_record *rec;
  int n, cap;
  int validation; /* 1: the eval columns are a validation split (val_*), 0: the test set (test_*) */
};

/* The CSV text of nn_history_write_csv (malloc'd, NULL if out of memory): losses and
 * accuracies to 6 decimals; `exact`: every value in the shortest text that reads back to it
 * (a checkpoint's history, which a resumed run's early stopping and best epoch judge by, as
 * the uninterrupted run judged by the values themselves). */
char *nn_history_to_text(const nn_history *h, int exact);
/* Replace the last record (an epoch continued from inside replaces its partial row); h has one. */
nn_status nn_history_set_last(nn_history *h, const nn_epoch_record *r);
/* Parse that text; `name` names it in errors. */
nn_status nn_history_parse(const char *text, const char *name, nn_history **out, nn_error *err);

#endif
