"""The Ray backend of gradasym.sweep on a local Ray instance (``ray.init(num_cpus=2)``).

Needs the optional ``ray`` package (``pip install 'gradasym[ray]'``); skipped otherwise.
The runner is a fast fake defined at module level (Ray ships it to its workers).
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from gradasym.config import Config  # noqa: E402
from gradasym.io import write_json  # noqa: E402
from gradasym.provenance import collect as collect_provenance  # noqa: E402
from gradasym.sweep import SweepResult, SweepSpec, run_sweep  # noqa: E402

pytestmark = pytest.mark.ray


def ray_fake_runner(cfg: Config, out_dir: str | Path, resume: bool = True,
                    progress: Callable[[dict], None] | None = None, show_progress: bool = False,
                    *, fail_ids: tuple[str, ...] = ()) -> dict:
    """Tiny deterministic run folder (config.json, summary.json); records the worker's pid."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    if resume and summary_path.exists():
        old = json.loads(summary_path.read_text())
        if old.get("status") == "finished":
            return old
    write_json(out / "config.json", {**cfg.to_dict(), "version": "test"})
    base = {"actor_lr": cfg.agent.actor_lr, "critic_lr": cfg.agent.critic_lr, "seed": cfg.run.seed,
            "presets": list(cfg.presets), "episodes_requested": cfg.run.episodes}
    write_json(summary_path, {**base, "status": "running", "error": None})
    if out.name in fail_ids:
        write_json(summary_path, {**base, "status": "failed", "error": "RuntimeError: ray boom"})
        raise RuntimeError("ray boom")
    for ep in range(1, cfg.run.episodes + 1):
        if progress is not None:
            progress({"episode": ep, "episodes": cfg.run.episodes, "reward": -float(ep),
                      "saturation_ratio": 0.5, "actors_stopped": 0, "seconds_per_episode": 0.001})
    stop = 2 if cfg.agent.actor_lr >= 0.01 else None
    summary = {**base, "status": "finished", "error": None, "episodes_run": cfg.run.episodes,
               "stopping_episode": stop, "per_agent_stop_episode": [stop] * cfg.env.n_agents,
               "critic_stopped": False, "max_abs_preactivation": 1.0, "final_saturation_ratio": 0.5,
               "reward_first10": -1.0, "reward_last10": -float(cfg.run.episodes), "seconds_per_episode": 0.001,
               "threads": cfg.run.threads, "pid": os.getpid(), "provenance": collect_provenance()}
    write_json(summary_path, summary)
    return summary


@pytest.fixture(scope="module")
def local_ray() -> Any:
    # Ship this test module's functions by value: Ray's workers cannot import it by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _spec() -> SweepSpec:
    base = Config()
    base.run.episodes = 5
    base.env.n_agents = 10
    return SweepSpec(base=base, axes={"agent.actor_lr": [1e-3, 0.1], "agent.critic_lr": [1e-3, 1e-2]},
                     seeds=[1])


def test_ray_backend_runs_the_grid_and_resumes(tmp_path: Path, local_ray: Any) -> None:
    out = tmp_path / "s"
    lines: list[str] = []
    table = run_sweep(_spec(), out, backend="ray", runner=ray_fake_runner, live=False, log=lines.append)
    assert len(table) == 4 and (table["status"] == "finished").all()
    by_id = table.set_index("run_id")
    assert by_id.loc["alr0.1_clr0.001_s1", "stopping_episode"] == 2
    assert pd.isna(by_id.loc["alr0.001_clr0.001_s1", "stopping_episode"])
    # Tasks wrote the run folders; the driver wrote sweep.json and the summary.
    pids = set()
    for rid in table["run_id"]:
        s = json.loads((out / "runs" / rid / "summary.json").read_text())
        assert s["threads"] == 1  # num_cpus per task = threads = run.threads (default 1 on Ray)
        pids.add(s["pid"])
    assert os.getpid() not in pids
    assert (out / "sweep.json").is_file() and (out / "summary.parquet").is_file()
    assert any("start" in line for line in lines)
    # Rerun: finished runs are skipped, same table.
    again = run_sweep(_spec(), out, backend="ray", runner=ray_fake_runner, live=False, log=lambda s: None)
    pd.testing.assert_frame_equal(again, table)


