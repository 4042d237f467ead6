#!/usr/bin/env python3
"""Plots kvs_kernel_bench JSON: GB/s against batch size (blocks) for every layout pair, one
5x5 grid per shape (rows: source layout, columns: destination), with the cudaMemcpy roof of the
same bytes and the naive seed-style kernel drawn in.

  plot_results.py bench/results/kernel_bench_h100_<sha>.json --out docs/img
"""
import argparse
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = ["nhd", "hnd", "operational_nhd", "operational_hnd", "universal"]
SHORT = {"nhd": "NHD", "hnd": "HND", "operational_nhd": "op-NHD", "operational_hnd": "op-HND",
         "universal": "univ"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--suite", default="pairs")
    args = ap.parse_args()
    data = json.load(open(args.json))
    os.makedirs(args.out, exist_ok=True)
    by_shape = defaultdict(lambda: defaultdict(list))
    for c in data["cases"]:
        if c["suite"] != args.suite or "skipped" in c or c["placement"] != "d2d":
            continue
        by_shape[c["shape"]][(c["src"], c["dst"])].append(c)
    for shape, pairs in sorted(by_shape.items()):
        fig, axes = plt.subplots(5, 5, figsize=(16, 13), sharex=True, sharey=True)
        for i, src in enumerate(KINDS):
            for j, dst in enumerate(KINDS):
                ax = axes[i][j]
                cases = sorted(pairs.get((src, dst), []), key=lambda c: c["nb"])
                if not cases:
                    ax.set_visible(False)
                    continue
                nb = [c["nb"] for c in cases]
                ax.plot(nb, [c["memcpy_gbps"] for c in cases], "k--", label="cudaMemcpy (roof)")
                ax.plot(nb, [c["gbps"] for c in cases], "o-", color="tab:blue", label="kvshuttle kernel")
                if all("naive_gbps" in c for c in cases):
                    ax.plot(nb, [c["naive_gbps"] for c in cases], "s:", color="tab:red",
                            label="naive (seed-style)")
                ax.set_xscale("log", base=2)
                ax.grid(alpha=0.3)
                if i == 0:
                    ax.set_title(f"→ {SHORT[dst]}")
                if j == 0:
                    ax.set_ylabel(f"{SHORT[src]} →\nGB/s")
                if i == 4:
                    ax.set_xlabel("blocks per batch")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right")
        fig.suptitle(f"{shape}: GB/s vs batch size, {data['device']} (driver {data['driver']}, "
                     f"commit {data['commit']})")
        fig.tight_layout(rect=(0, 0, 0.92, 0.96))
        path = os.path.join(args.out, f"pairs_{shape}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        print("wrote", path)


if __name__ == "__main__":
    main()
