#!/usr/bin/env python3
"""Summarizes kvs_kernel_bench JSON against the DESIGN §5 targets, as Markdown tables.

  summarize_results.py bench/results/kernel_bench_h100_<sha>.json > /tmp/summary.md
"""
import json
import statistics
import sys
from collections import defaultdict

BIG = 64 << 20  # "batches >= 64 MiB"
ODD = {"odd_hd46", "odd_row584"}


def main() -> None:
    data = json.load(open(sys.argv[1]))
    cases = [c for c in data["cases"] if "skipped" not in c]
    print(f"Device: {data['device']}, driver {data['driver']}, {data['sm_count']} SMs, "
          f"commit {data['commit']}, {data['date']}; {len(cases)} cases measured, "
          f"{len(data['cases']) - len(cases)} skipped.\n")

    print("### Device → device, kernel backend, batches ≥ 64 MiB (ratio to cudaMemcpy)\n")
    print("| suite | shape | range | target | cases | min | median | max | min vs naive | min vs plain copy kernel |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for c in cases:
        if c["placement"] == "d2d" and c["backend"] == "kernel" and c["bytes"] >= BIG:
            groups[(c["suite"], c["shape"], c["range"])].append(c)
    for (suite, shape, rng), cs in sorted(groups.items()):
        r = [c["ratio_memcpy"] for c in cs]
        target = 0.75 if shape in ODD else 0.95
        naive = [c["ratio_naive"] for c in cs if "ratio_naive" in c]
        plain = [c["gbps"] / c["plain_copy_gbps"] for c in cs if "plain_copy_gbps" in c]
        print(f"| {suite} | {shape} | {rng} | {target:.2f} | {len(cs)} | {min(r):.3f} | "
              f"{statistics.median(r):.3f} | {max(r):.3f} | "
              f"{(min(naive) if naive else float('nan')):.1f}x | "
              f"{(min(plain) if plain else float('nan')):.3f} |")

    print("\n### Device ⇄ pinned host, batches ≥ 64 MiB (ratio to pinned cudaMemcpy)\n")
    print("| placement | backend | max_sms | cases | min | median | max |")
    print("|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for c in cases:
        if c["placement"] != "d2d" and c["bytes"] >= BIG:
            groups[(c["placement"], c.get("backend_used", c["backend"]) + ("" if c["backend"] != "auto" else " (auto)"), c["max_sms"])].append(c)
    for (pl, be, sms), cs in sorted(groups.items()):
        r = [c["ratio_memcpy"] for c in cs]
        print(f"| {pl} | {be} | {sms or '-'} | {len(cs)} | {min(r):.3f} | "
              f"{statistics.median(r):.3f} | {max(r):.3f} |")

    print("\n### One-block jobs (nb = 1), kernel backend: time vs cudaMemcpy of the same bytes + 5 µs\n")
    print("| placement | shape | cases | worst excess over memcpy (µs) | median excess (µs) | within +5 µs |")
    print("|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for c in cases:
        if c["nb"] == 1 and c["backend"] == "kernel" and c["max_sms"] == 0 and c["range"] == "full":
            groups[(c["placement"], c["shape"])].append(c["time_us"] - c["memcpy_time_us"])
    for (pl, shape), ex in sorted(groups.items()):
        ok = sum(1 for e in ex if e <= 5.0)
        print(f"| {pl} | {shape} | {len(ex)} | {max(ex):.1f} | {statistics.median(ex):.1f} | {ok}/{len(ex)} |")

    print("\n### Backends on device → device (median GB/s by batch size)\n")
    print("| shape | backend | nb=1 | nb=8 | nb=64 | nb=256 |")
    print("|---|---|---|---|---|---|")
    groups = defaultdict(lambda: defaultdict(list))
    for c in cases:
        if c["placement"] == "d2d" and c["range"] == "full" and c["shape"] in ("llama70b_nt16", "mla_bf16"):
            name = c["backend"] + (f" → {c['backend_used']}" if c["backend"] == "auto" else "")
            groups[(c["shape"], c["backend"])][c["nb"]].append(c["gbps"])
    for (shape, be), by_nb in sorted(groups.items()):
        cells = [f"{statistics.median(by_nb[n]):.0f}" if by_nb.get(n) else "-" for n in (1, 8, 64, 256)]
        print(f"| {shape} | {be} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
