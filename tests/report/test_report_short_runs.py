"""The report warns when runs are too short for the viable count (report/short_runs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import synthetic as syn
from gradasym.io import write_json, write_table
from gradasym.report import build_report
from gradasym.report.load import IMPROVEMENT_WINDOW, load_results
from gradasym.report.short_runs import MIN_EPISODES, run_length, short_runs_warning


def _sb3_run(root: Path, seed: int, episodes: int, gradient_steps: int) -> None:
    """A hand-made SB3 (SAC) run folder with ``episodes`` episodes."""
    d = root / "runs" / f"alr0.001_clr0.001_s{seed}"
    write_json(d / "config.json", {"algo": "sac", "env": {"id": "Pendulum-v1"}, "agent": {"actor_lr": 0.001},
                                   "run": {"seed": seed, "steps": 200 * episodes}})
    write_table(d / "episodes.parquet", [{"episode": i + 1, "step": 200 * (i + 1), "return": -1000.0 + 10 * i,
                                          "length": 200, "seconds": 0.1} for i in range(episodes)])
    write_table(d / "tracking.parquet", [{"gradient_step": 50, "step": 150, "saturation_ratio": 0.5,
                                          "preact_max_abs": 3.0, "rho": 0.01}])
    write_json(d / "summary.json", {
        "status": "finished", "error": None, "algo": "sac", "env": "Pendulum-v1", "actor_lr": 0.001,
        "critic_lr": 0.001, "seed": seed, "steps_requested": 200 * episodes, "steps_run": 200 * episodes,
        "gradient_steps": gradient_steps, "episodes_run": episodes, "stopping_step": None,
        "grad_death_step": None, "critic_stopped": False, "diverged": False, "max_abs_preactivation": 3.0,
        "final_saturation_ratio": 0.5, "return_first10": -1000.0, "final_return": -900.0,
        "seconds_per_step": 0.01})
    write_json(root / "sweep.json", {"runs": []})


def _page_text(html: Path) -> str:
    return re.sub(r"base64,[A-Za-z0-9+/=]+", "", html.read_text())


def test_threshold_comes_from_the_criterion_window():
    assert IMPROVEMENT_WINDOW == 0.1 and MIN_EPISODES == 10  # windows of 10 % hold a whole episode from 10 on
    assert MIN_EPISODES * IMPROVEMENT_WINDOW >= 1 > (MIN_EPISODES - 1) * IMPROVEMENT_WINDOW


def test_sb3_runs_too_short_or_without_gradient_steps_are_warned_about(tmp_path, capsys):
    _sb3_run(tmp_path, 1, episodes=MIN_EPISODES - 1, gradient_steps=1000)
    _sb3_run(tmp_path, 2, episodes=MIN_EPISODES, gradient_steps=1000)
    rs = load_results(tmp_path)
    assert sorted(run_length(r) for r in rs.runs) == [(MIN_EPISODES - 1, 1000), (MIN_EPISODES, 1000)]
    warning = short_runs_warning(rs)
    assert warning is not None and "1 of 2 finished runs have fewer than 10 episodes" in warning
    html = build_report(tmp_path)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "viable count is not meaningful" in ln]
    assert len(lines) == 1 and lines[0].startswith("gradasym: warning: ")
    assert _page_text(html).count("viable count is not meaningful") == 2  # summary and viable section
    assert "viable count is not meaningful" in (html.parent / "report.md").read_text()


def test_long_enough_runs_get_no_warning_and_no_training_is_warned(tmp_path, capsys):
    ok = tmp_path / "ok"
    for seed in (1, 2):
        _sb3_run(ok, seed, episodes=MIN_EPISODES, gradient_steps=500)
    assert short_runs_warning(load_results(ok)) is None
    build_report(ok)
    assert "not meaningful" not in capsys.readouterr().err
    assert "not meaningful" not in _page_text(ok / "report" / "report.html")
    untrained = tmp_path / "untrained"
    _sb3_run(untrained, 1, episodes=50, gradient_steps=0)  # learning never started
    assert "1 of 1 finished runs" in short_runs_warning(load_results(untrained))


def test_paper_report_warns_about_short_ccm_madrl_runs(tmp_path, capsys):
    short = syn.write_sweep(tmp_path / "short", actor_lrs=(0.1,), critic_lrs=(0.1,), seeds=(0, 1),
                            stops={}, episodes=5, log_interval=1)
    rs = load_results(short)
    assert [run_length(r) for r in rs.runs] == [(5, 4), (5, 4)]  # the first update follows episode 2
    html = build_report(short)
    err = capsys.readouterr().err
    assert err.count("viable count is not meaningful") == 1 and "2 of 2 finished runs" in err
    text = _page_text(html)
    assert "Warning" in text and text.count("viable count is not meaningful") == 2
    assert "viable count is not meaningful" in (html.parent / "report.md").read_text()
    long = syn.write_sweep(tmp_path / "long", actor_lrs=(0.1,), critic_lrs=(0.1,), seeds=(0, 1), stops={},
                           episodes=40)
    assert short_runs_warning(load_results(long)) is None


@pytest.mark.parametrize("episodes,expected", [(1, True), (9, True), (10, False)])
def test_each_run_is_judged_by_its_own_length(tmp_path, episodes, expected):
    _sb3_run(tmp_path, 1, episodes=episodes, gradient_steps=10)
    assert (short_runs_warning(load_results(tmp_path)) is not None) is expected
