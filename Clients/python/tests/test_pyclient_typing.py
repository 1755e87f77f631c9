"""The package is fully typed: py.typed ships, and mypy --strict passes (when mypy is
installed by scripts/setup from Clients/python/requirements-test.txt)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys


from mld_support import CLIENT_ROOT


def test_py_typed_marker_ships() -> None:
    assert (CLIENT_ROOT / "src" / "magiclinkd" / "py.typed").is_file()


def test_mypy_strict() -> None:
    # scripts/setup installs mypy (Clients/python/requirements-test.txt): a missing mypy fails.
    assert importlib.util.find_spec("mypy") is not None, "mypy is not installed: pip install -r Clients/python/requirements-test.txt"
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir=/dev/null", "src/magiclinkd"],
        cwd=CLIENT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_source_is_python_39_syntax() -> None:
    import ast

    for path in (CLIENT_ROOT / "src" / "magiclinkd").glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"), str(path), feature_version=(3, 9))
        assert not any(isinstance(node, getattr(ast, "Match", ())) for node in ast.walk(tree)), path
