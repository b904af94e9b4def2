"""Run ``lint-imports`` (import-linter) over the package as it is installed.

The repository keeps a folder per part (``detectors/``, ``notifier/`` ...) and setuptools maps
each to its name under ``breachwatch`` (``[tool.setuptools.package-dir]``). import-linter finds
modules by walking the root package's folder, so it is pointed at a tree of symbolic links laid
out as the wheel installs them; module names and line numbers in its report are the real ones.

    python3 scripts/lint_imports.py [extra lint-imports arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dirs(root: Path) -> dict[str, Path]:
    """Every installed package name and the folder it comes from, from both distributions."""
    dirs: dict[str, Path] = {}
    for project in (root, root / "devkit"):
        config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        for name, folder in config["tool"]["setuptools"]["package-dir"].items():
            dirs[name] = (project / folder).resolve()
    return dirs


def stage(root: Path, target: Path) -> Path:
    """Lay out ``breachwatch`` under ``target`` as the wheel installs it, in symbolic links."""
    dirs = package_dirs(root)
    top = target / "breachwatch"
    top.mkdir()
    for entry in dirs.pop("breachwatch").iterdir():
        (top / entry.name).symlink_to(entry)
    for name, folder in sorted(dirs.items()):
        link = target.joinpath(*name.split("."))
        if not link.parent.exists():
            raise SystemExit(f"{name}: its parent package is not laid out before it")
        if not link.exists():
            link.symlink_to(folder, target_is_directory=True)
    return target


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="bw-layers-") as tmp:
        staged = stage(ROOT, Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(staged), os.environ.get("PYTHONPATH")]))}
        # The interpreter running this script, whatever is on PATH.
        run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
        cmd = [sys.executable, "-c", run, str(ROOT / "pyproject.toml"), *argv]
        return subprocess.run(cmd, cwd=staged, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
