#!/usr/bin/env bash
# Runs every GPU test binary in BIN_DIR and writes OUT_DIR/gpu_tier.json: device, driver, commit,
# date and counts of tests run/passed/failed/skipped (from GoogleTest's JSON reports).
# Usage: tests/gpu/run_gpu_tier.sh BIN_DIR OUT_DIR [COMMIT]
set -uo pipefail
bin_dir=$1
out_dir=$2
commit=${3:-unknown}
mkdir -p "$out_dir"
status=0
for t in "$bin_dir"/gpu_*_test; do
  name=$(basename "$t")
  echo "== $name"
  "$t" --gtest_brief=1 --gtest_output="json:$out_dir/$name.json" >"$out_dir/$name.log" 2>&1
  rc=$?
  tail -n 3 "$out_dir/$name.log"
  [ $rc -eq 0 ] || status=1
done
python3 - "$out_dir" "$commit" <<'PY'
import glob, json, os, subprocess, sys, datetime
out_dir, commit = sys.argv[1], sys.argv[2]
q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                   capture_output=True, text=True).stdout.strip().splitlines()
name, driver = (q[0].split(", ") + ["?", "?"])[:2] if q else ("?", "?")
binaries = {}
tot = dict(tests=0, passed=0, failed=0, skipped=0, disabled=0)
for path in sorted(glob.glob(os.path.join(out_dir, "gpu_*_test.json"))):
    rep = json.load(open(path))
    c = dict(tests=0, passed=0, failed=0, skipped=0, disabled=0)
    for suite in rep.get("testsuites", []):
        for case in suite.get("testsuite", []):
            if case.get("result") == "SUPPRESSED":
                # DISABLED_ entry points that tests re-execute in a child process; not tests.
                c["disabled"] += 1
                continue
            c["tests"] += 1
            if case.get("failures"):
                c["failed"] += 1
            elif case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                c["skipped"] += 1
            else:
                c["passed"] += 1
    binaries[os.path.basename(path)[:-5]] = c
    for k in tot: tot[k] += c[k]
record = dict(kind="gpu_test_tier", device=name, driver=driver, commit=commit,
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              totals=tot, binaries=binaries)
json.dump(record, open(os.path.join(out_dir, "gpu_tier.json"), "w"), indent=2)
print(json.dumps(record, indent=2))
PY
exit $status
