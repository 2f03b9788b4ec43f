"""Where a result came from: the code's git commit and the machine it ran on.

Recorded in every run's ``summary.json`` (key ``provenance``) and in the report,
so that a number can be traced to the code that produced it and a timing to the
machine that measured it. Nothing here fails: an unknown item is ``"unknown"``
(or None for counts).

``collect()`` returns::

    {"git_commit": "89d80e7...", "git_dirty": False, "cpu_model": "AMD EPYC ...",
     "cpu_count": 2, "torch_version": "2.13.0", "python_version": "3.11.9",
     "platform": "Linux-6.8...-x86_64-with-glibc2.39", "gradasym_version": "0.1.0"}

``git_commit`` is the commit of the checkout the imported ``gradasym`` package
lives in (an editable install or a source tree), ``"unknown"`` for an installed
wheel or when git is not available; ``git_dirty`` says whether tracked files
differ from that commit (None when unknown). A run executed as a task of the Ray
backend adds ``"ray_node": {"id": ..., "host": ..., "ip": ...}``, the Ray node it
ran on (set by the backend with :func:`placed_on` while the task runs).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

__all__ = ["collect", "git_commit", "cpu_model", "torch_version", "placed_on", "UNKNOWN"]

UNKNOWN = "unknown"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str, cwd: Path = _PACKAGE_DIR) -> str | None:
    """Output of ``git args`` run in ``cwd`` (stripped), None on any failure."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit(path: Path = _PACKAGE_DIR) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the git checkout containing ``path``; ``("unknown", None)`` if none."""
    top = _git("rev-parse", "--show-toplevel", cwd=path)
    if not top:
        return UNKNOWN, None
    commit = _git("rev-parse", "HEAD", cwd=path)
    if not commit:
        return UNKNOWN, None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=path)
    return commit, (bool(status) if status is not None else None)


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def torch_version() -> str:
    """The installed torch version (package metadata: no import of torch), else ``"unknown"``."""
    try:
        return importlib.metadata.version("torch")
    except Exception:  # noqa: BLE001 - provenance never fails
        return UNKNOWN


def _gradasym_version() -> str:
    try:
        from . import __version__  # noqa: PLC0415
    except Exception:  # noqa: BLE001
        return UNKNOWN
    return str(__version__)


@lru_cache(maxsize=1)
def _cached() -> tuple[tuple[str, Any], ...]:
    commit, dirty = git_commit()
    return (("git_commit", commit), ("git_dirty", dirty), ("cpu_model", cpu_model()),
            ("cpu_count", os.cpu_count()), ("torch_version", torch_version()),
            ("python_version", platform.python_version()), ("platform", platform.platform()),
            ("gradasym_version", _gradasym_version()))


#: The Ray node of the task running in this process (:func:`placed_on`), None outside one.
_ray_node: dict[str, Any] | None = None


@contextmanager
def placed_on(ray_node: dict[str, Any]) -> Iterator[None]:
    """Record ``ray_node`` (``id``, ``host``, ``ip``) in :func:`collect` while the block runs: a Ray
    task wraps its run in it, so the run's ``summary.json`` names the node it ran on."""
    global _ray_node
    before, _ray_node = _ray_node, dict(ray_node)
    try:
        yield
    finally:
        _ray_node = before


def collect() -> dict[str, Any]:
    """Provenance of this process (computed once per process, then reused): see the module doc."""
    found = dict(_cached())
    if _ray_node is not None:
        found["ray_node"] = dict(_ray_node)
    return found
