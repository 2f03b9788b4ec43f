"""The plasticity remedies (docs/presets.md, "Plasticity remedies"): one test per mechanism on a small
agent, then every remedy preset through the runner (alone and combined), resumed exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from gradasym.algos.ccm_madrl.agent import CCMMADRL
from gradasym.algos.ccm_madrl.compiled import compiled_unsupported
from gradasym.algos.ccm_madrl.optim import BatchedAdam
from gradasym.algos.ccm_madrl.remedies import (fresh_actor_flat, fresh_critic_layer, redo_actors_, redo_critic_,
                                               reset_last_actors_, reset_last_critic_, shrink_perturb_actors_,
                                               shrink_perturb_critic_)
from gradasym.algos.ccm_madrl.runner import run_experiment
from gradasym.config import ConfigError, load_config

from reference import make_batch

N, B = 4, 8


def trained_agent(*presets: str, dtype=torch.float64, updates: int = 2, **overrides) -> CCMMADRL:
    """A small agent after a few updates (non-zero Adam moments everywhere)."""
    cfg = load_config(presets=list(presets), overrides={"env.n_agents": N, "env.k_channel": 2,
                                                        "agent.actor_lr": 1e-2, "agent.critic_lr": 1e-2,
                                                        **overrides})
    agent = CCMMADRL(cfg, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    for _ in range(updates):
        agent.update_on_batch(make_batch(rng, N, B, dtype=dtype))
    return agent


def snapshot(agent: CCMMADRL) -> dict[str, torch.Tensor]:
    out = {"flat": agent.actors.flat.detach().clone(), "m": agent.actor_optim.exp_avg[0].clone(),
           "v": agent.actor_optim.exp_avg_sq[0].clone()}
    for j, lin in enumerate(agent.critic.layers):
        for name, p in (("w", lin.weight), ("b", lin.bias)):
            out[f"c{j}{name}"] = p.detach().clone()
            st = agent.critic_optim.state[p]
            out[f"c{j}{name}_m"], out[f"c{j}{name}_v"] = st["exp_avg"].clone(), st["exp_avg_sq"].clone()
    return out


def clone_gen(seed: int = 11) -> tuple[torch.Generator, torch.Generator]:
    a = torch.Generator().manual_seed(seed)
    b = torch.Generator().manual_seed(seed)
    return a, b


# ====================================================================== ReDo
def actor_hidden_with_dormant(agent: CCMMADRL) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Hidden activations (B, N, H_l) with chosen dormant units: layer 0 unit 3 of actor 1 and
    units 0, 5 of actor 2; layer 1 unit 7 of actor 0. Returns them and the dormant masks (N, H_l)."""
    g = torch.Generator().manual_seed(4)
    sizes = agent.actors.out_sizes[:-1]
    hidden = [torch.rand(B, N, h, generator=g, dtype=torch.float64) + 0.5 for h in sizes]
    masks = [torch.zeros(N, h, dtype=torch.bool) for h in sizes]
    for layer, agent_i, unit in ((0, 1, 3), (0, 2, 0), (0, 2, 5), (1, 0, 7)):
        hidden[layer][:, agent_i, unit] = 0.0
        masks[layer][agent_i, unit] = True
    return hidden, masks


