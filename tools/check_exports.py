#!/usr/bin/env python3
"""Check normnet's exports against the real runtimes (ARCHITECTURE.md §10); run outside CI with the
peers' virtual environment (onnxruntime, tensorflow-cpu/Keras 3, numpy):

    /opt/peers/bin/python tools/check_exports.py --build build [--steps 300] [--keep DIR]

For every preset: train briefly with `normnet train`, export with `normnet export` to ONNX
(BatchNormalization and --fold) and Keras, then run the test split through normnet itself
(the library, via ctypes), ONNX Runtime and Keras on the same raw pixels in [0, 1]:
Fashion-MNIST's 10k test images for the 28x28 presets, a synthetic CIFAR-format data set
for the CIFAR presets. Every logit must agree within 1e-4 (relative to max(1, |logit|))
and the accuracies must be identical. Keras's model ends in softmax, so its logits are the
output of the layer before.

Also a spec with every layer kind (group/layer/instance norm, padding, dropout, BN after
Flatten, an input transform) with random weights, through both runtimes.

Then the other direction: a seed-000 MLP trained in Keras (Dense-BN-ReLU x3, Dense with the
softmax inside, as the seed writes it; Adam) is saved as .keras and as legacy .h5, imported
by `normnet eval --checkpoint X --model mlp` and by `normnet eval X` (the architecture from
the file's config), and must evaluate to Keras's own accuracy each way; so must seed 001's
CNN with BN (Keras-trained on the synthetic CIFAR set, saved as .h5 and .keras). Exit status 0 only if every check passes.
"""
import argparse
import ctypes
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np

FASHION = "/usr/share/datasets/fashion-mnist"
TOL = 1e-4


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_test():
    x = read_idx(f"{FASHION}/t10k-images-idx3-ubyte.gz")
    y = read_idx(f"{FASHION}/t10k-labels-idx1-ubyte.gz")
    return x[:, None, :, :], y.astype(np.int64)


def make_cifar(dirpath, seed=1, train=4000, test=2000):
    """CIFAR-10 binary format (label byte + 3x32x32 CHW bytes) with a learnable signal:
    each class tints a different channel/quadrant over uniform noise."""
    rng = np.random.default_rng(seed)
    os.makedirs(dirpath, exist_ok=True)

    def records(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 160, (n, 3, 32, 32)).astype(np.int32)
        for k in range(10):
            sel = y == k
            c, q = k % 3, k // 3
            x[sel, c, (q // 2) * 16:(q // 2) * 16 + 16, (q % 2) * 16:(q % 2) * 16 + 16] += 90
        x = np.clip(x, 0, 255).astype(np.uint8)
        return x, y

    for i in range(1, 6):
        x, y = records(train // 5)
        np.concatenate([y[:, None], x.reshape(len(y), -1)], axis=1).tofile(f"{dirpath}/data_batch_{i}.bin")
    x, y = records(test)
    np.concatenate([y[:, None], x.reshape(len(y), -1)], axis=1).tofile(f"{dirpath}/test_batch.bin")
    return x, y.astype(np.int64)


class NormnetLib:
    """normnet's own predictions, through the shared library."""

    class Err(ctypes.Structure):
        _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]

    class Norm(ctypes.Structure):
        _fields_ = [("mean", ctypes.c_float), ("std", ctypes.c_float)]

    def forward(self, m, x):
        """Eval-mode logits of model m for float inputs x (already transformed)."""
        err = self.Err()
        x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
        y = ctypes.POINTER(ctypes.c_float)()
        if self.lib.nn_model_forward(m, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), None, len(x), 1, None, None,
                                     ctypes.byref(y), ctypes.byref(err)):
            raise RuntimeError(err.msg.decode())
        k = self.lib.nn_model_output_size(m)
        return np.ctypeslib.as_array(y, shape=(len(x), k)).copy()

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        L = self.lib
        L.nn_checkpoint_load.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                         ctypes.c_void_p]
        L.nn_model_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.POINTER(ctypes.POINTER(ctypes.c_float)), ctypes.c_void_p]
        L.nn_model_output_size.argtypes = [ctypes.c_void_p]
        L.nn_model_free.argtypes = [ctypes.c_void_p]
        L.nn_checkpoint_meta.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p),
                                         ctypes.c_void_p]

    def meta(self, ckpt, key):
        v = ctypes.c_char_p()
        err = self.Err()
        if self.lib.nn_checkpoint_meta(ckpt.encode(), key.encode(), ctypes.byref(v), ctypes.byref(err)) or not v.value:
            return None
        return v.value.decode()  # the few bytes malloc'd by the library are left to the process

    def logits(self, ckpt, u8):
        """Eval-mode logits for uint8 images [n, C, H, W], with the checkpoint's input transform."""
        err = self.Err()
        m = ctypes.c_void_p()
        if self.lib.nn_checkpoint_load(ckpt.encode(), None, ctypes.byref(m), ctypes.byref(err)):
            raise RuntimeError(err.msg.decode())
        mean = float(self.meta(ckpt, "normnet.input_mean") or 0)
        std = float(self.meta(ckpt, "normnet.input_std") or 1)
        # nn_dataset_batch: (float)b / 255.0f, then (v - mean) / std, all in float32
        table = ((np.arange(256, dtype=np.float32) / np.float32(255)) - np.float32(mean)) / np.float32(std)
        k = self.lib.nn_model_output_size(m)
        out = np.empty((len(u8), k), np.float32)
        for s in range(0, len(u8), 500):
            x = np.ascontiguousarray(table[u8[s:s + 500]].reshape(len(u8[s:s + 500]), -1))
            y = ctypes.POINTER(ctypes.c_float)()
            if self.lib.nn_model_forward(m, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), None, len(x), 1, None,
                                         None, ctypes.byref(y), ctypes.byref(err)):
                raise RuntimeError(err.msg.decode())
            out[s:s + len(x)] = np.ctypeslib.as_array(y, shape=(len(x), k))
        self.lib.nn_model_free(m)
        return out


