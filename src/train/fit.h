/* Internal pieces of the training loop shared with the run (run.c). */
#ifndef NN_TRAIN_FIT_H
#define NN_TRAIN_FIT_H
#include "normnet.h"

/* NN_ERR_SHAPE unless ds's samples fit m's input and its classes m's outputs; `what`
 * names the data set in the message. */
nn_status nn_fit_check_input(const nn_model *m, const nn_dataset *ds, const char *what, nn_error *err);
/* Its first half: the samples alone (recalibration reads no labels). */
nn_status nn_fit_check_shape(const nn_model *m, const nn_dataset *ds, const char *what, nn_error *err);
/* NN_ERR_SHAPE unless the evaluation set's samples have the training set's shape (C, H, W);
 * `what` names the evaluation set in the message. */
nn_status nn_fit_check_same_shape(const nn_dataset *train, const nn_dataset *eval, const char *what, nn_error *err);

/* 1 for the recipe keys added after runs were first saved (schedule, warm-up, accumulation,
 * early stopping): a checkpoint without them resumes with their defaults. */
int nn_recipe_key_has_default(const char *key);

/* Early stopping's rule over the evaluation loss, shared by the loop (fit.c) and the run
 * (run.c), which derives the state of a resumed run from its history rather than storing
 * it: the best loss so far, its epoch (0: none yet) and the epochs waited since. */
typedef struct {
  double best_loss;
  int best_epoch, wait;
} nn_early_stop_state;
/* The state before any epoch. */
nn_early_stop_state nn_early_stop_start(void);
/* Account for one more epoch: 1 when its loss improved on the best by more than delta (it
 * becomes the best), else 0 (one more epoch waited). */
int nn_early_stop_next(nn_early_stop_state *s, const nn_epoch_record *rec, double delta);
/* 1 when the patience has run out in state s. */
int nn_early_stop_out(const nn_early_stop_state *s, int patience);
/* The state after h's first n records; *stopped_at (may be NULL) is the epoch where the
 * patience ran out, or 0. */
nn_early_stop_state nn_early_stop_replay(const nn_history *h, int n, int patience, double delta, int *stopped_at);

#endif
