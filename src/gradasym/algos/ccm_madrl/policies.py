"""The actor-side pieces of the mitigation presets (``docs/presets.md``).

Everything here is used by :class:`gradasym.algos.ccm_madrl.networks.ActorEnsemble` and
:class:`gradasym.algos.ccm_madrl.agent.CCMMADRL`; with the default configuration none of it changes
what the faithful code computes. Full definitions: ``docs/presets.md``.

* :func:`squash` / :func:`squash_grad` -- the deterministic actors' output function
  (``tanh``, ``softsign`` ``z / (1 + |z|)``, ``scaled-sigmoid`` ``2 sigmoid(z) - 1``)
  and its derivative written in terms of the output (for the hand-written backward).
* :func:`policy_head` -- maps the output layer's pre-activations to the action used
  in the actor loss, the pre-activation the monitor watches, and the log-probability
  (squashed Gaussian) or entropy (Beta) that enter the actor loss.
* :class:`RunningMeanStd` -- running mean / variance (parallel Welford update) for
  the ``fullnorm`` input normalisation and the ``reward-norm`` reward scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

OUTPUT_ACTIVATIONS = ("tanh", "softsign", "scaled-sigmoid")
POLICIES = ("deterministic", "squashed-gaussian", "beta")

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # squashed Gaussian: log-std clamp (as SAC / SB3)
TANH_LOG_EPS = 1e-6  # log(1 - tanh(u)^2 + eps) in the squashed Gaussian's log-probability
LN_EPS = 1e-5  # LayerNorm epsilon (torch.nn.LayerNorm's default)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ------------------------------------------------------------------ deterministic squash
def squash(z: Tensor, name: str) -> Tensor:
    """The deterministic actor's output function ``(-inf, inf) -> (-1, 1)``."""
    if name == "tanh":
        return torch.tanh(z)
    if name == "softsign":
        return F.softsign(z)
    if name == "scaled-sigmoid":
        return 2.0 * torch.sigmoid(z) - 1.0
    raise ValueError(f"unknown output activation {name!r} (expected one of {OUTPUT_ACTIVATIONS})")


def squash_grad(grad_out: Tensor, out: Tensor, name: str) -> Tensor:
    """``grad_out * d squash / dz`` expressed through the output ``out = squash(z)``:
    tanh ``1 - a^2``; softsign ``(1 - |a|)^2 = 1 / (1 + |z|)^2``; scaled sigmoid
    ``(1 - a^2) / 2``."""
    if name == "tanh":
        return grad_out * (1 - out * out)
    if name == "softsign":
        d = 1 - out.abs()
        return grad_out * (d * d)
    if name == "scaled-sigmoid":
        return grad_out * ((1 - out * out) * 0.5)
    raise ValueError(f"unknown output activation {name!r} (expected one of {OUTPUT_ACTIVATIONS})")


def monitor_squash(policy: str, output_activation: str) -> str:
    """The ``squash`` the monitor applies to :attr:`ActorOutput.preact` (see docs/presets.md)."""
    if policy == "deterministic":
        return output_activation
    if policy == "squashed-gaussian":
        return "tanh"  # preact = Gaussian mean, greedy action tanh(mean)
    if policy == "beta":
        return "scaled-sigmoid"  # preact = log(alpha / beta), mean action = 2 sigmoid(preact) - 1
    raise ValueError(f"unknown policy {policy!r} (expected one of {POLICIES})")


# ------------------------------------------------------------------ policy heads
@dataclass
class ActorOutput:
    """What the actor ensemble computes for a batch (leading dims ``(N, B)`` or ``(B,)``).

    ``action``: the action the actor loss (and, without noise, acting greedily and the
    critic's target) uses, in [-1, 1]; ``preact``: the pre-activation the monitor
    watches (its squash is :func:`monitor_squash`); ``hidden``: hidden-layer outputs
    after the activation (before any LayerNorm); ``z_out``: the output layer's raw
    output (after the optional LayerNorm); ``log_prob`` (squashed Gaussian with
    noise) / ``entropy`` (Beta): per sample, summed over the action dimensions;
    ``dist``: the distribution parameters, ``(mean, log_std)`` or ``(alpha, beta)``.
    """

    action: Tensor
    preact: Tensor
    hidden: list[Tensor]
    z_out: Tensor
    log_prob: Tensor | None = None
    entropy: Tensor | None = None
    dist: tuple[Tensor, Tensor] | None = None


