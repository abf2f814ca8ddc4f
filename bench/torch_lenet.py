#!/usr/bin/python3
"""PyTorch side of the end-to-end LeNet benchmark (ARCHITECTURE.md §7): samples per second of a full
training step (zero_grad, forward, cross-entropy, backward, SGD lr 0.1) and of eval-mode
inference (torch.no_grad) for the `lenet` preset (seed 004's BN-LeNet) and its twin without
BN, batch 128, random data of the Fashion-MNIST shape (1x28x28, 10 classes), float32.

Run with Debian's python3-torch:   /usr/bin/python3 bench/torch_lenet.py [THREADS] [STEPS]
THREADS (default 2) goes to torch.set_num_threads; STEPS (default 50) timed steps after
10 warm-up steps; the best of 3 timed repetitions is reported. Output, one figure per line:
    pytorch lenet bn train_samples_per_s=N
so that the C bench's lines can be put side by side with these.
"""
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_lenet_train import build_model  # noqa: E402  (seed 004's LeNet, defined once)

BATCH = 128
WARMUP = 10
REPEATS = 3


def best_rate(fn, steps):
    for _ in range(WARMUP):
        fn()
    best = 0.0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        dt = time.perf_counter() - t0
        best = max(best, steps * BATCH / dt)
    return best


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (BATCH, 1, 28, 28), dtype=torch.uint8, generator=g)
    x = x.to(torch.float32).div(255).sub(0.5).div(0.5)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    print("# torch %s, threads=%d, batch=%d, %d timed steps (best of %d after %d warm-up)"
          % (torch.__version__, threads, BATCH, steps, REPEATS, WARMUP))
    for bn in (True, False):
        model = build_model("batch" if bn else "none")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = nn.CrossEntropyLoss()

        def train_step():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

        def infer_step():
            with torch.no_grad():
                model(x)

        model.train()
        train = best_rate(train_step, steps)
        model.eval()
        infer = best_rate(infer_step, steps)
        tag = "bn" if bn else "nobn"
        print("pytorch lenet %s train_samples_per_s=%.0f" % (tag, train))
        print("pytorch lenet %s infer_samples_per_s=%.0f" % (tag, infer))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
