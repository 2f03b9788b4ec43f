"""ReDo and Shrink & Perturb for ordinary ``nn.Linear`` MLPs (``nn.Sequential`` of Linear and
activation modules), with their optimiser's moments: the plasticity remedies for networks that
are not CCM-MADRL's stacked ensemble (e.g. Stable-Baselines3's actors and critics, used by
:class:`gradasym.integrations.sb3.PlasticityRemedyCallback`). Definitions as in
:mod:`gradasym.algos.ccm_madrl.remedies` and ``docs/presets.md``:

* :func:`redo_mlp_` -- ReDo (Sokar et al., ICML 2023): each tau-dormant hidden unit gets fresh
  incoming weights and bias (``nn.Linear``'s default distribution U(-1/sqrt(fan_in),
  1/sqrt(fan_in))), zero outgoing weights, zero optimiser moments of those weights;
* :func:`shrink_perturb_` -- Shrink & Perturb (Ash & Adams 2020): ``theta <- lambda * theta +
  sigma * theta_fresh`` for every ``nn.Linear`` of a module.

Fresh weights come from an explicit ``torch.Generator`` (never the global RNG).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .metrics import dormant_mask

__all__ = ["HiddenLayer", "fresh_linear", "hidden_layers", "redo_mlp_", "shrink_perturb_"]


@dataclass
class HiddenLayer:
    """One hidden layer of an MLP: its ``incoming`` Linear, the ``activation`` module whose output
    is scored, and the Linear layer(s) its output feeds (``outgoing``)."""

    incoming: nn.Linear
    activation: nn.Module
    outgoing: list[nn.Linear]


def hidden_layers(seq: nn.Sequential, heads: Sequence[nn.Linear] = ()) -> list[HiddenLayer]:
    """The hidden layers of ``seq`` = ``Sequential(Linear, act, Linear, act, ..., [Linear, ...])``:
    each ``Linear`` followed by an activation module is a hidden layer, fed into the next
    ``Linear`` of ``seq`` or, for the last one, into ``heads`` (e.g. SAC's ``mu`` and ``log_std``
    after its ``latent_pi``)."""
    mods = list(seq)
    out: list[HiddenLayer] = []
    for k, m in enumerate(mods[:-1]):
        act = mods[k + 1]
        if isinstance(m, nn.Linear) and not isinstance(act, nn.Linear):
            nxt = next((x for x in mods[k + 2:] if isinstance(x, nn.Linear)), None)
            targets = [nxt] if nxt is not None else list(heads)
            if targets:
                out.append(HiddenLayer(m, act, targets))
    return out


def fresh_linear(layer: nn.Linear, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """``nn.Linear``'s default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and
    bias, drawn on the CPU from ``gen``; not written anywhere."""
    w = layer.weight
    bound = 1.0 / math.sqrt(w.shape[1]) if w.shape[1] else 0.0
    fw = torch.empty(w.shape, dtype=w.dtype).uniform_(-bound, bound, generator=gen).to(w.device)
    fb = None
    if layer.bias is not None:
        fb = torch.empty(layer.bias.shape, dtype=w.dtype).uniform_(-bound, bound, generator=gen).to(w.device)
    return fw, fb


def _moments(optimizer: torch.optim.Optimizer | None, p: Tensor) -> list[Tensor]:
    if optimizer is None:
        return []
    st = optimizer.state.get(p, {})
    return [v for k, v in st.items() if k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")
            and isinstance(v, Tensor) and v.shape == p.shape]


@torch.no_grad()
def redo_mlp_(layers: Sequence[HiddenLayer], hidden: Sequence[Tensor], tau: float,
              optimizer: torch.optim.Optimizer | None, gen: torch.Generator) -> int:
    """ReDo on an MLP given ``hidden[l] (..., H_l)``, the activations of ``layers[l]`` on a batch
    (flattened over the leading dims); returns the number of recycled units. Layers in order (a
    recycled unit of a later layer gets a whole fresh incoming row, as in Sokar et al.)."""
    total = 0
    for hl, h in zip(layers, hidden):
        dormant = dormant_mask(h.detach().reshape(-1, h.shape[-1]), tau).to(hl.incoming.weight.device)
        fw, fb = fresh_linear(hl.incoming, gen)
        k = int(dormant.sum())
        total += k
        if not k:
            continue
        lin = hl.incoming
        lin.weight.copy_(torch.where(dormant.unsqueeze(1), fw, lin.weight))
        for m in _moments(optimizer, lin.weight):
            m.masked_fill_(dormant.unsqueeze(1), 0.0)
        if lin.bias is not None and fb is not None:
            lin.bias.copy_(torch.where(dormant, fb, lin.bias))
            for m in _moments(optimizer, lin.bias):
                m.masked_fill_(dormant, 0.0)
        for out in hl.outgoing:
            out.weight.masked_fill_(dormant.unsqueeze(0), 0.0)
            for m in _moments(optimizer, out.weight):
                m.masked_fill_(dormant.unsqueeze(0), 0.0)
    return total


@torch.no_grad()
def shrink_perturb_(module: nn.Module, lam: float, sigma: float, gen: torch.Generator) -> None:
    """``theta <- lambda * theta + sigma * theta_fresh`` for every ``nn.Linear`` of ``module``
    (registration order; optimiser moments kept)."""
    for lin in module.modules():
        if isinstance(lin, nn.Linear):
            fw, fb = fresh_linear(lin, gen)
            lin.weight.mul_(lam).add_(fw, alpha=sigma)
            if lin.bias is not None and fb is not None:
                lin.bias.mul_(lam).add_(fb, alpha=sigma)
