"""Framework-agnostic actor-critic monitor: gradients, saturation, freezing.

:class:`ActorCriticMonitor` consumes, after every training update, the actor and
critic gradients (each network's gradient of *its own* loss), their parameters, and
optionally the actor's output pre-activations (the input to the final squashing
function) and hidden activations. From them it keeps:

* gradient norms: per actor ``||g_i||`` over all layers and per layer, the actor
  total ``sqrt(mean_i ||g_i||^2)`` (and the same per layer), the critic total and per
  layer, and the asymmetry ratio ``rho = actor total / critic total``;
* pre-activation statistics (mean, std, min, max, max ``|z|``) and the saturation
  ratio, i.e. the fraction of outputs with ``|squash(z)| > saturation_threshold``,
  overall, per action dimension and per actor;
* hidden-layer statistics (mean activation, fraction of dead ReLU units);
* weight-freeze detection (per actor stop episode, all-actors stopping episode,
  critic stop episode, "frozen now" flags) and gradient-death detection;
* plasticity instruments (``plasticity=True``, :mod:`gradasym.metrics`), for the actor(s)
  and the critic alike, at logged updates only: tau-dormant unit fractions per hidden
  layer, effective and stable rank of the penultimate features, parameter norm and
  distance from the first parameters observed, per layer and per actor.

It knows nothing about the environment or the algorithm. Actors may be a stacked
ensemble (``n_agents=N``: every actor tensor has the agent on dim 0) or a single
network (``n_agents=None``). Everything is vectorised over agents with torch (no
Python loop over agents in :meth:`ActorCriticMonitor.observe_update`).

Helpers for ordinary ``nn.Module`` networks: :func:`collect_grads`,
:func:`collect_params`, :func:`register_preact_hook` / :class:`OutputPreactHook` and
:class:`HiddenActivationHook`. See ``docs/monitor.md``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn

from .config import check_freeze_thresholds
from .metrics import DEFAULT_DORMANT_TAUS, hidden_plasticity, weight_plasticity

__all__ = [
    "EVENTS",
    "SQUASHES",
    "ActorCriticMonitor",
    "HiddenActivationHook",
    "OutputPreactHook",
    "collect_grads",
    "collect_params",
    "group_layers",
    "preact_summary",
    "register_preact_hook",
    "saturation_bound",
    "selected_parameters",
    "squash_derivative",
]

TensorTree = Union[Tensor, None, Mapping[str, "TensorTree"], Sequence["TensorTree"]]

SQUASHES = ("tanh", "softsign", "scaled-sigmoid", "identity")

_NONE = torch.iinfo(torch.int64).min  # sentinel for "no episode yet" in int64 state
_NAN = float("nan")
# keys every state_dict() has ("diverged", "critic_diverged" are optional: older states lack them)
_STATE_KEYS = (
    "config", "n_updates", "last_step", "actor_stop", "death", "frozen", "critic_stop", "critic_frozen",
    "prev_actor", "prev_critic", "max_abs", "actor_layers", "critic_layers", "agent_sq", "actor_layer_total",
    "critic_layer_sq", "stats", "last_sat", "n_dims", "n_actor_hidden", "n_critic_hidden",
)  # fmt: skip
#: Event kinds of :attr:`ActorCriticMonitor.events`, each reported once (the first time it happens).
EVENTS = ("grad_death", "actor_frozen", "all_frozen", "actor_diverged", "critic_diverged", "critic_frozen")
_CONFIG_KEYS = ("n_agents", "saturation_threshold", "freeze_tolerance", "grad_death_threshold", "squash")
_PREACT_KEYS = (
    "preact_mean", "preact_std", "preact_min", "preact_max", "preact_max_abs",
    "saturation_ratio", "dead_output_frac", "squash_grad_mean",
)  # fmt: skip


# --------------------------------------------------------------------------- helpers


def saturation_bound(squash: str, threshold: float) -> float:
    """The ``|z|`` above which ``|squash(z)| > threshold``.

    ``tanh``: ``atanh(t)`` (1.4722 for t = 0.9); ``softsign`` (``z / (1 + |z|)``):
    ``t / (1 - t)``; ``scaled-sigmoid`` (``2 sigmoid(z) - 1 = tanh(z / 2)``):
    ``2 atanh(t)``; ``identity``: ``t``. Comparing ``|z|`` with this bound is exactly
    the comparison ``|squash(z)| > t`` in real arithmetic, and stays correct for
    infinite ``z`` (where e.g. softsign would give inf/inf).
    """
    if squash not in SQUASHES:
        raise ValueError(f"squash must be one of {SQUASHES}, got {squash!r}")
    t = float(threshold)
    if squash == "identity":
        if not t > 0:
            raise ValueError(f"saturation_threshold must be > 0, got {threshold}")
        return t
    if not 0 < t < 1:
        raise ValueError(f"saturation_threshold must be in (0, 1) for {squash!r}, got {threshold}")
    if squash == "tanh":
        return math.atanh(t)
    if squash == "softsign":
        return t / (1.0 - t)
    return 2.0 * math.atanh(t)  # scaled-sigmoid


def squash_derivative(z: Tensor, squash: str) -> Tensor:
    """``d squash / dz`` elementwise, computed in ``z``'s dtype the way autograd does.

    ``tanh``: ``1 - tanh(z)^2`` (0 exactly once ``tanh(z)`` rounds to +-1, ``|z| > 9.01``
    in float32); ``softsign``: ``1 / (1 + |z|)^2``; ``scaled-sigmoid`` (``2 sigmoid(z) -
    1``): ``2 s (1 - s)`` with ``s = sigmoid(z)`` (0 exactly once ``s`` rounds to 1,
    ``z > 16.6`` in float32); ``identity``: 1. The derivative is computed in the
    network's own precision on purpose: an exact 0 there means the output passes no
    gradient at all, whatever float64 would say.
    """
    if squash == "tanh":
        t = torch.tanh(z)
        return 1 - t * t
    if squash == "softsign":
        d = 1 + z.abs()
        return 1 / (d * d)
    if squash == "scaled-sigmoid":
        sg = torch.sigmoid(z)
        return 2 * sg * (1 - sg)
    if squash == "identity":
        return torch.ones_like(z)
    raise ValueError(f"squash must be one of {SQUASHES}, got {squash!r}")


def _squash_elements(z: Tensor, squash: str, z_bound: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(z, |z|, saturated, dead, derivative)`` as float64 tensors of ``z``'s shape;
    the derivative (and so "dead": derivative exactly 0) is computed in ``z``'s own dtype."""
    zd = z.to(torch.float64)
    az = zd.abs()
    sat = (az > z_bound).to(torch.float64)
    deriv = squash_derivative(z, squash)
    return zd, az, sat, (deriv == 0).to(torch.float64), deriv.to(torch.float64)


@torch.no_grad()
def preact_summary(z: Tensor, squash: str = "tanh", saturation_threshold: float = 0.9) -> dict[str, float]:
    """Scalar statistics of a batch of pre-activations ``z`` (any shape): ``max_abs``,
    ``mean_abs``, ``saturation_ratio`` (``|squash(z)| > saturation_threshold``),
    ``dead_output_frac`` (squashing derivative exactly 0 in ``z``'s dtype) and
    ``squash_grad_mean``; NaN for an empty tensor. The monitor's own columns use the
    same definitions (e.g. for SAC's sampled pre-tanh values in the SB3 callback)."""
    keys = ("max_abs", "mean_abs", "saturation_ratio", "dead_output_frac", "squash_grad_mean")
    if not isinstance(z, Tensor):
        raise TypeError(f"preact_summary: expected a tensor, got {type(z).__name__}")
    if not z.numel():
        return dict.fromkeys(keys, _NAN)
    _, az, sat, dead, deriv = _squash_elements(z.detach(), squash, saturation_bound(squash, saturation_threshold))
    vals = torch.stack([az.max(), az.mean(), sat.mean(), dead.mean(), deriv.mean()]).tolist()
    return dict(zip(keys, vals))


def _default_layer_of(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else key


def _bad_tree(tree: Any, what: str) -> TypeError:
    if isinstance(tree, nn.Module):
        helper = "collect_params" if "param" in what else "collect_grads"
        return TypeError(
            f"{what}: got the module {type(tree).__name__}, expected its tensors; pass {helper}(module)"
        )
    return TypeError(
        f"{what}: expected a tensor, a mapping or a sequence of tensors, got {type(tree).__name__}"
        + (f" {tree!r}" if isinstance(tree, (str, bytes, int, float)) else "")
    )


def _flatten_tensors(tree: TensorTree, what: str = "tensors") -> list[Tensor | None]:
    if tree is None or isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, Mapping):
        out: list[Tensor | None] = []
        for v in tree.values():
            out.extend(_flatten_tensors(v, what))
        return out
    if isinstance(tree, Sequence) and not isinstance(tree, (str, bytes)):
        out = []
        for v in tree:
            out.extend(_flatten_tensors(v, what))
        return out
    raise _bad_tree(tree, what)