def test_redo_actors_recycles_exactly_the_dormant_units():
    agent = trained_agent()
    ens = agent.actors
    before = snapshot(agent)
    hidden, masks = actor_hidden_with_dormant(agent)
    g, g_copy = clone_gen()
    counts = redo_actors_(ens, agent.actor_optim, hidden, 0.0, g)
    fresh = fresh_actor_flat(ens, 0.0, g_copy)  # the same draws
    assert counts.tolist() == [1, 1, 2, 0]
    flat, m, v = ens.flat.detach(), agent.actor_optim.exp_avg[0], agent.actor_optim.exp_avg_sq[0]
    changed = torch.zeros_like(flat, dtype=torch.bool)
    for layer, mask in enumerate(masks):
        col = mask.unsqueeze(1).expand_as(ens.weight(layer, flat))
        rows = mask.unsqueeze(2).expand_as(ens.weight(layer + 1, flat))
        # incoming weights and biases fresh
        assert torch.equal(ens.weight(layer, flat)[col], ens.weight(layer, fresh)[col])
        assert torch.equal(ens.bias(layer, flat)[mask], ens.bias(layer, fresh)[mask])
        # outgoing weights zero, and the Adam moments of all of those entries zero
        assert (ens.weight(layer + 1, flat)[rows] == 0).all()
        for mom in (m, v):
            assert (ens.weight(layer, mom)[col] == 0).all() and (ens.bias(layer, mom)[mask] == 0).all()
            assert (ens.weight(layer + 1, mom)[rows] == 0).all()
        ens.weight(layer, changed)[col] = True
        ens.bias(layer, changed)[mask] = True
        ens.weight(layer + 1, changed)[rows] = True
    assert changed.any(1).tolist() == [True, True, True, False]
    # every other weight and moment untouched (bit for bit)
    for now, old in ((flat, before["flat"]), (m, before["m"]), (v, before["v"])):
        assert torch.equal(now[~changed], old[~changed])
    assert torch.equal(flat[3], before["flat"][3])  # actor 3 had no dormant unit


def test_redo_critic_recycles_exactly_the_dormant_units():
    agent = trained_agent()
    before = snapshot(agent)
    g0 = torch.Generator().manual_seed(2)
    hidden = [torch.rand(20, lin.weight.shape[0], generator=g0, dtype=torch.float64) + 0.5
              for lin in agent.critic.layers[:-1]]
    hidden[0][:, [4, 9]] = 0.0
    hidden[1][:, 2] *= 1e-3  # score ~1e-3: dormant at tau = 0.025, not at tau = 0
    g, g_copy = clone_gen()
    assert redo_critic_(agent.critic, agent.critic_optim, hidden, 0.025, g) == 3
    fresh = [fresh_critic_layer(agent.critic, j, 0.0, g_copy) for j in range(2)]
    L = agent.critic.layers
    recycled = {0: [4, 9], 1: [2], 2: []}
    for j in (0, 1):
        units = recycled[j]
        keep = torch.ones(L[j].weight.shape[0], dtype=torch.bool)
        keep[units] = False
        assert torch.equal(L[j].weight[units], fresh[j][0][units]) and torch.equal(L[j].bias[units], fresh[j][1][units])
        # the rows of units not recycled: only the columns from recycled units of layer j-1 changed (zeroed)
        cols = torch.ones(L[j].weight.shape[1], dtype=torch.bool)
        if j:
            cols[recycled[j - 1]] = False
        assert torch.equal(L[j].weight[keep][:, cols], before[f"c{j}w"][keep][:, cols])
        assert torch.equal(L[j].bias[keep], before[f"c{j}b"][keep])
        # outgoing weights zero (layers are processed in order: a recycled unit of layer j+1 then
        # gets a whole fresh incoming row, as in Sokar et al.'s implementation)
        nxt = torch.ones(L[j + 1].weight.shape[0], dtype=torch.bool)
        nxt[recycled[j + 1]] = False
        assert (L[j + 1].weight[nxt][:, units] == 0).all()
        st_w, st_b, st_out = (agent.critic_optim.state[p] for p in (L[j].weight, L[j].bias, L[j + 1].weight))
        for key, tag in (("exp_avg", "m"), ("exp_avg_sq", "v")):
            assert (st_w[key][units] == 0).all() and (st_b[key][units] == 0).all()
            assert (st_out[key][:, units] == 0).all()
            assert torch.equal(st_w[key][keep][:, cols], before[f"c{j}w_{tag}"][keep][:, cols])
            assert torch.equal(st_b[key][keep], before[f"c{j}b_{tag}"][keep])
    out_keep = torch.ones(L[2].weight.shape[1], dtype=torch.bool)
    out_keep[2] = False
    assert torch.equal(L[2].weight[:, out_keep], before["c2w"][:, out_keep]) and torch.equal(L[2].bias, before["c2b"])
    # tau = 0 would not have recycled the nearly silent unit of layer 1
    other = trained_agent()
    assert redo_critic_(other.critic, other.critic_optim, hidden, 0.0, torch.Generator().manual_seed(0)) == 2


