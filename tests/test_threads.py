"""Thread defaults: one torch thread per run unless asked (benchmarks/RESULTS.md, "Threads")."""

from __future__ import annotations

import os

import pytest

from gradasym.config import Config, load_config
from gradasym.sweep.core import resolve_threads


def test_a_run_defaults_to_one_thread() -> None:
    assert Config().run.threads == 1
    assert load_config().run.threads == 1


def test_sweep_threads_follow_run_threads() -> None:
    cores = os.cpu_count() or 1
    base = Config()
    assert resolve_threads(base, "local", workers=1, threads=None) == 1
    assert resolve_threads(base, "ray", workers=4, threads=None) == 1
    assert resolve_threads(base, "local", workers=1, threads=3) == 3  # explicit --threads wins
    base.run.threads = 0  # 0 = share the cores among the workers
    assert resolve_threads(base, "local", workers=1, threads=None) == cores
    assert resolve_threads(base, "local", workers=2, threads=None) == max(1, cores // 2)
    assert resolve_threads(base, "submitit", workers=2, threads=None) == 1
    base.run.threads = 10 * cores  # capped locally so that workers x threads <= cores
    assert resolve_threads(base, "local", workers=1, threads=None) == cores
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(base, "local", workers=1, threads=0)
