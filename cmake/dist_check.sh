#!/usr/bin/env bash
# `make dist-check`: unpacks a release tarball and checks what an operator gets — checksums,
# the expected files, static binaries, and that the packaged kvshuttled starts (CPU executor,
# no GPU needed), serves a client and /metrics, accepts the shipped config files, and drains
# on SIGTERM.
#
#   cmake/dist_check.sh dist/kvshuttle-<version>-linux-x86_64.tar.gz
set -euo pipefail

tarball=${1:?usage: dist_check.sh TARBALL}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/kvs-dist-check.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "dist-check: FAIL: $*" >&2
  exit 1
}

tar -C "$work" -xzf "$tarball"
name=$(basename "$tarball" .tar.gz)
root=$work/$name
[ -d "$root" ] || fail "the tarball does not hold $name/"
(cd "$root" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match"
for f in bin/kvshuttled bin/kvshuttle README.md MANIFEST SHA256SUMS docs/operations-reference.md; do
  [ -f "$root/$f" ] || fail "missing $f"
done
[ -e "$root/deploy/dev" ] && fail "deploy/dev is for make run, not for the tarball"
bash "$repo/cmake/check_static.sh" "$root/bin/kvshuttled" "$root/bin/kvshuttle"

version_line=$("$root/bin/kvshuttled" --version)
echo "dist-check: $version_line"
grep -q "^version: $(sed -n 's/^kvshuttled \([^ ]*\) .*/\1/p' <<<"$version_line")$" "$root/MANIFEST" ||
  fail "MANIFEST and --version disagree"

# Every config file shipped under deploy/ is accepted by the daemon in the tarball.
while IFS= read -r conf; do
  "$root/bin/kvshuttled" --config="$conf" --print_config >/dev/null ||
    fail "kvshuttled rejects $conf"
  echo "dist-check: ok   ${conf#"$root"/} accepted"
done < <(find "$root/deploy" -name '*.conf' -path '*systemd*')

sock=$work/kvshuttle.sock
"$root/bin/kvshuttled" --listen "unix:$sock" --gpus=false --config= \
  --metrics_address=127.0.0.1:0 >"$work/daemon.log" 2>&1 &
pid=$!
cli=("$root/bin/kvshuttle" --target "unix:$sock")
for _ in $(seq 100); do
  "${cli[@]}" health >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log"; fail "kvshuttled exited at startup"; }
  sleep 0.1
done
"${cli[@]}" demo || { cat "$work/daemon.log"; fail "kvshuttle demo against the packaged daemon"; }
port=$(sed -n 's|.*metrics=http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$work/daemon.log" | head -1)
[ -n "$port" ] || fail "no metrics address in the daemon's log"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n' >&3
metrics=$(cat <&3)
exec 3>&-
grep -q '^kvshuttle_jobs_total{executor="cpu",status="done"} [1-9]' <<<"$metrics" ||
  fail "/metrics does not count the demo's jobs"
kill -TERM "$pid"
wait "$pid" || fail "kvshuttled did not exit 0 on SIGTERM"
pid=""
grep -q "stopped" "$work/daemon.log" || fail "no 'stopped' line in the daemon's log"
echo "dist-check: ok   $tarball"