def test_redo_with_crelu_recycles_a_unit_when_both_of_its_outputs_are_dormant():
    agent = trained_agent("crelu")
    ens = agent.actors
    h0, h1 = ens.out_sizes[0], ens.out_sizes[1]
    g = torch.Generator().manual_seed(5)
    hidden = [torch.rand(B, N, 2 * h0, generator=g, dtype=torch.float64) + 0.5,
              torch.rand(B, N, 2 * h1, generator=g, dtype=torch.float64) + 0.5]
    hidden[0][:, 0, [1, h0 + 1]] = 0.0  # unit 1 of actor 0: both halves silent -> recycled
    hidden[0][:, 1, 2] = 0.0  # only relu(x) silent: relu(-x) still carries it -> kept
    before = ens.flat.detach().clone()
    counts = redo_actors_(ens, agent.actor_optim, hidden, 0.0, torch.Generator().manual_seed(0))
    assert counts.tolist() == [1, 0, 0, 0]
    w1 = ens.weight(1, ens.flat.detach())  # (N, 2 H0, H1)
    assert (w1[0, [1, h0 + 1]] == 0).all()
    assert torch.equal(ens.flat.detach()[1:], before[1:])


# ====================================================================== Shrink & Perturb
def test_shrink_perturb_is_lambda_theta_plus_sigma_fresh():
    agent = trained_agent("layernorm")
    before = snapshot(agent)
    g, g_copy = clone_gen()
    shrink_perturb_actors_(agent.actors, 0.7, 0.3, 3e-3, g)
    shrink_perturb_critic_(agent.critic, 0.7, 0.3, 3e-3, g)
    fresh = fresh_actor_flat(agent.actors, 3e-3, g_copy)
    torch.testing.assert_close(agent.actors.flat.detach(), 0.7 * before["flat"] + 0.3 * fresh, rtol=0, atol=1e-15)
    for j, lin in enumerate(agent.critic.layers):
        fw, fb = fresh_critic_layer(agent.critic, j, 3e-3, g_copy)
        torch.testing.assert_close(lin.weight.detach(), 0.7 * before[f"c{j}w"] + 0.3 * fw, rtol=0, atol=1e-15)
        torch.testing.assert_close(lin.bias.detach(), 0.7 * before[f"c{j}b"] + 0.3 * fb, rtol=0, atol=1e-15)
    # the fresh initialisation has the networks' initial distributions: LayerNorm gain 1, shift 0,
    # output layer within +-output_init, hidden layers within +-1/sqrt(fan_in)
    ens = agent.actors
    assert (ens.ln_weight(2, fresh) == 1).all() and (ens.ln_bias(2, fresh) == 0).all()
    assert ens.weight(2, fresh).abs().max() <= 3e-3 and ens.weight(0, fresh).abs().max() <= 7 ** -0.5
    # the optimiser's moments are kept
    assert torch.equal(agent.actor_optim.exp_avg[0], before["m"])


