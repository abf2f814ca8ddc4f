#!/usr/bin/env python3
"""Regenerate the seed corpora of fuzz/corpus/ from real files (python3 stdlib only):
the first Fashion-MNIST test images (Debian's dataset-fashion-mnist), PNG/PGM encodings of
them, and the spec, checkpoint, history and activations files of short `normnet train`
runs on them, with the Keras config.json of some exported, and of tests/fixtures' seed-style
and functional Keras models.  Usage: python3 fuzz/make_corpus.py BUILD/normnet"""
import gzip, os, shutil, struct, subprocess, sys, tempfile, zipfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FMNIST = "/usr/share/datasets/fashion-mnist"
cli = os.path.abspath(sys.argv[1])
out = os.path.join(HERE, "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)


def idx_pair(n):
    with gzip.open(f"{FMNIST}/t10k-images-idx3-ubyte.gz") as f:
        img = f.read(16 + n * 784)
    with gzip.open(f"{FMNIST}/t10k-labels-idx1-ubyte.gz") as f:
        lab = f.read(8 + n)
    img = struct.pack(">IIII", 0x803, n, 28, 28) + img[16:]
    lab = struct.pack(">II", 0x801, n) + lab[8:]
    return img, lab


def png(w, h, channels, pixels):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + pixels[y * w * channels:(y + 1) * w * channels] for y in range(h))
    ctype = 0 if channels == 1 else 2
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


shutil.rmtree(out, ignore_errors=True)
for n in (1, 3):
    img, lab = idx_pair(n)
    put("idx_raw", f"fmnist{n}", bytes([len(lab)]) + lab + img)
    put("idx_gzip", f"fmnist{n}", bytes([len(lab)]) + lab + gzip.compress(img, 9, mtime=0))
img, lab = idx_pair(3)
put("idx_raw", "labels_swapped", bytes([len(lab)]) + lab + lab)

# CIFAR-10 binary records built from real images: label byte + 3 planes of 32x32 (the
# 28x28 Fashion-MNIST image centred, one plane per channel at different brightness)
recs = b""
for i in range(2):
    px = img[16 + i * 784:16 + (i + 1) * 784]
    plane = bytearray(1024)
    for y in range(28):
        plane[(y + 2) * 32 + 2:(y + 2) * 32 + 30] = px[y * 28:(y + 1) * 28]
    recs += bytes([lab[8 + i]]) + bytes(plane) + bytes(p // 2 for p in plane) + bytes(255 - p for p in plane)
put("cifar", "two_records", recs)
put("cifar", "one_record", recs[:3073])

# images for predict: byte 0 picks the shape (0: 1x28x28, 1: 3x32x32)
px = img[16:16 + 784]
put("image", "gray28.png", b"\0" + png(28, 28, 1, px))
put("image", "gray28.pgm", b"\0" + b"P5\n# fashion-mnist 0\n28 28\n255\n" + px)
put("image", "gray28_ascii.pgm", b"\0" + b"P2\n28 28\n255\n" + " ".join(map(str, px)).encode() + b"\n")
rgb = bytes(v for p in plane for v in (p, p // 2, 255 - p))
put("image", "rgb32.png", b"\1" + png(32, 32, 3, rgb))
put("image", "gray28_16bit.pgm", b"\0" + b"P5\n28 28\n65535\n" + b"".join(struct.pack(">H", p * 257) for p in px))

# specs, checkpoints, history and activations from short real runs
small_spec = ("input shape=1x28x28\nconv2d filters=2 kernel=5 stride=2 bias=0\nbatchnorm\nrelu\n"
              "maxpool2d size=2\nflatten\ndense units=10\n")
with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    for prefix, n in (("train", 64), ("t10k", 16)):
        im, lb = idx_pair(n)
        open(os.path.join(data, f"{prefix}-images-idx3-ubyte"), "wb").write(im)
        open(os.path.join(data, f"{prefix}-labels-idx1-ubyte"), "wb").write(lb)
    open(os.path.join(tmp, "small.spec"), "w").write(small_spec)
    runs = {"small": os.path.join(tmp, "small.spec"), "lenet": "lenet", "mlp": "mlp", "cnn": "cnn"}
    for name, model in runs.items():
        run = os.path.join(tmp, name)
        subprocess.run([cli, "train", "--model", model, "--data", "idx:" + data, "--epochs", "2", "--batch", "16",
                        "--max-steps", "6", "--track-activations", "--quiet", "--out", run], check=True)
        put("spec", name + ".spec", open(os.path.join(run, "spec.txt"), "rb").read())
        if name in ("small", "lenet"):
            put("safetensors", name + ".safetensors", open(os.path.join(run, "model.safetensors"), "rb").read())
        if name == "small":
            hist = open(os.path.join(run, "history.csv"), "rb").read()
            put("history", "two_epochs.csv", b"\2" + hist)
            put("history", "one_epoch.csv", b"\1" + hist)
            put("activations", "small.csv", open(os.path.join(run, "activations.csv"), "rb").read())
        if name == "lenet":
            put("activations", "lenet.csv", open(os.path.join(run, "activations.csv"), "rb").read())
        if name in ("lenet", "cnn"):  # a Keras config.json, as normnet export writes it
            keras = os.path.join(tmp, name + ".keras")
            subprocess.run([cli, "export", run, "--format", "keras", "--out", keras], check=True, capture_output=True)
            put("keras_config", name + ".json", zipfile.ZipFile(keras).read("config.json"))
put("spec", "norms.spec", (b"input shape=3x8x8\nconv2d filters=4 kernel=3 pad=1\ngroupnorm groups=2\nrelu\n"
                           b"conv2d filters=4 kernel=3\ninstancenorm\nsigmoid\navgpool2d size=2\nlayernorm\n"
                           b"global_avgpool\nflatten\ndropout rate=0.5\ndense units=4\nbatchnorm momentum=cumulative\n"
                           b"tanh\ndense units=3\n"))
# Keras's own config.json of a model written as the seeds write them (tests/fixtures)
for fixture, name in (("keras_small_seed.keras", "seed_style.json"), ("keras_small_func.keras", "functional.json")):
    put("keras_config", name, zipfile.ZipFile(os.path.join(HERE, "..", "tests", "fixtures", fixture)).read("config.json"))
print("corpus written to", out)
