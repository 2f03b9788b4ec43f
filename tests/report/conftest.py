"""Synthetic result folders and reports built once per test session (kept small and fast)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

import synthetic as syn


@dataclass
class Built:
    """A synthetic results folder and the report built from it."""

    results: Path
    html: Path
    out: Path
    compare: list[Path]


LARGE_ACTOR_SHIFT = 3  # the synthetic large actor stops this many episodes later


def _large_actor_stops() -> dict:
    return {k: (None if v is None else v + LARGE_ACTOR_SHIFT) for k, v in syn.SCALED_TABLE3.items()}


@pytest.fixture(scope="session")
def base_sweep(tmp_path_factory) -> Path:
    """The paper's 4x4 grid, 3 seeds, 200 episodes, all finished, with the plasticity columns (a complete
    result set as gradasym writes it today)."""
    return syn.write_sweep(tmp_path_factory.mktemp("base") / "sweep", plasticity=True)


@pytest.fixture(scope="session")
def large_actor_sweep(tmp_path_factory) -> Path:
    """A 'large-actor' preset sweep over the high actor LRs, 2 seeds."""
    return syn.write_sweep(tmp_path_factory.mktemp("large") / "sweep-large-actor", actor_lrs=(0.01, 0.1),
                           seeds=(0, 2), preset="large-actor", stops=_large_actor_stops())


@pytest.fixture(scope="session")
def full_report(base_sweep, large_actor_sweep, tmp_path_factory) -> Built:
    """The base sweep's report with the large-actor sweep as comparison."""
    from gradasym.report import build_report

    out = tmp_path_factory.mktemp("report_full")
    html = build_report(base_sweep, compare=[large_actor_sweep], out_dir=out)
    return Built(base_sweep, html, out, [large_actor_sweep])


def _partial_customize(spec: syn.RunSpec) -> syn.RunSpec | None:
    key = (spec.actor_lr, spec.critic_lr, spec.seed)
    if key == (0.1, 0.001, 0):
        spec.status, spec.error, spec.episodes_run, spec.stop_episode = "failed", "RuntimeError: boom", 12, None
    elif key == (0.1, 0.001, 1):
        spec.status, spec.episodes_run = "running", 60           # already stopped (at 22)
    elif key == (0.0001, 0.001, 1):
        spec.status, spec.episodes_run = "running", 50           # not stopped yet
    elif key == (0.0001, 0.0001, 0):
        spec.write_tracking = False
    elif key == (0.1, 0.1, 1):
        spec.write_summary = False                               # reconstructed from episodes.parquet
    elif key == (0.0001, 0.1, 1):
        return None                                              # pending: only in sweep.json
    return spec


@pytest.fixture(scope="session")
def partial_sweep(tmp_path_factory) -> Path:
    """A sweep still running: failed/running/pending runs, missing and corrupt files, two preset groups."""
    root = tmp_path_factory.mktemp("partial") / "sweep"
    syn.write_sweep(root, actor_lrs=(0.0001, 0.1), critic_lrs=(0.001, 0.1, 0.0001), seeds=(0, 1),
                    customize=_partial_customize, pending=["alr0.01_clr0.01_s0"], write_summary_table=False)
    runs = root / "runs"
    (runs / "alr0.0001_clr0.0001_s1" / "summary.json").write_text("{not json")
    (runs / "alr0.1_clr0.0001_s1" / "tracking.parquet").write_bytes(b"PAR1 truncated")
    (runs / "alr0.1_clr0.1_s0" / "tracking_agents.parquet").unlink()
    for c in (0.001, 0.1):  # a second preset group inside the same sweep folder
        spec = syn.RunSpec(0.1, c, 0, stop_episode=30, presets=("layernorm",))
        syn.write_run(runs / syn.run_id(0.1, c, 0, "layernorm"), spec)
    (runs / "alr0.1_clr0.1_s9").mkdir()  # an empty run folder (just created by the sweep)
    meta = json.loads((root / "sweep.json").read_text())  # the sweep lists its runs (a folder it does not is foreign)
    meta["run_ids"] += [syn.run_id(0.1, c, 0, "layernorm") for c in (0.001, 0.1)] + ["alr0.1_clr0.1_s9"]
    (root / "sweep.json").write_text(json.dumps(meta, indent=2))
    odd = runs / "copied-by-hand"       # not listed in sweep.json: a foreign folder, left out and named
    odd.mkdir()
    (odd / "episodes.parquet").write_bytes((runs / "alr0.1_clr0.1_s0" / "episodes.parquet").read_bytes())
    return root


@pytest.fixture(scope="session")
def partial_report(partial_sweep, tmp_path_factory) -> Built:
    from gradasym.report import build_report

    out = tmp_path_factory.mktemp("report_partial")
    return Built(partial_sweep, build_report(partial_sweep, out_dir=out), out, [])


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> Path:
    """Two configurations x one seed: enough for every group figure and table, cheap to report
    (for tests of how the report handles a failure, not of its numbers)."""
    return syn.write_sweep(tmp_path_factory.mktemp("small") / "sweep", actor_lrs=(0.1,), critic_lrs=(0.1, 0.01),
                           seeds=(0,))


@pytest.fixture(scope="session")
def single_run(tmp_path_factory) -> Path:
    """One run folder (not a sweep) whose actors stopped."""
    spec = syn.RunSpec(0.1, 0.01, 42, stop_episode=18, early_stop_patience=20)
    return syn.write_run(tmp_path_factory.mktemp("single") / syn.run_id(0.1, 0.01, 42), spec)


@pytest.fixture()
def empty_sweep(tmp_path) -> Path:
    """A sweep folder that has only its sweep.json so far."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "sweep.json").write_text(json.dumps({"run_ids": ["alr0.1_clr0.1_s0", "alr0.1_clr0.01_s0"]}))
    return root
