#!/usr/bin/python3
"""Hand models between normnet and PyTorch (run with Debian's python3-torch: /usr/bin/python3).

    torch_interop.py to-torch CHECKPOINT|RUNDIR OUT.pt
    torch_interop.py from-torch IN.pt|IN.safetensors [--spec SPEC] OUT.safetensors [--input-norm M,S]
    torch_interop.py eval CHECKPOINT|RUNDIR --data DIR [--input-norm MEAN,STD] [--batch B]
    torch_interop.py check [--presets PATH/presets.c]

A normnet model spec (README "Model specs") maps to an nn.Sequential with one module per
spec line after `input`, so normnet's tensor names ("0.weight", "1.running_mean", ...) are
exactly that Sequential's state_dict keys. Layers that PyTorch needs two modules for
(global_avgpool = AdaptiveAvgPool2d(1) + Flatten) are one custom module here, so the
indices of later layers stay aligned.

to-torch writes torch.save({"format": "normnet-torch/1", "spec": <canonical spec text>,
"state_dict": <OrderedDict of tensors>, "metadata": <the checkpoint's __metadata__>}):
plain data only, so torch.load(path, weights_only=True) reads it. Rebuild the module with
build_model(spec) from this file and load_state_dict(d["state_dict"]).

No `safetensors` package needed: the format is read and written by hand.
"""
import argparse
import collections
import gzip
import json
import math
import os
import re
import struct
import sys
import tempfile

import numpy as np
import torch
from torch import nn

# ---- spec text ------------------------------------------------------------------------------
# key -> (type, default); order = normnet's canonical print order. type: int, bool, double,
# momentum (double or "cumulative"), convention (pytorch|keras). None default = required.
_BN_KEYS = [("momentum", "momentum", 0.1), ("eps", "double", 1e-5), ("affine", "bool", 1),
            ("track_running_stats", "bool", 1), ("convention", "convention", "pytorch"),
            ("use_global_stats", "bool", 0), ("freeze_affine", "bool", 0), ("center", "bool", 1),
            ("scale", "bool", 1)]
_POOL_KEYS = [("size", "int", 2), ("stride", "int", 0)]
LAYER_KEYS = {
    "dense": [("units", "int", None), ("bias", "bool", 1)],
    "conv2d": [("filters", "int", None), ("kernel", "int", None), ("stride", "int", 1),
               ("pad", "int", 0), ("bias", "bool", 1)],
    "batchnorm": _BN_KEYS,
    "relu": [], "sigmoid": [], "tanh": [],
    "maxpool2d": _POOL_KEYS, "avgpool2d": _POOL_KEYS,
    "global_avgpool": [], "flatten": [],
    "dropout": [("rate", "double", 0.5)],
    "groupnorm": [("groups", "int", None), ("eps", "double", 1e-5), ("affine", "bool", 1)],
    "layernorm": [("eps", "double", 1e-5), ("affine", "bool", 1)],
    "instancenorm": [("eps", "double", 1e-5), ("affine", "bool", 0),
                     ("track_running_stats", "bool", 0), ("momentum", "double", 0.1)],
}
CUMULATIVE = -1.0


class SpecError(ValueError):
    pass


def _parse_value(kind, key, typ, v, where):
    try:
        if typ == "int":
            return int(v, 10)
        if typ == "bool":
            b = {"1": 1, "true": 1, "0": 0, "false": 0}.get(v)
            if b is None:
                raise ValueError
            return b
        if typ == "momentum" and v in ("cumulative", "none"):
            return CUMULATIVE
        if typ in ("double", "momentum"):
            d = float(v)
            if not math.isfinite(d):
                raise ValueError
            return d
        if typ == "convention":
            c = {"pytorch": "pytorch", "torch": "pytorch", "keras": "keras"}.get(v)
            if c is None:
                raise ValueError
            return c
    except ValueError:
        pass
    raise SpecError(f"{where}: {kind}: bad value '{v}' for {key}")


