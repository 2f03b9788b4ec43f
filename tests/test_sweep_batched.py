"""``gradasym sweep --batch-runs``: runs grouped into batches trained as one computation, on the
inline and process-pool backends; a killed batched sweep resumes to bitwise the same results
(also when the restart groups the runs differently); ``off`` is run by run; bad values are one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gradasym.config import Config, ConfigError
from gradasym.sweep import SweepSpec, run_sweep
from gradasym.sweep.backends import BatchJob, Job, _Throttle
from gradasym.sweep.batching import auto_batch_size, check_batch_runs, plan_tasks

TABLES = ("episodes", "tracking", "tracking_agents")


def tiny_base(episodes: int = 18) -> Config:
    base = Config()
    base.env.n_agents, base.env.k_channel, base.env.n_units = 4, 2, 2
    base.agent.batch_size, base.agent.memory_capacity = 8, 200
    base.agent.actor_hidden, base.agent.critic_hidden = (16, 8), (32, 16)
    base.run.episodes, base.run.log_interval, base.run.checkpoint_interval = episodes, 3, 3
    base.run.early_stop_patience = 3
    return base


def tiny_spec(episodes: int = 18) -> SweepSpec:
    """4 runs: 2 seeds x a freeze tolerance under which the actors 'stop' at once (those runs
    end early and leave their batch: the batch shrinks)."""
    return SweepSpec(base=tiny_base(episodes), axes={"run.freeze_tolerance": [0.0, 1.0]}, seeds=[1, 2])


def quiet(spec: SweepSpec, out: Path, **kw: Any) -> pd.DataFrame:
    return run_sweep(spec, out, live=False, log=lambda s: None, **kw)


def run_tables(out: Path) -> dict[tuple[str, str], pd.DataFrame]:
    found = {}
    for run in sorted((out / "runs").iterdir()):
        for name in TABLES:
            found[(run.name, name)] = pd.read_parquet(run / f"{name}.parquet").drop(columns=["seconds"],
                                                                                     errors="ignore")
    return found


def assert_same_runs(a: Path, b: Path) -> None:
    ta, tb = run_tables(a), run_tables(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        pd.testing.assert_frame_equal(ta[key], tb[key], check_exact=True, obj=str(key))


# ------------------------------------------------------------------ planning
def test_auto_spreads_runs_evenly_over_the_workers() -> None:
    assert [auto_batch_size(n, w) for n, w in [(16, 2), (16, 1), (160, 2), (3, 4), (200, 1)]] == [8, 16, 40, 1, 50]


def _jobs(cfgs: list[Config]) -> list[Job]:
    return [Job(f"r{i}", c, f"/tmp/r{i}") for i, c in enumerate(cfgs)]


def test_plan_groups_by_batch_key_and_runs_unsupported_alone() -> None:
    plain = [tiny_base() for _ in range(5)]
    other = tiny_base()
    other.agent.batch_size = 16  # another tensor shape: another batch
    clipped = tiny_base()
    clipped.agent.grad_clip = 1.0  # not covered by the batched trainer
    notes: list[str] = []
    tasks = plan_tasks(_jobs([*plain, clipped, other]), 2, workers=1, note=notes.append)
    kinds = [[j.run_id for j in t.jobs] if isinstance(t, BatchJob) else t.run_id for t in tasks]
    assert kinds == [["r0", "r3"], ["r1", "r4"], ["r2"], "r5", ["r6"]]  # dealt out in turn
    assert sum("agent.grad_clip" in n and "r5" in n for n in notes) == 1
    # nearly equal batches of at most R; auto: one batch per worker; off: run by run
    assert [len(t.jobs) for t in plan_tasks(_jobs([tiny_base() for _ in range(12)]), 5, workers=1)] == [4, 4, 4]
    assert [len(t.jobs) for t in plan_tasks(_jobs([tiny_base() for _ in range(7)]), "auto", workers=2)] == [4, 3]
    assert all(isinstance(t, Job) for t in plan_tasks(_jobs(plain), "off", workers=1))


def test_auto_batches_mix_the_grid_configurations() -> None:
    """The paper grid in sweep order (actor LR the outer axis) on 2 workers: each batch holds every actor LR
    (consecutive blocks would give one batch all the early-stopping high-actor-LR runs)."""
    cfgs = []
    for actor_lr in (1e-4, 1e-3, 1e-2, 1e-1):
        for critic_lr in (1e-4, 1e-3, 1e-2, 1e-1):
            c = tiny_base()
            c.agent.actor_lr, c.agent.critic_lr = actor_lr, critic_lr
            cfgs.append(c)
    tasks = plan_tasks(_jobs(cfgs), "auto", workers=2)
    assert [len(t.jobs) for t in tasks] == [8, 8]
    for t in tasks:
        assert sorted({j.config.agent.actor_lr for j in t.jobs}) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert sorted(j.run_id for t in tasks for j in t.jobs) == sorted(f"r{i}" for i in range(16))


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "2.5", 0, -1])
def test_bad_batch_runs_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="--batch-runs must be 'auto', 'off' or a number of runs >= 1"):
        check_batch_runs(bad)
    assert check_batch_runs("AUTO") == "auto" and check_batch_runs("3") == 3 and check_batch_runs(None) == "off"


@pytest.mark.parametrize("command", ["sweep", "reproduce"])
@pytest.mark.parametrize("bad", ["0", "-3", "abc"])
def test_cli_bad_batch_runs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, command: str,
                                        bad: str) -> None:
    from gradasym.cli import main

    out = tmp_path / "s"
    assert main([command, "--batch-runs", bad, "--out", str(out), "--no-live"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gradasym {command}: error: --batch-runs must be 'auto', 'off' or a number of runs >= 1, " \
                  f"got {bad!r}"
    assert not out.exists()  # refused before any work


def test_progress_is_throttled_per_run() -> None:
    sent: list[tuple] = []
    throttle = _Throttle(sent.append, interval=60.0)
    for rid in ("a", "b", "a", "b"):
        throttle("progress", rid, {"episode": 1})
    assert [m[1] for m in sent] == ["a", "b"]  # each run of a batch keeps updating the view


# ------------------------------------------------------------------ real batched sweeps
def test_batched_sweep_matches_any_grouping_and_off_is_run_by_run(tmp_path: Path) -> None:
    from gradasym.runner import run_experiment

    spec = tiny_spec(episodes=9)
    messages: list[str] = []
    table = run_sweep(spec, tmp_path / "one", live=False, log=messages.append)  # auto, 1 worker: one batch
    assert (table["status"] == "finished").all(), table["error"].tolist()
    assert any("4 runs in 1 batch(es) of 4 runs" in m for m in messages)
    quiet(spec, tmp_path / "pairs", batch_runs=2, workers=2)  # two batches on two worker processes
    assert_same_runs(tmp_path / "one", tmp_path / "pairs")
    assert sorted(table["episodes_run"]) == [6, 6, 9, 9]  # early-stopped runs left the batch
    # off: the single-run trainer, exactly as run_experiment alone
    quiet(spec, tmp_path / "off", batch_runs="off")
    for run in spec.expand():
        run_experiment(run.config, tmp_path / "alone" / "runs" / run.run_id)
    assert_same_runs(tmp_path / "off", tmp_path / "alone")


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_sweep_batched import quiet, tiny_spec
from pathlib import Path
quiet(tiny_spec(), Path({out!r}), batch_runs=4)
"""


