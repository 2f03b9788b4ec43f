"""Stable-Baselines3 integration: :class:`SaturationMonitorCallback`.

Runs :class:`gradasym.monitor.ActorCriticMonitor` inside SB3's off-policy
actor-critics (TD3, DDPG, SAC) without changing their training code::

    from gradasym.integrations.sb3 import SaturationMonitorCallback
    cb = SaturationMonitorCallback(log_freq=100, save_path="td3_tracking.parquet")
    TD3("MlpPolicy", "Pendulum-v1").learn(50_000, callback=cb)
    cb.dataframe()          # one row every log_freq gradient steps
    cb.summary()            # stop / gradient-death episodes, max |z|, ...

How it captures each network's *own* gradient: SB3's ``train`` runs, per gradient
step, ``critic_loss.backward(); critic.optimizer.step()`` and then (every
``policy_delay`` steps) ``actor_loss.backward(); actor.optimizer.step()``. The
callback registers optimiser *step pre-hooks*: the critic's collects the critic's
``.grad`` (the critic loss only; the actor loss's backward later adds to it) and
the hidden activations of the critic-loss forward; the actor's collects the actor's
``.grad`` (the actor optimiser zeroed it just before the actor loss) and the actor's
output pre-activation from the actor-loss forward. An actor step *post-hook* then
calls ``observe_update`` with the updated parameters, so one monitor "update" is one
actor step (``step`` = the 1-based index of the gradient step, counted as critic
optimiser steps from ``model._n_updates`` at the start of ``learn``); with TD3's
``policy_delay = 2`` the critic therefore moves twice between comparisons.

Pre-activations (``capture`` only forwards run with autograd enabled, i.e. the
training batch, not acting or targets):

* TD3 / DDPG: ``actor.mu`` is ``Sequential(..., Linear, Tanh)``: the input of that
  ``Tanh``;
* SAC: the output of ``actor.mu`` = the Gaussian mean before the tanh squashing
  (``squash="tanh"``, so the saturation ratio is that of the deterministic action
  ``tanh(mean)``; with gSDE and ``clip_mean`` it is the input of the ``Hardtanh``).
  Beside it, the *sampled* pre-tanh value ``mean + std * noise`` that the actor loss
  actually squashes (``SquashedDiagGaussianDistribution.gaussian_actions``) and the
  (clamped) ``log_std`` of the same forward give the ``sampled_*`` and ``log_std_*``
  columns: the callback wraps the distribution's ``log_prob_from_params`` (an
  instance attribute, removed by :meth:`close`); not available with gSDE.

Hooks are removed at the end of ``learn``, and by :meth:`close` (idempotent), which a
caller runs in ``finally`` or through ``with SaturationMonitorCallback(...) as cb:``
(SB3 calls ``_on_training_end`` only when training succeeds).

Hidden statistics come from the actor's ``nn.ReLU`` modules and those of the first
Q-network (``critic.q_networks[0]``); the plasticity columns (dormant fractions, ranks of
the last hooked layer's features, parameter norms and distances from the first observed
parameters; ``docs/monitor.md``) come from the same tensors. Stable-Baselines3 is imported
lazily: this module imports without it and raises a clear ``ImportError`` on use.

:class:`PlasticityRemedyCallback` applies ReDo and Shrink & Perturb
(:mod:`gradasym.nn_remedies`) to the actor and the critic every ``period`` gradient steps.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..monitor import (
    ActorCriticMonitor,
    HiddenActivationHook,
    collect_grads,
    collect_params,
    preact_summary,
    register_preact_hook,
    selected_parameters,
)

__all__ = ["SaturationMonitorCallback", "PlasticityRemedyCallback", "DEFAULT_LOGGER_KEYS"]

DEFAULT_LOGGER_KEYS = (
    "actor_grad_norm",
    "critic_grad_norm",
    "rho",
    "saturation_ratio",
    "preact_max_abs",
    "preact_std",
    "dead_output_frac",
    "actors_stopped",
    "actors_diverged",
    "critic_diverged",
    # plasticity instruments (docs/monitor.md, "Plasticity"; tau 0.1 of the default thresholds)
    "actor_dormant_tau0.1",
    "critic_dormant_tau0.1",
    "actor_effective_rank",
    "critic_effective_rank",
)

# every column a row can hold (the monitor's log_row plus this callback's): logger_keys must name these
_ROW_KEYS = (
    "step", "episode", "actor_grad_norm", "critic_grad_norm", "rho",
    "preact_mean", "preact_std", "preact_min", "preact_max", "preact_max_abs",
    "saturation_ratio", "dead_output_frac", "squash_grad_mean",
    "actors_stopped", "actors_diverged", "critic_diverged",
    "num_timesteps", "actor_frozen", "critic_frozen", "actor_grad_dead",
    "sampled_max_abs", "sampled_mean_abs", "sampled_saturation_ratio", "sampled_dead_output_frac",
    "sampled_squash_grad_mean", "log_std_mean", "log_std_min", "log_std_max",
)  # fmt: skip
_ROW_PATTERNS = (
    r"(actor|critic)_grad_norm_l\d+", r"(saturation|dead_output)_dim\d+", r"(actor|critic)_(dead_relu|hidden_mean)_l\d+",
    r"(actor|critic)_dormant_tau[0-9.e+-]+(_l\d+)?", r"(actor|critic)_(effective|stable)_rank",
    r"(actor|critic)_(param_norm|dist_init)(_l\d+)?",
)
_ROW_PATTERN_NAMES = "actor_grad_norm_l<j>, critic_grad_norm_l<j>, saturation_dim<d>, dead_output_dim<d>, " \
    "actor_dead_relu_l<j>, actor_hidden_mean_l<j>, critic_dead_relu_l<j>, critic_hidden_mean_l<j>, " \
    "actor_dormant_tau<t>[_l<j>], actor_effective_rank, actor_stable_rank, actor_param_norm[_l<j>], " \
    "actor_dist_init[_l<j>] (and critic_ the same)"


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"SaturationMonitorCallback: {name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"SaturationMonitorCallback: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_number(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"SaturationMonitorCallback: {name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"SaturationMonitorCallback: {name} must be finite, got {value!r}")


def _check_save_path(value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        raise TypeError(f"SaturationMonitorCallback: save_path must be a str or Path (or None), got {type(value).__name__}")
    if str(value) == "":
        raise ValueError("SaturationMonitorCallback: save_path must name a file, got ''")
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"SaturationMonitorCallback: save_path {str(path)!r} is a directory, expected a file name "
                         f"(e.g. {str(path / 'tracking.parquet')!r})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"SaturationMonitorCallback: save_path {str(path)!r}: {str(parent)!r} is not a directory")
            break
    return path


def _check_hidden_types(value: Any) -> tuple[type, ...]:
    types = (value,) if isinstance(value, type) else value
    if not isinstance(types, (tuple, list)) or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"SaturationMonitorCallback: hidden_types must be an nn.Module class or a tuple of them "
                        f"(e.g. (nn.ReLU,)), got {value!r}")
    return tuple(types)


def _check_logger_keys(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"SaturationMonitorCallback: logger_keys must be a list or tuple of column names "
                        f"(e.g. ['rho']), got {value!r}")
    unknown = [k for k in value if k not in _ROW_KEYS and not any(re.fullmatch(p, k) for p in _ROW_PATTERNS)]
    if unknown:
        raise ValueError(f"SaturationMonitorCallback: logger_keys: unknown column(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(_ROW_KEYS)}, {_ROW_PATTERN_NAMES})")
    return tuple(value)


_INSTALL_HINT = (
    "gradasym.integrations.sb3 needs Stable-Baselines3: pip install 'gradasym[sb3]' "
    "(stable-baselines3>=2.2 and gymnasium)"
)

_CLASS: type | None = None
_REMEDY_CLASS: type | None = None


def _base_callback() -> type:
    try:
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError as e:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(_INSTALL_HINT) from e
    return BaseCallback


def __getattr__(name: str) -> Any:
    global _CLASS, _REMEDY_CLASS
    if name == "SaturationMonitorCallback":
        if _CLASS is None:
            _CLASS = _build(_base_callback())
        return _CLASS
    if name == "PlasticityRemedyCallback":
        if _REMEDY_CLASS is None:
            _REMEDY_CLASS = _build_remedy(_base_callback())
        return _REMEDY_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _opt_params(opt: Any) -> list[nn.Parameter]:
    return [p for g in opt.param_groups for p in g["params"]]


def _build(BaseCallback: type) -> type:
    class SaturationMonitorCallback(BaseCallback):  # type: ignore[misc, valid-type]
        """Gradient / saturation / weight-freeze monitor for SB3 TD3, DDPG and SAC.

        Parameters
        ----------
        log_freq:
            an int >= 1: record a row at the first actor update at or after every
            ``log_freq`` gradient steps.
        save_path:
            a file name (str or Path, not an existing directory) or None: write the rows
            there at the end of training (and on :meth:`save`): Parquet, or CSV if the
            name ends in ``.csv``; written atomically (missing folders are created).
        monitor:
            an :class:`ActorCriticMonitor` to use (``n_agents=None``); by default one
            is created from ``squash``, ``saturation_threshold``, ``freeze_tolerance``,
            ``grad_death_threshold`` and ``on_event`` (checked as that class checks them)
            with ``unit="step"``: rows are keyed by ``step`` (the gradient step) and the
            summary's step keys end in ``_step``. With ``monitor`` given, the four
            settings are the monitor's, and one set here to another value is refused
            (``ValueError``).
        on_event:
            called once with each monitor event (first gradient death, first freeze, ...,
            :attr:`ActorCriticMonitor.events`) as it happens, e.g. ``print``-ing
            ``event["message"]``.
        preact_module:
            override where the pre-activation is taken (see
            :func:`gradasym.monitor.register_preact_hook`): a module of the model's actor
            (e.g. ``model.actor.mu``) or the dotted name of one in ``model.actor``
            (``"mu"``, ``"mu.4"``); checked to exist when training starts.
        hidden_types:
            the ``nn.Module`` classes (a class or a tuple of them) whose outputs give the
            hidden statistics.
        record_to_logger:
            a bool: also ``logger.record("gradasym/<key>", value)`` for ``logger_keys``
            at every logged row (shown at SB3's next log dump).
        logger_keys:
            a list or tuple of row column names (see ``DEFAULT_LOGGER_KEYS``); a plain
            string or an unknown name is refused.

        Every argument is checked here (``TypeError`` / ``ValueError`` naming it), so a
        mistake fails before training, not at its end.
        """

        def __init__(
            self,
            log_freq: int = 100,
            save_path: str | Path | None = None,
            monitor: ActorCriticMonitor | None = None,
            squash: str = "tanh",
            saturation_threshold: float = 0.9,
            freeze_tolerance: float = 0.0,
            grad_death_threshold: float = 1e-12,
            preact_module: nn.Module | None = None,
            hidden_types: tuple[type[nn.Module], ...] = (nn.ReLU,),
            record_to_logger: bool = True,
            logger_keys: tuple[str, ...] = DEFAULT_LOGGER_KEYS,
            verbose: int = 0,
            on_event: Any = None,
        ) -> None:
            _check_int(verbose, "verbose", 0)
            super().__init__(verbose)
            self.log_freq = _check_int(log_freq, "log_freq", 1)
            self.save_path = _check_save_path(save_path)
            if monitor is not None and not isinstance(monitor, ActorCriticMonitor):
                raise TypeError(f"SaturationMonitorCallback: monitor must be a gradasym.monitor.ActorCriticMonitor "
                                f"(or None), got {type(monitor).__name__}")
            if monitor is not None and monitor.n_agents is not None:
                raise ValueError("SB3 actors are single networks: use ActorCriticMonitor(n_agents=None)")
            if monitor is not None:  # the monitor's own settings apply: a different one given here is a conflict
                given = {"squash": (squash, "tanh"), "saturation_threshold": (saturation_threshold, 0.9),
                         "freeze_tolerance": (freeze_tolerance, 0.0),
                         "grad_death_threshold": (grad_death_threshold, 1e-12)}
                for name, (value, default) in given.items():
                    if value != default and value != getattr(monitor, name):
                        raise ValueError(f"SaturationMonitorCallback: {name}={value!r} conflicts with the given "
                                         f"monitor's {name}={getattr(monitor, name)!r}; set it on the "
                                         "ActorCriticMonitor (or leave the monitor out)")
            if monitor is None:
                if not isinstance(squash, str):
                    raise TypeError(f"SaturationMonitorCallback: squash must be a str, got {type(squash).__name__}")
                for name, v in (("saturation_threshold", saturation_threshold), ("freeze_tolerance", freeze_tolerance),
                                ("grad_death_threshold", grad_death_threshold)):
                    _check_number(v, name)
            if preact_module is not None and not isinstance(preact_module, (nn.Module, str)):
                raise TypeError(f"SaturationMonitorCallback: preact_module must be an nn.Module of the actor, the "
                                f"name of one (e.g. 'mu') or None, got {type(preact_module).__name__}")
            if not isinstance(record_to_logger, bool):
                raise TypeError(f"SaturationMonitorCallback: record_to_logger must be a bool, got "
                                f"{type(record_to_logger).__name__}")
            self.hidden_types = _check_hidden_types(hidden_types)
            self.logger_keys = _check_logger_keys(logger_keys)
            self.monitor = monitor or ActorCriticMonitor(
                None,
                saturation_threshold=saturation_threshold,
                freeze_tolerance=freeze_tolerance,
                grad_death_threshold=grad_death_threshold,
                squash=squash,
                unit="step",
                on_event=on_event,
            )
            self.preact_module = preact_module
            self.record_to_logger = record_to_logger
            self.rows: list[dict[str, Any]] = []
            self._handles: list[Any] = []
            self._hooks: list[Any] = []
            self._critic: dict[str, Any] = {}
            self._actor: dict[str, Any] = {}
            self._next_log = self.log_freq
            self._grad_steps = 0
            self._wrapped_dist: Any = None
            self._sampled: dict[str, Any] | None = None
            self._has_sampled = False  # SAC rows carry the sampled_* / log_std_* columns

        # -------------------------------------------------------------- wiring
        def _preact_target(self, actor: nn.Module) -> nn.Module:
            """The module ``preact_module`` names in ``actor`` (checked: it must be there)."""
            pm = self.preact_module
            if pm is None:
                return getattr(actor, "mu", None) or actor
            if isinstance(pm, str):
                try:
                    return actor.get_submodule(pm)
                except AttributeError:
                    names = [n for n, _ in actor.named_modules() if n]
                    raise ValueError(f"SaturationMonitorCallback: preact_module {pm!r} is no module of "
                                     f"model.actor (its modules: {', '.join(names)})") from None
            if not any(m is pm for m in actor.modules()):
                raise ValueError(f"SaturationMonitorCallback: preact_module ({type(pm).__name__}) is not a module "
                                 f"of this model's actor (pass e.g. model.actor.mu, or its name 'mu')")
            return pm

        def _init_callback(self) -> None:
            self.close()
            model = self.model
            actor, critic = getattr(model, "actor", None), getattr(model, "critic", None)
            if actor is None or critic is None or not hasattr(actor, "optimizer") or not hasattr(critic, "optimizer"):
                raise TypeError(
                    f"SaturationMonitorCallback needs an SB3 off-policy actor-critic with separate actor and "
                    f"critic optimisers (TD3, DDPG, SAC); got {type(model).__name__}"
                )
            target = self._preact_target(actor)  # before any hook, so a bad name leaves nothing attached
            self._a_params = _opt_params(actor.optimizer)
            self._c_params = _opt_params(critic.optimizer)
            self._a_named = selected_parameters(actor, self._a_params)  # walked once, not per step
            self._c_named = selected_parameters(critic, self._c_params)
            # TD3/DDPG step the actor only every policy_delay-th gradient step (SAC: every step)
            self._policy_delay = int(getattr(model, "policy_delay", 1) or 1)
            # every hook is recorded as soon as it exists, so close() removes a partial wiring too
            self._pre = register_preact_hook(target, training_only=True)
            self._hooks.append(self._pre)
            self._ahid = HiddenActivationHook(actor, types=self.hidden_types, training_only=True)
            self._hooks.append(self._ahid)
            q_nets = getattr(critic, "q_networks", None)
            self._chid = HiddenActivationHook(q_nets[0] if q_nets else critic, types=self.hidden_types, training_only=True)
            self._hooks.append(self._chid)
            self._handles.append(critic.optimizer.register_step_pre_hook(self._critic_pre_step))
            self._handles.append(actor.optimizer.register_step_pre_hook(self._actor_pre_step))
            self._handles.append(actor.optimizer.register_step_post_hook(self._actor_post_step))
            self._wrap_sac_sampling(actor)
            # gradient steps completed so far (TD3 counts them inside its loop, SAC after it,
            # so between ``learn`` calls both agree; during training we count critic steps)
            self._grad_steps = int(model._n_updates)
            if self.monitor.n_updates == 0:
                # reference snapshot, so the first update is compared too
                self.monitor.observe_params(collect_params(None, named=self._a_named),
                                            collect_params(None, named=self._c_named))
                self._next_log = (self._grad_steps // self.log_freq + 1) * self.log_freq

        def _wrap_sac_sampling(self, actor: Any) -> None:
            """SAC: keep the sampled pre-tanh value and log_std of the training forward."""
            dist = getattr(actor, "action_dist", None)
            if dist is None or not hasattr(dist, "gaussian_actions") or not hasattr(dist, "log_prob_from_params"):
                return  # TD3/DDPG (deterministic actor) or gSDE: no sampled pre-tanh value kept
            original = dist.log_prob_from_params  # the bound class method

            def log_prob_from_params(mean_actions: Any, log_std: Any, *args: Any, **kwargs: Any) -> Any:
                out = original(mean_actions, log_std, *args, **kwargs)
                if torch.is_grad_enabled():  # the training batch, not targets or acting
                    g = getattr(dist, "gaussian_actions", None)
                    self._sampled = {
                        "gaussian": None if g is None else g.detach(),
                        "log_std": log_std.detach() if isinstance(log_std, torch.Tensor) else None,
                    }
                return out

            dist.log_prob_from_params = log_prob_from_params
            self._wrapped_dist = dist

        def close(self) -> None:
            """Remove every hook and wrapper from the model (idempotent, never raises on a
            partial or absent wiring). Safe in ``finally``: SB3 calls
            ``_on_training_end`` only when ``learn`` returns normally. The monitor, the rows
            and :meth:`summary` stay available; a later ``learn`` re-attaches."""
            for h in self._handles:
                h.remove()
            for h in self._hooks:
                h.remove()
            self._handles, self._hooks = [], []
            dist = self._wrapped_dist
            if dist is not None and "log_prob_from_params" in vars(dist):
                del dist.log_prob_from_params  # back to the class method
            self._wrapped_dist = None
            self._actor, self._critic, self._sampled = {}, {}, None

        @property
        def attached(self) -> bool:
            """Whether hooks are currently attached to a model."""
            return bool(self._handles or self._hooks or self._wrapped_dist is not None)

        def __enter__(self) -> "SaturationMonitorCallback":
            return self

        def __exit__(self, *exc: Any) -> None:
            """Remove the hooks and, with ``save_path``, write the rows so far, also when
            training raised."""
            self.close()
            if self.save_path is not None:
                self.save()

        # ------------------------------------------------------ optimiser hooks
        def _critic_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
            self._grad_steps += 1  # one critic step per gradient step
            # only the critic step right before an actor step is observed: TD3 (SB3 counts
            # _n_updates before the critic step) steps the actor when it is a multiple of
            # policy_delay; skip the copy of the critic gradient otherwise
            if self._policy_delay > 1 and int(self.model._n_updates) % self._policy_delay != 0:
                return
            self._critic = {
                "grads": collect_grads(None, named=self._c_named),
                "hidden": self._chid.values,
            }

        def _actor_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
            self._actor = {
                "grads": collect_grads(None, named=self._a_named),
                "preact": self._pre.value,
                "hidden": self._ahid.values,
                "sampled": self._sampled,
            }
            self._sampled = None

        def _actor_post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
            model = self.model
            step = self._grad_steps
            log = step >= self._next_log
            mon = self.monitor
            mon.observe_update(
                step,
                self._actor.get("grads"),
                self._critic.get("grads"),
                collect_params(None, named=self._a_named),
                collect_params(None, named=self._c_named),
                preact=self._actor.get("preact"),
                actor_hidden=self._actor.get("hidden") or None,
                critic_hidden=self._critic.get("hidden") or None,
                log=log,
            )
            sampled = self._actor.get("sampled")
            self._actor, self._critic = {}, {}
            if not log:
                return
            self._next_log = (step // self.log_freq + 1) * self.log_freq
            row = mon.log_row(step)
            if sampled is not None or self._has_sampled or self._wrapped_dist is not None:
                row.update(self._sampled_columns(sampled))
            row["num_timesteps"] = int(model.num_timesteps)
            row["actor_frozen"] = int(mon.all_frozen_now)
            row["critic_frozen"] = int(mon.critic_frozen_now)
            row["actor_grad_dead"] = int(mon.grad_death_episode[0] is not None)
            self.rows.append(row)
            if self.record_to_logger:
                for k in self.logger_keys:
                    if k in row:
                        self.logger.record(f"gradasym/{k}", row[k])

        def _sampled_columns(self, sampled: dict[str, Any] | None) -> dict[str, float]:
            """SAC: statistics of the sampled pre-tanh value and of log_std (NaN if absent)."""
            self._has_sampled = True
            mon = self.monitor
            g = None if sampled is None else sampled.get("gaussian")
            st = preact_summary(g if g is not None else torch.empty(0), mon.squash, mon.saturation_threshold)
            out = {f"sampled_{k}": v for k, v in st.items()}
            ls = None if sampled is None else sampled.get("log_std")
            if ls is not None and ls.numel():
                ld = ls.to(torch.float64)
                out.update(zip(("log_std_mean", "log_std_min", "log_std_max"),
                               torch.stack([ld.mean(), ld.min(), ld.max()]).tolist()))  # fmt: skip
            else:
                out.update(log_std_mean=float("nan"), log_std_min=float("nan"), log_std_max=float("nan"))
            return out

        # ----------------------------------------------------------- callbacks
        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self.close()
            if self.save_path is not None:
                self.save()

        # -------------------------------------------------------------- output
        def dataframe(self) -> Any:
            """The recorded rows as a pandas DataFrame (``step`` = gradient step)."""
            import pandas as pd

            return pd.DataFrame(self.rows)

        def save(self, path: str | Path | None = None) -> Path:
            """Write the rows (Parquet, or CSV for ``*.csv``) atomically; returns the path."""
            from ..io import atomic_path

            path = Path(path) if path is not None else self.save_path
            if path is None:
                raise ValueError("no path given and no save_path set")
            df = self.dataframe()
            with atomic_path(path) as tmp:
                if path.suffix == ".csv":
                    df.to_csv(tmp, index=False)
                else:
                    df.to_parquet(tmp, index=False)
            return path

        def state_dict(self) -> dict[str, Any]:
            """The monitor's state, the rows and the logging position (plain values and CPU
            tensors, ``torch.save``-able): with :meth:`load_state_dict` a resumed training
            logs the rows an uninterrupted one would."""
            return {"monitor": self.monitor.state_dict(), "rows": [dict(r) for r in self.rows],
                    "next_log": int(self._next_log), "has_sampled": bool(self._has_sampled)}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            """Restore a :meth:`state_dict` (before the next ``learn``)."""
            self.monitor.load_state_dict(state["monitor"])
            self.rows = [dict(r) for r in state["rows"]]
            self._next_log = int(state["next_log"])
            self._has_sampled = bool(state["has_sampled"])

        def summary(self) -> dict[str, Any]:
            """The monitor's summary (stop / gradient-death / divergence steps, max |z|, final
            rho, ...) plus ``gradient_steps`` (gradient steps done, counted as critic
            optimiser steps), ``actor_updates`` and ``rows``: plain JSON-able values (NaN
            where nothing was observed; :func:`gradasym.io.write_json` writes it as null).
            Callable at any time, also after a crash or :meth:`close`."""
            out = self.monitor.summary()
            out["gradient_steps"] = int(self._grad_steps)
            out["actor_updates"] = int(self.monitor.n_updates)
            out["rows"] = len(self.rows)
            return out

    SaturationMonitorCallback.__module__ = __name__
    return SaturationMonitorCallback


# --------------------------------------------------------------------------- plasticity remedies
def _sb3_hidden_layers(model: Any) -> dict[str, list[Any]]:
    """The hidden layers (:class:`gradasym.nn_remedies.HiddenLayer`) of an SB3 off-policy model's
    actor (TD3/DDPG ``actor.mu``; SAC ``actor.latent_pi`` feeding ``mu`` and ``log_std``) and
    critic (every ``critic.q_networks[i]``)."""
    from ..nn_remedies import hidden_layers

    actor, critic = model.actor, model.critic
    if isinstance(getattr(actor, "latent_pi", None), nn.Sequential):  # SAC
        heads = [m for m in (getattr(actor, "mu", None), getattr(actor, "log_std", None)) if isinstance(m, nn.Linear)]
        a_layers = hidden_layers(actor.latent_pi, heads)
    elif isinstance(getattr(actor, "mu", None), nn.Sequential):  # TD3, DDPG
        a_layers = hidden_layers(actor.mu)
    else:
        a_layers = []
    c_layers = [hl for q in getattr(critic, "q_networks", []) if isinstance(q, nn.Sequential)
                for hl in hidden_layers(q)]
    return {"actor": a_layers, "critic": c_layers}


def _remedy_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"PlasticityRemedyCallback: {name} must be an int >= 0, got {value!r}")
    return int(value)


def _remedy_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"PlasticityRemedyCallback: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _build_remedy(BaseCallback: type) -> type:
    class PlasticityRemedyCallback(BaseCallback):  # type: ignore[misc, valid-type]
        """ReDo and Shrink & Perturb for SB3 TD3, DDPG and SAC (``docs/presets.md``).

        Every ``redo_period`` gradient steps (0 = off) the tau-dormant hidden units of the
        networks in ``networks`` are recycled (:func:`gradasym.nn_remedies.redo_mlp_`; scores from
        the activations of their latest training forward); every ``shrink_perturb_period``
        gradient steps their ``nn.Linear`` parameters become ``lambda * theta + sigma * fresh``
        (:func:`gradasym.nn_remedies.shrink_perturb_`). Applied right after the critic's
        optimiser step (a gradient step's count), before the actor loss of the same step.
        Fresh weights come from ``torch.Generator().manual_seed(seed)``. Target networks are
        left to SB3's Polyak update. ``applied`` lists what was done (``step``,
        ``redo_actor_units``, ``redo_critic_units``, ``shrink_perturb``); with
        ``record_to_logger`` the numbers also go to SB3's logger as ``gradasym/<key>``.
        """

        def __init__(self, redo_period: int = 0, redo_tau: float = 0.025, shrink_perturb_period: int = 0,
                     shrink_perturb_lambda: float = 0.8, shrink_perturb_sigma: float = 0.2,
                     networks: tuple[str, ...] = ("actor", "critic"), seed: int = 0,
                     record_to_logger: bool = True, verbose: int = 0) -> None:
            super().__init__(verbose)
            self.redo_period = _remedy_int(redo_period, "redo_period")
            self.shrink_perturb_period = _remedy_int(shrink_perturb_period, "shrink_perturb_period")
            self.redo_tau = _remedy_number(redo_tau, "redo_tau")
            self.shrink_perturb_lambda = _remedy_number(shrink_perturb_lambda, "shrink_perturb_lambda")
            self.shrink_perturb_sigma = _remedy_number(shrink_perturb_sigma, "shrink_perturb_sigma")
            nets = tuple(networks) if isinstance(networks, (list, tuple)) else (networks,)
            if not nets or any(n not in ("actor", "critic") for n in nets):
                raise ValueError(f"PlasticityRemedyCallback: networks must name 'actor' and/or 'critic', "
                                 f"got {networks!r}")
            self.networks = nets
            self.gen = torch.Generator().manual_seed(_remedy_int(seed, "seed"))
            self.record_to_logger = bool(record_to_logger)
            self.applied: list[dict[str, int]] = []
            self._handles: list[Any] = []
            self._hooks: dict[str, Any] = {}
            self._layers: dict[str, list[Any]] = {}
            self._steps = 0

        def _init_callback(self) -> None:
            self.close()
            model = self.model
            actor, critic = getattr(model, "actor", None), getattr(model, "critic", None)
            if not (isinstance(actor, nn.Module) and isinstance(critic, nn.Module)
                    and hasattr(actor, "optimizer") and hasattr(critic, "optimizer")):
                raise TypeError(f"PlasticityRemedyCallback needs an SB3 off-policy actor-critic with separate actor "
                                f"and critic optimisers (TD3, DDPG, SAC), got {type(model).__name__}")
            self._layers = _sb3_hidden_layers(model)
            for net in self.networks:
                layers = self._layers[net]
                if layers:
                    self._hooks[net] = HiddenActivationHook(layers=[hl.activation for hl in layers],
                                                            training_only=True)
            self._handles.append(critic.optimizer.register_step_post_hook(self._after_critic_step))

        def close(self) -> None:
            """Remove every hook (idempotent)."""
            for h in self._handles:
                h.remove()
            self._handles = []
            for hook in self._hooks.values():
                hook.remove()
            self._hooks = {}

        def _after_critic_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
            from ..nn_remedies import redo_mlp_, shrink_perturb_

            self._steps += 1
            t = self._steps
            redo = bool(self.redo_period) and t % self.redo_period == 0
            sp = bool(self.shrink_perturb_period) and t % self.shrink_perturb_period == 0
            if not (redo or sp):
                return
            row = {"step": t, "redo_actor_units": 0, "redo_critic_units": 0, "shrink_perturb": int(sp)}
            model = self.model
            for net in self.networks:
                module = getattr(model, net)
                if redo and net in self._hooks:
                    hook = self._hooks[net]
                    vals = hook._vals
                    pairs = [(hl, v) for hl, v in zip(self._layers[net], vals) if v is not None]
                    if pairs:
                        row[f"redo_{net}_units"] = redo_mlp_([hl for hl, _ in pairs], [v for _, v in pairs],
                                                             self.redo_tau, module.optimizer, self.gen)
                if sp:
                    shrink_perturb_(module, self.shrink_perturb_lambda, self.shrink_perturb_sigma, self.gen)
            self.applied.append(row)
            if self.record_to_logger:
                for k, v in row.items():
                    if k != "step":
                        self.logger.record(f"gradasym/{k}", v)

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self.close()

        def __enter__(self) -> "PlasticityRemedyCallback":
            return self

        def __exit__(self, *exc: Any) -> None:
            self.close()

    PlasticityRemedyCallback.__module__ = __name__
    return PlasticityRemedyCallback
