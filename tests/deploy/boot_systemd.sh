#!/usr/bin/env bash
# Runs deploy/systemd/kvshuttled.service for real: boots systemd as PID 1 of new PID, mount
# and network namespaces (no container runtime needed), with the unit unmodified but for a
# drop-in that sends its output to a file (there is no journald), the shipped
# kvshuttled.conf, and the built daemon and CLI at /usr/local/bin (a tmpfs in the namespace).
# /etc is an overlay and /run a tmpfs inside the namespace, so nothing on the host changes.
#
# Checks, with the CPU executor (no GPU here):
#   - Type=notify: the unit turns active only after the daemon's READY=1; its STATUS shows;
#   - /run/kvshuttle is root:kvshuttle 0750 and the socket root:kvshuttle 0660;
#   - a root client, and a uid-65534 client in group kvshuttle whose shm is 0600, run
#     `kvshuttle demo --memory host` (CAP_DAC_OVERRIDE at work); without the group, no access;
#   - the sandbox is applied: capabilities = DAC_OVERRIDE + IPC_LOCK, no_new_privs, seccomp,
#     read-only /, and /dev/shm is the host's (an object created outside is visible inside);
#   - the watchdog: a SIGSTOPped daemon is restarted by systemd within WatchdogSec + margin;
#   - Restart=on-failure after SIGKILL, with the stale socket replaced;
#   - `systemctl stop` drains (log: draining, stopped), exits 0, removes /run/kvshuttle.
# What it cannot show without a GPU: CUDA under the sandbox and the device allow-list. On a
# GPU host, KVS_BOOT_EXPECT_GPU=1 also requires the daemon to find its GPUs and runs
# `kvshuttle demo --memory device` (CUDA IPC) through the sandboxed daemon.
#
# Usage: [KVS_BOOT_EXPECT_GPU=1] boot_systemd.sh KVSHUTTLED KVSHUTTLE. Exit 77 (skipped) when not root, without
# unshare/nsenter/setpriv/systemd, or when systemd cannot boot in this environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
daemon=${1:-}
cli=${2:-}

skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (namespaces, mounts)"
for tool in unshare nsenter setpriv; do
  command -v $tool >/dev/null || skip "$tool not found (util-linux)"
done
systemd_bin=/lib/systemd/systemd
[ -x $systemd_bin ] || skip "$systemd_bin not found (Debian package systemd)"
[ -x "$daemon" ] && [ -x "$cli" ] || skip "needs the built kvshuttled and kvshuttle"

tmp=$(mktemp -d /tmp/kvs-sdboot.XXXXXX)
ns_init=
cgroups_before=$(ls -d /sys/fs/cgroup/*/system.slice /sys/fs/cgroup/*/init.scope 2>/dev/null || true)
cleanup() {
  if [ -n "$ns_init" ]; then kill -9 "$ns_init" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  # Remove the (empty) cgroups the namespace's systemd created, if they were not there before.
  for dir in /sys/fs/cgroup/*/system.slice /sys/fs/cgroup/*/init.scope; do
    if [ -d "$dir" ] && ! grep -qxF "$dir" <<<"$cgroups_before"; then
      find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Units: the real one, a logging drop-in, and empty stand-ins for the targets it orders after.
units=$tmp/units
mkdir -p "$units/kvshuttled.service.d" "$tmp/etc-up" "$tmp/etc-work"
for target in sysinit basic network multi-user shutdown local-fs sockets timers paths slices; do
  printf '[Unit]\nDescription=%s (empty stand-in)\n' $target >"$units/$target.target"
done
printf '[Unit]\nDescription=System Slice\nDefaultDependencies=no\n' >"$units/system.slice"
printf '[Unit]\nDescription=kvshuttled test\nWants=kvshuttled.service\n' >"$units/kvs-test.target"
cp "$repo/deploy/systemd/kvshuttled.service" "$units/"
cat >"$units/kvshuttled.service.d/test.conf" <<EOF
[Service]
StandardOutput=append:$tmp/daemon.log
StandardError=append:$tmp/daemon.log
EOF
cat >"$tmp/boot.sh" <<EOF
#!/bin/bash
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t overlay overlay -o lowerdir=/etc,upperdir=$tmp/etc-up,workdir=$tmp/etc-work /etc
grep -q '^kvshuttle:' /etc/group || echo 'kvshuttle:x:4242:' >>/etc/group
mkdir -p /etc/kvshuttle && cp "$repo/deploy/systemd/kvshuttled.conf" /etc/kvshuttle/
mount -t tmpfs tmpfs /usr/local/bin && cp "$daemon" "$cli" /usr/local/bin/
mount -t tmpfs tmpfs /var/cache
export container=kvs-test SYSTEMD_UNIT_PATH=$units
exec $systemd_bin --system --log-target=console --log-level=warning --unit=kvs-test.target
EOF
chmod +x "$tmp/boot.sh"

unshare --pid --fork --mount --mount-proc --net "$tmp/boot.sh" >"$tmp/systemd.log" 2>&1 &
unshare_pid=$!
for _ in $(seq 100); do
  ns_init=$(pgrep -P $unshare_pid || true)
  [ -n "$ns_init" ] && break
  sleep 0.1
done
[ -n "$ns_init" ] || skip "could not start a PID namespace: $(cat "$tmp/systemd.log")"
in_ns() { nsenter -t "$ns_init" -m -p -n -- "$@"; }
booted=0
for _ in $(seq 100); do
  case "$(in_ns systemctl is-system-running 2>/dev/null || true)" in
    initializing | starting | running | degraded | maintenance) booted=1; break ;;
  esac
  sleep 0.2
