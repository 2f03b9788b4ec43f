"""Prioritised experience replay (``docs/study.md``, ``docs/architecture.md``).

One transition = one environment step of all N agents:
``(states (N,S), actions (N,A) as acted, x (N,) master decisions, team reward,
next_states (N,S), done)``. Storage is a preallocated ring buffer of CPU torch tensors
(whatever ``run.device``: the agent moves a sampled :class:`ReplayBatch` with
:meth:`ReplayBatch.to`); priorities are a numpy float64 array.

* priority ``p = (err + per_eps) ** alpha`` (err = the transition's summed squared
  TD error, computed by the agent);
* proportional, stratified sampling: the total mass of the *filled* slots is split
  into B equal segments and one point is drawn uniformly in each; the slot whose
  cumulative-priority interval ``(c[j-1], c[j]]`` contains the point is taken (the
  SumTree rule of the original), found with one ``searchsorted`` over a cumsum;
* importance weights ``w = (n_entries * P(j)) ** (-beta)`` with
  ``P(j) = (p_j + 1e-9) / (total + 1e-9)``, divided by their max; ``beta`` grows by
  ``beta_increment`` (capped at 1) at every sampling call, *before* it is used.

Only filled slots take part in the cumsum, so an empty slot can never be sampled
(the original occasionally could, and then skipped the whole update).
Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ReplayBatch:
    """A sampled batch; tensors have the batch as dim 0."""

    states: Tensor  # (B, N, S)
    actions: Tensor  # (B, N, A)
    x: Tensor  # (B, N) 0/1 master decisions
    rewards: Tensor  # (B,)
    next_states: Tensor  # (B, N, S)
    dones: Tensor  # (B,) 0/1
    weights: Tensor  # (B,) importance weights (max = 1)
    indices: np.ndarray  # (B,) slot indices, for update_priorities

    def to(self, device: torch.device | str) -> "ReplayBatch":
        """The batch with its tensors on ``device`` (the replay storage stays on the CPU; the
        agent moves what it samples); tensors already there are not copied."""
        return ReplayBatch(*(getattr(self, f).to(device) for f in _TENSOR_FIELDS), indices=self.indices)


_TENSOR_FIELDS = ("states", "actions", "x", "rewards", "next_states", "dones", "weights")


class PrioritizedReplay:
    """Ring buffer with proportional stratified prioritised sampling."""

    def __init__(
        self,
        capacity: int,
        n_agents: int,
        state_dim: int,
        action_dim: int,
        rng: np.random.Generator,
        alpha: float = 0.6,
        beta0: float = 0.4,
        beta_increment: float = 0.001,
        per_eps: float = 0.01,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.beta = float(beta0)
        self.beta_increment = float(beta_increment)
        self.per_eps = float(per_eps)
        self.rng = rng
        cap, n = self.capacity, int(n_agents)
        # Unfilled slots are never read (sampling, state_dict and the priorities cover [0, size)),
        # so the storage is not zeroed: its memory is touched only as the buffer fills.
        self.states = torch.empty(cap, n, state_dim, dtype=dtype)
        self.actions = torch.empty(cap, n, action_dim, dtype=dtype)
        self.x = torch.empty(cap, n, dtype=dtype)
        self.rewards = torch.empty(cap, dtype=dtype)
        self.next_states = torch.empty(cap, n, state_dim, dtype=dtype)
        self.dones = torch.empty(cap, dtype=dtype)
        self.priorities = np.zeros(cap, dtype=np.float64)
        self.ptr = 0  # next slot to write
        self.size = 0  # filled slots: [0, size)

    def __len__(self) -> int:
        return self.size

    def priority(self, err: np.ndarray | float) -> np.ndarray:
        """``(err + per_eps) ** alpha``."""
        return (np.asarray(err, dtype=np.float64) + self.per_eps) ** self.alpha

    # ---------------------------------------------------------------- insert
    def push(self, states, actions, x, reward: float, next_states, done: bool, err: float) -> int:
        """Store one transition with priority from ``err``; returns its slot."""
        one = lambda v: np.asarray(v)[None]  # noqa: E731
        return int(self.push_many(one(states), one(actions), one(x), one(float(reward)), one(next_states),
                                  one(bool(done)), one(float(err)))[-1])

    def push_many(self, states, actions, x, rewards, next_states, dones, errs) -> np.ndarray:
        """Store T transitions in order (leading dim T), as T calls of :meth:`push`; returns
        their slots (when T exceeds the capacity only the last ``capacity`` ones stay)."""
        errs = np.asarray(errs, dtype=np.float64)
        n_new = len(errs)
        keep = slice(max(0, n_new - self.capacity), n_new)  # what survives the ring's wrap-around
        slots = (self.ptr + np.arange(n_new)) % self.capacity
        idx = torch.as_tensor(slots[keep])
        for name, values in (("states", states), ("actions", actions), ("x", x), ("rewards", rewards),
                             ("next_states", next_states), ("dones", dones)):
            buf = getattr(self, name)
            buf[idx] = torch.as_tensor(np.asarray(values, dtype=np.float64)[keep], dtype=buf.dtype)
        self.priorities[slots[keep]] = self.priority(errs[keep])
        self.ptr = int((self.ptr + n_new) % self.capacity)
        self.size = min(self.size + n_new, self.capacity)
        return slots

    # ---------------------------------------------------------------- sample
    def sample(self, batch_size: int) -> ReplayBatch:
        """Stratified proportional sample of ``batch_size`` transitions (with replacement)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        self.beta = min(1.0, self.beta + self.beta_increment)  # incremented before use
        p = self.priorities[: self.size]
        cum = np.cumsum(p)
        total = cum[-1]
        segment = total / batch_size
        points = (np.arange(batch_size) + self.rng.random(batch_size)) * segment
        idx = np.searchsorted(cum, points, side="left")  # first j with cum[j] >= point
        idx = np.minimum(idx, self.size - 1)  # rounding: a point a hair above total
        prob = (p[idx] + 1e-9) / (total + 1e-9)
        w = (self.size * prob) ** (-self.beta)
        w = w / w.max()
        t = torch.as_tensor(idx)
        return ReplayBatch(
            states=self.states[t],
            actions=self.actions[t],
            x=self.x[t],
            rewards=self.rewards[t],
            next_states=self.next_states[t],
            dones=self.dones[t],
            weights=torch.as_tensor(w, dtype=self.states.dtype),
            indices=idx,
        )

    def update_priorities(self, indices: np.ndarray, errs: np.ndarray) -> None:
        """Set the priorities of ``indices`` from their new errors (duplicates: last wins)."""
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise IndexError("priority update for an unfilled slot")
        self.priorities[indices] = self.priority(errs)

    # -------------------------------------------------------------- state io
    def state_dict(self) -> dict:
        """Filled content, pointers, beta and the generator state (torch-serialisable)."""
        n = self.size
        return {
            "capacity": self.capacity,
            "ptr": self.ptr,
            "size": n,
            "beta": self.beta,
            "states": self.states[:n].clone(),
            "actions": self.actions[:n].clone(),
            "x": self.x[:n].clone(),
            "rewards": self.rewards[:n].clone(),
            "next_states": self.next_states[:n].clone(),
            "dones": self.dones[:n].clone(),
            "priorities": torch.from_numpy(self.priorities[:n].copy()),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity mismatch: {state['capacity']} vs {self.capacity}")
        n = int(state["size"])
        self.ptr, self.size, self.beta = int(state["ptr"]), n, float(state["beta"])
        for name in ("states", "actions", "x", "rewards", "next_states", "dones"):
            getattr(self, name)[:n] = state[name]
        self.priorities[:] = 0.0
        self.priorities[:n] = state["priorities"].numpy()
        self.rng.bit_generator.state = state["rng"]