EVERY_KIND = """input shape=3x12x12
conv2d filters=8 kernel=3 pad=1
groupnorm groups=4
tanh
conv2d filters=8 kernel=3 bias=0 stride=1
instancenorm affine=1
relu
avgpool2d size=2
instancenorm affine=1 track_running_stats=1
layernorm
batchnorm affine=0
sigmoid
maxpool2d size=2 stride=1
dropout rate=0.25
flatten
batchnorm convention=keras
dense units=12
layernorm
groupnorm groups=3
dense units=5
"""


def every_kind(lib, work, lines):
    """A spec with every layer kind, random weights and statistics, exported through the
    library and run in both runtimes on random inputs in [0, 1]."""
    L = lib.lib
    err = NormnetLib.Err()
    spec, m = ctypes.c_void_p(), ctypes.c_void_p()
    L.nn_spec_parse.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    L.nn_model_create.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    for fn in ("nn_model_params", "nn_model_state"):
        getattr(L, fn).argtypes = [ctypes.c_void_p]
        getattr(L, fn).restype = ctypes.POINTER(ctypes.c_float)
    for fn in ("nn_model_param_count", "nn_model_state_count"):
        getattr(L, fn).argtypes = [ctypes.c_void_p]
        getattr(L, fn).restype = ctypes.c_size_t
    L.nn_export_onnx.argtypes = L.nn_export_keras.argtypes = [ctypes.c_void_p, NormnetLib.Norm, ctypes.c_char_p,
                                                              ctypes.c_void_p]
    if L.nn_spec_parse(EVERY_KIND.encode(), b"every-kind", ctypes.byref(spec), ctypes.byref(err)) or \
            L.nn_model_create(spec, ctypes.byref(m), ctypes.byref(err)):
        raise RuntimeError(err.msg.decode())
    rng = np.random.default_rng(5)
    p = np.ctypeslib.as_array(L.nn_model_params(m), shape=(L.nn_model_param_count(m),))
    st = np.ctypeslib.as_array(L.nn_model_state(m), shape=(L.nn_model_state_count(m),))
    p[:] = rng.standard_normal(p.size).astype(np.float32) * 0.5
    st[:] = 0.1 + np.abs(rng.standard_normal(st.size)).astype(np.float32)
    norm = NormnetLib.Norm(0.25, 2.0)
    x01 = rng.random((64, 3, 12, 12), dtype=np.float32)
    xin = ((x01 - np.float32(0.25)) / np.float32(2.0)).astype(np.float32)
    ref = lib.forward(m, xin)
    for fmt in ("onnx", "keras"):
        out = os.path.join(work, "every-kind." + fmt)
        if getattr(L, "nn_export_" + fmt)(m, norm, out.encode(), ctypes.byref(err)):
            raise RuntimeError(err.msg.decode())
        got = ort_logits(out, x01) if fmt == "onnx" else keras_logits(out, x01)
        diff = float((np.abs(got - ref) / np.maximum(1.0, np.abs(ref))).max())
        ok = diff <= TOL and (got.argmax(1) == ref.argmax(1)).all()
        lines.append(f"| every layer kind (random weights) | 64 | - | {'ONNX Runtime' if fmt == 'onnx' else 'Keras'} | "
                     f"same argmax: {bool((got.argmax(1) == ref.argmax(1)).all())} | "
                     f"{float(np.abs(got - ref).max()):.2e} | {diff:.2e} | {'ok' if ok else 'MISMATCH'} |")
        if not ok:
            return False
    return True


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def compare(name, ref, got, y):
    diff = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    acc_ref = float((ref.argmax(1) == y).mean())
    acc = float((got.argmax(1) == y).mean())
    ok = diff.max() <= TOL and acc == acc_ref
    return {"runtime": name, "max_abs": float(np.abs(got - ref).max()), "max_rel": float(diff.max()),
            "accuracy": acc, "ok": bool(ok)}


