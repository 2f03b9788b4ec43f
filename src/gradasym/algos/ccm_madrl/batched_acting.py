"""Acting, environments and replay insertion of R runs as one computation (the batched trainer).

An :class:`ActingGroup` holds R runs (:class:`gradasym.algos.ccm_madrl.runner.Trainer`) whose acting can share
tensors: one environment configuration, one network architecture, one replay shape. Their
replay buffers live in one :class:`gradasym.algos.ccm_madrl.replay.StackedReplay`, and one episode of all of
them is computed at once (:meth:`ActingGroup.flush`), step by step as
:meth:`Trainer.act_episode_alone <gradasym.algos.ccm_madrl.runner.Trainer.act_episode_alone>` computes it for
one run:

* the actors of every run in one ``(R*N, 1, S)`` forward through the stacked parameters;
* Gaussian exploration noise, the master's random draw and its random branch from each run's
  OWN exploration generator, in the order the run alone draws them;
* the master's greedy branch: the proposer rows' Q of every run with the stacked critics
  (:class:`gradasym.algos.ccm_madrl.critic.StackedCritic`), the accept rule applied to all runs at once;
* the environments as :class:`gradasym.env.mec.MECEnvVec` (each run's tasks from its own
  generator);
* after the episode, every run's insertion priorities (TD errors under its own networks) in
  one stacked computation and one write into the stacked replay.

Runs are never mixed: every array keeps the run as its leading dimension and every random draw
comes from the run's own generator. Only float rounding differs from the run alone (the stacked
critic's products), which can only matter where two rows' Q are within rounding of each other.

A run asks to act through ``Trainer.act_episode`` (so that per-run code around it behaves as
before); the group computes the requested runs' episode when :meth:`ActingGroup.flush` is called.
If that computation raises, the generators are put back and each requested run acts alone, so
that only a run that raises alone fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradasym.algos.ccm_madrl.agent import ACTION_DIM, SIZE_COLUMN, CCMMADRL, to_env_fraction
from gradasym.algos.ccm_madrl.critic import StackedCritic, pad_rows
from gradasym.env.mec import MECEnvVec
from gradasym.algos.ccm_madrl.replay import StackedReplay


# ------------------------------------------------------------------ stacked critic targets
@torch.no_grad()
def td_targets_runs(ag0: CCMMADRL, target_flat: Tensor, target_critic: StackedCritic, rewards: Tensor,
                    next_states: Tensor, dones: Tensor, gammas: Tensor) -> Tensor:
    """``y = r + gamma * q' * (1 - done)`` of R runs ``(R, B)`` (:meth:`CCMMADRL._td_targets`):
    the target actors ``target_flat (R, N, P)`` on ``next_states (R, B, N, S)``, the max over
    next proposers of each run's target critic; ``gammas (R, 1)``."""
    rr, bsz, n, sdim = next_states.shape
    s_next = next_states.transpose(1, 2).reshape(rr * n, bsz, sdim)
    a_next = ag0.target_actors.policy_forward(s_next, target_flat.reshape(rr * n, -1)).action
    a_next = a_next.view(rr, n, bsz, -1).transpose(1, 2).contiguous()  # (R, B, N, A)
    q_next, _ = target_critic.q_max(next_states, a_next, a_next[..., 0] >= 0)
    return rewards + gammas * q_next * (1.0 - dones)