def test_ray_backend_records_failures(tmp_path: Path, local_ray: Any) -> None:
    runner = partial(ray_fake_runner, fail_ids=("alr0.1_clr0.01_s1",))
    table = run_sweep(_spec(), tmp_path / "s", backend="ray", runner=runner, live=False, log=lambda s: None,
                      threads=2, workers=1)
    result = SweepResult.from_table(table)
    assert result.failed == ["alr0.1_clr0.01_s1"] and result.exit_code == 1
    assert "ray boom" in table.set_index("run_id").loc["alr0.1_clr0.01_s1", "error"]
    assert len(result.finished) == 3


def test_ray_backend_runs_real_sb3_td3_runs(tmp_path: Path, local_ray: Any) -> None:
    """An SB3 sweep on Ray with the real runner (not a fake): every run folder is written by a Ray
    worker, the table equals the run folders' summaries, and a rerun skips the finished runs."""
    pytest.importorskip("stable_baselines3")
    from gradasym import algos

    base = algos.get("td3").load_config(overrides={"run.steps": 250, "agent.learning_starts": 100,
                                                   "agent.batch_size": 32, "run.log_interval": 20,
                                                   "agent.policy_kwargs": '{"net_arch": [16, 16]}'})
    spec = SweepSpec(base=base, axes={"agent.actor_lr": [1e-3, 0.1]}, seeds=[0])
    out = tmp_path / "sb3"
    table = run_sweep(spec, out, backend="ray", live=False, log=lambda s: None)
    assert list(table["status"]) == ["finished", "finished"]
    for run_id in table["run_id"]:
        summary = json.loads((out / "runs" / run_id / "summary.json").read_text())
        assert summary["algo"] == "td3" and summary["steps_run"] == 250 and summary["gradient_steps"] > 0
        assert (out / "runs" / run_id / "tracking.parquet").exists()
    again = run_sweep(spec, out, backend="ray", live=False, log=lambda s: None)
    pd.testing.assert_frame_equal(again, table)


# ------------------------------------------------------------------ lost workers, progress, node names
def ray_dying_runner(cfg: Config, out_dir: str | Path, resume: bool = True,
                     progress: Callable[[dict], None] | None = None, show_progress: bool = False,
                     *, die_ids: tuple[str, ...] = (), fail_ids: tuple[str, ...] = ()) -> dict:
    """:func:`ray_fake_runner`, but the first attempt of a run in ``die_ids`` kills its own worker
    process mid-run (as a lost node does: Ray reports the worker lost, not an error of the run)."""
    out = Path(out_dir)
    marker = out.parent / f".{out.name}.died"
    if out.name in die_ids and not marker.exists():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "summary.json", {"status": "running", "error": None})
        marker.write_text("1")
        os._exit(9)  # the worker process vanishes mid-run
    return ray_fake_runner(cfg, out_dir, resume, progress, show_progress, fail_ids=fail_ids)


