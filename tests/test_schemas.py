"""A damaged or foreign run folder is never read as valid (issue 22, item 2).

One schema check per file kind (``gradasym.schemas``): ``summary.json``, the three tables and
``checkpoint.pt``. ``gradasym run --resume`` and the sweep refuse such a file with one line naming
it (exit 2); the report lists it under "What is missing" (run and file) and does not use it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from gradasym.cli import main
from gradasym.io import write_json, write_table
from gradasym.report.load import load_results, read_run
from gradasym.report.summary import missing_items
from gradasym.runfolder import _torch_load, _torch_save
from gradasym.schemas import IDENTITY_KEY, check_checkpoint, check_summary, run_identity

TINY = ["--episodes", "4", "--n-agents", "12", "--batch-size", "8", "--set", "env.k_channel=4",
        "--set", "env.n_units=3", "--set", "agent.memory_capacity=500", "--log-interval", "2",
        "--checkpoint-interval", "2"]
SWEEP = ["--axis", "agent.actor_lr=0.1", "--axis", "agent.critic_lr=0.1", "--seeds", "1", "2", "--no-live", *TINY]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """Two finished runs (seeds 1 and 2) of one configuration, with their replay kept."""
    out = tmp_path_factory.mktemp("schemas") / "sweep"
    assert main(["sweep", "--out", str(out), *SWEEP, "--keep-replay"]) == 0
    return out


@pytest.fixture()
def sweep(finished_sweep, tmp_path) -> Path:
    copy = tmp_path / "sweep"
    shutil.copytree(finished_sweep, copy)
    return copy


def _runs(sweep: Path) -> tuple[Path, Path]:
    one, two = sorted((sweep / "runs").iterdir())
    return one, two


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("gradasym: warning:")]
    assert "Traceback" not in err and len(lines) == 1 and re.match(r"gradasym( sweep)?: error: ", lines[0]), err
    return lines[0]


def _resume(run: Path, episodes: int = 6) -> list[str]:
    seed = run.name.rsplit("_s", 1)[1]
    return ["run", "--resume", "--out", str(run), *TINY, "--actor-lr", "0.1", "--critic-lr", "0.1", "--seed", seed,
            "--episodes", str(episodes), "--keep-replay", "--quiet"]


def _missing(sweep: Path) -> list[str]:
    return missing_items(load_results(sweep, label="s"))


# ------------------------------------------------------------------ summary.json
def test_a_summary_copied_from_another_run_is_refused_and_not_reported(sweep, capsys) -> None:
    one, two = _runs(sweep)
    shutil.copy(two / "summary.json", one / "summary.json")
    reward_of_two = json.loads((two / "summary.json").read_text())["reward_last10"]
    capsys.readouterr()
    assert main(_resume(one)) == 2
    err = _one_line_error(capsys)
    assert "summary.json belongs to another run" in err and str(one) in err
    assert main(["sweep", "--out", str(sweep), *SWEEP]) == 2
    err = _one_line_error(capsys)
    assert "summary.json belongs to another run" in err and one.name in err
    missing = _missing(sweep)
    assert any(m.startswith(f"s/{one.name}: ") and "summary.json belongs to another run" in m for m in missing)
    run = read_run(one)
    assert run.summary_source == "reconstructed" and run.summary["seed"] == 1
    assert run.summary["reward_last10"] != reward_of_two  # recomputed from its own episodes


def test_summaries_of_older_runs_are_compared_on_shared_fields() -> None:
    config = {"algo": "ccm-madrl", "agent": {"actor_lr": 0.1, "critic_lr": 0.1}, "run": {"seed": 1}, "presets": []}
    assert check_summary({"status": "finished", "seed": 1, "actor_lr": 0.1}, config) is None
    assert "belongs to another run (seed 2" in check_summary({"status": "finished", "seed": 2}, config)
    assert "presets" in check_summary({"presets": ["layernorm"]}, config)
    mine = {"status": "finished", IDENTITY_KEY: run_identity(config)}
    assert check_summary(mine, config) is None
    longer = {**config, "run": {"seed": 1, "episodes": 99, "threads": 2}, "version": "9"}
    assert check_summary(mine, longer) is None  # extended / other threads: still the same run


@pytest.mark.parametrize("key, value", [("reward_last10", "12.5"), ("stopping_episode", [3]),
                                        ("critic_stopped", "yes"), ("per_agent_stop_episode", "none")])
def test_non_numeric_summary_fields_are_never_used(sweep, capsys, key, value) -> None:
    """The report lists the file and does not use it; a resume (run or sweep) says so and rewrites it
    from the checkpoint, as it does with an unreadable summary."""
    one, _ = _runs(sweep)
    summary = json.loads((one / "summary.json").read_text())
    good = summary[key]
    summary[key] = value
    write_json(one / "summary.json", summary)
    assert any(f"summary.json: {key} is" in m and m.startswith(f"s/{one.name}: ") for m in _missing(sweep))
    assert read_run(one).summary.get(key) != value
    table = load_results(sweep, label="s")
    assert all(r.summary.get(key) != value for r in table.runs)
    capsys.readouterr()
    assert main(_resume(one, episodes=4)) == 0
    assert f"summary.json: {key} is" in capsys.readouterr().err  # a warning: it is rewritten
    assert json.loads((one / "summary.json").read_text())[key] == good
    write_json(one / "summary.json", summary)
    assert main(["sweep", "--out", str(sweep), *SWEEP]) == 0  # the sweep resumes the run, which rewrites it
    assert json.loads((one / "summary.json").read_text())[key] == good


# ------------------------------------------------------------------ tables
def _edit_table(path: Path, edit) -> None:
    write_table(path, edit(pd.read_parquet(path)))  # written without the run's identity


@pytest.mark.parametrize("name, edit, message", [
    ("episodes.parquet", None, "episodes.parquet belongs to another run"),
    ("tracking.parquet", None, "tracking.parquet belongs to another run"),
    ("episodes.parquet", lambda df: df.drop(columns=["reward"]), "episodes.parquet lacks the column 'reward'"),
    ("episodes.parquet", lambda df: df.assign(reward=df["reward"].astype(str)), "column 'reward' does not hold"),
    ("tracking.parquet", lambda df: df.assign(rho="x"), "column 'rho' does not hold numbers"),
    ("episodes.parquet", lambda df: df.iloc[:2], "holds 2 episodes, its finished run's summary.json 4"),
    ("episodes.parquet", lambda df: df.assign(episode=df["episode"] * 2), "not numbered 1..4"),
])
def test_foreign_or_malformed_tables_are_refused(sweep, capsys, name, edit, message) -> None:
    one, two = _runs(sweep)
    if edit is None:
        shutil.copy(two / name, one / name)
    else:
        _edit_table(one / name, edit)
    assert main(_resume(one)) == 2
    assert message in _one_line_error(capsys)
    assert main(["sweep", "--out", str(sweep), *SWEEP]) == 2
    assert message in _one_line_error(capsys)
    assert any(message in m and m.startswith(f"s/{one.name}: ") for m in _missing(sweep))
    run = read_run(one)
    assert (run.episodes if name == "episodes.parquet" else run.tracking) is None  # not used


def test_deleted_tables_of_a_finished_run_are_named_and_restored(sweep, capsys) -> None:
    one, _ = _runs(sweep)
    before = pd.read_parquet(one / "episodes.parquet")
    (one / "episodes.parquet").unlink()
    (one / "tracking.parquet").unlink()
    missing = _missing(sweep)
    assert any(f"s/{one.name}: " in m and "episodes.parquet missing although the run finished" in m
               and "--resume" in m for m in missing)
    assert main(_resume(one, episodes=4)) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(one / "episodes.parquet"), before)
    assert (one / "tracking.parquet").is_file()


def test_a_foreign_run_folder_under_runs_is_not_counted(sweep) -> None:
    one, two = _runs(sweep)
    shutil.copytree(one, sweep / "runs" / "alr0.5_clr0.5_s9")
    rs = load_results(sweep, label="s")
    assert sorted(r.run_id for r in rs.runs) == [one.name, two.name]
    assert any("runs/alr0.5_clr0.5_s9 is not a run of this sweep" in m for m in missing_items(rs))


# ------------------------------------------------------------------ checkpoint.pt
def _edit_checkpoint(run: Path, edit) -> None:
    (run / "checkpoint.prev.pt").unlink(missing_ok=True)
    state = _torch_load(run / "checkpoint.pt")
    edit(state)
    _torch_save(run / "checkpoint.pt", state, None)


def _truncate(s):
    s["episode_rows"] = s["episode_rows"][:2]


def _lower(s):
    s["episodes_done"] = 2


def _renumber(s):
    s["episode_rows"][1]["episode"] = 9


def _drop_monitor(s):
    del s["monitor"]


def _drop_nested(s):
    del s["agent"]["critic"]


def _wrong_type(s):
    s["agent"]["n_updates"] = "3"


def _wrong_shape(s):
    s["agent"]["actors"]["flat"] = torch.zeros(3, 5)


def _wrong_dtype(s):
    s["monitor"]["actor_stop"] = s["monitor"]["actor_stop"].double()


def _not_a_mapping(s):
    s["agent"] = [1, 2]


@pytest.mark.parametrize("edit, message", [
    (_truncate, "checkpoint says 4 episodes done but holds 2 episode rows"),
    (_lower, "checkpoint says 2 episodes done but holds 4 episode rows"),
    (_renumber, "episode rows are not episodes 1..4"),
    (_drop_monitor, "checkpoint lacks the key(s) monitor"),
    (_drop_nested, "checkpoint lacks the key(s) agent.critic"),
    (_wrong_type, "checkpoint key agent.n_updates is str, not a number"),
    (_wrong_shape, "checkpoint key agent.actors.flat is a float32 (3, 5) tensor, this configuration needs float32 (12,"),
    (_wrong_dtype, "checkpoint key monitor.actor_stop is a float64 (12,) tensor"),
    (_not_a_mapping, "checkpoint key agent is a list, not a mapping"),
])
def test_damaged_checkpoints_are_refused_before_loading(sweep, capsys, edit, message) -> None:
    one, _ = _runs(sweep)
    _edit_checkpoint(one, edit)
    before = (one / "episodes.parquet").read_bytes()
    assert main(_resume(one)) == 2
    err = _one_line_error(capsys)
    assert message in err and "checkpoint.pt" in err
    assert (one / "episodes.parquet").read_bytes() == before  # nothing resumed, nothing rewritten


def test_a_good_checkpoint_passes_its_own_check(sweep) -> None:
    one, _ = _runs(sweep)
    state = _torch_load(one / "checkpoint.pt")
    check_checkpoint(state, state)
    assert main(_resume(one, episodes=6)) == 0
    assert len(pd.read_parquet(one / "episodes.parquet")) == 6
