"""The algorithm interface: what the CLI, sweeps and the report need to know about an algorithm.

A run is ``(algorithm, task, hyperparameters, seed)``. Everything algorithm-specific
(its config class, its training loop, its units) sits behind one small
:class:`Algorithm` plugin, so that ``gradasym.sweep`` and ``gradasym.report`` never
import an algorithm's own code. The contract (``docs/algorithms.md``):

* the config object has ``to_dict()``, ``set(dotted, value, source=)`` and
  ``validate() -> self`` and the fields every generic module reads:
  ``agent.actor_lr``, ``agent.critic_lr``, ``run.seed`` and ``run.threads``;
* ``to_dict()`` carries ``"algo"`` (the registry name) so a folder's ``config.json``
  or ``sweep.json`` can be read back with :func:`gradasym.algos.config_from_dict`;
* ``runner(cfg, out_dir, resume=, progress=, show_progress=) -> summary dict`` trains
  one config into a run folder (``docs/architecture.md``); it is a module-level
  function so that worker processes and Ray can receive it;
* ``progress_unit`` / :meth:`progress_total` say what a run counts (``"episodes"``,
  ``"environment steps"``) and how many; ``stop_unit`` is the unit of its stop steps;
* ``can_resume`` False: an unfinished run folder cannot be continued (the runner
  refuses ``resume``; a sweep moves the folder to ``stale/`` and reruns it);
  :meth:`Algorithm.rerun_note` says which of the two a rerun does (terminal messages);
* ``report_extras`` names optional report parts (``"paper"``: the paper's tables);
* ``summary_keys`` maps generic roles (``done``, ``total``, ``stop``, ``return_first``,
  ``return_last``, ``seconds_per_unit``, optionally ``grad_death``) to the run's own
  ``summary.json`` keys.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from ..config import ConfigError, merge_over_presets, preset_names, read_config_file

__all__ = ["AlgoConfig", "Algorithm", "ConfigError", "Runner", "read_config_file"]

#: ``runner(cfg, out_dir, resume=, progress=, show_progress=) -> summary`` (``run_experiment``'s signature).
Runner = Callable[..., dict]


class AlgoConfig(Protocol):
    """What generic code may use of an algorithm's config object."""

    agent: Any  # .actor_lr, .critic_lr
    run: Any  # .seed, .threads

    def to_dict(self) -> dict[str, Any]: ...
    def set(self, dotted: str, value: Any, source: str = "override") -> None: ...
    def validate(self) -> "AlgoConfig": ...