def parse_spec(text, source="spec"):
    """-> (input_shape tuple (C,) or (C,H,W), [(kind, {key: value}), ...])"""
    shape, layers = None, []
    for lineno, line in enumerate(text.split("\n"), 1):
        tok = line.split("#", 1)[0].split()
        if not tok:
            continue
        where = f"{source}:{lineno}"
        if tok[0] == "input":
            if shape is not None or layers:
                raise SpecError(f"{where}: 'input' must be the first line, once")
            m = re.fullmatch(r"shape=(\d+)(?:x(\d+)x(\d+))?", tok[1]) if len(tok) == 2 else None
            if not m:
                raise SpecError(f"{where}: expected 'input shape=CxHxW' or 'input shape=N'")
            shape = tuple(int(g) for g in m.groups() if g is not None)
            continue
        kind = tok[0]
        if kind not in LAYER_KEYS:
            raise SpecError(f"{where}: unknown layer '{kind}' (known: input {' '.join(LAYER_KEYS)})")
        if shape is None:
            raise SpecError(f"{where}: the spec must start with 'input shape=...'")
        keys = {k: (t, d) for k, t, d in LAYER_KEYS[kind]}
        cfg, given = {}, set()
        for t in tok[1:]:
            k, eq, v = t.partition("=")
            if not eq or not k or not v:
                raise SpecError(f"{where}: {kind}: expected key=value, got '{t}'")
            if k not in keys:
                raise SpecError(f"{where}: {kind}: unknown key '{k}'")
            if k in given:
                raise SpecError(f"{where}: {kind}: key '{k}' given twice")
            cfg[k] = _parse_value(kind, k, keys[k][0], v, where)
            given.add(k)
        for k, t, d in LAYER_KEYS[kind]:
            if k not in cfg:
                if d is None:
                    raise SpecError(f"{where}: {kind}: missing required key '{k}'")
                cfg[k] = d
        if kind == "batchnorm" and cfg["convention"] == "keras":  # normnet's finalize()
            if "momentum" not in given:
                cfg["momentum"] = 0.99
            if "eps" not in given:
                cfg["eps"] = 1e-3
        if kind in ("maxpool2d", "avgpool2d") and cfg["stride"] == 0:
            cfg["stride"] = cfg["size"]
        layers.append((kind, cfg))
    if shape is None:
        raise SpecError(f"{source}: no 'input shape=...' line")
    if not layers:
        raise SpecError(f"{source}: no layers after 'input'")
    return shape, layers


def _num(d):
    for prec in range(6, 18):  # shortest text that reads back to the same double (as normnet)
        s = "%.*g" % (prec, d)
        if float(s) == d:
            return s
    return repr(d)


def spec_to_text(shape, layers):
    """Canonical text in normnet's form (every key, spec_text.c nn_spec_to_text)."""
    out = ["input shape=" + "x".join(str(s) for s in shape)]
    for kind, cfg in layers:
        parts = [kind]
        for k, t, _ in LAYER_KEYS[kind]:
            v = cfg[k]
            if t == "momentum" and v < 0:
                parts.append(f"{k}=cumulative")
            elif t in ("double", "momentum"):
                parts.append(f"{k}={_num(v)}")
            else:
                parts.append(f"{k}={v}")
        out.append(" ".join(parts))
    return "\n".join(out) + "\n"


