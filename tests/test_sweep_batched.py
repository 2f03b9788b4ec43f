"""``gradasym sweep --batch-runs``: runs grouped into batches trained as one computation, on the
inline and process-pool backends; a killed batched sweep resumes to bitwise the same results
(also when the restart groups the runs differently); ``off`` is run by run; bad values are one line."""

from __future__ import annotations

import os
import shutil
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
    base.run.engine = "torch"  # the batched trainer's numbers are the torch engine's (compiled rounding differs)
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
    from gradasym.algos.ccm_madrl.runner import run_experiment

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


# ------------------------------------------------------------------ a run keeps its trainer
def _stop_batch_after(episodes: int, cfgs: list, out_dirs: list, progress: Any = None, **kw: Any) -> list:
    """``train_batch``, stopped like Ctrl-C once a run passes ``episodes`` (the checkpoints stay)."""
    from gradasym.algos.ccm_madrl.batched import train_batch

    def stop(r: int, info: dict) -> None:
        if info["episode"] > episodes:
            raise KeyboardInterrupt
        if progress is not None:
            progress(r, info)

    return train_batch(cfgs, out_dirs, progress=stop, **kw)


def _fail_run_after(episodes: int, cfg: Config, out_dir: Any, progress: Any = None, **kw: Any) -> dict:
    """``run_experiment`` failing once the run passes ``episodes`` (a failed run resumes from its checkpoint)."""
    from gradasym.algos.ccm_madrl.runner import run_experiment

    def fail(info: dict) -> None:
        if info["episode"] > episodes:
            raise RuntimeError("stopped by the test")

    return run_experiment(cfg, out_dir, progress=fail, **kw)


def _trainers(out: Path) -> dict[str, str]:
    return {p.parent.name: pd.read_json(p, typ="series")["trainer"] for p in out.glob("runs/*/summary.json")}


def test_batched_runs_resumed_with_off_keep_the_batched_trainer(tmp_path: Path) -> None:
    """Stopped after 10 of 18 episodes while batched (checkpoints at 9), resumed with --batch-runs off:
    bit for bit the uninterrupted batched sweep, which differs from a run-by-run one."""
    from functools import partial

    from gradasym.sweep import SweepInterrupted

    spec = tiny_spec()
    quiet(spec, tmp_path / "ref", batch_runs=4)
    out = tmp_path / "s"
    with pytest.raises(SweepInterrupted):
        quiet(spec, out, batch_runs=4, batch_runner=partial(_stop_batch_after, 10))
    stopped = pd.read_parquet(out / "summary.parquet").set_index("run_id")
    unfinished = sorted(stopped.index[stopped["status"] != "finished"])
    assert len(unfinished) == 2 and set(_trainers(out).values()) == {"batched"}
    messages: list[str] = []
    table = run_sweep(spec, out, batch_runs="off", live=False, log=messages.append)
    assert (table["status"] == "finished").all()
    assert_same_runs(tmp_path / "ref", out)
    kept = [m for m in messages if "keep the batched trainer" in m]
    assert len(kept) == 1 and kept[0].startswith("--batch-runs off: 2 started run(s)"), messages
    assert any("2 runs in 1 batch(es) of 2 runs" in m for m in messages)
    assert set(_trainers(out).values()) == {"batched"}
    quiet(spec, tmp_path / "off", batch_runs="off")  # the other trainer: other numbers (the test can fail)
    assert run_tables(tmp_path / "off")[(unfinished[0], "episodes")]["reward"].tolist() \
        != run_tables(out)[(unfinished[0], "episodes")]["reward"].tolist()


def test_single_runs_resumed_with_auto_keep_the_single_run_trainer(tmp_path: Path) -> None:
    """Started run by run and failed after 10 episodes, resumed with --batch-runs auto: the started runs
    finish as in an uninterrupted run-by-run sweep, the runs not started yet follow the flag (batched)."""
    from functools import partial

    spec = tiny_spec()
    quiet(spec, tmp_path / "off", batch_runs="off")
    quiet(spec, tmp_path / "auto", batch_runs="auto")
    out = tmp_path / "s"
    first = quiet(spec, out, runner=partial(_fail_run_after, 10), batch_runs="off")
    failed = sorted(first.loc[first["status"] == "failed", "run_id"])
    assert len(failed) == 2 and set(_trainers(out).values()) == {"single"}
    for rid in first["run_id"][first["status"] == "finished"]:  # early stopped: not started in the new sweep
        shutil.rmtree(out / "runs" / rid)
    messages: list[str] = []
    table = run_sweep(spec, out, batch_runs="auto", live=False, log=messages.append)
    assert (table["status"] == "finished").all()
    off, auto, now = run_tables(tmp_path / "off"), run_tables(tmp_path / "auto"), run_tables(out)
    for (rid, name), frame in now.items():
        want = off if rid in failed else auto
        pd.testing.assert_frame_equal(frame, want[(rid, name)], check_exact=True, obj=f"{rid} {name}")
    kept = [m for m in messages if "keep the single-run trainer" in m]
    assert len(kept) == 1 and kept[0].startswith("--batch-runs auto: 2 started run(s)"), messages
    assert _trainers(out) == {rid: "single" if rid in failed else "batched" for rid in table["run_id"]}
    assert dict(zip(table["run_id"], table["trainer"])) == _trainers(out)  # the summary's column says it too


