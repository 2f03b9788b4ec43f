"""Tests for the PettingZoo ParallelEnv wrapper (gradasym.env.pettingzoo)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from pettingzoo.test import parallel_api_test, parallel_seed_test  # noqa: E402

from gradasym.config import EnvConfig  # noqa: E402
from gradasym.env import ActionError, MECEnv, MECParallelEnv  # noqa: E402
from gradasym.env.pettingzoo import fraction  # noqa: E402
from gradasym.seeding import numpy_generator  # noqa: E402


def small(n: int = 5, **kw) -> EnvConfig:
    return EnvConfig(n_agents=n, **kw)


def test_parallel_api():
    parallel_api_test(MECParallelEnv(small()), num_cycles=100)
    parallel_api_test(MECParallelEnv(EnvConfig(), seed=3), num_cycles=30)  # 50 agents, default config


def test_parallel_seed():
    parallel_seed_test(lambda: MECParallelEnv(small(mode="TOBM")), num_cycles=50)


def test_agents_spaces_and_state():
    env = MECParallelEnv(EnvConfig())
    assert env.possible_agents == [f"device_{i}" for i in range(50)]
    assert env.observation_space("device_7").shape == (7,)
    assert env.action_space("device_7").shape == (3,)
    assert env.action_space("device_7").low.min() == -1 and env.action_space("device_7").high.max() == 1
    obs, infos = env.reset(seed=1)
    assert set(obs) == set(env.agents) == set(infos)
    assert all(env.observation_space(a).contains(o) for a, o in obs.items())
    assert env.state_space.contains(env.state())
    np.testing.assert_array_equal(env.state(), np.stack([obs[a] for a in env.possible_agents]).reshape(-1))


def test_action_mapping_and_team_reward():
    """[o, f, p] -> [o >= 0, g(f), g(p)]; every agent gets the core's team reward."""
    cfg = small(6)
    env = MECParallelEnv(cfg)
    obs, _ = env.reset(seed=7)
    core = MECEnv(cfg, numpy_generator(7, "env"))  # same devices as a training run with seed 7
    np.testing.assert_array_equal(core.reset(), np.stack(list(obs.values())))
    rng = np.random.default_rng(0)
    for _ in range(cfg.steps_per_episode):
        raw = rng.uniform(-1, 1, (6, 3))
        raw[0, 0] = 0.0  # o = 0 counts as a proposal
        obs, rew, term, trunc, infos = env.step({a: raw[i] for i, a in enumerate(env.possible_agents)})
        x = (raw[:, 0] >= 0).astype(float)
        s, r, done, info = core.step(np.column_stack([x, fraction(raw[:, 1]), fraction(raw[:, 2])]))
        np.testing.assert_array_equal(np.stack(list(obs.values())), s)
        assert set(rew.values()) == {r[0]}
        assert [infos[a]["offloaded"] for a in env.possible_agents] == list(x.astype(bool))
        assert not any(term.values()) and all(v == done for v in trunc.values())
    assert done and env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({a: np.zeros(3) for a in env.possible_agents})


def test_fraction_maps_onto_unit_range():
    np.testing.assert_allclose(fraction(np.array([-1.0, 0.0, 1.0])), [0.01, 0.505, 1.0])


def test_selector_plugs_in_a_master():
    calls = []

    def only_first(states, raw):
        calls.append((states.shape, raw.shape))
        x = np.zeros(len(states))
        x[0] = 1
        return x

    env = MECParallelEnv(small(4), selector=only_first)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({a: np.ones(3, dtype=np.float32) for a in env.agents})
    assert calls == [((4, 7), (4, 3))]
    assert [infos[a]["offloaded"] for a in env.possible_agents] == [True, False, False, False]


def test_reset_seed_determines_devices():
    env = MECParallelEnv(small())
    a = env.reset(seed=5)[0]
    b = env.reset()[0]  # same devices, next tasks
    c = env.reset(seed=5)[0]
    for k in a:
        np.testing.assert_array_equal(a[k], c[k])
        np.testing.assert_array_equal(a[k][[0, 1, 2, 6]], b[k][[0, 1, 2, 6]])


def test_wrapper_errors():
    with pytest.raises(ValueError, match="render_mode"):
        MECParallelEnv(small(), render_mode="human")
    env = MECParallelEnv(small(3))
    env.reset(seed=0)
    with pytest.raises(ActionError, match="missing"):
        env.step({"device_0": np.zeros(3)})
    with pytest.raises(ActionError, match="NaN"):
        env.step({a: np.array([0.0, np.nan, 0.0]) for a in env.agents})
    with pytest.raises(ActionError, match="3 values"):
        env.step({a: np.zeros(2) for a in env.agents})
    bad = MECParallelEnv(small(3), selector=lambda s, r: np.zeros(2))
    bad.reset(seed=0)
    with pytest.raises(ActionError, match="selector"):
        bad.step({a: np.zeros(3) for a in bad.agents})


def test_core_package_imports_without_pettingzoo():
    code = (
        "import sys; sys.modules['pettingzoo'] = None\n"
        "import gradasym.env as e\n"
        "assert e.MECEnv\n"
        "try:\n    e.MECParallelEnv\nexcept ImportError as exc:\n    assert 'pettingzoo' in str(exc)\n"
        "else:\n    raise SystemExit('expected ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