def group_layers(
    tree: TensorTree, layer_of: Callable[[str], str] | None = None, what: str = "tensors"
) -> list[tuple[str, list[Tensor | None]]]:
    """Group tensors into ordered layers.

    * ``{"l0": {"weight": w, "bias": b}, ...}`` (a mapping whose values are mappings
      or sequences): one layer per top-level key;
    * ``{"l0.weight": w, "l0.bias": b, ...}`` (flat): grouped by ``layer_of(key)``,
      by default the prefix before the last dot (``"net.0.weight" -> "net.0"``; a key
      without a dot is its own layer);
    * a sequence: one layer per element (named ``"0"``, ``"1"``, ...);
    * a single tensor: one layer ``"0"``.

    Layers are ordered by first appearance. ``None`` entries (a parameter without a
    gradient) are kept and count as zeros. Anything else (a string, a number, an
    ``nn.Module``) raises a ``TypeError`` naming ``what``.
    """
    layer_of = layer_of or _default_layer_of
    if tree is None or isinstance(tree, Tensor):
        return [("0", [tree])]
    groups: dict[str, list[Tensor | None]] = {}
    if isinstance(tree, Mapping):
        for key, v in tree.items():
            if v is None or isinstance(v, Tensor):
                groups.setdefault(layer_of(str(key)), []).append(v)
            else:
                groups.setdefault(str(key), []).extend(_flatten_tensors(v, what))
    elif isinstance(tree, Sequence) and not isinstance(tree, (str, bytes)):
        for i, v in enumerate(tree):
            groups.setdefault(str(i), []).extend(_flatten_tensors(v, what))
    else:
        raise _bad_tree(tree, what)
    return list(groups.items())


def _tensor_list(x: Any, what: str) -> list[Tensor]:
    """A tensor, a sequence or a mapping of tensors as a list (``None`` entries dropped)."""
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, Mapping):
        items = list(x.values())
    elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        items = list(x)
    else:
        raise _bad_tree(x, what)
    for v in items:
        if v is not None and not isinstance(v, Tensor):
            raise TypeError(f"{what}: expected tensors, got an element of type {type(v).__name__}")
    return [v for v in items if v is not None]


def _as_step(step: Any) -> int:
    """``step`` as an int: an integer (Python, NumPy, an integer 0-d tensor) or an integral float,
    within int64 (steps are kept in int64 tensors: a larger one is a ``ValueError``, before any
    state changes)."""
    value: int | None = None
    if not isinstance(step, bool):
        try:
            value = operator.index(step)
        except TypeError:
            if isinstance(step, float) and step.is_integer():
                value = int(step)
    if value is None:
        raise TypeError(f"step: expected an integer (the update's x-axis value, e.g. the episode), got {step!r}")
    if not _NONE < value <= torch.iinfo(torch.int64).max:
        raise ValueError(f"step: {value} is outside the int64 range the monitor records steps in")
    return value


def _check_floating(ts: Iterable[Tensor | None], what: str) -> None:
    """A ``TypeError`` naming ``what`` for a tensor that is not floating point (bool, integer, complex)
    or not a dense tensor holding data (sparse layouts, ``meta`` device: no values to measure)."""
    for t in ts:
        if t is not None and (t.layout != torch.strided or t.is_meta):
            kind = "a meta-device tensor (no data)" if t.is_meta else f"a {t.layout} tensor"
            raise TypeError(f"{what}: expected dense tensors with data, got {kind} (shape {tuple(t.shape)}); "
                            "pass t.to_dense() or the real values")
        if t is not None and not t.is_floating_point():
            raise TypeError(f"{what}: expected floating-point tensors, got dtype {t.dtype} (shape {tuple(t.shape)})")


def _nonempty(ts: list[Tensor | None], given: Any, what: str, params: bool = False) -> list[Tensor | None]:
    """``ts`` (flattened from ``given``), or a ``ValueError`` naming ``what`` when there is nothing in it
    (for parameters: no tensor at all, ``None`` entries aside)."""
    if not ts or (params and all(t is None for t in ts)):
        kind = f"an empty {type(given).__name__}" if not ts else "only None entries"
        raise ValueError(f"{what}: no tensors (got {kind}); pass None when the network was not updated")
    return ts


def _shapes(ts: Iterable[Tensor | None]) -> list[tuple[int, ...]]:
    return sorted(tuple(t.shape) for t in ts if t is not None)


def _f(x: Tensor | float | None) -> float:
    if x is None:
        return _NAN
    return float(x)


# --------------------------------------------------------------------------- monitor


