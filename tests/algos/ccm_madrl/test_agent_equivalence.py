"""The fast CCMMADRL update computes the same numbers as the plain reference (tests/reference.py).

Both start from the same weights and get the same batches (replay sampling bypassed);
after every update the losses, priority errors, per-agent gradients and all
parameters (online and target) must agree. float64 makes the comparison tight;
one float32 run checks the default precision with a looser tolerance. The agent runs on
each device of ``DEVICES`` (``cuda`` where torch sees a GPU), the reference always on the
CPU, with the same tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradasym.algos.ccm_madrl.agent import CCMMADRL
from gradasym.config import Config
from devices import DEVICES
from reference import ReferenceCCM, make_batch

N, B = 4, 8


def make_cfg(mode="sequential", tracking="clean", **agent_kw) -> Config:
    cfg = Config()
    cfg.env.n_agents = N
    cfg.env.k_channel = 2
    cfg.agent.actor_update = mode
    cfg.agent.actor_lr = 1e-2
    cfg.agent.critic_lr = 1e-2
    for k, v in agent_kw.items():
        setattr(cfg.agent, k, v)
    cfg.run.tracking = tracking
    return cfg


def assert_close(a, b, rtol, atol, what):
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a).double().cpu()
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b).double().cpu()
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def compare_update(res, ref_out, agent, ref, rtol, atol):
    assert_close(res.critic_loss, ref_out["critic_loss"], rtol, atol, "critic loss")
    assert_close(res.td_errors, ref_out["td_errors"], rtol, atol, "priority errors")
    assert_close(res.actor_losses, ref_out["actor_losses"], rtol, atol, "actor losses")
    # critic gradients (nn.Linear layout in both)
    for (name, g), g_ref in zip(res.critic_grads.items(), ref_out["critic_grads"]):
        scale = g_ref.abs().max().item()
        assert_close(g, g_ref, rtol, atol * max(1.0, scale), f"critic grad {name}")
    # per-agent actor gradients: ensemble layout (in, out) vs nn.Linear (out, in)
    names = list(res.actor_grads)
    for i in range(N):
        for name, g_ref in zip(names, ref_out["actor_grads"][i]):
            g = res.actor_grads[name][i]
            g = g.t() if g.dim() == 2 else g
            scale = g_ref.abs().max().item()
            assert_close(g, g_ref, rtol, atol * max(1.0, scale), f"actor {i} grad {name}")
    compare_params(agent, ref, rtol, atol)


def compare_params(agent, ref, rtol, atol):
    for online, ref_actors in ((agent.actors, ref.actors), (agent.target_actors, ref.target_actors)):
        for i in range(N):
            for j in range(online.n_layers):
                lin = ref_actors[i][2 * j]
                assert_close(online.weight(j)[i].t(), lin.weight, rtol, atol, f"actor {i} layer {j} weight")
                assert_close(online.bias(j)[i], lin.bias, rtol, atol, f"actor {i} layer {j} bias")
    for online, ref_critic in ((agent.critic, ref.critic), (agent.target_critic, ref.target_critic)):
        ref_lin = [m for m in ref_critic if isinstance(m, torch.nn.Linear)]
        for j, (lin, rl) in enumerate(zip(online.layers, ref_lin)):
            assert_close(lin.weight, rl.weight, rtol, atol, f"critic layer {j} weight")
            assert_close(lin.bias, rl.bias, rtol, atol, f"critic layer {j} bias")


@pytest.mark.parametrize("tracking", ["clean", "original"])
@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_update_matches_reference_float64(mode, tracking, prune, device):
    cfg = make_cfg(mode, tracking)
    agent = CCMMADRL(cfg, seed=3, dtype=torch.float64, device=device)
    agent.prune_rows = prune
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(11)
    for _ in range(3):
        batch = make_batch(rng, N, B)
        res = agent.update_on_batch(batch)
        ref_out = ref.update(batch)
        compare_update(res, ref_out, agent, ref, rtol=1e-9, atol=1e-11)
    # the comparison is not vacuous: the actors moved and got non-zero gradients
    assert any(float(g.abs().max()) > 0 for g in res.actor_grads.values())


@pytest.mark.parametrize("device", DEVICES)
def test_update_matches_reference_float32(device):
    cfg = make_cfg("sequential", "clean")
    agent = CCMMADRL(cfg, seed=5, device=device)  # default float32
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(12)
    for _ in range(3):
        batch = make_batch(rng, N, B, dtype=torch.float32)
        res = agent.update_on_batch(batch)
        ref_out = ref.update(batch)
        # float32: summation order differs between the batched and the per-agent code (and with the
        # number of BLAS threads); Adam's normalisation can turn that rounding into ~lr-sized steps on
        # near-zero gradients, hence atol 1e-4. The float64 tests above prove equivalence to 1e-9.
        compare_update(res, ref_out, agent, ref, rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
def test_update_matches_reference_options(mode, device):
    """Soft target updates, linear hidden layers, other sizes, more agents than rows selected."""
    cfg = make_cfg(mode, "clean", tau=0.3, hidden_activation="linear", actor_hidden=(16, 8, 8),
                   critic_hidden=(32, 16, 8))
    agent = CCMMADRL(cfg, seed=7, dtype=torch.float64, device=device)
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(13)
    for _ in range(3):
        batch = make_batch(rng, N, B)
        res = agent.update_on_batch(batch)
        compare_update(res, ref.update(batch), agent, ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
def test_update_matches_reference_without_proposers(mode, device):
    """All actors propose nothing (a0 < 0): max over proposers falls back to zero-input Q,
    in the target and in the actor loss."""
    cfg = make_cfg(mode, "clean")
    agent = CCMMADRL(cfg, seed=9, dtype=torch.float64, device=device)
    with torch.no_grad():
        last = agent.actors.n_layers - 1
        for net in (agent.actors, agent.target_actors):
            net.bias(last, net.flat)[:, 0] = -3.0
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(14)
    batch = make_batch(rng, N, B)
    res = agent.update_on_batch(batch)
    compare_update(res, ref.update(batch), agent, ref, rtol=1e-9, atol=1e-11)
    assert (res.preact[..., 0] < 0).all()


def test_sequential_and_simultaneous_differ():
    """Actor 0 sees the same actors in both modes; later actors see already-updated actors
    only in sequential mode. With a ReLU critic, dQ/da_i is piecewise constant in the other
    actions, so a difference needs an arg-max, proposer or ReLU-pattern change: some later
    actor must differ (gradient at the first update, parameters after a few)."""
    rng = np.random.default_rng(15)
    batches = [make_batch(rng, N, B) for _ in range(3)]
    agents, first = {}, {}
    for mode in ("sequential", "simultaneous"):
        agents[mode] = CCMMADRL(make_cfg(mode), seed=1, dtype=torch.float64)
        first[mode] = agents[mode].update_on_batch(batches[0])
        for batch in batches[1:]:
            agents[mode].update_on_batch(batch)
    g_seq, g_sim = first["sequential"].actor_grads, first["simultaneous"].actor_grads
    for name in g_seq:
        torch.testing.assert_close(g_seq[name][0], g_sim[name][0], rtol=1e-12, atol=1e-15)
    grads_differ = [not torch.allclose(g_seq["l0.weight"][i], g_sim["l0.weight"][i], rtol=1e-6, atol=0)
                    for i in range(1, N)]
    params_differ = [not torch.allclose(agents["sequential"].actors.flat[i], agents["simultaneous"].actors.flat[i],
                                        rtol=1e-6, atol=0) for i in range(1, N)]
    assert any(grads_differ) and any(params_differ)


def test_original_tracking_accumulates_later_losses():
    """tracking="original": actor j logs sum_{i>=j} dL_i/dtheta_j -- with a tiny learning rate
    (no saturation, same arg-max rows in every pass) about (N - j) times its own gradient; the
    critic logs its own gradient plus the actor losses'. Training itself is unchanged."""
    rng = np.random.default_rng(16)
    batch = make_batch(rng, N, B)
    res, agents = {}, {}
    for tracking in ("clean", "original"):
        cfg = make_cfg("sequential", tracking)
        cfg.agent.actor_lr = 1e-6
        agents[tracking] = CCMMADRL(cfg, seed=2, dtype=torch.float64)
        res[tracking] = agents[tracking].update_on_batch(batch)
    torch.testing.assert_close(agents["clean"].actors.flat, agents["original"].actors.flat, rtol=1e-10, atol=1e-13)
    for name, g_clean in res["clean"].actor_grads.items():
        g_orig = res["original"].actor_grads[name]
        ratios = [float(g_orig[j].norm() / g_clean[j].norm()) for j in range(N)]
        np.testing.assert_allclose(ratios, [N - j for j in range(N)], rtol=0.05, err_msg=name)
        torch.testing.assert_close(g_orig[N - 1], g_clean[N - 1])
    for name, g_clean in res["clean"].critic_grads.items():
        assert not torch.allclose(g_clean, res["original"].critic_grads[name]), name
    pool = res["original"].preact_pool
    assert pool.shape == (N, B, N, 3)
    torch.testing.assert_close(pool[0], res["original"].preact)
    assert not torch.equal(pool[1][:, 0], pool[0][:, 0])  # actor 0 updated before pass 1
    torch.testing.assert_close(pool[1][:, 1:], pool[0][:, 1:], rtol=0, atol=0)
    assert res["clean"].preact_pool is None