def test_a_run_whose_worker_is_lost_is_retried_and_finishes(tmp_path: Path, local_ray: Any) -> None:
    """A task whose worker dies (WorkerCrashedError: what a lost node gives too) is submitted
    again and finishes, with a log line naming its node; a run that raises is failed, not retried.
    ``max_retries=0`` fails the lost one instead. (A real lost node: tests/test_sweep_ray_cluster.py.)"""
    spec = SweepSpec(base=_spec().base, axes={"agent.actor_lr": [1e-3, 0.1], "agent.critic_lr": [1e-3]}, seeds=[1])
    lines: list[str] = []
    runner = partial(ray_dying_runner, die_ids=("alr0.1_clr0.001_s1",), fail_ids=("alr0.001_clr0.001_s1",))
    table = run_sweep(spec, tmp_path / "s", backend="ray", runner=runner, live=False, log=lines.append)
    result = SweepResult.from_table(table)
    assert result.failed == ["alr0.001_clr0.001_s1"] and result.finished == ["alr0.1_clr0.001_s1"]
    assert not any("alr0.001_clr0.001_s1: lost" in line for line in lines)  # its own error: not retried
    assert (tmp_path / "s" / "runs" / ".alr0.1_clr0.001_s1.died").exists()  # it did die once
    retry = [line for line in lines if "alr0.1_clr0.001_s1: lost its worker on Ray node" in line]
    assert len(retry) == 1 and "WorkerCrashedError" in retry[0] and "retry 1 of 3" in retry[0], lines
    assert "resuming from its last checkpoint" in retry[0]
    retried = json.loads((tmp_path / "s" / "runs" / "alr0.1_clr0.001_s1" / "summary.json").read_text())
    assert retried["status"] == "finished" and retried["stopping_episode"] == 2

    lines.clear()
    none = run_sweep(spec, tmp_path / "n", backend="ray", runner=partial(ray_dying_runner, die_ids=(
        "alr0.1_clr0.001_s1",)), live=False, log=lines.append, backend_options={"max_retries": 0})
    result = SweepResult.from_table(none)
    assert result.failed == ["alr0.1_clr0.001_s1"] and result.finished == ["alr0.001_clr0.001_s1"]
    assert "WorkerCrashedError" in none.set_index("run_id").loc["alr0.1_clr0.001_s1", "error"]
    assert not any("submitting it again" in line for line in lines)


def test_max_retries_must_be_a_count(tmp_path: Path) -> None:
    from gradasym.config import ConfigError

    for bad in (-1, "two", 1.5, True):
        with pytest.raises(ConfigError, match="max_retries"):
            run_sweep(_spec(), tmp_path / "s", backend="ray", runner=ray_fake_runner, live=False,
                      log=lambda s: None, backend_options={"max_retries": bad})
    assert not (tmp_path / "s").exists()  # refused before anything was written


def ray_progress_runner(cfg: Config, out_dir: str | Path, resume: bool = True,
                        progress: Callable[[dict], None] | None = None, show_progress: bool = False) -> dict:
    """:func:`ray_fake_runner` with 0.3 s episodes that kills the sweep's progress actor after its first
    episode (Ray restarts it): the later progress must still reach the driver."""
    import time

    from gradasym.sweep.backends import PROGRESS_ACTOR

    def slow(info: dict) -> None:
        time.sleep(0.3)  # longer than the progress throttle: every episode is sent
        if progress is not None:
            progress(info)
        if info["episode"] == 1:
            for name in ray.util.list_named_actors():
                if str(name).startswith(PROGRESS_ACTOR):
                    actor = ray.get_actor(name)
                    before = ray.get(actor.pid.remote())
                    ray.kill(actor, no_restart=False)
                    deadline = time.monotonic() + 120
                    while ray.get(actor.pid.remote(), timeout=120) == before:  # until Ray has restarted it
                        assert time.monotonic() < deadline
                        time.sleep(0.1)
                    ray.get(actor.put.remote(("message", "", {"text": "progress actor restarted"})), timeout=120)

    return ray_fake_runner(cfg, out_dir, resume, slow, show_progress)


def test_progress_survives_the_loss_of_its_actor(tmp_path: Path, local_ray: Any) -> None:
    """The actor carrying progress to the driver dies (as it would with its node): Ray restarts it
    and the run's later progress (its 50 % and 75 % marks, sent after the kill) still reaches the view."""
    base = Config()
    base.run.episodes = 8
    base.env.n_agents = 10
    lines: list[str] = []
    table = run_sweep(SweepSpec(base=base, axes={"agent.actor_lr": [1e-3], "agent.critic_lr": [1e-3]}, seeds=[1]),
                      tmp_path / "s", backend="ray", runner=ray_progress_runner, live=False, log=lines.append)
    assert (table["status"] == "finished").all()
    progress = [line for line in lines if "progress alr0.001_clr0.001_s1" in line]
    assert "progress actor restarted" in lines
    assert any(": 4/8 episodes" in line for line in progress) and any(": 6/8 episodes" in line for line in progress), \
        lines


