"""The report for algorithms without the paper's extras, on hand-made SB3-style run folders (no training)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradasym.io import write_json, write_table
from gradasym.report import build_report
from gradasym.report.generic import config_summary, generic_runs
from gradasym.report.load import load_results


def _run(root: Path, alr: float, seed: int, stop: int | None, status: str = "finished", algo: str = "sac") -> None:
    rid = f"alr{alr!r}_clr0.001_s{seed}" + ("" if algo == "sac" else f"_{algo}")
    d = root / "runs" / rid
    write_json(d / "config.json", {"algo": algo, "env": {"id": "Pendulum-v1"}, "agent": {"actor_lr": alr},
                                   "run": {"seed": seed, "steps": 400}})
    rng = np.random.default_rng(seed)
    write_table(d / "episodes.parquet", [{"episode": i + 1, "step": 200 * (i + 1), "return": -1000 + 100 * i
                                          + float(rng.normal()), "length": 200, "seconds": 0.1} for i in range(2)])
    write_table(d / "tracking.parquet", [{"gradient_step": g, "step": g + 100, "saturation_ratio": 0.5,
                                          "preact_max_abs": 3.0 + g, "rho": 0.0 if stop else 0.01,
                                          "dead_output_frac": 0.25 if stop else 0.0}
                                         for g in (50, 100)])
    write_json(d / "summary.json", {
        "status": status, "error": None if status == "finished" else "RuntimeError: boom", "algo": algo,
        "env": "Pendulum-v1", "actor_lr": alr, "critic_lr": 0.001, "seed": seed, "steps_requested": 400,
        "steps_run": 400, "gradient_steps": 300, "stopping_step": stop, "grad_death_step": stop,
        "critic_stopped": False, "diverged": False, "max_abs_preactivation": 103.0, "final_saturation_ratio": 0.5,
        "return_first10": -1000.0, "final_return": -900.0 + seed if stop else -1000.0, "seconds_per_step": 0.01})
    write_json(root / "sweep.json", {"runs": []})


def test_generic_report_on_sac_folders(tmp_path):
    _run(tmp_path, 0.1, 1, 40)
    _run(tmp_path, 0.1, 2, 60)
    _run(tmp_path, 0.001, 1, None)
    _run(tmp_path, 0.001, 2, None, status="failed")
    runs = generic_runs(load_results(tmp_path))
    assert set(runs["unit"]) == {"environment steps"} and set(runs["stop_unit"]) == {"gradient steps"}
    agg = config_summary(runs, 0.05).set_index("actor_lr")
    assert agg.loc[0.1, "stopped"] == 2 and agg.loc[0.1, "stop_mean"] == 50 and agg.loc[0.1, "stop_n"] == 2
    assert agg.loc[0.1, "stop_lo"] < 50 < agg.loc[0.1, "stop_hi"]
    # the gradient-death step is read from summary.json's grad_death_step (summary_keys["grad_death"])
    assert agg.loc[0.1, "grad_dead"] == 2 and agg.loc[0.1, "death_mean"] == 50 and agg.loc[0.001, "grad_dead"] == 0
    assert agg.loc[0.001, "finished"] == 1 and agg.loc[0.001, "evaluated"] == 1  # failed seed not evaluated
    assert bool(agg.loc[0.1, "viable"]) and agg.loc[0.1, "improving"] == 2
    html = re.sub(r"base64,[A-Za-z0-9+/=]+", "", build_report(tmp_path).read_text())  # text, not images
    assert "sac" in html and "gradient steps" in html and "Table 3" not in html and "MEC" not in html
    assert "RuntimeError: boom" in html  # the failed run is listed as missing, not dropped
    drawn = {p.stem for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert {"fig_learning_curves", "fig_stopping_heatmap", "fig_grad_death_heatmap", "fig_saturation_time",
            "fig_preactivation_time", "fig_dead_output_time", "fig_rho_time"} <= drawn
    md = (tmp_path / "report" / "report.md").read_text()
    assert "1 of 2 configurations viable" in md
    assert "the actor gradient died in 2 of 4 runs" in md
    table = pd.read_csv(tmp_path / "report" / "tables" / "table_configurations.csv")
    assert set(table["actor_lr"]) == {0.1, 0.001}
    assert json.loads((tmp_path / "runs" / "alr0.1_clr0.001_s1" / "summary.json").read_text())["algo"] == "sac"


def test_a_generic_figure_that_fails_is_one_warning_line_and_its_traceback_goes_to_errors_log(tmp_path, caplog,
                                                                                               monkeypatch):
    import gradasym.report.generic as generic

    _run(tmp_path, 0.1, 1, 40)
    specs = generic._figure_specs

    def failing_specs(*args):
        def boom():
            raise RuntimeError("generic boom")
        first, *rest = specs(*args)
        return [(*first[:4], boom), *rest]

    monkeypatch.setattr(generic, "_figure_specs", failing_specs)
    with caplog.at_level("WARNING"):
        html = build_report(tmp_path).read_text()
    lines = [r.getMessage() for r in caplog.records if "generic boom" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    log = (tmp_path / "report" / "errors.log").read_text()
    assert "Traceback" in log and "generic boom" in log
    assert "internal error while drawing (RuntimeError: generic boom)" in html


def test_ccm_madrl_folders_keep_the_paper_report(tmp_path):
    from gradasym.report.generic import is_paper_set

    write_json(tmp_path / "r" / "config.json", {"env": {"n_agents": 4}})  # no "algo": CCM-MADRL
    write_json(tmp_path / "r" / "summary.json", {"status": "finished"})
    assert is_paper_set(load_results(tmp_path / "r"))
    write_json(tmp_path / "s" / "config.json", {"algo": "td3", "env": {"id": "Pendulum-v1"}})
    write_json(tmp_path / "s" / "summary.json", {"status": "finished", "algo": "td3"})
    assert not is_paper_set(load_results(tmp_path / "s"))
    pytest.importorskip("matplotlib")


def test_runs_of_two_algorithms_are_not_pooled_as_seeds(tmp_path, capsys):
    """A DDPG and a TD3 run at the same learning rates used to be one configuration with "2 seeds"."""
    from gradasym.cli import main

    _run(tmp_path, 0.1, 1, 40, algo="ddpg")
    _run(tmp_path, 0.1, 1, 40, algo="td3")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds runs of several algorithms or tasks (ddpg on Pendulum-v1: 1 run(s); td3 on Pendulum-v1: 1 " in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "report").exists()  # before anything is written


def test_an_sb3_set_compared_with_a_ccm_madrl_one_is_left_out_and_said(tmp_path, capsys):
    import synthetic as syn

    ccm = syn.write_sweep(tmp_path / "ccm", actor_lrs=(0.1,), critic_lrs=(0.1,), seeds=(0,))
    _run(tmp_path / "td3", 0.1, 1, 40, algo="td3")
    html = build_report(ccm, compare=[tmp_path / "td3"]).read_text()
    line = f"--compare {tmp_path / 'td3'}: it holds runs of another algorithm (td3); comparing is only implemented"
    assert line in html and line in (ccm / "report" / "report.md").read_text()
    assert line in capsys.readouterr().err
    assert "td3" not in re.sub(re.escape(line), "", (ccm / "report" / "report.md").read_text())  # not read as CCM


def test_unreadable_files_of_an_sb3_run_are_listed_as_missing(tmp_path):
    _run(tmp_path, 0.1, 1, 40)
    rid = "alr0.1_clr0.001_s1"
    (tmp_path / "runs" / rid / "tracking.parquet").write_text("garbage")
    build_report(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"- {rid}: tracking.parquet unreadable (ArrowInvalid" in md
    assert "## Runs" in md and "## What is missing" in md  # report.md has what report.html has