def policy_head(z_out: Tensor, hidden: list[Tensor], policy: str, output_activation: str,
                action_dim: int, noise: Tensor | None = None) -> ActorOutput:
    """Actions and monitor pre-activations from the output layer ``z_out (..., heads * A)``.

    * deterministic: ``action = squash(z)``, ``preact = z``;
    * squashed-gaussian: ``z = [mean, log_std]`` (log_std clamped to [-20, 2]);
      without ``noise`` ``action = tanh(mean)``; with ``noise`` (standard normal, the
      shape of ``mean``) ``u = mean + exp(log_std) * noise``, ``action = tanh(u)`` and
      ``log_prob = sum_d [log N(u; mean, std) - log(1 - tanh(u)^2 + 1e-6)]``
      (reparameterised: differentiable in mean and log_std); ``preact = mean``;
    * beta: ``z = [z_alpha, z_beta]``, ``alpha = softplus(z_alpha) + 1``,
      ``beta = softplus(z_beta) + 1`` (unimodal Beta on [0, 1]; action ``2x - 1``);
      ``action`` = the distribution's mean ``2 alpha / (alpha + beta) - 1 =
      (alpha - beta) / (alpha + beta)``, ``entropy`` = Beta entropy summed over the
      dimensions, ``preact = log(alpha) - log(beta)`` (then the mean action is exactly
      ``2 sigmoid(preact) - 1``). ``noise`` is ignored (acting samples with numpy).
    """
    if policy == "deterministic":
        return ActorOutput(squash(z_out, output_activation), z_out, hidden, z_out)
    first, second = z_out[..., :action_dim], z_out[..., action_dim:]
    if policy == "squashed-gaussian":
        mean, log_std = first, second.clamp(LOG_STD_MIN, LOG_STD_MAX)
        if noise is None:
            return ActorOutput(torch.tanh(mean), mean, hidden, z_out, dist=(mean, log_std))
        u = mean + log_std.exp() * noise
        action = torch.tanh(u)
        log_prob = (-0.5 * noise * noise - log_std - _HALF_LOG_2PI
                    - torch.log(1 - action * action + TANH_LOG_EPS)).sum(-1)
        return ActorOutput(action, mean, hidden, z_out, log_prob=log_prob, dist=(mean, log_std))
    if policy == "beta":
        alpha, beta = F.softplus(first) + 1.0, F.softplus(second) + 1.0
        total = alpha + beta
        action = (alpha - beta) / total
        entropy = (torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(total)
                   - (alpha - 1) * torch.digamma(alpha) - (beta - 1) * torch.digamma(beta)
                   + (total - 2) * torch.digamma(total)).sum(-1)
        preact = torch.log(alpha) - torch.log(beta)
        return ActorOutput(action, preact, hidden, z_out, entropy=entropy, dist=(alpha, beta))
    raise ValueError(f"unknown policy {policy!r} (expected one of {POLICIES})")


# ------------------------------------------------------------------ running statistics
class RunningMeanStd:
    """Running mean and (population) variance of a stream of arrays of shape ``shape``.

    The parallel Welford / Chan update, as ``RunningMeanStd`` in OpenAI Baselines and
    Stable-Baselines3 (``VecNormalize``), including their prior: ``count = 1e-4``,
    ``mean = 0``, ``var = 1`` before the first update, which keeps the first
    normalisations finite. float64 torch tensors, so :meth:`state_dict` is
    ``torch.load(weights_only=True)``-able and a resumed run continues bit-identically.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64, device="cpu")  # CPU statistics on any run.device
        self.var = torch.ones(shape, dtype=torch.float64, device="cpu")
        self.count = float(epsilon)

    @torch.no_grad()
    def update(self, x: Tensor, batch_dims: int = 0) -> None:
        """Add the ``batch_dims`` leading dimensions of ``x`` as samples (0: one sample)."""
        x = torch.as_tensor(x).to(torch.float64)
        if batch_dims == 0:
            x = x.unsqueeze(0)
            batch_dims = 1
        dims = tuple(range(batch_dims))
        n = float(math.prod(x.shape[:batch_dims]))
        b_mean = x.mean(dim=dims)
        b_var = x.var(dim=dims, correction=0)
        delta = b_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + b_var * n + delta * delta * (self.count * n / total)
        self.var = m2 / total
        self.count = total

    def std(self, eps: float = 1e-8) -> Tensor:
        """``sqrt(var + eps)``."""
        return torch.sqrt(self.var + eps)

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"].clone().to(torch.float64)
        self.var = state["var"].clone().to(torch.float64)
        self.count = float(state["count"])
