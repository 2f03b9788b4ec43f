"""Plasticity metrics: small pure functions over tensors (``docs/monitor.md``, "Plasticity").

The deep-RL literature's instruments for *loss of plasticity*, usable on their own and
composed by :class:`gradasym.monitor.ActorCriticMonitor` for the actor(s) and the critic
alike. Every function takes leading dimensions (agents of an ensemble, runs) and reduces
only the trailing ones, so an ensemble of N networks is one call:

* :func:`dormant_scores` / :func:`dormant_mask` / :func:`dormant_fraction` -- Sokar et al.
  (ICML 2023, "The Dormant Neuron Phenomenon in Deep RL"): for a batch of a layer's
  activations ``h (*lead, B, H)`` the score of unit i is ``E_b |h_bi| / (mean_j E_b |h_bj|
  + 1e-9)``; the unit is tau-dormant when its score ``<= tau``.
* :func:`effective_rank` -- exp of the entropy of the normalised singular values of a
  feature matrix ``(*lead, B, D)`` (Roy & Vetterli 2007; used for RL features by Lyle et
  al. 2022-2024 and Dohare et al., Nature 2024).
* :func:`stable_rank` -- ``srank_delta``: the smallest k whose top-k singular values hold
  ``(1 - delta)`` of their sum (Kumar et al., ICLR 2021, "Implicit Under-Parameterization").
* :func:`param_norm` / :func:`distance_from_init` -- the L2 norm of a network's parameters
  and of their change since initialisation (Lyle et al.; Dohare et al.), per leading index.

Everything is computed in float64 (singular values too), returns tensors on the input's
device, and never changes its input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_DORMANT_TAUS",
    "DORMANT_EPS",
    "distance_from_init",
    "dormant_fraction",
    "dormant_mask",
    "dormant_scores",
    "effective_rank",
    "param_norm",
    "stable_rank",
]

#: Sokar et al.'s thresholds: 0 (a unit that never fires), 0.025 and 0.1.
DEFAULT_DORMANT_TAUS: tuple[float, ...] = (0.0, 0.025, 0.1)
#: The denominator's offset in the dormant score (Sokar et al.'s implementation).
DORMANT_EPS = 1e-9


def _check_batch(h: Tensor, what: str) -> None:
    if not isinstance(h, Tensor):
        raise TypeError(f"{what}: expected a tensor (*lead, batch, units), got {type(h).__name__}")
    if h.dim() < 2:
        raise ValueError(f"{what}: expected a tensor (*lead, batch, units), got shape {tuple(h.shape)}")
    if not h.is_floating_point():
        raise TypeError(f"{what}: expected a floating-point tensor, got dtype {h.dtype}")


def dormant_scores(h: Tensor) -> Tensor:
    """Per-unit dormancy scores ``(*lead, H)`` of activations ``h (*lead, B, H)``.

    ``s_i = E_b |h_bi| / (mean_j E_b |h_bj| + 1e-9)``: a unit's mean absolute activation
    over the batch (dim -2) relative to the layer's average. A layer whose units are all
    silent scores 0 everywhere (every unit dormant at any tau >= 0). float64.
    """
    _check_batch(h, "dormant_scores")
    m = h.detach().to(torch.float64).abs().mean(dim=-2)  # (*lead, H)
    return m / (m.mean(dim=-1, keepdim=True) + DORMANT_EPS)


def dormant_mask(h: Tensor, tau: float) -> Tensor:
    """Boolean ``(*lead, H)``: unit i of ``h (*lead, B, H)`` is tau-dormant (score ``<= tau``)."""
    if not tau >= 0:
        raise ValueError(f"dormant tau must be >= 0, got {tau}")
    return dormant_scores(h) <= tau


def dormant_fraction(h: Tensor, tau: float | Sequence[float] = 0.0) -> Tensor:
    """Fraction of tau-dormant units of ``h (*lead, B, H)``: ``(*lead,)`` for one tau, or
    ``(*lead, T)`` for a sequence of T taus (one score computation). float64."""
    s = dormant_scores(h)
    if isinstance(tau, (int, float)):
        if not tau >= 0:
            raise ValueError(f"dormant tau must be >= 0, got {tau}")
        return (s <= tau).to(torch.float64).mean(dim=-1)
    taus = torch.as_tensor([float(t) for t in tau], dtype=torch.float64, device=s.device)
    if not bool((taus >= 0).all()):
        raise ValueError(f"dormant taus must be >= 0, got {list(tau)}")
    return (s.unsqueeze(-1) <= taus).to(torch.float64).mean(dim=-2)


def _singular_values(features: Tensor, what: str) -> Tensor:
    _check_batch(features, what)
    return torch.linalg.svdvals(features.detach().to(torch.float64))  # (*lead, min(B, D)), descending


def effective_rank(features: Tensor) -> Tensor:
    """``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / sum_j sigma_j``, of each feature matrix
    ``(*lead, B, D)`` (rows = samples) -> ``(*lead,)``, in ``[1, min(B, D)]``; 0 for an
    all-zero matrix (no feature direction at all). Batched SVD over the leading dims."""
    sv = _singular_values(features, "effective_rank")
    total = sv.sum(dim=-1, keepdim=True)
    p = sv / torch.where(total > 0, total, torch.ones_like(total))
    ent = -torch.special.xlogy(p, p).sum(dim=-1)  # 0 log 0 = 0
    return torch.where(total.squeeze(-1) > 0, ent.exp(), torch.zeros_like(ent))


def stable_rank(features: Tensor, delta: float = 0.01) -> Tensor:
    """``srank_delta``: the smallest k with ``sum_{i<=k} sigma_i >= (1 - delta) sum_i sigma_i``
    for each feature matrix ``(*lead, B, D)`` -> ``(*lead,)`` (float64 holding integers);
    0 for an all-zero matrix."""
    if not 0 <= delta < 1:
        raise ValueError(f"stable rank delta must be in [0, 1), got {delta}")
    sv = _singular_values(features, "stable_rank")
    cum = sv.cumsum(dim=-1)
    total = cum[..., -1:]
    # k = 1 + number of prefixes still short of the threshold (the cumulative sum is monotone)
    short = cum < (1.0 - delta) * total
    k = short.sum(dim=-1).to(torch.float64) + 1.0
    return torch.where(total.squeeze(-1) > 0, k.clamp(max=sv.shape[-1]), torch.zeros_like(k))


def _as_list(params: Tensor | Sequence[Tensor], what: str) -> list[Tensor]:
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise TypeError(f"{what}: expected a tensor or a sequence of tensors, got {type(params).__name__}")
    out = [p for p in params if p is not None]
    for p in out:
        if not isinstance(p, Tensor):
            raise TypeError(f"{what}: expected tensors, got an element of type {type(p).__name__}")
    if not out:
        raise ValueError(f"{what}: no tensors given")
    return out


def _sq_norm(ts: list[Tensor], lead: int, what: str) -> Tensor:
    acc = None
    for t in ts:
        if t.dim() < lead:
            raise ValueError(f"{what}: a tensor of shape {tuple(t.shape)} has fewer than lead={lead} dims")
        if lead:
            n = torch.linalg.vector_norm(t.detach().reshape(*t.shape[:lead], -1), dim=-1, dtype=torch.float64)
        else:
            n = torch.linalg.vector_norm(t.detach(), dtype=torch.float64)
        acc = n * n if acc is None else acc + n * n
    return acc  # type: ignore[return-value]


def param_norm(params: Tensor | Sequence[Tensor], lead: int = 0) -> Tensor:
    """L2 norm of all elements of ``params`` (one tensor or several), per index of the
    first ``lead`` dims (e.g. ``lead=1`` for an ensemble with the agent on dim 0): shape
    ``params[0].shape[:lead]``. float64."""
    return _sq_norm(_as_list(params, "param_norm"), lead, "param_norm").sqrt()


def distance_from_init(params: Tensor | Sequence[Tensor], init: Tensor | Sequence[Tensor], lead: int = 0) -> Tensor:
    """``||theta - theta_0||_2`` over all elements (per index of the first ``lead`` dims):
    ``params`` and ``init`` hold the same tensors in the same order. float64."""
    ps, qs = _as_list(params, "distance_from_init"), _as_list(init, "distance_from_init init")
    if len(ps) != len(qs) or any(p.shape != q.shape for p, q in zip(ps, qs)):
        raise ValueError("distance_from_init: params and init have different structures "
                         f"({[tuple(p.shape) for p in ps]} vs {[tuple(q.shape) for q in qs]})")
    diffs = [p.detach().to(torch.float64) - q.detach().to(device=p.device, dtype=torch.float64)
             for p, q in zip(ps, qs)]
    return _sq_norm(diffs, lead, "distance_from_init").sqrt()