def critic_terms_runs(x: Tensor, width: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The critic-loss terms of R runs (:meth:`CCMMADRL._critic_terms` per run, padded to the
    largest count, at least ``width``): ``(b_idx (R, M), k_idx (R, M), valid (R, M), counts (R,))``
    for decisions ``x (R, B, N)``; ``k = -1`` is the zero-input term, padding slots have
    ``valid = False``."""
    n = x.shape[2]
    selected = x > 0.5
    term_mask = torch.cat([selected, ~selected.any(dim=2, keepdim=True)], dim=2)  # (R, B, N+1)
    flat_idx, valid, counts = pad_rows(term_mask, width=width)
    b_idx = flat_idx // (n + 1)
    k_idx = torch.where(valid & (flat_idx % (n + 1) < n), flat_idx % (n + 1), -1)
    return b_idx, k_idx, valid, counts


@torch.no_grad()
def insertion_errors(agents: Sequence[CCMMADRL], critic: StackedCritic, states: Tensor, actions: Tensor,
                     x: Tensor, rewards: Tensor, next_states: Tensor, dones: Tensor) -> Tensor:
    """Every run's insertion priorities' errors ``(R, T)`` (:meth:`CCMMADRL.remember_many`): the
    summed squared error of each transition's critic terms against its target, under the run's
    own online critic (``critic``, stacked) and target networks."""
    ag0 = agents[0]
    target_critic = StackedCritic.from_critics([ag.target_critic for ag in agents])
    target_flat = torch.stack([ag.target_actors.flat.detach() for ag in agents])
    gammas = ag0.as_tensor([ag.gamma for ag in agents]).unsqueeze(1)
    y = td_targets_runs(ag0, target_flat, target_critic, rewards, next_states, dones, gammas)
    b_idx, k_idx, valid, _ = critic_terms_runs(x)
    q = critic.q_pairs(states, actions, b_idx, k_idx)
    sq = torch.where(valid, (q - y.gather(1, b_idx)) ** 2, 0.0)
    return torch.zeros_like(y).scatter_add_(1, b_idx, sq)


# ------------------------------------------------------------------ the master, vectorised
def greedy_accept(order: np.ndarray, proposers: np.ndarray, sizes: np.ndarray, cap_count: int,
                  cap_size: float) -> np.ndarray:
    """The master's greedy rule for R runs at once: visiting each run's agents in ``order
    (R, N)`` (proposers by descending Q first), accept agent k if it proposes, fewer than
    ``cap_count`` are accepted and ``accepted size + size_k < cap_size`` (strict). Returns
    ``x (R, N)``; run by run the decisions of :meth:`CCMMADRL.master_select`'s loop."""
    rr, n = order.shape
    runs = np.arange(rr)
    x = np.zeros((rr, n), dtype=np.float64)
    accepted = np.zeros(rr, dtype=np.int64)
    accepted_size = np.zeros(rr, dtype=np.float64)
    for j in range(n):
        k = order[:, j]
        size_k = sizes[runs, k]
        ok = proposers[runs, k] & (accepted < cap_count) & (accepted_size + size_k < cap_size)
        x[runs[ok], k[ok]] = 1.0
        accepted += ok
        accepted_size = np.where(ok, accepted_size + size_k, accepted_size)
        if not (accepted < cap_count).any():
            break
    return x


class ActingGroup:
    """R runs acting as one computation (see the module docstring).

    ``ActingGroup(trainers)`` moves the runs' replay buffers into one stacked storage and sets
    each ``trainer.acting`` to this group. ``request(trainer)`` (called by
    ``Trainer.act_episode``) queues the run and returns its episode row, empty until
    :meth:`flush` computes the queued runs' episode and fills it.
    """

    def __init__(self, trainers: Sequence[Any]) -> None:
        self.trainers = list(trainers)
        self.index = {id(t): g for g, t in enumerate(self.trainers)}
        self.replay = StackedReplay([t.agent.replay for t in self.trainers])
        self.queue: list[tuple[int, dict[str, Any]]] = []
        for t in self.trainers:
            t.acting = self

    @staticmethod
    def key(trainer: Any) -> tuple | None:
        """Runs with equal keys can act as one group; None: this run acts alone."""
        ag = trainer.agent
        if ag.policy != "deterministic" or not ag.can_defer_insertion or trainer.cfg.run.tracking == "original":
            return None
        rep = ag.replay
        return (repr(trainer.cfg.env), tuple(ag.actors.flat.shape), tuple(ag.critic.sizes),
                trainer.cfg.agent.hidden_activation, trainer.cfg.agent.output_activation, ag.dtype,
                rep.capacity, tuple(rep.states.shape))

    def request(self, trainer: Any) -> dict[str, Any]:
        """Queue ``trainer`` for the next :meth:`flush`; returns its row (filled there)."""
        row: dict[str, Any] = {}
        self.queue.append((self.index[id(trainer)], row))
        return row

    def flush(self) -> list[tuple[Any, BaseException]]:
        """One episode of every queued run; returns the runs that raised, with their errors."""
        queued, self.queue = self.queue, []
        if not queued:
            return []
        runs = [g for g, _ in queued]
        trainers = [self.trainers[g] for g in runs]
        saved = [(t.agent.rng.bit_generator.state, t.env.rng.bit_generator.state) for t in trainers]
        try:
            commit = self._episode(runs)
        except Exception:  # noqa: BLE001  (put the generators back; every run acts alone)
            failures = []
            for t, (rng_state, env_state), (_, row) in zip(trainers, saved, queued):
                t.agent.rng.bit_generator.state = rng_state
                t.env.rng.bit_generator.state = env_state
                try:
                    row.update(t.act_episode_alone())
                except Exception as exc:  # noqa: BLE001
                    failures.append((t, exc))
            return failures
        for (_, row), new in zip(queued, commit()):
            row.update(new)
        return []

    def leave(self, trainer: Any) -> None:
        """``trainer``'s run has ended: the group no longer holds it (its replay row stays
        allocated until the group ends)."""
        g = self.index.pop(id(trainer), None)
        if g is not None:
            self.trainers[g] = None
            self.queue = [(h, row) for h, row in self.queue if h != g]
        trainer.acting = None

    # -------------------------------------------------------------- one episode
    @torch.no_grad()
    def _episode(self, runs: list[int]) -> Callable[[], list[dict[str, Any]]]:
        """The episode of runs ``runs`` (group rows), computed without changing any run; returns
        the function that commits it (replay, environments, run state) and returns the rows."""
        t0 = time.perf_counter()
        trainers = [self.trainers[g] for g in runs]
        agents = [t.agent for t in trainers]
        ag0, cfg = agents[0], trainers[0].cfg
        rr, steps = len(runs), cfg.env.steps_per_episode
        env = MECEnvVec([t.env for t in trainers])
        flat = torch.stack([ag.actors.flat.detach() for ag in agents])  # (R, N, P)
        critic = StackedCritic.from_critics([ag.critic for ag in agents])
        eps = np.array([ag.epsilon(t.episodes_done) for ag, t in zip(agents, trainers)])
        states = np.stack([t.states for t in trainers])  # (R, N, S)
        reward, constrained, e_pen, t_pen, offload = (np.zeros(rr) for _ in range(5))
        columns: list[list[np.ndarray]] = [[] for _ in range(6)]
        for _ in range(steps):
            actions, x, env_actions, constr = self._act(agents, flat, critic, states, eps)
            next_states, rewards, done, info = env.step(env_actions)
            for col, v in zip(columns, (states, actions, x, rewards[:, 0], next_states, done)):
                col.append(v)
            states = next_states
            reward += rewards[:, 0]
            constrained += constr
            e_pen += info["energy_penalty_frac"]
            t_pen += info["time_penalty_frac"]
            offload += x.mean(axis=1)
            if done.any():
                states = env.reset(done)
        # every run's transitions (T = steps), run-major, and their insertion priorities
        s, a, x, r, ns, d = (np.stack(col, axis=1) for col in columns)
        as_t = ag0.as_tensor  # environment side -> the agents' device
        errs = insertion_errors(agents, critic, as_t(s), as_t(a), as_t(x), as_t(r), as_t(ns), as_t(d))

        def commit() -> list[dict[str, Any]]:
            self.replay.push_many(runs, s, a, x, r, ns, d, errs.double().cpu().numpy())
            env.write_back()
            share = (time.perf_counter() - t0) / rr
            rows = []
            for g, t in enumerate(trainers):
                t.states = states[g]
                t.episodes_done += 1
                rows.append({
                    "episode": t.episodes_done, "reward": float(reward[g]), "epsilon": float(eps[g]),
                    "constraint_exceeded_frac": float(constrained[g] / steps),
                    "energy_penalty_frac": float(e_pen[g] / steps), "time_penalty_frac": float(t_pen[g] / steps),
                    "offload_frac": float(offload[g] / steps), "updated": False,
                    "critic_loss": float("nan"), "actor_loss": float("nan"), "seconds": share,
                })
            return rows
        return commit

    def _act(self, agents: list[CCMMADRL], flat: Tensor, critic: StackedCritic, states: np.ndarray,
             eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One acting step of R runs (:meth:`CCMMADRL.act` with ``explore=True``): ``(actions
        (R, N, 3) as acted, x (R, N), env_actions (R, N, 3), constrained (R,) 0/1)``."""
        ag0 = agents[0]
        rr, n, sdim = states.shape
        s = ag0.as_tensor(states)
        # 1. each run's actors on their own states, one forward for all runs
        a = ag0.actors.policy_forward(s.view(rr * n, 1, sdim), flat.view(rr * n, -1)).action
        actions = a.view(rr, n, ACTION_DIM).double().cpu().numpy()
        # 2. Gaussian noise from each run's own exploration stream, clipped
        noise = np.stack([ag.rng.standard_normal((n, ACTION_DIM)) for ag in agents])
        actions = np.clip(actions + noise * eps[:, None, None], -1.0, 1.0)
        actions = actions.astype(ag0._np_dtype).astype(np.float64)  # exactly what the replay stores
        # 3.-4. proposers and the master's selection
        x, constrained = self._select(agents, critic, states, actions, eps)
        env_actions = np.stack([x, to_env_fraction(actions[..., 1]), to_env_fraction(actions[..., 2])], axis=2)
        return actions, x, env_actions, constrained

    def _select(self, agents: list[CCMMADRL], critic: StackedCritic, states: np.ndarray, actions: np.ndarray,
                eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`CCMMADRL.master_select` of R runs: the branches decided per run (with each
        run's own draws), the greedy runs' Q from the stacked critics in one evaluation."""
        ag0 = agents[0]
        rr, n, _ = states.shape
        cap_count, cap_size = ag0.constraint, ag0.server_storage
        sizes = states[:, :, SIZE_COLUMN]
        proposers = actions[:, :, 0] >= 0
        x = np.zeros((rr, n), dtype=np.float64)
        constrained = np.zeros(rr)
        greedy = np.zeros(rr, dtype=bool)
        for g, ag in enumerate(agents):
            p = np.flatnonzero(proposers[g])
            if p.size == 0:
                continue  # "none"
            if p.size <= cap_count and sizes[g, p].sum() <= cap_size:
                x[g, p] = 1.0  # "fits"
                continue
            constrained[g] = 1.0
            if ag.rng.random() <= eps[g]:  # "random"
                x[g, ag.random_offloaders(sizes[g])] = 1.0
            else:
                greedy[g] = True
        if greedy.any():
            q = self._proposer_q(ag0, critic, states, actions, proposers & greedy[:, None])
            order = np.argsort(-q, axis=1, kind="stable")  # proposers by descending Q, the others last
            x[greedy] = greedy_accept(order[greedy], proposers[greedy], sizes[greedy], cap_count, cap_size)
        return x, constrained

    @staticmethod
    def _proposer_q(ag0: CCMMADRL, critic: StackedCritic, states: np.ndarray, actions: np.ndarray,
                    rows: np.ndarray) -> np.ndarray:
        """Online-critic Q of the rows ``rows (R, N)`` of every run's one joint state/action
        (:meth:`CCMMADRL.score_rows`) -> ``(R, N)`` float64, ``-inf`` elsewhere (tensors of
        ``ag0``'s dtype on its device)."""
        rr, n, _ = states.shape
        mask = torch.as_tensor(rows, device=ag0.device)
        flat_idx, valid, _ = pad_rows(mask)
        s = ag0.as_tensor(states).unsqueeze(1)  # (R, 1, N, S): one transition per run
        a = ag0.as_tensor(actions).unsqueeze(1)
        q_rows = critic.q_pairs(s, a, torch.zeros_like(flat_idx), torch.where(valid, flat_idx, -1)).double()
        q = q_rows.new_full((rr, n + 1), float("-inf"))
        q.scatter_(1, torch.where(valid, flat_idx, n), torch.where(valid, q_rows, float("-inf")))
        return q[:, :n].cpu().numpy()
