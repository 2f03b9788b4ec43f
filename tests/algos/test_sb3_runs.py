"""Tiny Stable-Baselines3 runs (TD3, DDPG, SAC on Pendulum-v1) through the CLI and the sweep.

Kept small (a few hundred environment steps, learning_starts 100, 16-unit networks)
so that the whole file runs in well under a minute.
"""

from __future__ import annotations

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
    out["td3-again"] = root / "td3-again"
    assert run_cli("--algo", "td3", "--steps", str(STEPS), "--actor-lr", "0.1", "--critic-lr", "0.001",
                   "--seed", "3", "--out", str(out["td3-again"]), *TINY) == 0
    return out


@pytest.mark.parametrize("algo", ["td3", "ddpg", "sac"])
def test_run_folder(runs, algo):
    folder = runs[algo]
    assert {p.name for p in folder.iterdir()} == {"config.json", "episodes.parquet", "tracking.parquet",
                                                  "summary.json"}
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


def test_same_seed_same_numbers(runs):
    for table in ("episodes.parquet", "tracking.parquet"):
        a, b = (pd.read_parquet(runs[k] / table) for k in ("td3", "td3-again"))
        if "seconds" in a:
            a, b = a.drop(columns="seconds"), b.drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)


def test_resume_is_refused_for_unfinished_and_returns_finished(runs, tmp_path, capsys):
    src = runs["td3"]
    args = ["--algo", "td3", "--steps", str(STEPS), "--actor-lr", "0.1", "--critic-lr", "0.001", "--seed", "3",
            *TINY]
    # a finished run with --resume: nothing to do, same summary
    before = (src / "summary.json").read_text()
    assert run_cli(*args, "--out", str(src), "--resume") == 0
    assert (src / "summary.json").read_text() == before
    # without --resume an existing folder is refused
    assert run_cli(*args, "--out", str(src)) == 2
    assert "already holds a run" in capsys.readouterr().err
    # an unfinished folder (e.g. killed) cannot resume
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in ("config.json", "episodes.parquet", "tracking.parquet"):
        (crashed / name).write_bytes((src / name).read_bytes())
    s = json.loads(before)
    (crashed / "summary.json").write_text(json.dumps({**s, "status": "running"}))
    assert run_cli(*args, "--out", str(crashed), "--resume") == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "rerun without --resume into a new folder" in err
    assert "Traceback" not in err


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
            *TINY]
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


def test_sweep_reruns_an_unfinished_sb3_run_from_scratch(sweep, capsys):
    out, args = sweep
    rid = "alr0.1_clr0.001_s1"
    summary = out / "runs" / rid / "summary.json"
    s = json.loads(summary.read_text())
    summary.write_text(json.dumps({**s, "status": "running"}))  # as left by a killed worker
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "cannot resume" in err and "1 of 2 runs already finished" in err
    stale = list((out / "stale").iterdir())
    assert len(stale) == 1 and stale[0].name.startswith(rid)
    assert f"finished {rid}: 300 environment steps" in err and "s per environment step" in err  # units
    again = json.loads(summary.read_text())
    assert again["status"] == "finished"
    assert again["final_return"] == s["final_return"]  # same seed, same numbers
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
            "fig_preactivation_time", "fig_rho_time"} <= figures
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
