"""The phenomenon itself (slow: a few minutes; run with `pytest -m slow`).

Issue acceptance: actor_lr=0.1/critic_lr=0.1 -> all 50 actors stop between episode
100 and 350, the critic never stops, max |z| > 1e3; actor_lr=1e-4/critic_lr=1e-3
over 500 episodes -> no all-actors stop, max |z| < 10.
"""

from __future__ import annotations

import pytest

from gradasym.config import load_config
from gradasym.runner import run_experiment

pytestmark = pytest.mark.slow


def test_high_learning_rates_freeze_every_actor_but_not_the_critic(tmp_path) -> None:
    cfg = load_config(overrides={"agent.actor_lr": 0.1, "agent.critic_lr": 0.1, "run.episodes": 2000})
    s = run_experiment(cfg, tmp_path)
    assert s["stopping_episode"] is not None and 100 <= s["stopping_episode"] <= 350
    assert all(e is not None for e in s["per_agent_stop_episode"])
    assert s["critic_stopped"] is False
    assert s["max_abs_preactivation"] > 1e3
    assert s["early_stopped"] and s["episodes_run"] == s["stopping_episode"] + 101
    # Adam's momentum: the gradient dies before the weights freeze.
    deaths = [d for d in s["per_agent_grad_death_episode"] if d is not None]
    assert deaths and min(deaths) < s["stopping_episode"]


@pytest.fixture(scope="module")
def conservative_run(tmp_path_factory) -> dict:
    cfg = load_config(overrides={"agent.actor_lr": 1e-4, "agent.critic_lr": 1e-3, "run.episodes": 500})
    return run_experiment(cfg, tmp_path_factory.mktemp("conservative"))


def test_conservative_learning_rates_keep_learning(conservative_run) -> None:
    s = conservative_run
    assert s["stopping_episode"] is None
    assert s["episodes_run"] == 500 and s["critic_stopped"] is False
    assert s["max_abs_preactivation"] < 20  # two orders of magnitude below the high-LR runs


@pytest.mark.xfail(strict=True, reason="known deviation (docs/reproduction.md): measured max |z| after 500 "
                   "episodes is 10.5-12.1 over seeds 42 and 1-5 (11.6 at seed 42), above the issue's bound of 10")
def test_conservative_preactivations_below_ten(conservative_run) -> None:
    assert conservative_run["max_abs_preactivation"] < 10
