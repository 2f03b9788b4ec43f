"""Tiny Stable-Baselines3 runs (TD3, DDPG, SAC on Pendulum-v1) through the CLI and the sweep.

Kept small (a few hundred environment steps, learning_starts 100, 16-unit networks)
so that the whole file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from gradasym import cli

pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium")

STEPS = 400  # two Pendulum episodes of 200 steps
TINY = ["--set", "agent.learning_starts=100", "--set", "agent.batch_size=32",
        "--set", 'agent.policy_kwargs={"net_arch": [16, 16]}', "--log-interval", "20", "--threads", "1"]

SUMMARY_KEYS = {"algo", "env", "actor_lr", "critic_lr", "seed", "steps_run", "gradient_steps", "stopping_step",
                "grad_death_step", "critic_stopped", "diverged", "max_abs_preactivation",
                "final_saturation_ratio", "final_return", "seconds_per_step", "status", "error", "units"}


def run_cli(*args: str) -> int:
    return cli.main(["run", "--quiet", *args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sb3")
    out = {}
    for algo in ("td3", "ddpg", "sac"):
        out[algo] = root / algo
        assert run_cli("--algo", algo, "--env", "Pendulum-v1", "--steps", str(STEPS), "--actor-lr", "0.1",
                       "--critic-lr", "0.001", "--seed", "3", "--out", str(out[algo]), *TINY) == 0
    out["td3-again"] = root / "td3-again"  # also evaluated and logged to TensorBoard: the same training numbers
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):  # with the progress bar
        assert cli.main(["run", "--algo", "td3", "--steps", str(STEPS), "--actor-lr", "0.1", "--critic-lr", "0.001",
                         "--seed", "3", "--out", str(out["td3-again"]), "--eval-interval", "200",
                         "--eval-episodes", "2", "--tensorboard", *TINY]) == 0
    (root / "td3-again.out").write_text(printed.getvalue())
    return out


@pytest.mark.parametrize("algo", ["td3", "ddpg", "sac"])
def test_run_folder(runs, algo):
    folder = runs[algo]
    assert {p.name for p in folder.iterdir()} == {"config.json", "episodes.parquet", "tracking.parquet",
                                                  "summary.json", "checkpoint.pt", "model.zip"}
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["algo"] == algo and cfg["env"]["id"] == "Pendulum-v1" and cfg["run"]["steps"] == STEPS
    episodes = pd.read_parquet(folder / "episodes.parquet")
    assert list(episodes.columns) == ["episode", "step", "return", "length", "seconds"]
    assert episodes["episode"].tolist() == [1, 2] and episodes["step"].tolist() == [200, 400]
    assert (episodes["length"] == 200).all() and (episodes["seconds"] > 0).all()
    s = json.loads((folder / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert (s["status"], s["algo"], s["env"], s["seed"]) == ("finished", algo, "Pendulum-v1", 3)
    assert (s["actor_lr"], s["critic_lr"]) == (0.1, 0.001)
    assert s["steps_run"] == STEPS and s["gradient_steps"] == STEPS - 100  # one per step after warm-up
    assert s["final_return"] == pytest.approx(episodes["return"].iloc[-1])  # last 10 % of 2 episodes = 1
    assert s["units"]["stopping_step"] == "gradient steps" and s["units"]["steps_run"] == "environment steps"
    assert s["seconds_per_step"] > 0 and s["diverged"] is False
    assert {"git_commit", "cpu_model", "torch_version"} <= set(s["provenance"])
    tracking = pd.read_parquet(folder / "tracking.parquet")
    assert tracking.columns[:2].tolist() == ["gradient_step", "step"] and "episode" not in tracking
    assert tracking["gradient_step"].is_monotonic_increasing and tracking["gradient_step"].max() <= STEPS - 100
    assert ((tracking["saturation_ratio"] >= 0) & (tracking["saturation_ratio"] <= 1)).all()
    assert s["max_abs_preactivation"] >= tracking["preact_max_abs"].max()
    if algo != "sac":  # actor_lr 0.1 saturates TD3's/DDPG's tanh output: the actor gradient dies at once
        assert s["grad_death_step"] is not None and s["final_saturation_ratio"] > 0.9


def test_run_prints_each_monitor_event_once(runs):
    printed = (runs["td3-again"].parent / "td3-again.out").read_text()
    events = json.loads((runs["td3-again"] / "summary.json").read_text())["events"]
    assert [e["event"] for e in events][:1] == ["grad_death"]  # actor_lr 0.1 saturates the tanh output
    for e in events:
        line = f"gradasym: {e['message']}"
        assert e["message"].startswith(f"gradient step {e['step']}: ") and printed.count(line) == 1, line


def test_same_seed_same_numbers(runs):
    for table in ("episodes.parquet", "tracking.parquet"):
        a, b = (pd.read_parquet(runs[k] / table) for k in ("td3", "td3-again"))
        if "seconds" in a:
            a, b = a.drop(columns="seconds"), b.drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_model_zip_is_the_trained_agent_as_sb3_loads_it(runs, algo):
    import stable_baselines3 as sb3
    import torch

    model = getattr(sb3, algo.upper()).load(runs[algo] / "model.zip", device="cpu")  # SB3's own class
    assert model.num_timesteps == STEPS
    state = torch.load(runs[algo] / "checkpoint.pt", weights_only=True)  # plain data, no pickle
    trained = model.policy.state_dict()
    assert trained.keys() == state["policy"].keys()
    assert all(torch.equal(trained[k], state["policy"][k]) for k in trained)


def test_eval_and_tensorboard_leave_training_unchanged(runs):
    ev = pd.read_parquet(runs["td3-again"] / "eval.parquet")
    assert ev["step"].tolist() == [200, 400] and (ev["episodes"] == 2).all()
    assert ev["gradient_step"].tolist() == [99, 299]  # before the gradient step of the evaluated step
    assert (ev["eval_return_min"] <= ev["eval_return"]).all() and (ev["eval_return"] <= ev["eval_return_max"]).all()
    s = json.loads((runs["td3-again"] / "summary.json").read_text())
    assert (s["final_eval_return"], s["final_eval_step"]) == (ev["eval_return"].iloc[-1], 400)
    assert not (runs["td3"] / "eval.parquet").exists()
    assert json.loads((runs["td3"] / "summary.json").read_text())["final_eval_return"] is None
    # the tables of the plain run (test_same_seed_same_numbers); one event folder with both kinds of scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = runs["td3-again"] / "tensorboard"
    assert len(list(board.glob("events.out.tfevents.*"))) == 1 and not [p for p in board.iterdir() if p.is_dir()]
    acc = EventAccumulator(str(board))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/critic_loss", "train/actor_loss", "rollout/ep_rew_mean", "train/actor_learning_rate"} <= tags
    assert {"tracking/saturation_ratio", "tracking/rho", "episode/return", "eval/return"} <= tags
    assert [e.step for e in acc.Scalars("eval/return")] == [200, 400]
    assert [e.value for e in acc.Scalars("eval/return")] == pytest.approx(ev["eval_return"].tolist())
    tracking = pd.read_parquet(runs["td3-again"] / "tracking.parquet")
    assert [e.step for e in acc.Scalars("tracking/rho")] == tracking["step"].tolist()  # environment steps
    assert json.loads((board / "written.json").read_text()) == {"step": STEPS}


def test_finished_run_with_resume_returns_its_summary(runs, capsys):
    src = runs["td3"]
    args = ["--algo", "td3", "--steps", str(STEPS), "--actor-lr", "0.1", "--critic-lr", "0.001", "--seed", "3",
            *TINY]
    before = (src / "summary.json").read_text()
    assert run_cli(*args, "--out", str(src), "--resume") == 0
    assert (src / "summary.json").read_text() == before
    # without --resume an existing folder is refused
    assert run_cli(*args, "--out", str(src)) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    # another configuration is refused, naming the field
    assert run_cli(*[a if a != "0.1" else "0.2" for a in args], "--out", str(src), "--resume") == 2
    err = capsys.readouterr().err
    assert "agent.actor_lr: 0.1 -> 0.2" in err and "Traceback" not in err


KILL_CFG = {"run.steps": 500, "agent.learning_starts": 100, "agent.batch_size": 32, "run.log_interval": 20,
            "agent.policy_kwargs": '{"net_arch": [16, 16]}', "run.checkpoint_interval": 250,
            "run.eval_interval": 250, "run.eval_episodes": 1, "agent.actor_lr": 0.01}
TABLES = ("episodes.parquet", "tracking.parquet", "eval.parquet")


class Killed(Exception):
    """Stands for a kill: raised from the progress callback after the checkpoint at step 250."""


def _killed_and_resumed(algo: str, folder: Path, extra: dict | None = None) -> None:
    from gradasym import algos
    from gradasym.algos import sb3_runner

    overrides = {**KILL_CFG, **(extra or {})}

    def kill(info):
        if info["done"] >= 400:  # the second episode's end: checkpoint at 250, 150 steps past it
            raise Killed()

    with pytest.raises(Killed):
        sb3_runner.run_sb3(algos.get(algo).load_config(overrides=overrides), folder, resume=False, progress=kill)
    assert json.loads((folder / "summary.json").read_text())["status"] == "failed"
    assert not (folder / "model.zip").exists()
    sb3_runner.run_sb3(algos.get(algo).load_config(overrides=overrides), folder, resume=True)


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_parquet(folder / t).drop(columns="seconds", errors="ignore") for t in TABLES}  # wall clock


_FULL: dict[str, Path] = {}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``full(algo, extra)``: the folder of an uninterrupted run of KILL_CFG (trained once per module)."""
    from gradasym import algos
    from gradasym.algos import sb3_runner

    root = tmp_path_factory.mktemp("full")

    def full(algo: str, extra: dict | None = None) -> Path:
        if algo not in _FULL:
            cfg = algos.get(algo).load_config(overrides={**KILL_CFG, **(extra or {})})
            sb3_runner.run_sb3(cfg, root / algo, resume=False)
            _FULL[algo] = root / algo
        return _FULL[algo]

    yield full
    _FULL.clear()


