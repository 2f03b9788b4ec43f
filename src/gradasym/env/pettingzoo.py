"""PettingZoo ``ParallelEnv`` view of :class:`~gradasym.env.mec.MECEnv`.

Lets generic MARL code drive the MEC environment: agents ``device_0`` ...
``device_{N-1}``, observation ``Box`` of shape (7,) (the raw state row), action
``Box`` of shape (3,) in [-1, 1] (an actor's tanh output ``[o, f, p]``).

The wrapper maps an action to the environment's ``[x, g(f), g(p)]`` with
``g(v) = (v + 1) / 2 * 0.99 + 0.01`` and, by default, ``x = (o >= 0)``: every
proposer offloads. It does NOT run CCM-MADRL's master selection, so the
offloading constraint (C tasks, S_E MB) is not enforced; pass ``selector`` to
plug one in. Rewards are the shared team reward; episodes end by truncation
after ``steps_per_episode`` steps.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

try:
    from gymnasium.spaces import Box
    from pettingzoo import ParallelEnv
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gradasym.env.pettingzoo needs pettingzoo and gymnasium: pip install 'gradasym[pettingzoo]'"
    ) from exc

from gradasym.config import EnvConfig
from gradasym.env.mec import ActionError, MECEnv, check_env_config
from gradasym.seeding import numpy_generator

__all__ = ["MECParallelEnv", "Selector", "fraction"]

#: ``selector(states (N, 7), raw_actions (N, 3) in [-1, 1]) -> x (N,) of 0/1``.
Selector = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fraction(v: np.ndarray) -> np.ndarray:
    """The spec's ``g``: map [-1, 1] onto [0.01, 1] (frequency / power fractions)."""
    return (v + 1) / 2 * (1 - 0.01) + 0.01


def _generator(seed: int | None) -> np.random.Generator:
    """The ``env`` stream of run seed ``seed`` (fresh OS entropy when None)."""
    return np.random.default_rng() if seed is None else numpy_generator(seed, "env")


class MECParallelEnv(ParallelEnv):
    """PettingZoo parallel wrapper around a :class:`MECEnv` (available as ``.core``).

    ``reset(seed=s)`` (or ``seed=s`` at construction) rebuilds the core from a fresh
    generator, the ``env`` stream of seed ``s`` (``gradasym.seeding``), so the
    devices equal those of a training run with ``run.seed = s``; ``reset()``
    without a seed keeps the current devices and generator. ``render_mode`` must
    be None (there is nothing to render).
    """

    metadata = {"name": "mec_offloading_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(
        self,
        cfg: EnvConfig | None = None,
        *,
        seed: int | None = None,
        selector: Selector | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"MECParallelEnv supports render_mode=None only, got {render_mode!r}")
        self.render_mode = None
        self.cfg = cfg if cfg is not None else EnvConfig()
        check_env_config(self.cfg)
        self.selector = selector
        c, n = self.cfg, self.cfg.n_agents
        self.possible_agents = [f"device_{i}" for i in range(n)]
        self.agents: list[str] = []
        low = np.array([c.min_power, c.min_gain, 0.0, c.min_size, c.min_cycle, c.min_ddl, c.min_res])
        high = np.array([c.max_power, c.max_gain, c.max_ene, c.max_size, c.max_cycle,
                         c.max_ddl - c.max_ddl / 10, c.max_res])
        self.observation_spaces = {a: Box(low, high, dtype=np.float64) for a in self.possible_agents}
        self.action_spaces = {a: Box(-1.0, 1.0, (3,), dtype=np.float32) for a in self.possible_agents}
        self.state_space = Box(np.tile(low, n), np.tile(high, n), dtype=np.float64)
        self.core = MECEnv(self.cfg, _generator(seed))
        self._states: np.ndarray | None = None

    def observation_space(self, agent: str) -> Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Box:
        return self.action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self.core = MECEnv(self.cfg, _generator(seed))
        self._states = self.core.reset()
        self.agents = list(self.possible_agents)
        return dict(zip(self.agents, self._states)), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("no live agents: the episode is over (or never started); call reset()")
        missing = [a for a in self.possible_agents if a not in actions]
        if missing:
            raise ActionError(f"missing actions for {len(missing)} agent(s), e.g. {missing[0]}")
        raw = np.stack([np.asarray(actions[a], dtype=np.float64).reshape(-1) for a in self.possible_agents])
        if raw.shape != (len(self.possible_agents), 3):
            raise ActionError(f"each action must have 3 values [o, f, p], got shape {raw.shape[1:]}")
        if not np.isfinite(raw).all():
            raise ActionError("actions contain NaN/inf")
        raw = np.clip(raw, -1.0, 1.0)
        if self.selector is None:
            x = (raw[:, 0] >= 0).astype(np.float64)
        else:
            x = np.asarray(self.selector(self._states, raw), dtype=np.float64)
            if x.shape != (len(self.possible_agents),):
                raise ActionError(f"selector must return shape ({len(self.possible_agents)},), got {x.shape}")
        env_actions = np.column_stack([x, fraction(raw[:, 1]), fraction(raw[:, 2])])
        self._states, rewards, done, info = self.core.step(env_actions)
        agents = self.possible_agents
        obs = dict(zip(agents, self._states))
        team = float(rewards[0])
        rew = dict.fromkeys(agents, team)
        term = dict.fromkeys(agents, False)
        trunc = dict.fromkeys(agents, bool(done))
        infos = {a: {"cost": float(info["cost"][i]), "offloaded": bool(x[i])} for i, a in enumerate(agents)}
        if done:
            self.agents = []
        return obs, rew, term, trunc, infos

    def state(self) -> np.ndarray:
        """Global state: the (N, 7) state matrix flattened row-major to (N * 7,)."""
        if self._states is None:
            raise RuntimeError("call reset() before state()")
        return self._states.reshape(-1).copy()

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None
