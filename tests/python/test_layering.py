"""The package's layering: its modules import each other in no circle, and everything below
session.py (the handles and the SessionRpc they keep) loads without it.

Imports are read from the source with `ast`, every one of them: at module level, inside
functions and under TYPE_CHECKING, since a type-only import still ties two modules together.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import kvshuttle

PACKAGE_DIR = Path(kvshuttle.__file__).resolve().parent
# The modules Session composes over the SessionRpc (rpc.py) it builds.
HANDLES = {"regions", "blocksets", "pools", "jobs"}


def _modules() -> dict[str, ast.Module]:
    """Every module of the package by name (e.g. "jobs"; "__init__" for the package), parsed;
    the generated stubs (kvshuttle/v1/) are not part of it."""
    return {path.stem: ast.parse(path.read_text(), str(path))
            for path in sorted(PACKAGE_DIR.glob("*.py"))}


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The package modules (names in `known`) that `tree` imports anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package
                base = f"kvshuttle.{base}" if base else "kvshuttle"
            # `from kvshuttle import shm` names a module; `from kvshuttle.jobs import Job` not.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "kvshuttle" and parts[1] in known:
                found.add(parts[1])
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules) - {"__init__"}
    return {name: _imports(tree, known) - {name} for name, tree in modules.items()}


def _below(graph: dict[str, set[str]], top: str) -> set[str]:
    """Every module `top` imports, directly or through others."""
    seen: set[str] = set()
    stack = [top]
    while stack:
        for name in graph[stack.pop()]:
            if name not in seen:
                seen.add(name)
                stack.append(name)
    return seen


def _a_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules in order, the first again at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        path.append(name)
        for imported in sorted(graph[name]):
            circle = visit(imported)
            if circle is not None:
                return circle
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        circle = visit(name)
        if circle is not None:
            return circle
    return None


def test_the_reader_sees_every_kind_of_import() -> None:
    source = textwrap.dedent("""
        import kvshuttle.layout
        from kvshuttle import shm, dtypes
        from kvshuttle.errors import error_for
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from kvshuttle.session import Session
        def f():
            from kvshuttle import cuda
            import numpy
        from kvshuttle.v1 import kvshuttle_pb2
    """)
    known = {"layout", "shm", "dtypes", "errors", "session", "cuda", "jobs"}
    assert _imports(ast.parse(source), known) == {"layout", "shm", "dtypes", "errors",
                                                  "session", "cuda"}


def test_no_modules_import_each_other_in_a_circle() -> None:
    circle = _a_circle(_graph())
    assert circle is None, f"import circle: {' → '.join(circle)}"


def test_session_composes_the_handles_over_the_rpc_layer_and_nothing_below_imports_it() -> None:
    graph = _graph()
    below = _below(graph, "session")
    assert HANDLES | {"rpc", "errors"} <= below
    assert "client" not in below, "session.py sees its client only as an rpc.Connection"
    for name in sorted(below):
        assert "session" not in graph[name], f"{name}.py imports session.py"


def test_the_rpc_layer_needs_no_handle() -> None:
    graph = _graph()
    above = HANDLES | {"session", "client", "seed"}
    assert _below(graph, "rpc") & above == set()


def test_the_modules_below_the_session_load_without_it() -> None:
    # A fresh interpreter with the package object made by hand (its __init__ imports
    # session.py) and kvshuttle.session blocked: importing it there raises ImportError.
    probe = textwrap.dedent("""
        import importlib, sys, types
        package = types.ModuleType("kvshuttle")
        package.__path__ = sys.argv[1].split(";")
        sys.modules["kvshuttle"] = package
        sys.modules["kvshuttle.session"] = None
        for name in sys.argv[2:]:
            importlib.import_module("kvshuttle." + name)
        print(sorted(n for n, m in sys.modules.items() if m and n.startswith("kvshuttle.")))
    """)
    # cuda.py needs torch (regions.py and session.py import it only when CUDA tensors come).
    names = sorted(_below(_graph(), "session") - {"cuda"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", probe, ";".join(kvshuttle.__path__), *names],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "kvshuttle.session" not in done.stdout and "kvshuttle.rpc" in done.stdout