# ---- the nn.Sequential ---------------------------------------------------------------------
class GlobalAvgPool(nn.Module):
    """normnet global_avgpool: N,C,H,W -> N,C (AdaptiveAvgPool2d(1) + Flatten as ONE module,
    so it takes one Sequential index like normnet's layer)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def _bn_momentum(cfg):
    m = cfg["momentum"]
    if m < 0:
        return None  # cumulative moving average
    return 1.0 - m if cfg["convention"] == "keras" else m


def build_model(spec_text, source="spec", warn=True):
    """nn.Sequential equivalent to a normnet spec (index i = i-th layer line after input)."""
    shape, layers = parse_spec(spec_text, source) if isinstance(spec_text, str) else spec_text
    mods, keras, frozen = [], [], []
    cur = tuple(shape)
    for i, (kind, c) in enumerate(layers):
        name = f"layer {i} ({kind})"
        if kind == "dense":
            if len(cur) != 1:
                raise SpecError(f"{name}: dense needs a flat input, gets {cur}: add 'flatten'")
            m = nn.Linear(cur[0], c["units"], bias=bool(c["bias"]))
            cur = (c["units"],)
        elif kind == "conv2d":
            if len(cur) != 3:
                raise SpecError(f"{name}: conv2d needs CxHxW input, gets {cur}")
            k, s, p = c["kernel"], c["stride"], c["pad"]
            oh, ow = (cur[1] + 2 * p - k) // s + 1, (cur[2] + 2 * p - k) // s + 1
            if oh < 1 or ow < 1:
                raise SpecError(f"{name}: input {cur} is smaller than the kernel")
            m = nn.Conv2d(cur[0], c["filters"], k, stride=s, padding=p, bias=bool(c["bias"]))
            cur = (c["filters"], oh, ow)
        elif kind == "batchnorm":
            cls = nn.BatchNorm1d if len(cur) == 1 else nn.BatchNorm2d
            m = cls(cur[0], eps=c["eps"], momentum=_bn_momentum(c), affine=bool(c["affine"]),
                    track_running_stats=bool(c["track_running_stats"]))
            if c["convention"] == "keras" and c["track_running_stats"]:
                keras.append(i)
            if c["use_global_stats"]:
                frozen.append(i)
            if c["affine"]:  # freeze_affine: both fixed; scale=0 / center=0: gamma 1 / beta 0 fixed
                m.weight.requires_grad_(not c["freeze_affine"] and bool(c["scale"]))
                m.bias.requires_grad_(not c["freeze_affine"] and bool(c["center"]))
        elif kind in ("relu", "sigmoid", "tanh"):
            m = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[kind]()
        elif kind in ("maxpool2d", "avgpool2d"):
            if len(cur) != 3:
                raise SpecError(f"{name}: pooling needs CxHxW input, gets {cur}")
            sz, st = c["size"], c["stride"]
            oh, ow = (cur[1] - sz) // st + 1, (cur[2] - sz) // st + 1
            if oh < 1 or ow < 1:
                raise SpecError(f"{name}: input {cur} is smaller than the window")
            m = (nn.MaxPool2d if kind == "maxpool2d" else nn.AvgPool2d)(sz, stride=st)
            cur = (cur[0], oh, ow)
        elif kind == "global_avgpool":
            if len(cur) != 3:
                raise SpecError(f"{name}: global_avgpool needs CxHxW input, gets {cur}")
            m = GlobalAvgPool()
            cur = (cur[0],)
        elif kind == "flatten":
            m = nn.Flatten()
            cur = (int(np.prod(cur)),)
        elif kind == "dropout":
            m = nn.Dropout(c["rate"])
        elif kind == "groupnorm":
            if cur[0] % c["groups"]:
                raise SpecError(f"{name}: {cur[0]} channels not divisible by groups={c['groups']}")
            m = nn.GroupNorm(c["groups"], cur[0], eps=c["eps"], affine=bool(c["affine"]))
        elif kind == "layernorm":
            m = nn.LayerNorm(list(cur), eps=c["eps"], elementwise_affine=bool(c["affine"]))
        elif kind == "instancenorm":
            if len(cur) != 3:
                raise SpecError(f"{name}: instancenorm needs CxHxW input, gets {cur}")
            m = nn.InstanceNorm2d(cur[0], eps=c["eps"], momentum=c["momentum"], affine=bool(c["affine"]),
                                  track_running_stats=bool(c["track_running_stats"]))
        else:
            raise SpecError(f"{name}: no PyTorch mapping")
        mods.append(m)
    if warn and keras:
        print(f"torch_interop: warning: batchnorm layer(s) {', '.join(map(str, keras))} use convention=keras: "
              f"momentum becomes 1-m, but PyTorch can't update running_var with the BIASED batch variance "
              f"as Keras does; eval is identical, further training moves the running statistics differently",
              file=sys.stderr)
    if warn and frozen:
        print(f"torch_interop: warning: batchnorm layer(s) {', '.join(map(str, frozen))} have "
              f"use_global_stats=1, which nn.BatchNorm can't express in train mode (keep them in eval())",
              file=sys.stderr)
    model = nn.Sequential(*mods)
    model.input_shape = tuple(shape)
    return model


# ---- safetensors by hand --------------------------------------------------------------------
_NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """-> (OrderedDict name -> torch.Tensor, metadata dict)"""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for safetensors")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8 or n > 100 << 20:
        raise ValueError(f"{path}: header length {n} out of range")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    out = collections.OrderedDict()
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, end = e["data_offsets"]
        if not 0 <= b <= end <= len(data):
            raise ValueError(f"{path}: {name}: data_offsets out of range")
        dt = e["dtype"]
        if dt == "BF16":
            u = np.frombuffer(data[b:end], dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt in _NP:
            arr = np.frombuffer(data[b:end], dtype=np.dtype(_NP[dt]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        shape = tuple(e["shape"])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: {name}: {arr.size} values for shape {list(shape)}")
        out[name] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(shape))
    return out, meta


def write_safetensors(path, tensors, metadata):
    """normnet layout: F32 floats, I64 ints, __metadata__ first, header space-padded to 8."""
    header = {"__metadata__": dict(metadata)}
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.is_floating_point():
            a, dt = t.to(torch.float32).numpy().astype("<f4"), "F32"
        else:
            a, dt = t.to(torch.int64).numpy().astype("<i8"), "I64"
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---- commands -------------------------------------------------------------------------------
def _checkpoint_path(p):
    if os.path.isdir(p):
        q = os.path.join(p, "model.safetensors")
        if not os.path.exists(q):
            raise SystemExit(f"{p}: no model.safetensors in this run directory")
        return q
    return p


def load_normnet(path, warn=True):
    """normnet checkpoint -> (model in eval mode, spec text, metadata)."""
    path = _checkpoint_path(path)
    tensors, meta = read_safetensors(path)
    spec = meta.get("normnet.spec")
    if spec is None:
        raise SystemExit(f"{path}: no 'normnet.spec' metadata (a plain state_dict: use from-torch --spec)")
    model = build_model(spec, source=f"{path}:normnet.spec", warn=warn)
    sd = collections.OrderedDict((k, v) for k, v in tensors.items() if not k.startswith("optim."))
    ref = model.state_dict()
    for k, v in sd.items():  # F64 floats etc. -> the module's dtype
        if k in ref and v.dtype != ref[k].dtype:
            sd[k] = v.to(ref[k].dtype)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model, spec_to_text(*parse_spec(spec)), meta


def cmd_to_torch(a):
    model, spec, meta = load_normnet(a.checkpoint, warn=getattr(a, "warn", True))
    torch.save({"format": "normnet-torch/1", "spec": spec, "state_dict": model.state_dict(),
                "metadata": dict(meta)}, a.out)
    n = sum(p.numel() for p in model.parameters())
    if not getattr(a, "quiet", False):
        print(f"{a.out}: {len(model)} modules, {n} parameters, {len(model.state_dict())} tensors")


def _load_state_dict(path):
    """The state_dict in path, and what the file records of normnet's (to-torch's {spec,
    metadata}; a normnet .safetensors' metadata): (state_dict, spec or None, metadata dict)."""
    if path.endswith(".safetensors"):
        sd, meta = read_safetensors(path)
        return sd, meta.get("normnet.spec"), meta
    obj = torch.load(path, map_location="cpu", weights_only=True)
    spec, meta = None, {}
    if isinstance(obj, dict) and obj.get("format") == "normnet-torch/1":
        spec = obj.get("spec") if isinstance(obj.get("spec"), str) else None
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise SystemExit(f"{path}: expected a state_dict (torch.save(model.state_dict(), path))")
    return collections.OrderedDict(obj), spec, meta


