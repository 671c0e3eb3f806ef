#!/usr/bin/env python3
"""Prints each benchmark beside its in-run baseline, from `swift package benchmark --format markdown`.

A benchmark named "X baseline Y" is the baseline of the benchmark named "X". The figure is the median
wall-clock time per operation (p50) and, for comparison on a noisy machine, the fastest sample (p0);
the ratio is ours / baseline, so below 1 is faster than the baseline. Mallocs are per sample.
"""
import re
import sys

BARS = {  # name: (largest acceptable ratio, what the issue asks)
    "compare w8": 2.0, "compare w64": 1.25, "compare w512": 1.25,
    "merge w64": 1.5, "merge w512": 1.5,
    "delivery in order w16": 1 / 0.5, "delivery reordered64 w16": 1 / 0.3,
    "transport 64B w16": 1 / 0.7,  # two processes; at least 0.7x the raw pump's message rate
}


def parse(path):
    results, name = {}, None
    for line in open(path, encoding="utf-8"):
        heading = re.match(r"^### (.+?)\s*$", line)
        if heading:
            name = heading.group(1)
            results[name] = {}
            continue
        row = re.match(r"^\|\s*([^|]+?)\s*\*?\s*\|(.*)\|\s*$", line)
        if name and row and not row.group(1).startswith(("Metric", "-")):
            cells = [c.strip() for c in row.group(2).split("|")]
            try:
                results[name][row.group(1).rstrip(" *")] = [float(c) for c in cells]
            except ValueError:
                pass
    return results


def metric(values, prefix):
    for key, cells in values.items():
        if key.startswith(prefix):
            scale = 1.0
            for unit, factor in (("(us)", 1e3), ("(μs)", 1e3), ("(ms)", 1e6), ("(s)", 1e9)):
                if unit in key:
                    scale = factor
            return [c * scale for c in cells]
    return None


def main(path):
    results = parse(path)
    rows = []
    for name, values in sorted(results.items()):
        if " baseline " in name:
            continue
        base_name = next((b for b in results if b.startswith(name + " baseline ")), None)
        ours, base = metric(values, "Time (wall clock)"), base_name and metric(results[base_name], "Time (wall clock)")
        if not ours or not base:
            continue
        mallocs = metric(values, "Malloc (total)")
        ratio50, ratio0 = ours[2] / base[2], ours[0] / base[0]
        bar = BARS.get(name)
        verdict = "" if bar is None else ("meets" if ratio50 <= bar else "MISSES") + f" <= {bar:.2f}x"
        rows.append((name, base_name[len(name) + 10:], ours[2], base[2], ratio50, ours[0], base[0], ratio0,
                     int(mallocs[-2]) if mallocs else -1, verdict))
    print("| benchmark | baseline | p50 ns | baseline p50 ns | ratio p50 | p0 ns | baseline p0 ns | ratio p0 "
          "| mallocs p100 | bar (p50) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.2f}x | {r[5]:.0f} | {r[6]:.0f} | {r[7]:.2f}x "
              f"| {r[8]} | {r[9]} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/benchmarks.md")
