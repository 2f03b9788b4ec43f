"""The MEC task-offloading environment (``docs/study.md``, "The setting").

:class:`MECEnv` is the plain, vectorised core the trainer steps directly: every
per-agent quantity is a length-``N`` float64 numpy array, and the only Python
loop in :meth:`MECEnv.step` is the H2 server queue walk, which is sequential by
nature and visits offloaded tasks only.

Randomness comes exclusively from the generator passed in; global random state
is never read or written. Draw order (fixed, so that equal seeds give equal
devices and tasks across configurations):

* at construction, one length-``N`` vector each of power (dBm), initial energy
  (MJ), channel gain (dB) and CPU frequency (GHz), in that order;
* at :meth:`~MECEnv.reset` and after every :meth:`~MECEnv.step`, one
  length-``N`` vector each of task size (MB), cycles per bit and deadline (s),
  in that order.

The raw (un-normalised) state magnitudes are intentional: they are part of the
phenomenon under study.
"""

from __future__ import annotations

import math
from heapq import heapreplace
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradasym.config import ConfigError, EnvConfig

__all__ = ["ActionError", "MECEnv", "MECEnvVec", "check_env_config", "STATE_FIELDS"]

#: Column names of the (N, 7) state matrix, in order.
STATE_FIELDS = ("power_dbm", "gain_db", "energy_mj", "size_mb", "cycles_per_bit", "deadline_s", "res_ghz")
_BITS_PER_MB = 8 * 1024 * 1024
_FRAC_LO, _FRAC_HI, _FRAC_TOL = 0.01, 1.0, 1e-9
_DEVICE_KEYS = ("power", "init_energy", "gain", "res")
_TASK_KEYS = ("size", "cycles", "deadline")


class ActionError(ValueError):
    """An action array handed to :meth:`MECEnv.step` is malformed; the message says how."""


