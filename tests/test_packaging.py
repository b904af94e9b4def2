"""The distribution as a user installs it: one import namespace, every runtime import declared,
and the wheels installed in a fresh virtual environment beside public packages whose names the
repository's folders share (``detectors``, ``notifier``, ``console``, ``bench``)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DEVKIT = tomllib.loads((ROOT / "devkit" / "pyproject.toml").read_text(encoding="utf-8"))
# Public packages on the index with the names of this repository's folders.
NAMESAKES = ("detectors", "notifier", "console", "bench")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(folders: list[Path]) -> dict[str, str]:
    """Top-level module -> a file importing it, over every import in ``folders``."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("breachwatch", "__future__"):
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _product_folders() -> list[Path]:
    return sorted({ROOT / folder for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values()})


def test_every_import_of_the_service_is_a_declared_dependency() -> None:
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = {
        module: where
        for module, where in _third_party_imports(_product_folders()).items()
        if not {_name(d) for d in providers.get(module, [module])} & declared
    }
    assert undeclared == {}, "imported at run time but not in [project.dependencies]"


def test_the_development_kit_declares_what_it_imports_beyond_the_service() -> None:
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"] + DEVKIT["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    imports = _third_party_imports([ROOT / "devkit"])
    assert all({_name(d) for d in providers.get(m, [m])} & declared for m in imports), imports


def _tracked(folder: Path, name: str) -> list[Path]:
    """Files called ``name`` under ``folder`` that the repository holds (not build leftovers)."""
    listed = subprocess.run(["git", "ls-files", "--", str(folder)], cwd=ROOT, capture_output=True, text=True).stdout
    return [ROOT / line for line in listed.splitlines() if line.endswith("/" + name)]


def test_every_package_folder_is_in_the_distribution() -> None:
    """A folder with an ``__init__.py`` that ``packages`` does not list would be missing from the wheel."""
    for config, base in ((PYPROJECT, ROOT), (DEVKIT, ROOT / "devkit")):
        setup = config["tool"]["setuptools"]
        roots = {(base / folder).resolve(): name for name, folder in setup["package-dir"].items()}
        for folder, name in roots.items():
            for init in _tracked(folder, "__init__.py"):
                parts = init.parent.relative_to(folder).parts
                if (folder / Path(*parts)).resolve() in roots and parts:
                    continue  # mapped on its own
                package = ".".join([name, *parts])
                assert package in setup["packages"], f"{package} ({init.parent}) is not in [tool.setuptools] packages"


def test_nothing_is_declared_that_the_code_never_imports_nor_needs() -> None:
    # drain3 was declared for years, imported nowhere, and pinned versions tox needs newer.
    assert "drain3" not in {_name(r) for r in PYPROJECT["project"]["dependencies"]}


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{cmd[:4]}...: {result.stderr[-2000:]}"
    return result


@pytest.mark.slow
def test_the_wheels_work_beside_namesake_packages_in_a_fresh_environment(tmp_path: Path) -> None:
    uv = [sys.executable, "-m", "uv"]
    dist = tmp_path / "dist"
    _run([*uv, "build", "-q", "--wheel", "--out-dir", str(dist), str(ROOT)])
    _run([*uv, "build", "-q", "--wheel", "--out-dir", str(dist), str(ROOT / "devkit")])
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    _run([*uv, "venv", "-q", "--python", sys.executable, str(venv)])
    install = [*uv, "pip", "install", "-q", "--python", python]
    _run([*install, "--require-hashes", "-r", str(ROOT / "requirements" / "service.lock")])
    _run([*install, "--no-deps", *NAMESAKES])  # their own dependencies (torch...) are not the point
    _run([*install, "--no-deps", *map(str, sorted(dist.glob("*.whl")))])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    for name in NAMESAKES:  # the namesakes are really there, beside BreachWatch
        assert (site / name).exists() or any(site.glob(f"{name}*.dist-info")), name
    # The console's files come with the wheel (the favicon was once left out).
    for asset in ("static/favicon.svg", "static/console.css", "templates/base.html"):
        assert (site / "breachwatch" / "console" / asset).is_file(), asset
    cli = str(venv / "bin" / "breachwatch")
    env = {**os.environ, "PYTHONPATH": "", "BREACHWATCH_CACHE_DIR": str(tmp_path / "cache")}
    work = dict(cwd=tmp_path, env=env)
    _run([cli, "simulate", "--out", "dump", "--days", "3", "--tenants", "3", "--seed", "5"], **work)
    first = json.loads(_run([cli, "replay", "dump", "--out", "one.jsonl", "--jobs", "1"], **work).stdout)
    assert first["events"] > 1000 and first["dead_letters"] == 0
    # Uninstalling the namesakes takes nothing of BreachWatch with it.
    _run([*uv, "pip", "uninstall", "-q", "--python", python, *NAMESAKES])
    second = json.loads(_run([cli, "replay", "dump", "--out", "two.jsonl", "--jobs", "1"], **work).stdout)
    assert second["incidents"] == first["incidents"]
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "two.jsonl").read_text()


@pytest.mark.slow
def test_the_service_resolves_beside_tox(tmp_path: Path) -> None:
    """The service's requirements leave room for other tools in the same environment."""
    wanted = tmp_path / "wanted.txt"
    wanted.write_text(f"breachwatch @ {ROOT.as_uri()}\ntox>=4.20\n", encoding="utf-8")
    resolved = _run([sys.executable, "-m", "uv", "pip", "compile", "-q", "--python-version", "3.11", str(wanted)])
    assert re.search(r"^tox==4\.", resolved.stdout, re.M) and "breachwatch @" in resolved.stdout
