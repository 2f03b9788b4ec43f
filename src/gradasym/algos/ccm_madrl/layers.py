"""Small building blocks shared by the actor ensemble and the critic: the hidden
nonlinearity named in the config (and the ReLU's backward for the hand-written
backward passes) and PyTorch's default ``nn.Linear`` initialisation drawn from an
explicit generator (see :mod:`gradasym.algos.ccm_madrl.networks` for the draw order)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

Activation = str  # "relu" | "linear"


def activation_fn(name: Activation):
    """The hidden-layer nonlinearity named in the config (``relu`` or ``linear``)."""
    if name == "relu":
        return torch.relu
    if name == "linear":
        return _identity
    raise ValueError(f"unknown hidden activation {name!r} (expected 'relu' or 'linear')")


def relu_backward(grad: Tensor, out: Tensor) -> Tensor:
    """Back-propagation through a ReLU given its output: ``grad`` where ``out > 0``, else 0.

    Autograd's own ReLU backward (``threshold_backward``), one kernel; the same values as
    ``grad * (out > 0)`` for finite gradients, which costs a bool-to-float conversion more."""
    return torch.ops.aten.threshold_backward(grad, out, 0)


def _identity(x: Tensor) -> Tensor:
    return x


def _linear_default_init_(weight: Tensor, bias: Tensor, generator: torch.Generator) -> None:
    """PyTorch's ``nn.Linear.reset_parameters``, drawing from ``generator``.

    ``weight`` has nn.Linear's layout ``(out, in)``.
    """
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    fan_in = weight.shape[1]
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    nn.init.uniform_(bias, -bound, bound, generator=generator)


def _output_init_(weight: Tensor, bias: Tensor, bound: float, generator: torch.Generator) -> None:
    nn.init.uniform_(weight, -bound, bound, generator=generator)
    nn.init.uniform_(bias, -bound, bound, generator=generator)
