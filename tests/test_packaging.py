"""The install carries everything: a wheel built from the project's files holds the presets,
and the package installed from it lists them (``gradasym presets``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gradasym.config import available_presets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built (no network, no build isolation) from a copy of pyproject.toml, README.md and src/."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = root / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        cwd=src, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = dist.glob("gradasym-*.whl")
    return built


def test_every_preset_is_package_data_of_the_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = sorted(Path(n).stem for n in names if n.startswith("gradasym/presets/") and n.endswith(".toml"))
    assert in_wheel == available_presets()
    assert {"baseline", "layernorm", "gradclip"} <= set(in_wheel)


def test_installed_wheel_lists_the_presets(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel unpacked = installed
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, gradasym, gradasym.cli as c; print(gradasym.__file__); "
                               "sys.exit(c.main(['presets']))"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    first, *lines = proc.stdout.splitlines()
    assert Path(first).is_relative_to(site)  # the unpacked wheel, not the source tree
    assert sorted(line.split()[0] for line in lines) == available_presets()


def _doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_and_docs_point_at_nothing_outside_the_repository() -> None:
    import re

    for page in _doc_pages():
        text = page.read_text()
        assert "shared/spec" not in text and "../shared" not in text, page.name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(REPO), f"{page.name} links outside the repository: {target}"
            assert resolved.exists(), f"{page.name} links to a missing file: {target}"
