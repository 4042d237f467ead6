#!/usr/bin/env python3
"""Lints deploy/docker/Dockerfile with hadolint (from PyPI, see deploy_tools.py).

hadolint parses the Dockerfile like Docker does and runs ShellCheck on every RUN; any
warning fails. Deliberate exceptions carry a `# hadolint ignore=...` comment with the reason
beside them in the Dockerfile. Exit 77 (skipped) when the PyPI tools are unavailable.
"""
import subprocess
import sys

import deploy_tools

DOCKERFILE = deploy_tools.REPO / "deploy" / "docker" / "Dockerfile"


def main():
    tools = deploy_tools.ensure_or_skip()
    run = subprocess.run([str(tools.hadolint), "--no-color", str(DOCKERFILE)],
                         capture_output=True, text=True)
    print(run.stdout + run.stderr, end="")
    version = subprocess.run([str(tools.hadolint), "--version"], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"check_hadolint: FAILED ({version.stdout.strip()})")
        return 1
    print(f"check_hadolint: ok ({version.stdout.strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