class ActorCriticMonitor:
    """Gradient / saturation / weight-freeze monitor for any PyTorch actor-critic.

    Parameters
    ----------
    n_agents:
        ``N`` for a stacked actor ensemble (actor gradients and parameters ``(N, ...)``,
        pre-activations ``(..., N, A)``, actor hidden activations ``(..., N, H)``), or
        ``None`` for a single actor (treated as ``N = 1``; pre-activations ``(..., A)``,
        hidden ``(..., H)``).
    saturation_threshold:
        an output counts as saturated when ``|squash(z)| > saturation_threshold``.
    freeze_tolerance:
        0 (default): a network is unchanged when its parameters are exactly equal to
        the previous snapshot (``torch.equal`` semantics, NaN never equal). ``> 0``: when
        every element satisfies ``p == prev`` or ``|p - prev| < freeze_tolerance``
        (the paper's wording, ``max |delta| < 1e-8``).
    grad_death_threshold:
        an actor's gradient is "dead" at an update when ``||g_i|| < threshold`` or
        ``||g_i|| == 0``.
    squash:
        the actor's output squashing: ``"tanh"``, ``"softsign"``, ``"scaled-sigmoid"``
        (``2 sigmoid(z) - 1``) or ``"identity"`` (``z`` is already the bounded output).
    layer_of:
        maps a flat gradient key to its layer name (default: prefix before the last
        dot), see :func:`group_layers`.
    unit:
        what the caller's ``step`` counts (``"episode"``, the default, as CCM-MADRL;
        ``"step"`` for Stable-Baselines3 and own loops): the name of the step column of
        :meth:`log_row` / :meth:`agent_rows`, of the step keys of :meth:`summary`
        (``stopping_<unit>``, ``per_agent_stop_<unit>``, ``per_agent_grad_death_<unit>``,
        ``critic_stop_<unit>``; spaces become ``_``) and of the event messages.
    on_event:
        called once with each event as it happens (see :attr:`events`); an exception it
        raises propagates out of :meth:`observe_update`, after the update was recorded.
    plasticity:
        also compute the plasticity instruments (:mod:`gradasym.metrics`) at logged
        updates: dormant fractions, feature ranks, parameter norms and distances from
        initialisation (the first parameters observed, kept in :meth:`state_dict`).
    dormant_taus:
        the thresholds tau of the tau-dormant fractions (Sokar et al. 2023).
    rank_delta:
        the delta of the stable rank ``srank_delta`` (Kumar et al. 2021).
    """

    def __init__(
        self,
        n_agents: int | None = None,
        saturation_threshold: float = 0.9,
        freeze_tolerance: float = 0.0,
        grad_death_threshold: float = 1e-12,
        squash: str = "tanh",
        layer_of: Callable[[str], str] | None = None,
        unit: str = "episode",
        on_event: Callable[[dict[str, Any]], None] | None = None,
            plasticity: bool = True,
        dormant_taus: Sequence[float] = DEFAULT_DORMANT_TAUS,
        rank_delta: float = 0.01,
    ) -> None:
        if layer_of is not None and not callable(layer_of):
            raise TypeError(f"layer_of must be a function from a gradient key to its layer name (or None), "
                            f"got {layer_of!r}")
        if not isinstance(unit, str) or not unit.strip():
            raise TypeError(f"unit must be a non-empty string (e.g. 'episode', 'step'), got {unit!r}")
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be a callable taking one event dict (or None), got {type(on_event).__name__}")
        self.unit = unit.strip()
        self.on_event = on_event
        self._set_plasticity_config(plasticity, dormant_taus, rank_delta)
        if n_agents is not None:
            if isinstance(n_agents, bool) or not isinstance(n_agents, numbers.Real):
                raise TypeError(f"n_agents must be a positive int or None, got {n_agents!r}")
            if not (math.isfinite(n_agents) and int(n_agents) == n_agents and n_agents >= 1):
                raise ValueError(f"n_agents must be a positive int or None, got {n_agents!r}")
        for name, v in (("saturation_threshold", saturation_threshold), ("freeze_tolerance", freeze_tolerance),
                        ("grad_death_threshold", grad_death_threshold)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{name} must be a number, got {v!r}")
        check_freeze_thresholds(float(freeze_tolerance), float(grad_death_threshold))
        self.n_agents = None if n_agents is None else int(n_agents)
        self.saturation_threshold = float(saturation_threshold)
        self.freeze_tolerance = float(freeze_tolerance)
        self.grad_death_threshold = float(grad_death_threshold)
        self.squash = squash
        self.z_bound = saturation_bound(squash, saturation_threshold)
        self.layer_of = layer_of
        self._N = 1 if n_agents is None else int(n_agents)
        self._consistent: set[tuple] = set()  # (what, grad shapes, param shapes) found consistent
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget everything observed so far."""
        N = self._N
        self.n_updates = 0
        self.last_step: int | None = None
        self._actor_stop = torch.full((N,), _NONE, dtype=torch.int64)
        self._death = torch.full((N,), _NONE, dtype=torch.int64)
        self._frozen = torch.zeros(N, dtype=torch.bool)
        self._critic_stop: int | None = None
        self._critic_frozen: bool = False
        self._diverged = torch.full((N,), _NONE, dtype=torch.int64)  # per actor: first diverged step
        self._critic_diverged: int | None = None
        self._prev_actor: list[Tensor] | None = None
        self._prev_critic: list[Tensor] | None = None
        self._max_abs = torch.tensor(_NAN, dtype=torch.float64)
        # last observed update
        self._actor_layers: list[str] = []
        self._critic_layers: list[str] = []
        self._agent_sq: Tensor | None = None  # (N,) float64, ||g_i||^2
        self._actor_layer_total: Tensor | None = None  # (L,) float64
        self._critic_layer_sq: Tensor | None = None  # (L,) float64
        self._pending: dict[str, Any] | None = None  # tensors for lazy statistics
        self._stats: dict[str, Any] | None = None  # computed statistics of the last update
        self._last_sat: float = _NAN  # saturation ratio of the last update with a preact
        self._n_dims: int | None = None  # action dims seen so far (for stable columns)
        self._n_actor_hidden: int = 0
        self._n_critic_hidden: int = 0
        self.events: list[dict[str, Any]] = []  # see _check_events
        self._reset_plasticity()

    # ------------------------------------------------------------------ observe

    @torch.no_grad()
    def observe_update(
        self,
        step: int,
        actor_grads: TensorTree = None,
        critic_grads: TensorTree = None,
        actor_params: TensorTree = None,
        critic_params: TensorTree = None,
        preact: Tensor | None = None,
        actor_hidden: Sequence[Tensor] | Mapping[str, Tensor] | None = None,
        critic_hidden: Sequence[Tensor] | Mapping[str, Tensor] | None = None,
        log: bool = True,
    ) -> None:
        """Record one training update (call it after the optimisers stepped).

        ``step`` is the update's x-axis value (the episode in gradasym). Pass
        ``actor_grads``/``actor_params`` as ``None`` when the actors were not stepped at
        this update (e.g. delayed actor updates): their freeze and gradient-death
        bookkeeping is then skipped, and the next comparison is against the last
        snapshot taken. The same holds for the critic. Never call this for a skipped
        update: an unchanged network would count as frozen.

        ``log=False`` does only the bookkeeping that must see every update (per-actor
        gradient norms, gradient death, divergence, freeze detection, running max
        ``|z|``); the remaining statistics of this update are computed from the given
        tensors only if :meth:`log_row` / :meth:`agent_rows` are called before the next
        update, so do not modify those tensors in place in between.

        Every argument is validated before anything is recorded (``TypeError`` for a
        wrong kind of value, ``ValueError`` for a wrong shape or agent dimension, or
        gradients and parameters of different structures), so a bad call changes nothing.
        """
        step = _as_step(step)
        # ---- validate everything first, so that a bad call changes nothing
        if actor_hidden is not None:
            actor_hidden = [h.detach() for h in _tensor_list(actor_hidden, "actor_hidden")]
            _check_floating(actor_hidden, "actor_hidden")
            for h in actor_hidden:
                self._check_agent_shape(h, "actor hidden activation", "H")
        if critic_hidden is not None:
            critic_hidden = [h.detach() for h in _tensor_list(critic_hidden, "critic_hidden")]
            _check_floating(critic_hidden, "critic_hidden")
        if preact is not None:
            if not isinstance(preact, Tensor):
                raise TypeError(f"preact: expected a tensor, got {type(preact).__name__}")
            preact = preact.detach()
            _check_floating([preact], "preact")
            self._check_agent_shape(preact, "preact", "A")
        actor_layers = group_layers(actor_grads, self.layer_of, "actor_grads") if actor_grads is not None else None
        critic_layers = group_layers(critic_grads, self.layer_of, "critic_grads") if critic_grads is not None else None
        if actor_layers is not None:
            _check_floating(_nonempty([t for _, ts in actor_layers for t in ts], actor_grads, "actor_grads"),
                            "actor_grads")
        if critic_layers is not None:
            _check_floating(_nonempty([t for _, ts in critic_layers for t in ts], critic_grads, "critic_grads"),
                            "critic_grads")
        a_params = _flatten_tensors(actor_params, "actor_params") if actor_params is not None else None
        c_params = _flatten_tensors(critic_params, "critic_params") if critic_params is not None else None
        if a_params is not None:
            _check_floating(_nonempty(a_params, actor_params, "actor_params", params=True), "actor_params")
        if c_params is not None:
            _check_floating(_nonempty(c_params, critic_params, "critic_params", params=True), "critic_params")
        if a_params is not None:
            self._check_actor_params(a_params)
        self._check_same_structure(actor_layers, a_params, "actor")
        self._check_same_structure(critic_layers, c_params, "critic")
        self._check_snapshot(self._prev_actor, a_params, "actor")
        self._check_snapshot(self._prev_critic, c_params, "critic")
        layer_sq = self._agent_layer_sq(actor_layers) if actor_layers is not None else None  # (L, N)

        self.n_updates += 1
        self.last_step = step
        self._keep_init(actor_params if a_params is not None else None,
                        critic_params if c_params is not None else None)

        # ---- actor gradients: per-agent and per-layer norms (float64, no under/overflow)
        actor_bad = torch.zeros(self._N, dtype=torch.bool)  # diverged at this update
        if actor_layers is not None and layer_sq is not None:
            self._actor_layers = [name for name, _ in actor_layers]
            agent_sq = layer_sq.sum(0)
            self._agent_sq = agent_sq
            self._actor_layer_total = layer_sq.mean(1).sqrt()
            actor_bad = self._grad_diverged(agent_sq, actor_layers)
        else:
            self._agent_sq = None
            self._actor_layer_total = None

        # ---- critic gradients
        critic_bad = False
        if critic_layers is not None:
            self._critic_layers = [name for name, _ in critic_layers]
            self._critic_layer_sq = torch.stack([self._sq(ts) for _, ts in critic_layers])
            critic_bad = bool(self._grad_diverged(self._critic_layer_sq.sum().reshape(1), critic_layers, agents=False))
        else:
            self._critic_layer_sq = None

        # ---- divergence (non-finite gradients or parameters), then freeze detection
        if a_params is not None:
            actor_bad |= self._params_diverged(a_params, agents=True)
        if c_params is not None:
            critic_bad |= bool(self._params_diverged(c_params, agents=False))
        div = self._diverged
        self._diverged = torch.where(actor_bad & (div == _NONE), step, div)
        if critic_bad and self._critic_diverged is None:
            self._critic_diverged = step
        actor_gone = self._diverged != _NONE  # never stopped or dead once diverged
        critic_gone = self._critic_diverged is not None

        if layer_sq is not None and self._agent_sq is not None:
            norms = self._agent_sq.sqrt()
            dead = ((norms < self.grad_death_threshold) | (norms == 0)) & ~actor_gone
            death = self._death
            self._death = torch.where(dead, torch.where(death == _NONE, step, death), _NONE)
        if a_params is not None:
            self._observe_actor_params(step, a_params, actor_gone)
        if c_params is not None:
            self._observe_critic_params(step, c_params, critic_gone)

        # ---- running max |z| over every pre-activation (one reduction; NaNs ignored)
        if preact is not None and preact.numel():
            az = preact.abs()
            m = az.max().to(device="cpu", dtype=torch.float64)
            if torch.isnan(m):
                finite = az[~torch.isnan(az)]
                m = finite.max().to(device="cpu", dtype=torch.float64) if finite.numel() else m
            if not torch.isnan(m):
                self._max_abs = m if torch.isnan(self._max_abs) else torch.maximum(self._max_abs, m)

        self._pending = {
            "preact": preact,
            "actor_hidden": actor_hidden,
            "critic_hidden": critic_hidden,
            "actor_params": actor_params,  # plasticity: parameter norms / distances (references)
            "critic_params": critic_params,
        }
        self._stats = None
        if log:
            self._compute_stats()
        self._check_events(step)

    @torch.no_grad()
    def observe_params(self, actor_params: TensorTree = None, critic_params: TensorTree = None) -> None:
        """Take the reference parameter snapshot without counting an update.

        Call it once before training (initial parameters) so that the very first
        :meth:`observe_update` is already compared against something; without it,
        the first update only takes the snapshot. Calling it later re-baselines the
        snapshot (no comparison, no stop episode).
        """
        a = _flatten_tensors(actor_params, "actor_params") if actor_params is not None else None
        c = _flatten_tensors(critic_params, "critic_params") if critic_params is not None else None
        if a is not None:
            _check_floating(_nonempty(a, actor_params, "actor_params", params=True), "actor_params")
        if c is not None:
            _check_floating(_nonempty(c, critic_params, "critic_params", params=True), "critic_params")
        if a is not None:
            self._check_actor_params(a)
            self._prev_actor = [p.detach().clone() for p in a if p is not None]
        if c is not None:
            self._prev_critic = [p.detach().clone() for p in c if p is not None]
        self._keep_init(actor_params if a is not None else None, critic_params if c is not None else None)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _sq(tensors: Iterable[Tensor | None]) -> Tensor:
        """Sum of squares of all elements (float64, CPU scalar)."""
        parts = []
        for t in tensors:
            if t is not None and t.numel():
                n = torch.linalg.vector_norm(t.detach(), dtype=torch.float64)
                parts.append(n * n)
        if not parts:
            return torch.zeros((), dtype=torch.float64)
        return torch.stack(parts).sum().cpu()

    def _agent_layer_sq(self, layers: list[tuple[str, list[Tensor | None]]]) -> Tensor:
        """(L, N) float64 CPU tensor of per-layer, per-agent squared gradient norms."""
        N = self._N
        rows: list[Tensor | None] = []
        device = None
        for name, ts in layers:
            acc = None
            for t in ts:
                if t is None:
                    continue
                t = t.detach()
                if self.n_agents is None:
                    t = t.reshape(1, -1)
                else:
                    if t.dim() == 0 or t.shape[0] != N:
                        raise ValueError(
                            f"actor tensor {name!r} has shape {tuple(t.shape)}; expected the agent "
                            f"dimension {N} first"
                        )
                    t = t.reshape(N, -1)
                if t.shape[1] == 0:
                    continue
                n = torch.linalg.vector_norm(t, dim=1, dtype=torch.float64)
                acc = n * n if acc is None else acc + n * n
                device = t.device
            rows.append(acc)
        if not rows:
            return torch.zeros((0, N), dtype=torch.float64)
        out = torch.stack(
            [r if r is not None else torch.zeros(N, dtype=torch.float64, device=device) for r in rows]
        )
        return out.cpu()

    def _changed(self, p: Tensor, q: Tensor) -> Tensor:
        """Elementwise 'changed' mask: p != q, unless within tolerance."""
        ne = p != q
        if self.freeze_tolerance > 0:
            ne &= ~((p - q).abs() < self.freeze_tolerance)
        return ne

    def _check_actor_params(self, params: list[Tensor | None]) -> None:
        if self.n_agents is None:
            return
        for p in params:
            if p is not None and (p.dim() == 0 or p.shape[0] != self._N):
                raise ValueError(
                    f"actor parameter of shape {tuple(p.shape)}; expected the agent dimension {self._N} first"
                )

    def _check_same_structure(self, layers: list[tuple[str, list[Tensor | None]]] | None,
                              params: list[Tensor | None] | None, what: str) -> None:
        """Gradients and parameters given together must describe the same tensors
        (same count; same shapes, compared as sorted lists, where no gradient is ``None``).
        A pair of structures found consistent once is remembered (the per-update cost is
        then one tuple of shapes each)."""
        if layers is None or params is None:
            return
        grads = [t for _, ts in layers for t in ts]
        key = (what, tuple(None if t is None else tuple(t.shape) for t in grads),
               tuple(tuple(p.shape) for p in params if p is not None))  # fmt: skip
        if key in self._consistent:
            return
        n_params = sum(p is not None for p in params)
        if len(grads) != n_params:
            raise ValueError(
                f"{what} gradients ({len(grads)} tensors) and parameters ({n_params} tensors) "
                "have different structures"
            )
        if None not in grads and _shapes(grads) != _shapes(params):
            raise ValueError(
                f"{what} gradients and parameters have different structures: gradient shapes "
                f"{_shapes(grads)}, parameter shapes {_shapes(params)}"
            )
        if len(self._consistent) < 16:
            self._consistent.add(key)

    @staticmethod
    def _check_snapshot(prev: list[Tensor] | None, params: list[Tensor | None] | None, what: str) -> None:
        if prev is None or params is None:
            return
        ps = [p for p in params if p is not None]
        if len(prev) != len(ps) or any(a.shape != b.shape for a, b in zip(prev, ps)):
            raise ValueError(f"{what} parameters changed structure between updates")

    def _grad_diverged(self, sq: Tensor, layers: list[tuple[str, list[Tensor | None]]],
                       agents: bool = True) -> Tensor:
        """Per agent (or ``(1,)`` for the critic): the gradient is non-finite, or an
        element's square overflows its own dtype (``|g| > 1.8e19`` in float32: Adam's
        second moment then becomes inf and the weights stop moving or turn NaN)."""
        bad = ~torch.isfinite(sq)
        tensors = [t for _, ts in layers for t in ts if t is not None and t.is_floating_point() and t.numel()]
        if not tensors:
            return bad
        fmax = min(torch.finfo(t.dtype).max for t in tensors)
        if bool((sq > fmax).any()):  # only then can an element's square overflow (rare)
            for t in tensors:
                g = t.detach().reshape(self._N if agents and self.n_agents is not None else 1, -1)
                bad |= (~torch.isfinite(g * g)).any(1).cpu()
        return bad

    def _params_diverged(self, params: list[Tensor | None], agents: bool) -> Tensor:
        """Per agent (or ``(1,)``): some parameter is NaN or infinite.

        One native-dtype sum per tensor (over the non-agent dims): a sum is finite only
        if every element is, so a finite sum settles it; a non-finite one (an element is
        NaN/inf, or a finite sum overflowed) is re-checked exactly with ``isfinite``."""
        per_agent = agents and self.n_agents is not None
        ps = [p.detach() for p in params if p is not None and p.numel() and p.is_floating_point()]
        n = self._N if per_agent else 1
        if not ps:
            return torch.zeros(n, dtype=torch.bool)
        if per_agent:
            sums = [p if p.dim() == 1 else p.sum(tuple(range(1, p.dim()))) for p in ps]
        else:
            sums = [p.sum().reshape(1) for p in ps]
        bad = ~torch.isfinite(torch.stack([t.to(torch.float64) for t in sums]).sum(0))
        if bool(bad.any()):  # rare: decide exactly
            bad = torch.zeros(n, dtype=torch.bool, device=bad.device)
            for p in ps:
                fin = torch.isfinite(p)
                bad |= ~fin.reshape(n, -1).all(1) if per_agent else ~fin.all().reshape(1)
        return bad.cpu()

    @staticmethod
    def _against_snapshot(prev: list[Tensor] | None, params: list[Tensor | None]) -> tuple[list[Tensor], list[Tensor], bool]:
        """``(params, snapshot, comparable)``: the detached parameters and the previous
        snapshot on their device; ``comparable`` is False for the first observation, where
        the returned snapshot is a fresh copy to store (structure checked before)."""
        ps = [p.detach() for p in params if p is not None]
        if prev and ps and prev[0].device != ps[0].device:  # e.g. after load_state_dict
            prev = [t.to(ps[0].device) for t in prev]
        if prev is None:
            return ps, [p.clone() for p in ps], False
        return ps, prev, True

    def _observe_actor_params(self, step: int, params: list[Tensor | None], diverged: Tensor) -> None:
        N = self._N
        ps, prev, comparable = self._against_snapshot(self._prev_actor, params)
        self._prev_actor = prev
        if not comparable:
            return
        if self.n_agents is None and self.freeze_tolerance == 0:
            # one actor, exact test: torch.equal stops at the first difference, so a moving
            # network costs only the snapshot copy (same semantics as the mask: NaN != NaN)
            same = True
            for p, q in zip(ps, prev):
                if same and torch.equal(p, q):
                    continue  # bitwise equal: nothing to copy
                same = False
                q.copy_(p)
            changed = torch.tensor([not same])
        else:
            changed = torch.zeros(N, dtype=torch.bool, device=ps[0].device if ps else "cpu")
            for p, q in zip(ps, prev):
                if p.numel() == 0:
                    continue
                c = self._changed(p, q)
                changed |= c.reshape(N, -1).any(1) if self.n_agents is not None else c.any().reshape(1)
                q.copy_(p)
        unchanged = (~changed).cpu() & ~diverged  # a diverged actor is never "frozen"
        stop = self._actor_stop
        self._actor_stop = torch.where(unchanged & (stop == _NONE), step, stop)
        self._frozen = unchanged

    def _observe_critic_params(self, step: int, params: list[Tensor | None], diverged: bool) -> None:
        ps, prev, comparable = self._against_snapshot(self._prev_critic, params)
        self._prev_critic = prev
        if not comparable:
            return
        unchanged = True
        exact = self.freeze_tolerance == 0
        for p, q in zip(ps, prev):
            if unchanged:
                same = torch.equal(p, q) if exact else not bool(self._changed(p, q).any())
                unchanged = same
                if exact and same:
                    continue  # bitwise equal: nothing to copy
            q.copy_(p)  # the snapshot is always the previous update's values
        unchanged = unchanged and not diverged  # a diverged critic is never "stopped"
        self._critic_frozen = unchanged
        if unchanged and self._critic_stop is None:
            self._critic_stop = step

    def _check_agent_shape(self, t: Tensor, what: str, last: str) -> None:
        if t.dim() == 0:
            raise ValueError(f"{what} must have at least one dimension")
        if self.n_agents is not None and (t.dim() < 2 or t.shape[-2] != self._N):
            raise ValueError(
                f"{what} has shape {tuple(t.shape)}; expected (..., {self._N}, {last}) (agents on dim -2)"
            )

    def _compute_stats(self) -> dict[str, Any]:
        if self._stats is not None:
            return self._stats
        s: dict[str, Any] = {}
        pend = self._pending or {}
        N = self._N
        z = pend.get("preact")
        if z is not None:
            A = z.shape[-1]
            if self.n_agents is not None:
                z3 = z.reshape(-1, N, A)
            else:
                z3 = z.reshape(-1, 1, A)
            if z3.numel():
                # the squashing derivative in z's own dtype (float32 for a float32 network):
                # exactly 0 there means the output passes no gradient at all
                zd, az, sat, dead, deriv = _squash_elements(z3, self.squash, self.z_bound)
                vals = torch.stack(
                    [
                        zd.mean(),
                        zd.std(correction=0),
                        zd.min(),
                        zd.max(),
                        az.max(),
                        sat.mean(),
                        dead.mean(),
                        deriv.mean(),
                    ]
                ).tolist()
                s.update(zip(_PREACT_KEYS, vals))
                s["saturation_dim"] = sat.mean((0, 1)).tolist()
                s["dead_output_dim"] = dead.mean((0, 1)).tolist()
                s["agent_saturation"] = sat.mean((0, 2)).tolist()
                s["agent_max_abs"] = az.amax((0, 2)).tolist()
                s["agent_dead_output"] = dead.mean((0, 2)).tolist()
                s["agent_squash_grad"] = deriv.mean((0, 2)).tolist()
                self._n_dims = max(self._n_dims or 0, A)
                self._last_sat = s["saturation_ratio"]
        ah = pend.get("actor_hidden")
        if ah is not None:
            s["actor_hidden"] = [self._hidden_stats(h, ensemble=self.n_agents is not None) for h in ah]
            self._n_actor_hidden = max(self._n_actor_hidden, len(ah))
        ch = pend.get("critic_hidden")
        if ch is not None:
            s["critic_hidden"] = [self._hidden_stats(h, ensemble=False) for h in ch]
            self._n_critic_hidden = max(self._n_critic_hidden, len(ch))
        if self.plasticity:
            s["plasticity"] = self._plasticity_stats(pend)
        self._stats = s
        self._pending = None  # statistics computed: drop the references
        return s

    def _hidden_stats(self, h: Tensor, ensemble: bool) -> tuple[float, float]:
        """(mean activation, dead fraction): a unit is dead if <= 0 for every sample."""
        if h.numel() == 0:
            return (_NAN, _NAN)
        if ensemble:
            h2 = h.reshape(-1, self._N, h.shape[-1])
        else:
            h2 = h.reshape(-1, h.shape[-1]) if h.dim() >= 1 else h.reshape(1, 1)
        # a unit is dead when its max over the samples is <= 0 (same as "all <= 0"; NaN is not dead).
        # (N, H) or (H,); the mean over agents of per-agent fractions is the mean over (N, H).
        dead = h2.amax(0) <= 0
        mean, frac = torch.stack([h2.mean(dtype=torch.float64), dead.to(torch.float64).mean()]).tolist()
        return (mean, frac)

    # ------------------------------------------------------------------ events

    def _check_events(self, step: int) -> None:
        """Append (and pass to ``on_event``) each event that has just happened; each kind once."""
        seen = {e["event"] for e in self.events}
        if len(seen) == len(EVENTS):
            return
        n = self._N
        agents = "the actor" if self.n_agents is None else None
        new: list[tuple[str, str]] = []

        def first(kind: str, mask: Tensor, what: str) -> None:
            if kind in seen or not bool(mask.any()):
                return
            who = agents or f"actor {int(mask.nonzero()[0, 0])} of {n} (first of {int(mask.sum())})"
            new.append((kind, f"{who}: {what}" if agents is None else f"{who}'s {what}"))

        first("grad_death", self._death != _NONE, "gradient died (norm below grad_death_threshold)")
        first("actor_frozen", self._actor_stop != _NONE, "weights froze (unchanged by an update)")
        if "all_frozen" not in seen and self.all_stopped_episode is not None:
            new.append(("all_frozen", f"all {n} actor{'s' if n > 1 else ''} frozen (every actor has a stop {self.unit})"))
        first("actor_diverged", self._diverged != _NONE, "gradient or weights diverged (not finite)")
        if "critic_diverged" not in seen and self._critic_diverged is not None:
            new.append(("critic_diverged", "the critic's gradient or weights diverged (not finite)"))
        if "critic_frozen" not in seen and self._critic_stop is not None:
            new.append(("critic_frozen", "the critic's weights froze (unchanged by an update)"))
        for kind, text in new:
            event = {"event": kind, "step": int(step), "unit": self.unit, "text": text,
                     "message": f"{self.unit} {step}: {text}"}
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(dict(event))

    def _key(self, name: str) -> str:
        """``name`` with the caller's unit: ``stopping_episode`` -> ``stopping_step`` for ``unit="step"``."""
        return name.replace("episode", self.unit.replace(" ", "_"))

    # ------------------------------------------------------------------ rows

    def _norms(self) -> tuple[float, float, float, list[float], list[float]]:
        a_tot = _f(self._agent_sq.mean().sqrt()) if self._agent_sq is not None and self._agent_sq.numel() else _NAN
        c_tot = _f(self._critic_layer_sq.sum().sqrt()) if self._critic_layer_sq is not None else _NAN
        if math.isnan(a_tot) or math.isnan(c_tot):
            rho = _NAN
        elif c_tot == 0:
            rho = _NAN if a_tot == 0 else math.inf
        else:
            rho = a_tot / c_tot
        a_l = self._actor_layer_total.tolist() if self._actor_layer_total is not None else [_NAN] * len(self._actor_layers)
        c_l = (
            self._critic_layer_sq.sqrt().tolist()
            if self._critic_layer_sq is not None
            else [_NAN] * len(self._critic_layers)
        )
        return a_tot, c_tot, rho, a_l, c_l

    def _episode(self, step: int | None) -> int:
        if step is None:
            if self.last_step is None:
                raise RuntimeError("no update observed yet")
            return int(self.last_step)
        return int(step)

    def log_row(self, step: int | None = None) -> dict[str, float | int]:
        """One ``tracking.parquet`` row from the most recent observed update.

        ``episode`` is ``step`` (default: the step of the last update). Columns absent
        from the last update (no preact, no hidden, no critic) are NaN; per-layer and
        per-dimension columns keep the count seen so far so that rows stay aligned.
        """
        s = self._compute_stats()
        a_tot, c_tot, rho, a_l, c_l = self._norms()
        row: dict[str, float | int] = {
            self._key("episode"): self._episode(step),
            "actor_grad_norm": a_tot,
            "critic_grad_norm": c_tot,
            "rho": rho,
        }
        for j, v in enumerate(a_l):
            row[f"actor_grad_norm_l{j}"] = float(v)
        for j, v in enumerate(c_l):
            row[f"critic_grad_norm_l{j}"] = float(v)
        for k in _PREACT_KEYS:
            row[k] = float(s.get(k, _NAN))
        for name, key in (("saturation_dim", "saturation_dim"), ("dead_output_dim", "dead_output_dim")):
            dims = s.get(key, [])
            for d in range(max(self._n_dims or 0, len(dims))):
                row[f"{name}{d}"] = float(dims[d]) if d < len(dims) else _NAN
        for prefix, key, n in (
            ("actor", "actor_hidden", self._n_actor_hidden),
            ("critic", "critic_hidden", self._n_critic_hidden),
        ):
            hs = s.get(key, [])
            for j in range(max(n, len(hs))):
                mean, dead = hs[j] if j < len(hs) else (_NAN, _NAN)
                row[f"{prefix}_dead_relu_l{j}"] = float(dead)
                row[f"{prefix}_hidden_mean_l{j}"] = float(mean)
        if self.plasticity:
            row.update(self._plasticity_row(s.get("plasticity", {})))
        row["actors_stopped"] = self.n_stopped
        row["actors_diverged"] = self.n_diverged
        row["critic_diverged"] = int(self._critic_diverged is not None)
        return row

    def agent_rows(self, step: int | None = None) -> list[dict[str, float | int]]:
        """``tracking_agents.parquet`` rows (one per actor) from the last update."""
        s = self._compute_stats()
        N = self._N
        ep = self._episode(step)
        g = self._agent_sq.sqrt().tolist() if self._agent_sq is not None else [_NAN] * N
        sat = s.get("agent_saturation", [_NAN] * N)
        mx = s.get("agent_max_abs", [_NAN] * N)
        dead = s.get("agent_dead_output", [_NAN] * N)
        dg = s.get("agent_squash_grad", [_NAN] * N)
        div = (self._diverged != _NONE).tolist()
        rows = [
            {
                self._key("episode"): ep, "agent": i, "grad_norm": float(g[i]), "saturation_ratio": float(sat[i]),
                "preact_max_abs": float(mx[i]), "dead_output_frac": float(dead[i]),
                "squash_grad_mean": float(dg[i]), "diverged": int(div[i]),
            }  # fmt: skip
            for i in range(N)
        ]
        if self.plasticity:
            for row, extra in zip(rows, self._plasticity_agent_columns(s.get("plasticity", {}))):
                row.update(extra)
        return rows

    # ------------------------------------------------------------------ summaries

    @staticmethod
    def _episodes(t: Tensor) -> list[int | None]:
        return [None if v == _NONE else int(v) for v in t.tolist()]

    @property
    def actor_stop_episode(self) -> list[int | None]:
        """Per actor: first update step after which its parameters were unchanged."""
        return self._episodes(self._actor_stop)

    @property
    def grad_death_episode(self) -> list[int | None]:
        """Per actor: first step of the current run of dead-gradient updates (None if alive)."""
        return self._episodes(self._death)

    @property
    def all_stopped_episode(self) -> int | None:
        """Max over actors of their stop episodes, once every actor has one."""
        if bool((self._actor_stop == _NONE).any()):
            return None
        return int(self._actor_stop.max())

    @property
    def critic_stop_episode(self) -> int | None:
        return self._critic_stop

    @property
    def actor_diverged_episode(self) -> list[int | None]:
        """Per actor: first step with a non-finite gradient or parameter, or a gradient
        element whose square overflows its dtype (None if it never diverged)."""
        return self._episodes(self._diverged)

    @property
    def critic_diverged_episode(self) -> int | None:
        """First step at which the critic diverged (same test as the actors')."""
        return self._critic_diverged

    @property
    def n_diverged(self) -> int:
        """Number of actors that have diverged."""
        return int((self._diverged != _NONE).sum())

    @property
    def n_stopped(self) -> int:
        """Number of actors with a stop episode."""
        return int((self._actor_stop != _NONE).sum())

    @property
    def frozen_now(self) -> list[bool]:
        """Per actor: parameters unchanged at the last actor update (False before any comparison)."""
        return [bool(v) for v in self._frozen.tolist()]

    @property
    def n_frozen_now(self) -> int:
        return int(self._frozen.sum())

    @property
    def all_frozen_now(self) -> bool:
        return bool(self._frozen.all())

    @property
    def critic_frozen_now(self) -> bool:
        return bool(self._critic_frozen)

    @property
    def max_abs_preactivation(self) -> float:
        """Running max of ``|z|`` over every pre-activation observed (NaN if none)."""
        return float(self._max_abs)

    @property
    def last_saturation_ratio(self) -> float:
        """Saturation ratio of the most recent update that had pre-activations (NaN if none)."""
        if self._pending is not None and self._pending.get("preact") is not None:
            self._compute_stats()
        return float(self._last_sat)

    @property
    def last_rho(self) -> float:
        return self._norms()[2]

    def divergence_summary(self) -> dict[str, Any]:
        """The divergence keys of ``summary.json``: ``diverged`` (bool: an actor or the
        critic diverged), ``diverged_step`` (the first such step), ``actor_diverged_step``
        (first over the actors), ``critic_diverged_step``, ``per_agent_diverged_step``."""
        a = [v for v in self.actor_diverged_episode if v is not None]
        actor = min(a) if a else None
        c = self._critic_diverged
        first = [v for v in (actor, c) if v is not None]
        return {
            "diverged": bool(first),
            "diverged_step": min(first) if first else None,
            "actor_diverged_step": actor,
            "critic_diverged_step": c,
            "per_agent_diverged_step": self.actor_diverged_episode,
        }

    def summary(self) -> dict[str, Any]:
        """The monitor's part of ``summary.json`` (plain JSON-able values; NaN where
        nothing was observed)."""
        return {
            self._key("stopping_episode"): self.all_stopped_episode,
            self._key("per_agent_stop_episode"): self.actor_stop_episode,
            self._key("per_agent_grad_death_episode"): self.grad_death_episode,
            "all_frozen_at_end": self.all_frozen_now,
            "critic_stopped": self._critic_stop is not None,
            self._key("critic_stop_episode"): self._critic_stop,
            "max_abs_preactivation": self.max_abs_preactivation,
            "final_saturation_ratio": self.last_saturation_ratio,
            "final_rho": self.last_rho,
            **self.divergence_summary(),
        }

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values and CPU tensors; ``torch.save``-able."""
        self._compute_stats()  # resolve lazy statistics so a resumed monitor reports the same row
        cpu = lambda t: None if t is None else t.detach().cpu().clone()  # noqa: E731
        return {
            "config": {
                "n_agents": self.n_agents,
                "saturation_threshold": self.saturation_threshold,
                "freeze_tolerance": self.freeze_tolerance,
                "grad_death_threshold": self.grad_death_threshold,
                "squash": self.squash,
            },
            "n_updates": self.n_updates,
            "last_step": self.last_step,
            "actor_stop": cpu(self._actor_stop),
            "death": cpu(self._death),
            "frozen": cpu(self._frozen),
            "critic_stop": self._critic_stop,
            "critic_frozen": self._critic_frozen,
            "diverged": cpu(self._diverged),
            "critic_diverged": self._critic_diverged,
            "prev_actor": None if self._prev_actor is None else [cpu(t) for t in self._prev_actor],
            "prev_critic": None if self._prev_critic is None else [cpu(t) for t in self._prev_critic],
            "max_abs": cpu(self._max_abs),
            "actor_layers": list(self._actor_layers),
            "critic_layers": list(self._critic_layers),
            "agent_sq": cpu(self._agent_sq),
            "actor_layer_total": cpu(self._actor_layer_total),
            "critic_layer_sq": cpu(self._critic_layer_sq),
            "stats": self._stats,
            "last_sat": self._last_sat,
            "n_dims": self._n_dims,
            "n_actor_hidden": self._n_actor_hidden,
            "n_critic_hidden": self._n_critic_hidden,
            "events": [dict(e) for e in self.events],
            **self._plasticity_state(),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (parameter snapshots move to the parameters'
        device at the next update). Anything else (a dict without the monitor's keys, e.g. a
        whole checkpoint) is refused before anything changes."""
        if not isinstance(d, Mapping):
            raise TypeError(f"load_state_dict: expected a monitor state_dict() (a mapping), got {type(d).__name__}")
        missing = [k for k in _STATE_KEYS if k not in d]
        cfg = d.get("config")
        if not missing and isinstance(cfg, Mapping):
            missing = [f"config.{k}" for k in _CONFIG_KEYS if k not in cfg]
        elif not missing:
            missing = ["config (a mapping)"]
        if missing:
            more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            raise ValueError(
                f"load_state_dict: not an ActorCriticMonitor state (missing {', '.join(missing[:4])}{more}); "
                "pass what ActorCriticMonitor.state_dict() returned"
            )
        if cfg["n_agents"] != self.n_agents:
            raise ValueError(f"state has n_agents={cfg['n_agents']}, monitor has {self.n_agents}")
        self._check_state_fields(d)
        z_bound = saturation_bound(cfg["squash"], float(cfg["saturation_threshold"]))
        self.saturation_threshold = float(cfg["saturation_threshold"])
        self.freeze_tolerance = float(cfg["freeze_tolerance"])
        self.grad_death_threshold = float(cfg["grad_death_threshold"])
        self.squash = cfg["squash"]
        self.z_bound = z_bound
        cl = lambda t: None if t is None else t.detach().clone()  # noqa: E731
        self.n_updates = int(d["n_updates"])
        self.last_step = d["last_step"]
        self._actor_stop = cl(d["actor_stop"])
        self._death = cl(d["death"])
        self._frozen = cl(d["frozen"])
        self._critic_stop = d["critic_stop"]
        self._critic_frozen = bool(d["critic_frozen"])
        # states saved before divergence detection existed: nothing diverged
        div = d.get("diverged")
        self._diverged = torch.full((self._N,), _NONE, dtype=torch.int64) if div is None else cl(div)
        self._critic_diverged = d.get("critic_diverged")
        self._prev_actor = None if d["prev_actor"] is None else [t.detach().clone() for t in d["prev_actor"]]
        self._prev_critic = None if d["prev_critic"] is None else [t.detach().clone() for t in d["prev_critic"]]
        self._max_abs = cl(d["max_abs"])
        self._actor_layers = list(d["actor_layers"])
        self._critic_layers = list(d["critic_layers"])
        self._agent_sq = cl(d["agent_sq"])
        self._actor_layer_total = cl(d["actor_layer_total"])
        self._critic_layer_sq = cl(d["critic_layer_sq"])
        self._stats = None if d["stats"] is None else dict(d["stats"])
        self._pending = None
        self._last_sat = float(d["last_sat"])
        self._n_dims = d["n_dims"]
        self._n_actor_hidden = int(d["n_actor_hidden"])
        self._n_critic_hidden = int(d["n_critic_hidden"])
        # states saved before events existed: the events their steps imply (no callback)
        self.events = [dict(e) for e in d["events"]] if d.get("events") is not None else self._implied_events()
        self._load_plasticity_state(d)

    def _implied_events(self) -> list[dict[str, Any]]:
        """The events of the restored state, at the steps it records (for states without ``events``)."""
        def first(t: Tensor) -> int | None:
            v = [x for x in t.tolist() if x != _NONE]
            return min(v) if v else None

        steps = {"grad_death": first(self._death), "actor_frozen": first(self._actor_stop),
                 "all_frozen": self.all_stopped_episode, "actor_diverged": first(self._diverged),
                 "critic_diverged": self._critic_diverged, "critic_frozen": self._critic_stop}
        found = sorted((int(step), EVENTS.index(kind), kind) for kind, step in steps.items() if step is not None)
        return [{"event": kind, "step": step, "unit": self.unit, "text": kind.replace("_", " "),
                 "message": f"{self.unit} {step}: {kind.replace('_', ' ')}"} for step, _, kind in found]

    def _check_state_fields(self, d: Mapping[str, Any]) -> None:
        """Each field of a :meth:`state_dict` of the right kind and shape, else a ``ValueError``
        naming the key (before :meth:`load_state_dict` changes anything)."""
        def bad(key: str, want: str, got: Any) -> ValueError:
            shape = f" of shape {tuple(got.shape)}" if isinstance(got, Tensor) else ""
            return ValueError(f"load_state_dict: field '{key}' must be {want}, got {type(got).__name__}{shape}")

        def number(v: Any) -> bool:
            return isinstance(v, numbers.Real) and not isinstance(v, bool)

        cfg = d["config"]
        for key in ("saturation_threshold", "freeze_tolerance", "grad_death_threshold"):
            if not number(cfg[key]):
                raise bad(f"config.{key}", "a number", cfg[key])
        for key in ("actor_stop", "death", "diverged", "frozen"):
            v = d.get(key)
            if key == "diverged" and v is None:
                continue  # saved before divergence detection existed
            dtype = torch.bool if key == "frozen" else torch.int64
            if not isinstance(v, Tensor) or v.dtype != dtype or tuple(v.shape) != (self._N,):
                raise bad(key, f"a {dtype} tensor of shape ({self._N},)", v)
        if not isinstance(d["max_abs"], Tensor) or d["max_abs"].numel() != 1:
            raise bad("max_abs", "a one-element tensor", d["max_abs"])
        for key in ("agent_sq", "actor_layer_total", "critic_layer_sq"):
            if d[key] is not None and not isinstance(d[key], Tensor):
                raise bad(key, "a tensor or None", d[key])
        for key in ("prev_actor", "prev_critic"):
            v = d[key]
            if v is not None and not (isinstance(v, (list, tuple)) and all(isinstance(t, Tensor) for t in v)):
                raise bad(key, "a list of tensors or None", v)
        for key in ("actor_layers", "critic_layers"):
            if not (isinstance(d[key], (list, tuple)) and all(isinstance(n, str) for n in d[key])):
                raise bad(key, "a list of layer names", d[key])
        for key in ("n_updates", "n_actor_hidden", "n_critic_hidden"):
            if not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] < 0:
                raise bad(key, "an integer >= 0", d[key])
        for key in ("last_step", "critic_stop", "critic_diverged", "n_dims"):
            v = d.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise bad(key, "an integer or None", v)
        if not number(d["last_sat"]):
            raise bad("last_sat", "a number", d["last_sat"])
        if d["stats"] is not None and not isinstance(d["stats"], Mapping):
            raise bad("stats", "a mapping or None", d["stats"])


    # ------------------------------------------------------------------ plasticity
    # (dormant units, feature ranks, parameter norms and distance from init: gradasym.metrics)

    def _set_plasticity_config(self, plasticity: bool, dormant_taus: Sequence[float], rank_delta: float) -> None:
        if not isinstance(plasticity, bool):
            raise TypeError(f"plasticity must be True or False, got {plasticity!r}")
        if isinstance(dormant_taus, (str, bytes)) or not isinstance(dormant_taus, Iterable):
            raise TypeError(f"dormant_taus must be a sequence of numbers, got {dormant_taus!r}")
        taus = list(dormant_taus)
        if not taus or any(isinstance(t, bool) or not isinstance(t, numbers.Real) or not (math.isfinite(t) and t >= 0)
                           for t in taus):
            raise ValueError(f"dormant_taus must be non-empty finite numbers >= 0, got {taus!r}")
        if isinstance(rank_delta, bool) or not isinstance(rank_delta, numbers.Real) or not 0 <= rank_delta < 1:
            raise ValueError(f"rank_delta must be a number in [0, 1), got {rank_delta!r}")
        self.plasticity = plasticity
        self.dormant_taus = tuple(float(t) for t in taus)
        self.rank_delta = float(rank_delta)

    def _reset_plasticity(self) -> None:
        self._init_actor: list[tuple[str, list[Tensor]]] | None = None  # first parameters seen, per layer
        self._init_critic: list[tuple[str, list[Tensor]]] | None = None
        self._init_lost = False  # restored from a state without them: never taken later (distances NaN)
        # per-layer column counts seen so far (stable columns): actor/critic hidden layers, weight layers
        self._plast_n = {"actor_hidden": 0, "critic_hidden": 0, "actor_layers": 0, "critic_layers": 0}

    def _param_groups(self, tree: TensorTree) -> list[tuple[str, list[Tensor]]]:
        return [(name, [t.detach() for t in ts if t is not None])
                for name, ts in group_layers(tree, self.layer_of, "params")]

    def _keep_init(self, actor_params: TensorTree, critic_params: TensorTree) -> None:
        """Keep a copy of the first parameters observed (the reference of distance-from-init)."""
        if not self.plasticity or self._init_lost:
            return
        clone = lambda groups: [(n, [t.clone() for t in ts]) for n, ts in groups]  # noqa: E731
        if actor_params is not None and self._init_actor is None:
            self._init_actor = clone(self._param_groups(actor_params))
        if critic_params is not None and self._init_critic is None:
            self._init_critic = clone(self._param_groups(critic_params))

    def _tau_tag(self, tau: float) -> str:
        return f"tau{tau:g}"

    def _weights(self, tree: TensorTree, init: list[tuple[str, list[Tensor]]] | None, agents: bool) -> dict | None:
        groups = self._param_groups(tree)
        if init is not None and [n for n, _ in init] != [n for n, _ in groups]:
            init = None  # another structure than at initialisation: no distance
        device = next((t.device for _, ts in groups for t in ts), None)
        if init is not None and device is not None and any(t.device != device for _, ts in init for t in ts):
            # e.g. after load_state_dict (CPU copies): move once, keep there
            init = [(n, [t.to(device) for t in ts]) for n, ts in init]
            if agents:
                self._init_actor = init
            else:
                self._init_critic = init
        lead = 1 if agents and self.n_agents is not None else 0
        out = weight_plasticity([ts for _, ts in groups], None if init is None else [ts for _, ts in init], lead)
        return {k: ([t.reshape(-1).cpu() for t in v] if isinstance(v, list) else v.reshape(-1).cpu())
                for k, v in out.items()}

    def _plasticity_stats(self, pend: Mapping[str, Any]) -> dict[str, Any]:
        """Per network: ``hidden`` (:func:`hidden_plasticity`, per agent ``(N, .)`` for the actors)
        and ``weights`` (:func:`weight_plasticity`), CPU tensors; absent when not given."""
        out: dict[str, Any] = {}
        N = self._N
        ah, ch = pend.get("actor_hidden"), pend.get("critic_hidden")
        if ah:
            hs = [h.reshape(-1, N, h.shape[-1]).transpose(0, 1) for h in ah]  # (N, B', H): agents lead
            out["actor_hidden"] = {k: ([t.cpu() for t in v] if isinstance(v, list) else v.cpu())
                                   for k, v in hidden_plasticity(hs, self.dormant_taus, self.rank_delta).items()}
            self._plast_n["actor_hidden"] = max(self._plast_n["actor_hidden"], len(ah))
        if ch:
            hs = [h.reshape(-1, h.shape[-1]).unsqueeze(0) for h in ch]  # (1, T, H)
            out["critic_hidden"] = {k: ([t.cpu() for t in v] if isinstance(v, list) else v.cpu())
                                    for k, v in hidden_plasticity(hs, self.dormant_taus, self.rank_delta).items()}
            self._plast_n["critic_hidden"] = max(self._plast_n["critic_hidden"], len(ch))
        if pend.get("actor_params") is not None:
            out["actor_weights"] = self._weights(pend["actor_params"], self._init_actor, agents=True)
            self._plast_n["actor_layers"] = max(self._plast_n["actor_layers"], len(out["actor_weights"]["norm_layers"]))
        if pend.get("critic_params") is not None:
            out["critic_weights"] = self._weights(pend["critic_params"], self._init_critic, agents=False)
            self._plast_n["critic_layers"] = max(self._plast_n["critic_layers"],
                                                 len(out["critic_weights"]["norm_layers"]))
        return out

    def _plasticity_row(self, p: Mapping[str, Any]) -> dict[str, float]:
        """The ``tracking.parquet`` plasticity columns (actor values: mean over the actors)."""
        row: dict[str, float] = {}
        mean = lambda t: float(t.to(torch.float64).mean()) if t is not None and t.numel() else _NAN  # noqa: E731
        for net in ("actor", "critic"):
            h = p.get(f"{net}_hidden")
            n = self._plast_n[f"{net}_hidden"]
            for t_i, tau in enumerate(self.dormant_taus):
                tag = self._tau_tag(tau)
                row[f"{net}_dormant_{tag}"] = mean(h["dormant_all"][..., t_i]) if h else _NAN
                for j in range(n):
                    has = h is not None and j < len(h["dormant"])
                    row[f"{net}_dormant_{tag}_l{j}"] = mean(h["dormant"][j][..., t_i]) if has else _NAN
            row[f"{net}_effective_rank"] = mean(h["effective_rank"]) if h else _NAN
            row[f"{net}_stable_rank"] = mean(h["stable_rank"]) if h else _NAN
            w = p.get(f"{net}_weights")
            nl = self._plast_n[f"{net}_layers"]
            for key, name in (("norm", "param_norm"), ("dist", "dist_init")):
                row[f"{net}_{name}"] = mean(w[key]) if w else _NAN
                for j in range(nl):
                    has = w is not None and j < len(w[f"{key}_layers"])
                    row[f"{net}_{name}_l{j}"] = mean(w[f"{key}_layers"][j]) if has else _NAN
        return row

    def _plasticity_agent_columns(self, p: Mapping[str, Any]) -> list[dict[str, float]]:
        """Per actor: ``dormant_tau*`` (all hidden layers), ``effective_rank``, ``stable_rank``,
        ``param_norm``, ``dist_init`` (NaN where not measured)."""
        N = self._N
        h, w = p.get("actor_hidden"), p.get("actor_weights")
        nan = [_NAN] * N
        cols: dict[str, list[float]] = {}
        for t_i, tau in enumerate(self.dormant_taus):
            cols[f"dormant_{self._tau_tag(tau)}"] = h["dormant_all"][:, t_i].tolist() if h else nan
        cols["effective_rank"] = h["effective_rank"].tolist() if h else nan
        cols["stable_rank"] = h["stable_rank"].tolist() if h else nan
        per_agent = w is not None and w["norm"].numel() == N
        cols["param_norm"] = w["norm"].tolist() if per_agent else nan
        cols["dist_init"] = w["dist"].tolist() if per_agent else nan
        return [{k: float(v[i]) for k, v in cols.items()} for i in range(N)]

    def _plasticity_state(self) -> dict[str, Any]:
        cpu = lambda groups: None if groups is None else [(n, [t.detach().cpu().clone() for t in ts])  # noqa: E731
                                                          for n, ts in groups]
        return {"plasticity": {"enabled": self.plasticity, "dormant_taus": list(self.dormant_taus),
                               "rank_delta": self.rank_delta, "init_actor": cpu(self._init_actor),
                               "init_critic": cpu(self._init_critic), "counts": dict(self._plast_n)}}

    def _load_plasticity_state(self, d: Mapping[str, Any]) -> None:
        """States saved before the plasticity instruments existed have no initial parameters:
        the distances from initialisation are then NaN (nothing else changes)."""
        p = d.get("plasticity")
        self._reset_plasticity()
        if not isinstance(p, Mapping):
            self._init_lost = True  # the parameters seen next are not the initial ones
            return
        self._set_plasticity_config(bool(p["enabled"]), p["dormant_taus"], float(p["rank_delta"]))
        self._init_actor = None if p["init_actor"] is None else [(n, list(ts)) for n, ts in p["init_actor"]]
        self._init_critic = None if p["init_critic"] is None else [(n, list(ts)) for n, ts in p["init_critic"]]
        self._plast_n.update({k: int(v) for k, v in p["counts"].items()})


