"""The core never imports textual: the TUI depends on it, not the other way round."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import workbench

PACKAGE = Path(workbench.__file__).parent


def test_no_textual_import_statement_in_core():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] in ("textual", "app")]
    assert offenders == []


def test_importing_every_core_module_loads_no_textual():
    modules = [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "workbench.")]
    assert "workbench.cli" in modules and "workbench.chat" in modules
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
