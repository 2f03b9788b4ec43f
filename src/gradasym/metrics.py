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
    "hidden_plasticity",
    "param_norm",
    "stable_rank",
    "weight_plasticity",
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
    m = h.detach().abs().mean(dim=-2, dtype=torch.float64)  # (*lead, H), float64 accumulation, no float64 copy
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


def _singular_values(features: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """``(singular values (*lead, min(B, D)) descending, finite (*lead,))`` in float64, by
    ``torch.linalg.svdvals`` (batched over the leading dims). Not through the eigenvalues of the
    Gram matrix ``F^T F``: faster, but its small singular values carry an error of ~1e-8 of the
    largest, which moves the effective rank of a rank-deficient matrix by ~1e-7 under rounding-level
    changes of ``F`` (a test checks that the ranks are stable to such changes). A matrix with a NaN
    or infinite entry (a diverged network) is replaced by zeros (the SVD would fail on it) and
    flagged, so that its ranks come out NaN."""
    _check_batch(features, what)
    f = features.detach().to(torch.float64)
    finite = torch.isfinite(f).all(dim=-1).all(dim=-1)
    if not bool(finite.all()):
        f = torch.where(finite[..., None, None], f, torch.zeros_like(f))
    return torch.linalg.svdvals(f), finite


def effective_rank(features: Tensor) -> Tensor:
    """``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / sum_j sigma_j``, of each feature matrix
    ``(*lead, B, D)`` (rows = samples) -> ``(*lead,)``, in ``[1, min(B, D)]``; 0 for an
    all-zero matrix (no feature direction at all), NaN for one with a non-finite entry.
    Batched SVD over the leading dims."""
    return _effective_rank_sv(*_singular_values(features, "effective_rank"))


def _effective_rank_sv(sv: Tensor, finite: Tensor) -> Tensor:
    total = sv.sum(dim=-1, keepdim=True)
    p = sv / torch.where(total > 0, total, torch.ones_like(total))
    ent = -torch.special.xlogy(p, p).sum(dim=-1)  # 0 log 0 = 0
    out = torch.where(total.squeeze(-1) > 0, ent.exp(), torch.zeros_like(ent))
    return torch.where(finite, out, torch.full_like(out, float("nan")))


def stable_rank(features: Tensor, delta: float = 0.01) -> Tensor:
    """``srank_delta``: the smallest k with ``sum_{i<=k} sigma_i >= (1 - delta) sum_i sigma_i``
    for each feature matrix ``(*lead, B, D)`` -> ``(*lead,)`` (float64 holding integers);
    0 for an all-zero matrix, NaN for one with a non-finite entry."""
    if not 0 <= delta < 1:
        raise ValueError(f"stable rank delta must be in [0, 1), got {delta}")
    return _stable_rank_sv(*_singular_values(features, "stable_rank"), delta)


def _stable_rank_sv(sv: Tensor, finite: Tensor, delta: float) -> Tensor:
    cum = sv.cumsum(dim=-1)
    total = cum[..., -1:]
    # k = 1 + number of prefixes still short of the threshold (the cumulative sum is monotone)
    short = cum < (1.0 - delta) * total
    k = short.sum(dim=-1).to(torch.float64) + 1.0
    out = torch.where(total.squeeze(-1) > 0, k.clamp(max=sv.shape[-1]), torch.zeros_like(k))
    return torch.where(finite, out, torch.full_like(out, float("nan")))


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
    # the difference in the parameters' own dtype (exact up to one rounding), its norm accumulated in float64
    diffs = [p.detach() - q.detach().to(device=p.device, dtype=p.dtype) for p, q in zip(ps, qs)]
    return _sq_norm(diffs, lead, "distance_from_init").sqrt()


# --------------------------------------------------------------------------- compositions


def hidden_plasticity(hidden: Sequence[Tensor], taus: Sequence[float] = DEFAULT_DORMANT_TAUS,
                      delta: float = 0.01) -> dict[str, Tensor | list[Tensor]]:
    """The activation-based instruments of one network (or ensemble) from its hidden layers'
    activations ``hidden[l] (*lead, B, H_l)`` on one batch (penultimate features = the last one):

    ``dormant`` -- per layer ``(*lead, T)`` fractions for the T taus; ``dormant_all`` --
    ``(*lead, T)`` over every hidden unit of every layer (unit-weighted); ``effective_rank`` and
    ``stable_rank`` -- ``(*lead,)`` of the last layer's features."""
    if not hidden:
        raise ValueError("hidden_plasticity: no hidden layers given")
    if not 0 <= delta < 1:
        raise ValueError(f"stable rank delta must be in [0, 1), got {delta}")
    sv, finite = _singular_values(hidden[-1], "hidden_plasticity")  # once for both ranks
    per_layer = [dormant_fraction(h, list(taus)) for h in hidden]
    widths = torch.tensor([h.shape[-1] for h in hidden], dtype=torch.float64, device=per_layer[0].device)
    stacked = torch.stack(per_layer)  # (L, *lead, T)
    w = widths.view((-1,) + (1,) * (stacked.dim() - 1))
    return {
        "dormant": per_layer,
        "dormant_all": (stacked * w).sum(0) / widths.sum(),
        "effective_rank": _effective_rank_sv(sv, finite),
        "stable_rank": _stable_rank_sv(sv, finite, delta),
    }


def weight_plasticity(layers: Sequence[Sequence[Tensor]], init: Sequence[Sequence[Tensor]] | None,
                      lead: int = 0) -> dict[str, Tensor | list[Tensor]]:
    """The weight-based instruments of one network (or ensemble, ``lead=1``) from its layers'
    parameters ``layers[l]`` (a list of tensors each) and the same at initialisation ``init``:
    ``norm_layers`` / ``dist_layers`` per layer and ``norm`` / ``dist`` over all layers, each of
    shape ``(*lead dims,)``; the distances are NaN when ``init`` is None."""
    norms = [param_norm(list(ts), lead) for ts in layers]
    total = torch.stack([n * n for n in norms]).sum(0).sqrt()
    if init is None:
        nan = torch.full_like(total, float("nan"))
        return {"norm_layers": norms, "norm": total, "dist_layers": [nan] * len(norms), "dist": nan}
    if len(init) != len(layers):
        raise ValueError(f"weight_plasticity: {len(layers)} layers but {len(init)} initial layers")
    dists = [distance_from_init(list(ts), list(ts0), lead) for ts, ts0 in zip(layers, init)]
    return {"norm_layers": norms, "norm": total, "dist_layers": dists,
            "dist": torch.stack([d * d for d in dists]).sum(0).sqrt()}