class Algorithm(ABC):
    """One algorithm (or family) behind the common run / sweep / report pipeline."""

    #: registry name, e.g. ``"ccm-madrl"``, ``"td3"``
    name: str
    #: what ``progress_total`` counts ("episodes", "environment steps")
    progress_unit: ClassVar[str]
    #: unit of the stop / gradient-death steps in ``summary.json``
    stop_unit: ClassVar[str]
    #: whether an unfinished run folder can be continued bit-identically
    can_resume: ClassVar[bool]
    #: optional report parts: "paper" = the paper's tables and constants
    report_extras: ClassVar[frozenset[str]] = frozenset()
    #: extra ``summary.json`` keys copied into the sweep summary table
    summary_columns: ClassVar[tuple[str, ...]] = ()
    #: which ``summary.json`` key plays each generic role (view, report): ``done`` / ``total``
    #: (``progress_unit``), ``stop`` (``stop_unit``), ``return_first`` / ``return_last``
    #: (mean episode return over the first / last 10 % of episodes), ``seconds_per_unit``
    summary_keys: ClassVar[dict[str, str]] = {}
    #: what an episode's summed reward is called in tables and figures
    return_label: ClassVar[str] = "return"
    #: per table file of a run folder, the key columns it must have (``gradasym.schemas.check_table``)
    table_columns: ClassVar[dict[str, tuple[str, ...]]] = {}

    # -------------------------------------------------------------- configs
    @abstractmethod
    def default_config(self) -> AlgoConfig:
        """The algorithm's default (unvalidated) config."""

    def config_from_dict(self, data: dict[str, Any], source: str = "config") -> AlgoConfig:
        """A config from a (partial) nested dict such as ``config.json`` (``algo``/``version`` ignored)."""
        data = {k: v for k, v in data.items() if k not in ("algo", "version")}
        cfg = self.default_config()
        cfg.merge(data, source=source)  # type: ignore[attr-defined]
        return cfg

    def load_config(self, config_file: str | Path | None = None, presets: list[str] | None = None,
                    overrides: dict[str, Any] | None = None) -> AlgoConfig:
        """defaults <- presets and file (:func:`~gradasym.config.merge_over_presets`) <- dotted overrides, validated."""
        cfg = self.default_config()
        data = dict(read_config_file(config_file)) if config_file else {}
        data.pop("algo", None)
        data.pop("description", None)
        for name in preset_names(data.pop("presets", None), str(config_file)) + preset_names(presets, "the presets argument"):
            self.apply_preset(cfg, name)
        if data:
            merge_over_presets(cfg, data, source=str(config_file))
        for key, value in (overrides or {}).items():
            cfg.set(key, value)
        return cfg.validate()

    def apply_preset(self, cfg: AlgoConfig, name: str) -> None:
        """Apply a mitigation preset (only algorithms with presets override this)."""
        raise ConfigError(f"presets (--preset) are a ccm-madrl option; they do not apply to --algo {self.name} "
                          f"(got '{name}')")

    def presets(self, cfg: AlgoConfig) -> list[str]:
        """The presets applied to ``cfg`` (part of run ids)."""
        return []

    def has_field(self, dotted: str) -> bool:
        """Whether ``section.field`` exists in this algorithm's config."""
        section, _, name = dotted.partition(".")
        obj = getattr(self.default_config(), section, None)
        return dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}

    # -------------------------------------------------------------- runs
    @property
    @abstractmethod
    def runner(self) -> Runner:
        """The module-level function that trains one config into a run folder."""

    @abstractmethod
    def progress_total(self, cfg: AlgoConfig) -> int:
        """How many ``progress_unit`` a run of ``cfg`` does."""

    def n_actors(self, cfg: AlgoConfig) -> int:
        """Number of actor networks (the view shows 'actors stopped k/n')."""
        return 1

    def memory_bytes(self, cfg: AlgoConfig) -> int:
        """Estimated peak bytes of one run (0 = not estimated); sweeps size workers by it."""
        return 0

    def check_memory(self, cfg: AlgoConfig, concurrent: int = 1) -> None:
        """Raise ConfigError when ``concurrent`` runs of ``cfg`` cannot fit in memory (default: no check)."""

    def rerun_note(self) -> str:
        """What running the same command again does with this algorithm's unfinished runs
        (``can_resume``): the interrupted sweep's message says it."""
        if self.can_resume:
            return "unfinished runs resume from their last checkpoint"
        return f"unfinished runs restart from scratch ({self.name} runs cannot resume)"

    def return_bounds(self, env_id: str | None) -> tuple[float, float]:
        """The values an episode return of task ``env_id`` can take, ``(lowest, highest)``: the report
        clips intervals of returns to them (default: unbounded, nothing clipped)."""
        return (-math.inf, math.inf)

    def describe(self, cfg: AlgoConfig) -> str:
        """One line for the terminal before a run starts."""
        return (f"{self.name}: actor_lr={cfg.agent.actor_lr} critic_lr={cfg.agent.critic_lr} "
                f"seed={cfg.run.seed}")

    def run_entry(self, cfg: AlgoConfig) -> dict[str, Any]:
        """Algorithm-specific keys of a run's ``sweep.json`` entry (besides the generic ones)."""
        return {}

