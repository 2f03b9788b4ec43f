"""End-to-end: a short real training run, its files, determinism and resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gradasym.config import ConfigError, load_config
from gradasym.io import read_json
from gradasym.runner import run_experiment

SMALL = {
    "env.n_agents": 12, "env.k_channel": 4, "env.n_units": 3, "agent.batch_size": 16,
    "agent.memory_capacity": 500, "run.log_interval": 5, "run.checkpoint_interval": 10,
}


def small_cfg(**extra):
    return load_config(overrides={**SMALL, **extra})


def test_short_training_writes_the_run_folder(tmp_path) -> None:
    """A few dozen episodes at the paper's size (N=50, B=64): every promised file and column."""
    cfg = load_config(overrides={"run.episodes": 30, "agent.actor_lr": 0.1, "agent.critic_lr": 0.1})
    summary = run_experiment(cfg, tmp_path)
    for name in ["config.json", "episodes.parquet", "tracking.parquet", "tracking_agents.parquet",
                 "summary.json", "checkpoint.pt"]:
        assert (tmp_path / name).is_file(), name
    ep = pd.read_parquet(tmp_path / "episodes.parquet")
    assert list(ep["episode"]) == list(range(1, 31))
    for col in ["reward", "epsilon", "constraint_exceeded_frac", "energy_penalty_frac", "time_penalty_frac",
                "actors_stopped", "updated", "critic_loss"]:
        assert col in ep.columns, col
    assert not ep["updated"].iloc[0] and ep["updated"].iloc[1:].all()  # first update after episode 2
    assert ep["epsilon"].iloc[0] == 1.0 and (ep["epsilon"].diff().iloc[1:] < 0).all()
    assert (ep["reward"] < -1000).all()  # team rewards are thousands per step
    tr = pd.read_parquet(tmp_path / "tracking.parquet")
    assert list(tr["episode"]) == [10, 20, 30]
    assert (tr["critic_grad_norm"] > 0).all() and tr["rho"].notna().all()
    agents = pd.read_parquet(tmp_path / "tracking_agents.parquet")
    assert len(agents) == 3 * 50
    saved = read_json(tmp_path / "summary.json")
    assert saved == json.loads(json.dumps(summary))
    assert saved["status"] == "finished" and saved["episodes_run"] == 30
    assert len(saved["per_agent_stop_episode"]) == 50 and len(saved["per_agent_grad_death_episode"]) == 50
    assert saved["critic_stopped"] is False
    for key in ["stopping_episode", "max_abs_preactivation", "final_saturation_ratio", "seconds_per_episode",
                "actor_update"]:
        assert key in saved
    cfg_saved = read_json(tmp_path / "config.json")
    assert cfg_saved["agent"]["actor_lr"] == 0.1 and "version" in cfg_saved


@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
def test_same_seed_same_numbers_and_resume_equals_uninterrupted(tmp_path, mode) -> None:
    full = small_cfg(**{"run.episodes": 24, "agent.actor_update": mode})
    run_experiment(full, tmp_path / "a")
    run_experiment(small_cfg(**{"run.episodes": 24, "agent.actor_update": mode}), tmp_path / "b")
    half = small_cfg(**{"run.episodes": 12, "agent.actor_update": mode})
    run_experiment(half, tmp_path / "c")
    run_experiment(full, tmp_path / "c", resume=True)
    a, b, c = (pd.read_parquet(tmp_path / x / "episodes.parquet").drop(columns="seconds") for x in "abc")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    ta, tc = (pd.read_parquet(tmp_path / x / "tracking.parquet") for x in "ac")
    pd.testing.assert_frame_equal(ta, tc)


def test_deferred_insertion_trains_like_one_by_one(tmp_path, monkeypatch) -> None:
    """Storing an episode's transitions in one call after it (the default) trains like
    storing them one by one during the episode (priorities equal to float rounding)."""
    from gradasym.agent import CCMMADRL

    sizes: list[int] = []
    batched = CCMMADRL.remember_many
    monkeypatch.setattr(CCMMADRL, "remember_many", lambda self, s, *rest: sizes.append(len(s)) or
                        batched(self, s, *rest))
    run_experiment(small_cfg(**{"run.episodes": 16}), tmp_path / "deferred")
    assert sizes == [10] * 16  # one call per episode
    sizes.clear()
    monkeypatch.setattr(CCMMADRL, "can_defer_insertion", property(lambda self: False))
    run_experiment(small_cfg(**{"run.episodes": 16}), tmp_path / "one")
    assert sizes == [1] * 160
    a, b = (pd.read_parquet(tmp_path / x / "episodes.parquet").drop(columns="seconds") for x in ("deferred", "one"))
    pd.testing.assert_frame_equal(a, b, rtol=1e-6)  # the same samples; weights differ in the last bits


def test_killed_run_resumes_from_last_checkpoint(tmp_path, monkeypatch) -> None:
    """A crash after episode 17 keeps the checkpoint of episode 10; resuming reproduces the full run."""
    from gradasym import runner

    run_experiment(small_cfg(**{"run.episodes": 20}), tmp_path / "ref")
    original = runner.Trainer.run_episode

    def crashing(self):
        if self.episodes_done == 17:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(runner.Trainer, "run_episode", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(small_cfg(**{"run.episodes": 20}), tmp_path / "crash")
    written = pd.read_parquet(tmp_path / "crash" / "episodes.parquet")
    assert len(written) == 10  # what was written at the checkpoint is intact
    assert read_json(tmp_path / "crash" / "summary.json")["status"] == "running"
    monkeypatch.setattr(runner.Trainer, "run_episode", original)
    run_experiment(small_cfg(**{"run.episodes": 20}), tmp_path / "crash", resume=True)
    ref, res = (pd.read_parquet(tmp_path / x / "episodes.parquet").drop(columns="seconds") for x in ["ref", "crash"])
    pd.testing.assert_frame_equal(ref, res)


def test_failure_is_recorded_and_existing_folder_protected(tmp_path, monkeypatch) -> None:
    from gradasym import runner

    def boom(self):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(runner.Trainer, "run_episode", boom)
    with pytest.raises(RuntimeError):
        run_experiment(small_cfg(**{"run.episodes": 5}), tmp_path)
    s = read_json(tmp_path / "summary.json")
    assert s["status"] == "failed" and "simulated failure" in s["error"]
    with pytest.raises(ConfigError, match="already holds a run"):
        run_experiment(small_cfg(**{"run.episodes": 5}), tmp_path, resume=False)
    with pytest.raises(ConfigError, match="different configuration"):
        run_experiment(small_cfg(**{"run.episodes": 5, "agent.actor_lr": 0.5}), tmp_path, resume=True)


def test_early_stop_ends_run_after_patience(tmp_path) -> None:
    """A freeze tolerance of 1.0 counts every small actor step as frozen: all stop at the first update."""
    cfg = small_cfg(**{"run.episodes": 40, "run.freeze_tolerance": 1.0, "run.early_stop_patience": 5})
    s = run_experiment(cfg, tmp_path)
    assert s["stopping_episode"] == 2  # the first update runs after episode 2
    assert s["episodes_run"] == 2 + 5 + 1 and s["early_stopped"] is True