def from_torch(sd, spec_text, out, source="spec", input_norm=None, data=None):
    model = build_model(spec_text, source=source, warn=False)
    ref = model.state_dict()
    sd = collections.OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in sd.items())
    missing = [k for k in ref if k not in sd]
    extra = [k for k in sd if k not in ref]
    bad = [f"{k}: {list(sd[k].shape)} vs spec {list(ref[k].shape)}" for k in ref
           if k in sd and tuple(sd[k].shape) != tuple(ref[k].shape)]
    if missing or extra or bad:
        msg = []
        if missing:
            msg.append("missing " + ", ".join(missing))
        if extra:
            msg.append("unexpected " + ", ".join(extra))
        msg += bad
        raise SystemExit("state_dict does not match the spec's nn.Sequential: " + "; ".join(msg))
    ordered = collections.OrderedDict((k, sd[k]) for k in ref)  # state_dict order, as normnet
    meta = {"format": "normnet/1", "normnet.spec": spec_to_text(*parse_spec(spec_text, source))}
    if input_norm:
        meta["normnet.input_mean"] = "%.9g" % input_norm[0]
        meta["normnet.input_std"] = "%.9g" % input_norm[1]
    if data:
        meta["normnet.data"] = data
    write_safetensors(out, ordered, meta)
    return ordered