# --------------------------------------------------------------------------- nn.Module helpers


def _group_named(named: Iterable[tuple[str, Tensor | None]]) -> dict[str, dict[str, Tensor | None]]:
    out: dict[str, dict[str, Tensor | None]] = {}
    for name, t in named:
        layer, _, leaf = name.rpartition(".")
        out.setdefault(layer or leaf, {})[leaf] = t
    return out


def _require_module(m: Any, what: str) -> None:
    """A clear ``TypeError`` when ``m`` is not an ``nn.Module`` (e.g. a list of layers or a name)."""
    if not isinstance(m, nn.Module):
        hint = " (pass the network itself, e.g. nn.Sequential(...), not a list)" if isinstance(m, (list, tuple)) else ""
        raise TypeError(f"{what} expects a torch.nn.Module, got {type(m).__name__}{hint}")


def _param_ids(params: Any, what: str) -> set[int]:
    """The ids of ``params``: tensors (e.g. ``module.parameters()``), an optimiser, its ``param_groups``
    (dicts with a ``"params"`` entry) or one such group."""
    if isinstance(params, torch.optim.Optimizer):
        params = params.param_groups
    if isinstance(params, (Tensor, Mapping)):
        params = [params]
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(
            f"{what}: params= expects parameters or an optimiser's param_groups, got {type(params).__name__}"
        )
    ids: set[int] = set()
    for p in params:
        if isinstance(p, Mapping):
            if "params" not in p:
                raise TypeError(
                    f"{what}: params= got a dict without a 'params' entry (expected an optimiser's param_groups)"
                )
            group = p["params"]
            group = [group] if isinstance(group, Tensor) else list(group)
        else:
            group = [p]
        for q in group:
            if not isinstance(q, Tensor):
                raise TypeError(
                    f"{what}: params= expects parameters or an optimiser's param_groups, "
                    f"got an element of type {type(q).__name__}"
                )
            ids.add(id(q))
    return ids


