#!/usr/bin/env python3
"""normnet against its peers, side by side in one run (ARCHITECTURE.md §7, issue 12).

    /opt/peers/bin/python bench/peers.py [--build build] [--rounds 3] [--threads 1,2]
        [--models lenet,mlp,cnn,cifar-cnn,cifar-gap] [--norms batch,none] [--seconds 0.3]
        [--sides normnet,torch,torch-debian,keras]

Sides: normnet (build/bench_train), current PyTorch (the interpreter running this script,
e.g. the /opt/peers venv), Debian's python3-torch 1.13 (/usr/bin/python3, skipped when it
cannot import torch) and Keras 3 on TensorFlow (Keras-recipe presets only). Every side
trains the same presets (bench/peer_train.py builds them), with the same batches, optimizers
and data shapes, at each thread count. Rounds are interleaved (round 1 of every side and
thread count, then round 2, ...; the side order rotates per round), and each figure is the
median over the rounds of one timed run (about --seconds long) per round.

Quiet-machine check: during every run the script reads the CPU time of the whole machine
(/proc/stat) and of the run itself (its children's rusage); the difference is what other
processes used. It prints that load per run and warns when the machine was not quiet.
Host check: a virtual machine's neighbours on the same physical cores do not show in
/proc/stat, so the script also collects the FMA peak bench_train measures after each of its
variants (fma_peak_gflops) and prints its spread per thread count; a spread over 10 % means
the host took cycles during the rounds, and the figures of that thread count are noisier.
It also collects the time of a team barrier (barrier_us, bench/team_barrier.h): the
development machine has two states the FMA peak does not show, a barrier of about 0.27 or
0.45 us, with less memory bandwidth at two threads and two-thread training a quarter slower
in the second; a slowest/fastest ratio above 1.3 means the state changed during the rounds,
and then normnet's figures at that thread count are also printed per state (each run's own
barrier says which), next to the medians and verdicts of all rounds.

Ratios: normnet / peer, each side at its best thread count; scaling: normnet 2 threads /
1 thread. The issue's targets are printed next to them.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PRESETS = ["lenet", "mlp", "cnn", "cifar-cnn", "cifar-gap"]
KERAS_PRESETS = {"mlp", "cnn", "cifar-cnn", "cifar-gap"}
LINE = re.compile(r"^(\S+) (\S+) (bn|nobn) batch=(\d+) threads=(\w+) train_samples_per_s=(\d+)")
PEAK = re.compile(r" fma_peak_gflops=([0-9.]+)")
BARRIER = re.compile(r" barrier_us=([0-9.]+)")
BARRIER_SPREAD = 1.3  # slowest / fastest team barrier above this: the host's state changed
# issue 12 targets: normnet / current PyTorch at each side's best thread count; 2t / 1t scaling
TARGET_RATIO = {"lenet": 3.0, "mlp": 3.0, "cnn": 2.0, "cifar-cnn": 2.0, "cifar-gap": 2.0}
TARGET_SCALING = {"lenet": 1.7, "mlp": 1.3, "cnn": 1.7, "cifar-cnn": 1.7, "cifar-gap": 1.3}
QUIET_CORES = 0.15  # other processes' average use above this many cores: not quiet


def cpu_busy_seconds():
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(v[:8]) - idle) / hz


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, env=None, peaks=None):
    """Runs cmd; returns (parsed result lines: (side, preset, bn|nobn, threads, samples/s,
    team barrier us or None), other processes' average cores, wall seconds, header). The FMA
    peaks the lines report are appended to peaks[threads]."""
    b0, c0, t0 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    b1, c1, t1 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
    if p.returncode != 0:
        sys.exit("peers.py: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    rows, header = [], ""
    for line in p.stdout.splitlines():
        if line.startswith("#"):
            header = line[2:]
        m = LINE.match(line)
        if m:
            th = m.group(5)
            bk = BARRIER.search(line)
            bar = float(bk.group(1)) if bk and float(bk.group(1)) > 0 else None
            rows.append((m.group(1), m.group(2), m.group(3), int(th) if th.isdigit() else th, float(m.group(6)), bar))
            pk = PEAK.search(line)
            if pk and peaks is not None and float(pk.group(1)) > 0:
                peaks.setdefault(rows[-1][3], []).append(float(pk.group(1)))
    others = max(0.0, (b1 - b0) - (c1 - c0)) / max(t1 - t0, 1e-9)
    return rows, others, t1 - t0, header


def side_label(side, rows):
    return rows[0][0] if rows else side


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="normnet build directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default=",".join(PRESETS))
    ap.add_argument("--norms", default="batch,none")
    ap.add_argument("--seconds", type=float, default=0.3, help="timed seconds per variant and run")
    ap.add_argument("--sides", default="normnet,torch,torch-debian,keras")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    models = [m for m in a.models.split(",") if m]
    norms = [n for n in a.norms.split(",") if n]
    sides = [s for s in a.sides.split(",") if s]
    for m in models:
        if m not in PRESETS:
            ap.error("unknown preset %r" % m)
    if a.rounds < 1 or any(t < 1 for t in threads):
        ap.error("--rounds and --threads must be >= 1")

    bench = os.path.join(a.build, "bench_train")
    worker = os.path.join(HERE, "peer_train.py")
    cmds = {}
    if "normnet" in sides:
        if not os.access(bench, os.X_OK):
            sys.exit("peers.py: %s not found: build first (cmake --build %s)" % (bench, a.build))
        cmds["normnet"] = lambda t, ms: [bench, "--model", "all", "--threads", str(t), "--reps", "1",
                                          "--warmup", "5", "--seconds", str(a.seconds)]
    py_args = lambda fw, t, ms: [worker, "--framework", fw, "--threads", str(t), "--models", ",".join(ms),
                                 "--norms", ",".join(norms), "--seconds", str(a.seconds)]
    if "torch" in sides:
        cmds["torch"] = lambda t, ms: [sys.executable] + py_args("torch", t, ms)
    if "torch-debian" in sides:
        deb = "/usr/bin/python3"
        ok = os.access(deb, os.X_OK) and subprocess.run([deb, "-c", "import torch"], capture_output=True).returncode == 0
        if ok:
            cmds["torch-debian"] = lambda t, ms: [deb] + py_args("torch", t, ms)
        else:
            print("# torch-debian: skipped (%s cannot import torch: python3-torch is not installed)" % deb)
    if "keras" in sides:
        if subprocess.run([sys.executable, "-c", "import keras, tensorflow"], capture_output=True).returncode == 0:
            cmds["keras"] = lambda t, ms: [sys.executable] + py_args("keras", t, [m for m in ms if m in KERAS_PRESETS])
        else:
            print("# keras: skipped (%s cannot import keras and tensorflow)" % sys.executable)

    order = [s for s in ("normnet", "torch", "torch-debian", "keras") if s in cmds]
    print("# machine: %d cores, %s" % (os.cpu_count(), cpu_model()))
    print("# %d interleaved rounds x threads %s x sides %s; about %.2f s timed per variant and run"
          % (a.rounds, a.threads, ",".join(order), a.seconds))
    results = {}  # (side, model, bn, threads) -> [samples/s per round]
    labels, headers, loads = {}, {}, []
    peaks = {}  # threads -> [FMA peaks bench_train measured after its variants]
    staged = {}  # (model, bn, threads) -> [(team barrier us, samples/s)] of normnet's runs
    for r in range(a.rounds):
        rot = order[r % len(order):] + order[:r % len(order)]
        for t in threads:
            for side in rot:
                ms = models if side != "keras" else [m for m in models if m in KERAS_PRESETS]
                if not ms:
                    continue
                cmd = cmds[side](t, ms)
                if side == "normnet":
                    rows = []
                    others_sum, wall_sum = 0.0, 0.0
                    for m in ms:
                        for n in norms:
                            c = list(cmd)
                            c[c.index("all")] = m
                            c += ["--norm", n]
                            rr, others, wall, _ = run(c, peaks=peaks)
                            rows += rr
                            others_sum += others * wall
                            wall_sum += wall
                    others, wall = others_sum / wall_sum, wall_sum
                else:
                    rows, others, wall, header = run(cmd, peaks=peaks)
                    headers[side] = header
                labels[side] = side_label(side, rows)
                loads.append(others)
                print("round %d threads %d %-13s %5.1f s, other processes used %.2f cores%s"
                      % (r + 1, t, labels[side], wall, others, "  (NOT QUIET)" if others > QUIET_CORES else ""),
                      flush=True)
                for _, model, bn, th, rate, bar in rows:
                    results.setdefault((side, model, bn, th), []).append(rate)
                    if side == "normnet" and bar is not None:
                        staged.setdefault((model, bn, th), []).append((bar, rate))

    for side, h in headers.items():
        if h:
            print("# %s" % h)
    print()
    med = {k: statistics.median(v) for k, v in results.items()}
    peers = [s for s in order if s != "normnet"]
    head = "%-10s %-4s" % ("preset", "norm")
    for s in order:
        for t in threads:
            head += " %14s" % ("%s t%d" % (labels.get(s, s)[:10], t))
    for s in peers:
        head += " %10s" % ("nn/" + labels.get(s, s).split("-")[0][:6])
    head += " %8s" % "nn 2t/1t"
    print("training samples/s, median of %d rounds" % a.rounds)
    print(head)
    verdicts = []
    for m in models:
        for n in norms:
            bn = "bn" if n == "batch" else "nobn"
            line = "%-10s %-4s" % (m, bn)
            for s in order:
                for t in threads:
                    v = med.get((s, m, bn, t))
                    line += " %14s" % ("%.0f" % v if v else "-")
            nn_best = max([med.get(("normnet", m, bn, t), 0) for t in threads])
            for s in peers:
                pb = max([med.get((s, m, bn, t), 0) for t in threads])
                ratio = nn_best / pb if pb and nn_best else None
                line += " %10s" % ("%.2fx" % ratio if ratio else "-")
                if s == "torch" and ratio:
                    verdicts.append("%s %s: %.2fx current PyTorch (target >= %.0fx): %s"
                                    % (m, bn, ratio, TARGET_RATIO[m], "met" if ratio >= TARGET_RATIO[m] else "NOT met"))
            n1, n2 = med.get(("normnet", m, bn, 1)), med.get(("normnet", m, bn, 2))
            sc = n2 / n1 if n1 and n2 else None
            line += " %8s" % ("%.2f" % sc if sc else "-")
            if sc:
                verdicts.append("%s %s: 1->2 threads %.2fx (target >= %.1fx): %s"
                                % (m, bn, sc, TARGET_SCALING[m], "met" if sc >= TARGET_SCALING[m] else "NOT met"))
            print(line)
    print()
    for v in verdicts:
        print(v)
    print()
    quiet = statistics.median(loads) <= QUIET_CORES
    print("quiet-machine check: other processes used %.2f cores on median, %.2f at most, of %d%s"
          % (statistics.median(loads), max(loads), os.cpu_count(),
             "" if quiet else ": the machine was NOT quiet, figures are lower and noisier than on an idle machine"))
    for t in sorted(peaks, key=str):
        v = peaks[t]
        spread = 1.0 - min(v) / max(v)
        print("host check, threads %s: FMA peak measured after each normnet variant %.0f GFLOP/s on median, "
              "%.0f-%.0f (%d runs)%s" % (t, statistics.median(v), min(v), max(v), len(v),
                                         ": spread %.0f %%, the host took cycles" % (100 * spread) if spread > 0.10 else ""))
    barriers = {}  # threads -> the team barrier times measured after normnet's runs
    for (_, _, t), runs in staged.items():
        barriers.setdefault(t, []).extend(bar for bar, _ in runs)
    for t in sorted(barriers, key=str):
        v = barriers[t]
        moved = max(v) / min(v) > BARRIER_SPREAD
        print("host check, threads %s: a team barrier measured after each normnet variant %.2f us on median, "
              "%.2f-%.2f (%d runs)%s" % (t, statistics.median(v), min(v), max(v), len(v),
                                         ": the host's state changed during the rounds, the two-thread figures "
                                         "mix a fast and a slow one (docs/performance.md, run 17)" if moved else ""))
        if moved:
            print_by_state(staged, med, models, norms, t, min(v) * BARRIER_SPREAD)
    return 0


def print_by_state(staged, med, models, norms, t, cut):
    """normnet's figures at t threads split by the host state each run was measured in (team
    barrier <= cut: fast), each against the median at one thread; the verdicts above stay
    those of all rounds."""
    print("normnet at %d threads by host state (barrier <= %.2f us: fast), median samples/s (runs), "
          "and against one thread:" % (t, cut))
    for m in models:
        for n in norms:
            bn = "bn" if n == "batch" else "nobn"
            one = med.get(("normnet", m, bn, 1))
            parts = []
            for name, fast in (("fast", True), ("slow", False)):
                v = [rate for bar, rate in staged.get((m, bn, t), []) if (bar <= cut) == fast]
                if v:
                    x = statistics.median(v)
                    parts.append("%s %.0f (%d)%s" % (name, x, len(v), ", %.2fx" % (x / one) if one else ""))
                else:
                    parts.append("%s -" % name)
            print("  %-10s %-4s %s" % (m, bn, "; ".join(parts)))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
            else:
                name = "unknown CPU"
        with open("/proc/cpuinfo") as f:
            flags = next((l for l in f if l.startswith("flags")), "")
        simd = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "SSE"
        return "%s, %s" % (name, simd)
    except OSError:
        return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
