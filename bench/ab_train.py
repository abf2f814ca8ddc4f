#!/usr/bin/env python3
"""A/B of two bench_train binaries (e.g. a copy built from main against the working tree).

    python3 bench/ab_train.py OLD NEW MODEL:NORM[,MODEL:NORM...] PAIRS [THREADS]

For each preset, runs the two binaries PAIRS times each, alternating which goes first
(`--threads THREADS --reps 3 --steps STEPS --warmup 10`, STEPS from the environment, default
30: the same work for both), and prints the medians of train_samples_per_s and
infer_samples_per_s, the median of the per-pair ratios new/old, and the median ratio of the
process CPU time old/new (the whole run: training and inference steps; at one thread the
figure other processes disturb least). On a shared machine the ratio of two runs made back
to back is steadier than either figure."""
import os
import resource
import re
import statistics
import subprocess
import sys


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(binary, model, norm, threads):
    c0 = cpu_children()
    out = subprocess.run([binary, '--model', model, '--norm', norm, '--threads', threads, '--reps', '3', '--steps',
                          os.environ.get('STEPS', '30'), '--warmup', '10'], capture_output=True, text=True,
                         check=True).stdout
    cpu = cpu_children() - c0
    train = int(re.search(r'train_samples_per_s=(\d+)', out).group(1))
    infer = int(re.search(r'infer_samples_per_s=(\d+)', out).group(1))
    return train, infer, cpu


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    old, new, cases, pairs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    threads = sys.argv[5] if len(sys.argv) == 6 else '1'
    for case in cases.split(','):
        model, norm = case.split(':')
        res = {old: [], new: []}
        for p in range(pairs):
            for b in ((old, new) if p % 2 == 0 else (new, old)):
                res[b].append(run(b, model, norm, threads))
        line = f'{model} {norm} threads={threads}:'
        for k, name in ((0, 'train'), (1, 'infer')):
            o = [r[k] for r in res[old]]
            n = [r[k] for r in res[new]]
            ratio = statistics.median(b / a for a, b in zip(o, n))
            line += f' {name} old {statistics.median(o):.0f} new {statistics.median(n):.0f} ratio {ratio:.3f};'
        cpu = statistics.median(a[2] / b[2] for a, b in zip(res[old], res[new]))
        line += f' cpu time old/new {cpu:.3f}'
        print(line, flush=True)


if __name__ == '__main__':
    main()
