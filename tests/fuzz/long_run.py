#!/usr/bin/python3
"""Long fuzzing run: each target for --runs executions (or --max-seconds), one after another,
then a JSON record of what ran: tests/fuzz/results/fuzz_long_<date>.json.

  tests/fuzz/long_run.py --build build-fuzz [--runs 10000000] [--max-seconds 0]
                         [--targets block_set,plan,...] [--out FILE]

Per target the record holds the executions libFuzzer reports (stat::number_of_executed_units),
the wall time, exec/s, the final corpus (libFuzzer's in-memory corp: entries/bytes), crashes
(0 unless libFuzzer exited non-zero; then the artifact files), and the coverage counters of the
final status line (cov = covered edges, ft = features). Each target starts from the committed
seeds plus what earlier long runs left in BUILD/tests/fuzz/long/<target>/corpus.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGETS = ["block_set", "plan", "region", "pool", "config"]


def run_target(build, target, runs, max_seconds):
    binary = os.path.join(build, "tests/fuzz", f"kvs_fuzz_{target}")
    work = os.path.join(build, "tests/fuzz/long", target)
    corpus = os.path.join(work, "corpus")
    artifacts = os.path.join(work, "artifacts")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    log_path = os.path.join(work, "fuzz.log")
    cmd = [binary, f"-runs={runs}", "-print_final_stats=1", "-timeout=30", "-rss_limit_mb=2560",
           f"-artifact_prefix={artifacts}/"]
    if max_seconds > 0:
        cmd.append(f"-max_total_time={max_seconds}")
    cmd += [corpus, os.path.join(HERE, "corpus", target)]
    print(f"[{target}] {' '.join(cmd)}", flush=True)
    before = set(os.listdir(artifacts))
    start = time.monotonic()
    with open(log_path, "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    with open(log_path) as f:
        text = f.read()

    def stat(name):
        m = re.search(rf"^stat::{name}:\s+(\d+)", text, re.M)
        return int(m.group(1)) if m else None

    status = [line for line in text.splitlines() if re.match(r"^#\d+\s", line)]
    last = status[-1] if status else ""
    cov = re.search(r"cov: (\d+)", last)
    ft = re.search(r"ft: (\d+)", last)
    corp = re.search(r"corp: (\d+)/(\d+)(b|Kb|Mb)", last)
    corp_bytes = None
    if corp:
        corp_bytes = int(corp.group(2)) * {"b": 1, "Kb": 1024, "Mb": 1 << 20}[corp.group(3)]
    new_artifacts = sorted(set(os.listdir(artifacts)) - before)
    executions = stat("number_of_executed_units")
    result = {
        "target": target,
        "executions": executions,
        "seconds": round(seconds, 1),
        "exec_per_sec": round(executions / seconds) if executions and seconds > 0 else None,
        "corpus_entries": int(corp.group(1)) if corp else None,
        "corpus_bytes": corp_bytes,
        "corpus_files_on_disk": len(os.listdir(corpus)),
        "new_units_added": stat("new_units_added"),
        "crashes": 0 if rc == 0 else 1,
        "exit_code": rc,
        "artifacts": new_artifacts,
        "cov": int(cov.group(1)) if cov else None,
        "ft": int(ft.group(1)) if ft else None,
        "peak_rss_mb": stat("peak_rss_mb"),
        "final_status_line": last,
        "log": os.path.relpath(log_path, ROOT),
    }
    print(f"[{target}] {json.dumps(result)}", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build-fuzz"))
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--max-seconds", type=int, default=0)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    build = os.path.abspath(args.build)

    def output(cmd):
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()

    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": output(["git", "rev-parse", "--short", "HEAD"]),
        "worktree_dirty": bool(output(["git", "status", "--porcelain", "--untracked-files=no"])),
        "clang": output(["clang++", "--version"]).splitlines()[0],
        "sanitizers": "address,undefined (-fno-sanitize-recover=undefined), libFuzzer",
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "runs_requested": args.runs,
        "max_seconds": args.max_seconds,
        "targets": [],
    }
    for target in args.targets.split(","):
        record["targets"].append(run_target(build, target, args.runs, args.max_seconds))
    record["total_crashes"] = sum(t["crashes"] for t in record["targets"])
    out = args.out or os.path.join(
        HERE, "results", f"fuzz_long_{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"wrote {out}")
    return 0 if record["total_crashes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
