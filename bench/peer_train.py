"""Peer side of the preset benchmark (ARCHITECTURE.md §7): training samples per second of
PyTorch or Keras 3 on normnet's presets, the same models, batches, optimizers and data
shapes as build/bench_train.

    python bench/peer_train.py --framework torch|keras --threads T
        [--models lenet,mlp,...] [--norms batch,none] [--seconds 0.3] [--warmup 5]

A training step is what bench_train times: convert a random uint8 batch to normalized
float32, zero the gradients, forward, cross-entropy, backward and the preset's optimizer
update (SGD lr 0.1 for lenet; Adam lr 1e-3 eps 1e-7 for the Keras-recipe presets).
Models: lenet is seed 004's (tools/torch_lenet_train.build_model); the others follow the
Keras seeds (000/001): BN momentum 0.99 (PyTorch 0.01) and eps 1e-3, no bias before BN
where the seed says use_bias=False; without BN that layer gets its bias back, as
`normnet --norm none` does. Keras runs channels-last (its default) and its own train step
(train_on_batch, compiled with Keras's defaults); it has no lenet (a PyTorch-recipe preset).

Output, one line per variant (same fields as bench_train):
    torch-2.5.1 lenet bn batch=128 threads=2 train_samples_per_s=N steps=K
Run through bench/peers.py, which interleaves it with normnet and prints ratios.
"""
import argparse
import os
import sys
import time

PRESETS = {  # name: (input C, H, W, batch, optimizer)
    "lenet": (1, 28, 28, 128, "sgd"),
    "mlp": (1, 28, 28, 32, "adam"),
    "cnn": (1, 28, 28, 32, "adam"),
    "cifar-cnn": (3, 32, 32, 32, "adam"),
    "cifar-gap": (3, 32, 32, 32, "adam"),
}
INPUT_NORM = {"lenet": (0.5, 0.5)}  # (mean, std) after /255; the others use (0, 1)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", choices=("torch", "keras"), required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--models", default=",".join(PRESETS))
    ap.add_argument("--norms", default="batch,none")
    ap.add_argument("--seconds", type=float, default=0.3, help="timed seconds per variant")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per variant")
    a = ap.parse_args()
    a.models = [m for m in a.models.split(",") if m]
    a.norms = [n for n in a.norms.split(",") if n]
    for m in a.models:
        if m not in PRESETS:
            ap.error("unknown preset %r (%s)" % (m, ", ".join(PRESETS)))
    for n in a.norms:
        if n not in ("batch", "none"):
            ap.error("--norms takes batch and/or none, got %r" % n)
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    return a


def timed_rate(step, batch, warmup, seconds):
    for _ in range(warmup):
        step()
    steps = 0
    t0 = time.perf_counter()
    while True:
        step()
        steps += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and steps >= 3:
            return steps * batch / dt, steps


