"""Build hook: generates the gRPC stubs (kvshuttle/v1/kvshuttle_pb2{,_grpc}.py) from the
repository's proto/ while building, with grpcio-tools (the build requirement) or, failing that,
protoc + grpc_python_plugin from PATH. The metadata lives in pyproject.toml.

An sdist carries the proto (proto/kvshuttle/v1/kvshuttle.proto beside this file), so a wheel
can be built from it away from the repository.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_stubs  # noqa: E402


class BuildPyWithStubs(build_py):
    """build_py that writes the stubs into the build tree (into the source tree for editable
    installs, which import from it)."""

    def run(self) -> None:
        out = HERE if getattr(self, "editable_mode", False) else Path(self.build_lib)
        gen_stubs.generate(out)
        super().run()


class SdistWithProto(sdist):
    """sdist that includes the proto the stubs are generated from."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proto" / gen_stubs.PROTO_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gen_stubs.find_proto_root() / gen_stubs.PROTO_FILE, target)


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto})