def cmd_from_torch(a):
    """--spec and --input-norm when given, else what the file records (a to-torch file holds
    the spec, the input transform and the data source it came with: round trips keep them)."""
    sd, recorded_spec, meta = _load_state_dict(a.input)
    if a.spec:
        with open(a.spec) as f:
            spec, source = f.read(), a.spec
    elif recorded_spec:
        spec, source = recorded_spec, f"{a.input}:spec"
    else:
        raise SystemExit(f"{a.input}: a plain state_dict records no spec: give --spec SPECFILE")
    norm = a.input_norm
    if norm is None and "normnet.input_mean" in meta and "normnet.input_std" in meta:
        norm = (float(meta["normnet.input_mean"]), float(meta["normnet.input_std"]))
    sd = from_torch(sd, spec, a.out, source=source, input_norm=norm, data=meta.get("normnet.data"))
    where = "none recorded" if norm is None else "(u8/255 - %g) / %g" % norm
    print(f"{a.out}: {len(sd)} tensors, spec from {source}, input transform {where}")


def _idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with (gzip.open if p.endswith(".gz") else open)(p, "rb") as f:
                data = f.read()
            break
    else:
        raise SystemExit(f"{path}[.gz]: not found")
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    if (magic >> 8) & 0xFF != 0x08:
        raise SystemExit(f"{path}: unsupported IDX dtype")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _norm_arg(s):
    try:
        m, sd = (float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MEAN,STD, got '{s}'")
    if not sd > 0:
        raise argparse.ArgumentTypeError("STD must be > 0")
    return m, sd


def _transform(imgs, norm, input_shape):
    """normnet's pixel transform in the same float32 steps: (u8 / 255f - mean) / std."""
    table = (np.arange(256, dtype=np.float32) / np.float32(255.0) - np.float32(norm[0])) / np.float32(norm[1])
    return torch.from_numpy(table[imgs].astype(np.float32)).reshape((imgs.shape[0],) + tuple(input_shape))


def evaluate(model, x, labels, batch=256):
    """(mean cross-entropy, accuracy) in eval mode, like normnet eval."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch])
            yb = labels[i:i + batch]
            loss_sum += nn.functional.cross_entropy(out, yb, reduction="sum").double().item()
            correct += int((out.argmax(1) == yb).sum())
    n = x.shape[0]
    return loss_sum / n, correct / n


def cmd_eval(a):
    model, spec, meta = load_normnet(a.checkpoint, warn=False)
    norm = a.input_norm
    if norm is None:
        norm = (float(meta.get("normnet.input_mean", 0.0)), float(meta.get("normnet.input_std", 1.0)))
    imgs = _idx(os.path.join(a.data, f"{a.split}-images-idx3-ubyte"))
    labels = torch.from_numpy(_idx(os.path.join(a.data, f"{a.split}-labels-idx1-ubyte")).astype(np.int64))
    x = _transform(imgs, norm, model.input_shape)
    loss, acc = evaluate(model, x, labels, a.batch)
    n = x.shape[0]
    res = {"checkpoint": _checkpoint_path(a.checkpoint), "data": a.data, "split": a.split, "samples": n,
           "input_norm": list(norm), "loss": loss, "accuracy": acc}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{res['checkpoint']} on {a.data}/{a.split} ({n} samples, PyTorch eval mode, input norm "
              f"{norm[0]:g},{norm[1]:g}): loss {loss:.6f}, accuracy {acc:.6f}")


# ---- self-test ------------------------------------------------------------------------------
# Copies of src/train/presets.c (used when that file is not found next to this script).
PRESETS = {
    "lenet": "input shape=1x28x28\nconv2d filters=6 kernel=5\nbatchnorm\nsigmoid\navgpool2d size=2\n"
             "conv2d filters=16 kernel=5\nbatchnorm\nsigmoid\navgpool2d size=2\nflatten\n"
             "dense units=120\nbatchnorm\nsigmoid\ndense units=84\nbatchnorm\nsigmoid\ndense units=10\n",
    "mlp": "input shape=784\ndense units=128\nbatchnorm convention=keras\nrelu\ndense units=64\n"
           "batchnorm convention=keras\nrelu\ndense units=32\nbatchnorm convention=keras\nrelu\n"
           "dense units=10\n",
    "cnn": "input shape=1x28x28\nconv2d filters=32 kernel=3\nbatchnorm convention=keras\nrelu\n"
           "maxpool2d size=2\nconv2d filters=64 kernel=3\nbatchnorm convention=keras\nrelu\n"
           "maxpool2d size=2\nflatten\ndense units=64\nbatchnorm convention=keras\nrelu\ndense units=10\n",
    "cifar-cnn": "input shape=3x32x32\nconv2d filters=32 kernel=3 bias=0\nbatchnorm convention=keras\n"
                 "relu\nmaxpool2d size=2\nconv2d filters=64 kernel=3 bias=0\nbatchnorm convention=keras\n"
                 "relu\nmaxpool2d size=2\nflatten\ndense units=64 bias=0\nbatchnorm convention=keras\n"
                 "relu\ndense units=10\n",
    "cifar-gap": "input shape=3x32x32\nconv2d filters=32 kernel=3 bias=0\nbatchnorm convention=keras\n"
                 "relu\nglobal_avgpool\ndense units=10\n",
}
# Extra specs covering the other layer kinds and batchnorm options.
EXTRA = {
    "bn-options": "input shape=2x9x9\nconv2d filters=4 kernel=3 stride=2 pad=1\n"
                  "batchnorm momentum=cumulative affine=0\ntanh\nglobal_avgpool\ndropout rate=0.25\n"
                  "dense units=8 bias=0\nbatchnorm track_running_stats=0 eps=0.001\nrelu\n"
                  "batchnorm convention=keras momentum=0.9 freeze_affine=1\ndense units=3\n",
    "other-norms": "input shape=4x6x6\ngroupnorm groups=2\nconv2d filters=4 kernel=3\n"
                   "instancenorm affine=1 track_running_stats=1\nmaxpool2d size=2 stride=1\n"
                   "layernorm\nflatten\nlayernorm eps=1e-3 affine=0\ndense units=5\n",
}


def read_presets(path):
    """name -> spec text, parsed from presets.c's `.name = "..."` / `.spec = "..." "..."`."""
    with open(path) as f:
        src = f.read()
    out = {}
    for m in re.finditer(r'\.name\s*=\s*"([^"]+)"(.*?)\.spec\s*=\s*((?:"(?:[^"\\]|\\.)*"\s*)+),', src, re.S):
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(3))
        out[m.group(1)] = "".join(parts).encode().decode("unicode_escape")
    return out


