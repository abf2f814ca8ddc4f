/* The seeds' experiments (ARCHITECTURE.md §2): a spec and the seed's recipe each. Every preset has
 * its twin without normalization through nn_spec_set_norm(spec, "none"). Presets from the
 * Keras seeds (000, 001) use Keras's defaults: BN momentum 0.99 / eps 1e-3 with biased
 * running variance (convention=keras), Glorot-uniform weights with zero biases, Adam
 * lr 1e-3 eps 1e-7. The PyTorch-style seed (004) uses PyTorch's defaults. */
#include <string.h>

#include "normnet.h"

#define KERAS_ADAM \
  { .kind = NN_OPT_ADAM, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-7f, .keras_eps = 1 }

static const nn_preset presets[] = {
    {
        .name = "lenet",
        .seed = "004 (d2l BN-LeNet, PyTorch built-in BatchNorm)",
        /* BN-LeNet, seed 004: PyTorch conventions, conv/dense keep their bias before BN */
        .spec = "input shape=1x28x28\n"
                "conv2d filters=6 kernel=5\n"
                "batchnorm\n"
                "sigmoid\n"
                "avgpool2d size=2\n"
                "conv2d filters=16 kernel=5\n"
                "batchnorm\n"
                "sigmoid\n"
                "avgpool2d size=2\n"
                "flatten\n"
                "dense units=120\n"
                "batchnorm\n"
                "sigmoid\n"
                "dense units=84\n"
                "batchnorm\n"
                "sigmoid\n"
                "dense units=10\n",
        .init = NN_INIT_DEFAULT,
        .opt = {.kind = NN_OPT_SGD, .lr = 0.1f},
        .batch_size = 128,
        .epochs = 10,
        .input_norm = {0.5f, 0.5f},
        .data = "fashion-mnist",
    },
    {
        .name = "mlp",
        .seed = "000 (Keras MLP: Dense -> BatchNorm -> ReLU)",
        /* seed 000 MLP: Keras conventions */
        .spec = "input shape=784\n"
                "dense units=128\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "dense units=64\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "dense units=32\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "dense units=10\n",
        .init = NN_INIT_XAVIER_UNIFORM,
        .opt = KERAS_ADAM,
        .batch_size = 32,
        .epochs = 10,
        .input_norm = {0.0f, 1.0f},
        .data = "fashion-mnist",
    },
    {
        .name = "cnn",
        .seed = "000 (Keras CNN on 28x28x1)",
        /* seed 000 CNN: Keras conventions */
        .spec = "input shape=1x28x28\n"
                "conv2d filters=32 kernel=3\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "maxpool2d size=2\n"
                "conv2d filters=64 kernel=3\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "maxpool2d size=2\n"
                "flatten\n"
                "dense units=64\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "dense units=10\n",
        .init = NN_INIT_XAVIER_UNIFORM,
        .opt = KERAS_ADAM,
        .batch_size = 32,
        .epochs = 10,
        .input_norm = {0.0f, 1.0f},
        .data = "fashion-mnist",
    },
    {
        .name = "cifar-cnn",
        .seed = "001 (Keras CIFAR-10 CNN, use_bias=False before BN)",
        /* seed 001 CIFAR-10 CNN: Keras conventions, no bias before BN */
        .spec = "input shape=3x32x32\n"
                "conv2d filters=32 kernel=3 bias=0\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "maxpool2d size=2\n"
                "conv2d filters=64 kernel=3 bias=0\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "maxpool2d size=2\n"
                "flatten\n"
                "dense units=64 bias=0\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "dense units=10\n",
        .init = NN_INIT_XAVIER_UNIFORM,
        .opt = KERAS_ADAM,
        .batch_size = 32,
        .epochs = 10,
        .input_norm = {0.0f, 1.0f},
        .data = NULL,
    },
    {
        .name = "cifar-gap",
        .seed = "001 section 10 (Conv-BN-ReLU, global average pooling)",
        /* seed 001 section 10: Keras conventions */
        .spec = "input shape=3x32x32\n"
                "conv2d filters=32 kernel=3 bias=0\n"
                "batchnorm convention=keras\n"
                "relu\n"
                "global_avgpool\n"
                "dense units=10\n",
        .init = NN_INIT_XAVIER_UNIFORM,
        .opt = KERAS_ADAM,
        .batch_size = 32,
        .epochs = 10,
        .input_norm = {0.0f, 1.0f},
        .data = NULL,
    },
};

int nn_preset_count(void) { return (int)(sizeof presets / sizeof presets[0]); }
const nn_preset *nn_preset_at(int i) { return i >= 0 && i < nn_preset_count() ? &presets[i] : NULL; }

const nn_preset *nn_preset_find(const char *name) {
  for (int i = 0; i < nn_preset_count(); i++)
    if (!strcmp(presets[i].name, name)) return &presets[i];
  return NULL;
}
