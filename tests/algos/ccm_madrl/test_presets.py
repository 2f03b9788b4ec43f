"""The mitigation presets (experiments.md section 3, docs/presets.md).

* every preset's update equals the plain reference (tests/reference.py) at N = 4;
* one test per preset shows its mechanism (bounded pre-activations, clipped steps,
  delayed actor updates, valid stochastic actions, unit-scale rewards, ...);
* every preset (and the documented combinations) runs through the runner with the
  monitor, and resumes exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from gradasym.algos.ccm_madrl.agent import CCMMADRL
from gradasym.config import Config, load_config
from gradasym.monitor import saturation_bound
from gradasym.algos.ccm_madrl.networks import ActorEnsemble
from gradasym.algos.ccm_madrl.policies import RunningMeanStd, policy_head
from gradasym.algos.ccm_madrl.runner import Trainer, run_experiment
from devices import DEVICES
from reference import ReferenceCCM, make_batch, random_states, through_torch_save

N, B = 4, 8

PRESETS = ["large-actor", "large-actor-1024", "linear-hidden", "layernorm", "fullnorm", "gradclip", "reward-norm",
           "td3-delay", "squashed-gaussian", "beta-policy", "softsign", "scaled-sigmoid", "preact-penalty"]
COMBOS = ["layernorm+reward-norm", "fullnorm+gradclip+td3-delay", "squashed-gaussian+reward-norm+fullnorm",
          "beta-policy+preact-penalty"]


def preset_cfg(spec: str, **overrides) -> Config:
    presets = [p for p in spec.split("+") if p != "baseline"]
    return load_config(presets=presets, overrides=overrides)


def small(spec: str, n=N, **agent_kw) -> Config:
    cfg = preset_cfg(spec)
    cfg.env.n_agents = n
    cfg.env.k_channel = 2
    cfg.agent.actor_lr = 1e-2
    cfg.agent.critic_lr = 1e-2
    for k, v in agent_kw.items():
        setattr(cfg.agent, k, v)
    return cfg


# ====================================================================== reference equivalence
def _close(a, b, rtol, atol, what):
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a).double().cpu()
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b).double().cpu()
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}")


def _compare_params(agent, ref, rtol, atol):
    for ens, ref_actors in ((agent.actors, ref.actors), (agent.target_actors, ref.target_actors)):
        views = ens.layer_views(ens.flat.detach())  # same order as the reference's parameters
        for i in range(N):
            for (name, v), p in zip(views.items(), ref_actors[i].parameters(), strict=True):
                v = v[i].t() if v[i].dim() == 2 else v[i]
                _close(v, p, rtol, atol, f"actor {i} {name}")
    for online, ref_critic in ((agent.critic, ref.critic), (agent.target_critic, ref.target_critic)):
        for p, q in zip(online.parameters(), ref_critic.parameters(), strict=True):
            _close(p, q, rtol, atol, "critic parameter")


def _compare(res, out, agent, ref, rtol=1e-9, atol=1e-11):
    _close(res.critic_loss, out["critic_loss"], rtol, atol, "critic loss")
    _close(res.td_errors, out["td_errors"], rtol, atol, "priority errors")
    _close(res.actor_losses, out["actor_losses"], rtol, atol, "actor losses")
    for (name, g), g_ref in zip(res.critic_grads.items(), out["critic_grads"]):
        _close(g, g_ref, rtol, atol * max(1.0, g_ref.abs().max().item()), f"critic grad {name}")
    if out["actor_grads"] is None:
        assert res.actor_grads is None and not res.actor_updated
    else:
        assert res.actor_updated
        for i in range(N):
            for (name, g), g_ref in zip(res.actor_grads.items(), out["actor_grads"][i], strict=True):
                g = g[i].t() if g[i].dim() == 2 else g[i]
                _close(g, g_ref, rtol, atol * max(1.0, g_ref.abs().max().item()), f"actor {i} grad {name}")
    _compare_params(agent, ref, rtol, atol)


EQUIV = {  # preset -> extra agent settings that make the comparison bite
    "layernorm": {},
    "fullnorm": {},
    "gradclip": {"grad_clip": 0.05},  # binds for the critic and some actors
    "reward-norm": {},
    "td3-delay": {},
    "squashed-gaussian": {},
    "beta-policy": {"entropy_coef": 0.1},
    "softsign": {},
    "scaled-sigmoid": {},
    "preact-penalty": {"preact_penalty": 0.05},
    "layernorm+reward-norm": {},
}


def _run_equivalence(spec, mode, tracking="clean", updates=4, device="cpu"):
    cfg = small(spec, actor_update=mode, **EQUIV[spec])
    cfg.run.tracking = tracking
    agent = CCMMADRL(cfg, seed=3, dtype=torch.float64, device=device)
    rng = np.random.default_rng(21)
    if agent.obs_rms is not None:  # non-trivial input statistics
        agent.obs_rms.update(random_states(rng, (40, N)), batch_dims=1)
    if agent.reward_rms is not None:
        agent.reward_rms.update(torch.tensor(rng.uniform(-3000, -500, 30)), batch_dims=1)
    ref = ReferenceCCM(agent)
    if agent.obs_rms is not None:
        ref.obs_stats = (agent.obs_rms.mean, agent.obs_rms.var)
    results = []
    for _ in range(updates):
        batch = make_batch(rng, N, B)
        noise = None
        if agent.policy_gen is not None and agent.n_updates % agent.policy_delay == 0:
            g = torch.Generator()
            g.set_state(agent.policy_gen.get_state())
            noise = torch.randn((N, B, 3), generator=g, dtype=torch.float64)
        res = agent.update_on_batch(batch)
        out = ref.update(batch, reward_scale=agent.reward_scale(), noise=noise)
        _compare(res, out, agent, ref)
        results.append(res)
    return agent, results


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
@pytest.mark.parametrize("spec", list(EQUIV))
def test_preset_update_matches_reference(spec, mode, device):
    agent, results = _run_equivalence(spec, mode, device=device)
    updated = [r for r in results if r.actor_updated]
    assert any(float(g.abs().max()) > 0 for r in updated for g in r.actor_grads.values())
    if spec == "gradclip":  # the clip was active (pre-clip norms above the bound)
        norms = torch.stack([torch.linalg.vector_norm(torch.cat([g[i].flatten() for g in r.actor_grads.values()]))
                             for r in updated for i in range(N)])
        assert (norms > 0.05).any() and (norms < 0.05).any()


@pytest.mark.parametrize("spec", ["layernorm", "squashed-gaussian", "preact-penalty"])
def test_preset_update_matches_reference_original_tracking(spec):
    _run_equivalence(spec, "sequential", tracking="original", updates=2)


# ====================================================================== mechanisms
def train(spec: str, episodes: int, n: int = 10, actor_lr: float = 0.1, **overrides) -> Trainer:
    cfg = preset_cfg(spec, **{"env.n_agents": n, "env.k_channel": 4, "agent.batch_size": 16,
                              "agent.actor_lr": actor_lr, "agent.critic_lr": 1e-3, "run.log_interval": 5,
                              **overrides})
    tr = Trainer(cfg)
    for _ in range(episodes):
        tr.run_episode()
    return tr


@pytest.fixture(scope="module")
def baseline_run() -> Trainer:
    """The faithful setup at actor_lr = 0.1: output pre-activations explode."""
    return train("baseline", 40)


def test_baseline_preactivations_explode(baseline_run):
    assert baseline_run.monitor.max_abs_preactivation > 1e3


def test_layernorm_bounds_output_preactivations(baseline_run):
    tr = train("layernorm", 40)
    ens = tr.agent.actors
    last = ens.n_layers - 1
    gain, shift = ens.ln_weight(last).detach().abs(), ens.ln_bias(last).detach().abs()
    # LayerNorm over 3 outputs: |normalised| <= sqrt(2), so |z| <= sqrt(2) |gain| + |shift|
    bound = float((math.sqrt(2) * gain + shift).max())
    assert tr.monitor.max_abs_preactivation < 10 < 1e3 < baseline_run.monitor.max_abs_preactivation
    with torch.no_grad():
        _, z, _ = ens.forward_with_preact(torch.as_tensor(tr.states, dtype=torch.float32))
    assert float(z.abs().max()) <= bound + 1e-5
    assert tr.agent.squash == "tanh"
    assert "l2.ln_weight" in tr.agent.actor_parameters()  # the LayerNorm is part of each actor


def test_preact_penalty_reduces_preactivations(baseline_run):
    tr = train("preact-penalty", 40)
    assert tr.monitor.max_abs_preactivation < 0.01 * baseline_run.monitor.max_abs_preactivation


def test_gradclip_applies_clipped_gradients():
    """Every gradient the optimisers apply has norm <= grad_clip; the monitor sees the raw one."""
    cfg = preset_cfg("gradclip", **{"env.n_agents": 6, "env.k_channel": 2, "agent.batch_size": 16,
                                    "agent.actor_lr": 0.1})
    clip = cfg.agent.grad_clip
    assert clip == 1.0
    agent = CCMMADRL(cfg, seed=0)
    applied_actor, applied_critic = [], []
    step_agent, critic_step = agent.actor_optim.step_agent, agent.critic_optim.step

    def spy_agent(i, grads):
        applied_actor.append(grads[0].clone())
        step_agent(i, grads)

    def spy_critic(*args, **kw):
        applied_critic.append(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in agent.critic.parameters()])))
        return critic_step(*args, **kw)

    agent.actor_optim.step_agent = spy_agent
    agent.critic_optim.step = spy_critic
    rng = np.random.default_rng(0)
    raw_actor, raw_critic = [], []
    for ep in range(6):
        s = random_states(rng, (6,)).numpy()
        for _ in range(10):
            step = agent.act(s, ep)
            s2 = random_states(rng, (6,)).numpy()
            agent.remember(s, step.actions, step.x, float(rng.uniform(-5000, -1000)), s2, False)
            s = s2
        res = agent.update()
        flat = torch.cat([g.flatten(1) for g in res.actor_grads.values()], dim=1)
        raw_actor.append(torch.linalg.vector_norm(flat, dim=1))
        raw_critic.append(torch.linalg.vector_norm(torch.cat([g.flatten() for g in res.critic_grads.values()])))
    raw_actor, raw_critic = torch.cat(raw_actor), torch.stack(raw_critic)
    applied = torch.stack(applied_actor)
    norms = torch.linalg.vector_norm(applied, dim=1)
    assert float(norms.max()) <= clip * (1 + 1e-5) and float(max(applied_critic)) <= clip * (1 + 1e-5)
    assert float(raw_critic.min()) > clip  # the critic's raw gradients are far above the bound
    # applied = raw * min(1, clip / (||raw|| + 1e-6)) for every actor step
    expect = torch.clamp(clip / (raw_actor + 1e-6), max=1.0) * raw_actor
    torch.testing.assert_close(norms, expect, rtol=1e-4, atol=1e-9)


def test_td3_delay_updates_actors_every_second_update():
    cfg = small("td3-delay", n=5)
    assert cfg.agent.policy_delay == 2
    agent = CCMMADRL(cfg, seed=1)
    rng = np.random.default_rng(3)
    for k in range(1, 7):
        before = (agent.actors.flat.detach().clone(), agent.target_actors.flat.detach().clone(),
                  [p.detach().clone() for p in agent.critic.parameters()])
        res = agent.update_on_batch(make_batch(rng, 5, B, dtype=torch.float32))
        actors_moved = not torch.equal(before[0], agent.actors.flat)
        targets_moved = not torch.equal(before[1], agent.target_actors.flat)
        assert res.actor_updated == (k % 2 == 1) == actors_moved == targets_moved, k
        assert (res.actor_grads is None) == (not res.actor_updated)
        assert any(not torch.equal(p, q) for p, q in zip(before[2], agent.critic.parameters()))  # critic: always
        assert res.preact.shape == (B, 5, 3)  # the monitor still gets the pre-activations
        if not res.actor_updated:
            assert math.isnan(res.actor_loss)


def test_td3_delay_skipped_actor_updates_are_not_freezes():
    """Through the runner: actors unchanged at every other update, yet no actor counts as stopped."""
    tr = train("td3-delay", 12, n=6, actor_lr=1e-4, **{"run.log_interval": 2})
    assert tr.monitor.n_stopped == 0 and tr.monitor.all_stopped_episode is None
    rows = pd.DataFrame(tr.tracking_rows)  # log episodes 2, 4, ... fall on actor updates (the 1st, 3rd, ...)
    assert rows["actor_grad_norm"].notna().all() and (rows["actor_grad_norm"] > 0).all()
    # the freeze check still works: a frozen actor is caught at its next actor update
    base = train("td3-delay", 6, n=6, actor_lr=1e-4, **{"run.freeze_tolerance": 1.0})
    assert base.monitor.all_stopped_episode == 2


def test_squashed_gaussian_policy():
    cfg = small("squashed-gaussian", n=6)
    assert cfg.agent.entropy_coef == 0.2
    agent = CCMMADRL(cfg, seed=2)
    assert agent.squash == "tanh" and agent.actors.sizes[-1] == 6  # mean and log_std heads
    s = random_states(np.random.default_rng(4), (6,)).numpy()
    greedy = agent.act(s, 0, explore=False)
    with torch.no_grad():
        out = agent.actors.policy_forward(torch.as_tensor(s, dtype=torch.float32))
    np.testing.assert_allclose(greedy.actions, np.tanh(out.dist[0].double().numpy()), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(greedy.preact, out.dist[0])  # the monitor sees the mean
    acts = np.stack([agent.act(s, 0).actions for _ in range(50)])
    assert np.all(np.abs(acts) <= 1) and acts.std(axis=0).min() > 0.05  # samples, std ~ 1 at start
    # reparameterised samples: finite log-probabilities, gradients reach mean and log_std
    noise = torch.randn(6, 32, 3, generator=torch.Generator().manual_seed(0))
    flat = agent.actors.flat.detach().requires_grad_(True)
    o = agent.actors.policy_forward(torch.as_tensor(random_states(np.random.default_rng(5), (6, 32)),
                                                    dtype=torch.float32), flat, noise)
    assert torch.isfinite(o.log_prob).all() and o.log_prob.shape == (6, 32)
    assert (o.action.abs() <= 1).all()
    (o.action.sum() + o.log_prob.sum()).backward()
    g_out = agent.actors.weight(agent.actors.n_layers - 1, flat.grad)  # (N, in, 6)
    assert (g_out[..., :3].abs().sum() > 0) and (g_out[..., 3:].abs().sum() > 0)
    # log-probability equals torch.distributions' (with the tanh correction)
    mean, log_std = o.dist
    u = mean + log_std.exp() * noise
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1) \
        - torch.log(1 - torch.tanh(u) ** 2 + 1e-6).sum(-1)
    torch.testing.assert_close(o.log_prob, ref, rtol=1e-5, atol=1e-4)


def test_beta_policy():
    cfg = small("beta-policy", n=6)
    agent = CCMMADRL(cfg, seed=2)
    assert agent.squash == "scaled-sigmoid"
    s = random_states(np.random.default_rng(4), (6,)).numpy()
    acts = np.stack([agent.act(s, 0).actions for _ in range(200)])
    assert np.all(np.abs(acts) <= 1) and acts.std(axis=0).min() > 0.1
    with torch.no_grad():
        out = agent.actors.policy_forward(torch.as_tensor(s, dtype=torch.float32))
    alpha, beta = out.dist
    assert (alpha > 1).all() and (beta > 1).all()
    # samples follow Beta(alpha, beta) on [0, 1] mapped to [-1, 1]: their mean is the mean action
    np.testing.assert_allclose(acts.mean(axis=0), out.action.numpy(), atol=0.1)
    greedy = agent.act(s, 0, explore=False)
    np.testing.assert_allclose(greedy.actions, out.action.double().numpy(), rtol=1e-6, atol=1e-7)
    # the monitor's pre-activation: mean action = 2 sigmoid(log(alpha / beta)) - 1 exactly (in real arithmetic)
    torch.testing.assert_close(out.action, 2 * torch.sigmoid(out.preact) - 1, rtol=1e-5, atol=1e-6)
    ent = torch.distributions.Beta(alpha, beta).entropy().sum(-1)
    torch.testing.assert_close(out.entropy, ent, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out.entropy).all()
    # saturation of the mean action above 0.9 <=> |log(alpha / beta)| above the scaled-sigmoid bound
    z = torch.tensor([[2.0, 3.0, -4.0]])
    a = policy_head(torch.cat([z, torch.zeros_like(z)], dim=-1), [], "beta", "tanh", 3).action
    bound = saturation_bound("scaled-sigmoid", 0.9)
    pre = policy_head(torch.cat([z, torch.zeros_like(z)], dim=-1), [], "beta", "tanh", 3).preact
    assert torch.equal(a.abs() > 0.9, pre.abs() > bound)


@pytest.mark.parametrize("name, fn", [("softsign", lambda z: z / (1 + z.abs())),
                                      ("scaled-sigmoid", lambda z: 2 * torch.sigmoid(z) - 1)])
def test_output_activations(name, fn):
    cfg = small(name, n=5)
    agent = CCMMADRL(cfg, seed=0)
    assert agent.squash == name
    ens = agent.actors
    with torch.no_grad():
        ens.flat.mul_(50.0)  # large pre-activations
    s = random_states(np.random.default_rng(1), (5, 16)).float()
    with torch.no_grad():
        a, z, _ = ens.forward_with_preact(s)
    assert (a.abs() <= 1).all() and float(z.abs().max()) > 10
    torch.testing.assert_close(a, fn(z))
    # the hand-written backward matches autograd for this squashing (float64)
    ens64 = ActorEnsemble(5, 7, 3, (16, 8), output_activation=name, generator=torch.Generator().manual_seed(3),
                          dtype=torch.float64)
    x = random_states(np.random.default_rng(2), (5, 12)) / 100
    a, _, hidden = ens64.forward_with_preact(x)
    g_a = torch.randn(5, 12, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    g_z = torch.randn(5, 12, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for i in range(5):
        row = ens64.flat[i].detach().requires_grad_(True)
        a_i, z_i = ens64.forward_agent(i, x[i], row)
        (expect,) = torch.autograd.grad((g_a[i] * a_i).sum() + (g_z[i] * z_i).sum(), row)
        got = ens64.backward_agent(i, x[i], [h[i] for h in hidden], a[i].detach(), g_a[i], g_z[i])
        torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-12)


def test_reward_norm_scales_rewards_to_unit_size():
    cfg = small("reward-norm", n=5)
    agent = CCMMADRL(cfg, seed=0)
    assert agent.reward_scale() == pytest.approx(1.0, rel=1e-6)  # prior: var 1
    rng = np.random.default_rng(0)
    rewards = rng.normal(-4000, 600, 300)
    s = random_states(rng, (5,)).numpy()
    for r in rewards:
        step = agent.act(s, 0)
        agent.remember(s, step.actions, step.x, float(r), s, False)
    scale = agent.reward_scale()
    assert scale == pytest.approx(rewards.std(), rel=0.02)
    assert agent.reward_rms.mean.item() == pytest.approx(rewards.mean(), rel=1e-5)
    stored = agent.replay.rewards[: len(agent.replay)].double().numpy()
    np.testing.assert_allclose(stored, rewards, rtol=1e-6)  # the replay keeps raw rewards
    normed = stored / scale
    assert normed.std() == pytest.approx(1.0, rel=0.02) and np.abs(normed).max() < 20
    # the critic's targets use the scaled rewards: y = r / scale + gamma * q'
    batch = agent.replay.sample(16)
    y_scaled = agent._td_targets(agent._scaled_rewards(batch.rewards), batch.next_states, batch.dones)
    y_raw = agent._td_targets(batch.rewards, batch.next_states, batch.dones)
    torch.testing.assert_close(y_raw - y_scaled, batch.rewards - batch.rewards / scale)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal([3.0, -200.0], [0.5, 40.0], size=(5000, 2))
    rms = RunningMeanStd((2,))
    for chunk in np.array_split(x, 37):
        rms.update(torch.from_numpy(chunk), batch_dims=1)
    # the prior (count 1e-4, mean 0, var 1) is a pseudo-sample of weight 1e-4
    np.testing.assert_allclose(rms.mean.numpy(), x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(rms.var.numpy(), x.var(0), rtol=1e-4)
    assert rms.count == pytest.approx(5000 + 1e-4)


def test_fullnorm_input_statistics_converge():
    cfg = small("fullnorm", n=4)
    agent = CCMMADRL(cfg, seed=0)
    ens = agent.actors
    assert [ens.has_ln(j) for j in range(ens.n_layers)] == [True, True, False]  # after each hidden layer only
    rng = np.random.default_rng(0)
    mean = np.array([[float(i * 10 + d) for d in range(7)] for i in range(4)])
    std = np.array([[1.0 + 0.5 * i + 0.1 * d for d in range(7)] for i in range(4)])
    for _ in range(3000):
        agent.act(mean + std * rng.standard_normal((4, 7)), 0)
    np.testing.assert_allclose(agent.obs_rms.mean.numpy(), mean, atol=0.15)
    np.testing.assert_allclose(np.sqrt(agent.obs_rms.var.numpy()), std, rtol=0.06)
    # acting greedily (evaluation) does not move the statistics
    before = agent.obs_rms.state_dict()
    agent.act(mean, 0, explore=False)
    assert torch.equal(before["mean"], agent.obs_rms.mean) and before["count"] == agent.obs_rms.count
    # what the actors see: standardised inputs
    fresh = torch.as_tensor(mean + std * rng.standard_normal((2000, 4, 7)), dtype=torch.float32)
    seen = agent._actor_inputs(fresh)
    assert float(seen.mean(0).abs().max()) < 0.1 and float((seen.std(0) - 1).abs().max()) < 0.1
    # hidden LayerNorm: unit-normalised hidden outputs feed the next layer; the monitor gets post-ReLU values
    out = ens.policy_forward(seen[:5].transpose(0, 1))
    assert all((h >= 0).all() for h in out.hidden)


@pytest.mark.parametrize("spec", ["large-actor", "large-actor-1024", "linear-hidden"])
def test_architecture_presets(spec):
    cfg = small(spec, n=4)
    agent = CCMMADRL(cfg, seed=0)
    hidden = {"large-actor": [512, 128], "large-actor-1024": [1024, 256], "linear-hidden": [64, 32]}[spec]
    assert agent.actors.sizes == [7, *hidden, 3]
    act = "linear" if spec == "linear-hidden" else "relu"
    assert agent.actors.hidden_activation == act and agent.critic.hidden_activation == act
    assert agent.critic.sizes[1:] == [512, 128, 1] and agent.squash == "tanh"


def test_linear_hidden_matches_reference():
    """The linear-hidden preset (actor and critic) on the reference path, sequential."""
    cfg = small("linear-hidden")
    agent = CCMMADRL(cfg, seed=3, dtype=torch.float64)
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(5)
    for _ in range(2):
        batch = make_batch(rng, N, B)
        _compare(agent.update_on_batch(batch), ref.update(batch), agent, ref)


# ====================================================================== runner + monitor, every preset
SMALL_RUN = {"env.n_agents": 6, "env.k_channel": 2, "env.n_units": 2, "agent.batch_size": 8,
             "agent.memory_capacity": 200, "agent.actor_lr": 0.01, "run.episodes": 6, "run.log_interval": 2,
             "run.checkpoint_interval": 3}


@pytest.mark.parametrize("spec", PRESETS + COMBOS)
def test_preset_runs_with_monitor(spec, tmp_path):
    cfg = preset_cfg(spec, **SMALL_RUN)
    summary = run_experiment(cfg, tmp_path)
    assert summary["status"] == "finished" and summary["episodes_run"] == 6
    assert sorted(summary["presets"]) == sorted(spec.split("+"))
    for key in ["stopping_episode", "per_agent_stop_episode", "max_abs_preactivation", "final_saturation_ratio",
                "final_rho", "critic_stopped", "seconds_per_episode"]:
        assert key in summary
    assert math.isfinite(summary["max_abs_preactivation"]) and math.isfinite(summary["final_saturation_ratio"])
    tr = pd.read_parquet(tmp_path / "tracking.parquet")
    assert list(tr["episode"]) == [2, 4, 6]
    cols = ["actor_grad_norm", "critic_grad_norm", "rho", "preact_mean", "preact_std", "preact_max_abs",
            "saturation_ratio", "saturation_dim0", "saturation_dim1", "saturation_dim2", "actor_grad_norm_l0",
            "critic_grad_norm_l0", "actor_hidden_mean_l0"]
    assert np.isfinite(tr[cols].to_numpy()).all(), tr[cols]
    assert "saturation_dim3" not in tr  # three action dimensions for every policy
    agents = pd.read_parquet(tmp_path / "tracking_agents.parquet")
    assert len(agents) == 3 * 6 and np.isfinite(agents[["grad_norm", "saturation_ratio"]].to_numpy()).all()
    ep = pd.read_parquet(tmp_path / "episodes.parquet")
    assert ep["reward"].notna().all() and ep["updated"].iloc[1:].all()


@pytest.mark.parametrize("spec", ["squashed-gaussian+reward-norm+fullnorm+td3-delay", "beta-policy+gradclip"])
def test_preset_resume_equals_uninterrupted(spec, tmp_path):
    """The mitigations' state (input and reward statistics, policy noise stream, delay phase) resumes exactly."""
    full = preset_cfg(spec, **{**SMALL_RUN, "run.episodes": 9})
    run_experiment(full, tmp_path / "a")
    run_experiment(preset_cfg(spec, **{**SMALL_RUN, "run.episodes": 5, "run.keep_replay": True}), tmp_path / "b")
    run_experiment(preset_cfg(spec, **{**SMALL_RUN, "run.episodes": 9}), tmp_path / "b", resume=True)  # extended
    a, b = (pd.read_parquet(tmp_path / x / "episodes.parquet").drop(columns="seconds") for x in "ab")
    pd.testing.assert_frame_equal(a, b)
    ta, tb = (pd.read_parquet(tmp_path / x / "tracking.parquet") for x in "ab")
    pd.testing.assert_frame_equal(ta, tb)