def _randomize(model, gen):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 2 + 0.1)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)


def _write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.tobytes())


def _normnet_crosscheck(binary, model, ckpt, tmp, gen, n=300):
    """Evaluate the from-torch checkpoint with the normnet binary on random 28x28 IDX data
    and compare with PyTorch: same accuracy, loss within 1e-5 (relative above 1)."""
    import subprocess
    d = os.path.join(tmp, "idx")
    os.makedirs(d, exist_ok=True)
    imgs = torch.randint(0, 256, (n, 28, 28), generator=gen).numpy()
    labels = (np.arange(n) % 10).astype(np.uint8)
    for split in ("t10k", "train"):
        _write_idx(os.path.join(d, f"{split}-images-idx3-ubyte"), imgs)
        _write_idx(os.path.join(d, f"{split}-labels-idx1-ubyte"), labels)
    r = subprocess.run([binary, "eval", "--checkpoint", ckpt, "--data", "idx:" + d, "--input-norm", "0.5,0.5",
                        "--threads", "1", "--json"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"normnet eval failed: {r.stderr.strip()}")
    got = json.loads(r.stdout)
    loss, acc = evaluate(model, _transform(imgs, (0.5, 0.5), model.input_shape),
                         torch.from_numpy(labels.astype(np.int64)))
    if abs(got["accuracy"] - acc) > 1e-9 or abs(got["loss"] - loss) > 1e-5 * max(1.0, abs(loss)):
        raise RuntimeError(f"normnet eval loss {got['loss']} acc {got['accuracy']} vs PyTorch {loss:.6f} {acc}")
    return f"normnet eval agrees: acc {acc:.4f}, loss {got['loss']:.6f} vs {loss:.6f}"


def cmd_check(a):
    here = os.path.dirname(os.path.abspath(__file__))
    ppath = a.presets or os.path.join(here, "..", "src", "train", "presets.c")
    presets = dict(PRESETS)
    if os.path.exists(ppath):
        found = read_presets(ppath)
        if not found:
            raise SystemExit(f"{ppath}: no presets parsed")
        presets = found
        for name, text in PRESETS.items():  # the embedded copies must not drift
            if name in found and spec_to_text(*parse_spec(found[name])) != spec_to_text(*parse_spec(text)):
                print(f"check: note: embedded copy of preset '{name}' differs from {ppath}", file=sys.stderr)
        print(f"check: {len(presets)} presets from {os.path.normpath(ppath)}")
    gen = torch.Generator().manual_seed(1)
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in list(presets.items()) + list(EXTRA.items()):
            try:
                canon = spec_to_text(*parse_spec(spec, name))
                assert spec_to_text(*parse_spec(canon)) == canon, "canonical spec does not reparse to itself"
                m = build_model(spec, name, warn=False)
                _randomize(m, gen)
                m.eval()
                x = torch.randn((5,) + m.input_shape, generator=gen)
                with torch.no_grad():
                    want = m(x)
                # state_dict via torch.save -> from-torch -> normnet safetensors
                pt, st, back = (os.path.join(tmp, f"{name}.{e}") for e in ("pt", "safetensors", "back.pt"))
                torch.save(m.state_dict(), pt)
                from_torch(_load_state_dict(pt)[0], spec, st, source=name)
                # the file in normnet's layout
                with open(st, "rb") as f:
                    (hl,) = struct.unpack("<Q", f.read(8))
                    hdr = json.loads(f.read(hl))
                assert hl % 8 == 0, "header not padded to 8"
                assert hdr["__metadata__"]["normnet.spec"] == canon and hdr["__metadata__"]["format"] == "normnet/1"
                for k, v in m.state_dict().items():
                    e = hdr[k]
                    assert e["shape"] == list(v.shape), k
                    assert e["dtype"] == ("I64" if k.endswith("num_batches_tracked") else "F32"), k
                # back with to-torch and the plain-safetensors path of from-torch
                cmd_to_torch(argparse.Namespace(checkpoint=st, out=back, warn=False, quiet=True))
                d = torch.load(back, weights_only=True)
                m2 = build_model(d["spec"], warn=False)
                m2.load_state_dict(d["state_dict"], strict=True)
                m2.eval()
                st2 = os.path.join(tmp, f"{name}.2.safetensors")
                from_torch(read_safetensors(st)[0], d["spec"], st2)
                m3, _, _ = load_normnet(st2, warn=False)
                with torch.no_grad():
                    for mm in (m2, m3):
                        got = mm(x)
                        assert torch.equal(got, want), f"outputs differ by {(got - want).abs().max():g}"
                extra = ""
                if a.normnet and m.input_shape in ((1, 28, 28), (784,)):
                    extra = ", " + _normnet_crosscheck(a.normnet, m, st, tmp, gen)
                print(f"check: {name}: ok ({len(m)} modules, {len(m.state_dict())} tensors, output "
                      f"{tuple(want.shape)} identical{extra})")
            except Exception as e:  # noqa: BLE001 - report every failing spec
                fails += 1
                print(f"check: {name}: FAILED: {type(e).__name__}: {e}")
    print("check: all ok" if not fails else f"check: {fails} FAILED")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("to-torch", help="normnet checkpoint -> torch.save'd {spec, state_dict}")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p = sub.add_parser("from-torch", help="PyTorch state_dict + spec -> normnet checkpoint")
    p.add_argument("input", help="torch.save'd state_dict (.pt) or a plain .safetensors")
    p.add_argument("--spec", help="normnet spec file the state_dict matches (default: the one a to-torch file "
                   "records; a plain state_dict needs it)")
    p.add_argument("--input-norm", type=_norm_arg, help="store MEAN,STD as normnet.input_mean/std metadata "
                   "(default: what a to-torch file records)")
    p.add_argument("out")
    p = sub.add_parser("eval", help="evaluate a normnet checkpoint in PyTorch on IDX data")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="directory with {split}-images/labels-idx?-ubyte[.gz]")
    p.add_argument("--split", default="t10k", help="IDX file prefix (default t10k = test)")
    p.add_argument("--input-norm", type=_norm_arg, help="MEAN,STD (default: checkpoint metadata, else 0,1)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("check", help="self-test: every preset spec round-trips with identical outputs")
    p.add_argument("--presets", help="path of src/train/presets.c (default: found from this script)")
    p.add_argument("--normnet", metavar="BIN", help="also evaluate the 1x28x28/784 presets' checkpoints with this "
                   "normnet binary on random IDX data and compare with PyTorch")
    a = ap.parse_args()
    torch.set_num_threads(getattr(a, "threads", 1))
    try:
        return {"to-torch": cmd_to_torch, "from-torch": cmd_from_torch, "eval": cmd_eval,
                "check": cmd_check}[a.cmd](a) or 0
    except (SpecError, ValueError, OSError) as e:
        print(f"torch_interop: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