def keras_logits(path, x01_nchw):
    import keras
    model = keras.saving.load_model(path)
    assert model.layers[-1].get_config()["activation"] == "softmax"
    logit_model = keras.Model(model.inputs, model.layers[-2].output)
    x = x01_nchw.reshape(len(x01_nchw), -1) if len(model.input_shape) == 2 else x01_nchw.transpose(0, 2, 3, 1)
    return logit_model.predict(x, batch_size=500, verbose=0)


def ort_logits(path, x01_nchw):
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    shape = s.get_inputs()[0].shape
    x = x01_nchw.reshape(len(x01_nchw), -1) if len(shape) == 2 else x01_nchw
    return s.run(["logits"], {"input": x})[0]


def keras_mlp_import(args, work, x_test, y_test, lines):
    """Train the seed-000 MLP in Keras, import it into normnet, compare accuracies."""
    import keras
    keras.utils.set_random_seed(0)
    xtr = read_idx(f"{FASHION}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    ytr = read_idx(f"{FASHION}/train-labels-idx1-ubyte.gz").astype(np.int64)
    layers = [keras.Input((784,))]
    for units in (128, 64, 32):
        layers += [keras.layers.Dense(units), keras.layers.BatchNormalization(), keras.layers.Activation("relu")]
    layers += [keras.layers.Dense(10, activation="softmax")]  # as seed 000 writes it
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr[:args.keras_train], ytr[:args.keras_train], batch_size=32, epochs=1, verbose=0)
    path = os.path.join(work, "keras-mlp.keras")
    model.save(path)
    legacy = os.path.join(work, "keras-mlp.h5")
    model.save(legacy)  # the legacy HDF5 format, as seed 001 saves
    x = x_test.reshape(len(x_test), -1).astype(np.float32) / np.float32(255)
    keras_acc = float(model.evaluate(x, y_test, batch_size=500, verbose=0)[1])
    all_ok = True
    for how, argv in (("with --model mlp", ["--checkpoint", path, "--model", "mlp"]),
                      ("its own architecture", [path]), ("legacy .h5, its own architecture", [legacy])):
        out = json.loads(run([args.normnet, "eval"] + argv + ["--json"]))
        ok = abs(out["accuracy"] - keras_acc) < 0.5 / len(y_test)
        all_ok &= ok
        lines.append(f"| Keras-trained mlp imported, {how} ({args.keras_train} training samples, 1 epoch) | "
                     f"{len(y_test)} | Keras {keras_acc:.4f} | normnet {out['accuracy']:.4f} | {'ok' if ok else 'MISMATCH'} |")
    return all_ok