# ---- PyTorch ---------------------------------------------------------------------------
def torch_model(name, bn):
    import torch.nn as nn

    if name == "lenet":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
        from torch_lenet_train import build_model

        return build_model("batch" if bn else "none")

    def bn1(c):
        return [nn.BatchNorm1d(c, momentum=0.01, eps=1e-3)] if bn else []

    def bn2(c):
        return [nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)] if bn else []

    if name == "mlp":
        layers = [nn.Flatten()]
        for i, o in ((784, 128), (128, 64), (64, 32)):
            layers += [nn.Linear(i, o), *bn1(o), nn.ReLU()]
        layers.append(nn.Linear(32, 10))
        return nn.Sequential(*layers)
    if name in ("cnn", "cifar-cnn"):
        cin, hw = (1, 28) if name == "cnn" else (3, 32)
        bias = name == "cnn" or not bn  # cifar-cnn: use_bias=False before BN
        side = ((hw - 2) // 2 - 2) // 2
        return nn.Sequential(
            nn.Conv2d(cin, 32, 3, bias=bias), *bn2(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, bias=bias), *bn2(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * side * side, 64, bias=bias), *bn1(64), nn.ReLU(),
            nn.Linear(64, 10))
    if name == "cifar-gap":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, bias=not bn), *bn2(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    raise ValueError(name)


def run_torch(a):
    import torch
    import torch.nn as nn

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    tag = "torch-%s" % torch.__version__.split("+")[0]
    print("# %s threads=%d blas=%s" % (tag, torch.get_num_threads(), blas_of_torch(torch)), flush=True)
    for name in a.models:
        c, h, w, batch, optname = PRESETS[name]
        mean, std = INPUT_NORM.get(name, (0.0, 1.0))
        g = torch.Generator().manual_seed(1)
        u8 = torch.randint(0, 256, (batch, c, h, w), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        for norm in a.norms:
            torch.manual_seed(0)
            model = torch_model(name, norm == "batch")
            model.train()
            if optname == "sgd":
                opt = torch.optim.SGD(model.parameters(), lr=0.1)
            else:
                opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
            loss_fn = nn.CrossEntropyLoss()

            def step():
                x = (u8.to(torch.float32) / 255.0 - mean) / std
                opt.zero_grad(set_to_none=False)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()

            rate, steps = timed_rate(step, batch, a.warmup, a.seconds)
            print("%s %s %s batch=%d threads=%d train_samples_per_s=%.0f steps=%d"
                  % (tag, name, "bn" if norm == "batch" else "nobn", batch, a.threads, rate, steps), flush=True)


def blas_of_torch(torch):
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO=", "USE_MKL=ON", "openblas"):
        i = cfg.find(key)
        if i >= 0:
            return cfg[i:].split(",")[0].split()[0]
    return "unknown"


# ---- Keras 3 ---------------------------------------------------------------------------
def keras_model(keras, name, bn, c, h, w):
    L = keras.layers

    def bnl():
        return [L.BatchNormalization()] if bn else []  # Keras defaults: momentum 0.99, eps 1e-3

    inp = keras.Input((h, w, c)) if name != "mlp" else keras.Input((h * w * c,))
    if name == "mlp":
        layers = []
        for units in (128, 64, 32):
            layers += [L.Dense(units), *bnl(), L.ReLU()]
        layers.append(L.Dense(10))
    elif name in ("cnn", "cifar-cnn"):
        bias = name == "cnn" or not bn
        layers = [L.Conv2D(32, 3, use_bias=bias), *bnl(), L.ReLU(), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, use_bias=bias), *bnl(), L.ReLU(), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(64, use_bias=bias), *bnl(), L.ReLU(), L.Dense(10)]
    elif name == "cifar-gap":
        layers = [L.Conv2D(32, 3, use_bias=not bn), *bnl(), L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(10)]
    else:
        raise ValueError(name)
    return keras.Sequential([inp, *layers])


def run_keras(a):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    tag = "keras-%s" % keras.__version__
    print("# %s backend=%s tensorflow=%s threads=%d" % (tag, keras.backend.backend(), tf.__version__, a.threads),
          flush=True)
    rng = np.random.default_rng(1)
    for name in a.models:
        if name == "lenet":
            continue  # a PyTorch-recipe preset
        c, h, w, batch, _ = PRESETS[name]
        shape = (batch, h * w * c) if name == "mlp" else (batch, h, w, c)
        u8 = rng.integers(0, 256, size=shape, dtype=np.uint8)
        y = rng.integers(0, 10, size=(batch,)).astype(np.int32)
        for norm in a.norms:
            keras.utils.set_random_seed(0)
            model = keras_model(keras, name, norm == "batch", c, h, w)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

            def step():
                x = u8.astype(np.float32) / np.float32(255.0)
                model.train_on_batch(x, y)

            rate, steps = timed_rate(step, batch, a.warmup, a.seconds)
            print("%s %s %s batch=%d threads=%d train_samples_per_s=%.0f steps=%d"
                  % (tag, name, "bn" if norm == "batch" else "nobn", batch, a.threads, rate, steps), flush=True)


def main():
    a = parse_args()
    # before the frameworks load their thread pools
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    if a.framework == "torch":
        run_torch(a)
    else:
        run_keras(a)


if __name__ == "__main__":
    main()
