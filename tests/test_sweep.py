"""Tests of gradasym.sweep: grid expansion, resumability, failures, parallelism, atomic files.

Most tests use :func:`fake_runner`, a fast stand-in for ``run_experiment`` that
writes a minimal valid run folder (config.json, checkpoint, summary.json) and is
deterministic, so an interrupted-then-resumed sweep must give exactly the same
summary as an uninterrupted one. One test uses the real runner on a tiny config
once ``gradasym.algos.ccm_madrl.runner`` exists.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

import gradasym.config as config_module
from gradasym.config import Config, ConfigError
from gradasym.sweep import (SUMMARY_COLUMNS, SweepError, SweepInterrupted, SweepMismatchError, SweepResult,
                            SweepSpec, atomic_write, collect_summary, exit_code, load_spec, paper_axes,
                            reproduce, reproduce_spec, run_sweep, stopping_grid)
from gradasym.sweep import REDUCED_EPISODES, FULL_EPISODES
from gradasym.sweep import add_cli
from gradasym.sweep.commands import spec_from_args
from gradasym.io import write_json
from gradasym.runfolder import FolderKindError
from gradasym.sweep.core import SweepDiskFullError
from gradasym.sweep.store import SweepLock, read_run_summary

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fake runner
def fake_runner(cfg: Config, out_dir: str | Path, resume: bool = True,
                progress: Callable[[dict], None] | None = None, show_progress: bool = False,
                *, crash_dir: str | None = None, fail_ids: tuple[str, ...] = (),
                sleep: float = 0.0) -> dict:
    """Deterministic stand-in for run_experiment (same contract, tiny run folder).

    * actor_lr >= 0.01: all actors "stop" at episode episodes // 2, else never;
    * resumes from checkpoint.json; returns at once if already finished;
    * ``crash_dir/<run_id>`` (content "interrupt", "error", "full" = ENOSPC, "wait" = sleep
      120 s, or "kill:<other run id>" = SIGKILL itself once the other run's marker is
      consumed) makes the run crash once at episode 2 (the marker is consumed);
    * runs in ``fail_ids`` always fail (summary status "failed", then raise);
    * every call leaves a file in ``<sweep>/calls/`` so tests can count calls.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_id = out.name
    calls = out.parent.parent / "calls"
    calls.mkdir(exist_ok=True)
    (calls / f"{run_id}.{uuid.uuid4().hex}").touch()
    cfg_dict = cfg.to_dict()
    summary_path = out / "summary.json"
    if resume and summary_path.exists():
        old = read_run_summary(out) or {}  # unreadable: resume and rewrite it, as the runner does
        saved_cfg = json.loads((out / "config.json").read_text())
        saved_cfg.pop("version", None)
        same = {k: v for k, v in saved_cfg.items() if k != "run"} == json.loads(
            json.dumps({k: v for k, v in cfg_dict.items() if k != "run"}))
        if old.get("status") == "finished" and same:
            return old
    write_json(out / "config.json", {**cfg_dict, "version": "test"})
    episodes, n = cfg.run.episodes, cfg.env.n_agents
    stop_at = max(1, episodes // 2) if cfg.agent.actor_lr >= 0.01 else None
    state = {"episode": 0, "rewards": []}
    ckpt = out / "checkpoint.json"
    if resume and ckpt.exists():
        state = json.loads(ckpt.read_text())
    base = {"actor_lr": cfg.agent.actor_lr, "critic_lr": cfg.agent.critic_lr, "seed": cfg.run.seed,
            "presets": list(cfg.presets), "actor_update": cfg.agent.actor_update,
            "episodes_requested": episodes, "version": "test"}
    write_json(summary_path, {**base, "status": "running", "error": None,
                               "episodes_run": state["episode"]})
    marker = Path(crash_dir) / run_id if crash_dir else None
    for ep in range(state["episode"] + 1, episodes + 1):
        reward = -(ep * cfg.agent.actor_lr * 10 + cfg.agent.critic_lr + cfg.run.seed / 1000)
        state["rewards"].append(reward)
        state["episode"] = ep
        write_json(ckpt, state)
        stopped = n if stop_at is not None and ep >= stop_at else 0
        if progress is not None:
            progress({"episode": ep, "episodes": episodes, "reward": reward,
                      "saturation_ratio": 0.99 if stopped else 0.1, "actors_stopped": stopped,
                      "seconds_per_episode": 0.01})
        if sleep:
            time.sleep(sleep)
        if ep == 2 and marker is not None and marker.exists():
            kind = marker.read_text().strip()
            marker.unlink()
            if kind == "interrupt":
                raise KeyboardInterrupt
            if kind == "full":
                raise OSError(errno.ENOSPC, "No space left on device", str(ckpt))
            if kind == "wait":  # stay in flight (until the pool is torn down)
                time.sleep(120)
            elif kind.startswith("kill:"):  # once the other run waits, die like an OOM kill
                other = Path(crash_dir) / kind.split(":", 1)[1]
                deadline = time.monotonic() + 120  # spawning the other worker can take long on a busy machine
                while other.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
            else:
                raise RuntimeError(f"simulated crash in {run_id}")
        if run_id in fail_ids:
            write_json(summary_path, {**base, "status": "failed", "error": "RuntimeError: boom",
                                       "episodes_run": ep})
            raise RuntimeError("boom")
    rewards = state["rewards"]
    k = max(1, len(rewards) // 10)
    summary = {
        **base, "status": "finished", "error": None, "episodes_run": episodes,
        "stopping_episode": stop_at,
        "per_agent_stop_episode": [stop_at] * n,
        "per_agent_grad_death_episode": [stop_at] * n,
        "all_frozen_at_end": stop_at is not None, "critic_stopped": False, "critic_stop_episode": None,
        "max_abs_preactivation": cfg.agent.actor_lr * 1e4, "final_saturation_ratio": 0.99 if stop_at else 0.1,
        "final_rho": 1e-6, "reward_first10": sum(rewards[:k]) / k, "reward_last10": sum(rewards[-k:]) / k,
        "seconds_total": 0.01 * episodes, "seconds_per_episode": 0.01, "early_stopped": False,
    }
    write_json(summary_path, summary)
    return summary


def calls_per_run(sweep: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in (sweep / "calls").glob("*"):
        rid = f.name.rsplit(".", 1)[0]
        counts[rid] = counts.get(rid, 0) + 1
    return counts


def small_spec(seeds: list[int] | None = None, episodes: int = 6, **axes: list[Any]) -> SweepSpec:
    base = Config()
    base.run.episodes = episodes
    base.env.n_agents = 10
    return SweepSpec(base=base, axes=axes or {"agent.actor_lr": [1e-3, 0.1], "agent.critic_lr": [1e-4, 1e-2]},
                     seeds=seeds or [42])


def sweep(spec: SweepSpec, out: Path, runner: Callable = fake_runner, **kw: Any) -> pd.DataFrame:
    kw.setdefault("live", False)
    kw.setdefault("log", lambda s: None)
    return run_sweep(spec, out, runner=runner, **kw)


@pytest.fixture
def fake_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "presets"
    d.mkdir()
    (d / "layernorm.toml").write_text('description = "x"\n[agent]\nactor_norm = "layernorm"\n')
    (d / "reward-norm.toml").write_text('description = "y"\n[agent]\nreward_norm = true\n')
    monkeypatch.setattr(config_module, "PRESET_DIRS", [d])
    return d


# ---------------------------------------------------------------- grid / run ids
def test_default_grid_is_the_papers_4x4() -> None:
    runs = SweepSpec().expand()
    assert len(runs) == 16
    ids = [r.run_id for r in runs]
    assert ids[0] == "alr0.0001_clr0.0001_s42"
    assert "alr0.1_clr0.0001_s42" in ids and ids[-1] == "alr0.1_clr0.1_s42"
    assert len(set(ids)) == 16
    r = runs[13]
    assert (r.config.agent.actor_lr, r.config.agent.critic_lr, r.config.run.seed) == (0.1, 0.001, 42)
    assert r.overrides == {"agent.actor_lr": 0.1, "agent.critic_lr": 0.001, "run.seed": 42}


def test_seeds_extra_axes_and_presets_in_run_ids(fake_presets: Path) -> None:
    spec = SweepSpec(axes={"agent.actor_lr": ["0.01"], "agent.batch_size": [32, 64],
                           "agent.actor_hidden": ["512x128"]},
                     seeds=[1, 2], preset_combos=[[], ["layernorm", "reward-norm"]])
    runs = spec.expand()
    assert len(runs) == 2 * 2 * 2
    ids = [r.run_id for r in runs]
    assert ids[0] == "alr0.01_clr0.001_batch_size32_actor_hidden512x128_s1"  # seed-major, base critic_lr
    assert "alr0.01_clr0.001_batch_size64_actor_hidden512x128_layernorm+reward-norm_s2" in ids
    r = [r for r in runs if "layernorm" in r.run_id][0]
    assert r.config.agent.actor_norm == "layernorm" and r.config.agent.reward_norm is True
    assert r.presets == ["layernorm", "reward-norm"] and r.config.agent.actor_hidden == (512, 128)
    assert isinstance(spec.axes["agent.actor_lr"][0], float)  # strings converted to the field type


def test_base_presets_appear_in_run_ids(fake_presets: Path) -> None:
    spec = reproduce_spec(presets=["layernorm"])
    assert spec.expand()[0].run_id == "alr0.0001_clr0.0001_layernorm_s42"


@pytest.mark.parametrize("axes, seeds, match", [
    ({"agent.actor_lrr": [1]}, None, "unknown field"),
    ({"run.seed": [1, 2]}, None, "seeds"),
    ({"agent.actor_lr": []}, None, "no values"),
    ({"agent.actor_lr": [0.1, 0.1]}, None, "twice"),
    ({"agent.actor_lr": [-1.0]}, None, "positive"),
    ({"agent.actor_lr": [0.1]}, [3, 3], "twice"),
])
def test_bad_grids_fail_before_running(axes: dict, seeds: list | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SweepSpec(axes=axes, seeds=seeds).expand()


def test_paper_grid_file_matches_python_definition() -> None:
    spec = SweepSpec.from_file(REPO / "configs" / "grids" / "paper.toml")
    assert spec.axes == paper_axes() and spec.seeds == [42]
    assert spec.base.run.episodes == 2000 and spec.base.run.early_stop
    assert spec.base.to_dict() == reproduce_spec(full=True).base.to_dict()
    assert [r.run_id for r in spec.expand()] == [r.run_id for r in SweepSpec().expand()]


def test_grid_file_with_overrides_and_cli_axes(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text(textwrap.dedent("""
        [grid]
        "agent.actor_lr" = [0.1]
        [sweep]
        seeds = [5, 6]
        [run]
        episodes = 7
        [env]
        n_agents = 12
    """))
    spec = SweepSpec.from_file(f, overrides={"run.episodes": "9"}, axes={"agent.critic_lr": ["1e-3", "1e-2"]})
    assert spec.base.run.episodes == 9 and spec.base.env.n_agents == 12 and spec.seeds == [5, 6]
    assert [r.run_id for r in spec.expand()][:2] == ["alr0.1_clr0.001_s5", "alr0.1_clr0.01_s5"]
    f.write_text('[sweep]\nseed = [1]\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        SweepSpec.from_file(f)


@pytest.mark.parametrize("text, match", [
    ('[grid]\n"agent.batch_size" = "32"\n', r"grid axis 'agent\.batch_size' must be a list of values, got '32'"),
    ('[grid]\n"env.mode" = "TOBM"\n', r"grid axis 'env\.mode' must be a list of values, got 'TOBM'"),
    ('[grid]\n"agent.actor_lr" = 0.1\n', r"grid axis 'agent\.actor_lr' must be a list of values, got 0\.1"),
    ('[sweep]\nseeds = "42"\n', r"\[sweep\] seeds must be a list of integers, got '42'"),
    ("[sweep]\nseeds = 5\n", r"\[sweep\] seeds must be a list of integers, got 5"),
    ('[sweep]\npreset_combos = "layernorm"\n', r"\[sweep\] preset_combos must be a list of preset combinations"),
    ("[sweep]\npreset_combos = 5\n", r"\[sweep\] preset_combos must be a list of preset combinations"),
    ('presets = "layernorm"\n', r"'presets' must be a list of preset names"),
    ('[agent]\nactor_nrm = "none"\n', r"unknown field 'agent\.actor_nrm'"),                  # the base tables too
])
def test_grid_file_strings_and_scalars_are_not_lists(tmp_path: Path, capsys, text: str, match: str) -> None:
    """A string where a list belongs is refused naming the key and the file, not split into characters
    (and a bad field of the grid's config tables names the grid file, not a temporary copy)."""
    f = tmp_path / "g.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=rf"g\.toml: {match}"):
        SweepSpec.from_file(f)
    cli = pytest.importorskip("gradasym.cli")
    assert cli.main(["sweep", "--out", str(tmp_path / "s"), "--grid", str(f), "--no-live"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradasym sweep: error: ") and "g.toml" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"axes": {"agent.batch_size": "32"}}, r"sweep axis 'agent\.batch_size' must be a list of values, got '32'"),
    ({"axes": {"agent.actor_lr": 0.1}}, r"sweep axis 'agent\.actor_lr' must be a list of values"),
    ({"seeds": "42"}, r"sweep seeds must be a list of integers, got '42'"),
    ({"seeds": 5}, r"sweep seeds must be a list of integers, got 5"),
    ({"seeds": [None]}, r"sweep seeds must be integers, got None"),
    ({"seeds": [float("nan")]}, r"sweep seeds must be integers, got nan"),
    ({"preset_combos": "layernorm"}, r"sweep preset_combos must be a list of preset combinations"),
    ({"preset_combos": [5]}, r"a preset combination must be a list of names, got 5"),
])
def test_spec_arguments_that_are_not_lists_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SweepSpec(**kwargs)


def test_spec_round_trips_through_sweep_json(tmp_path: Path) -> None:
    spec = small_spec(seeds=[1, 2])
    sweep(spec, tmp_path / "s")
    again = load_spec(tmp_path / "s")
    assert [r.run_id for r in again.expand()] == [r.run_id for r in spec.expand()]
    assert [r.config.to_dict() for r in again.expand()] == [r.config.to_dict() for r in spec.expand()]


# ---------------------------------------------------------------- sweep folder
def test_sweep_writes_folder_summary_and_sweep_json(tmp_path: Path) -> None:
    out = tmp_path / "s"
    table = sweep(small_spec(seeds=[1, 2]), out)
    assert list(table.columns[: len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert len(table) == 8 and set(table["status"]) == {"finished"}
    assert (out / "summary.parquet").is_file() and (out / "summary.csv").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"), table)
    row = table.set_index("run_id").loc["alr0.1_clr0.0001_s2"]
    assert row["stopping_episode"] == 3 and row["actors_stopped"] == 10 and not row["critic_stopped"]
    assert row["presets"] == "" and row["seed"] == 2 and row["episodes_run"] == 6
    assert pd.isna(table.set_index("run_id").loc["alr0.001_clr0.0001_s1", "stopping_episode"])
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["axes"] == {"agent.actor_lr": [0.001, 0.1], "agent.critic_lr": [0.0001, 0.01]}
    assert doc["seeds"] == [1, 2] and doc["base_config"]["run"]["episodes"] == 6
    assert doc["run_ids"] == list(table["run_id"])
    assert doc["runs"][0]["overrides"] == {"agent.actor_lr": 0.001, "agent.critic_lr": 0.0001, "run.seed": 1}
    for rid in table["run_id"]:
        assert (out / "runs" / rid / "summary.json").is_file()
    # threads per run: the base config's run.threads (default 1; tests/test_threads.py)
    cfg = json.loads((out / "runs" / table["run_id"][0] / "config.json").read_text())
    assert cfg["run"]["threads"] == 1
    assert not list(out.glob(".*.tmp")) and not (out / ".sweep.lock").exists()
    assert collect_summary(out, write=False).equals(table)


def test_rerun_skips_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "s"
    first = sweep(small_spec(), out)
    assert set(calls_per_run(out).values()) == {1}
    second = sweep(small_spec(), out)
    assert set(calls_per_run(out).values()) == {1}  # nothing was run again
    pd.testing.assert_frame_equal(first, second)


def test_interrupt_then_resume_gives_the_uninterrupted_summary(tmp_path: Path) -> None:
    reference = sweep(small_spec(), tmp_path / "ref")
    out, crash = tmp_path / "s", tmp_path / "crash"
    crash.mkdir()
    (crash / "alr0.1_clr0.0001_s42").write_text("interrupt")  # third run, Ctrl-C at episode 2
    with pytest.raises(SweepInterrupted, match="resume"):
        sweep(small_spec(), out, runner=partial(fake_runner, crash_dir=str(crash)))
    partial_table = pd.read_parquet(out / "summary.parquet")
    assert list(partial_table["status"]) == ["finished", "finished", "interrupted", "pending"]
    assert json.loads((out / "runs/alr0.1_clr0.0001_s42/checkpoint.json").read_text())["episode"] == 2
    assert not (out / ".sweep.lock").exists()
    table = sweep(small_spec(), out, runner=partial(fake_runner, crash_dir=str(crash)))
    pd.testing.assert_frame_equal(table, reference)
    assert calls_per_run(out) == {"alr0.001_clr0.0001_s42": 1, "alr0.001_clr0.01_s42": 1,
                                  "alr0.1_clr0.0001_s42": 2, "alr0.1_clr0.01_s42": 1}


def interrupting_runner(cfg: Any, out_dir: str | Path, resume: bool = True, progress: Any = None,
                        show_progress: bool = False) -> dict:
    """A runner of any algorithm that is interrupted at once (Ctrl-C), leaving its folder unfinished."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    raise KeyboardInterrupt


def test_interrupted_message_says_what_a_rerun_does_per_algorithm(tmp_path: Path, monkeypatch) -> None:
    from gradasym import algos
    from gradasym.sweep.core import rerun_hint

    td3 = algos.get("td3").default_config()
    td3.run.steps = 300
    sb3_spec = SweepSpec(base=td3, axes={"agent.actor_lr": [1e-3, 0.1]}, seeds=[1])
    with pytest.raises(SweepInterrupted) as info:  # SB3 runs resume from their checkpoints
        sweep(sb3_spec, tmp_path / "sb3-resumes", runner=interrupting_runner)
    assert "unfinished runs resume from their last checkpoint" in str(info.value)
    # an algorithm that cannot resume gets the other message
    monkeypatch.setattr(type(algos.get("td3")), "can_resume", False)
    with pytest.raises(SweepInterrupted) as info:
        sweep(sb3_spec, tmp_path / "sb3", runner=interrupting_runner)
    text = str(info.value)
    assert "restart from scratch" in text and "td3 runs cannot resume" in text and "resume from" not in text
    with pytest.raises(SweepInterrupted) as info:
        sweep(small_spec(), tmp_path / "ccm", runner=interrupting_runner)
    assert "unfinished runs resume from their last checkpoint" in str(info.value)
    assert "scratch" not in str(info.value)
    mixed = rerun_hint(small_spec().expand() + sb3_spec.expand())
    assert mixed == ("ccm-madrl: unfinished runs resume from their last checkpoint; "
                     "td3: unfinished runs restart from scratch (td3 runs cannot resume)")


def test_run_left_running_by_a_crash_is_resumed(tmp_path: Path) -> None:
    reference = sweep(small_spec(), tmp_path / "ref")
    out = tmp_path / "s"
    sweep(small_spec(), out)
    run = out / "runs" / "alr0.1_clr0.01_s42"
    # As if the machine died at episode 3: checkpoint there, summary still "running".
    state = json.loads((run / "checkpoint.json").read_text())
    state["rewards"], state["episode"] = state["rewards"][:3], 3
    (run / "checkpoint.json").write_text(json.dumps(state))
    (run / "summary.json").write_text(json.dumps({"status": "running", "episodes_run": 3}))
    assert collect_summary(out, write=False).set_index("run_id").loc[run.name, "status"] == "running"
    table = sweep(small_spec(), out)
    pd.testing.assert_frame_equal(table, reference)
    assert calls_per_run(out)[run.name] == 2 and calls_per_run(out)["alr0.1_clr0.0001_s42"] == 1


def test_failed_run_is_recorded_and_others_complete(tmp_path: Path) -> None:
    reference = sweep(small_spec(), tmp_path / "ref")
    out, crash = tmp_path / "s", tmp_path / "crash"
    crash.mkdir()
    (crash / "alr0.001_clr0.01_s42").write_text("error")
    table = sweep(small_spec(), out, runner=partial(fake_runner, crash_dir=str(crash)))
    by_id = table.set_index("run_id")
    assert by_id.loc["alr0.001_clr0.01_s42", "status"] == "failed"
    assert "simulated crash" in by_id.loc["alr0.001_clr0.01_s42", "error"]
    assert (by_id.drop("alr0.001_clr0.01_s42")["status"] == "finished").all()
    result = SweepResult.from_table(table)
    assert result.failed == ["alr0.001_clr0.01_s42"] and result.exit_code == 1 and exit_code(table) == 1
    assert table.attrs["failed"] == ["alr0.001_clr0.01_s42"]
    assert "simulated crash" in result.describe()
    assert SweepResult.from_dir(out).failed == ["alr0.001_clr0.01_s42"]
    # Rerun: the failed run is retried (resumed from its checkpoint), the others skipped.
    again = sweep(small_spec(), out, runner=partial(fake_runner, crash_dir=str(crash)))
    pd.testing.assert_frame_equal(again, reference)
    assert SweepResult.from_table(again).exit_code == 0
    assert calls_per_run(out)["alr0.001_clr0.01_s42"] == 2


def test_runner_reporting_failure_in_its_summary(tmp_path: Path) -> None:
    table = sweep(small_spec(), tmp_path / "s",
                  runner=partial(fake_runner, fail_ids=("alr0.1_clr0.01_s42",)))
    row = table.set_index("run_id").loc["alr0.1_clr0.01_s42"]
    assert row["status"] == "failed" and row["error"] == "RuntimeError: boom"
    assert (table["status"] == "finished").sum() == 3


def test_process_pool_matches_sequential(tmp_path: Path) -> None:
    reference = sweep(small_spec(seeds=[1, 2]), tmp_path / "ref")
    lines: list[str] = []
    table = run_sweep(small_spec(seeds=[1, 2]), tmp_path / "s", workers=2,
                      runner=partial(fake_runner, fail_ids=("alr0.1_clr0.01_s2",), sleep=0.01),
                      live=False, log=lines.append)
    expected = reference.copy()
    by_id = table.set_index("run_id")
    assert by_id.loc["alr0.1_clr0.01_s2", "status"] == "failed"
    ok = table["run_id"] != "alr0.1_clr0.01_s2"
    pd.testing.assert_frame_equal(table[ok].reset_index(drop=True), expected[ok].reset_index(drop=True))
    cfg = json.loads((tmp_path / "s/runs/alr0.1_clr0.0001_s1/config.json").read_text())
    assert cfg["run"]["threads"] == 1
    assert any("start" in line and "pid" in line for line in lines)
    assert any("FAILED" in line and "boom" in line for line in lines)


def test_pool_interrupt_via_runner_then_resume(tmp_path: Path) -> None:
    reference = sweep(small_spec(), tmp_path / "ref")
    out, crash = tmp_path / "s", tmp_path / "crash"
    crash.mkdir()
    (crash / "alr0.001_clr0.01_s42").write_text("interrupt")
    # In a worker (where Ctrl-C is ignored) only the run itself can raise KeyboardInterrupt:
    # that run is recorded as interrupted (unfinished, exit code 2), the others go on.
    table = run_sweep(small_spec(), out, workers=2, runner=partial(fake_runner, crash_dir=str(crash), sleep=0.05),
                      live=False, log=lambda s: None)
    assert table.set_index("run_id").loc["alr0.001_clr0.01_s42", "status"] == "interrupted"
    assert SweepResult.from_table(table).unfinished == ["alr0.001_clr0.01_s42"] and exit_code(table) == 2
    table = sweep(small_spec(), out)
    pd.testing.assert_frame_equal(table, reference)


def test_unpicklable_runner_is_refused_for_workers(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="module-level"):
        sweep(small_spec(), tmp_path / "s", runner=lambda *a, **k: {}, workers=2)


@pytest.mark.parametrize("options, match", [
    ({"address": "auto"}, r"address \(--address auto\) is for the ray backend; this sweep's backend is 'local'"),
    ({"backend_options": {"num_cpus": 2}}, r"--backend-option num_cpus\) are for the ray and submitit backends"),
    ({"backend": "submitit", "address": "auto"}, r"is for the ray backend; this sweep's backend is 'submitit'"),
])
def test_options_a_backend_ignores_are_refused_before_anything_is_written(tmp_path: Path, options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        sweep(small_spec(), tmp_path / "s", **options)
    assert not (tmp_path / "s").exists()


_KILL_SCRIPT = """
import sys, functools
sys.path.insert(0, {tests!r})
from test_sweep import fake_runner, small_spec
from gradasym.sweep import run_sweep
run_sweep(small_spec(seeds=[1, 2], episodes=30), {out!r}, workers=2,
          runner=functools.partial(fake_runner, sleep=0.05), live=False)
"""


def test_sweep_killed_hard_resumes_to_the_same_summary(tmp_path: Path) -> None:
    """kill -9 of the driver mid-sweep: workers exit, the rerun completes identically."""
    out = tmp_path / "s"
    reference = sweep(small_spec(seeds=[1, 2], episodes=30), tmp_path / "ref")
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until at least one run finished and others are going
        done = [p for p in out.glob("runs/*/summary.json") if '"finished"' in p.read_text()]
        if len(done) >= 1 and len(list(out.glob("runs/*"))) >= 3:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"the sweep did not start: {proc.communicate()[1]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.5)  # orphaned workers notice their parent is gone and exit
    table = sweep(small_spec(seeds=[1, 2], episodes=30), out)
    pd.testing.assert_frame_equal(table, reference)
    counts = calls_per_run(out)
    assert sum(counts.values()) < 2 * len(table)  # finished runs were not run again


_TERM_SCRIPT = """
import sys, functools
sys.path.insert(0, {tests!r})
from test_sweep import fake_runner, small_spec
from gradasym.process import sigterm_interrupts
from gradasym.sweep import SweepInterrupted, run_sweep
with sigterm_interrupts():
    try:
        run_sweep(small_spec(seeds=[1, 2], episodes=400), {out!r}, workers=2,
                  runner=functools.partial(fake_runner, sleep=0.01), live=False)
    except SweepInterrupted as exc:
        print(exc, file=sys.stderr)
        sys.exit(130)
"""


@pytest.mark.parametrize("whole_group", [False, True], ids=["driver", "process-group"])
def test_sigterm_stops_the_sweep_like_ctrl_c(tmp_path: Path, whole_group: bool) -> None:
    """kill PID (the driver) or kill -- -PGID (driver and workers): the summary records the runs in
    flight as interrupted (not running), the lock is released, and the rerun completes identically."""
    out = tmp_path / "s"
    script = _TERM_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until two runs are in flight
        running = [p for p in out.glob("runs/*/checkpoint.json")]
        if len(running) >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"the sweep did not start: {proc.communicate()[1]}")
    if whole_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not (out / ".sweep.lock").exists()
    status = pd.read_csv(out / "summary.csv").set_index("run_id")["status"]
    # Killed with the driver, the workers (and the queue of their start messages) may be gone
    # before the driver heard of their runs: those stay "pending" (the rerun resumes them alike).
    assert set(status) <= {"finished", "interrupted", "pending"}, status
    assert whole_group or (status == "interrupted").sum() >= 1, status
    assert "Traceback" not in err and "run the same command again" in err
    time.sleep(1.0)  # orphaned workers (if any) notice their parent is gone and exit
    table = sweep(small_spec(seeds=[1, 2], episodes=400), out)
    pd.testing.assert_frame_equal(table, sweep(small_spec(seeds=[1, 2], episodes=400), tmp_path / "ref"))


def test_sigterm_ends_a_cli_run_with_exit_code_143_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = ["run", "--episodes", "2000", "--n-agents", "12", "--batch-size", "8", "--log-interval", "2",
            "--set", "env.k_channel=4", "--set", "env.n_units=3", "--set", "run.checkpoint_interval=2",
            "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "gradasym.cli", *argv], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the first checkpoint (written before the summary)
        if (read_run_summary(out) or {}).get("episodes_run"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "running" and 0 < summary["episodes_run"] < 2000  # resumable, not finished


# ---------------------------------------------------------------- grid mismatch
def test_different_grid_in_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(small_spec(), out)
    with pytest.raises(SweepMismatchError, match="base config differs: run.episodes"):
        sweep(small_spec(episodes=8), out)
    with pytest.raises(SweepMismatchError, match="lacks runs"):
        sweep(small_spec(**{"agent.actor_lr": [0.1], "agent.critic_lr": [1e-4, 1e-2]}), out)
    # A larger grid (an extra seed) extends the sweep: only the new runs run.
    table = sweep(small_spec(seeds=[42, 7]), out)
    assert len(table) == 8 and set(calls_per_run(out).values()) == {1}
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [42, 7]


def test_force_redefines_and_moves_changed_run_folders(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(small_spec(), out)
    table = sweep(small_spec(episodes=8), out, force=True)
    assert (table["episodes_run"] == 8).all()
    assert len(list((out / "stale").iterdir())) == 4
    assert json.loads((out / "sweep.json").read_text())["base_config"]["run"]["episodes"] == 8
    # a smaller grid under --force: the runs it drops go to stale/ too
    table = sweep(small_spec(episodes=8, **{"agent.actor_lr": [0.1], "agent.critic_lr": [1e-2]}), out, force=True)
    assert list(table["run_id"]) == ["alr0.1_clr0.01_s42"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["alr0.1_clr0.01_s42"]
    assert len(list((out / "stale").iterdir())) == 7


def test_run_folder_with_other_config_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(small_spec(), out)
    cfg_path = out / "runs" / "alr0.1_clr0.01_s42" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["agent"]["gamma"] = 0.5
    cfg_path.write_text(json.dumps(cfg))
    (out / "runs" / "alr0.1_clr0.01_s42" / "summary.json").write_text('{"status": "running"}')
    with pytest.raises(SweepMismatchError, match="agent.gamma"):
        sweep(small_spec(), out)


def test_busy_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_json(out / ".sweep.lock", {"pid": other.pid, "host": socket.gethostname()})
        with pytest.raises(SweepError, match="in use"):
            sweep(small_spec(), out)
    finally:
        other.kill()
        other.wait()
    sweep(small_spec(), out)  # the lock of a dead process is taken over


# ---------------------------------------------------------------- atomic writes
def test_summary_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    sweep(small_spec(), out)
    before = (out / "summary.parquet").read_bytes()

    def broken(self: pd.DataFrame, path: Any, **kw: Any) -> None:
        Path(path).write_bytes(b"PAR1 half written")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        sweep(small_spec(seeds=[42, 3]), out)
    assert (out / "summary.parquet").read_bytes() == before  # old table intact
    assert not list(out.glob(".*.tmp")) and not (out / ".sweep.lock").exists()


def test_driver_error_in_pool_stops_workers_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    reference = sweep(small_spec(episodes=20), tmp_path / "ref")
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def fails_second_time(self: pd.DataFrame, path: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the summary write after the first run ends
            raise OSError("disk full")
        real(self, path, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fails_second_time)
    out = tmp_path / "s"
    with pytest.raises(OSError, match="disk full"):
        run_sweep(small_spec(episodes=20), out, workers=2, runner=partial(fake_runner, sleep=0.02),
                  live=False, log=lambda s: None)
    assert multiprocessing.active_children() == [] and not (out / ".sweep.lock").exists()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    pd.testing.assert_frame_equal(sweep(small_spec(episodes=20), out), reference)


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")

    def fail(p: Path) -> None:
        p.write_text("new but partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    atomic_write(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new"


def test_lock_is_exclusive(tmp_path: Path) -> None:
    with SweepLock(tmp_path):
        with pytest.raises(SweepError, match="in use"):
            SweepLock(tmp_path).acquire()
    with SweepLock(tmp_path):
        pass


# ---------------------------------------------------------------- views
def test_live_view_runs(tmp_path: Path) -> None:
    # Not a terminal here: live=True falls back to log lines, the sweep works the same.
    table = run_sweep(small_spec(), tmp_path / "s", runner=fake_runner, live=True, log=lambda s: None)
    assert (table["status"] == "finished").all()


def test_live_view_renders_progress_and_results() -> None:
    from rich.console import Console

    from gradasym.sweep.view import LiveView, RunProgress

    view = LiveView([RunProgress("a", 10, 5), RunProgress("b", 10, 5), RunProgress("c", 10, 5)], n_skipped=1)
    with view:
        view.started("a", "pid 1")
        view.progress("a", {"episode": 5, "episodes": 10, "reward": -3.5, "saturation_ratio": 0.97,
                            "actors_stopped": 4, "seconds_per_episode": 0.12})
        view.started("b")
        view.done("b", "failed", None, "RuntimeError: boom")
    console = Console(width=150, record=True, file=open(os.devnull, "w"))
    console.print(view._render())
    text = console.export_text()
    assert "5/10" in text and "4/5" in text and "0.97" in text and "-3.5" in text
    assert "failed: RuntimeError: boom" in text and "running 1" in text and "pending 1" in text
    assert view.completed_units() == 1.5  # b done + half of a; the skipped run is added by the bar


# ---------------------------------------------------------------- reproduce
def test_reproduce_reduced_with_fake_runner(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = reproduce_spec()
    assert spec.base.run.episodes == REDUCED_EPISODES and spec.base.run.early_stop
    assert reproduce_spec(full=True).base.run.episodes == FULL_EPISODES == 2000
    assert reproduce_spec(seeds=(1, 2)).seeds == [1, 2]
    # The reduced scale is a module constant (tunable); keep the fake sweep short.
    import gradasym.sweep.reproduction as reproduce_module
    episodes = 20
    monkeypatch.setattr(reproduce_module, "REDUCED_EPISODES", episodes)
    spec_small = partial(fake_runner)
    table = reproduce(tmp_path / "r", workers=1, live=False, runner=spec_small, log=lambda s: None)
    assert len(table) == 16 and (table["status"] == "finished").all()
    assert (table["episodes_run"] == episodes).all()
    text = capsys.readouterr()
    assert "stopping episode" in text.out and "critic stopped in 0 of 16" in text.out
    try:
        import gradasym.report.figures  # noqa: F401
    except ImportError:
        pass
    else:
        assert (tmp_path / "r" / "stopping_heatmap.png").is_file()
        assert (tmp_path / "r" / "report" / "report.html").is_file()
    grid = stopping_grid(table)
    assert grid.loc["0.1", "0.0001"] == str(episodes // 2)
    assert grid.loc["0.0001", "0.1"] == f"none ({episodes})"
    # more seeds extend the same folder
    table2 = reproduce(tmp_path / "r", seeds=(42, 43), workers=1, live=False, runner=spec_small,
                       log=lambda s: None, report=False)
    assert len(table2) == 32 and calls_per_run(tmp_path / "r")["alr0.1_clr0.1_s42"] == 1
    assert stopping_grid(table2).loc["0.1", "0.1"] == f"{episodes // 2} ±0"


# ---------------------------------------------------------------- CLI helpers
def _project_cli() -> tuple[Callable | None, Callable | None]:
    try:
        from gradasym.cli import _add_config_args, config_from_args
    except ImportError:
        return None, None
    return _add_config_args, config_from_args


@pytest.mark.parametrize("project_cli", [True, False])
def test_cli_arguments_build_the_spec(tmp_path: Path, project_cli: bool) -> None:
    add_cfg, cfg_from = _project_cli() if project_cli else (None, None)
    if project_cli and add_cfg is None:
        pytest.skip("gradasym.cli not importable")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub, add_cfg, cfg_from)

    def spec(argv: list[str]) -> SweepSpec:
        return spec_from_args(parser.parse_args(["sweep", *argv]), cfg_from, add_cfg)

    s = spec(["--out", str(tmp_path / "s"), "--set", "run.episodes=5", "--seeds", "1", "2",
              "--axis", "agent.batch_size=32,64", "--axis", "agent.actor_lr=0.1,0.01"])
    assert s.base.run.episodes == 5 and s.seeds == [1, 2]
    assert s.axes["agent.actor_lr"] == [0.1, 0.01] and len(s.axes["agent.critic_lr"]) == 4
    assert s.axes["agent.batch_size"] == [32, 64] and len(s.expand()) == 2 * 4 * 2 * 2
    s = spec(["--grid", str(REPO / "configs/grids/paper.toml"), "--set", "run.episodes=7"])
    assert len(s.expand()) == 16 and s.base.run.episodes == 7 and s.seeds == [42]
    if project_cli:  # the run flags of `gradasym run` work too; --actor-lr pins that axis
        s = spec(["--actor-lr", "0.1", "--episodes", "9", "--seed", "3"])
        assert s.axes["agent.actor_lr"] == [0.1] and s.base.run.episodes == 9 and s.seeds == [3]
        assert [r.run_id for r in s.expand()][0] == "alr0.1_clr0.0001_s3"
    with pytest.raises(ConfigError, match="either --grid"):
        spec(["--grid", str(REPO / "configs/grids/paper.toml"), "--config", str(REPO / "configs/grids/paper.toml")])
    # no grid/config option + an existing sweep.json: continue that sweep
    sweep(small_spec(), tmp_path / "old")
    assert [r.run_id for r in spec(["--out", str(tmp_path / "old")]).expand()] == \
        [r.run_id for r in small_spec().expand()]
    args = parser.parse_args(["sweep", "--workers", "2", "--no-live", "--backend", "ray", "--address", "auto",
                              "--backend-option", "num_cpus=4", "--force"])
    assert (args.workers, args.live, args.backend, args.address, args.force) == (2, False, "ray", "auto", True)
    assert args.backend_option == [("num_cpus", "4")] and str(args.out) == "results/sweep"
    args = parser.parse_args(["reproduce", "--full", "--seeds", "1", "2", "--preset", "x", "--no-report"])
    assert args.full and args.seeds == [1, 2] and args.preset == ["x"] and not args.report
    assert str(args.out) == "results/reproduce" and args.workers is None and args.live


def test_cli_exit_codes(tmp_path: Path, capsys) -> None:
    cli = pytest.importorskip("gradasym.cli")
    out = tmp_path / "s"
    sweep(small_spec(), out)
    # all finished: nothing to run (the runner is not even imported), exit 0
    assert cli.main(["sweep", "--out", str(out), "--no-live"]) == 0
    # a different grid into the same folder: refused, exit 2
    assert cli.main(["sweep", "--out", str(out), "--set", "run.episodes=9", "--no-live"]) == 2
    err = capsys.readouterr().err
    assert "run.episodes: 6 -> 9" in err and f"to continue the sweep recorded in {out}, give --out" in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1 and "\n  - " not in err  # one line
    # a failed run: exit 1
    failed = tmp_path / "f"
    sweep(small_spec(), failed, runner=partial(fake_runner, fail_ids=("alr0.1_clr0.01_s42",)))
    assert SweepResult.from_dir(failed).exit_code == 1


# ---------------------------------------------------------------- submitit
def test_submitit_backend_debug_cluster(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    reference = sweep(small_spec(), tmp_path / "ref")
    table = sweep(small_spec(), tmp_path / "s", backend="submitit", backend_options={"cluster": "debug"})
    pd.testing.assert_frame_equal(table, reference)


# ---------------------------------------------------------------- real runner
def test_real_runner_tiny_sweep(tmp_path: Path) -> None:
    runner_module = pytest.importorskip("gradasym.algos.ccm_madrl.runner")
    base = Config()
    base.env.n_agents, base.env.k_channel, base.env.steps_per_episode = 4, 2, 2
    base.agent.batch_size, base.agent.memory_capacity = 4, 64
    base.agent.actor_hidden, base.agent.critic_hidden = (8, 4), (16, 8)
    base.run.episodes, base.run.log_interval, base.run.checkpoint_interval = 3, 1, 1
    spec = SweepSpec(base=base, axes={"agent.actor_lr": [1e-3, 1e-1], "agent.critic_lr": [1e-3]}, seeds=[0])
    calls: list[str] = []

    def counting(cfg: Config, out_dir: Any, **kw: Any) -> dict:
        calls.append(Path(out_dir).name)
        return runner_module.run_experiment(cfg, out_dir, **kw)

    table = sweep(spec, tmp_path / "s", runner=counting)
    assert (table["status"] == "finished").all(), table["error"].tolist()
    assert (table["episodes_run"] == 3).all()
    for rid in table["run_id"]:
        assert (tmp_path / "s" / "runs" / rid / "summary.json").is_file()
    again = sweep(spec, tmp_path / "s", runner=counting)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(again, table)


# ---------------------------------------------------------------- robustness (issue: every bad input a clear error)
def test_killed_worker_fails_only_its_own_run(tmp_path: Path) -> None:
    """SIGKILL of one pool worker while another run is in flight: only the dead worker's run fails;
    the other resumes in a fresh pool and the rerun completes the sweep like an uninterrupted one."""
    spec = small_spec(episodes=20, **{"agent.actor_lr": [1e-3, 0.1]})
    reference = sweep(spec, tmp_path / "ref")
    victim, other = [r.run_id for r in spec.expand()]
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / other).write_text("wait")
    (crash / victim).write_text(f"kill:{other}")
    out = tmp_path / "s"
    table = run_sweep(spec, out, workers=2, runner=partial(fake_runner, crash_dir=str(crash), sleep=0.02),
                      live=False, log=lambda s: None)
    status, errors = dict(zip(table["run_id"], table["status"])), dict(zip(table["run_id"], table["error"]))
    assert status == {victim: "failed", other: "finished"}
    assert "worker process (pid" in errors[victim] and "SIGKILL" in errors[victim]
    assert calls_per_run(out)[other] == 2  # terminated with the broken pool, then resumed
    pd.testing.assert_frame_equal(sweep(spec, out), reference)


def test_disk_full_in_a_run_stops_the_sweep_cleanly(tmp_path: Path) -> None:
    spec = small_spec()
    reference = sweep(spec, tmp_path / "ref")
    first = spec.expand()[0].run_id
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / first).write_text("full")
    out = tmp_path / "s"
    with pytest.raises(SweepDiskFullError) as info:
        sweep(spec, out, runner=partial(fake_runner, crash_dir=str(crash)))
    text = str(info.value)
    assert "no space left" in text.lower() and "resume" in text and "\n" not in text
    recorded = pd.read_parquet(out / "summary.parquet")  # the driver recorded it
    row = recorded.loc[recorded["run_id"] == first].iloc[0]
    assert row["status"] == "failed" and "No space left" in row["error"]
    assert set(recorded["status"]) == {"failed", "pending"}  # the other runs were not started
    assert not (out / ".sweep.lock").exists() and not list(out.glob(".*.tmp"))
    pd.testing.assert_frame_equal(sweep(spec, out), reference)  # after freeing space: resumes


def test_disk_full_in_the_driver_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    sweep(small_spec(), out)
    before = (out / "summary.parquet").read_bytes()
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def full(self: pd.DataFrame, path: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] >= 1:  # the disk is full from the start
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(self, path, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(SweepDiskFullError, match="summary could not be rewritten") as info:
        sweep(small_spec(seeds=[42, 3]), out)
    assert "\n" not in str(info.value)
    assert (out / "summary.parquet").read_bytes() == before  # the old table is intact
    assert not (out / ".sweep.lock").exists() and not list(out.glob(".*.tmp"))


def test_garbage_run_files_in_a_sweep_are_named(tmp_path: Path) -> None:
    out = tmp_path / "s"
    reference = sweep(small_spec(), out)
    runs = [r.run_id for r in small_spec().expand()]
    (out / "runs" / runs[0] / "config.json").write_text("{garbage")
    with pytest.raises(SweepMismatchError, match=f"{runs[0]}/config.json is unreadable"):
        sweep(small_spec(), out)
    notes: list[str] = []
    sweep(small_spec(), out, force=True, log=notes.append)  # moved aside, rerun
    assert any("unreadable config.json" in n for n in notes)
    (out / "runs" / runs[1] / "summary.json").write_text('{"status": "finished", "episodes_run": "many"}')
    (out / "runs" / runs[2] / "summary.json").write_text("[1, 2")
    notes.clear()
    table = sweep(small_spec(), out, log=notes.append)
    assert sum("summary.json is unreadable" in n for n in notes) == 2
    pd.testing.assert_frame_equal(table, reference)
    assert collect_summary(out, write=False)["status"].eq("finished").all()


def test_temp_files_of_interrupted_writes_are_removed_on_the_next_start(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(small_spec(), out)
    (out / ".summary.parquet.k9j8.tmp").write_bytes(b"PAR1 half")
    (out / ".sweep.json.abcd.tmp").write_text("{")
    sweep(small_spec(), out)
    assert not list(out.glob(".*.tmp"))


def test_sweep_refuses_runs_that_cannot_fit_in_memory(tmp_path: Path) -> None:
    spec = small_spec(**{"env.n_agents": [10, 10_000_000]})
    with pytest.raises(ConfigError, match="GiB of memory is available"):
        sweep(spec, tmp_path / "s")
    assert not (tmp_path / "s" / "runs").exists()


# ---------------------------------------------------------------- folders holding other results
def test_a_sweep_is_not_written_into_a_run_folder_or_a_file(tmp_path: Path) -> None:
    run = tmp_path / "ref"
    fake_runner(small_spec().expand()[0].config, run / "x" / "r")  # a run folder made by a runner ...
    run = run / "x" / "r"
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(FolderKindError, match=r"ref/x/r holds a run \(config.json, summary.json\); a sweep is not "
                                              r"written into a run folder: choose another --out"):
        sweep(small_spec(), run)
    assert sorted(p.name for p in run.iterdir()) == before  # no runs/, no sweep.json
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(FolderKindError, match="afile is a file, not a folder"):
        sweep(small_spec(), tmp_path / "afile")
    with pytest.raises(FolderKindError, match=r"holds run folders \(r\) outside runs/"):
        sweep(small_spec(), tmp_path / "ref" / "x")


def test_a_run_is_not_written_into_a_sweep_folder(tmp_path: Path) -> None:
    runner_module = pytest.importorskip("gradasym.algos.ccm_madrl.runner")
    out = tmp_path / "s"
    reference = sweep(small_spec(), out)
    for folder in (out, out / "runs"):
        with pytest.raises(FolderKindError, match="choose another --out"):
            runner_module.run_experiment(small_spec().expand()[0].config, folder)
    assert not (out / "config.json").exists() and not (out / "runs" / "config.json").exists()
    pd.testing.assert_frame_equal(sweep(small_spec(), out), reference)  # rerunning into its own folder still works


def test_foreign_folders_under_runs_are_named_or_moved_with_force(tmp_path: Path) -> None:
    out = tmp_path / "junk"
    (out / "runs" / "zzz").mkdir(parents=True)
    (out / "runs" / "notes.txt").write_text("a file is not read as a run")
    with pytest.raises(FolderKindError, match=r"junk/runs holds zzz, not runs of this sweep .*--force"):
        sweep(small_spec(), out)
    assert not (out / "sweep.json").exists()
    reference = sweep(small_spec(), tmp_path / "ref")
    notes: list[str] = []
    pd.testing.assert_frame_equal(sweep(small_spec(), out, force=True, log=notes.append), reference)
    assert any("zzz (not a run of this sweep)" in n for n in notes)
    assert [p.name.split("-")[0] for p in (out / "stale").iterdir()] == ["zzz"]
    bigger = small_spec(seeds=[42, 3])  # extending the sweep: its own runs are not foreign
    assert len(sweep(bigger, out)) == 2 * len(reference)


def test_checkpoint_on_a_full_disk_stops_a_real_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save's own writer raised RuntimeError on a full disk (recorded as a failed run with a traceback);
    the checkpoint's plain write raises ENOSPC, so the sweep stops with SweepDiskFullError (exit 2)."""
    import torch
    from fulldisk import FullDisk

    import gradasym.io

    base = Config()
    base.env.n_agents, base.env.k_channel, base.env.steps_per_episode = 4, 2, 2
    base.agent.batch_size, base.agent.memory_capacity = 4, 64
    base.agent.actor_hidden, base.agent.critic_hidden = (8, 4), (16, 8)
    base.run.episodes, base.run.log_interval, base.run.checkpoint_interval = 4, 1, 2
    spec = SweepSpec(base=base, axes={"agent.actor_lr": [1e-1], "agent.critic_lr": [1e-3]}, seeds=[0])
    monkeypatch.setattr(gradasym.io, "open", FullDisk(full_from=2, room=512), raising=False)
    out = tmp_path / "s"
    with pytest.raises(SweepDiskFullError, match="checkpoint.pt") as info:
        run_sweep(spec, out, live=False, log=lambda s: None)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert "--resume for `gradasym run`" not in str(info.value)  # a run's remedy, not this sweep's
    assert str(info.value).count("free some space") == 1
    rdir = out / "runs" / spec.expand()[0].run_id
    assert torch.load(rdir / "checkpoint.pt", weights_only=False)["episodes_done"] == 0  # the earlier one
    monkeypatch.undo()
    table = run_sweep(spec, out, live=False, log=lambda s: None)  # space freed: resumes
    assert (table["status"] == "finished").all() and (table["episodes_run"] == 4).all()
