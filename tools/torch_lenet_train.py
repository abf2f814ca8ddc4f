#!/usr/bin/python3
"""PyTorch reference trainer for the seed-004 recipe (BN-LeNet on Fashion-MNIST).

Same-machine baseline for normnet. Run with Debian's python3-torch:

    /usr/bin/python3 tools/torch_lenet_train.py --norm batch --seed 1 --threads 1

Recipe: x = (u8/255 - 0.5)/0.5, LeNet (sigmoid + avgpool) with BatchNorm after
every conv/linear except the last, SGD lr 0.1, CrossEntropyLoss, batch 128
shuffled each epoch, 10 epochs, test evaluation in eval mode after each epoch.
"""
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dtype_code = (magic >> 8) & 0xFF
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported IDX dtype 0x{dtype_code:02x}")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(data_dir, prefix):
    imgs = load_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = (imgs.astype(np.float32) / 255.0 - 0.5) / 0.5
    x = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, 28, 28)))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def build_model(norm):
    bn = norm == "batch"

    def maybe(m):
        return [m] if bn else []

    layers = [
        nn.Conv2d(1, 6, kernel_size=5), *maybe(nn.BatchNorm2d(6)), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), *maybe(nn.BatchNorm2d(16)), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), *maybe(nn.BatchNorm1d(120)), nn.Sigmoid(),
        nn.Linear(120, 84), *maybe(nn.BatchNorm1d(84)), nn.Sigmoid(),
        nn.Linear(84, 10),
    ]
    return nn.Sequential(*layers)


def evaluate(model, loss_fn, x, y, batch):
    model.eval()
    total_loss = 0.0
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            out = model(xb)
            total_loss += loss_fn(out, yb).item() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
    n = x.shape[0]
    return total_loss / n, correct / n


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--norm", choices=["batch", "none"], default="batch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")

    model = build_model(args.norm)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    gen = torch.Generator()
    gen.manual_seed(args.seed)

    tag = f"torch lenet norm={args.norm} seed={args.seed}"
    print(f"# {tag} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"train={xtr.shape[0]} test={xte.shape[0]} batch={args.batch} lr={args.lr}",
          flush=True)

    n = xtr.shape[0]
    best = 0.0
    test_acc = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total_loss = 0.0
        correct = 0
        t0 = time.perf_counter()
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb, yb = xtr[idx], ytr[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += loss.item() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
        dt = time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, loss_fn, xte, yte, 1000)
        best = max(best, test_acc)
        print(f"{tag} epoch={epoch} train_loss={total_loss / n:.4f} "
              f"train_acc={correct / n:.4f} test_loss={test_loss:.4f} "
              f"test_acc={test_acc:.4f} samples_per_s={n / dt:.0f}", flush=True)
    print(f"{tag} final test_acc={test_acc:.4f} best test_acc={best:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
