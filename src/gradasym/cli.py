"""The ``gradasym`` command line: a thin layer over the library API.

``gradasym run``        one training run (``gradasym.runner.run_experiment``)
``gradasym sweep``      a grid x seeds (``gradasym.sweep.run_sweep``)
``gradasym reproduce``  the paper grid at a reduced scale, then the heatmap
``gradasym report``     figures, tables and report.html from result folders
``gradasym presets``    list the mitigation presets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import Config, ConfigError, available_presets, load_config

# Flag -> dotted config field, for the options every training command accepts.
RUN_FLAGS: dict[str, tuple[str, type, str]] = {
    "--actor-lr": ("agent.actor_lr", float, "actor learning rate (all 50 actors)"),
    "--critic-lr": ("agent.critic_lr", float, "critic (master) learning rate"),
    "--episodes": ("run.episodes", int, "number of episodes (paper: 2000)"),
    "--seed": ("run.seed", int, "the one seed every generator derives from (paper: 42)"),
    "--actor-update": ("agent.actor_update", str,
                       "'sequential' (faithful, default) or 'simultaneous' (faster, different algorithm)"),
    "--mode": ("env.mode", str, "environment mode: 'H2' (default, shared units) or 'TOBM'"),
    "--n-agents": ("env.n_agents", int, "number of user devices / client actors (paper: 50)"),
    "--steps-per-episode": ("env.steps_per_episode", int, "environment steps per episode (published numbers: 10)"),
    "--log-interval": ("run.log_interval", int, "episodes between tracking rows (default 10)"),
    "--batch-size": ("agent.batch_size", int, "replay batch size (paper: 64)"),
    "--tracking": ("run.tracking", str, "'clean' (default definitions) or 'original' (what the original code logged)"),
    "--freeze-tolerance": ("run.freeze_tolerance", float, "max |delta| counted as frozen; 0 = exact equality"),
    "--checkpoint-interval": ("run.checkpoint_interval", int, "episodes between checkpoints (default 50)"),
    "--eval-interval": ("run.eval_interval", int, "episodes between greedy evaluations (0 = off)"),
    "--threads": ("run.threads", int, "torch threads (0 = torch default)"),
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (file < presets < flags < --set)")
    g.add_argument("--config", type=Path, help="TOML/YAML config file (sections env, agent, run)")
    g.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="mitigation preset from configs/ (repeatable; see `gradasym presets`)")
    for flag, (_, tp, help_) in RUN_FLAGS.items():
        g.add_argument(flag, type=tp, default=None, help=help_)
    g.add_argument("--early-stop", dest="early_stop", action=argparse.BooleanOptionalAction, default=None,
                   help="end the run 100 episodes after all actors stopped (default on)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set agent.gamma=0.95 (repeatable)")


def config_from_args(args: argparse.Namespace) -> Config:
    """Resolve file, presets, flags and --set overrides into a validated Config."""
    overrides: dict[str, Any] = {}
    for flag, (dotted, _, _) in RUN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            overrides[dotted] = value
    if getattr(args, "early_stop", None) is not None:
        overrides["run.early_stop"] = args.early_stop
    for item in getattr(args, "set", []):
        if "=" not in item:
            raise ConfigError(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    return load_config(args.config, presets=args.preset, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_experiment

    cfg = config_from_args(args)
    out = args.out or Path("results") / _default_run_name(cfg)
    print(f"gradasym {__version__}: actor_lr={cfg.agent.actor_lr} critic_lr={cfg.agent.critic_lr} "
          f"seed={cfg.run.seed} actor_update={cfg.agent.actor_update} presets={cfg.presets or ['baseline']} -> {out}")
    summary = run_experiment(cfg, out, resume=args.resume, show_progress=not args.quiet)
    keys = ["status", "episodes_run", "stopping_episode", "critic_stopped", "max_abs_preactivation",
            "final_saturation_ratio", "seconds_per_episode"]
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0


def _default_run_name(cfg: Config) -> str:
    tag = "_".join(cfg.presets)
    return f"run_alr{cfg.agent.actor_lr:g}_clr{cfg.agent.critic_lr:g}" + (f"_{tag}" if tag else "") + f"_s{cfg.run.seed}"


def cmd_presets(args: argparse.Namespace) -> int:
    from .config import preset_path, read_config_file

    for name in available_presets():
        desc = read_config_file(preset_path(name)).get("description", "")
        print(f"{name:20s} {desc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradasym", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gradasym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train one configuration with full tracking")
    _add_config_args(p)
    p.add_argument("--out", type=Path, default=None, help="run folder (default results/run_<lrs>_s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("presets", help="list the mitigation presets")
    p.set_defaults(func=cmd_presets)

    _add_sweep_commands(sub)
    _add_report_command(sub)
    return parser


def _add_sweep_commands(sub: Any) -> None:
    try:
        from . import sweep  # noqa: F401
    except ImportError:
        return
    from .sweep import add_cli  # the sweep module registers `sweep` and `reproduce`

    add_cli(sub, _add_config_args, config_from_args)


def _add_report_command(sub: Any) -> None:
    p = sub.add_parser("report", help="figures, tables and report.html from result folders")
    p.add_argument("results_dir", type=Path, help="a sweep folder (or a single run folder)")
    p.add_argument("--compare", type=Path, nargs="+", default=[], help="other sweep folders to compare with")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RESULTS_DIR/report)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="viability margin: last-10%% mean reward must beat the first-10%% mean by this "
                        "fraction of |first-10%% mean| in every seed (default 0.05)")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report
    from .report.analysis import check_margin

    check_margin(args.margin)  # NaN, inf or < 0 would silently change the viable-configuration verdict
    for folder in [args.results_dir, *args.compare]:
        if not folder.exists():
            raise ConfigError(f"results folder not found: {folder}")
    path = build_report(args.results_dir, compare=args.compare, out_dir=args.out, margin=args.margin,
                        title=args.title)
    print(f"report written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"gradasym: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngradasym: interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
