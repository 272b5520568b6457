"""The layout's rules (README "Layout: one room per job", CONTRIBUTING.md), checked so they stay true."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from warehouse.target import PROJECT_ROOT

PYTHON_MODELS = PROJECT_ROOT / "python_models"
MAX_MODULE_LINES = 600


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_production_code_never_imports_the_lab() -> None:
    code = (
        "import sys, orchestration.definitions, cli.main, warehouse.loader, warehouse.backup; "
        "print(sorted(m for m in sys.modules if m == 'lab' or m.startswith('lab.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_python_models_modules_are_small_and_read_no_environment() -> None:
    modules = _modules(PYTHON_MODELS)
    assert len(modules) > 10
    for path in modules:
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} has more than {MAX_MODULE_LINES} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                raise AssertionError(f"{path}:{node.lineno} reads the environment")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
                "dagster",
                "dbt",
                "duckdb",
                "psycopg2",
                "orchestration",
                "warehouse",
                "cli",
                "lab",
            }:
                raise AssertionError(f"{path}:{node.lineno} imports {node.module}")