done
[ $booted -eq 1 ] || skip "systemd does not boot in a namespace here: $(tail -5 "$tmp/systemd.log")"

fail=0
problem() { echo "FAIL: $*"; fail=1; }
show() { in_ns systemctl show -p "$1" --value kvshuttled; }
wait_for() {  # seconds, command...
  local limit=$1; shift
  for _ in $(seq $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
is_active() { [ "$(show ActiveState)" = active ] && [ "$(show SubState)" = running ]; }
healthy() { in_ns kvshuttle --timeout 2 health; }

if ! wait_for 30 is_active; then
  problem "kvshuttled did not become active: $(show ActiveState)/$(show SubState) $(show Result)"
  cat "$tmp/daemon.log" "$tmp/systemd.log"
  exit 1
fi
echo "active: $(show StatusText)"
[[ "$(show StatusText)" == "serving on unix:/run/kvshuttle/kvshuttle.sock"* ]] ||
  problem "STATUS= is '$(show StatusText)'"
dir_mode=$(in_ns stat -c '%a %U:%G' /run/kvshuttle)
sock_mode=$(in_ns stat -c '%a %U:%G' /run/kvshuttle/kvshuttle.sock)
[ "$dir_mode" = "750 root:kvshuttle" ] || problem "/run/kvshuttle is $dir_mode"
[ "$sock_mode" = "660 root:kvshuttle" ] || problem "the socket is $sock_mode"

in_ns kvshuttle demo --memory host | tail -1 || problem "root client: demo failed"
if [ "${KVS_BOOT_EXPECT_GPU:-0}" = 1 ]; then
  [[ "$(show StatusText)" != *", 0 GPUs"* ]] || problem "the sandboxed daemon found no GPU"
  in_ns kvshuttle demo --memory device | tail -1 || problem "CUDA IPC demo through the sandbox failed"
fi
gid=$(in_ns getent group kvshuttle | cut -d: -f3)
in_ns setpriv --reuid 65534 --regid 65534 --groups "$gid" kvshuttle demo --memory host | tail -1 ||
  problem "uid 65534 in group kvshuttle: demo (its shm is 0600) failed"
if in_ns setpriv --reuid 65534 --regid 65534 --clear-groups kvshuttle --timeout 2 health \
    >/dev/null 2>&1; then
  problem "a client outside group kvshuttle could connect"
fi

pid=$(show MainPID)
status=$(in_ns cat /proc/"$pid"/status)
grep -q '^CapEff:[[:space:]]*0000000000004002$' <<<"$status" ||
  problem "capabilities: $(grep CapEff <<<"$status") (expected DAC_OVERRIDE + IPC_LOCK)"
grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status" || problem "no_new_privs is not set"
grep -q '^Seccomp:[[:space:]]*2$' <<<"$status" || problem "no seccomp filter"
in_ns awk '$5 == "/" {print $6}' /proc/"$pid"/mountinfo | grep -q '^ro' ||
  problem "/ is not read-only for the daemon"
probe=kvs-sdboot-$$
touch /dev/shm/$probe
in_ns test -e /proc/"$pid"/root/dev/shm/$probe || problem "the daemon's /dev/shm is not the host's"
rm -f /dev/shm/$probe

echo "watchdog: SIGSTOP the daemon, expect a restart within $(show WatchdogUSec) + 15 s"
restarts=$(show NRestarts)
in_ns kill -STOP "$pid"
restarted() { [ "$(show NRestarts)" -gt "$restarts" ] && is_active; }
wait_for 45 restarted || problem "the watchdog did not restart a stopped daemon"
wait_for 10 healthy || problem "not serving after the watchdog restart"

restarts=$(show NRestarts)
in_ns systemctl kill -s SIGKILL kvshuttled
wait_for 15 restarted || problem "Restart=on-failure did not restart after SIGKILL"
wait_for 10 healthy || problem "not serving after a crash (stale socket not replaced?)"

in_ns systemctl stop kvshuttled
[ "$(show ActiveState)" = inactive ] || problem "after stop: $(show ActiveState)"
[ "$(show ExecMainStatus)" = 0 ] || problem "exit status after the drain: $(show ExecMainStatus)"
in_ns test -e /run/kvshuttle && problem "/run/kvshuttle left after stop"
[ "$(tail -n 2 "$tmp/daemon.log" | grep -c -E 'draining|stopped')" = 2 ] ||
  problem "the daemon's last log lines are not the drain: $(tail -n 2 "$tmp/daemon.log")"

if [ $fail -ne 0 ]; then
  echo "--- daemon log"; tail -20 "$tmp/daemon.log"
  echo "--- systemd log"; tail -20 "$tmp/systemd.log"
  echo "boot_systemd: FAILED"
  exit 1
fi
echo "boot_systemd: ok (kvshuttled.service under $($systemd_bin --version | head -1))"
