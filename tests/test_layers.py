"""The layer rules are enforced by import-linter (``make lint``, run by ``make test``): a copy of
the package in which the core imports Ray, or a low layer imports a high one, fails the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT)], cwd=tree, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(tree)})


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "distmeta", tmp_path / "distmeta", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_contracts(copy):
    done = _lint(copy)
    assert done.returncode == 0, done.stdout[-2000:]


def test_ray_in_the_core_breaks_the_build(copy):
    target = copy / "distmeta" / "algorithms" / "maml_ray.py"
    target.write_text("import ray\n")
    init = copy / "distmeta" / "algorithms" / "__init__.py"
    init.write_text(init.read_text() + "\nfrom distmeta.algorithms import maml_ray  # noqa: E402,F401\n")
    done = _lint(copy)
    assert done.returncode != 0 and "imports no ray" in done.stdout and "BROKEN" in done.stdout


def test_a_low_layer_importing_a_high_one_breaks_the_build(copy):
    models = copy / "distmeta" / "models" / "__init__.py"
    models.write_text(models.read_text() + "\nfrom distmeta import recipe  # noqa: E402,F401\n")
    done = _lint(copy)
    assert done.returncode != 0 and "Layers" in done.stdout and "BROKEN" in done.stdout


MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_small():
    """Small modules and functions (docs/architecture.md): a file over 300 lines or a function
    over 60 is split before it lands."""
    import ast

    too_long = []
    for path in sorted((REPO / "distmeta").rglob("*.py")):
        source = path.read_text()
        where = path.relative_to(REPO)
        if len(source.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{where}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES:
                too_long.append(f"{where}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long