def _selected_params(module: nn.Module, params: Iterable[Tensor] | None,
                     what: str = "collect_grads") -> list[tuple[str, nn.Parameter]]:
    _require_module(module, what)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(
            f"{what}: no parameters of the module selected ({type(module).__name__} has no trainable parameters)"
        )
    if params is not None:
        ids = _param_ids(params, what)
        named = [(n, p) for n, p in named if id(p) in ids]
        if not named:
            raise ValueError(
                f"{what}: no parameters of the module selected (none of params= belongs to {type(module).__name__})"
            )
    return named


def _check_named(named: Any, what: str) -> Sequence[tuple[str, Tensor]]:
    """``named`` as given, if it is a non-empty sequence of ``(name, tensor)`` pairs."""
    if isinstance(named, (str, bytes, Mapping)) or not isinstance(named, Sequence):
        raise TypeError(
            f"{what}: named= expects a list of (name, parameter) pairs from selected_parameters(module), "
            f"got {type(named).__name__}"
        )
    if not named:
        raise ValueError(f"{what}: no parameters of the module selected (named= is empty)")
    for item in named:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], Tensor)):  # fmt: skip
            raise TypeError(
                f"{what}: named= expects (name, parameter) pairs from selected_parameters(module), "
                f"got an element {_short(item)}"
            )
    return named


