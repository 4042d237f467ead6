#!/usr/bin/env bash
# `make run`: starts kvshuttled with its default configuration on a socket under the repo,
# shows it working (info, the all-pairs demo through the daemon, stats, reflection), then
# stops it with SIGTERM so the drain is visible too.
set -euo pipefail
build=${1:-build}
run_dir=$PWD/.run
sock=$run_dir/kvshuttle.sock
mkdir -p "$run_dir"
daemon=$build/server/kvshuttled
cli="$build/client/kvshuttle --target unix:$sock"

# Metrics on a free loopback port (the default, 0.0.0.0:9461, may be taken on a dev machine).
echo "== starting $daemon --listen unix:$sock --metrics_address 127.0.0.1:0 (log: $run_dir/kvshuttled.log)"
"$daemon" --listen "unix:$sock" --metrics_address 127.0.0.1:0 >"$run_dir/kvshuttled.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if $cli health >/dev/null 2>&1; then break; fi
  if ! kill -0 $pid 2>/dev/null; then cat "$run_dir/kvshuttled.log"; exit 1; fi
  sleep 0.1
done
echo "== kvshuttle health";  $cli health
echo "== kvshuttle info";    $cli info
echo "== kvshuttle demo";    $cli demo
echo "== kvshuttle stats";   $cli stats
port=$(sed -n 's|.*metrics=http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$run_dir/kvshuttled.log" | head -1)
if [ -n "$port" ]; then
  echo "== GET http://127.0.0.1:$port/metrics (kvshuttle_jobs_total, kvshuttle_bytes_moved_total)"
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n' >&3
  grep -E '^kvshuttle_(jobs_total|bytes_moved_total)' <&3 || true
  exec 3>&-
fi
if [ -x .venv/bin/grpcurl ]; then
  echo "== server reflection (.venv/bin/grpcurl)"
  .venv/bin/grpcurl -plaintext -unix "$sock" list
fi
echo "== SIGTERM: drain and stop"
kill -TERM $pid
wait $pid
trap - EXIT
cat "$run_dir/kvshuttled.log"
echo "== done. To keep a daemon running: $daemon --listen unix:$sock"
