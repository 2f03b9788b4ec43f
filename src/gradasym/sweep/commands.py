"""Command-line glue for ``gradasym sweep`` and ``gradasym reproduce``.

``gradasym.cli`` calls :func:`add_cli` with its own config options (``--config``,
``--preset``, ``--actor-lr``, ``--episodes``, ``--threads``, ``--set``...) so that the
sweep's base config is given exactly like ``gradasym run``'s::

    from .sweep import add_cli
    add_cli(sub, _add_config_args, config_from_args)

Each sub-command sets ``func`` (``cmd_sweep`` / ``cmd_reproduce``) returning the exit
code: 0 all runs finished, 1 some run failed, 2 bad arguments / the folder holds
another sweep / runs left unfinished, 130 interrupted (the same command again resumes or restarts
the unfinished runs, as the message says for their algorithm).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from gradasym import algos
from gradasym.algos.base import AlgoConfig, ConfigError

from .core import SweepInterrupted, SweepResult, load_spec, run_sweep
from .reproduction import DEFAULT_SEEDS, FULL_EPISODES, REDUCED_EPISODES, reproduce
from .spec import SweepSpec, paper_axes, parse_axis, parse_preset_combo, read_grid_file
from .store import SWEEP_JSON, SweepError, SweepMismatchError, read_json

AddConfigArgs = Callable[[argparse.ArgumentParser], None]
ConfigFromArgs = Callable[[argparse.Namespace], AlgoConfig]

#: Sweep options that define the grid (with none of them given, an existing sweep is continued).
_GRID_DESTS = ("grid", "axis", "seeds", "preset_combo")

#: The one line for the retired ``--batch-runs`` option (docs/sweeps.md, "Batched runs (retired)").
BATCH_RUNS_RETIRED = ("--batch-runs was retired with the batched trainer, which gained too little over "
                      "single runs to keep a second fast path (docs/sweeps.md); drop the option: every "
                      "run trains on its own")


# ------------------------------------------------------------------ fallback config options
def _own_config_args(p: argparse.ArgumentParser) -> None:
    """Minimal base-config options, used when the caller passes none."""
    p.add_argument("--config", type=Path, default=None, help="base config file (TOML/YAML; default: none)")
    p.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="preset for every run (repeatable; default: none)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a base config field, e.g. run.episodes=400 (repeatable; default: none)")


def _own_config_from_args(args: argparse.Namespace) -> AlgoConfig:
    overrides: dict[str, Any] = {}
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise ConfigError(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    plugin = algos.get(getattr(args, "algo", None))
    return plugin.load_config(getattr(args, "config", None), presets=getattr(args, "preset", []), overrides=overrides)


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, _, v = text.partition("=")
    return k.strip(), v.strip()


def _json_or_str(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _add_execution_arguments(p: argparse.ArgumentParser, workers_help: str) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=None, help=workers_help)
    g.add_argument("--backend", choices=["local", "ray", "submitit"], default="local",
                   help="where runs execute: local processes (default), a Ray cluster, SLURM via submitit")
    g.add_argument("--address", default=None, help="Ray cluster address for ray.init, e.g. 'auto' on a cluster "
                                                   "node (default: none, a local Ray instance)")
    g.add_argument("--backend-option", action="append", default=[], type=_kv, metavar="KEY=VALUE",
                   help="ray: ray.init keyword; submitit: executor parameter, e.g. timeout_min=600, "
                        "slurm_partition=cpu, cluster=local (repeatable; default: none)")
    # retired (docs/sweeps.md): still parsed, so that an old command line gets one line saying so
    # (check_retired) instead of argparse's "unrecognized arguments"
    g.add_argument("--batch-runs", default=None, help=argparse.SUPPRESS)
    g.add_argument("--no-live", dest="live", action="store_false",
                   help="plain log lines instead of the live view (default: live view when stderr is a "
                        "terminal, plain lines otherwise)")
    g.add_argument("--force", action="store_true",
                   help="redefine a folder that holds a different sweep (changed run folders move to stale/; "
                        "default: off, such a folder is an error)")


# ------------------------------------------------------------------ gradasym sweep
def add_sweep_arguments(p: argparse.ArgumentParser, add_config_args: AddConfigArgs | None = None) -> None:
    """Options of ``gradasym sweep``: the base config (``add_config_args``) plus the grid and execution."""
    (add_config_args or _own_config_args)(p)
    g = p.add_argument_group("grid (default: actor_lr x critic_lr over 1e-4..1e-1, the paper's 4x4)")
    g.add_argument("--out", type=Path, default=Path("results/sweep"),
                   help="sweep folder (default results/sweep); the same command again resumes it")
    g.add_argument("--grid", type=Path, default=None,
                   help="grid file: base config tables + [grid] axes + [sweep] seeds/preset_combos "
                        "(e.g. configs/grids/paper.toml; default: none, the paper's 4x4 grid)")
    g.add_argument("--axis", action="append", default=[], metavar="SECTION.FIELD=V1,V2",
                   help="grid axis, e.g. agent.batch_size=32,64 (repeatable; adds to or replaces the grid's; "
                        "default: none)")
    g.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one run per configuration and seed (default: the grid file's, else --seed / 42)")
    g.add_argument("--preset-combo", action="append", default=None, metavar="A+B",
                   help="preset combination crossed with the grid; 'baseline' = none (repeatable; "
                        "default: the grid file's, else none)")
    _add_execution_arguments(p, "local: worker processes, each running one run with run.threads torch "
                                "threads (default 1: one run after the other); ray: max tasks in flight")


def _config_dests(add_config_args: AddConfigArgs) -> list[str]:
    probe = argparse.ArgumentParser(add_help=False)
    add_config_args(probe)
    return [a.dest for a in probe._actions]


def _continues(args: argparse.Namespace, add_config_args: AddConfigArgs | None) -> bool:
    """Whether ``args`` continue the sweep recorded in ``OUT/sweep.json``: it exists and no
    config, grid, seed or preset-combination option is given."""
    dests = _config_dests(add_config_args or _own_config_args) + list(_GRID_DESTS)
    defining = any(getattr(args, d, None) not in (None, [], False) for d in dests)
    return not defining and (Path(args.out) / SWEEP_JSON).is_file()


def spec_from_args(args: argparse.Namespace, config_from_args: ConfigFromArgs | None = None,
                   add_config_args: AddConfigArgs | None = None) -> SweepSpec:
    """The :class:`SweepSpec` that ``gradasym sweep`` options describe.

    * base config: the config options (as for ``gradasym run``), or with ``--grid``
      the grid file's config tables under the same options;
    * axes: the grid file's (or the paper's 4x4); ``--actor-lr``/``--critic-lr``
      pin that axis to one value; ``--axis`` adds or replaces axes;
    * with no config or grid option at all and an existing ``OUT/sweep.json``, the
      recorded sweep is continued.
    """
    config_from_args = config_from_args or _own_config_from_args
    if _continues(args, add_config_args):
        print(f"continuing the sweep recorded in {Path(args.out) / SWEEP_JSON}", file=sys.stderr)
        return load_spec(args.out)

    axes: dict[str, list[Any]] = paper_axes()
    seeds = args.seeds
    combos = [parse_preset_combo(c) for c in args.preset_combo] if args.preset_combo else None
    if args.grid is not None:
        if getattr(args, "config", None) is not None:
            raise ConfigError("give either --grid (a grid file holds its base config) or --config, not both")
        data, grid, sweep = read_grid_file(args.grid)
        if grid is not None:
            axes = grid
        seeds = seeds if seeds is not None else sweep.get("seeds")
        combos = combos if combos is not None else sweep.get("preset_combos")
        with tempfile.TemporaryDirectory() as tmp:
            base_file = Path(tmp) / f"{Path(args.grid).stem}.json"
            base_file.write_text(json.dumps(data))
            file_args = copy.copy(args)
            file_args.config = base_file
            try:
                base = config_from_args(file_args)
            except ConfigError as exc:  # name the grid file, not this temporary copy of its tables
                raise ConfigError(str(exc).replace(str(base_file), str(args.grid))) from None
    else:
        base = config_from_args(args)
    for flag, key in (("actor_lr", "agent.actor_lr"), ("critic_lr", "agent.critic_lr")):
        if getattr(args, flag, None) is not None:
            section, name = key.split(".")
            axes[key] = [getattr(getattr(base, section), name)]
    for text in args.axis:
        key, values = parse_axis(text)
        axes[key] = values
    return SweepSpec(base=base, axes=axes, seeds=seeds, preset_combos=combos)


def cmd_sweep(args: argparse.Namespace, config_from_args: ConfigFromArgs | None = None,
              add_config_args: AddConfigArgs | None = None) -> int:
    """``gradasym sweep``: run or resume a grid; returns the exit code."""
    def call() -> pd.DataFrame:
        check_retired(args)  # one line before any work
        spec = spec_from_args(args, config_from_args, add_config_args)
        try:
            return run_sweep(spec, args.out, workers=args.workers, backend=args.backend, address=args.address,
                             live=args.live, force=args.force, backend_options=_backend_options(args))
        except SweepMismatchError as exc:
            if _continues(args, add_config_args) or read_json(Path(args.out) / SWEEP_JSON) is None:
                raise
            raise SweepMismatchError(f"{exc}; to continue the sweep recorded in {args.out}, give --out and "
                                     "execution options only (no config, grid, seed or preset option)") from None

    return _run_command("sweep", args.out, call)


def check_retired(args: argparse.Namespace) -> None:
    """A ConfigError (one line) for a retired option given on the command line."""
    if getattr(args, "batch_runs", None) is not None:
        raise ConfigError(BATCH_RUNS_RETIRED)


def _backend_options(args: argparse.Namespace) -> dict[str, Any] | None:
    return {k: _json_or_str(v) for k, v in args.backend_option} or None


def _run_command(name: str, out: Path, call: Callable[[], pd.DataFrame]) -> int:
    """Run a sweep-like command; errors and interrupts become exit codes (2, 130)."""
    try:
        table = call()
    except SweepInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except (SweepError, ConfigError, ImportError, ValueError) as exc:
        print(f"gradasym {name}: error: {exc}", file=sys.stderr)
        return 2
    result = SweepResult.from_table(table)
    print(f"summary: {Path(out) / 'summary.csv'}  ({result.describe()})")
    return result.exit_code


# ------------------------------------------------------------------ gradasym reproduce
def add_reproduce_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``gradasym reproduce``."""
    p.add_argument("--out", type=Path, default=Path("results/reproduce"),
                   help="results folder (default results/reproduce); the same command again resumes it")
    p.add_argument("--full", action="store_true",
                   help=f"the paper's {FULL_EPISODES}-episode protocol (default: {REDUCED_EPISODES} episodes)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                   help="seeds (default 42); more seeds later add runs to the same folder")
    p.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="preset for every run, e.g. layernorm (repeatable; use its own --out; default: none)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: 1, the setting of the committed results)")
    p.add_argument("--device", default=None,
                   help="run.device of every run: 'cpu', 'cuda' or 'cuda:N' (default: cpu, the device of the "
                        "committed results)")
    p.add_argument("--keep-replay", action="store_true",
                   help="keep the replay buffer in each finished run's final checkpoint (up to 36 MB per run), needed "
                        "only to extend the runs later (default: off, dropped; unfinished runs always keep it)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="skip the HTML report at the end (the summary and heatmap are still written; "
                        "default: the report is written)")
    _add_execution_arguments(p, "local worker processes (default: one per core); ray: max tasks in flight")


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``gradasym reproduce``: the paper grid, its summary, heatmap and report; returns the exit code."""
    def call() -> pd.DataFrame:
        check_retired(args)  # one line before any work
        return reproduce(
            args.out, full=args.full, seeds=args.seeds, presets=args.preset, workers=args.workers, live=args.live,
            backend=args.backend, address=args.address, force=args.force, report=args.report,
            threads=args.threads, backend_options=_backend_options(args), keep_replay=args.keep_replay,
            device=args.device)

    return _run_command("reproduce", args.out, call)


# ------------------------------------------------------------------ registration
def add_cli(sub: Any, add_config_args: AddConfigArgs | None = None,
            config_from_args: ConfigFromArgs | None = None) -> None:
    """Register ``sweep`` and ``reproduce`` on an argparse sub-parsers object.

    ``add_config_args``/``config_from_args`` are the CLI's base-config options and
    their resolver (``gradasym.cli._add_config_args`` / ``config_from_args``); without
    them a minimal ``--config/--preset/--set`` set is used. Each parser gets
    ``func(args) -> exit code``.
    """
    p = sub.add_parser("sweep", help="a grid x seeds of runs: resumable, parallel, local or on Ray/SLURM",
                       description="Run every (configuration, seed) of a grid into one folder "
                                   "(docs/sweeps.md). The same command again resumes it.")
    add_sweep_arguments(p, add_config_args)
    p.set_defaults(func=lambda a: cmd_sweep(a, config_from_args, add_config_args))
    p = sub.add_parser("reproduce", help="the paper's learning-rate grid, summary, heatmap and report",
                       description="Run the paper's 4x4 learning-rate grid (reduced scale by default, "
                                   "--full for 2,000 episodes), then write the summary, the "
                                   "stopping-episode heatmap and the report (docs/sweeps.md).")
    add_reproduce_arguments(p)
    p.set_defaults(func=cmd_reproduce)
