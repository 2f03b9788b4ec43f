"""CCMMADRL: acting and the master's selection, replay insertion, update results,
determinism and exact resumption, exact row pruning."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from gradasym.algos.ccm_madrl.agent import AgentDims, CCMMADRL, _BatchCritic, agent_sections, epsilon, to_env_fraction
from gradasym.config import AgentConfig, Config
from gradasym.env.mec import MECEnv
from reference import ReferenceCCM, random_states, through_torch_save

N = 6


def make_cfg(n=N, k=2, s_e=400.0, **agent_kw) -> Config:
    cfg = Config()
    cfg.env.n_agents = n
    cfg.env.k_channel = k
    cfg.env.s_e = s_e
    for key, v in agent_kw.items():
        setattr(cfg.agent, key, v)
    return cfg


def states_with_sizes(sizes, seed=0):
    s = random_states(np.random.default_rng(seed), (len(sizes),)).numpy()
    s[:, 3] = sizes
    return s


def actions_with_proposers(proposers, n):
    a = np.full((n, 3), -0.5)
    a[list(proposers), 0] = 0.5
    a[:, 1:] = 0.3
    return a


def rng_state(agent):
    return copy.deepcopy(agent.rng.bit_generator.state)


# ------------------------------------------------------------------ construction from sections
@pytest.mark.parametrize("mode", ["H2", "TOBM"])
def test_dims_of_the_environment_are_the_config_shorthand_dims(mode):
    cfg = make_cfg(k=3)
    cfg.env.mode, cfg.env.n_units = mode, 4
    dims = AgentDims.of(MECEnv(cfg.env, np.random.default_rng(0)))
    assert dims == agent_sections(cfg)[1]
    assert (dims.n_agents, dims.constraint, dims.server_storage) == (N, 3 if mode == "H2" else 4, 400.0)
    assert (dims.state_dim, dims.action_dim) == (7, 3)


@pytest.mark.parametrize("tracking", ["clean", "original"])
def test_agent_from_its_sections_equals_the_whole_config_shorthand(tracking):
    cfg = make_cfg(k=3, s_e=150.0, policy="squashed-gaussian", memory_capacity=500)
    cfg.run.seed, cfg.run.tracking = 17, tracking
    dims = AgentDims.of(MECEnv(cfg.env, np.random.default_rng(0)))
    agent = CCMMADRL(cfg.agent, dims, 17, tracking=tracking)
    short = CCMMADRL(cfg)  # seed and tracking from cfg.run
    assert isinstance(agent.cfg, AgentConfig) and agent.cfg is cfg.agent and agent.dims == dims
    assert (agent.seed, agent.tracking, agent.original_tracking) == (17, tracking, tracking == "original")
    assert (agent.n_agents, agent.constraint, agent.server_storage, agent.replay.capacity) == (N, 3, 150.0, 500)
    a, b = agent.state_dict(), short.state_dict()
    assert all(torch.equal(a["actors"][k], b["actors"][k]) for k in a["actors"])
    assert all(torch.equal(a["critic"][k], b["critic"][k]) for k in a["critic"])
    assert a["exploration_rng"] == b["exploration_rng"] and torch.equal(a["policy_rng"], b["policy_rng"])
    s = random_states(np.random.default_rng(2), (N,)).numpy()
    ra, rb = agent.act(s, 0), short.act(s, 0)
    assert np.array_equal(ra.actions, rb.actions) and np.array_equal(ra.x, rb.x)


def test_agent_constructor_refuses_what_it_cannot_build():
    cfg = make_cfg()
    dims = agent_sections(cfg)[1]
    with pytest.raises(TypeError, match="dims and the seed"):
        CCMMADRL(cfg.agent, dims)
    with pytest.raises(TypeError, match="seed is a keyword"):
        CCMMADRL(cfg, 3)  # a seed passed where the dims go is not silently ignored
    with pytest.raises(ValueError, match="MEC layout"):
        CCMMADRL(cfg.agent, AgentDims(N, 2, 400.0, state_dim=5), 0)
    with pytest.raises(ValueError, match="tracking"):
        CCMMADRL(cfg.agent, dims, 0, tracking="raw")


def test_epsilon_of_the_agent_section():
    a = AgentConfig(eps_start=0.8, eps_end=0.1, eps_decay=50.0)
    assert epsilon(a, 0) == 0.8 and epsilon(a, 50) == 0.1 + 0.7 * math.exp(-1)
    agent = CCMMADRL(a, AgentDims(N, 2, 400.0), 0)
    assert [agent.epsilon(e) for e in (0, 7, 300)] == [epsilon(a, e) for e in (0, 7, 300)]


# ------------------------------------------------------------------ acting
def test_epsilon_schedule():
    agent = CCMMADRL(make_cfg(), seed=0)
    assert agent.epsilon(0) == 1.0
    assert agent.epsilon(2000) == pytest.approx(0.01 + 0.99 * math.exp(-1))
    assert agent.epsilon(2000) == pytest.approx(0.374, abs=1e-3)
    assert agent.epsilon(10**7) == pytest.approx(0.01)


def test_act_outputs():
    agent = CCMMADRL(make_cfg(), seed=0)
    s = random_states(np.random.default_rng(1), (N,)).numpy()
    res = agent.act(s, episodes_done=0)
    assert res.actions.shape == (N, 3) and res.x.shape == (N,) and res.env_actions.shape == (N, 3)
    assert res.preact.shape == (N, 3)
    assert np.all(np.abs(res.actions) <= 1.0)
    assert set(np.unique(res.x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(res.env_actions[:, 0], res.x)
    np.testing.assert_allclose(res.env_actions[:, 1:], (res.actions[:, 1:] + 1) / 2 * 0.99 + 0.01)
    assert res.env_actions[:, 1:].min() >= 0.01 and res.env_actions[:, 1:].max() <= 1.0
    assert res.epsilon == 1.0
    # actions are exactly what the float32 replay stores
    np.testing.assert_array_equal(res.actions, res.actions.astype(np.float32).astype(np.float64))
    assert to_env_fraction(np.array([-1.0, 1.0])).tolist() == [0.01, 1.0]


def test_greedy_act_has_no_noise_and_no_randomness():
    agent = CCMMADRL(make_cfg(n=N, k=N, s_e=1e9), seed=0)
    s = random_states(np.random.default_rng(2), (N,)).numpy()
    before = rng_state(agent)
    res = agent.act(s, episodes_done=0, explore=False)
    assert rng_state(agent) == before
    with torch.no_grad():
        expect = agent.actors(torch.as_tensor(s, dtype=torch.float32)).double().numpy()
    np.testing.assert_array_equal(res.actions, expect)
    assert res.epsilon == 0.0
    np.testing.assert_array_equal(res.x, (expect[:, 0] >= 0).astype(float))  # everything fits


def test_noise_is_added_before_proposer_selection():
    agent = CCMMADRL(make_cfg(n=N, k=N, s_e=1e9), seed=0)
    with torch.no_grad():
        agent.actors.bias(agent.actors.n_layers - 1)[:, 0] = -2.0  # every actor proposes nothing
    s = random_states(np.random.default_rng(3), (N,)).numpy()
    assert agent.act(s, 0, explore=False).x.sum() == 0
    offloads = 0
    for _ in range(20):
        res = agent.act(s, episodes_done=0)  # eps = 1
        np.testing.assert_array_equal(res.x, (res.actions[:, 0] >= 0).astype(float))  # "fits" on noisy a
        offloads += res.x.sum()
    assert offloads > 0


def test_master_no_proposer_and_fits():
    agent = CCMMADRL(make_cfg(k=3, s_e=100.0), seed=0)
    s = states_with_sizes([60, 50, 30, 10, 5, 1])
    before = rng_state(agent)
    x, constrained, branch = agent.master_select(s, actions_with_proposers([], N), 1.0, explore=True)
    assert branch == "none" and not constrained and x.sum() == 0
    x, constrained, branch = agent.master_select(s, actions_with_proposers([1, 2, 4], N), 1.0, explore=True)
    assert branch == "fits" and not constrained
    np.testing.assert_array_equal(x, [0, 1, 1, 0, 1, 0])
    # total size exactly S_E still fits (<=)
    s2 = states_with_sizes([60, 40, 30, 10, 5, 1])
    x, _, branch = agent.master_select(s2, actions_with_proposers([0, 1], N), 1.0, explore=True)
    assert branch == "fits" and x.sum() == 2
    assert rng_state(agent) == before  # no uniform drawn outside the constrained case


def test_master_greedy_strict_size_and_skipping(monkeypatch):
    agent = CCMMADRL(make_cfg(k=3, s_e=100.0), seed=0)
    q_by_agent = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    monkeypatch.setattr(agent, "score_rows", lambda states, actions, rows: q_by_agent[rows])
    proposers = [0, 1, 2, 3, 4]
    # 60 ok | 60+50 too big, skip | 60+30=90 ok | 90+20 skip | 90+5=95 ok (3 accepted)
    s = states_with_sizes([60, 50, 30, 20, 5, 1])
    x, constrained, branch = agent.master_select(s, actions_with_proposers(proposers, N), 0.0, explore=False)
    assert branch == "greedy" and constrained
    np.testing.assert_array_equal(x, [1, 0, 1, 0, 1, 0])
    # strict: 60 + 40 = 100 is not < 100 -> skipped; later smaller ones still accepted
    s = states_with_sizes([60, 40, 30, 20, 5, 1])
    x, _, _ = agent.master_select(s, actions_with_proposers(proposers, N), 0.0, explore=False)
    np.testing.assert_array_equal(x, [1, 0, 1, 0, 1, 0])
    # count limit C = 3 even though sizes would fit
    s = states_with_sizes([1, 1, 1, 1, 1, 1])
    x, _, _ = agent.master_select(s, actions_with_proposers(proposers, N), 0.0, explore=False)
    np.testing.assert_array_equal(x, [1, 1, 1, 0, 0, 0])
    # descending Q order, not index order
    q_by_agent[:] = [0.0, 1.0, 2.0, 3.0, 4.0, 9.0]
    x, _, _ = agent.master_select(s, actions_with_proposers(proposers, N), 0.0, explore=False)
    np.testing.assert_array_equal(x, [0, 0, 1, 1, 1, 0])
    # a non-proposer is never chosen by the greedy branch, whatever its Q
    assert x[5] == 0


def test_master_greedy_draws_one_uniform_when_exploring():
    agent = CCMMADRL(make_cfg(k=2, s_e=1000.0), seed=0)
    s = states_with_sizes([10] * N)
    expected = copy.deepcopy(agent.rng)
    expected.random()
    x, constrained, branch = agent.master_select(s, actions_with_proposers(range(N), N), 0.0, explore=True)
    assert branch == "greedy" and constrained and x.sum() == 2
    assert rng_state(agent) == expected.bit_generator.state


def test_master_random_branch_repairs_size_and_uses_all_agents():
    agent = CCMMADRL(make_cfg(k=3, s_e=100.0), seed=0)
    s = states_with_sizes([60, 60, 60, 60, 60, 60])
    proposers = [0, 1, 2, 3]  # 4 > C: constrained
    chosen = np.zeros(N)
    for _ in range(200):
        x, constrained, branch = agent.master_select(s, actions_with_proposers(proposers, N), 1.0, explore=True)
        assert branch == "random" and constrained
        assert x.sum() == 1  # 180 -> 120 -> 60 <= 100
        chosen += x
    assert (chosen > 0).all()  # drawn from ALL agents, proposers or not
    s = states_with_sizes([10, 20, 30, 40, 50, 5])
    for _ in range(200):
        x, _, _ = agent.master_select(s, actions_with_proposers(range(N), N), 1.0, explore=True)
        assert 1 <= x.sum() <= 3 and s[x == 1, 3].sum() <= 100.0


def test_master_random_branch_probability():
    agent = CCMMADRL(make_cfg(k=2, s_e=1000.0), seed=0)
    s = states_with_sizes([10] * N)
    branches = [agent.master_select(s, actions_with_proposers(range(N), N), 0.3, explore=True)[2]
                for _ in range(2000)]
    frac = np.mean([b == "random" for b in branches])
    assert abs(frac - 0.3) < 0.04


def test_greedy_scores_with_online_critic_on_given_actions():
    agent = CCMMADRL(make_cfg(), seed=0, dtype=torch.float64)
    s = random_states(np.random.default_rng(4), (N,)).numpy()
    a = np.random.default_rng(5).uniform(-1, 1, (N, 3))
    q = agent.score_rows(s, a, np.array([1, 4]))
    ref = ReferenceCCM(agent)
    st, at = torch.as_tensor(s), torch.as_tensor(a)
    expect = [float(ref.critic(ref.critic_input(st, at, k)).detach()) for k in (1, 4)]
    np.testing.assert_allclose(q, expect, rtol=1e-12)


# ------------------------------------------------------------------ replay
def test_remember_priority_is_td_error_at_insertion():
    agent = CCMMADRL(make_cfg(), seed=0, dtype=torch.float64)
    rng = np.random.default_rng(6)
    s, s2 = random_states(rng, (N,)).numpy(), random_states(rng, (N,)).numpy()
    a = rng.uniform(-1, 1, (N, 3))
    for x, done in ((np.array([0, 1, 0, 0, 1, 0.0]), False), (np.zeros(N), True)):
        agent.remember(s, a, x, -1234.5, s2, done)
        ref = ReferenceCCM(agent)
        st, at, s2t = (torch.as_tensor(v) for v in (s, a, s2))
        with torch.no_grad():
            a2 = torch.stack([ref.target_actors[i](s2t[i]) for i in range(N)])
            y = -1234.5 + 0.99 * ref.max_q(ref.target_critic, s2t, a2) * (1 - float(done))
            terms = [ref.critic(ref.critic_input(st, at, k)) for k in np.flatnonzero(x)] or \
                [ref.q_zero(ref.critic, st, at)]
            err = float(sum((q - y) ** 2 for q in terms))
        slot = agent.replay.size - 1
        assert agent.replay.priorities[slot] == pytest.approx((err + 0.01) ** 0.6, rel=1e-9)


@pytest.mark.parametrize("reward_norm", [False, True])
def test_batched_insertion_equals_one_by_one(reward_norm):
    """An episode's transitions stored in one call get the priorities (and stored values)
    of one call per transition; with reward-norm each uses the statistics after its own reward."""
    cfgs = [make_cfg(reward_norm=reward_norm) for _ in range(2)]
    one, many = (CCMMADRL(cfg, seed=3, dtype=torch.float64) for cfg in cfgs)
    rng = np.random.default_rng(8)
    steps = [(random_states(rng, (N,)).numpy(), rng.uniform(-1, 1, (N, 3)),
              (rng.random(N) < 0.3).astype(float), -float(rng.uniform(1000, 3000)),
              random_states(rng, (N,)).numpy(), t == 9) for t in range(10)]
    steps[4] = steps[4][:2] + (np.zeros(N),) + steps[4][3:]  # nobody selected: zero-input term
    for step in steps:
        one.remember(*step)
    many.remember_many(*(np.stack(column) for column in zip(*steps)))
    n = one.replay.size
    assert many.replay.size == n == 10 and many.replay.ptr == one.replay.ptr
    np.testing.assert_allclose(many.replay.priorities[:n], one.replay.priorities[:n], rtol=1e-12)
    assert len(set(one.replay.priorities[:n])) == n  # distinct priorities: the order is checked too
    for name in ("states", "actions", "x", "rewards", "next_states", "dones"):
        torch.testing.assert_close(getattr(many.replay, name)[:n], getattr(one.replay, name)[:n], rtol=0, atol=0)
    if reward_norm:
        assert many.reward_scale() == one.reward_scale() != 1.0


def test_insertion_is_deferred_unless_the_actor_inputs_change_while_acting():
    assert CCMMADRL(make_cfg(), seed=0).can_defer_insertion
    assert CCMMADRL(make_cfg(reward_norm=True), seed=0).can_defer_insertion
    # fullnorm's running input statistics move at every acting step, and the target actors read them
    assert not CCMMADRL(make_cfg(actor_norm="fullnorm"), seed=0).can_defer_insertion


def fill(agent, n_steps, seed=0, episodes_done=0):
    rng = np.random.default_rng(seed)
    s = random_states(rng, (agent.n_agents,)).numpy()
    for t in range(n_steps):
        res = agent.act(s, episodes_done)
        s2 = random_states(rng, (agent.n_agents,)).numpy()
        agent.remember(s, res.actions, res.x, -float(rng.uniform(1000, 3000)), s2, t % 10 == 9)
        s = s2


def test_update_skipped_on_empty_buffer():
    agent = CCMMADRL(make_cfg(), seed=0)
    assert agent.update() is None
    assert agent.n_updates == 0


def test_update_result_contents():
    cfg = make_cfg(batch_size=16)
    agent = CCMMADRL(cfg, seed=0)
    fill(agent, 20)
    with torch.no_grad():
        before = copy.deepcopy(agent.actors)
    res = agent.update()
    bsz = 16
    assert isinstance(res.critic_loss, float) and isinstance(res.actor_loss, float)
    assert res.actor_losses.shape == (N,) and res.actor_loss == pytest.approx(res.actor_losses.mean())
    shapes = {"l0.weight": (N, 7, 64), "l0.bias": (N, 64), "l1.weight": (N, 64, 32), "l1.bias": (N, 32),
              "l2.weight": (N, 32, 3), "l2.bias": (N, 3)}
    assert {k: tuple(v.shape) for k, v in res.actor_grads.items()} == shapes
    assert {k: tuple(v.shape) for k, v in agent.actor_parameters().items()} == shapes
    cshapes = {"l0.weight": (512, N * 10 + 10), "l0.bias": (512,), "l1.weight": (128, 512), "l1.bias": (128,),
               "l2.weight": (1, 128), "l2.bias": (1,)}
    assert {k: tuple(v.shape) for k, v in res.critic_grads.items()} == cshapes
    assert {k: tuple(v.shape) for k, v in agent.critic_parameters().items()} == cshapes
    assert res.preact.shape == (bsz, N, 3)
    assert [tuple(h.shape) for h in res.actor_hidden] == [(bsz, N, 64), (bsz, N, 32)]
    n_terms = res.critic_hidden[0].shape[0]
    assert n_terms >= bsz and [tuple(h.shape) for h in res.critic_hidden] == [(n_terms, 512), (n_terms, 128)]
    assert res.indices.shape == (bsz,) and res.td_errors.shape == (bsz,) and res.weights.shape == (bsz,)
    assert res.preact_pool is None
    # priorities written back from this update's errors
    np.testing.assert_allclose(agent.replay.priorities[res.indices], (res.td_errors + 0.01) ** 0.6)
    # pre-activations are those of the actors before the actor update, on the batch states
    states = agent.replay.states[torch.as_tensor(res.indices)]
    with torch.no_grad():
        _, z, hidden = before.forward_with_preact(states.transpose(0, 1))
    torch.testing.assert_close(res.preact, z.transpose(0, 1))
    torch.testing.assert_close(res.actor_hidden[1], hidden[1].transpose(0, 1))
    assert agent.n_updates == 1
    for t in (res.preact, *res.actor_hidden, *res.critic_hidden, *res.actor_grads.values(), *res.critic_grads.values()):
        assert not t.requires_grad
    # targets are hard copies after the update (tau = 1)
    assert torch.equal(agent.target_actors.flat, agent.actors.flat)
    for p, q in zip(agent.target_critic.parameters(), agent.critic.parameters()):
        assert torch.equal(p, q)


def test_update_result_original_tracking_pool():
    cfg = make_cfg(batch_size=8)
    cfg.run.tracking = "original"
    agent = CCMMADRL(cfg, seed=0)
    fill(agent, 12)
    res = agent.update()
    assert res.preact_pool.shape == (N, 8, N, 3)


def test_determinism_same_seed():
    params = []
    for _ in range(2):
        agent = CCMMADRL(make_cfg(batch_size=16), seed=11)
        for ep in range(3):
            fill(agent, 10, seed=ep, episodes_done=ep)
            agent.update()
        params.append((agent.actors.flat.detach().clone(), [p.detach().clone() for p in agent.critic.parameters()]))
    assert torch.equal(params[0][0], params[1][0])
    assert all(torch.equal(a, b) for a, b in zip(params[0][1], params[1][1]))
    other = CCMMADRL(make_cfg(batch_size=16), seed=12)
    assert not torch.equal(other.actors.flat, CCMMADRL(make_cfg(batch_size=16), seed=11).actors.flat)


@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
def test_state_dict_resume_is_bit_identical(mode):
    cfg = make_cfg(batch_size=16, actor_update=mode)
    a = CCMMADRL(cfg, seed=3)
    for ep in range(2):
        fill(a, 10, seed=ep, episodes_done=ep)
        a.update()
    b = CCMMADRL(cfg, seed=99)
    b.load_state_dict(through_torch_save(a.state_dict()))
    for agent in (a, b):
        fill(agent, 10, seed=5, episodes_done=2)
    ra, rb = a.update(), b.update()
    np.testing.assert_array_equal(ra.indices, rb.indices)
    assert ra.critic_loss == rb.critic_loss
    assert torch.equal(a.actors.flat, b.actors.flat) and torch.equal(a.target_actors.flat, b.target_actors.flat)
    for p, q in zip(list(a.critic.parameters()) + list(a.target_critic.parameters()),
                    list(b.critic.parameters()) + list(b.target_critic.parameters())):
        assert torch.equal(p, q)
    s = random_states(np.random.default_rng(9), (N,)).numpy()
    np.testing.assert_array_equal(a.act(s, 3).actions, b.act(s, 3).actions)
    assert a.n_updates == b.n_updates == 3


# ------------------------------------------------------------------ row pruning
def batch_critic_on_random_batch(n, bsz, k, seed, data_seed, prune=True):
    """A float64 agent, random states and actions ``(bsz, n, .)`` and a BatchCritic on them."""
    agent = CCMMADRL(make_cfg(n=n, k=k), seed=seed, dtype=torch.float64)
    rng = np.random.default_rng(data_seed)
    states = random_states(rng, (bsz, n))
    actions = torch.tensor(rng.uniform(-1, 1, (bsz, n, 3)))
    bc = _BatchCritic(agent.critic, states, prune=prune)
    bc.set_actions(actions)
    return agent, rng, states, actions, bc


def test_pruned_argmax_equals_exhaustive():
    """The sequential loop's pruned arg-max over proposer rows equals the exhaustive one,
    through small changes (pruning engaged), large ones and proposer flips."""
    n, bsz = 20, 16
    agent, rng, states, actions, bc = batch_critic_on_random_batch(n, bsz, k=5, seed=0, data_seed=7)
    full_rows = 0
    for step in range(3 * n):
        j = step % n
        if step > 0:
            scale = 0.5 if step % 7 == 0 else 1e-4
            actions[:, j] = (actions[:, j] + scale * torch.tensor(rng.normal(size=(bsz, 3)))).clamp(-1, 1)
            if step % 11 == 0:
                actions[:, j, 0] = -actions[:, j, 0]  # proposers appear / disappear
            bc.set_action_column(j, actions)
        proposers = actions[..., 0] >= 0
        k_best, has, q_best = bc.best_rows(actions, proposers)
        q = agent.critic.q_all(states, actions, proposers)
        expect = q.argmax(dim=1)
        assert torch.equal(has, proposers.any(dim=1))
        assert torch.equal(k_best[has], expect[has]), step
        torch.testing.assert_close(q_best[has], q.max(dim=1).values[has])
        full_rows += int(proposers.sum())
    assert bc.n_evaluated < 0.5 * full_rows  # pruning did skip rows


@pytest.mark.parametrize("prune", [True, False])
def test_action_grad_reuses_the_row_search_forward(prune):
    """action_grad takes the chosen rows' forward from the row search and equals the VJP that
    recomputes it (and autograd through the plain critic), pass after pass; a transition
    without proposers (zero-input row, never evaluated by the search) uses the recomputation."""
    n, bsz = 12, 20
    agent, rng, states, actions, bc = batch_critic_on_random_batch(n, bsz, k=4, seed=1, data_seed=3, prune=prune)
    grad_q = torch.tensor(rng.normal(size=bsz))
    reused = 0
    for i in range(2 * n):
        j = i % n
        if i > 0:
            prev = (j - 1) % n  # the actor that has just stepped
            actions[:, prev] = (actions[:, prev] + 1e-3 * torch.tensor(rng.normal(size=(bsz, 3)))).clamp(-1, 1)
            if i == n + 3:
                actions[0, :, 0] = -0.5  # transition 0 loses every proposer
                bc.set_actions(actions)
            bc.set_action_column(prev, actions)
        k_best, has, _ = bc.best_rows(actions, actions[..., 0] >= 0)
        reused += bc._chosen_hidden(k_best, has) is not None
        q, g_a = bc.action_grad(j, k_best, has, grad_q)
        q_ref, g_pre = agent.critic.head_vjp(bc.pre_rows(k_best, has), grad_q)
        torch.testing.assert_close(q, q_ref, rtol=0, atol=0)
        a_leaf = actions.clone().requires_grad_(True)
        k_sel = torch.where(has, k_best, -1)
        q_auto = agent.critic.q_pairs(states, a_leaf, torch.arange(bsz), k_sel)
        (g_auto,) = torch.autograd.grad((grad_q * q_auto).sum(), a_leaf)
        torch.testing.assert_close(q, q_auto.detach())
        torch.testing.assert_close(g_a, g_auto[:, j])
    assert 0 < reused < 2 * n  # reused while every transition has a proposer, recomputed after


def test_pruning_does_not_change_the_update():
    cfg = make_cfg(n=30, k=5, batch_size=32)
    results = []
    for prune in (True, False):
        agent = CCMMADRL(cfg, seed=4)
        agent.prune_rows = prune
        fill(agent, 40)
        for _ in range(3):
            res = agent.update()
        results.append((agent.actors.flat.detach().clone(), res.actor_losses))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