def test_killed_batched_sweep_resumes_to_the_same_results(tmp_path: Path) -> None:
    """SIGKILL of a sweep training its 4 runs as one batch, after some checkpoints; restarted with
    every run in a batch of its own: the same parquet files, bit for bit, as an uninterrupted sweep."""
    spec = tiny_spec()
    reference = quiet(spec, tmp_path / "ref")
    out = tmp_path / "s"
    script = textwrap.dedent(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the long runs have checkpointed episode 9 (of 18)
        summaries = [pd.read_json(p, typ="series") for p in out.glob("runs/*/summary.json")]
        if sum(s.get("status") == "running" and s.get("episodes_run", 0) >= 9 for s in summaries) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it was killed: {proc.communicate()[1]}")
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the sweep did not get far enough")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = pd.read_parquet(out / "summary.parquet")
    assert (killed["status"] != "finished").sum() >= 2  # really interrupted
    table = quiet(spec, out, batch_runs=1)  # other batches than before: each run alone
    assert (table["status"] == "finished").all()
    assert_same_runs(tmp_path / "ref", out)
    cols = ["run_id", "status", "episodes_run", "stopping_episode", "max_abs_preactivation", "reward_last10"]
    pd.testing.assert_frame_equal(table[cols], reference[cols])


def test_auto_shrinks_batches_that_would_not_fit_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradasym.config as config_module

    spec = tiny_spec(episodes=3)
    one_run = config_module.estimate_memory(spec.expand()[0].config)["total"]
    monkeypatch.setattr(config_module, "available_memory", lambda: int(2.5 * one_run))  # 2 runs fit, 4 do not
    messages: list[str] = []
    table = run_sweep(spec, tmp_path / "auto", live=False, log=messages.append)
    assert (table["status"] == "finished").all()
    assert any("at most 2 runs per batch" in m for m in messages)
    assert any("4 runs in 2 batch(es) of 2 runs" in m for m in messages)
    with pytest.raises(ConfigError, match="x 4 runs at once"):  # an explicit R is not changed
        quiet(spec, tmp_path / "four", batch_runs=4)