def test_runs_name_their_ray_node_in_the_log_and_summary(tmp_path: Path, local_ray: Any) -> None:
    """Every run's start line names its Ray node (id and host) and its summary.json records it
    (provenance ``ray_node``, which runners write with ``gradasym.provenance.collect()``; the real
    CCM-MADRL runner's is checked in tests/test_sweep_ray_cluster.py)."""
    import socket

    base = Config()
    base.run.episodes = 2
    base.env.n_agents = 10
    spec = SweepSpec(base=base, axes={"agent.actor_lr": [1e-3], "agent.critic_lr": [1e-3]}, seeds=[1])
    lines: list[str] = []
    run_sweep(spec, tmp_path / "s", backend="ray", runner=ray_fake_runner, live=False, log=lines.append)
    node = ray.get_runtime_context().get_node_id()
    start = [line for line in lines if " start " in line]
    assert len(start) == 1 and f"on Ray node {node[:12]} (host {socket.gethostname()}) pid " in start[0], lines
    summary = json.loads((tmp_path / "s" / "runs" / "alr0.001_clr0.001_s1" / "summary.json").read_text())
    assert summary["provenance"]["ray_node"] == {"id": node, "host": socket.gethostname(),
                                                 "ip": ray.util.get_node_ip_address()}
    assert summary["status"] == "finished"


def ray_lock_probe(folder: str) -> tuple[str | None, str | None]:
    """In a Ray worker: take over the run lock of ``folder`` if its owner is gone (the line), then
    take the lock and return the ``ray_node`` it records."""
    from gradasym.runfolder import FolderLock

    line = FolderLock(folder).take_over_stale()
    with FolderLock(folder) as mine:
        recorded = mine.owner()[0].get("ray_node")
    return line, recorded


