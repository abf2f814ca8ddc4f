#!/usr/bin/env python3
"""Variants side by side against one after another, in one run: `normnet compare` (or
`normnet study small-batch`) with its default lanes against the same command with `--jobs 1`.

    python3 bench/ab_jobs.py NORMNET PAIRS compare|study [ARGS...]

    python3 bench/ab_jobs.py build/normnet 3 compare --model lenet --norm batch,none --epochs 10
    python3 bench/ab_jobs.py build/normnet 2 study --budget 3000

Runs the two PAIRS times each, alternating which goes first, each into a fresh temporary
--out directory (--quiet, and --no-report for compare: the report is the same either way),
and prints every pair's wall-clock seconds, the median of each side and the median of the
per-pair ratios (one after another / side by side). The results are bitwise the same either
way (tests/test_cli.c); only the time is measured. On a shared machine the ratio of two runs
made back to back is steadier than either figure."""
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(normnet, cmd, args, jobs):
    out = tempfile.mkdtemp(prefix='ab_jobs-')
    argv = [normnet, cmd] + (['small-batch'] if cmd == 'study' else []) + args + ['--out', out]
    if cmd == 'compare':
        argv += ['--quiet', '--no-report']
    if jobs:
        argv += ['--jobs', str(jobs)]
    t0 = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    seconds = time.monotonic() - t0
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def main():
    if len(sys.argv) < 4 or sys.argv[3] not in ('compare', 'study'):
        sys.exit(__doc__)
    normnet, pairs, cmd, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    lanes, serial = [], []
    for p in range(pairs):
        order = [0, 1] if p % 2 == 0 else [1, 0]
        t = {}
        for jobs in order:
            t[jobs] = run(normnet, cmd, args, jobs)
        lanes.append(t[0])
        serial.append(t[1])
        print(f'pair {p + 1}: side by side {t[0]:.1f} s, --jobs 1 {t[1]:.1f} s, ratio {t[1] / t[0]:.2f}x',
              flush=True)
    ratios = [b / a for a, b in zip(lanes, serial)]
    print(f'{cmd} {" ".join(args)}: side by side median {statistics.median(lanes):.1f} s, --jobs 1 median '
          f'{statistics.median(serial):.1f} s, ratio median {statistics.median(ratios):.2f}x '
          f'(range {min(ratios):.2f}-{max(ratios):.2f}x, {pairs} pairs)')


if __name__ == '__main__':
    main()
