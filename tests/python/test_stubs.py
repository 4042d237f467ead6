"""Stub generation (python/gen_stubs.py) with the system tools CI and the GPU host use."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gen_stubs", REPO_ROOT / "python" / "gen_stubs.py")
assert spec is not None and spec.loader is not None
gen_stubs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_stubs)

needs_system_tools = pytest.mark.skipif(
    not (shutil.which("protoc") and shutil.which("grpc_python_plugin")),
    reason="protoc / grpc_python_plugin not installed (Debian: protobuf-compiler, "
           "protobuf-compiler-grpc)")


@needs_system_tools
def test_system_tools_generate_importable_stubs(tmp_path: Path) -> None:
    package = gen_stubs.generate(tmp_path, tool="system")
    assert package == tmp_path / "kvshuttle" / "v1"
    assert {p.name for p in package.iterdir()} >= {"__init__.py", "kvshuttle_pb2.py",
                                                   "kvshuttle_pb2_grpc.py"}
    # A fresh interpreter finds the package in python/ and its stubs in tmp_path.
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO_ROOT / 'python'}")
    probe = ("import kvshuttle, kvshuttle.v1.kvshuttle_pb2 as pb; "
             "print(pb.__file__); print(pb.Job.DESCRIPTOR.full_name)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, cwd=tmp_path.parent, check=False)
    assert done.returncode == 0, done.stderr
    stub_file, job_name = done.stdout.split()
    assert Path(stub_file).parent == package and job_name == "kvshuttle.v1.Job"


def test_missing_tools_are_named(tmp_path: Path) -> None:
    with pytest.raises(gen_stubs.StubError, match="protoc: not found"):
        gen_stubs.generate(tmp_path, tool="system", protoc=str(tmp_path / "no-protoc"))


def test_missing_proto_is_named(tmp_path: Path) -> None:
    with pytest.raises(gen_stubs.StubError, match="kvshuttle/v1/kvshuttle.proto not found"):
        gen_stubs.generate(tmp_path, proto_root=tmp_path / "nowhere", tool="system")


def test_unknown_tool_is_refused(tmp_path: Path) -> None:
    with pytest.raises(gen_stubs.StubError, match="tool: 'make'; allowed: auto, grpc_tools"):
        gen_stubs.generate(tmp_path, tool="make")