def test_ray_run_locks_record_their_node_and_a_dead_nodes_lock_is_taken_over(
        tmp_path: Path, local_ray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run lock taken in a Ray worker records its node; a lock of a process on another host is kept
    while its node is alive or unknown to Ray (it cannot be checked from here), and taken over, with
    a line naming it, once Ray reports its node dead (``Alive`` False in ``ray.nodes()``; the one-node
    cluster here has no dead node, so this process's ``ray.nodes`` adds one; the real loss of a node is
    tests/test_sweep_ray_cluster.py)."""
    from gradasym.runfolder import FolderLock

    node = ray.get_runtime_context().get_node_id()
    probe = ray.remote(ray_lock_probe)
    folder = tmp_path / "run"
    folder.mkdir()
    assert ray.get(probe.remote(str(folder))) == (None, node)
    lock = folder / ".run.lock"
    dead = "d" * len(node)
    for owner_node in (node, dead):  # alive; unknown to this cluster
        write_json(lock, {"pid": os.getpid(), "host": "elsewhere", "time": 0.0, "token": "t", "ray_node": owner_node})
        with pytest.raises(Exception, match="being written by another process"):
            ray.get(probe.remote(str(folder)))
        assert lock.exists() and FolderLock(folder).take_over_stale() is None
    real_nodes = ray.nodes
    monkeypatch.setattr(ray, "nodes", lambda: [*real_nodes(), {"NodeID": dead, "Alive": False}])
    line = FolderLock(folder).take_over_stale()
    assert line == (f"took over the lock {lock} of pid {os.getpid()} on elsewhere, Ray node {dead}: "
                    f"its Ray node {dead} is dead")
    assert not lock.exists()


def test_a_lock_of_a_process_gone_on_a_live_node_is_taken_over_by_asking_that_node(
        tmp_path: Path, local_ray: Any) -> None:
    """A lock of a worker killed with its driver, on another host whose node lives on: the Ray
    backend asks that node (a task pinned to it) whether the pid exists, and takes the lock over
    only if it does not (the lock here names another host, so this process cannot check the pid)."""
    import subprocess

    from gradasym.runfolder import FolderLock
    from gradasym.sweep.backends import _gone_on_its_node

    node = ray.get_runtime_context().get_node_id()
    gone = _gone_on_its_node(ray)
    lock = tmp_path / ".run.lock"
    write_json(lock, {"pid": os.getpid(), "host": "elsewhere", "time": 0.0, "token": "t", "ray_node": node})
    assert FolderLock(tmp_path).take_over_stale(gone) is None and lock.exists()  # alive on its node: kept
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # a pid that no longer exists
    write_json(lock, {"pid": finished.pid, "host": "elsewhere", "time": 0.0, "token": "t", "ray_node": node})
    assert FolderLock(tmp_path).take_over_stale() is None and lock.exists()  # another host: not checkable here
    line = FolderLock(tmp_path).take_over_stale(gone)
    assert line is not None and line.endswith(f"its process no longer exists on its Ray node {node}")
    assert not lock.exists()


def test_lost_worker_errors_are_told_from_a_runs_own_error() -> None:
    from ray import exceptions as rex

    from gradasym.sweep.backends import ray_lost_worker

    assert ray_lost_worker(rex.NodeDiedError("the node it was running on is dead"))
    assert ray_lost_worker(rex.WorkerCrashedError())
    assert ray_lost_worker(rex.ObjectLostError("ab" * 14, None, ""))
    own = rex.RayTaskError("fn", "Traceback ...", RuntimeError("boom"))
    assert not ray_lost_worker(own) and not ray_lost_worker(own.as_instanceof_cause())
    assert not ray_lost_worker(rex.TaskCancelledError()) and not ray_lost_worker(RuntimeError("boom"))


def test_before_a_retry_resumable_runs_stay_and_others_restart_from_scratch(tmp_path: Path, monkeypatch) -> None:
    """What the Ray backend's retry does with a lost run's folder: a run that can resume (CCM-MADRL,
    SB3 since its checkpoints) stays and resumes from its checkpoint; an unfinished run of an
    algorithm that cannot resume is moved to stale/ (so the retry trains it from scratch) and the
    log line says so; a finished one stays."""
    pytest.importorskip("stable_baselines3")
    from gradasym import algos
    from gradasym.sweep.backends import Job
    from gradasym.sweep.core import _before_retry

    prepare = _before_retry(tmp_path)
    ccm, td3 = Config(), algos.get("td3").load_config(overrides={"run.steps": 250})
    for name, status in (("ccm", "running"), ("td3", "running"), ("td3done", "finished")):
        (tmp_path / "runs" / name).mkdir(parents=True)
        write_json(tmp_path / "runs" / name / "summary.json", {"status": status})
    assert prepare(Job("ccm", ccm, str(tmp_path / "runs" / "ccm"))) == "resuming from its last checkpoint"
    assert prepare(Job("td3", td3, str(tmp_path / "runs" / "td3"))) == "resuming from its last checkpoint"
    assert (tmp_path / "runs" / "ccm" / "summary.json").exists() and (tmp_path / "runs" / "td3").exists()
    monkeypatch.setattr(algos.get("td3"), "can_resume", False)  # an algorithm that cannot resume
    note = prepare(Job("td3", td3, str(tmp_path / "runs" / "td3")))
    assert note.startswith("from scratch (td3 runs cannot resume; its folder was moved to ")
    assert prepare(Job("td3done", td3, str(tmp_path / "runs" / "td3done"))) == "resuming from its last checkpoint"
    assert not (tmp_path / "runs" / "td3").exists() and (tmp_path / "runs" / "td3done").exists()
    (moved,) = (tmp_path / "stale").iterdir()
    assert moved.name.startswith("td3-") and (moved / "summary.json").exists()
