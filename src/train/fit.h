/* Internal pieces of the training loop shared with the run (run.c). */
#ifndef NN_TRAIN_FIT_H
#define NN_TRAIN_FIT_H
#include "normnet.h"

/* NN_ERR_SHAPE unless ds's samples fit m's input and its classes m's outputs; `what`
 * names the data set in the message. */
nn_status nn_fit_check_input(const nn_model *m, const nn_dataset *ds, const char *what, nn_error *err);

/* 1 for the recipe keys added after runs were first saved (schedule, warm-up, accumulation,
 * early stopping): a checkpoint without them resumes with their defaults. */
int nn_recipe_key_has_default(const char *key);

#endif
