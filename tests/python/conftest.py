"""Shared setup of the Python client tests.

Tiers: everything not marked `gpu` is the CPU tier (host shared memory, the daemon's CPU
executor, argument validation; needs no torch). Tests marked `gpu` need torch with a CUDA
device and a kvshuttled built with CUDA; they skip, saying why, when either is missing.

    KVSHUTTLED=build/server/kvshuttled python3 -m pytest tests/python -m "not gpu"
    KVSHUTTLED=build-static/server/kvshuttled python3 -m pytest tests/python -m gpu \
        --kvs-json=out/python_gpu.json --junitxml=out/python_gpu.xml --skip-exit-code=77

Imports: the kvshuttle package comes from PYTHONPATH, else from the repository's python/;
its generated stubs from PYTHONPATH, else they are generated here into a temporary folder
(grpcio-tools or protoc + grpc_python_plugin).
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _on_path(relative: str) -> bool:
    return any((Path(p or ".") / relative).is_file() for p in sys.path)


def _make_importable() -> None:
    """Puts python/ and (generated if need be) stubs on sys.path before anything imports
    kvshuttle."""
    if not _on_path("kvshuttle/__init__.py"):
        sys.path.insert(0, str(REPO_ROOT / "python"))
    if _on_path("kvshuttle/v1/kvshuttle_pb2.py"):
        return
    spec = importlib.util.spec_from_file_location("gen_stubs", REPO_ROOT / "python" /
                                                  "gen_stubs.py")
    assert spec is not None and spec.loader is not None
    gen_stubs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_stubs)
    out = tempfile.mkdtemp(prefix="kvshuttle-stubs-")
    atexit.register(shutil.rmtree, out, True)
    gen_stubs.generate(out)
    sys.path.insert(0, out)


_make_importable()

from arrays import CudaArrays, HostArrays  # noqa: E402
from daemon import DaemonProcess  # noqa: E402

_daemons: list[DaemonProcess] = []
# Every test's outcome, for --kvs-json and --skip-exit-code: nodeid → outcome, seconds, reason.
_outcomes: dict[str, dict[str, Any]] = {}


# ---------------------------------------------------------------------------------------------
# Options, markers, results


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kvshuttle")
    group.addoption("--kvs-json", metavar="PATH",
                    help="write a JSON summary (environment, counts, every test's outcome)")
    group.addoption("--skip-exit-code", type=int, metavar="N",
                    help="exit with N when tests were selected but every one was skipped "
                         "(CTest SKIP_RETURN_CODE)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs torch with a CUDA device and a kvshuttled built with CUDA")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0})
    entry["seconds"] += report.duration
    if report.skipped:
        entry["outcome"] = "skipped"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        entry["reason"] = reason
    elif report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "host": platform.node()}
    try:
        env["commit"] = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short",
                                        "HEAD"], capture_output=True, text=True,
                                       check=False).stdout.strip()
    except OSError:
        env["commit"] = ""
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["device"] = torch.cuda.get_device_name(0)
            env["cuda"] = torch.version.cuda
    env["kvshuttled"] = os.environ.get("KVSHUTTLED", "")
    # The daemon's own version line names the commit it was built from; a copied tree's .git
    # (the commit above) may be stale.
    if env["kvshuttled"]:
        try:
            env["kvshuttled_version"] = subprocess.run(
                [env["kvshuttled"], "--version"], capture_output=True, text=True, check=False,
                timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            env["kvshuttled_version"] = ""
    return env


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for daemon in _daemons:
        daemon.stop()
    counts = {name: sum(1 for o in _outcomes.values() if o["outcome"] == name)
              for name in ("passed", "failed", "error", "skipped")}
    path = session.config.getoption("--kvs-json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({
            "markexpr": session.config.getoption("-m") or "",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": _environment(), "counts": counts, "exit_status": int(exitstatus),
            "tests": _outcomes}, indent=2) + "\n")
    skip_code = session.config.getoption("--skip-exit-code")
    if (skip_code is not None and counts["skipped"] and not counts["passed"]
            and not counts["failed"] and not counts["error"]):
        session.exitstatus = skip_code


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Appends the daemons' logs to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for daemon in _daemons:
            report.sections.append((f"kvshuttled log ({daemon.target})",
                                    "\n".join(daemon.log().splitlines()[-40:])))


# ---------------------------------------------------------------------------------------------
# Daemons, sessions, array providers


def start_daemon(gpus: bool, flags: tuple[str, ...] = ()) -> DaemonProcess:
    """A daemon of its own (stopped at the end of the test session)."""
    workdir = Path(tempfile.mkdtemp(prefix="kvs-py-", dir="/tmp"))  # short socket paths
    atexit.register(shutil.rmtree, workdir, True)
    daemon = DaemonProcess(workdir, gpus=gpus, flags=flags)
    _daemons.append(daemon)
    return daemon


def require_cuda() -> Any:
    """torch, or a skip naming what is missing."""
    torch = pytest.importorskip("torch", reason="GPU tier: torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("GPU tier: torch sees no CUDA device")
    return torch


@pytest.fixture(scope="session")
def cpu_daemon() -> DaemonProcess:
    """kvshuttled --gpus=false: host memory through the CPU executor."""
    return start_daemon(gpus=False)


@pytest.fixture(scope="session")
def gpu_daemon() -> DaemonProcess:
    """kvshuttled --gpus=true; skips without torch + CUDA, fails when the daemon sees no GPU."""
    require_cuda()
    daemon = start_daemon(gpus=True)
    if not daemon.info.devices:
        pytest.fail(f"kvshuttled ({daemon.target}) sees no GPU although torch does: is it built "
                    f"with CUDA? Its output:\n{daemon.log()}")
    return daemon


class Kit:
    """One tier's test kit: an array provider and a session on the matching daemon."""

    def __init__(self, arrays: HostArrays | CudaArrays, daemon: DaemonProcess) -> None:
        self.arrays = arrays
        self.daemon = daemon
        self.client = daemon.connect()
        self.session = self.client.session(f"pytest-{arrays.name}")

    @property
    def memory(self) -> str:
        return "host" if self.arrays.name == "host" else "device"

    def close(self) -> None:
        self.session.close()
        self.client.close()
        self.arrays.close()


KIT_PARAMS = [pytest.param("host", id="host"),
              pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests using `kit` run on both tiers, unless their module pairs kits with dtypes."""
    if "kit" in metafunc.fixturenames and "dtype" not in metafunc.fixturenames:
        metafunc.parametrize("kit", KIT_PARAMS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    """Host memory + CPU daemon ("host"), or (gpu) CUDA memory + GPU daemon ("cuda")."""
    if request.param == "host":
        made = Kit(HostArrays(), request.getfixturevalue("cpu_daemon"))
    else:
        daemon = request.getfixturevalue("gpu_daemon")
        made = Kit(CudaArrays(), daemon)
    yield made
    made.close()