def check_env_config(cfg: EnvConfig) -> None:
    """Raise :class:`ConfigError` for any environment setting the env cannot run with.

    Mirrors the environment part of ``Config.validate`` (so that constructing an
    env directly from a bad ``EnvConfig`` fails loudly), plus the deadline range
    check the env needs. It does not require ``n_agents >= constraint``: that is
    the master's requirement, not the environment's.
    """
    for name in ("n_agents", "steps_per_episode", "k_channel", "n_units"):
        v = getattr(cfg, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"env.{name} must be a positive integer, got {v!r}")
    if cfg.mode not in ("H2", "TOBM"):
        raise ConfigError(f"env.mode must be 'H2' or 'TOBM', got {cfg.mode!r}")
    if cfg.queue not in ("original", "fifo"):
        raise ConfigError(f"env.queue must be 'original' or 'fifo', got {cfg.queue!r}")
    floats = ("lambda_e", "lambda_t", "capability_e", "k_energy_local", "harvest_rate",
              "w_bandwidth", "s_e") + tuple(f"{m}_{q}" for q in
                                            ("size", "cycle", "ddl", "res", "power", "ene", "gain")
                                            for m in ("min", "max"))
    for name in floats:
        v = getattr(cfg, name)
        if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"env.{name} must be a finite number, got {v!r}")
    for q in ("size", "cycle", "ddl", "res", "power", "ene", "gain"):
        lo, hi = getattr(cfg, f"min_{q}"), getattr(cfg, f"max_{q}")
        if lo > hi:
            raise ConfigError(f"env.min_{q}={lo} is greater than env.max_{q}={hi}")
    for name in ("min_size", "min_cycle", "min_ddl", "min_res", "min_ene", "w_bandwidth", "capability_e", "s_e"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"env.{name} must be > 0, got {getattr(cfg, name)}")
    for name in ("lambda_e", "lambda_t", "k_energy_local", "harvest_rate"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"env.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.min_ddl > cfg.max_ddl - cfg.max_ddl / 10:
        raise ConfigError(
            f"env.min_ddl={cfg.min_ddl} exceeds the largest deadline drawn, 0.9 * env.max_ddl="
            f"{cfg.max_ddl - cfg.max_ddl / 10} (deadlines are U(min_ddl, 0.9 * max_ddl))"
        )


def h2_finish(x: np.ndarray, t_off: np.ndarray, t_proc: np.ndarray, n_units: int, quirk: bool) -> np.ndarray:
    """Finish times of one step's offloaded tasks (``x == 1``) on the ``n_units`` shared server
    units (H2 mode; 0 where not offloaded); ``(N,)`` arrays of one environment.

    Tasks are visited in ascending ``T_off`` (stable). Units are kept as a heap of
    free-at times: only the multiset of unit values matters (ties between units
    are interchangeable), so "the smallest unit" is always ``heap[0]``.
    ``quirk`` (``queue="original"``) adds, before placing the m-th task (m >= N_UNITS), the
    processing time of every earlier offloaded task to the then-smallest unit
    (the spec's step-4 quirk); otherwise the plain earliest-free queue (``queue="fifo"``).
    """
    t_fin = np.zeros(len(x))
    idx = np.flatnonzero(x)
    if idx.size == 0:
        return t_fin
    idx = idx[np.argsort(t_off[idx], kind="stable")]
    offs, procs = t_off[idx].tolist(), t_proc[idx].tolist()
    heap = [0.0] * n_units
    out = []
    for m, (to, tp) in enumerate(zip(offs, procs)):
        if m < n_units:
            fin = to + tp  # the smallest unit is still 0 here
        else:
            if quirk:
                for pb in procs[:m]:
                    heapreplace(heap, heap[0] + pb)
            fin = max(to, heap[0]) + tp
        heapreplace(heap, fin)
        out.append(fin)
    t_fin[idx] = out
    return t_fin


def step_costs(c: EnvConfig, actions: np.ndarray, device: tuple, task: tuple, energy: np.ndarray,
               t_fin: Callable[[np.ndarray], np.ndarray] | None) -> tuple[np.ndarray, ...]:
    """The arithmetic of one step (spec section "Step"), elementwise over any leading shape
    (``(N,)`` for :class:`MECEnv`, ``(R, N)`` for :class:`MECEnvVec`).

    ``actions (..., 3)`` checked ``[x, f, p]``; ``device = (max power W, linear gain, CPU Hz)``,
    ``task = (bits, bits * cycles, server processing time, deadline)``, ``energy`` the battery
    before the step; ``t_fin(t_off)`` the H2 finish times of the offloaded tasks (None: TOBM).
    Returns ``(cost, normalised time T, energy used E, battery after, TP, EP)``.
    """
    pow_max_w, gain_lin, res_hz = device
    bits, bc, t_proc, deadline = task
    x, f, p = actions[..., 0], actions[..., 1], actions[..., 2]
    offload = x == 1
    a_res = res_hz * f
    a_pow = pow_max_w * p
    rate = c.w_bandwidth * 1e6 * np.log2(1 + a_pow * gain_lin) / c.k_channel
    t_off = bits / rate
    fin = t_off + t_proc if t_fin is None else t_fin(t_off)
    t = np.where(offload, fin, bc / a_res)
    t = np.minimum(t, c.max_ddl) / c.max_ddl
    e = np.where(offload, a_pow * t_off, c.k_energy_local * bc * a_res**2)
    energy = np.clip(energy - e * 1e-6 + c.harvest_rate * 1e-6, 0, c.max_ene)
    t[energy <= 0] = 1.0
    tp = np.maximum(t - deadline / c.max_ddl, 0)
    ep = np.maximum(c.min_ene - energy, 0) * 1e6
    cost = c.lambda_e * e + c.lambda_t * t + c.lambda_e * ep + c.lambda_t * tp
    return cost, t, e, energy, tp, ep


class MECEnv:
    """Vectorised MEC environment: N devices offloading tasks to one edge server.

    ``reset() -> states (N, 7)``; ``step(actions (N, 3)) -> (states, rewards (N,),
    done, info)``. Actions are ``[x, f, p]`` per agent: the final 0/1 offload
    decision (the master's job; the env does not enforce the constraint ``C`` or
    the storage ``S_E``, it just simulates what it is given), and the fractions of
    local CPU frequency and of maximum transmit power in [0.01, 1].
    """

    state_dim: int = 7
    action_dim: int = 3

    def __init__(self, cfg: EnvConfig, rng: np.random.Generator) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"MECEnv needs a numpy.random.Generator, got {type(rng).__name__}")
        check_env_config(cfg)
        self.cfg = cfg
        self.rng = rng
        self.n_agents: int = int(cfg.n_agents)
        self.constraint: int = int(cfg.constraint)
        self.server_storage: float = float(cfg.s_e)
        self._quirk = cfg.queue == "original"
        n = self.n_agents
        # Device constants: drawn once, in this order (see module docstring).
        self._power = rng.uniform(cfg.min_power, cfg.max_power, n)
        self._init_energy = rng.uniform(cfg.min_ene, cfg.max_ene, n)
        self._gain = rng.uniform(cfg.min_gain, cfg.max_gain, n)
        self._res = rng.uniform(cfg.min_res, cfg.max_res, n)
        self._energy = np.clip(self._init_energy, cfg.min_ene, cfg.max_ene)
        self._size = np.full(n, np.nan)
        self._cycles = np.full(n, np.nan)
        self._deadline = np.full(n, np.nan)
        self._t = 0
        self._ready = False  # reset() has been called
        self._derive_device()

    # ------------------------------------------------------------- internals
    def _derive_device(self) -> None:
        """Cache per-device quantities that never change (same float ops as the spec)."""
        self._pow_max_w = 10 ** ((self._power - 30) / 10)
        self._gain_lin = 10 ** (self._gain / 10)
        self._res_hz = self._res * 1e9

    def _derive_task(self) -> None:
        """Cache per-task quantities (bits * cycles, server processing time)."""
        self._bits = self._size * 8 * 1024 * 1024
        self._bc = self._bits * self._cycles
        self._t_proc = self._bc / (self.cfg.capability_e * 1e9)

    def _draw_tasks(self) -> None:
        c, n = self.cfg, self.n_agents
        self._size = self.rng.uniform(c.min_size, c.max_size, n)
        self._cycles = self.rng.uniform(c.min_cycle, c.max_cycle, n)
        self._deadline = self.rng.uniform(c.min_ddl, c.max_ddl - c.max_ddl / 10, n)
        self._derive_task()

    def _device_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(max transmit power W, linear gain, CPU frequency Hz)`` per agent (constants)."""
        return self._pow_max_w, self._gain_lin, self._res_hz

    def _task_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(bits, bits * cycles, server processing time, deadline)`` of the current tasks."""
        return self._bits, self._bc, self._t_proc, self._deadline

    def _states(self) -> np.ndarray:
        return np.stack([self._power, self._gain, self._energy, self._size, self._cycles,
                         self._deadline, self._res], axis=1)

    def _check_actions(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (self.n_agents, 3):
            raise ActionError(f"actions must have shape ({self.n_agents}, 3) = (n_agents, [x, f, p]), got {a.shape}")
        x, fp = a[:, 0], a[:, 1:]
        # Fast path: both comparisons are False for NaN, so NaN/inf fail here too.
        if ((x == 0) | (x == 1)).all() and fp.min() >= _FRAC_LO - _FRAC_TOL and fp.max() <= _FRAC_HI + _FRAC_TOL:
            return a
        bad = ~np.isfinite(a)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ActionError(f"actions contain NaN/inf (agent {i}, column {'xfp'[j]}: {a[i, j]})")
        bad_x = np.flatnonzero((x != 0) & (x != 1))
        if bad_x.size:
            raise ActionError(f"offload decision x must be 0 or 1; agent {bad_x[0]} has x={x[bad_x[0]]}")
        i, j = np.argwhere((fp < _FRAC_LO - _FRAC_TOL) | (fp > _FRAC_HI + _FRAC_TOL))[0]
        raise ActionError(f"{'fp'[j]} must be in [0.01, 1]; agent {i} has {'fp'[j]}={fp[i, j]}")

    def _h2_finish(self, x: np.ndarray, t_off: np.ndarray) -> np.ndarray:
        """Finish times of offloaded tasks on the N_UNITS shared server units (0 elsewhere);
        see :func:`h2_finish`."""
        return h2_finish(x, t_off, self._t_proc, self.cfg.n_units, self._quirk)

    # ------------------------------------------------------------------- API
    def reset(self) -> np.ndarray:
        """Restore the battery to its initial level, draw new tasks, zero the step counter."""
        c = self.cfg
        self._energy = np.clip(self._init_energy, c.min_ene, c.max_ene)
        self._t = 0
        self._draw_tasks()
        self._ready = True
        return self._states()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, dict[str, Any]]:
        """Apply one joint action ``(N, 3)`` = ``[x, f, p]``; see spec section "Step".

        Returns ``(next_states (N, 7), rewards (N,), done, info)``. ``rewards`` holds the
        team reward ``-sum_i c_i`` for every agent. ``info`` has
        ``energy_penalty_frac`` / ``time_penalty_frac`` (fraction of agents with a
        non-zero EP / TP), ``offload_frac``, and per-agent arrays ``cost`` (c_i),
        ``time`` (normalised T_i) and ``energy_used`` (E_i, J) of the step just taken.
        """
        if not self._ready:
            raise RuntimeError("MECEnv.step() called before reset()")
        a = self._check_actions(actions)
        c = self.cfg
        x = a[:, 0]
        t_fin = None if c.mode == "TOBM" else (lambda t_off: self._h2_finish(x, t_off))
        cost, t, e, energy, tp, ep = step_costs(c, a, self._device_arrays(), self._task_arrays(), self._energy, t_fin)
        n = self.n_agents
        info = {
            "energy_penalty_frac": np.count_nonzero(ep) / n,
            "time_penalty_frac": np.count_nonzero(tp) / n,
            "offload_frac": np.count_nonzero(x == 1) / n,
            "cost": cost,
            "time": t,
            "energy_used": e,
        }
        rewards = np.full(n, -cost.sum())
        self._energy = energy
        self._draw_tasks()
        self._t += 1
        done = self._t >= c.steps_per_episode
        if done:
            self._t = 0
        return self._states(), rewards, done, info

    @property
    def step_count(self) -> int:
        """Steps taken in the current episode (0 right after reset or a ``done`` step)."""
        return self._t

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, as plain Python types.

        Arrays are stored as lists of floats (exact for float64) so the dict is
        JSON-serialisable and loads under ``torch.load(weights_only=True)``; ``rng``
        is the generator's ``bit_generator.state``.
        """
        d: dict[str, Any] = {k: getattr(self, f"_{k}").tolist() for k in _DEVICE_KEYS + _TASK_KEYS}
        d.update(n_agents=self.n_agents, energy=self._energy.tolist(), t=self._t, ready=self._ready,
                 rng=self.rng.bit_generator.state)
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also into the generator passed at construction)."""
        if d.get("n_agents") != self.n_agents:
            raise ValueError(f"state_dict is for n_agents={d.get('n_agents')}, this env has {self.n_agents}")
        arrays = {}
        for k in _DEVICE_KEYS + _TASK_KEYS + ("energy",):
            v = np.array(d[k], dtype=np.float64)
            if v.shape != (self.n_agents,):
                raise ValueError(f"state_dict['{k}'] has shape {v.shape}, expected ({self.n_agents},)")
            arrays[k] = v
        bg = self.rng.bit_generator
        if d["rng"].get("bit_generator") != type(bg).__name__:
            raise ValueError(f"state_dict rng is a {d['rng'].get('bit_generator')}, this env's is {type(bg).__name__}")
        bg.state = d["rng"]
        for k, v in arrays.items():
            setattr(self, f"_{k}", v)
        self._t, self._ready = int(d["t"]), bool(d["ready"])
        self._derive_device()
        self._derive_task()