def test_started_trainer_reads_the_folder_and_dates_old_folders(tmp_path: Path) -> None:
    import json

    import torch

    from gradasym import algos

    plugin = algos.get("ccm-madrl")
    run = tmp_path / "r"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "running"}))
    assert plugin.started_trainer(run) is None  # no checkpoint: not started, follows the flag
    torch.save({"config": {}, "trainer": "batched"}, run / "checkpoint.pt")
    assert plugin.started_trainer(run) == "single"  # no provenance: written before the batched trainer
    (run / "summary.json").write_text(json.dumps({"status": "running", "provenance": {}}))
    assert plugin.started_trainer(run) == "unknown"  # could be either
    (run / "summary.json").write_text(json.dumps({"status": "running", "trainer": "mixed"}))
    assert plugin.started_trainer(run) == "mixed"
    (run / "summary.json").write_text("{garbage")
    assert plugin.started_trainer(run) == "batched"  # unreadable summary: the checkpoint says
    assert algos.get("td3").started_trainer(run) is None  # one trainer: nothing to keep


def test_plan_keeps_started_runs_with_their_trainer() -> None:
    cfgs = [tiny_base() for _ in range(6)]
    started = {"r0": "batched", "r1": "batched", "r2": "single", "r3": "unknown", "r4": "mixed"}
    notes: list[str] = []
    off = plan_tasks(_jobs(cfgs), "off", workers=1, note=notes.append, started=started)
    assert [[j.run_id for j in t.jobs] if isinstance(t, BatchJob) else t.run_id for t in off] \
        == [["r0", "r1"], "r2", "r3", "r4", "r5"]
    assert sum("--batch-runs off: 2 started run(s) keep the batched trainer" in n for n in notes) == 1
    assert sum("2 started run(s) do not record one trainer" in n for n in notes) == 1
    notes.clear()
    on = plan_tasks(_jobs(cfgs), "auto", workers=1, note=notes.append, started=started)
    assert [[j.run_id for j in t.jobs] if isinstance(t, BatchJob) else t.run_id for t in on] \
        == [["r0", "r1", "r3", "r4", "r5"], "r2"]
    assert sum("--batch-runs auto: 1 started run(s) keep the single-run trainer" in n for n in notes) == 1
    capped = plan_tasks(_jobs(cfgs), "off", workers=1, started=started, cap=1)  # memory: smaller batches
    assert [[j.run_id for j in t.jobs] for t in capped if isinstance(t, BatchJob)] == [["r0"], ["r1"]]
    plain = plan_tasks(_jobs(cfgs), "auto", workers=1)  # without records: the flag alone
    assert [len(t.jobs) for t in plain] == [6]


def test_single_run_trainer_resuming_a_batched_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`gradasym run --resume` of a folder the batched trainer started: one warning, recorded as mixed
    (and its numbers are indeed neither trainer's)."""
    from gradasym.algos.ccm_madrl.batched import train_batch
    from gradasym.algos.ccm_madrl.runner import run_experiment

    cfg = tiny_base(episodes=9)
    train_batch([cfg], [tmp_path / "ref"])
    with pytest.raises(KeyboardInterrupt):
        _stop_batch_after(4, [cfg], [tmp_path / "r"])  # checkpoint at 3
    capsys.readouterr()
    summary = run_experiment(cfg, tmp_path / "r")
    err = capsys.readouterr().err
    assert err.count("was trained by the batched trainer so far; going on with the single trainer") == 1
    assert summary["trainer"] == "mixed" and summary["status"] == "finished"
    again = run_experiment(cfg, tmp_path / "r")  # nothing left to do: the record stays, no warning
    assert again["trainer"] == "mixed" and "going on" not in capsys.readouterr().err
    ref = pd.read_parquet(tmp_path / "ref" / "episodes.parquet")["critic_loss"]
    mixed = pd.read_parquet(tmp_path / "r" / "episodes.parquet")["critic_loss"]
    assert ref[:3].equals(mixed[:3]) and not ref.equals(mixed)


# ------------------------------------------------------------------ per-run end events
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_of_a_batch_is_reported_finished_when_it_ends(tmp_path: Path, workers: int) -> None:
    """Inline (1 worker) and in a worker process (2): see :func:`check_reported_when_it_ends`."""
    check_reported_when_it_ends(tmp_path, workers=workers)


def check_reported_when_it_ends(tmp_path: Path, **sweep: Any) -> None:
    """Two runs in one batch, 3 and 60 episodes: the short one's end reaches the log line, the view and
    summary.parquet while the long one is still running."""
    spec = SweepSpec(base=tiny_base(), axes={"run.episodes": [3, 60]}, seeds=[1])
    out = tmp_path / "s"
    seen: list[tuple[str, str, str]] = []

    def log(line: str) -> None:
        if " finished " in line:
            rid = line.split(" finished ")[1].split(":")[0]
            table = pd.read_parquet(out / "summary.parquet").set_index("run_id")["status"]
            seen.append((rid, table[rid], run_status(out, "alr0.0001_clr0.001_episodes60_s1")))

    table = run_sweep(spec, out, batch_runs=2, live=False, log=log, **sweep)
    assert (table["status"] == "finished").all()
    assert [s[0] for s in seen] == ["alr0.0001_clr0.001_episodes3_s1", "alr0.0001_clr0.001_episodes60_s1"]
    assert seen[0][1:] == ("finished", "running")  # reported at once, not at the end of the batch
    assert seen[1][1:] == ("finished", "finished")


def run_status(out: Path, run_id: str) -> str:
    """The status in a run folder's summary.json."""
    return str(pd.read_json(out / "runs" / run_id / "summary.json", typ="series")["status"])
