"""What a sweep is: a base config, grid axes, seeds and preset combinations.

A :class:`SweepSpec` expands into one :class:`RunSpec` per (configuration, seed).
Every run's config is built the same way, so that a sweep described in Python, in a
grid TOML file (``configs/grids/*.toml``) or re-read from a sweep folder's
``sweep.json`` produces the very same runs:

    copy of the base config  <-  preset combination  <-  axis values  <-  run.seed

The base config may belong to any registered algorithm (``gradasym.algos``): the
spec only uses the algorithm interface (``docs/algorithms.md``), so the same grid
code runs CCM-MADRL on MEC and Stable-Baselines3 agents on Gymnasium tasks.

Run ids follow ``docs/architecture.md``: ``alr{a}_clr{c}[_{axis}{v}...][_{presets}]_s{seed}``
(e.g. ``alr0.1_clr0.0001_s42``, ``alr0.01_clr0.001_layernorm+reward-norm_s7``).
Numbers are written in Python's shortest round-trip form (``repr``), so distinct
values always give distinct ids.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradasym import algos
from gradasym.algos.base import AlgoConfig, ConfigError, read_config_file
from gradasym.config import as_list, merge_over_presets, preset_names

#: The paper's learning-rate values (``docs/study.md``, "The experiment"): both axes of the default
#: grid use them, for every algorithm.
PAPER_LEARNING_RATES: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)

#: Short run-id labels for the two axes of the paper's grid.
_SHORT_LABELS = {"agent.actor_lr": "alr", "agent.critic_lr": "clr"}

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")

#: The most runs one sweep expands to; a larger grid is refused before it is expanded (each run
#: is a config held in memory and a row of ``sweep.json``: a million runs took gigabytes).
MAX_SWEEP_RUNS = 20_000


def paper_axes() -> dict[str, list[Any]]:
    """The paper's 4x4 grid: ``agent.actor_lr`` x ``agent.critic_lr`` over {1e-4 .. 1e-1}."""
    return {
        "agent.actor_lr": list(PAPER_LEARNING_RATES),
        "agent.critic_lr": list(PAPER_LEARNING_RATES),
    }


def format_value(value: Any) -> str:
    """Format one axis value for a run id (shortest exact form, filesystem-safe)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "x".join(format_value(v) for v in value)
    elif value is None:
        text = "none"
    else:
        text = str(value)
    return _SAFE.sub("-", text)


def _normalise(value: Any) -> Any:
    """JSON-compatible form of a config value (tuples become lists)."""
    return json.loads(json.dumps(value))


@dataclass
class RunSpec:
    """One run of a sweep: its id, its fully resolved config and how it differs from the base."""

    run_id: str
    config: AlgoConfig
    seed: int
    presets: list[str]  # the preset combination applied on top of the base config
    overrides: dict[str, Any]  # axis values and run.seed, as dotted keys

    def to_dict(self) -> dict[str, Any]:
        """The run's entry in ``sweep.json``."""
        plugin = algos.of(self.config)
        return {
            "run_id": self.run_id,
            "algo": plugin.name,
            "seed": self.seed,
            "actor_lr": self.config.agent.actor_lr,
            "critic_lr": self.config.agent.critic_lr,
            "presets": plugin.presets(self.config),
            "preset_combo": list(self.presets),
            "overrides": _normalise(self.overrides),
            "n_actors": plugin.n_actors(self.config),
            "progress_total": plugin.progress_total(self.config),
            "progress_unit": plugin.progress_unit,
            **_normalise(plugin.run_entry(self.config)),
        }


