"""End-to-end: a short real training run, its files, determinism and resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gradasym.config import ConfigError, load_config
from gradasym.io import read_json
from gradasym.algos.ccm_madrl.runner import run_experiment

SMALL = {
    "env.n_agents": 12, "env.k_channel": 4, "env.n_units": 3, "agent.batch_size": 16,
    "agent.memory_capacity": 500, "run.log_interval": 5, "run.checkpoint_interval": 10,
}


def small_cfg(**extra):
    return load_config(overrides={**SMALL, **extra})


def test_trainer_hands_each_component_its_own_section(monkeypatch) -> None:
    """The Trainer is the composition root: the agent gets AgentConfig + the environment's dims
    (+ seed, run.tracking, run.device), the environments EnvConfig, the monitor the run
    thresholds -- nobody else the whole Config."""
    import gradasym.algos.ccm_madrl.runner as runner
    from gradasym.algos.ccm_madrl.agent import AgentDims
    from gradasym.config import AgentConfig, Config, EnvConfig

    seen: dict[str, tuple] = {}
    for name in ("CCMMADRL", "MECEnv", "ActorCriticMonitor"):
        cls = getattr(runner, name)

        def spy(*args, _cls=cls, _name=name, **kw):
            seen.setdefault(_name, (args, kw))
            return _cls(*args, **kw)
        monkeypatch.setattr(runner, name, spy)
    cfg = small_cfg(**{"run.seed": 5, "run.tracking": "original", "run.eval_interval": 3,
                       "run.freeze_tolerance": 1e-9, "run.saturation_threshold": 0.8})
    trainer = runner.Trainer(cfg)
    args, kw = seen["CCMMADRL"]
    assert type(args[0]) is AgentConfig and args[0] is cfg.agent
    assert args[1] == AgentDims(12, 4, 400.0) and args[2] == 5 and kw == {"tracking": "original", "device": "cpu",
                                                                                  "engine": "torch"}
    assert type(seen["MECEnv"][0][0]) is EnvConfig
    mon_args, mon_kw = seen["ActorCriticMonitor"]
    assert not mon_args and mon_kw["n_agents"] == 12 and mon_kw["freeze_tolerance"] == 1e-9
    assert mon_kw["saturation_threshold"] == 0.8 and mon_kw["squash"] == "tanh"
    for args, kw in seen.values():
        assert not any(isinstance(v, Config) for v in [*args, *kw.values()])
    assert trainer.agent.original_tracking and trainer.eval_env is not None


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
    half = small_cfg(**{"run.episodes": 12, "agent.actor_update": mode, "run.keep_replay": True})  # extended
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
    from gradasym.algos.ccm_madrl.agent import CCMMADRL

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
    from gradasym.algos.ccm_madrl import runner

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
    from gradasym.algos.ccm_madrl import runner

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


# ---------------------------------------------------------------- run-folder safety (gradasym.runfolder)
def _episodes(path):
    return pd.read_parquet(path / "episodes.parquet").drop(columns="seconds")



def test_finished_run_drops_its_replay_unless_kept(tmp_path, capsys) -> None:
    """By default a finished run's final checkpoint has no replay buffer and no
    checkpoint.prev.pt (a small folder); extending it is refused in one line. With
    run.keep_replay (--keep-replay) it keeps both and extends like an uninterrupted run."""
    import torch

    from gradasym.cli import main

    cfg = {"run.episodes": 5, "run.checkpoint_interval": 2}
    run_experiment(small_cfg(**cfg), tmp_path / "drop")
    run_experiment(small_cfg(**cfg, **{"run.keep_replay": True}), tmp_path / "keep")
    drop = torch.load(tmp_path / "drop" / "checkpoint.pt", weights_only=False)
    keep = torch.load(tmp_path / "keep" / "checkpoint.pt", weights_only=False)
    assert drop["agent"]["replay"] is None and keep["agent"]["replay"]["size"] == 5 * 10
    assert not (tmp_path / "drop" / "checkpoint.prev.pt").exists() and (tmp_path / "keep" / "checkpoint.prev.pt").exists()
    assert (tmp_path / "drop" / "checkpoint.pt").stat().st_size < (tmp_path / "keep" / "checkpoint.pt").stat().st_size
    pd.testing.assert_frame_equal(_episodes(tmp_path / "drop"), _episodes(tmp_path / "keep"))  # same training
    assert run_experiment(small_cfg(**cfg), tmp_path / "drop")["status"] == "finished"  # nothing to do: fine
    with pytest.raises(ConfigError, match="run.keep_replay = true"):
        run_experiment(small_cfg(**{**cfg, "run.episodes": 8}), tmp_path / "drop")
    args = ["run", "--episodes", "8", "--n-agents", "12", "--batch-size", "16", "--set", "env.k_channel=4",
            "--set", "env.n_units=3", "--set", "agent.memory_capacity=500", "--log-interval", "5",
            "--checkpoint-interval", "2", "--quiet", "--resume"]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "drop")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradasym: error: ") and "keep_replay" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--out", str(tmp_path / "keep")]) == 0  # extended from the kept buffer
    run_experiment(small_cfg(**{**cfg, "run.episodes": 8}), tmp_path / "ref")
    pd.testing.assert_frame_equal(_episodes(tmp_path / "keep"), _episodes(tmp_path / "ref"))

def test_resume_checks_the_config_stored_in_the_checkpoint(tmp_path) -> None:
    """Without config.json, or with a checkpoint copied from another run, a changed config is refused."""
    import shutil

    run_experiment(small_cfg(**{"run.episodes": 3}), tmp_path / "a")
    (tmp_path / "a" / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"checkpoint\.pt: agent\.actor_lr: 0\.0001 -> 0\.01\)"):
        run_experiment(small_cfg(**{"run.episodes": 3, "agent.actor_lr": 0.01}), tmp_path / "a")
    assert not (tmp_path / "a" / "config.json").exists()  # the refused start wrote nothing
    run_experiment(small_cfg(**{"run.episodes": 3, "agent.actor_lr": 0.01}), tmp_path / "b")
    shutil.copy(tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt")
    (tmp_path / "b" / "checkpoint.prev.pt").unlink(missing_ok=True)  # a finished run keeps none (run.keep_replay)
    with pytest.raises(ConfigError, match=r"b/checkpoint\.pt: agent\.actor_lr: 0\.0001 -> 0\.01\)"):
        run_experiment(small_cfg(**{"run.episodes": 4, "agent.actor_lr": 0.01}), tmp_path / "b")


def test_a_run_cannot_be_shortened_below_the_episodes_it_trained(tmp_path) -> None:
    """Resuming with run.episodes below the episodes already trained used to report the run
    "finished" with episodes_run 4 > episodes_requested 2; refused, and the folder is unchanged."""
    first = run_experiment(small_cfg(**{"run.episodes": 4}), tmp_path / "a")
    before = (tmp_path / "a" / "summary.json").read_text()
    with pytest.raises(ConfigError, match=r"has trained 4 episodes already, more than run.episodes = 2; a run "
                                          r"cannot be shortened: ask for at least 4 episodes"):
        run_experiment(small_cfg(**{"run.episodes": 2}), tmp_path / "a")
    assert (tmp_path / "a" / "summary.json").read_text() == before
    again = run_experiment(small_cfg(**{"run.episodes": 4}), tmp_path / "a")  # the same budget: nothing to do
    assert again["episodes_run"] == first["episodes_run"] == 4


def test_cli_resume_refuses_other_config_without_config_json(tmp_path, capsys) -> None:
    from gradasym.cli import main

    out = tmp_path / "r"
    common = ["run", "--episodes", "2", "--n-agents", "12", "--batch-size", "8", "--set", "env.k_channel=4",
              "--set", "env.n_units=3", "--out", str(out), "--quiet"]
    assert main(common) == 0
    (out / "config.json").unlink()
    capsys.readouterr()
    assert main([*common, "--actor-lr", "0.01", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradasym: error: ") and "agent.actor_lr: 0.0001 -> 0.01" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_newest_checkpoint_resumes_from_the_previous_one(tmp_path, capsys) -> None:
    """A truncated checkpoint.pt: the run resumes from checkpoint.prev.pt and ends like an uninterrupted run."""
    cfg = {"run.episodes": 6, "run.checkpoint_interval": 2}
    run_experiment(small_cfg(**cfg), tmp_path / "ref")
    run_experiment(small_cfg(**{**cfg, "run.episodes": 4, "run.keep_replay": True}), tmp_path / "r")  # extended
    ckpt = tmp_path / "r" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    capsys.readouterr()
    run_experiment(small_cfg(**cfg), tmp_path / "r")
    assert "checkpoint.pt" in capsys.readouterr().err  # warned, naming the file
    pd.testing.assert_frame_equal(_episodes(tmp_path / "ref"), _episodes(tmp_path / "r"))


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupted"])
def test_unreadable_checkpoints_are_one_clear_line(tmp_path, capsys, damage) -> None:
    from gradasym.cli import main

    out = tmp_path / "r"
    common = ["run", "--episodes", "2", "--n-agents", "12", "--batch-size", "8", "--set", "env.k_channel=4",
              "--set", "env.n_units=3", "--out", str(out), "--quiet"]
    assert main([*common, "--keep-replay"]) == 0  # a finished run keeps checkpoint.prev.pt only then
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        data = (out / name).read_bytes()
        (out / name).write_bytes({"empty": b"", "truncated": data[:200],
                                  "corrupted": data[:64] + b"\xff" * 512 + data[576:]}[damage])
    capsys.readouterr()
    assert main([*common, "--episodes", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradasym: error: cannot resume") and "checkpoint.pt (" in err
    assert "checkpoint.prev.pt (" in err and "delete the folder" in err and len(err.strip().splitlines()) == 1


def test_garbage_config_json_is_named_on_resume(tmp_path, capsys) -> None:
    run_experiment(small_cfg(**{"run.episodes": 2, "run.keep_replay": True}), tmp_path)  # extended below
    (tmp_path / "summary.json").write_text("{trunc")
    (tmp_path / "config.json").write_text("\x00\x01 garbage")
    with pytest.raises(ConfigError, match=r"config\.json is unreadable.*delete it"):
        run_experiment(small_cfg(**{"run.episodes": 3}), tmp_path)
    (tmp_path / "config.json").unlink()  # as the message says: the checkpoint's config is checked instead
    capsys.readouterr()
    assert run_experiment(small_cfg(**{"run.episodes": 3}), tmp_path)["episodes_run"] == 3
    assert "summary.json is unreadable" in capsys.readouterr().err
    assert read_json(tmp_path / "summary.json")["status"] == "finished"


def test_failed_start_leaves_no_config_json(tmp_path, monkeypatch) -> None:
    from gradasym.algos.ccm_madrl import runner

    def broken(self, cfg):
        raise RuntimeError("cannot build")

    monkeypatch.setattr(runner.Trainer, "__init__", broken)
    with pytest.raises(RuntimeError):
        run_experiment(small_cfg(**{"run.episodes": 2}), tmp_path, resume=False)
    monkeypatch.undo()
    assert not (tmp_path / "config.json").exists() and not (tmp_path / ".run.lock").exists()
    assert run_experiment(small_cfg(**{"run.episodes": 2}), tmp_path, resume=False)["status"] == "finished"


def test_run_folder_written_by_a_live_process_is_refused(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    from gradasym.io import write_json

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_json(tmp_path / ".run.lock", {"pid": other.pid, "host": socket.gethostname()})
        with pytest.raises(ConfigError, match=f"being written by another process \\(pid {other.pid}"):
            run_experiment(small_cfg(**{"run.episodes": 2}), tmp_path)
        assert not (tmp_path / "config.json").exists()
    finally:
        other.kill()
        other.wait()
    (tmp_path / ".episodes.parquet.x1y2.tmp").write_bytes(b"PAR1 half")  # left by the killed writer
    assert run_experiment(small_cfg(**{"run.episodes": 2}), tmp_path)["status"] == "finished"  # stale: taken over
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / ".run.lock").exists()


def test_disk_full_mid_run_is_one_line_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    """ENOSPC while writing the tables of episode 4: one line, the files of episode 2 intact, resumable."""
    import errno

    from gradasym.algos.ccm_madrl import runner
    from gradasym.cli import main

    cfg = {"run.episodes": 6, "run.checkpoint_interval": 2}
    run_experiment(small_cfg(**cfg), tmp_path / "ref")
    real = runner.write_table
    calls = {"n": 0}

    def filling_up(path, rows, *metadata):
        calls["n"] += 1
        if calls["n"] == 7:  # 3 tables per write: the start, episode 2, then episode 4
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, rows, *metadata)

    monkeypatch.setattr(runner, "write_table", filling_up)
    out = tmp_path / "r"
    argv = ["run", "--episodes", "6", "--checkpoint-interval", "2", "--n-agents", "12", "--batch-size", "16",
            "--set", "env.k_channel=4", "--set", "env.n_units=3", "--set", "agent.memory_capacity=500",
            "--log-interval", "5", "--out", str(out), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradasym: error: no space left") and "episodes.parquet" in err
    assert len(err.strip().splitlines()) == 1
    assert len(pd.read_parquet(out / "episodes.parquet")) == 2  # earlier files intact
    assert read_json(out / "summary.json")["status"] == "running"
    monkeypatch.setattr(runner, "write_table", real)
    assert main([*argv, "--resume"]) == 0
    pd.testing.assert_frame_equal(_episodes(tmp_path / "ref"), _episodes(out))
