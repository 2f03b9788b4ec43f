"""Periodic plasticity remedies for CCM-MADRL, applied between training updates (``docs/presets.md``,
"Plasticity remedies").

Each remedy is one in-place function over the agent's own tensors -- the actors' flat
``(N, P)`` parameter through its layer views, the critic's ``nn.Linear`` layers, the
:class:`~gradasym.algos.ccm_madrl.optim.BatchedAdam` moments of the actors and the critic's
``torch.optim`` Adam moments -- vectorised over the N actors (no Python loop over agents), so
they act on any engine that keeps its state in those tensors:

* :func:`redo_actors_` / :func:`redo_critic_` -- ReDo (Sokar et al., ICML 2023): every
  tau-dormant hidden unit (score ``E|h_i| / (mean_j E|h_j| + 1e-9) <= tau`` on the update's
  batch) gets fresh incoming weights and bias (the layer's initial distribution), zero
  outgoing weights, and zero Adam moments for all of those weights;
* :func:`shrink_perturb_actors_` / :func:`shrink_perturb_critic_` -- Shrink & Perturb (Ash &
  Adams, NeurIPS 2020): ``theta <- lambda * theta + sigma * theta_fresh`` for every parameter
  (optimiser moments kept);
* :func:`reset_last_actors_` / :func:`reset_last_critic_` -- resets of the last layers
  (Nikishin et al., ICML 2022, "The Primacy Bias in Deep RL"): the last k layers fresh, their
  Adam moments zero.

Fresh weights are drawn from the run's own ``remedies`` random stream
(:func:`gradasym.seeding.torch_generator`), whole layers at a time on the CPU, so a run is
deterministic and resumable. Adam step counts are kept (as in Sokar et al.'s
implementation). Target networks are not touched: with the faithful ``tau = 1`` they are
overwritten at the next update.

:class:`Remedies` holds the schedule of a run (``agent.redo_period``, ...) and the random
stream; the runner calls :meth:`Remedies.after_update` after each update and the monitor's
observation of it. The architecture/optimiser remedies (``agent.crelu``,
``agent.weight_decay`` for ``ln-wd``) live in the networks and optimisers themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from gradasym.config import AgentConfig
from gradasym.metrics import dormant_mask
from gradasym.seeding import torch_generator

from .critic import Critic
from .networks import ActorEnsemble
from .optim import BatchedAdam

__all__ = [
    "Remedies",
    "fresh_actor_flat",
    "fresh_critic_layer",
    "redo_actors_",
    "redo_critic_",
    "reset_last_actors_",
    "reset_last_critic_",
    "shrink_perturb_actors_",
    "shrink_perturb_critic_",
    "torch_engine_only",
]


# ------------------------------------------------------------------ fresh initialisations
def _uniform(shape: Sequence[int], bound: float, gen: torch.Generator, like: Tensor) -> Tensor:
    """U(-bound, bound) of ``shape``, drawn on the CPU from ``gen`` (the same numbers on any
    device), in ``like``'s dtype on its device."""
    t = torch.empty(tuple(shape), dtype=like.dtype, device="cpu")
    t.uniform_(-bound, bound, generator=gen)
    return t.to(like.device)


def fresh_actor_flat(actors: ActorEnsemble, output_init: float, gen: torch.Generator) -> Tensor:
    """A fresh initialisation of all N actors as a flat ``(N, P)`` tensor (not written anywhere):
    hidden layers U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (PyTorch's
    ``nn.Linear`` default), the output layer U(-output_init, output_init), LayerNorm gains 1 and
    shifts 0 -- the distributions of :meth:`ActorEnsemble.reset_parameters`, drawn layer by layer
    for all agents at once."""
    flat = actors.flat.detach()
    fresh = torch.empty_like(flat)
    n = actors.n_agents
    for layer in range(actors.n_layers):
        fan_in, fan_out = actors.in_sizes[layer], actors.out_sizes[layer]
        bound = output_init if layer == actors.n_layers - 1 else (1.0 / math.sqrt(fan_in) if fan_in else 0.0)
        actors.weight(layer, fresh).copy_(_uniform((n, fan_in, fan_out), bound, gen, flat))
        actors.bias(layer, fresh).copy_(_uniform((n, fan_out), bound, gen, flat))
        if actors.has_ln(layer):
            actors.ln_weight(layer, fresh).fill_(1.0)
            actors.ln_bias(layer, fresh).zero_()
    return fresh