# ====================================================================== reset-last
@pytest.mark.parametrize("k", [1, 2])
def test_reset_last_resets_exactly_the_named_layers_and_their_moments(k):
    agent = trained_agent()
    ens = agent.actors
    before = snapshot(agent)
    g, g_copy = clone_gen()
    reset_last_actors_(ens, agent.actor_optim, k, 3e-3, g)
    reset_last_critic_(agent.critic, agent.critic_optim, k, 3e-3, g)
    fresh = fresh_actor_flat(ens, 3e-3, g_copy)
    flat = ens.flat.detach()
    for layer in range(ens.n_layers):
        reset = layer >= ens.n_layers - k
        for view in (ens.weight, ens.bias):
            now, old = view(layer, flat), view(layer, before["flat"])
            assert torch.equal(now, view(layer, fresh) if reset else old), (layer, reset)
            for mom, key in ((agent.actor_optim.exp_avg[0], "m"), (agent.actor_optim.exp_avg_sq[0], "v")):
                expected = torch.zeros_like(now) if reset else view(layer, before[key])
                assert torch.equal(view(layer, mom), expected)
    fresh_c = [fresh_critic_layer(agent.critic, j, 3e-3, g_copy) for j in range(3)]
    for j, lin in enumerate(agent.critic.layers):
        reset = j >= 3 - k
        assert torch.equal(lin.weight.detach(), fresh_c[j][0] if reset else before[f"c{j}w"])
        assert torch.equal(agent.critic_optim.state[lin.weight]["exp_avg"],
                           torch.zeros_like(lin.weight) if reset else before[f"c{j}w_m"])
    with pytest.raises(ValueError, match="k must be"):
        reset_last_actors_(ens, agent.actor_optim, 4, 3e-3, g)


