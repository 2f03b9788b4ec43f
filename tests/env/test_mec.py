"""Tests for gradasym.env.mec.MECEnv against a literal per-agent transcription of the spec."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import random

import numpy as np
import pytest

from gradasym.config import ConfigError, EnvConfig
from gradasym.env import ActionError, MECEnv


# --------------------------------------------------------------------------- reference
def reference_step(cfg: EnvConfig, states: np.ndarray, actions: np.ndarray) -> dict:
    """``mec-environment.md`` section "Step", transcribed literally: one agent at a time."""
    n = len(states)
    s = [[float(v) for v in row] for row in states]
    x = [float(a[0]) for a in actions]
    f = [float(a[1]) for a in actions]
    p = [float(a[2]) for a in actions]
    T_proc, T_local, T_off, A_pow, A_res, bits = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    for i in range(n):
        power, gain, _, size, cycles, _, res = s[i]
        A_res[i] = res * 1e9 * f[i]
        A_pow[i] = 10 ** ((power - 30) / 10) * p[i]
        rate = cfg.w_bandwidth * 1e6 * math.log2(1 + A_pow[i] * 10 ** (gain / 10)) / cfg.k_channel
        bits[i] = size * 8 * 1024 * 1024
        T_proc[i] = bits[i] * cycles / (cfg.capability_e * 1e9)
        T_local[i] = bits[i] * cycles / A_res[i]
        T_off[i] = bits[i] / rate

    T_fin = [0.0] * n
    if cfg.mode == "TOBM":
        for i in range(n):
            T_fin[i] = T_off[i] + T_proc[i]
    else:
        unit = [0.0] * cfg.n_units
        order = sorted(range(n), key=lambda i: T_off[i])  # stable
        placed = 0
        for q in range(n):
            a = order[q]
            if x[a] == 1 and placed < cfg.n_units:
                T_fin[a] = T_off[a] + T_proc[a]
                unit[unit.index(min(unit))] = T_fin[a]
                placed += 1
            elif x[a] == 1:
                if cfg.queue == "original":
                    for j in range(q):
                        b = order[j]
                        if x[b] == 1:
                            unit[unit.index(min(unit))] += T_proc[b]
                T_fin[a] = max(T_off[a], min(unit)) + T_proc[a]
                unit[unit.index(min(unit))] = T_fin[a]
                placed += 1

    T, E, energy, TP, EP, cost = ([0.0] * n for _ in range(6))
    for i in range(n):
        t = (1 - x[i]) * T_local[i] + x[i] * T_fin[i]
        T[i] = min(t, cfg.max_ddl) / cfg.max_ddl
        e_local = cfg.k_energy_local * bits[i] * s[i][4] * A_res[i] ** 2
        e_off = A_pow[i] * T_off[i]
        E[i] = (1 - x[i]) * e_local + x[i] * e_off
        energy[i] = min(max(s[i][2] - E[i] * 1e-6 + cfg.harvest_rate * 1e-6, 0), cfg.max_ene)
        if energy[i] <= 0:
            T[i] = 1
        TP[i] = max(T[i] - s[i][5] / cfg.max_ddl, 0)
        EP[i] = max(cfg.min_ene - energy[i], 0) * 1e6
        cost[i] = cfg.lambda_e * E[i] + cfg.lambda_t * T[i] + cfg.lambda_e * EP[i] + cfg.lambda_t * TP[i]
    return {
        "T": T, "E": E, "energy": energy, "cost": cost, "reward": -sum(cost), "T_fin": T_fin,
        "ep_frac": sum(v != 0 for v in EP) / n, "tp_frac": sum(v != 0 for v in TP) / n,
    }


# --------------------------------------------------------------------------- helpers
# Times well below max_ddl (so min(T, MAX_DDL) does not hide the queue) and T_proc >> T_off
# (so the units, not the uplink, are the bottleneck and the queue discipline matters).
UNCLIPPED = dict(max_ddl=1000.0, min_size=1.0, max_size=5.0, w_bandwidth=4000.0, capability_e=0.4)
# Small tasks: local times below 1 s, so T, TP and the energy <= 0 rule are visible.
SMALL = dict(min_size=0.001, max_size=0.01)


def make_env(n: int = 50, seed: int = 0, **kw) -> MECEnv:
    return MECEnv(EnvConfig(n_agents=n, **kw), np.random.default_rng(seed))


def random_actions(rng: np.random.Generator, n: int, kind: str = "random") -> np.ndarray:
    x = {"random": rng.integers(0, 2, n), "all": np.ones(n), "none": np.zeros(n)}[kind]
    return np.column_stack([x, rng.uniform(0.01, 1, n), rng.uniform(0.01, 1, n)]).astype(np.float64)


def assert_matches_reference(env: MECEnv, states: np.ndarray, actions: np.ndarray) -> None:
    ref = reference_step(env.cfg, states, actions)
    next_states, rewards, done, info = env.step(actions)
    np.testing.assert_allclose(info["time"], ref["T"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(info["energy_used"], ref["E"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(info["cost"], ref["cost"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(next_states[:, 2], ref["energy"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rewards, np.full(env.n_agents, ref["reward"]), rtol=1e-12)
    assert info["energy_penalty_frac"] == ref["ep_frac"]
    assert info["time_penalty_frac"] == ref["tp_frac"]
    assert info["offload_frac"] == np.mean(actions[:, 0])
    assert rewards.shape == (env.n_agents,) and rewards.dtype == np.float64


# --------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("n", [4, 12, 50])
@pytest.mark.parametrize("mode,queue", [("H2", "original"), ("H2", "fifo"), ("TOBM", "original")])
@pytest.mark.parametrize("extra", [{}, UNCLIPPED, SMALL], ids=["default", "unclipped", "small"])
def test_step_matches_reference(n, mode, queue, extra):
    env = make_env(n, seed=n, mode=mode, queue=queue, **extra)
    rng = np.random.default_rng(1000 + n)
    states = env.reset()
    for k in range(60):
        kind = ["random", "all", "none"][k % 3]
        actions = random_actions(rng, n, kind)
        if k % 7 == 0:  # boundary fractions
            actions[:, 1:] = rng.choice([0.01, 1.0], size=(n, 2))
        before = env.state_dict()
        assert_matches_reference(env, states, actions)
        env.load_state_dict(before)
        states = env.step(actions)[0]


@pytest.mark.parametrize("queue", ["original", "fifo"])
@pytest.mark.parametrize("n", [12, 50])
def test_ties_in_offload_time(queue, n):
    """Groups of agents with bit-identical T_off (same power, gain, size, p) but different cycles.

    The queue order within a group must be stable (by agent index), as the spec says.
    """
    env = make_env(n, seed=3, queue=queue, **UNCLIPPED)
    env.reset()
    d = env.state_dict()
    group = np.random.default_rng(n).integers(0, 3, n)  # three interleaved groups of identical T_off
    for key in ("power", "gain", "size"):
        d[key] = [d[key][g] for g in group]
    env.load_state_dict(d)
    states = env._states()
    rng = np.random.default_rng(5)
    for kind in ("all", "random"):
        actions = random_actions(rng, n, kind)
        actions[:, 2] = 0.5  # same power fraction -> same rate -> identical T_off
        before = env.state_dict()
        assert_matches_reference(env, states, actions)
        env.load_state_dict(before)


def test_h2_quirk_hand_computed():
    """Two units, four tasks (T_off, T_proc) = A(1,10) B(2,20) C(3,5) D(4,1), worked out by hand."""
    t_off, t_proc = np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 5.0, 1.0])
    x = np.ones(4)
    # original: A 11, B 22; C: units {11,22} -> +10 -> {21,22} -> +20 -> {41,22}; max(3,22)+5 = 27
    # D: {41,27} -> +10 -> {41,37} -> +20 -> {41,57} -> +5 -> {46,57}; max(4,46)+1 = 47
    # fifo: C = max(3,11)+5 = 16, D = max(4,16)+1 = 17
    for queue, expected in [("original", [11, 22, 27, 47]), ("fifo", [11, 22, 16, 17])]:
        env = make_env(4, n_units=2, queue=queue)
        env._t_proc = t_proc
        np.testing.assert_array_equal(env._h2_finish(x, t_off), expected)
        perm = np.array([2, 0, 3, 1])  # input order must not matter, only T_off order
        env._t_proc = t_proc[perm]
        np.testing.assert_array_equal(env._h2_finish(x, t_off[perm]), np.array(expected)[perm])
        env._t_proc = t_proc
        np.testing.assert_array_equal(env._h2_finish(np.array([1.0, 0, 1, 0]), t_off), [11, 0, 8, 0])


def test_quirk_differs_from_fifo_and_tobm_beyond_units():
    out = {}
    for mode, queue in [("H2", "original"), ("H2", "fifo"), ("TOBM", "original")]:
        env = make_env(12, seed=1, mode=mode, queue=queue, **UNCLIPPED)
        env.reset()
        out[mode, queue] = env.step(random_actions(np.random.default_rng(0), 12, "all"))[3]["time"]
    tobm, fifo, orig = out["TOBM", "original"], out["H2", "fifo"], out["H2", "original"]
    assert (fifo >= tobm - 1e-15).all() and (orig >= fifo - 1e-15).all()
    assert (orig > fifo).sum() >= 1 and (fifo > tobm).sum() >= 1
    # With at most N_UNITS offloaded tasks H2 equals TOBM.
    few = random_actions(np.random.default_rng(0), 12, "all")
    few[8:, 0] = 0
    times = []
    for m in ("H2", "TOBM"):
        env = make_env(12, seed=1, mode=m, **UNCLIPPED)
        env.reset()
        times.append(env.step(few)[3]["time"])
    np.testing.assert_array_equal(times[0], times[1])


# --------------------------------------------------------------------------- rules
def test_energy_zero_forces_full_time_and_penalties():
    env = make_env(4, seed=2, **SMALL)
    env.reset()
    d = env.state_dict()
    d["energy"][0] = 1e-12  # MJ: the local computation below drains far more
    for key in ("power", "gain", "res", "size", "cycles", "deadline"):
        d[key] = [d[key][1]] * 4  # agents 0 and 1 identical apart from energy
    env.load_state_dict(d)
    actions = np.array([[0, 1.0, 1.0]] * 4)
    states, _, _, info = env.step(actions)
    c = env.cfg
    assert states[0, 2] == 0.0 and states[1, 2] > 0
    assert info["time"][0] == 1.0 and info["time"][1] < 1.0
    ddl = d["deadline"][0] / c.max_ddl
    expected = c.lambda_e * info["energy_used"][0] + c.lambda_t * 1.0 + c.lambda_e * c.min_ene * 1e6 \
        + c.lambda_t * max(1.0 - ddl, 0)
    assert info["cost"][0] == pytest.approx(expected, rel=1e-12)
    assert info["energy_penalty_frac"] == 0.25


def test_time_penalty_and_fraction():
    env = make_env(6, seed=4, **SMALL)
    env.reset()
    d = env.state_dict()
    d["deadline"] = [0.1, 0.89, 0.1, 0.89, 0.1, 0.89]
    d["size"] = [0.01] * 6
    env.load_state_dict(d)
    # local at minimum frequency: slow (T large); offload: fast
    actions = np.array([[0, 0.01, 1.0]] * 3 + [[1, 1.0, 1.0]] * 3, dtype=float)
    _, _, _, info = env.step(actions)
    tp = np.maximum(info["time"] - np.array(d["deadline"]) / env.cfg.max_ddl, 0)
    assert 0 < np.count_nonzero(tp) < 6
    assert info["time_penalty_frac"] == np.count_nonzero(tp) / 6
    assert info["energy_penalty_frac"] == 0.0  # batteries start >= MIN_ENE and small tasks barely drain


def test_energy_penalty_below_min_and_clipping_at_max():
    env = make_env(3, seed=5)
    env.reset()
    d = env.state_dict()
    d["energy"] = [env.cfg.min_ene + 1e-9, 1.0, 3.0]
    env.load_state_dict(d)
    states, _, _, info = env.step(np.array([[0, 1, 1]] * 3, dtype=float))  # big local energy
    assert states[0, 2] < env.cfg.min_ene and info["energy_penalty_frac"] == pytest.approx(1 / 3)
    e = info["energy_used"][0]
    ep = (env.cfg.min_ene - states[0, 2]) * 1e6
    assert ep == pytest.approx(e - env.cfg.harvest_rate - 1e-3, rel=1e-9)  # drained beyond the 1e-9 MJ margin

    env = make_env(3, seed=5, harvest_rate=1e12)  # +1e6 MJ per step
    env.reset()
    states, _, _, _ = env.step(np.array([[0, 0.5, 0.5]] * 3))
    assert (states[:, 2] == env.cfg.max_ene).all()


def test_done_flag_and_counter_reset():
    env = make_env(5, steps_per_episode=3)
    env.reset()
    a = np.column_stack([np.zeros(5), np.full(5, 0.5), np.full(5, 0.5)])
    flags = [env.step(a)[2] for _ in range(7)]
    assert flags == [False, False, True, False, False, True, False]
    assert env.step_count == 1
    env.reset()
    assert env.step_count == 0


def test_new_tasks_after_every_step_from_own_generator():
    env = make_env(8, seed=9)
    states = env.reset()
    mirror = np.random.Generator(np.random.PCG64())
    a = random_actions(np.random.default_rng(1), 8)
    for _ in range(5):
        mirror.bit_generator.state = env.rng.bit_generator.state
        new, _, _, _ = env.step(a)
        c = env.cfg
        np.testing.assert_array_equal(new[:, 3], mirror.uniform(c.min_size, c.max_size, 8))
        np.testing.assert_array_equal(new[:, 4], mirror.uniform(c.min_cycle, c.max_cycle, 8))
        np.testing.assert_array_equal(new[:, 5], mirror.uniform(c.min_ddl, 0.9 * c.max_ddl, 8))
        assert not np.array_equal(new[:, 3:6], states[:, 3:6])
        np.testing.assert_array_equal(new[:, [0, 1, 6]], states[:, [0, 1, 6]])  # device constants fixed
        states = new


def test_device_constants_draw_order_and_reset():
    cfg = EnvConfig(n_agents=7)
    rng = np.random.default_rng(11)
    power, energy, gain, res = (rng.uniform(lo, hi, 7) for lo, hi in [
        (cfg.min_power, cfg.max_power), (cfg.min_ene, cfg.max_ene),
        (cfg.min_gain, cfg.max_gain), (cfg.min_res, cfg.max_res)])
    size = rng.uniform(cfg.min_size, cfg.max_size, 7)
    env = MECEnv(cfg, np.random.default_rng(11))
    s = env.reset()
    assert s.shape == (7, 7) and s.dtype == np.float64
    for col, v in [(0, power), (1, gain), (2, energy), (3, size), (6, res)]:
        np.testing.assert_array_equal(s[:, col], v)
    env.step(random_actions(np.random.default_rng(0), 7, "none"))
    np.testing.assert_array_equal(env.reset()[:, 2], energy)  # battery restored at reset
    # Devices depend only on the generator, not on other settings.
    other = MECEnv(dataclasses.replace(cfg, mode="TOBM", lambda_e=0.1, queue="fifo"), np.random.default_rng(11))
    np.testing.assert_array_equal(other.reset(), MECEnv(cfg, np.random.default_rng(11)).reset())


def test_never_touches_global_random_state():
    np_state, py_state = np.random.get_state(), random.getstate()
    env = make_env(10, seed=1)
    env.reset()
    for _ in range(12):
        env.step(random_actions(np.random.default_rng(2), 10))
    after = np.random.get_state()
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(np_state, after))
    assert random.getstate() == py_state


def test_states_are_fresh_arrays():
    env = make_env(5)
    s0 = env.reset()
    keep = s0.copy()
    s1, r, _, info = env.step(random_actions(np.random.default_rng(0), 5))
    s1[:] = 0
    np.testing.assert_array_equal(s0, keep)
    assert env._states()[0, 0] != 0


# --------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("mode", ["H2", "TOBM"])
def test_reward_calibration_random_policy(mode):
    """Random f, p and a random feasible offload set (<= C agents, total size < S_E).

    Measured (5 seeds x 30 episodes): per-step mean about -4,200 to -4,800, episode sums
    -38,000 to -54,000, matching the spec's -35,000 to -55,000. The bounds below are a
    margin around that, not a tautology (a factor-of-2 error in E or a unit slip fails).
    """
    env = make_env(50, seed=0, mode=mode)
    rng = np.random.default_rng(123)
    episode_rewards, step_rewards = [], []
    for _ in range(20):
        s, total, done = env.reset(), 0.0, False
        while not done:
            x = np.zeros(50)
            idx = rng.choice(50, rng.integers(0, env.constraint + 1), replace=False)
            while s[idx, 3].sum() >= env.server_storage:
                idx = idx[1:]
            x[idx] = 1
            s, r, done, _ = env.step(np.column_stack([x, rng.uniform(0.01, 1, 50), rng.uniform(0.01, 1, 50)]))
            assert (r == r[0]).all() and r[0] < 0
            step_rewards.append(r[0])
            total += r[0]
        episode_rewards.append(total)
    assert -6_000 < np.mean(step_rewards) < -3_000
    assert -60_000 < np.mean(episode_rewards) < -30_000
    assert max(step_rewards) < -500


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 2)), "shape"),
    (np.zeros((5, 3)), "shape"),
    (np.zeros(12), "shape"),
])
def test_action_shape_errors(bad, match):
    env = make_env(4)
    env.reset()
    with pytest.raises(ActionError, match=match):
        env.step(bad)


@pytest.mark.parametrize("row,col,value,match", [
    (0, 1, np.nan, "NaN"), (2, 2, np.inf, "NaN/inf"), (1, 0, np.nan, "NaN"),
    (1, 0, 0.5, "x must be 0 or 1"), (3, 0, 2.0, "x must be 0 or 1"), (0, 0, -1.0, "x must be 0 or 1"),
    (0, 1, 0.005, "f must be in"), (2, 2, 1.1, "p must be in"), (1, 1, 0.0, "f must be in"),
])
def test_action_value_errors(row, col, value, match):
    env = make_env(4)
    env.reset()
    a = random_actions(np.random.default_rng(0), 4)
    a[row, col] = value
    with pytest.raises(ActionError, match=match):
        env.step(a)
    assert issubclass(ActionError, ValueError)


def test_action_tolerance_and_types():
    env = make_env(4)
    env.reset()
    env.step(np.array([[1, 1 + 1e-10, 0.01 - 1e-10], [0, 0.01, 1], [1, 0.5, 0.5], [0, 1, 1]]))  # within 1e-9
    env.step([[0, 1, 1]] * 4)  # nested lists of ints work
    env.step(np.ones((4, 3), dtype=np.float32))


def test_step_before_reset_and_bad_generator():
    with pytest.raises(RuntimeError, match="reset"):
        make_env(3).step(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="Generator"):
        MECEnv(EnvConfig(n_agents=3), 42)  # type: ignore[arg-type]


@pytest.mark.parametrize("field,value,match", [
    ("n_agents", 0, "n_agents"), ("n_agents", 2.5, "n_agents"), ("steps_per_episode", 0, "steps_per_episode"),
    ("n_units", 0, "n_units"), ("k_channel", -1, "k_channel"),
    ("min_size", -1.0, "min_size"), ("min_size", 60.0, "min_size=60.0 is greater than env.max_size"),
    ("min_res", 0.0, "min_res"), ("max_power", -5.0, "min_power"), ("min_ene", 4.0, "min_ene"),
    ("lambda_e", -0.5, "lambda_e"), ("max_cycle", float("nan"), "max_cycle"), ("mode", "X", "mode"),
    ("queue", "lifo", "queue"), ("min_ddl", 0.95, "0.9"), ("s_e", 0.0, "s_e"),
])
def test_config_errors(field, value, match):
    cfg = dataclasses.replace(EnvConfig(), **{field: value})
    with pytest.raises(ConfigError, match=match):
        MECEnv(cfg, np.random.default_rng(0))
    assert issubclass(ConfigError, ValueError)


def test_small_population_below_constraint_is_allowed():
    env = make_env(2)  # the master needs N >= C, the environment does not
    env.reset()
    env.step(np.array([[1, 0.5, 0.5], [1, 0.5, 0.5]]))


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("mode", ["H2", "TOBM"])
def test_state_dict_exact_resume(mode):
    env = make_env(12, seed=21, mode=mode, steps_per_episode=4)
    rng = np.random.default_rng(0)
    acts = [random_actions(rng, 12) for _ in range(15)]
    env.reset()
    for a in acts[:6]:
        env.step(a)
    d = env.state_dict()
    d = json.loads(json.dumps(d))  # plain types only
    d = pickle.loads(pickle.dumps(d))

    def run(e: MECEnv) -> list:
        out = []
        for k, a in enumerate(acts[6:]):
            out.append(e.step(a))
            if k == 4:
                out.append((e.reset(), None, None, {}))
        return out

    expected = run(env)
    twin = make_env(12, seed=999, mode=mode, steps_per_episode=4)  # different devices until loaded
    twin.load_state_dict(copy.deepcopy(d))
    got = run(twin)
    for (s1, r1, d1, i1), (s2, r2, d2, i2) in zip(expected, got):
        np.testing.assert_array_equal(s1, s2)
        assert d1 == d2
        if r1 is not None:
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(i1["cost"], i2["cost"])


def test_load_state_dict_rejects_mismatch():
    d = make_env(4).state_dict()
    with pytest.raises(ValueError, match="n_agents"):
        make_env(5).load_state_dict(d)
    env = MECEnv(EnvConfig(n_agents=4), np.random.Generator(np.random.MT19937(0)))
    with pytest.raises(ValueError, match="PCG64"):
        env.load_state_dict(d)


def test_state_dict_before_reset_round_trips():
    env = make_env(3, seed=1)
    twin = make_env(3, seed=2)
    twin.load_state_dict(env.state_dict())
    with pytest.raises(RuntimeError):
        twin.step(np.zeros((3, 3)))
    np.testing.assert_array_equal(twin.reset(), env.reset())


# --------------------------------------------------------------------------- vector form
@pytest.mark.parametrize("mode,queue", [("H2", "original"), ("H2", "fifo"), ("TOBM", "original")])
@pytest.mark.parametrize("extra", [{}, UNCLIPPED, SMALL], ids=["default", "unclipped", "small"])
def test_vector_env_is_the_runs_stepped_alone(mode, queue, extra):
    """MECEnvVec over R runs gives, bit for bit, what each run's MECEnv gives stepped alone
    (states, rewards, done, info, resets and the generators' states), and writes back a state
    from which the single env continues exactly."""
    from gradasym.env import MECEnvVec

    cfg = EnvConfig(n_agents=12, mode=mode, queue=queue, steps_per_episode=4, **extra)
    seeds = (3, 4, 9)
    alone = [MECEnv(cfg, np.random.default_rng(s)) for s in seeds]
    vec_envs = [MECEnv(cfg, np.random.default_rng(s)) for s in seeds]
    states = np.stack([e.reset() for e in alone])
    for e in vec_envs:
        e.reset()
    vec = MECEnvVec(vec_envs)
    np.testing.assert_array_equal(vec.states(), states)
    act_rng = np.random.default_rng(0)
    for step in range(9):  # past two episode ends
        kind = ["random", "all", "none"][step % 3]
        actions = np.stack([random_actions(act_rng, 12, kind) for _ in seeds])
        ref = [e.step(a) for e, a in zip(alone, actions)]
        nxt, rew, done, info = vec.step(actions)
        for r, (s_r, rew_r, done_r, info_r) in enumerate(ref):
            np.testing.assert_array_equal(nxt[r], s_r)
            np.testing.assert_array_equal(rew[r], rew_r)
            assert bool(done[r]) == done_r
            for key, v in info_r.items():
                np.testing.assert_array_equal(info[key][r], v, err_msg=key)
        if done.any():
            assert done.all()
            np.testing.assert_array_equal(vec.reset(done), np.stack([e.reset() for e in alone]))
    vec.write_back()
    for e, a in zip(vec_envs, alone):
        assert e.state_dict() == a.state_dict()
        actions = random_actions(act_rng, 12)
        (s1, r1, d1, i1), (s2, r2, d2, i2) = e.step(actions), a.step(actions)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(r1, r2)
        assert d1 == d2 and i1["cost"].tolist() == i2["cost"].tolist()


def test_vector_env_errors_name_the_run_alone_error():
    from gradasym.env import MECEnvVec

    envs = [make_env(4, seed=s) for s in (1, 2)]
    for e in envs:
        e.reset()
    vec = MECEnvVec(envs)
    actions = np.stack([random_actions(np.random.default_rng(0), 4)] * 2)
    actions[1, 2, 1] = np.nan
    with pytest.raises(ActionError, match="agent 2, column f"):
        vec.step(actions)
    with pytest.raises(ActionError, match="shape"):
        vec.step(actions[0])
    with pytest.raises(ValueError, match="one configuration"):
        MECEnvVec([envs[0], make_env(4, seed=3, mode="TOBM")])