def fresh_critic_layer(critic: Critic, j: int, output_init: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """A fresh ``(weight (out, in), bias (out,))`` for the critic's layer ``j`` (the distribution
    of :meth:`Critic.reset_parameters`)."""
    lin = critic.layers[j]
    fan_in = lin.weight.shape[1]
    bound = output_init if j == len(critic.layers) - 1 else (1.0 / math.sqrt(fan_in) if fan_in else 0.0)
    return (_uniform(lin.weight.shape, bound, gen, lin.weight.detach()),
            _uniform(lin.bias.shape, bound, gen, lin.bias.detach()))


def _critic_moments(optim: torch.optim.Optimizer, p: Tensor) -> list[Tensor]:
    """The Adam moments of ``p`` (none before its first step)."""
    st = optim.state.get(p, {})
    return [st[k] for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if k in st]


# ------------------------------------------------------------------ ReDo
@torch.no_grad()
def redo_actors_(actors: ActorEnsemble, optim: BatchedAdam, hidden: Sequence[Tensor], tau: float,
                 gen: torch.Generator) -> Tensor:
    """ReDo on every actor at once; ``hidden[l] (..., N, W_l)`` are the actors' hidden activations
    on a batch (agents on dim -2, as in :class:`~gradasym.algos.ccm_madrl.agent.UpdateResult`).
    Returns the number of recycled units per actor ``(N,)``.

    For hidden layer l with dormant units M ``(N, H_l)``: layer l's weight columns and biases of
    M <- fresh; layer l+1's weight rows of M <- 0; the Adam moments of all of those entries <- 0.
    With CReLU a unit j feeds outputs j and H + j: it is recycled when both are dormant, and both
    of its outgoing rows are zeroed. The output layer is not scored (Sokar et al.)."""
    n = actors.n_agents
    flat = actors.flat.detach()
    moments = [optim.exp_avg[0], optim.exp_avg_sq[0]]
    fresh = fresh_actor_flat(actors, 0.0, gen)  # hidden layers only are used
    counts = torch.zeros(n, dtype=torch.int64)
    for layer, h in enumerate(hidden[: actors.n_layers - 1]):
        width = h.shape[-1]
        scores_in = h.reshape(-1, n, width).transpose(0, 1)  # (N, B, W)
        dormant = dormant_mask(scores_in, tau)  # (N, W)
        if actors.crelu:
            units = actors.out_sizes[layer]
            dormant = dormant[:, :units] & dormant[:, units:]
            rows = torch.cat([dormant, dormant], dim=1)
        else:
            rows = dormant
        dormant, rows = dormant.to(flat.device), rows.to(flat.device)
        counts += dormant.sum(1).cpu()
        if not bool(dormant.any()):
            continue
        col = dormant.unsqueeze(1)  # (N, 1, H): incoming weight columns
        w, b = actors.weight(layer, flat), actors.bias(layer, flat)
        w.copy_(torch.where(col, actors.weight(layer, fresh), w))
        b.copy_(torch.where(dormant, actors.bias(layer, fresh), b))
        w_out = actors.weight(layer + 1, flat)
        w_out.masked_fill_(rows.unsqueeze(2), 0.0)  # (N, W, 1): outgoing weight rows
        for m in moments:
            actors.weight(layer, m).masked_fill_(col, 0.0)
            actors.bias(layer, m).masked_fill_(dormant, 0.0)
            actors.weight(layer + 1, m).masked_fill_(rows.unsqueeze(2), 0.0)
    return counts


@torch.no_grad()
def redo_critic_(critic: Critic, optim: torch.optim.Optimizer, hidden: Sequence[Tensor], tau: float,
                 gen: torch.Generator) -> int:
    """ReDo on the critic; ``hidden[l] (T, H_l)`` its hidden activations on a batch (the critic-loss
    forward of the update). Returns the number of recycled units."""
    total = 0
    n_layers = len(critic.layers)
    for j, h in enumerate(hidden[: n_layers - 1]):
        dormant = dormant_mask(h.reshape(-1, h.shape[-1]), tau).to(critic.layers[j].weight.device)  # (H,)
        fresh_w, fresh_b = fresh_critic_layer(critic, j, 0.0, gen)
        k = int(dormant.sum())
        total += k
        if not k:
            continue
        lin, nxt = critic.layers[j], critic.layers[j + 1]
        lin.weight.copy_(torch.where(dormant.unsqueeze(1), fresh_w, lin.weight))  # incoming rows (out, in)
        lin.bias.copy_(torch.where(dormant, fresh_b, lin.bias))
        nxt.weight.masked_fill_(dormant.unsqueeze(0), 0.0)  # outgoing columns
        for m in _critic_moments(optim, lin.weight):
            m.masked_fill_(dormant.unsqueeze(1), 0.0)
        for m in _critic_moments(optim, lin.bias):
            m.masked_fill_(dormant, 0.0)
        for m in _critic_moments(optim, nxt.weight):
            m.masked_fill_(dormant.unsqueeze(0), 0.0)
    return total


# ------------------------------------------------------------------ Shrink & Perturb
@torch.no_grad()
def shrink_perturb_actors_(actors: ActorEnsemble, lam: float, sigma: float, output_init: float,
                           gen: torch.Generator) -> None:
    """``theta <- lambda * theta + sigma * theta_fresh`` for every parameter of every actor."""
    fresh = fresh_actor_flat(actors, output_init, gen)
    actors.flat.detach().mul_(lam).add_(fresh, alpha=sigma)


@torch.no_grad()
def shrink_perturb_critic_(critic: Critic, lam: float, sigma: float, output_init: float,
                           gen: torch.Generator) -> None:
    """``theta <- lambda * theta + sigma * theta_fresh`` for every parameter of the critic."""
    for j, lin in enumerate(critic.layers):
        fresh_w, fresh_b = fresh_critic_layer(critic, j, output_init, gen)
        lin.weight.mul_(lam).add_(fresh_w, alpha=sigma)
        lin.bias.mul_(lam).add_(fresh_b, alpha=sigma)


# ------------------------------------------------------------------ reset of the last layers
@torch.no_grad()
def reset_last_actors_(actors: ActorEnsemble, optim: BatchedAdam, k: int, output_init: float,
                       gen: torch.Generator) -> None:
    """The last ``k`` layers of every actor (with their LayerNorms) fresh; their Adam moments 0.
    The layers are the tail of each agent's row, so this is one slice of ``(N, P)``."""
    if not 1 <= k <= actors.n_layers:
        raise ValueError(f"reset_last: k must be in [1, {actors.n_layers}], got {k}")
    fresh = fresh_actor_flat(actors, output_init, gen)
    start = actors._offsets[actors.n_layers - k][0]
    flat = actors.flat.detach()
    flat[:, start:].copy_(fresh[:, start:])
    for m in (optim.exp_avg[0], optim.exp_avg_sq[0]):
        m[:, start:].zero_()


@torch.no_grad()
def reset_last_critic_(critic: Critic, optim: torch.optim.Optimizer, k: int, output_init: float,
                       gen: torch.Generator) -> None:
    """The critic's last ``k`` layers fresh; their Adam moments 0."""
    n_layers = len(critic.layers)
    if not 1 <= k <= n_layers:
        raise ValueError(f"reset_last: k must be in [1, {n_layers}], got {k}")
    for j in range(n_layers):
        fresh_w, fresh_b = fresh_critic_layer(critic, j, output_init, gen)  # every layer drawn: a fixed stream
        if j < n_layers - k:
            continue
        lin = critic.layers[j]
        lin.weight.copy_(fresh_w)
        lin.bias.copy_(fresh_b)
        for p in (lin.weight, lin.bias):
            for m in _critic_moments(optim, p):
                m.zero_()


# ------------------------------------------------------------------ which engine runs what
def torch_engine_only(cfg: AgentConfig) -> list[str]:
    """The remedy fields set in ``cfg`` that only the torch engine (:class:`CCMMADRL`) runs:
    ``agent.crelu`` (another architecture) and ``agent.weight_decay`` (another optimiser
    arithmetic). For an engine's "unsupported" check; the periodic remedies are not listed (they
    act on the agent's tensors between updates, whatever engine updated them)."""
    out = []
    if cfg.crelu:
        out.append("agent.crelu")
    if cfg.weight_decay:
        out.append("agent.weight_decay")
    return out


# ------------------------------------------------------------------ the schedule of a run
class Remedies:
    """The periodic remedies of one run (``agent.redo_period``, ``agent.shrink_perturb_period``,
    ``agent.reset_last_period``; 0 = off) with their own random stream ``remedies``.

    :meth:`after_update` runs after update number ``agent.n_updates`` (counted from 1) every
    remedy whose period divides it, in the order ReDo, Shrink & Perturb, reset-last."""

    def __init__(self, cfg: AgentConfig, seed: int) -> None:
        self.cfg = cfg
        self.gen = torch_generator(int(seed), "remedies")

    @staticmethod
    def active(cfg: AgentConfig) -> bool:
        """Whether ``cfg`` asks for any periodic remedy."""
        return bool(cfg.redo_period or cfg.shrink_perturb_period or cfg.reset_last_period)

    def columns(self) -> dict[str, Any]:
        """The ``episodes.parquet`` columns of the configured remedies, as at an episode without any."""
        c, out = self.cfg, {}
        if c.redo_period:
            out.update(redo_actor_units=0, redo_critic_units=0)
        if c.shrink_perturb_period:
            out["shrink_perturb"] = 0
        if c.reset_last_period:
            out["reset_last"] = 0
        return out

    def after_update(self, agent: Any, upd: Any) -> dict[str, Any]:
        """Apply what is due after the update ``upd`` of ``agent`` (a
        :class:`~gradasym.algos.ccm_madrl.agent.CCMMADRL`); returns the :meth:`columns` with
        this update's values (recycled units, 1 for an applied reset)."""
        c, t = self.cfg, int(agent.n_updates)
        out = self.columns()
        due = lambda period: bool(period) and t % period == 0  # noqa: E731
        if due(c.redo_period):
            if "actors" in c.redo_networks and upd.actor_hidden:
                out["redo_actor_units"] = int(redo_actors_(agent.actors, agent.actor_optim, upd.actor_hidden,
                                                           c.redo_tau, self.gen).sum())
            if "critic" in c.redo_networks and upd.critic_hidden:
                out["redo_critic_units"] = redo_critic_(agent.critic, agent.critic_optim, upd.critic_hidden,
                                                        c.redo_tau, self.gen)
        if due(c.shrink_perturb_period):
            if "actors" in c.shrink_perturb_networks:
                shrink_perturb_actors_(agent.actors, c.shrink_perturb_lambda, c.shrink_perturb_sigma,
                                       c.output_init, self.gen)
            if "critic" in c.shrink_perturb_networks:
                shrink_perturb_critic_(agent.critic, c.shrink_perturb_lambda, c.shrink_perturb_sigma,
                                       c.output_init, self.gen)
            out["shrink_perturb"] = 1
        if due(c.reset_last_period):
            if "actors" in c.reset_last_networks:
                reset_last_actors_(agent.actors, agent.actor_optim, c.reset_last_layers, c.output_init, self.gen)
            if "critic" in c.reset_last_networks:
                reset_last_critic_(agent.critic, agent.critic_optim, c.reset_last_layers, c.output_init, self.gen)
            out["reset_last"] = 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["generator"])
