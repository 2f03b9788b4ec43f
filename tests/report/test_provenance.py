"""gradasym.provenance: the code commit and the machine, recorded by runs and shown by the report."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import gradasym
from gradasym import provenance


def test_collect_has_every_field() -> None:
    p = provenance.collect()
    assert set(p) == {"git_commit", "git_dirty", "cpu_model", "cpu_count", "torch_version", "python_version",
                      "platform", "gradasym_version"}
    assert p["cpu_count"] == os.cpu_count()
    assert p["torch_version"] == importlib.metadata.version("torch")
    assert p["gradasym_version"] == gradasym.__version__
    assert isinstance(p["cpu_model"], str) and p["cpu_model"]
    assert provenance.collect() == p and provenance.collect() is not provenance.collect()  # cached, but a copy


def test_git_commit_is_the_checkout_of_the_imported_package() -> None:
    pkg = Path(gradasym.__file__).resolve().parent
    try:
        expected = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pkg, capture_output=True, text=True,
                                  check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        expected = "unknown"   # an installed wheel: no checkout
    assert provenance.git_commit(pkg)[0] == expected


def test_outside_a_checkout_the_commit_is_unknown(tmp_path) -> None:
    assert provenance.git_commit(tmp_path) == ("unknown", None)


def test_a_run_records_its_provenance_in_summary_json(tmp_path) -> None:
    import json

    from gradasym.config import load_config
    from gradasym.algos.ccm_madrl.runner import run_experiment

    cfg = load_config(overrides={"run.episodes": 2, "env.n_agents": 10, "run.threads": 1})
    run_experiment(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["provenance"] == provenance.collect()
