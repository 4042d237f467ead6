#!/usr/bin/env python3
"""Generates the kvshuttle gRPC stubs (kvshuttle/v1/kvshuttle_pb2{,_grpc}.py) into a directory.

The stubs land in OUT/kvshuttle/v1/ so that, with OUT on sys.path (or OUT being this python/
folder itself), `import kvshuttle.v1.kvshuttle_pb2` resolves; the kvshuttle package extends its
__path__ over every `kvshuttle` folder on sys.path.

Two generators, chosen by --tool:
  grpc_tools  the grpcio-tools package (python -m grpc_tools.protoc), what pip builds use;
  system      protoc + grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc),
              what CI and hosts without PyPI use;
  auto        grpc_tools when importable, else system (the default).

    python3 gen_stubs.py --out /tmp/stubs                    # proto root: ../proto
    python3 gen_stubs.py --out . --tool system --protoc /usr/bin/protoc
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The one proto file the client needs, relative to the proto root.
PROTO_FILE = "kvshuttle/v1/kvshuttle.proto"
# Where the repository keeps it, relative to this file (python/ is beside proto/).
DEFAULT_PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"


class StubError(RuntimeError):
    """A generator is missing or failed; the message says which and how to fix it."""


def find_proto_root(explicit: str | None = None) -> Path:
    """The folder holding kvshuttle/v1/kvshuttle.proto: `explicit` if given, else
    $KVSHUTTLE_PROTO_ROOT, the repository's proto/ or a proto/ folder beside this file (an
    sdist carries one)."""
    candidates = [explicit] if explicit else [
        os.environ.get("KVSHUTTLE_PROTO_ROOT"), str(DEFAULT_PROTO_ROOT),
        str(Path(__file__).resolve().parent / "proto")]
    for candidate in candidates:
        if candidate and (Path(candidate) / PROTO_FILE).is_file():
            return Path(candidate).resolve()
    raise StubError(f"{PROTO_FILE} not found under any of "
                    f"{[c for c in candidates if c]}; pass --proto-root")


def _grpc_tools_available() -> bool:
    return importlib.util.find_spec("grpc_tools") is not None


def _command(tool: str, proto_root: Path, out: Path, protoc: str | None,
             plugin: str | None) -> list[str]:
    common = [f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if tool == "grpc_tools":
        return [sys.executable, "-m", "grpc_tools.protoc", *common, str(proto_root / PROTO_FILE)]
    protoc = shutil.which(protoc or "protoc")
    plugin = shutil.which(plugin or "grpc_python_plugin")
    if not protoc or not plugin:
        raise StubError(
            "no stub generator: install grpcio-tools (pip install grpcio-tools) or Debian's "
            "protobuf-compiler and protobuf-compiler-grpc (protoc: "
            f"{protoc or 'not found'}, grpc_python_plugin: {plugin or 'not found'})")
    return [protoc, f"--plugin=protoc-gen-grpc_python={plugin}", *common,
            str(proto_root / PROTO_FILE)]


def generate(out: str | os.PathLike[str], proto_root: str | os.PathLike[str] | None = None,
             tool: str = "auto", protoc: str | None = None, plugin: str | None = None) -> Path:
    """Writes OUT/kvshuttle/v1/{__init__,kvshuttle_pb2,kvshuttle_pb2_grpc}.py; returns the
    folder holding them. Raises StubError when no generator works."""
    if tool not in ("auto", "grpc_tools", "system"):
        raise StubError(f"tool: {tool!r}; allowed: auto, grpc_tools, system")
    root = find_proto_root(str(proto_root) if proto_root else None)
    out_dir = Path(out).resolve()
    package_dir = out_dir / "kvshuttle" / "v1"
    package_dir.mkdir(parents=True, exist_ok=True)
    chosen = tool
    if tool == "auto":
        chosen = "grpc_tools" if _grpc_tools_available() else "system"
    command = _command(chosen, root, out_dir, protoc, plugin)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StubError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    init = package_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs of kvshuttle.v1 (see gen_stubs.py)."""\n')
    return package_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder that receives kvshuttle/v1/")
    parser.add_argument("--proto-root", help=f"folder holding {PROTO_FILE}")
    parser.add_argument("--tool", default="auto", choices=("auto", "grpc_tools", "system"))
    parser.add_argument("--protoc", help="protoc binary (system tool; default: from PATH)")
    parser.add_argument("--plugin", help="grpc_python_plugin binary (default: from PATH)")
    args = parser.parse_args(argv)
    try:
        written = generate(args.out, args.proto_root, args.tool, args.protoc, args.plugin)
    except StubError as error:
        print(f"gen_stubs: {error}", file=sys.stderr)
        return 1
    print(f"gen_stubs: wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