@dataclass
class SweepSpec:
    """A grid of runs: ``base`` config x ``axes`` x ``preset_combos`` x ``seeds``.

    * ``axes`` maps dotted config keys (``"agent.actor_lr"``) to the values to try;
      the default is the paper's 4x4 learning-rate grid. An empty dict means a single
      configuration (the base config itself).
    * ``seeds`` defaults to ``[base.run.seed]``.
    * ``preset_combos`` is an optional list of preset combinations (each a list of preset
      names, ``[]`` = the base config alone) applied on top of the base config; every
      combination is crossed with the whole grid.

    Values are checked and converted to the fields' types on construction, so a
    typo in an axis name fails before any run starts.
    """

    base: AlgoConfig = field(default_factory=lambda: algos.get(None).default_config())
    axes: dict[str, list[Any]] = field(default_factory=paper_axes)
    seeds: list[int] | None = None
    preset_combos: list[list[str]] | None = None

    def __post_init__(self) -> None:
        self.axes = {str(k): as_list(v, f"sweep axis '{k}'") for k, v in dict(self.axes).items()}
        plugin = algos.of(self.base)
        scratch = plugin.default_config()
        for key, values in self.axes.items():
            if key == "run.seed":
                raise ConfigError("sweep axis 'run.seed': list the seeds in `seeds` instead")
            if key == "presets":
                raise ConfigError("sweep axis 'presets': use `preset_combos` instead")
            if not values:
                raise ConfigError(f"sweep axis '{key}' has no values")
            converted = []
            for v in values:
                scratch.set(key, v, source=f"sweep axis '{key}'")
                section, name = key.split(".", 1)
                converted.append(getattr(getattr(scratch, section), name))
            if len({json.dumps(_normalise(v)) for v in converted}) != len(converted):
                raise ConfigError(f"sweep axis '{key}' lists a value twice: {values}")
            self.axes[key] = converted
        if self.seeds is None:
            self.seeds = [int(self.base.run.seed)]
        seeds = []
        for s in as_list(self.seeds, "sweep seeds", "integers"):
            if isinstance(s, bool) or not (isinstance(s, int) or (isinstance(s, float) and s.is_integer())):
                raise ConfigError(f"sweep seeds must be integers, got {s!r}")
            seeds.append(int(s))
        if not seeds:
            raise ConfigError("a sweep needs at least one seed")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"sweep seeds list a seed twice: {seeds}")
        self.seeds = seeds
        if self.preset_combos is not None:
            combos = []
            for combo in as_list(self.preset_combos, "sweep preset_combos", "preset combinations"):
                if isinstance(combo, str):
                    combo = [p for p in combo.split("+") if p]
                if not isinstance(combo, (list, tuple)) or not all(isinstance(p, str) for p in combo):
                    raise ConfigError(f"a preset combination must be a list of names, got {combo!r}")
                combos.append(list(combo))
            if not combos:
                raise ConfigError("preset_combos is empty (leave it unset for no combinations)")
            self.preset_combos = combos

    # ------------------------------------------------------------ expansion
    def expand(self) -> list[RunSpec]:
        """All runs, seed-major (the whole grid for the first seed comes first).

        Raises :class:`ConfigError` when a resulting config is invalid or two runs
        would get the same id.
        """
        runs: list[RunSpec] = []
        combos = self.preset_combos if self.preset_combos is not None else [[]]
        keys = list(self.axes)
        size = len(self.seeds or []) * len(combos) * math.prod(len(v) for v in self.axes.values())
        if size > MAX_SWEEP_RUNS:
            raise ConfigError(f"the grid has {size:,} runs ({' x '.join(str(len(v)) for v in self.axes.values())} "
                              f"values x {len(combos)} preset combination(s) x {len(self.seeds or [])} seed(s)), more "
                              f"than a sweep takes ({MAX_SWEEP_RUNS:,}); split it into several sweeps")
        labels = _axis_labels(keys)
        plugin = algos.of(self.base)
        for seed in self.seeds or []:
            for combo in combos:
                for values in itertools.product(*(self.axes[k] for k in keys)):
                    cfg = copy.deepcopy(self.base)
                    for name in combo:
                        plugin.apply_preset(cfg, name)
                    overrides: dict[str, Any] = {}
                    for key, value in zip(keys, values):
                        cfg.set(key, value, source=f"sweep axis '{key}'")
                        overrides[key] = value
                    cfg.run.seed = seed
                    overrides["run.seed"] = seed
                    run_id = make_run_id(cfg, {k: overrides[k] for k in keys}, labels, seed)
                    try:
                        cfg.validate()
                    except ConfigError as exc:
                        raise ConfigError(f"sweep run {run_id}: {exc}") from None
                    runs.append(RunSpec(run_id, cfg, seed, list(combo), overrides))
        seen: dict[str, int] = {}
        for r in runs:
            seen[r.run_id] = seen.get(r.run_id, 0) + 1
        dupes = [k for k, n in seen.items() if n > 1]
        if dupes:
            raise ConfigError(f"sweep produces duplicate run ids (repeated values?): {dupes[:5]}")
        return runs

    # ------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description (the grid part of ``sweep.json``)."""
        return {
            "base_config": algos.to_dict(self.base),
            "axes": _normalise(self.axes),
            "seeds": list(self.seeds or []),
            "preset_combos": None if self.preset_combos is None else [list(c) for c in self.preset_combos],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SweepSpec":
        """Rebuild a spec from :meth:`to_dict` output (e.g. an existing ``sweep.json``)."""
        base = algos.config_from_dict(data.get("base_config", {}), source="sweep.json base_config")
        return cls(
            base=base,
            axes=data.get("axes", {}),
            seeds=data.get("seeds"),
            preset_combos=data.get("preset_combos"),
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        presets: list[str] | None = None,
        overrides: dict[str, Any] | None = None,
        seeds: list[int] | None = None,
        axes: dict[str, list[Any]] | None = None,
        preset_combos: list[list[str]] | None = None,
    ) -> "SweepSpec":
        """Load a grid TOML/YAML file (format in ``docs/sweeps.md``).

        The file has the usual config sections (``[env]``, ``[agent]``, ``[run]``,
        top-level ``presets = [...]``) for the base config, a ``[grid]`` table of axes
        (``"agent.actor_lr" = [...]``) and optionally a ``[sweep]`` table with
        ``seeds`` and ``preset_combos``. ``presets``/``overrides`` (e.g. from the
        command line) are applied to the base config like ``load_config`` does
        (defaults <- presets and file <- overrides); non-None ``seeds``, ``axes``
        (merged over the file's axes) and ``preset_combos`` replace the file's.
        """
        data, grid, sweep = read_grid_file(path)
        base = build_base_config(data, presets=presets, overrides=overrides, source=str(path))
        file_axes = grid if grid is not None else paper_axes()
        if axes:
            file_axes.update(axes)
        return cls(
            base=base,
            axes=file_axes,
            seeds=seeds if seeds is not None else sweep.get("seeds"),
            preset_combos=preset_combos if preset_combos is not None else sweep.get("preset_combos"),
        )


def read_grid_file(path: str | Path) -> tuple[dict[str, Any], dict[str, list[Any]] | None, dict[str, Any]]:
    """A grid file's three parts, checked: its base config tables (``[env]``, ``[agent]``, ``[run]``,
    ``presets``, ``algo``), its ``[grid]`` axes (None when it has none) and its ``[sweep]`` table.

    Axes, ``seeds``, ``preset_combos`` and ``presets`` must be lists: a string or a number
    (``"agent.batch_size" = "32"``, ``seeds = 5``) is a ConfigError naming the key and the file,
    not a string split into characters.
    """
    data = dict(read_config_file(path))
    data.pop("description", None)
    grid = data.pop("grid", None)
    sweep = data.pop("sweep", {}) or {}
    if grid is not None and not isinstance(grid, dict):
        raise ConfigError(f"{path}: [grid] must be a table of 'section.field' = [values]")
    if not isinstance(sweep, dict):
        raise ConfigError(f"{path}: [sweep] must be a table")
    unknown = set(sweep) - {"seeds", "preset_combos"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys in [sweep]: {sorted(unknown)} (known: seeds, preset_combos)")
    preset_names(data.get("presets"), str(path))
    axes = None if grid is None else {str(k): as_list(v, f"{path}: grid axis '{k}'") for k, v in grid.items()}
    if sweep.get("seeds") is not None:
        as_list(sweep["seeds"], f"{path}: [sweep] seeds", "integers")
    if sweep.get("preset_combos") is not None:
        as_list(sweep["preset_combos"], f"{path}: [sweep] preset_combos", 'preset combinations (e.g. ["layernorm"])')
    return data, axes, sweep


def build_base_config(
    data: dict[str, Any] | None = None,
    presets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    source: str = "config",
    algo: str | None = None,
) -> AlgoConfig:
    """Resolve a base config from a nested dict the way ``load_config`` resolves a file.

    defaults <- presets (the dict's own ``presets`` first) and dict sections (which may not contradict
    them: :func:`~gradasym.config.merge_over_presets`) <- dotted overrides.
    The algorithm is ``algo``, else the dict's ``"algo"``, else the default (CCM-MADRL).
    """
    data = dict(data or {})
    named = data.pop("algo", None)
    if algo is not None and named is not None and algos.get(algo).name != algos.get(named).name:
        raise ConfigError(f"{source}: the file is for algo '{named}', but '{algo}' was asked for")
    plugin = algos.get(algo or named)
    cfg = plugin.default_config()
    for name in preset_names(data.pop("presets", None), source) + preset_names(presets, "the presets argument"):
        plugin.apply_preset(cfg, name)
    if data:
        merge_over_presets(cfg, data, source=source)
    for key, value in (overrides or {}).items():
        cfg.set(key, value)
    return cfg.validate()


def _axis_labels(keys: list[str]) -> dict[str, str]:
    """Run-id label per axis: alr/clr for the learning rates, else the field name."""
    labels: dict[str, str] = {}
    names = [k.split(".", 1)[1] for k in keys]
    for key, name in zip(keys, names):
        if key in _SHORT_LABELS:
            labels[key] = _SHORT_LABELS[key]
        elif names.count(name) > 1 or name in ("alr", "clr"):
            labels[key] = _SAFE.sub("-", key.replace(".", "-"))
        else:
            labels[key] = _SAFE.sub("-", name)
    return labels


def make_run_id(cfg: AlgoConfig, axis_values: dict[str, Any], labels: dict[str, str] | None, seed: int) -> str:
    """``alr{a}_clr{c}[_{axis}{v}...][_{p1+p2}]_s{seed}`` for a resolved config.

    The learning rates always appear (read from the config); other axes appear in
    their declared order; all presets of the config (base and combination) follow,
    joined by ``+``.
    """
    labels = labels or _axis_labels(list(axis_values))
    parts = [f"alr{format_value(cfg.agent.actor_lr)}", f"clr{format_value(cfg.agent.critic_lr)}"]
    for key, value in axis_values.items():
        if key in _SHORT_LABELS:
            continue
        parts.append(f"{labels[key]}{format_value(value)}")
    presets = algos.of(cfg).presets(cfg)
    if presets:
        parts.append(_SAFE.sub("-", "+".join(presets)))
    parts.append(f"s{seed}")
    return "_".join(parts)


def parse_axis(text: str) -> tuple[str, list[str]]:
    """Parse a command-line axis ``"agent.actor_lr=1e-4,1e-3"`` into ``(key, ["1e-4", "1e-3"])``.

    Values stay strings; :class:`SweepSpec` converts them to the field's type.
    """
    if "=" not in text:
        raise ConfigError(f"axis '{text}' must look like section.field=v1,v2,...")
    key, _, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"axis '{key}' has no values")
    return key.strip(), items


def parse_preset_combo(text: str) -> list[str]:
    """``"layernorm+reward-norm"`` -> ``["layernorm", "reward-norm"]``; ``"baseline"``/``""`` -> ``[]``."""
    return [p for p in text.split("+") if p and p != "baseline"]
