#!/usr/bin/env bash
# Runs one fuzz target from its seed corpus without touching the source tree:
#   run_fuzz.sh TARGET SEED_DIR WORK_DIR [libFuzzer flags...]
# New inputs go to WORK_DIR/corpus, a crashing input to WORK_DIR/artifacts/ (its path is in the
# log: reproduce with `TARGET FILE`). Exit status: libFuzzer's (0 = no crash, leak or timeout).
set -euo pipefail
target=$1 seeds=$2 work=$3
shift 3
mkdir -p "$work/corpus" "$work/artifacts"
exec "$target" -artifact_prefix="$work/artifacts/" -print_final_stats=1 -timeout=30 \
  -rss_limit_mb=2560 "$@" "$work/corpus" "$seeds"
