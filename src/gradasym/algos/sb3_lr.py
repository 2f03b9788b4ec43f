"""Separate actor, critic (and SAC entropy-coefficient) learning rates for Stable-Baselines3.

SB3 gives every optimiser one ``learning_rate`` and, at the start of every
``train()``, ``_update_learning_rate`` sets all of them to ``lr_schedule(progress)``.
The subclasses here override that one method: each optimiser is set to its own
constant rate (actor -> ``actor_lr``, critic -> ``critic_lr``, SAC's
``ent_coef_optimizer`` -> ``ent_coef_lr``, by default ``actor_lr``, which is what SB3
itself would give it with ``learning_rate=actor_lr``). Everything else is SB3's code.
Until :meth:`set_learning_rates` is called a model is exactly SB3's own class: every
optimiser follows SB3's ``learning_rate`` (or schedule). Rates must be finite and > 0
(``TypeError`` for a non-number, ``ValueError`` naming the argument otherwise).
This module imports Stable-Baselines3.
"""

from __future__ import annotations

import numbers
from typing import Any

import stable_baselines3 as sb3
from torch.optim import Optimizer

from ..config import check_learning_rate


def _rate(value: Any, name: str) -> float:
    """``value`` as a learning rate: a real number (not a bool), finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number (a positive learning rate), got {type(value).__name__} {value!r}")
    v = float(value)
    check_learning_rate(v, name)
    return v


class _SeparateLR:
    """Mixin over an SB3 off-policy algorithm: one constant learning rate per optimiser."""

    gradasym_lrs: dict[str, float]  # set by set_learning_rates; absent: SB3's own behaviour

    def set_learning_rates(self, actor_lr: float, critic_lr: float, ent_coef_lr: float | None = None) -> None:
        """Use these rates from now on (and set them on the optimisers at once). Each must be
        a finite number > 0 (``TypeError`` / ``ValueError`` naming it); ``ent_coef_lr=None``
        is ``actor_lr``. Nothing changes when one is refused."""
        lrs = {"actor": _rate(actor_lr, "actor_lr"), "critic": _rate(critic_lr, "critic_lr")}
        lrs["ent_coef"] = lrs["actor"] if ent_coef_lr is None else _rate(ent_coef_lr, "ent_coef_lr")
        self.gradasym_lrs = lrs
        self._set_rates(self._optimisers())

    def _optimisers(self) -> list[Optimizer]:
        opts = [self.actor.optimizer, self.critic.optimizer]  # type: ignore[attr-defined]
        ent = getattr(self, "ent_coef_optimizer", None)
        return opts + ([ent] if ent is not None else [])

    def _rate_of(self, optimizer: Optimizer) -> float:
        if optimizer is self.actor.optimizer:  # type: ignore[attr-defined]
            return self.gradasym_lrs["actor"]
        if optimizer is self.critic.optimizer:  # type: ignore[attr-defined]
            return self.gradasym_lrs["critic"]
        if optimizer is getattr(self, "ent_coef_optimizer", None):
            return self.gradasym_lrs["ent_coef"]
        raise RuntimeError(f"{type(self).__name__}: no learning rate for optimiser {optimizer!r}")

    def _set_rates(self, optimizers: list[Optimizer]) -> None:
        for opt in optimizers:
            lr = self._rate_of(opt)
            for group in opt.param_groups:
                group["lr"] = lr

    def _update_learning_rate(self, optimizers: list[Optimizer] | Optimizer) -> None:
        """SB3 calls this at every ``train()``: each optimiser keeps its own rate (SB3's
        schedule for all of them until :meth:`set_learning_rates` is called)."""
        if getattr(self, "gradasym_lrs", None) is None:
            super()._update_learning_rate(optimizers)  # type: ignore[misc]
            return
        for key, value in self.gradasym_lrs.items():
            self.logger.record(f"train/{key}_learning_rate", value)  # type: ignore[attr-defined]
        self._set_rates(optimizers if isinstance(optimizers, list) else [optimizers])


class TD3(_SeparateLR, sb3.TD3):
    """SB3 TD3 with separate actor and critic learning rates."""


class DDPG(_SeparateLR, sb3.DDPG):
    """SB3 DDPG with separate actor and critic learning rates."""


class SAC(_SeparateLR, sb3.SAC):
    """SB3 SAC with separate actor, critic and entropy-coefficient learning rates."""


CLASSES: dict[str, Any] = {"td3": TD3, "ddpg": DDPG, "sac": SAC}