class MECEnvVec:
    """R environments of one configuration stepped as one computation (a vector environment;
    written for the batched trainer, retired in docs/sweeps.md, and kept as part of the task:
    nothing in gradasym's training uses it now).

    Built from R :class:`MECEnv` (``envs``, e.g. the runs' own training environments): their
    state is gathered into ``(R, N)`` arrays, :meth:`step` applies :func:`step_costs` to all of
    them at once (the H2 queue walk stays per run, it is sequential by nature), and each run's
    new tasks are drawn from that run's own generator in :class:`MECEnv`'s order, so run r
    follows exactly the trajectory of ``envs[r]`` stepped alone (``tests/env/test_mec.py``
    checks this bit for bit). :meth:`write_back` stores the state into the R environments
    (checkpoints, resumption and evaluation keep using them).
    """

    def __init__(self, envs: Sequence[MECEnv]) -> None:
        if not envs:
            raise ValueError("MECEnvVec needs at least one environment")
        self.envs = list(envs)
        cfg = self.envs[0].cfg
        if any(e.cfg != cfg for e in self.envs):
            raise ValueError("the environments of a MECEnvVec must share one configuration")
        if not all(e._ready for e in self.envs):
            raise RuntimeError("MECEnvVec needs environments that have been reset")
        self.cfg = cfg
        self.n_runs, self.n_agents = len(self.envs), self.envs[0].n_agents
        stack = lambda name: np.stack([getattr(e, name) for e in self.envs])  # noqa: E731
        self._device = tuple(stack(k) for k in ("_pow_max_w", "_gain_lin", "_res_hz"))
        self._consts = {k: stack(f"_{k}") for k in ("power", "gain", "res")}
        self._energy = stack("_energy")
        self._t = np.array([e._t for e in self.envs])
        self._gather_tasks()

    def _gather_tasks(self) -> None:
        stack = lambda name: np.stack([getattr(e, name) for e in self.envs])  # noqa: E731
        self._task = tuple(stack(k) for k in ("_bits", "_bc", "_t_proc", "_deadline"))
        self._size, self._cycles = stack("_size"), stack("_cycles")

    def states(self) -> np.ndarray:
        """``(R, N, 7)``: every run's current state (as :meth:`MECEnv.reset`/``step`` return it)."""
        k = self._consts
        return np.stack([k["power"], k["gain"], self._energy, self._size, self._cycles, self._task[3], k["res"]],
                        axis=2)

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (self.n_runs, self.n_agents, 3):
            raise ActionError(f"actions must have shape ({self.n_runs}, {self.n_agents}, 3) = (runs, n_agents, "
                              f"[x, f, p]), got {a.shape}")
        x, fp = a[..., 0], a[..., 1:]
        if ((x == 0) | (x == 1)).all() and fp.min() >= _FRAC_LO - _FRAC_TOL and fp.max() <= _FRAC_HI + _FRAC_TOL:
            return a
        for env, row in zip(self.envs, a):  # the first bad run's own error message
            env._check_actions(row)
        return a  # pragma: no cover  (some run's check raised)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Apply the joint actions ``(R, N, 3)`` of every run: ``(next_states (R, N, 7),
        rewards (R, N), done (R,), info)``, run r's entries as ``envs[r].step(actions[r])``
        returns them (``info``: fractions ``(R,)``, per-agent arrays ``(R, N)``)."""
        a = self._check_actions(actions)
        c, n = self.cfg, self.n_agents
        x = a[..., 0]
        t_fin = None
        if c.mode != "TOBM":
            quirk = c.queue == "original"
            t_fin = lambda t_off: np.stack([h2_finish(x[r], t_off[r], self._task[2][r], c.n_units, quirk)  # noqa: E731
                                            for r in range(self.n_runs)])
        cost, t, e, energy, tp, ep = step_costs(c, a, self._device, self._task, self._energy, t_fin)
        info: dict[str, np.ndarray] = {
            "energy_penalty_frac": np.count_nonzero(ep, axis=1) / n,
            "time_penalty_frac": np.count_nonzero(tp, axis=1) / n,
            "offload_frac": np.count_nonzero(x == 1, axis=1) / n,
            "cost": cost, "time": t, "energy_used": e,
        }
        rewards = np.repeat(-cost.sum(axis=1, keepdims=True), n, axis=1)
        self._energy = energy
        self._draw_tasks()
        self._t += 1
        done = self._t >= c.steps_per_episode
        self._t[done] = 0
        return self.states(), rewards, done, info

    def reset(self, runs: np.ndarray | None = None) -> np.ndarray:
        """:meth:`MECEnv.reset` of every run (or of the runs in the mask ``runs (R,)``);
        returns the states ``(R, N, 7)`` of all runs."""
        c = self.cfg
        mask = np.ones(self.n_runs, dtype=bool) if runs is None else np.asarray(runs, dtype=bool)
        for r in np.flatnonzero(mask):
            self._energy[r] = np.clip(self.envs[r]._init_energy, c.min_ene, c.max_ene)
        self._t[mask] = 0
        self._draw_tasks(mask)
        return self.states()

    def _draw_tasks(self, runs: np.ndarray | None = None) -> None:
        """New tasks for every run (or the runs in the mask ``runs``), each from its own
        generator in :meth:`MECEnv._draw_tasks`'s order."""
        c, n = self.cfg, self.n_agents
        size, cycles, deadline = self._size.copy(), self._cycles.copy(), self._task[3].copy()
        for r, env in enumerate(self.envs):
            if runs is None or runs[r]:
                size[r] = env.rng.uniform(c.min_size, c.max_size, n)
                cycles[r] = env.rng.uniform(c.min_cycle, c.max_cycle, n)
                deadline[r] = env.rng.uniform(c.min_ddl, c.max_ddl - c.max_ddl / 10, n)
        bits = size * 8 * 1024 * 1024
        bc = bits * cycles
        self._size, self._cycles = size, cycles
        self._task = (bits, bc, bc / (c.capability_e * 1e9), deadline)

    def write_back(self) -> None:
        """Store every run's state into its :class:`MECEnv` (which then continues exactly)."""
        for r, env in enumerate(self.envs):
            env._energy = self._energy[r].copy()
            env._size, env._cycles, env._deadline = self._size[r].copy(), self._cycles[r].copy(), self._task[3][r].copy()
            env._t = int(self._t[r])
            env._derive_task()
