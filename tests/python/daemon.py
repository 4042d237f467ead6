"""A kvshuttled child process for the Python tests: its own unix socket in a temporary folder,
output to a log file, started and ready (GetInfo answers) or an error carrying its log."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import kvshuttle
from kvshuttle._stubs import pb

REPO_ROOT = Path(__file__).resolve().parents[2]
_START_TIMEOUT_S = 15.0


def daemon_binary() -> Path:
    """$KVSHUTTLED, else the repository's build/server/kvshuttled; FileNotFoundError saying how
    to point at one."""
    explicit = os.environ.get("KVSHUTTLED")
    candidate = Path(explicit) if explicit else REPO_ROOT / "build" / "server" / "kvshuttled"
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise FileNotFoundError(
            f"kvshuttled not found at {candidate}; build it (cmake --build build --target "
            "kvshuttled) or set KVSHUTTLED to the binary")
    return candidate


class DaemonProcess:
    """kvshuttled --listen=unix:<dir>/kvshuttled.sock --gpus=<gpus> [flags]."""

    def __init__(self, workdir: Path, gpus: bool, flags: tuple[str, ...] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "kvshuttled.sock"
        self.log_path = workdir / "kvshuttled.log"
        self.target = f"unix:{self.socket}"
        # No metrics endpoint (tests run daemons side by side) and no /etc config file;
        # --undefok keeps older daemons without these flags working.
        argv = [str(daemon_binary()), f"--listen={self.target}",
                f"--gpus={'true' if gpus else 'false'}", "--undefok=metrics_address,config",
                "--metrics_address=", "--config=", *flags]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            self.info = self._await_ready()
        except BaseException:
            self.stop()
            raise

    def _await_ready(self) -> pb.GetInfoResponse:
        """The daemon's GetInfo once it answers."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kvshuttled exited with {self.process.returncode} before "
                                   f"serving; its output:\n{self.log()}")
            if self.socket.exists():
                try:
                    with kvshuttle.connect(self.target, timeout=0.5) as client:
                        return client.info()
                except kvshuttle.UnavailableError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"kvshuttled did not serve within {_START_TIMEOUT_S} s; its "
                           f"output:\n{self.log()}")

    def connect(self) -> kvshuttle.Client:
        return kvshuttle.connect(self.target, timeout=5.0)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the daemon drains), SIGKILL after `timeout`; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