def _short(x: Any) -> str:
    r = repr(x) if isinstance(x, (str, bytes, int, float, type(None))) else type(x).__name__
    return r if len(r) <= 60 else r[:57] + "..."


def selected_parameters(module: nn.Module, params: Iterable[Tensor] | None = None) -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs :func:`collect_grads` / :func:`collect_params` use
    (trainable, restricted to ``params`` if given): compute once and pass as ``named=``
    to skip the module walk at every call."""
    return _selected_params(module, params, "selected_parameters")


def collect_grads(
    module: nn.Module | None, params: Iterable[Tensor] | None = None,
    named: Sequence[tuple[str, Tensor]] | None = None,
) -> dict[str, dict[str, Tensor]]:
    """Clones of every trainable parameter's ``.grad``, grouped per layer.

    Returns ``{"net.0": {"weight": g, "bias": g}, ...}`` (layer = module path of the
    parameter). A parameter whose ``.grad`` is ``None`` gets zeros. ``params``
    restricts to those parameters: tensors, an optimiser or its ``param_groups``
    (parameters not in ``module`` are ignored; selecting none is a ``ValueError``). Call it right after the
    network's own ``loss.backward()`` (before another loss's backward adds to it).
    ``named`` (from :func:`selected_parameters`) replaces ``module`` and ``params``.
    """
    if named is not None:
        pairs = _check_named(named, "collect_grads")
    else:
        pairs = _selected_params(module, params, "collect_grads")
    return _group_named(
        (n, p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in pairs
    )


def collect_params(
    module: nn.Module | None, params: Iterable[Tensor] | None = None,
    named: Sequence[tuple[str, Tensor]] | None = None,
) -> dict[str, dict[str, Tensor]]:
    """Every trainable parameter (detached, *not* copied), grouped per layer.

    The monitor keeps its own snapshot copy, so references are enough. ``named`` as in
    :func:`collect_grads`.
    """
    if named is not None:
        pairs = _check_named(named, "collect_params")
    else:
        pairs = _selected_params(module, params, "collect_params")
    return _group_named((n, p.detach()) for n, p in pairs)


_SQUASH_MODULES: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Softsign, nn.Sigmoid, nn.Hardtanh)


class OutputPreactHook:
    """Captures a module's input (``capture="input"``) or output (``"output"``) on
    every forward; ``.value`` is the most recent one (detached).

    ``training_only=True`` ignores forwards run without autograd (``torch.no_grad()``,
    e.g. acting or target computations), so ``.value`` is the training batch.
    """

    def __init__(self, module: nn.Module, capture: str = "input", training_only: bool = False) -> None:
        _require_module(module, "OutputPreactHook")
        if capture not in ("input", "output"):
            raise ValueError(f"capture must be 'input' or 'output', got {capture!r}")
        self.module = module
        self.capture = capture
        self.training_only = training_only
        self.value: Tensor | None = None
        self.calls = 0
        if capture == "input":
            self._handle = module.register_forward_pre_hook(self._pre)
        else:
            self._handle = module.register_forward_hook(self._post)

    def _keep(self, t: Any) -> None:
        if self.training_only and not torch.is_grad_enabled():
            return
        if isinstance(t, tuple):
            t = t[0]
        if isinstance(t, Tensor):
            self.value = t.detach()
            self.calls += 1

    def _pre(self, module: nn.Module, args: tuple) -> None:
        self._keep(args)

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._keep(output)

    def pop(self) -> Tensor | None:
        """Return ``.value`` and clear it."""
        v, self.value = self.value, None
        return v

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> "OutputPreactHook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def register_preact_hook(module_or_layer: nn.Module, training_only: bool = False) -> OutputPreactHook:
    """Hook the pre-activation of a network's final squashing.

    * given a squashing module (``Tanh``, ``Softsign``, ``Sigmoid``, ``Hardtanh``):
      captures its input;
    * given a ``Linear``: captures its output;
    * given any other module: the *last registered* squashing submodule's input if
      there is one, else the last ``Linear``'s output (registration order, which is
      the forward order for ``nn.Sequential`` and most hand-written nets).
    """
    m = module_or_layer
    _require_module(m, "register_preact_hook")
    if isinstance(m, _SQUASH_MODULES):
        return OutputPreactHook(m, "input", training_only)
    if isinstance(m, nn.Linear):
        return OutputPreactHook(m, "output", training_only)
    subs = list(m.modules())
    squashes = [s for s in subs if isinstance(s, _SQUASH_MODULES)]
    if squashes:
        return OutputPreactHook(squashes[-1], "input", training_only)
    linears = [s for s in subs if isinstance(s, nn.Linear)]
    if linears:
        return OutputPreactHook(linears[-1], "output", training_only)
    raise ValueError(f"no squashing or Linear layer found in {type(m).__name__}")


class HiddenActivationHook:
    """Captures the outputs of every hidden activation module (default ``nn.ReLU``)
    of a network, in registration order; ``.values`` is the list from the most
    recent forward (detached). Pass ``layers=[...]`` to hook specific modules
    instead (e.g. the ``Linear`` before a functional ``F.relu``: ``<= 0`` there is the
    same dead-unit test).
    """

    def __init__(
        self,
        module: nn.Module | None = None,
        types: tuple[type[nn.Module], ...] = (nn.ReLU,),
        layers: Sequence[nn.Module] | None = None,
        training_only: bool = False,
    ) -> None:
        if layers is None:
            if module is None:
                raise ValueError("pass a module or layers")
            _require_module(module, "HiddenActivationHook")
            classes = (types,) if isinstance(types, type) else types
            if not (isinstance(classes, (tuple, list)) and classes
                    and all(isinstance(t, type) and issubclass(t, nn.Module) for t in classes)):
                raise TypeError(f"HiddenActivationHook types= expects an nn.Module class or a tuple of them "
                                f"(e.g. (nn.ReLU,)), got {types!r}")
            layers = [s for s in module.modules() if isinstance(s, tuple(classes))]
        elif isinstance(layers, nn.Module) or isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f"HiddenActivationHook layers= expects a sequence of modules, got {type(layers).__name__}")
        for layer in layers:
            _require_module(layer, "HiddenActivationHook layers=")
        self.layers = list(layers)
        self.training_only = training_only
        self._vals: list[Tensor | None] = [None] * len(self.layers)
        self._handles = [layer.register_forward_hook(self._make(i)) for i, layer in enumerate(self.layers)]

    def _make(self, i: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self.training_only and not torch.is_grad_enabled():
                return
            if isinstance(output, Tensor):
                self._vals[i] = output.detach()

        return hook

    @property
    def values(self) -> list[Tensor]:
        """Latest output of each hooked layer (layers not run yet are omitted)."""
        return [v for v in self._vals if v is not None]

    def pop(self) -> list[Tensor]:
        v = self.values
        self._vals = [None] * len(self.layers)
        return v

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def __enter__(self) -> "HiddenActivationHook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
