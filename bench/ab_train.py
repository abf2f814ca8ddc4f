#!/usr/bin/env python3
"""A/B of two bench_train binaries (e.g. a copy built from main against the working tree).

    python3 bench/ab_train.py OLD NEW MODEL:NORM[,MODEL:NORM...] PAIRS [THREADS]

For each preset, runs the two binaries PAIRS times each, alternating which goes first
(`--threads THREADS --reps 3 --seconds 0.3 --warmup 10`), and prints the medians of
train_samples_per_s and infer_samples_per_s and the median of the per-pair ratios
new/old: on a shared machine the ratio of two runs made back to back is steadier than
either figure."""
import re
import statistics
import subprocess
import sys


def run(binary, model, norm, threads):
    out = subprocess.run([binary, '--model', model, '--norm', norm, '--threads', threads, '--reps', '3',
                          '--seconds', '0.3', '--warmup', '10'], capture_output=True, text=True, check=True).stdout
    train = int(re.search(r'train_samples_per_s=(\d+)', out).group(1))
    infer = int(re.search(r'infer_samples_per_s=(\d+)', out).group(1))
    return train, infer


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
        print(line, flush=True)


if __name__ == '__main__':
    main()
