"""The batched trainer: R runs trained as one computation give, run by run, what each run
gives trained alone (losses, gradients, parameters, optimiser states, priorities), in both
actor-update modes and with per-run hyperparameters; unsupported presets fall back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradasym.agent import CCMMADRL
from gradasym.batched import batched_update, unsupported_reason
from gradasym.config import Config
from gradasym.env.mec import MECEnv
from gradasym.seeding import numpy_generator

N = 4
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def make_cfg(seed: int, mode: str = "sequential", **agent_kw) -> Config:
    cfg = Config()
    cfg.env.n_agents = N
    cfg.env.k_channel = 2
    cfg.run.seed = seed
    cfg.agent.actor_update = mode
    cfg.agent.batch_size = 16
    cfg.agent.critic_hidden = (64, 32)
    cfg.agent.memory_capacity = 256
    for key, v in agent_kw.items():
        setattr(cfg.agent, key, v)
    return cfg


# Three runs of one batch: different seeds and different shape-preserving hyperparameters.
RUN_KW = [
    dict(seed=3),
    dict(seed=5, actor_lr=0.05, critic_lr=0.01, gamma=0.9),
    dict(seed=8, actor_lr=0.3, critic_lr=1e-4, tau=0.5),
]


def filled_agent(cfg: Config, episodes: int = 3) -> CCMMADRL:
    """An agent whose replay holds a few episodes collected with its own streams."""
    agent = CCMMADRL(cfg, dtype=torch.float64)
    env = MECEnv(cfg.env, numpy_generator(cfg.run.seed, "env"))
    states = env.reset()
    for ep in range(episodes):
        rows = []
        for _ in range(cfg.env.steps_per_episode):
            act = agent.act(states, ep)
            nxt, rew, done, _ = env.step(act.env_actions)
            rows.append((states, act.actions, act.x, float(rew[0]), nxt, done))
            states = env.reset() if done else nxt
        agent.remember_many(*(np.stack(c) for c in zip(*rows)))
    return agent


def make_runs(mode: str, **agent_kw) -> list[CCMMADRL]:
    runs = []
    for kw in RUN_KW:
        kw = dict(kw)
        seed = kw.pop("seed")
        runs.append(filled_agent(make_cfg(seed, mode, **{**kw, **agent_kw})))
    return runs


def close(a, b, what: str, rtol=1e-9, atol=1e-11) -> None:
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=rtol, atol=atol, msg=what)


def compare_agents(batched: CCMMADRL, alone: CCMMADRL, what: str) -> None:
    ref_state = alone.state_dict()
    for name, t in batched.state_dict().items():
        ref = ref_state[name]
        if name in ("exploration_rng",):
            assert t == ref, f"{what}: {name}"
            continue
        _compare_tree(t, ref, f"{what}: {name}")


def _compare_tree(a, b, what):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _compare_tree(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _compare_tree(x, y, f"{what}[{i}]")
    elif torch.is_tensor(a) or isinstance(a, np.ndarray):
        close(a, b, what)
    else:
        assert a == b, what


@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
def test_batched_update_equals_runs_alone(mode):
    batch_runs, alone = make_runs(mode), make_runs(mode)
    for step in range(3):
        batches = [ag.replay.sample(ag.batch_size) for ag in batch_runs]
        results = batched_update(batch_runs, batches)
        for r, (ag, res, ref_ag) in enumerate(zip(batch_runs, results, alone)):
            ag.replay.update_priorities(res.indices, res.td_errors)
            ref = ref_ag.update()
            what = f"{mode} update {step} run {r}"
            close(res.critic_loss, ref.critic_loss, f"{what}: critic loss")
            close(res.actor_losses, ref.actor_losses, f"{what}: actor losses")
            close(res.td_errors, ref.td_errors, f"{what}: td errors")
            assert np.array_equal(res.indices, ref.indices), what
            for k in ref.critic_grads:
                close(res.critic_grads[k], ref.critic_grads[k], f"{what}: critic grad {k}")
            for k in ref.actor_grads:
                close(res.actor_grads[k], ref.actor_grads[k], f"{what}: actor grad {k}")
            close(res.preact, ref.preact, f"{what}: preact")
            for h, h_ref in zip(res.actor_hidden + res.critic_hidden, ref.actor_hidden + ref.critic_hidden):
                close(h, h_ref, f"{what}: hidden")
            compare_agents(ag, ref_ag, what)


def test_runs_never_mix():
    """A run's update does not depend on which other runs share its batch."""
    runs = make_runs("sequential")
    pair = make_runs("sequential")[:2]
    alone = make_runs("sequential")[1:2]
    other = make_cfg(11, actor_lr=1.0, critic_lr=0.5)  # a very different neighbour
    pair[0] = filled_agent(other)
    res3 = batched_update(runs, [ag.replay.sample(16) for ag in runs])[1]
    res2 = batched_update(pair, [ag.replay.sample(16) for ag in pair])[1]
    res1 = batched_update(alone, [ag.replay.sample(16) for ag in alone])[0]
    for res in (res2, res1):
        close(res.actor_losses, res3.actor_losses, "actor losses", rtol=1e-12, atol=1e-14)
        close(res.critic_loss, res3.critic_loss, "critic loss", rtol=1e-12, atol=1e-14)
    compare_agents(runs[1], alone[0], "run 1 with or without neighbours")


def test_unsupported_presets_are_named():
    cfg = Config()
    assert unsupported_reason(cfg) is None
    cfg.agent.grad_clip = 1.0
    cfg.run.tracking = "original"
    reason = unsupported_reason(cfg)
    assert "agent.grad_clip" in reason and "tracking" in reason
