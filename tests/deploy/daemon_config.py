#!/usr/bin/env python3
"""Checks kvshuttled config files (`key = value`) shipped in deploy/ against the daemon.

With --daemon BIN the daemon itself judges each file (`BIN --config=FILE --print_config`,
which fails on an unknown key or a bad value). Without a binary, the keys are checked
against the flags defined in server/main.cc (ABSL_FLAG), which catches unknown keys only.

Used by check_systemd.sh (deploy/systemd/kvshuttled.conf) and check_k8s.py (the ConfigMap).
Standard library only.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
# Flags that the daemon refuses in a config file (server/ops/config.h).
COMMAND_LINE_ONLY = {"config", "print_config"}


def daemon_flags(repo=REPO):
    """Names of kvshuttled's flags: every ABSL_FLAG(type, name, ...) in server/main.cc."""
    text = (repo / "server" / "main.cc").read_text()
    return set(re.findall(r"ABSL_FLAG\(\s*[^,]+,\s*(\w+)\s*,", text))


def parse_conf(text, origin):
    """[(line number, key, value)] of a config text; raises ValueError on a malformed line.

    Mirrors the daemon's reader: blank lines and `#` lines are skipped, a value may carry a
    trailing ` # comment`, keys are letters, digits and `_`, a key may appear once.
    """
    entries, seen = [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"\w+", key):
            raise ValueError(f"{origin}:{number}: {line!r} is not a `key = value` line")
        if key in seen:
            raise ValueError(f"{origin}:{number}: {key} already set on line {seen[key]}")
        seen[key] = number
        value = re.split(r"[ \t]#", value.strip(), maxsplit=1)[0].strip()
        entries.append((number, key, value))
    return entries


def check_text(text, origin, daemon=None):
    """Problems (strings) with one config text; empty when it is accepted."""
    try:
        entries = parse_conf(text, origin)
    except ValueError as error:
        return [str(error)]
    problems = []
    flags = daemon_flags() - COMMAND_LINE_ONLY
    for number, key, _ in entries:
        if key not in flags:
            problems.append(f"{origin}:{number}: {key!r} is not a kvshuttled flag "
                            f"(known: {', '.join(sorted(flags))})")
    if daemon and not problems:
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
            conf.write(text)
            conf.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("KVSHUTTLED_")}
            run = subprocess.run([daemon, f"--config={conf.name}", "--print_config"],
                                 capture_output=True, text=True, env=env, timeout=60)
            if run.returncode != 0:
                problems.append(f"{origin}: kvshuttled --print_config rejected it "
                                f"(exit {run.returncode}): {run.stderr.strip()}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", help="kvshuttled binary to run --print_config with")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    problems = []
    for name in args.files:
        problems += check_text(pathlib.Path(name).read_text(), name, args.daemon)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        how = "kvshuttled --print_config" if args.daemon else "the flags in server/main.cc"
        print(f"ok: {len(args.files)} config file(s) accepted by {how}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
