"""Reading run and sweep folders, including partial and broken ones."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import synthetic as syn
from gradasym.report.load import (
    SUMMARY_COLUMNS, load_results, parse_run_id, read_run, runs_frame, summarize_sweep, write_sweep_summary,
)


def test_summarize_sweep_has_the_contract_columns_and_values(base_sweep):
    df = summarize_sweep(base_sweep)
    assert list(df.columns) == SUMMARY_COLUMNS
    assert len(df) == 48
    row = df.set_index("run_id").loc["alr0.01_clr0.0001_s0"]
    assert row["stopping_episode"] == syn.SCALED_TABLE3[(0.01, 0.0001)] + syn.SEED_OFFSETS[0]
    assert row["actors_stopped"] == 5 and row["status"] == "finished" and row["presets"] == ""
    never = df.set_index("run_id").loc["alr0.0001_clr0.001_s1"]
    assert pd.isna(never["stopping_episode"]) and never["actors_stopped"] == 0
    assert (df["critic_stopped"] == False).all()  # noqa: E712


def test_summary_parquet_written_by_the_sweep_helper_round_trips(base_sweep, tmp_path):
    on_disk = pd.read_parquet(base_sweep / "summary.parquet")
    pd.testing.assert_frame_equal(on_disk, summarize_sweep(base_sweep))
    assert (base_sweep / "summary.csv").is_file()


def test_summarize_sweep_on_partial_sweep(partial_sweep):
    df = summarize_sweep(partial_sweep).set_index("run_id")
    assert df.loc["alr0.1_clr0.001_s0", "status"] == "failed"
    assert df.loc["alr0.1_clr0.001_s0", "error"] == "RuntimeError: boom"
    assert df.loc["alr0.0001_clr0.001_s1", "status"] == "running"
    assert df.loc["alr0.0001_clr0.001_s1", "episodes_run"] == 50
    # summary.json missing: reconstructed from config.json + episodes.parquet
    assert df.loc["alr0.1_clr0.1_s1", "status"] == "no summary"
    assert df.loc["alr0.1_clr0.1_s1", "stopping_episode"] == 16
    assert df.loc["alr0.1_clr0.1_s1", "actor_lr"] == 0.1
    # corrupt summary.json: reconstructed too
    assert df.loc["alr0.0001_clr0.0001_s1", "status"] == "no summary"
    # only in sweep.json
    assert df.loc["alr0.0001_clr0.1_s1", "status"] == "pending"
    assert df.loc["alr0.01_clr0.01_s0", "status"] == "pending"
    assert df.loc["alr0.01_clr0.01_s0", "critic_lr"] == 0.01
    assert df.loc["alr0.1_clr0.001_layernorm_s0", "presets"] == "layernorm"


def test_write_sweep_summary_writes_parquet_and_csv(partial_sweep, tmp_path):
    df = write_sweep_summary(partial_sweep)
    assert len(pd.read_parquet(partial_sweep / "summary.parquet")) == len(df)
    assert len(pd.read_csv(partial_sweep / "summary.csv")) == len(df)


def test_load_module_does_not_import_matplotlib():
    code = ("import sys; import gradasym.report; from gradasym.report.load import summarize_sweep; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parse_run_id():
    assert parse_run_id("alr0.0001_clr0.1_s3") == {"seed": 3, "presets": [], "actor_lr": 1e-4, "critic_lr": 0.1}
    assert parse_run_id("alr1e-05_clr0.001_reward-norm_s0")["presets"] == ["reward-norm"]
    assert parse_run_id("alr1e-05_clr0.001_reward-norm_s0")["actor_lr"] == 1e-5
    assert parse_run_id("something-else") == {}


def test_load_results_detects_layouts(base_sweep, single_run, tmp_path):
    assert load_results(base_sweep).kind == "sweep"
    rs = load_results(base_sweep / "runs")
    assert rs.kind == "runs" and len(rs.runs) == 48 and rs.label == "sweep"
    one = load_results(single_run)
    assert one.kind == "run" and len(one.runs) == 1
    assert load_results(tmp_path / "nope").kind == "empty"
    (tmp_path / "empty").mkdir()
    assert load_results(tmp_path / "empty").problems == [f"{tmp_path / 'empty'} holds no sweep or run folders"]
    (tmp_path / "empty" / "sweep.json").write_text("{")      # damaged: named, not only "nothing here"
    problems = load_results(tmp_path / "empty").problems
    assert len(problems) == 2 and problems[1].startswith("sweep.json unreadable (JSONDecodeError")


def test_read_run_reports_problems(partial_sweep):
    run = read_run(partial_sweep / "runs" / "alr0.1_clr0.0001_s1")
    assert run.tracking is None and any("tracking.parquet unreadable" in p for p in run.problems)
    empty = read_run(partial_sweep / "runs" / "alr0.1_clr0.1_s9")
    assert empty.status == "no summary" and empty.episodes is None
    assert empty.summary["actor_lr"] == 0.1 and empty.summary["seed"] == 9


def test_runs_frame_stop_value_convention(base_sweep):
    df = runs_frame(load_results(base_sweep)).set_index("run_id")
    never = df.loc["alr0.001_clr0.01_s0"]
    assert not never["stopped"] and never["stop_value"] == 200 and never["censored"]
    stopped = df.loc["alr0.1_clr0.1_s2"]
    assert stopped["stopped"] and stopped["stop_value"] == 16 + syn.SEED_OFFSETS[2]


@pytest.mark.parametrize("bad", ["[]", "null", "42"])
def test_summary_json_that_is_not_an_object(tmp_path, bad):
    spec = syn.RunSpec(0.1, 0.1, 0, stop_episode=10, episodes=40)
    run_dir = syn.write_run(tmp_path / "alr0.1_clr0.1_s0", spec)
    (run_dir / "summary.json").write_text(bad)
    run = read_run(run_dir)
    assert run.status == "no summary" and run.summary["stopping_episode"] == 10


def test_sweep_table_fills_in_runs_without_summary(tmp_path):
    root = tmp_path / "sweep"
    spec = syn.RunSpec(0.1, 0.1, 0, write_summary=False, write_episodes=False, write_tracking=False)
    syn.write_run(root / "runs" / syn.run_id(0.1, 0.1, 0), spec)
    pd.DataFrame([
        {"run_id": "alr0.1_clr0.1_s0", "actor_lr": 0.1, "critic_lr": 0.1, "seed": 0, "presets": "",
         "status": "failed", "error": "RuntimeError: died early"},
        {"run_id": "alr0.1_clr0.01_layernorm_s1", "actor_lr": 0.1, "critic_lr": 0.01, "seed": 1,
         "presets": "layernorm", "status": "failed", "error": "worker lost"},
        {"run_id": "alr0.1_clr0.001_s0", "actor_lr": 0.1, "critic_lr": 0.001, "seed": 0, "presets": "",
         "status": "pending", "error": None},
    ]).to_parquet(root / "summary.parquet")
    rs = load_results(root)
    runs = {r.run_id: r for r in rs.runs}
    assert set(runs) == {"alr0.1_clr0.1_s0", "alr0.1_clr0.01_layernorm_s1"}
    assert runs["alr0.1_clr0.1_s0"].status == "failed"
    assert runs["alr0.1_clr0.1_s0"].summary["error"] == "RuntimeError: died early"
    assert runs["alr0.1_clr0.01_layernorm_s1"].summary["presets"] == ["layernorm"]
    assert "run folder missing" in runs["alr0.1_clr0.01_layernorm_s1"].problems[0]