# ====================================================================== CReLU
def test_crelu_doubles_the_hidden_width_and_trains_through_autograd():
    agent = trained_agent("crelu", updates=0)
    ens = agent.actors
    assert ens.out_sizes == [64, 32, 3] and ens.in_sizes == [7, 128, 64] and not ens.manual_backward
    s = torch.randn(N, B, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = ens.policy_forward(s)
    assert [h.shape[-1] for h in out.hidden] == [128, 64]
    # the plain computation, one actor at a time
    for i in range(N):
        x = s[i]
        for layer in range(2):
            pre = x @ ens.weight(layer)[i] + ens.bias(layer)[i]
            x = torch.cat([pre.relu(), (-pre).relu()], dim=-1)
            torch.testing.assert_close(out.hidden[layer][i], x, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.action[i], torch.tanh(x @ ens.weight(2)[i] + ens.bias(2)[i]), rtol=0,
                                   atol=1e-12)
    before = ens.flat.detach().clone()
    agent.update_on_batch(make_batch(np.random.default_rng(0), N, B))
    assert (ens.flat.detach() != before).any(1).all()  # every actor learned
    with pytest.raises(ConfigError, match="crelu"):
        load_config(presets=["crelu"], overrides={"agent.hidden_activation": "linear"})


# ====================================================================== ln-wd
def test_ln_wd_decays_weights_decoupled():
    # with a zero gradient, Adam's step is 0 and only the decay acts: p <- p (1 - lr wd)
    p = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    opt = BatchedAdam([p], lr=0.1, weight_decay=0.5)
    p0 = p.clone()
    opt.step_all([torch.zeros_like(p)])
    torch.testing.assert_close(p, p0 * (1 - 0.05), rtol=0, atol=1e-15)
    opt.step_agent(1, [torch.zeros(5, dtype=torch.float64)])  # one row only
    torch.testing.assert_close(p[1], p0[1] * 0.95 ** 2, rtol=0, atol=1e-15)
    torch.testing.assert_close(p[0], p0[0] * 0.95, rtol=0, atol=1e-15)
    # the same arithmetic as torch.optim.AdamW on a row with a gradient
    q = p0[0].clone().requires_grad_(True)
    ref = torch.optim.AdamW([q], lr=0.1, weight_decay=0.5)
    mine = p0.clone()
    opt2 = BatchedAdam([mine], lr=0.1, weight_decay=0.5)
    for t in range(3):
        g = torch.full((5,), 0.3 * (t + 1), dtype=torch.float64)
        q.grad = g.clone()
        ref.step()
        opt2.step_agent(0, [g])
    torch.testing.assert_close(mine[0], q.detach(), rtol=1e-12, atol=1e-14)
    # the preset: LayerNorm before tanh, AdamW on the critic, decay on the actors' optimiser
    agent = trained_agent("ln-wd", updates=0)
    assert agent.actors.has_ln(2) and isinstance(agent.critic_optim, torch.optim.AdamW)
    assert agent.actor_optim.weight_decay == 0.01 and agent.critic_optim.param_groups[0]["weight_decay"] == 0.01
    plain = trained_agent(updates=0)
    assert type(plain.critic_optim) is torch.optim.Adam and plain.actor_optim.weight_decay == 0.0


def test_compiled_engine_declines_crelu_and_ln_wd_and_torch_only_ones_are_named():
    from gradasym.algos.ccm_madrl.remedies import torch_engine_only

    for spec in ("crelu", "ln-wd"):  # another architecture / optimiser: the torch engine's
        reason = compiled_unsupported(load_config(presets=[spec]))
        assert reason is not None and "agent." in reason, spec
    for spec in ("redo", "shrink-perturb", "reset-last"):  # act on the agent's tensors between updates
        assert compiled_unsupported(load_config(presets=[spec])) is None, spec
    assert torch_engine_only(load_config(presets=["crelu", "ln-wd", "redo"]).agent) == ["agent.crelu",
                                                                                      "agent.weight_decay"]
    assert torch_engine_only(load_config(presets=["redo", "shrink-perturb", "reset-last"]).agent) == []


# ====================================================================== through the runner
SMALL_RUN = {"env.n_agents": 6, "env.k_channel": 2, "env.n_units": 2, "agent.batch_size": 8,
             "agent.memory_capacity": 200, "agent.actor_lr": 0.01, "run.episodes": 9, "run.log_interval": 2,
             "run.checkpoint_interval": 3}
#: short periods for a 9-episode run (8 updates), per preset
PERIODS = {"redo": {"agent.redo_period": 2, "agent.redo_tau": 0.1}, "shrink-perturb": {"agent.shrink_perturb_period": 3},
           "reset-last": {"agent.reset_last_period": 4}}


def remedy_cfg(spec: str, **extra):
    presets = spec.split("+")
    periods = {k: v for name in presets for k, v in PERIODS.get(name, {}).items()}
    return load_config(presets=presets, overrides={**SMALL_RUN, **periods, **extra})


@pytest.mark.parametrize("spec", ["redo", "shrink-perturb", "reset-last", "crelu", "ln-wd",
                                  "redo+shrink-perturb+reset-last+crelu+ln-wd"])
def test_remedy_presets_run_record_and_resume_exactly(spec, tmp_path):
    full = remedy_cfg(spec)
    run_experiment(full, tmp_path / "a")
    run_experiment(remedy_cfg(spec, **{"run.episodes": 5, "run.keep_replay": True}), tmp_path / "b")
    run_experiment(remedy_cfg(spec), tmp_path / "b", resume=True)
    a, b = (pd.read_parquet(tmp_path / x / "episodes.parquet").drop(columns="seconds") for x in "ab")
    pd.testing.assert_frame_equal(a, b)
    ta, tb = (pd.read_parquet(tmp_path / x / "tracking.parquet") for x in "ab")
    pd.testing.assert_frame_equal(ta, tb)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert sorted(saved["presets"]) == sorted(spec.split("+"))
    if "redo" in spec:
        assert saved["agent"]["redo_period"] == 2 and {"redo_actor_units", "redo_critic_units"} <= set(a.columns)
        applied = a[a["redo_actor_units"] + a["redo_critic_units"] > 0]["episode"]
        assert all((ep - 1) % 2 == 0 for ep in applied)  # updates 2, 4, ... follow episodes 3, 5, ...
    if "shrink-perturb" in spec:
        assert list(a.loc[a["shrink_perturb"] == 1, "episode"]) == [4, 7]  # after updates 3 and 6
    if "reset-last" in spec:
        assert list(a.loc[a["reset_last"] == 1, "episode"]) == [5, 9]  # after updates 4 and 8
    assert np.isfinite(ta[["actor_effective_rank", "critic_effective_rank", "actor_dist_init"]].to_numpy()).all()
