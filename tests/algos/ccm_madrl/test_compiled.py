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


# ----------------------------------------------------------------- acting and insertion
def _random_transitions(rng, agent, t: int = 10):
    from reference import random_states

    s = random_states(rng, (t, N)).numpy()
    a = rng.uniform(-1, 1, (t, N, 3))
    x = (rng.random((t, N)) < 0.4).astype(float)
    x[0] = 0.0  # a transition where nobody offloaded: a zero-input term
    r = rng.uniform(-3000, -500, t)
    s2 = random_states(rng, (t, N)).numpy()
    d = (rng.random(t) < 0.2).astype(float)
    return s, a, x, r, s2, d


@pytest.mark.parametrize("reward_norm", [False, True])
def test_compiled_acting_and_insertion_match_torch(reward_norm):
    """float64: the same actions, master decisions and branches, and the same insertion priorities."""
    cfg = make_cfg("sequential", "clean", reward_norm=reward_norm)
    agents = {e: CCMMADRL(cfg, seed=6, dtype=torch.float64, engine=e) for e in ("torch", "compiled")}
    rng = np.random.default_rng(3)
    from reference import random_states

    branches = set()
    for step in range(40):
        states = random_states(rng, (N,)).numpy()
        episodes = [0, 400, 4000][step % 3]  # eps 1 .. 0.14: random and greedy branches
        out = {e: ag.act(states, episodes) for e, ag in agents.items()}
        t, c = out["torch"], out["compiled"]
        np.testing.assert_allclose(c.actions, t.actions, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(c.x, t.x)
        assert c.branch == t.branch and c.constrained == t.constrained
        torch.testing.assert_close(c.preact, t.preact, rtol=1e-12, atol=1e-14)
        branches.add(t.branch)
        greedy = {e: ag.act(states, episodes, explore=False) for e, ag in agents.items()}
        np.testing.assert_array_equal(greedy["compiled"].x, greedy["torch"].x)
    assert {"greedy", "fits"} <= branches  # the master's scoring was exercised
    transitions = _random_transitions(rng, agents["torch"])
    for ag in agents.values():
        ag.remember_many(*transitions)
    p_t, p_c = (agents[e].replay.priorities[:10] for e in ("torch", "compiled"))
    np.testing.assert_allclose(p_c, p_t, rtol=1e-10)
    assert len(set(np.round(p_t, 6))) > 5  # priorities differ between transitions: not vacuous


def test_checkpoints_are_interchangeable_between_engines():
    """float64: a run continued compiled -> torch -> compiled equals an uninterrupted compiled run."""
    cfg = make_cfg("sequential", "clean", actor_lr=0.05, batch_size=B)
    rng = np.random.default_rng(4)
    transitions = [_random_transitions(rng, None) for _ in range(4)]

    def train(agent, parts):
        for part in parts:
            agent.remember_many(*transitions[part])
            agent.update()
        return agent

    whole = train(CCMMADRL(cfg, seed=8, dtype=torch.float64, engine="compiled"), range(4))
    agent = train(CCMMADRL(cfg, seed=8, dtype=torch.float64, engine="compiled"), [0])
    for engine, part in (("torch", [1, 2]), ("compiled", [3])):
        state = through_torch_save(agent.state_dict())
        agent = CCMMADRL(cfg, seed=8, dtype=torch.float64, engine=engine)
        agent.load_state_dict(state)
        train(agent, part)
    a, b = whole.state_dict(), agent.state_dict()
    for key in ("actors", "target_actors", "critic", "target_critic"):
        for name in a[key]:
            torch.testing.assert_close(b[key][name], a[key][name], rtol=1e-9, atol=1e-11, msg=f"{key} {name}")
    torch.testing.assert_close(b["actor_optim"]["exp_avg"][0], a["actor_optim"]["exp_avg"][0], rtol=1e-9, atol=1e-12)
    assert b["actor_optim"]["steps"] == a["actor_optim"]["steps"] == [4] * N
    for p_id, st in a["critic_optim"]["state"].items():
        assert float(b["critic_optim"]["state"][p_id]["step"]) == float(st["step"]) == 4.0
        torch.testing.assert_close(b["critic_optim"]["state"][p_id]["exp_avg_sq"], st["exp_avg_sq"],
                                   rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(b["replay"]["priorities"], a["replay"]["priorities"], rtol=1e-9)


# ----------------------------------------------------------------- the engine switch
def test_engine_selection_and_refusal():
    cfg = Config()
    assert cfg.run.engine == "auto" and resolve_engine(cfg) == "compiled"
    for preset in ("gradclip", "reward-norm", "preact-penalty", "td3-delay", "large-actor", "linear-hidden"):
        from gradasym.config import load_config
        assert compiled_unsupported(load_config(presets=[preset])) is None, preset
    for preset in ("layernorm", "fullnorm", "squashed-gaussian", "beta-policy"):
        from gradasym.config import load_config
        c = load_config(presets=[preset])
        assert compiled_unsupported(c) is not None and resolve_engine(c) == "torch", preset
    cfg.run.engine = "torch"
    assert resolve_engine(cfg) == "torch"
    cfg.run.engine = "compiled"
    cfg.agent.actor_update = "simultaneous"
    with pytest.raises(ConfigError, match=r"run.engine = 'compiled' does not support agent.actor_update = "
                                          r"'simultaneous'") as info:
        cfg.validate()
    assert "\n" not in str(info.value)
    cfg.agent.actor_update = "sequential"
    cfg.run.tracking = "original"
    with pytest.raises(ConfigError, match="run.tracking = 'original'"):
        cfg.validate()
    cfg.run.tracking = "clean"
    assert cfg.validate() is cfg
    with pytest.raises(ValueError, match="compiled engine does not support"):
        CCMMADRL(make_cfg("simultaneous"), seed=1, engine="compiled")


def test_cli_engine_flag_refuses_unsupported_config_in_one_line(tmp_path, capsys):
    from gradasym.cli import main

    code = main(["run", "--engine", "compiled", "--preset", "layernorm", "--episodes", "2", "--out",
                 str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "run.engine = 'compiled' does not support agent.actor_norm = 'layernorm'" in err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------- end to end
SMALL = {"env.n_agents": 8, "env.k_channel": 3, "env.n_units": 3, "agent.batch_size": 16,
         "agent.memory_capacity": 300, "agent.critic_hidden": [64, 32], "run.log_interval": 3,
         "run.checkpoint_interval": 4, "agent.actor_lr": 1e-3}


def small_cfg(**extra):
    from gradasym.config import load_config

    return load_config(overrides={**SMALL, **extra})


def test_compiled_run_folder_deterministic_and_resumable(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from gradasym.algos.ccm_madrl import runner
    from gradasym.cli import main
    from gradasym.io import read_json

    assert main(["run", "--out", str(tmp_path / "a"), "--quiet", "--set", "run.episodes=10",
                 *[f"--set={k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in SMALL.items()]]) == 0
    assert "engine=compiled" in capsys.readouterr().out  # the run's log line
    runner.run_experiment(small_cfg(**{"run.episodes": 10}), tmp_path / "b")
    for name in ["config.json", "episodes.parquet", "tracking.parquet", "tracking_agents.parquet", "summary.json",
                 "checkpoint.pt"]:
        assert (tmp_path / "a" / name).is_file(), name
    assert read_json(tmp_path / "a" / "config.json")["engine_used"] == "compiled"
    from gradasym import algos  # a run folder's config.json reads back as its configuration
    assert algos.config_from_dict(read_json(tmp_path / "a" / "config.json")).to_dict() == small_cfg(
        **{"run.episodes": 10}).to_dict()
    assert read_json(tmp_path / "a" / "summary.json")["engine"] == "compiled"
    tables = {x: pd.read_parquet(tmp_path / x / "episodes.parquet").drop(columns="seconds") for x in "ab"}
    pd.testing.assert_frame_equal(tables["a"], tables["b"])  # same seed, same numbers
    assert tables["a"]["updated"].iloc[1:].all()
    tr = pd.read_parquet(tmp_path / "a" / "tracking.parquet")
    assert (tr["actor_grad_norm"] > 0).all() and (tr["critic_grad_norm"] > 0).all() and tr["rho"].notna().all()
    # killed after episode 7 (checkpoint at 4), resumed: the uninterrupted numbers
    original = runner.Trainer.run_episode

    def crashing(self):
        if self.episodes_done == 7:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(runner.Trainer, "run_episode", crashing)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(small_cfg(**{"run.episodes": 10}), tmp_path / "c")
    monkeypatch.setattr(runner.Trainer, "run_episode", original)
    runner.run_experiment(small_cfg(**{"run.episodes": 10, "run.keep_replay": True}), tmp_path / "c", resume=True)
    resumed = pd.read_parquet(tmp_path / "c" / "episodes.parquet").drop(columns="seconds")
    pd.testing.assert_frame_equal(tables["a"], resumed)
    pd.testing.assert_frame_equal(tr, pd.read_parquet(tmp_path / "c" / "tracking.parquet"))
    # the run goes on with the torch engine (engine may change on resume; recorded)
    runner.run_experiment(small_cfg(**{"run.episodes": 12, "run.engine": "torch"}), tmp_path / "c", resume=True)
    assert read_json(tmp_path / "c" / "config.json")["engine_used"] == "torch"
    assert read_json(tmp_path / "c" / "summary.json")["episodes_run"] == 12
