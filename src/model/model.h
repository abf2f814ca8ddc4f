/* A model = a list of layers + one flat parameter buffer, one flat gradient buffer (same
 * layout), one flat state buffer (running statistics) and one activation arena planned for
 * the largest batch seen (ARCHITECTURE.md §3). Internal: the optimizer walks the layers' tensor
 * declarations to find what is trainable. */
#ifndef NN_MODEL_MODEL_H
#define NN_MODEL_MODEL_H
#include "base/threads.h"
#include "layers/layer.h"
#include "model/spec.h"

/* The flat parameter and gradient buffers go to a team in static chunks of NN_PARAM_CHUNK
 * floats (the optimizer's update, per trainable tensor; the gradients' zeroing, over the
 * buffer), only from NN_PARAM_PAR_ELEMS floats: with one chunk size and the same static
 * deal, a thread mostly clears the gradients it will update (the whole of a model whose
 * parameters are mostly one tensor, as the mlp's). From 16k: LeNet's 45k parameters on
 * both threads, its steps 1.01-1.05x at two threads (docs/performance.md, run 34). */
#define NN_PARAM_CHUNK 4096
#define NN_PARAM_PAR_ELEMS ((size_t)1 << 14)

struct nn_model {
  nn_spec *spec; /* own copy: the single description */
  int nlayers;
  nn_layer *layers;
  float *params, *grads, *state;
  size_t nparams, nstate;
  int ntensors; /* named tensors in state_dict order (each layer's tensor_first counts into them) */
  /* activation arena, planned for batches of up to plan_n samples */
  int plan_n;
  float *arena;
  /* act[0] = the input: a copy of forward's x, or x itself where the caller assembled the
   * batch there (the fit loop, nn_evaluate: 0.4 MB a LeNet step not copied); act[i+1] =
   * output of layer i (a view kind's, e.g. flatten: act[i]) */
  float **act;
  float **dact;    /* dact[i] = gradient w.r.t. act[i] (dact[0] unused; a view kind's: dact[i+1]) */
  float *probs;    /* softmax of the logits, [n, outputs] */
  int32_t *labels; /* labels of the last forward (zeros if none were given) */
  int last_n;
  nn_mode last_mode;
  int last_has_labels;
  int last_lean;       /* the last forward was nn_model_forward_lean (no backward can follow it) */
  nn_tuner tuner[2];   /* thread count per kind of step (train, eval), base/threads.h */
  int threads;         /* nn_model_set_threads: > 0 fixed for this model; 0 the default */
  int timing;          /* nn_model_set_timing: add each layer's wall time to its time_fwd/bwd */
  const nn_comm *comm; /* data parallel (nn_model_set_comm), or NULL */
  int loss_n;          /* backward averages the loss over this many samples (the global
                            batch under data parallelism); 0: over the forward's batch */
  /* what the model reads: its input transform and the data source it was trained on
   * (recorded by training, carried by checkpoints; has_input 0 = unknown) */
  int has_input;
  nn_input_norm input_norm;
  char *data_source; /* malloc'd, NULL if unknown */
};

/* nn_model_tensor for reading a const model: a num_batches_tracked view has data and
 * count_value NULL and its value in *count. */
void nn_model_tensor_read(const nn_model *m, int idx, nn_tensor_view *v, int64_t *count);

/* nn_model_forward for the library's own evaluation passes (nn_evaluate, the fit loop's,
 * the confusion matrix): it keeps no layer output, so an NN_MODE_EVAL forward also runs a
 * batchnorm or conv2d fused with the relu/sigmoid/tanh after it, as training does, with
 * logits bitwise those of nn_model_forward. No backward can follow it. */
nn_status nn_model_forward_lean(nn_model *m, const float *x, const int32_t *labels, int n, nn_mode mode,
                                double *loss_sum, int *correct, const float **logits, nn_error *err);

/* Ensure the arena holds batches of n samples (allocates only when n grows). */
nn_status nn_model_plan(nn_model *m, int n, nn_error *err);

#endif
