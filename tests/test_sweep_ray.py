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
               "threads": cfg.run.threads, "pid": os.getpid()}
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