def keras_cnn_import(args, work, x_test, y_test, lines):
    """Seed 001 §5's CNN with BN, as the seed writes it (Conv2D without bias, BatchNormalization,
    Activation, MaxPooling2D, Flatten, Dense, softmax inside the last Dense), trained briefly
    in Keras on the synthetic CIFAR-format set, saved as the seed saves it (legacy .h5) and as
    .keras, evaluated by normnet from the file alone: the accuracy must be Keras's."""
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), use_bias=False), layers.BatchNormalization(), layers.Activation("relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), use_bias=False), layers.BatchNormalization(), layers.Activation("relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dense(64, use_bias=False), layers.BatchNormalization(), layers.Activation("relu"),
        layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = x_test.transpose(0, 2, 3, 1).astype(np.float32) / np.float32(255)
    model.fit(x[:1000], y_test[:1000], batch_size=32, epochs=1, verbose=0)
    keras_acc = float(model.evaluate(x, y_test, batch_size=500, verbose=0)[1])
    all_ok = True
    for ext in ("h5", "keras"):
        path = os.path.join(work, f"cnn_with_batchnorm.{ext}")
        model.save(path)
        out = json.loads(run([args.normnet, "eval", path, "--data", "cifar10:" + os.path.join(work, "cifar"),
                              "--json"]))
        ok = abs(out["accuracy"] - keras_acc) < 0.5 / len(y_test)
        all_ok &= ok
        lines.append(f"| seed 001 CNN with BN, Keras-trained, .{ext}, its own architecture | {len(y_test)} | "
                     f"Keras {keras_acc:.4f} | normnet {out['accuracy']:.4f} | {'ok' if ok else 'MISMATCH'} |")
    return all_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="the CMake build directory (normnet, libnormnet.so)")
    ap.add_argument("--steps", type=int, default=300, help="training steps per preset before exporting")
    ap.add_argument("--keras-train", type=int, default=60000, help="training samples for the Keras MLP")
    ap.add_argument("--keep", help="keep the work files in this directory")
    ap.add_argument("--skip-import", action="store_true", help="skip the Keras-trained MLP import check")
    args = ap.parse_args()
    args.normnet = os.path.join(args.build, "normnet")
    lib = NormnetLib(os.path.join(args.build, "libnormnet.so"))
    work = args.keep or tempfile.mkdtemp(prefix="check-exports-")
    os.makedirs(work, exist_ok=True)

    x_fm, y_fm = fashion_test()
    x_cf, y_cf = make_cifar(os.path.join(work, "cifar"))
    presets = ["lenet", "mlp", "cnn", "cifar-cnn", "cifar-gap"]
    lines = ["| preset | test samples | normnet accuracy | runtime | accuracy | max abs logit diff | max rel diff | |",
             "|---|---|---|---|---|---|---|---|"]
    all_ok = True
    for p in presets:
        cifar = p.startswith("cifar")
        u8, y = (x_cf, y_cf) if cifar else (x_fm, y_fm)
        rundir = os.path.join(work, f"run-{p}")
        cmd = [args.normnet, "train", "--model", p, "--epochs", "1", "--max-steps", str(args.steps), "--out", rundir,
               "--quiet", "--seed", "1"]
        if cifar:
            cmd += ["--data", "cifar10:" + os.path.join(work, "cifar")]
        if os.path.exists(rundir):
            shutil.rmtree(rundir)
        run(cmd)
        ckpt = os.path.join(rundir, "model.safetensors")
        ref = lib.logits(ckpt, u8)
        acc_ref = float((ref.argmax(1) == y).mean())
        x01 = u8.astype(np.float32) / np.float32(255)
        results = []
        for fmt, fold in (("onnx", False), ("onnx", True), ("keras", False)):
            out = os.path.join(work, f"{p}{'-folded' if fold else ''}.{fmt}")
            run([args.normnet, "export", rundir, "--format", fmt, "--out", out] + (["--fold"] if fold else []))
            got = ort_logits(out, x01) if fmt == "onnx" else keras_logits(out, x01)
            name = {"onnx": "ONNX Runtime", "keras": "Keras"}[fmt] + (" (BN folded)" if fold else "")
            results.append(compare(name, ref, got, y))
        for r in results:
            all_ok &= r["ok"]
            lines.append(f"| {p} | {len(y)} | {acc_ref:.4f} | {r['runtime']} | {r['accuracy']:.4f} | "
                         f"{r['max_abs']:.2e} | {r['max_rel']:.2e} | {'ok' if r['ok'] else 'MISMATCH'} |")
        print(f"{p}: done", file=sys.stderr)
    all_ok &= every_kind(lib, work, lines)
    if not args.skip_import:
        lines += ["", "| import | test samples | peer | normnet | |", "|---|---|---|---|---|"]
        all_ok &= keras_mlp_import(args, work, x_fm[:, 0], y_fm, lines)
        all_ok &= keras_cnn_import(args, work, x_cf, y_cf, lines)
    print("\n".join(lines))
    print("all checks passed" if all_ok else "SOME CHECKS FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