def test_agent_state_dict_with_mitigations_loads_weights_only():
    cfg = small("squashed-gaussian+reward-norm+fullnorm", n=4)
    a = CCMMADRL(cfg, seed=0)
    rng = np.random.default_rng(0)
    s = random_states(rng, (4,)).numpy()
    for _ in range(20):
        step = a.act(s, 0)
        a.remember(s, step.actions, step.x, -3000.0 + rng.normal(), s, False)
    a.update()
    b = CCMMADRL(cfg, seed=7)
    b.load_state_dict(through_torch_save(a.state_dict()))
    ra, rb = a.update(), b.update()
    assert ra.critic_loss == rb.critic_loss and torch.equal(a.actors.flat, b.actors.flat)
    assert a.reward_scale() == b.reward_scale() and torch.equal(a.obs_rms.mean, b.obs_rms.mean)


def test_config_records_presets_and_squash_names():
    cfg = preset_cfg("layernorm+reward-norm")
    assert cfg.presets == ["layernorm", "reward-norm"]
    assert cfg.agent.actor_norm == "layernorm" and cfg.agent.reward_norm is True
    squash = {"baseline": "tanh", "layernorm": "tanh", "fullnorm": "tanh", "softsign": "softsign",
              "scaled-sigmoid": "scaled-sigmoid", "squashed-gaussian": "tanh", "beta-policy": "scaled-sigmoid"}
    for spec, name in squash.items():
        assert CCMMADRL(small(spec, n=4), seed=0).squash == name, spec
