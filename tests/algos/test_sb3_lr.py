"""gradasym.algos.sb3_lr: SB3's classes with separate learning rates (tiny budgets)."""

from __future__ import annotations

import math

import pytest
import torch

sb3 = pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium")

from gradasym.algos import sb3_lr


def _make(cls, **kw):
    return cls("MlpPolicy", "Pendulum-v1", learning_starts=50, seed=3, device="cpu",
               policy_kwargs=dict(net_arch=[16, 16]), **kw)


def _params(model):
    return [p.detach().clone() for p in model.policy.parameters()]


@pytest.mark.parametrize("name", ["TD3", "SAC"])
def test_without_set_learning_rates_it_is_sb3s_class(name):
    # one after the other: training draws from torch's global generator, seeded at construction
    ours = _make(getattr(sb3_lr, name), learning_rate=lambda p: 1e-3 * p)
    ours.learn(80)
    theirs = _make(getattr(sb3, name), learning_rate=lambda p: 1e-3 * p)
    theirs.learn(80)
    for a, b in zip(_params(ours), _params(theirs), strict=True):
        assert torch.equal(a, b)
    for opt_a, opt_b in zip(ours._optimisers(), [theirs.actor.optimizer, theirs.critic.optimizer]
                            + ([theirs.ent_coef_optimizer] if name == "SAC" else [])):
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]  # SB3's schedule


def test_set_learning_rates_keeps_each_rate():
    model = _make(sb3_lr.TD3)
    model.set_learning_rates(actor_lr=0.01, critic_lr=0.002)
    model.learn(80)
    assert model.actor.optimizer.param_groups[0]["lr"] == 0.01
    assert model.critic.optimizer.param_groups[0]["lr"] == 0.002


@pytest.mark.parametrize("kw, exc, match", [
    (dict(actor_lr=-1.0, critic_lr=1e-3), ValueError, "actor_lr must be a positive learning rate, got -1.0"),
    (dict(actor_lr=1e-3, critic_lr=float("nan")), ValueError, "critic_lr must be a positive learning rate, got nan"),
    (dict(actor_lr=1e-3, critic_lr=0.0), ValueError, "critic_lr must be a positive"),
    (dict(actor_lr=math.inf, critic_lr=1e-3), ValueError, "actor_lr must be a positive"),
    (dict(actor_lr=1e-3, critic_lr=1e-3, ent_coef_lr=-2), ValueError, "ent_coef_lr must be a positive"),
    (dict(actor_lr="0.1", critic_lr=1e-3), TypeError, "actor_lr must be a number"),
    (dict(actor_lr=1e-3, critic_lr=True), TypeError, "critic_lr must be a number"),
    (dict(actor_lr=1e-3, critic_lr=None), TypeError, "critic_lr must be a number"),
])
def test_bad_rates_are_refused_and_change_nothing(kw, exc, match):
    model = _make(sb3_lr.SAC)
    with pytest.raises(exc, match=match):
        model.set_learning_rates(**kw)
    assert getattr(model, "gradasym_lrs", None) is None
    model.set_learning_rates(0.01, 0.02)
    with pytest.raises(exc, match=match):
        model.set_learning_rates(**kw)
    assert model.gradasym_lrs == {"actor": 0.01, "critic": 0.02, "ent_coef": 0.01}
    assert model.critic.optimizer.param_groups[0]["lr"] == 0.02
