#!/usr/bin/env bash
# Runs CTest in a sanitizer build and fails on any sanitizer report, including the reports of
# processes the tests start (kvshuttled, the CLI, helpers), whose stderr goes to log files the
# tests may never show:
#   run_ctest.sh asan|tsan BUILD_DIR [ctest arguments...]
# Every report is written under BUILD_DIR/sanitizer-logs/ (log_path) and printed at the end.
# Suppressions (lsan.supp, tsan.supp here) cover only Debian's uninstrumented libraries.
set -euo pipefail
kind=$1
build=$(cd "$2" && pwd)
shift 2
here=$(cd "$(dirname "$0")" && pwd)
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
# Writable by every uid (sticky, like /tmp): chaos_test's hostile client runs as nobody, and its
# reports must land here too.
chmod 1777 "$logs"

case $kind in
  asan)
    export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:strict_string_checks=1"
    export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1"
    ;;
  tsan)
    export TSAN_OPTIONS="log_path=$logs/tsan:suppressions=$here/tsan.supp:print_suppressions=0:ignore_noninstrumented_modules=1:second_deadlock_stack=1:history_size=4"
    ;;
  *)
    echo "usage: $0 asan|tsan BUILD_DIR [ctest arguments...]" >&2
    exit 2
    ;;
esac

status=0
ctest --test-dir "$build" --output-on-failure "$@" || status=$?

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
  echo "---- $kind: $(echo "$reports" | wc -l) sanitizer report file(s) ----"
  for f in $reports; do
    echo "==== $f"
    cat "$f"
  done
  status=1
else
  echo "---- $kind: no sanitizer reports ----"
fi
exit $status
