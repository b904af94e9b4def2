"""The layers hold: ``scripts/lint_imports.py`` (import-linter over the installed layout) passes on
this tree, fails on an import that runs up a layer, naming the module and line, and no module of
the service reaches another through ``importlib`` or a guarded ``try: import``."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from scripts import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys, pathlib; from scripts import lint_imports as li; "
        f"li.ROOT = pathlib.Path({str(root)!r}); sys.exit(li.main([]))"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_layers_hold_on_this_tree() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_import_up_a_layer_fails_with_its_line(tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    folders = {Path(f).parts[0] for f in lint_imports.package_dirs(ROOT).values() for f in [str(f.relative_to(ROOT))]}
    for name in [*folders, "pyproject.toml"]:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "build"))
        else:
            shutil.copy(source, copy / name)
    ids = copy / "core" / "ids.py"
    lines = ids.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("from collections.abc"))
    lines.insert(at + 1, "from breachwatch.runtime import app  # a vocabulary module reaching for the runtime")
    ids.write_text("\n".join(lines) + "\n")
    result = _lint(copy)
    assert result.returncode == 1
    assert "BROKEN" in result.stdout
    assert f"breachwatch.core.ids -> breachwatch.runtime.app (l.{at + 2})" in result.stdout


def _hidden_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("importlib.import_module", "import_module", "__import__"):
                found.append(f"{path.name}:{node.lineno} {name}")
        if isinstance(node, ast.Try):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom | ast.Import) and "breachwatch" in ast.unparse(stmt):
                    found.append(f"{path.name}:{stmt.lineno} try: {ast.unparse(stmt)}")
    return found


def test_no_module_hides_an_import_of_the_project() -> None:
    hidden = [
        h
        for folder in lint_imports.package_dirs(ROOT).values()
        for p in folder.rglob("*.py")
        for h in _hidden_imports(p)
    ]
    assert hidden == []
