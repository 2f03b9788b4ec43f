"""SB3Config: fields, defaults, validation (cheap: no training)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from gradasym import algos
from gradasym.algos import sb3_config
from gradasym.algos.sb3_config import SB3_DEFAULT_LR, SB3Config
from gradasym.config import ConfigError

pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium")

DOC = Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"


def load(algo="td3", **overrides):
    return algos.get(algo).load_config(overrides=overrides)


@pytest.mark.parametrize("algo", ["td3", "ddpg", "sac"])
def test_unset_learning_rates_are_sb3s_default(algo):
    import stable_baselines3 as sb3

    default = inspect.signature(getattr(sb3, algo.upper()).__init__).parameters["learning_rate"].default
    assert SB3_DEFAULT_LR[algo] == default
    cfg = load(algo)
    assert cfg.agent.actor_lr == cfg.agent.critic_lr == default
    cfg = load(algo, **{"agent.actor_lr": "0.1"})
    assert (cfg.agent.actor_lr, cfg.agent.critic_lr) == (0.1, default)


def test_overrides_are_typed_and_only_set_fields_reach_sb3():
    cfg = load("td3", **{"agent.batch_size": "128", "agent.learning_starts": "100",
                         "agent.policy_kwargs": '{"net_arch": [64, 64]}', "agent.policy_delay": "3"})
    assert cfg.agent.sb3_kwargs() == {"batch_size": 128, "learning_starts": 100, "policy_delay": 3,
                                "policy_kwargs": {"net_arch": [64, 64]}}
    sac = load("sac", **{"agent.ent_coef": "auto_0.5", "agent.target_entropy": "-2"})
    assert sac.agent.sb3_kwargs() == {"ent_coef": "auto_0.5", "target_entropy": -2.0}


@pytest.mark.parametrize("overrides, match", [
    ({"run.steps": -5}, "run.steps must be a positive number of environment steps"),
    ({"run.steps": 0}, "run.steps"),
    ({"agent.actor_lr": -1}, "agent.actor_lr must be a positive learning rate"),
    ({"agent.policy_kwargs": "{not json"}, "agent.policy_kwargs must be a JSON object"),
    ({"agent.ent_coef_lr": 0.01}, "agent.ent_coef_lr is a sac option"),
    ({"env.n_agents": 5}, "unknown field 'env.n_agents'"),
    ({"env.name": "x"}, "unknown field 'env.name'"),
    ({"env.id": "NoSuchTask-v0"}, "unknown Gymnasium environment id 'NoSuchTask-v0'"),
    ({"env.id": "CartPole-v1"}, "CartPole-v1 has a discrete/non-continuous action space"),
    ({"run.device": "gpu"}, 'run.device=\'gpu\': expected "cpu", "cuda" or "cuda:N"'),
    ({"agent.gamma": "nan"}, r"agent\.gamma must be in \[0, 1\], got nan"),
    ({"agent.tau": "inf"}, r"agent\.tau must be in \(0, 1\]"),
    ({"agent.target_policy_noise": "nan"}, r"agent\.target_policy_noise must be a finite number >= 0"),
    ({"agent.target_noise_clip": -1}, r"agent\.target_noise_clip must be a finite number >= 0"),
    ({"agent.action_noise_std": "inf"}, r"agent\.action_noise_std must be a finite number >= 0"),
    ({"run.freeze_tolerance": "nan"}, r"run\.freeze_tolerance must be a finite number >= 0"),
    ({"run.grad_death_threshold": -1}, r"run\.grad_death_threshold must be a finite number >= 0"),
    ({"run.saturation_threshold": "nan"}, r"run\.saturation_threshold must be in \(0, 1\)"),
])
def test_bad_values_are_clear_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load("td3", **overrides)


@pytest.mark.parametrize("overrides, match", [
    ({"agent.ent_coef": "nan"}, r"agent\.ent_coef must be a finite number >= 0"),
    ({"agent.ent_coef": "-1"}, r"agent\.ent_coef must be a finite number >= 0"),
    ({"agent.ent_coef": "auto_0"}, r"agent\.ent_coef's initial value \(auto_X\) must be a finite number > 0"),
    ({"agent.ent_coef": "sometimes"}, r'agent\.ent_coef must be "auto", "auto_X"'),
    ({"agent.target_entropy": "inf"}, r"agent\.target_entropy must be a finite number, got inf"),
    ({"agent.target_entropy": "auto_1"}, r'agent\.target_entropy must be "auto" or a number'),
])
def test_bad_sac_entropy_settings_are_clear_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load("sac", **overrides)
    for good in ({"agent.ent_coef": "auto"}, {"agent.ent_coef": "auto_0.1"}, {"agent.ent_coef": "0.2"},
                 {"agent.target_entropy": "auto"}, {"agent.target_entropy": "-3"}):
        load("sac", **good)


def test_mujoco_task_without_mujoco_names_the_extra(monkeypatch):
    real = sb3_config.importlib.util.find_spec
    monkeypatch.setattr(sb3_config.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mujoco" else real(name, *a))
    sb3_config.check_env_id.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"MuJoCo task.*pip install 'gradasym\[mujoco\]'"):
            load("td3", **{"env.id": "Hopper-v5"})
    finally:
        sb3_config.check_env_id.cache_clear()


def test_presets_are_ccm_madrl_only():
    with pytest.raises(ConfigError, match="ccm-madrl option.*--algo td3"):
        algos.get("td3").load_config(presets=["layernorm"])


def test_every_field_is_documented():
    doc = DOC.read_text()
    cfg = SB3Config()
    fields = {f"{s}.{f.name}" for s in ("env", "agent", "run") for f in dataclasses.fields(getattr(cfg, s))}
    documented = set(re.findall(r"`((?:env|agent|run)\.[a-z_0-9]+)`", doc))
    assert fields - documented == set(), "undocumented SB3 config fields"