@pytest.fixture(scope="module")
def resumed_td3(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("killed") / "td3"
    _killed_and_resumed("td3", folder)
    return folder


@pytest.mark.parametrize("algo, extra", [
    ("td3", {}), pytest.param("sac", {}, marks=pytest.mark.slow),
    pytest.param("ddpg", {"agent.action_noise": "ornstein-uhlenbeck"}, marks=pytest.mark.slow)])
def test_killed_and_resumed_run_gives_the_same_tables(uninterrupted, resumed_td3, tmp_path, algo, extra):
    if algo == "td3":
        folder = resumed_td3
    else:
        folder = tmp_path / "k"
        _killed_and_resumed(algo, folder, extra)
    full, resumed = _tables(uninterrupted(algo, extra)), _tables(folder)
    for t in TABLES:
        assert len(full[t]) > 0
        pd.testing.assert_frame_equal(full[t], resumed[t], check_exact=True)
    a, b = (json.loads((f / "summary.json").read_text()) for f in (uninterrupted(algo, extra), folder))
    differ = {k for k in a if a[k] != b[k]}
    assert differ <= {"seconds_total", "seconds_per_step", "provenance"}, differ
    assert b["status"] == "finished" and b["steps_run"] == 500 and (folder / "model.zip").exists()


def _rewound(resumed: Path, to: Path) -> Path:
    """A copy of a finished KILL_CFG folder as a kill after its checkpoint at 250 steps leaves it."""
    import shutil

    shutil.copytree(resumed, to)
    (to / "checkpoint.prev.pt").replace(to / "checkpoint.pt")
    (to / "model.zip").unlink()
    s = json.loads((to / "summary.json").read_text())
    (to / "summary.json").write_text(json.dumps({**s, "status": "running"}))
    return to


def test_resume_that_skips_the_generators_differs(uninterrupted, resumed_td3, tmp_path, monkeypatch):
    """Negative control: the equality above depends on restoring the generators."""
    import numpy as np
    import torch

    from gradasym import algos
    from gradasym.algos import sb3_runner

    folder = _rewound(resumed_td3, tmp_path / "k")
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    monkeypatch.setattr(np.random, "set_state", lambda state: None)
    sb3_runner.run_sb3(algos.get("td3").load_config(overrides=KILL_CFG), folder, resume=True)
    full, resumed = _tables(uninterrupted("td3")), _tables(folder)
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(full["tracking.parquet"], resumed["tracking.parquet"])


def test_resume_checks_the_replayed_environment(resumed_td3, tmp_path):
    """A checkpoint whose episode replay does not reach the stored observation is refused in one line."""
    import torch

    from gradasym import algos
    from gradasym.algos import sb3_runner
    from gradasym.runfolder import RunFolderError

    folder = _rewound(resumed_td3, tmp_path / "k")
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["sb3"]["num_timesteps"] == 250 and len(state["env"]["actions"]) == 50  # 50 steps into episode 2
    state["env"]["actions"][0] += 0.5  # another action than the one taken
    torch.save(state, folder / "checkpoint.pt")
    (folder / "checkpoint.prev.pt").unlink(missing_ok=True)
    with pytest.raises(RunFolderError, match="replaying the current episode did not give the stored observation"):
        sb3_runner.run_sb3(algos.get("td3").load_config(overrides=KILL_CFG), folder, resume=True)


def test_failure_is_recorded_and_hooks_removed(tmp_path, monkeypatch):
    from gradasym import algos
    from gradasym.algos import sb3_runner

    models = []
    real = sb3_runner.make_model
    monkeypatch.setattr(sb3_runner, "make_model", lambda *a, **kw: models.append(real(*a, **kw)) or models[-1])
    cfg = algos.get("td3").load_config(overrides={"run.steps": 600, "agent.learning_starts": 100,
                                                  "agent.policy_kwargs": '{"net_arch": [16, 16]}'})

    def boom(info):
        if info["done"] >= 400:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        sb3_runner.run_sb3(cfg, tmp_path / "f", resume=False, progress=boom)
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert s["status"] == "failed" and s["error"].startswith("RuntimeError: disk on fire")
    # raised at the end of step 400's collection, before that step's gradient step (101..399 done)
    assert s["steps_run"] == 400 and s["gradient_steps"] == 299
    assert len(pd.read_parquet(tmp_path / "f" / "episodes.parquet")) == 2
    assert len(pd.read_parquet(tmp_path / "f" / "tracking.parquet")) > 0
    model = models[0]
    for opt in (model.actor.optimizer, model.critic.optimizer):
        assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_each_optimiser_keeps_its_own_learning_rate(algo):
    from gradasym import algos
    from gradasym.algos.sb3_runner import make_env, make_model

    extra = {"agent.ent_coef_lr": 0.02} if algo == "sac" else {}
    cfg = algos.get(algo).load_config(overrides={"agent.actor_lr": 0.003, "agent.critic_lr": 0.0007,
                                                 "agent.learning_starts": 50, "run.steps": 120,
                                                 "agent.policy_kwargs": '{"net_arch": [8]}', **extra})
    env = make_env(cfg.env)
    model = make_model(cfg.algo, cfg.agent, cfg.run.seed, env)
    model.learn(120)  # SB3 resets the rates in every train(); the override keeps them apart
    assert model._n_updates == 70
    assert {g["lr"] for g in model.actor.optimizer.param_groups} == {0.003}
    assert {g["lr"] for g in model.critic.optimizer.param_groups} == {0.0007}
    if algo == "sac":
        assert {g["lr"] for g in model.ent_coef_optimizer.param_groups} == {0.02}
    assert model.logger.name_to_value["train/critic_learning_rate"] == 0.0007
    env.close()


@pytest.mark.parametrize("args, match", [
    (["--algo", "td3", "--n-agents", "5"], "--n-agents is a ccm-madrl option; it does not apply to --algo td3"),
    (["--algo", "sac", "--episodes", "5"], "--episodes is a ccm-madrl option"),
    (["--algo", "ddpg", "--preset", "layernorm"], "ccm-madrl option.*--algo ddpg"),
    (["--algo", "td3", "--steps", "-5"], "run.steps must be a positive number of environment steps"),
    (["--algo", "td3", "--env", "CartPole-v1"], "discrete"),
    (["--algo", "td3", "--env", "NoSuchTask-v0"], "unknown Gymnasium environment id"),
    (["--steps", "100"], "--steps is a td3/ddpg/sac option; it does not apply to --algo ccm-madrl"),
    (["--algo", "td3", "--set", "env.name=x"], "unknown field 'env.name'"),
])
def test_bad_input_is_one_clear_line(args, match, tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradasym: error:") and "Traceback" not in err
    assert re.search(match, err), err
    assert not (tmp_path / "x").exists()  # nothing started


def test_unknown_algorithm_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--algo", "ppo"])
    assert exc.value.code == 2 and "invalid choice: 'ppo'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("sweep") / "td3-grid"
    args = ["sweep", "--algo", "td3", "--env", "Pendulum-v1", "--steps", "300", "--axis",
            "agent.actor_lr=0.1,0.001", "--critic-lr", "0.001", "--seeds", "1", "--no-live", "--out", str(out),
            "--checkpoint-interval", "100", "--eval-interval", "150", "--eval-episodes", "1", *TINY]
    assert cli.main(args) == 0
    return out, args


def test_sweep_2x1(sweep):
    out, _ = sweep
    table = pd.read_parquet(out / "summary.parquet")
    assert sorted(table["run_id"]) == ["alr0.001_clr0.001_s1", "alr0.1_clr0.001_s1"]
    assert (table["status"] == "finished").all() and (table["algo"] == "td3").all()
    assert (table["steps_run"] == 300).all() and (table["gradient_steps"] == 200).all()
    for rid in table["run_id"]:
        s = json.loads((out / "runs" / rid / "summary.json").read_text())
        row = table.set_index("run_id").loc[rid]
        assert row["final_return"] == pytest.approx(s["final_return"])
        assert row["actor_lr"] == s["actor_lr"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["base_config"]["algo"] == "td3" and doc["runs"][0]["progress_unit"] == "environment steps"


def test_sweep_resumes_an_unfinished_sb3_run(sweep, capsys):
    out, args = sweep
    rid = "alr0.1_clr0.001_s1"
    run = out / "runs" / rid
    summary = run / "summary.json"
    s = json.loads(summary.read_text())
    tracking = pd.read_parquet(run / "tracking.parquet")
    # as left by a worker killed after the checkpoint at 200 environment steps
    (run / "checkpoint.prev.pt").replace(run / "checkpoint.pt")
    (run / "model.zip").unlink()
    summary.write_text(json.dumps({**s, "status": "running"}))
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "1 of 2 runs already finished" in err and not (out / "stale").exists()
    assert f"finished {rid}: 300 environment steps" in err and "s per environment step" in err  # units
    assert f"{rid}: gradient step " in err  # the monitor's events, one line each (actor_lr 0.1 saturates)
    again = json.loads(summary.read_text())
    assert again["status"] == "finished" and (run / "model.zip").exists()
    assert again["final_return"] == s["final_return"] and again["events"] == s["events"]  # same numbers
    pd.testing.assert_frame_equal(pd.read_parquet(run / "tracking.parquet"), tracking)
    # no grid option: the recorded sweep (an SB3 base config in sweep.json) is continued
    assert cli.main(["sweep", "--out", str(out), "--no-live"]) == 0
    assert "continuing the sweep recorded" in capsys.readouterr().err


def test_sb3_jobs_can_go_to_worker_processes():
    """Pool workers and Ray receive the runner and the config by pickle."""
    import pickle

    from gradasym import algos

    plugin = algos.get("td3")
    cfg = plugin.load_config(overrides={"run.steps": 100})
    assert pickle.loads(pickle.dumps(plugin.runner)) is plugin.runner
    assert pickle.loads(pickle.dumps(cfg)).to_dict() == cfg.to_dict()


def test_report_on_sb3_sweep(sweep):
    out, _ = sweep
    assert cli.main(["report", str(out)]) == 0
    html = re.sub(r"base64,[A-Za-z0-9+/=]+", "", (out / "report" / "report.html").read_text())  # text only
    assert "td3" in html and "Pendulum-v1" in html
    assert "gradient steps" in html and "environment steps" in html  # units from the run folders
    for paper_only in ("Table 3", "Table 7", "paper", "MEC", "client actors", "episodes run", "stopping episode"):
        assert paper_only not in html, paper_only
    figures = {p.stem for p in (out / "report" / "figures").glob("*.png")}
    assert {"fig_learning_curves", "fig_stopping_heatmap", "fig_grad_death_heatmap", "fig_saturation_time",
            "fig_preactivation_time", "fig_rho_time", "fig_eval_curves"} <= figures
    table = pd.read_csv(out / "report" / "tables" / "table_configurations.csv")
    assert len(table) == 2 and (table["seeds"] == 1).all()
    assert "1 seed: no interval" in (out / "report" / "report.md").read_text()  # no CI from one seed


def test_mujoco_smoke(tmp_path):
    pytest.importorskip("mujoco")
    assert run_cli("--algo", "td3", "--env", "Hopper-v5", "--steps", "150", "--out", str(tmp_path / "h"),
                   *TINY) == 0
    s = json.loads((tmp_path / "h" / "summary.json").read_text())
    assert s["status"] == "finished" and s["env"] == "Hopper-v5" and s["steps_run"] == 150
    assert math.isfinite(s["max_abs_preactivation"])
