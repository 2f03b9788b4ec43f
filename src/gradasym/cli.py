"""The ``gradasym`` command line: a thin layer over the library API.

``gradasym run``        one training run of any algorithm (``--algo ccm-madrl`` (default), ``td3``, ``ddpg``, ``sac``)
``gradasym sweep``      a grid x seeds (``gradasym.sweep.run_sweep``)
``gradasym reproduce``  the paper grid at a reduced scale, then the heatmap
``gradasym report``     figures, tables and report.html from result folders
``gradasym presets``    list the mitigation presets
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from . import algos
from .algos.base import AlgoConfig
from .config import ConfigError, available_presets, parse_int, read_config_file
from .process import sigterm_interrupts
from .runfolder import RunFolder, require_folder

# Flag -> dotted config field, for the options every training command accepts. A flag
# applies to the algorithms whose config has that field (others get a clear error). The
# help texts get "(default: X)" appended from the algorithms' config defaults (_with_default).
RUN_FLAGS: dict[str, tuple[str, type, str]] = {
    "--actor-lr": ("agent.actor_lr", float, "actor learning rate (ccm-madrl: all actors)"),
    "--critic-lr": ("agent.critic_lr", float, "critic learning rate (ccm-madrl: the master critic)"),
    "--env": ("env.id", str, "td3/ddpg/sac: Gymnasium task with a continuous action space "
                             "(MuJoCo ids such as HalfCheetah-v5 need gradasym[mujoco])"),
    "--steps": ("run.steps", int, "td3/ddpg/sac: environment steps to train"),
    "--episodes": ("run.episodes", int, "ccm-madrl: number of episodes, one training update each"),
    "--seed": ("run.seed", int, "the one seed every generator derives from"),
    "--actor-update": ("agent.actor_update", str,
                       "'sequential' (faithful) or 'simultaneous' (faster, a different algorithm)"),
    "--mode": ("env.mode", str, "environment mode: 'H2' (shared units) or 'TOBM'"),
    "--n-agents": ("env.n_agents", int, "number of user devices / client actors"),
    "--steps-per-episode": ("env.steps_per_episode", int, "environment steps per episode"),
    "--log-interval": ("run.log_interval", int, "between tracking rows: episodes (ccm-madrl) or gradient steps "
                                                "(td3/ddpg/sac)"),
    "--batch-size": ("agent.batch_size", int, "replay batch size"),
    "--tracking": ("run.tracking", str, "'clean' (our definitions) or 'original' (what the original code logged)"),
    "--freeze-tolerance": ("run.freeze_tolerance", float, "max |delta| counted as frozen; 0 = exact equality"),
    "--checkpoint-interval": ("run.checkpoint_interval", int, "between checkpoints: episodes (ccm-madrl) or "
                                                              "environment steps (td3/ddpg/sac)"),
    "--eval-interval": ("run.eval_interval", int, "between greedy (deterministic) evaluations on a separately "
                                                  "seeded environment: episodes (ccm-madrl) or environment steps "
                                                  "(td3/ddpg/sac); 0 = off"),
    "--eval-episodes": ("run.eval_episodes", int, "episodes per evaluation"),
    "--threads": ("run.threads", int, "torch threads per run; 1 stays fast next to other busy processes, "
                                      "0 = torch's default (one per core)"),
    "--engine": ("run.engine", str, "ccm-madrl: 'compiled' (numba kernels on the CPU), 'torch' (the tensor code: "
                                    "the reference, GPUs, every option) or 'auto' (compiled wherever it supports "
                                    "the configuration, docs/configuration.md)"),
    "--device": ("run.device", str, "where the networks and updates run: 'cpu', 'cuda' or 'cuda:N' (a GPU torch "
                                    "sees; ccm-madrl: the environment, replay buffer and random draws stay on the "
                                    "CPU; td3/ddpg/sac: SB3's device)"),
}


def _int_arg(text: str) -> int:
    """argparse ``type`` of the integer flags: exact as ``--set`` (:func:`gradasym.config.parse_int`),
    so ``--seed 9223372036854775807`` keeps every digit and ``--episodes 1e3`` means 1000."""
    try:
        return parse_int(text, "value")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None


def _config_defaults(dotted: str) -> dict[str, Any]:
    """The default of ``section.field`` per algorithm that has it (None: Stable-Baselines3's own default)."""
    section, name = dotted.split(".")
    return {n: getattr(getattr(algos.get(n).default_config(), section), name)
            for n in algos.names() if algos.get(n).has_field(dotted)}


def _with_default(help_: str, dotted: str) -> str:
    """``help (default: X)``: the first algorithm's default; others that differ follow, e.g.
    ``(default: 0.0001) (td3/ddpg/sac: SB3's)``."""
    by_value: dict[str, list[str]] = {}
    for name, value in _config_defaults(dotted).items():
        by_value.setdefault("SB3's" if value is None else str(value), []).append(name)
    (first, _), *others = by_value.items()
    return f"{help_} (default: {first})" + "".join(f" ({'/'.join(n)}: {v})" for v, n in others)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (file and presets < flags < --set; a file may not contradict a preset)")
    g.add_argument("--algo", choices=algos.names(), default=None,
                   help="algorithm: ccm-madrl (the study's, on the MEC environment) or the Stable-Baselines3 "
                        "td3, ddpg, sac on a Gymnasium task (docs/algorithms.md; default: ccm-madrl)")
    g.add_argument("--config", type=Path, help="TOML/YAML config file with sections env, agent, run (and "
                                               "optionally algo) (default: none, every field at its default)")
    g.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="mitigation preset (repeatable; see `gradasym presets`; default: none = baseline)")
    for flag, (dotted, tp, help_) in RUN_FLAGS.items():
        g.add_argument(flag, type=_int_arg if tp is int else tp, default=None, help=_with_default(help_, dotted))
    g.add_argument("--early-stop", dest="early_stop", action=argparse.BooleanOptionalAction, default=None,
                   help="end the run 100 episodes after all actors stopped (default: on)")
    g.add_argument("--tensorboard", dest="tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="also write every episode and tracking metric (td3/ddpg/sac: and SB3's own scalars) "
                        "as TensorBoard scalars to RUN/tensorboard/ (needs the 'tensorboard' extra; default: off)")
    g.add_argument("--keep-replay", dest="keep_replay", action=argparse.BooleanOptionalAction, default=None,
                   help="ccm-madrl: keep the replay buffer in a finished run's final checkpoint (up to 36 MB "
                        "per run at N = 50), needed only to extend the run later by raising --episodes "
                        "(default: off, dropped; unfinished runs always keep it)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set agent.gamma=0.95 (repeatable; default: none)")


def algorithm_from_args(args: argparse.Namespace) -> algos.Algorithm:
    """``--algo``, else the config file's ``algo``, else the default (ccm-madrl)."""
    named = getattr(args, "algo", None)
    config_file = getattr(args, "config", None)
    in_file = read_config_file(config_file).get("algo") if config_file else None
    if named and in_file and algos.get(named).name != algos.get(in_file).name:
        raise ConfigError(f"--algo {named} contradicts algo = '{in_file}' in {config_file}")
    return algos.get(named or in_file)


def _check_applies(flag: str, dotted: str, plugin: algos.Algorithm) -> None:
    """A flag whose field the algorithm lacks is an error naming the algorithms it is for."""
    if plugin.has_field(dotted):
        return
    owners = [n for n in algos.names() if algos.get(n).has_field(dotted)]
    raise ConfigError(f"{flag} is a {'/'.join(owners)} option; it does not apply to --algo {plugin.name}")


def config_from_args(args: argparse.Namespace) -> AlgoConfig:
    """Resolve algorithm, file, presets, flags and --set overrides into a validated config."""
    plugin = algorithm_from_args(args)
    overrides: dict[str, Any] = {}
    for flag, (dotted, _, _) in RUN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            _check_applies(flag, dotted, plugin)
            overrides[dotted] = value
    if getattr(args, "early_stop", None) is not None:
        _check_applies("--early-stop", "run.early_stop", plugin)
        overrides["run.early_stop"] = args.early_stop
    if getattr(args, "tensorboard", None) is not None:
        _check_applies("--tensorboard", "run.tensorboard", plugin)
        overrides["run.tensorboard"] = args.tensorboard
    if getattr(args, "keep_replay", None) is not None:
        _check_applies("--keep-replay", "run.keep_replay", plugin)
        overrides["run.keep_replay"] = args.keep_replay
    for item in getattr(args, "set", []):
        if "=" not in item:
            raise ConfigError(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    cfg = plugin.load_config(args.config, presets=args.preset, overrides=overrides)
    _warn_no_tracking(cfg, plugin)
    return cfg


def _warn_no_tracking(cfg: AlgoConfig, plugin: algos.Algorithm) -> None:
    """Warn (stderr) when a ``run.log_interval`` set by the user exceeds the run's length: no
    tracking row would be written (the default interval with a short test run is left alone)."""
    run = cfg.run
    if run.log_interval == plugin.default_config().run.log_interval:
        return
    length, unit = ((run.episodes, "run.episodes") if hasattr(run, "episodes")  # type: ignore[attr-defined]
                    else (getattr(run, "steps", None), "run.steps"))
    if isinstance(length, int) and run.log_interval > length:
        print(f"gradasym: warning: run.log_interval = {run.log_interval} is more than {unit} = {length}: the run "
              "writes no tracking rows (gradient norms, saturation); lower --log-interval", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    plugin = algos.of(cfg)
    out = args.out or Path("results") / _default_run_name(cfg)
    if args.resume:
        RunFolder(out).check_usable()  # a file, a sweep, foreign files: said as such first
    if args.resume and not RunFolder(out).holds_run():
        raise ConfigError(f"--resume: {out} holds no run to resume (no config.json or checkpoint); "
                          "leave out --resume to start a new run there")
    print(f"gradasym {__version__}: {plugin.describe(cfg)} -> {out}")
    try:
        summary = plugin.runner(cfg, out, resume=args.resume, show_progress=not args.quiet)
    except KeyboardInterrupt:
        hint = ("rerun the same command with --resume to continue from the last checkpoint" if plugin.can_resume
                else f"{plugin.name} runs cannot resume: rerun without --resume (and a new --out, or delete "
                     f"{out}) to start over")
        print(f"\ngradasym: interrupted; {hint}", file=sys.stderr)
        return 130
    k = plugin.summary_keys
    keys = ["status", k["done"], k["stop"], "critic_stopped", "max_abs_preactivation",
            "final_saturation_ratio", k["seconds_per_unit"]]
    keys += [c for c in plugin.summary_columns if c not in keys and c not in ("algo", "env")]
    print(json.dumps({key: summary.get(key) for key in keys}, indent=2))
    return 0


def _default_run_name(cfg: AlgoConfig) -> str:
    plugin = algos.of(cfg)
    tag = "_".join(plugin.presets(cfg))
    task = "" if plugin.name == algos.DEFAULT_ALGO else f"{plugin.name}_{cfg.env.id}_"  # type: ignore[attr-defined]
    return (f"run_{task}alr{cfg.agent.actor_lr:g}_clr{cfg.agent.critic_lr:g}" + (f"_{tag}" if tag else "")
            + f"_s{cfg.run.seed}")


def cmd_presets(args: argparse.Namespace) -> int:
    from .config import preset_path, read_config_file

    for name in available_presets():
        desc = read_config_file(preset_path(name)).get("description", "")
        print(f"{name:20s} {desc}")
    return 0


def plain_text(doc: str) -> str:
    """``doc`` (reStructuredText) as a terminal shows it: ````code```` and :role:`x` markup removed."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", doc)
    return re.sub(r"``([^`]*)``", r"\1", text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradasym", description=plain_text(__doc__ or ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gradasym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run", help="train one configuration with full tracking",
        description="Train one configuration with gradient, saturation and weight-freeze tracking: "
                    "CCM-MADRL on the MEC environment (default) or, with --algo td3|ddpg|sac, a "
                    "Stable-Baselines3 agent on a Gymnasium task; writes config.json, the tables, "
                    "summary.json and checkpoints to one run folder (docs/architecture.md). Defaults "
                    "are the original setup of the study (docs/study.md, docs/configuration.md, "
                    "docs/algorithms.md).")
    _add_config_args(p)
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: results/run_alr<actor_lr>_clr<critic_lr>[_<presets>]_s<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (default: off; an existing run "
                        "folder is then an error)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: progress bar shown)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("presets", help="list the mitigation presets",
                       description="List the mitigation presets shipped with gradasym (docs/presets.md).")
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
    p = sub.add_parser(
        "report", help="figures, tables and report.html from result folders",
        description="Build the study's figures and tables (stopping heatmap, gradient norms, saturation, "
                    "pre-activations, learning curves, Tables 3 and 4 ...) from a sweep or run folder, "
                    "optionally compared with other result sets, as one self-contained report.html "
                    "(docs/report.md).")
    p.add_argument("results_dir", type=Path, help="a sweep folder (or a single run folder)")
    p.add_argument("--compare", type=Path, nargs="+", default=[],
                   help="other sweep folders to compare with (default: none)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RESULTS_DIR/report)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="viability margin: last-10%% mean reward must beat the first-10%% mean by this "
                        "fraction of |first-10%% mean| in every seed (default 0.05)")
    p.add_argument("--title", default=None, help="page title (default: one naming the results folder)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report
    from .report.analysis import check_margin

    check_margin(args.margin)  # NaN, inf or < 0 would silently change the viable-configuration verdict
    for folder in [args.results_dir, *args.compare]:
        if not folder.exists():
            raise ConfigError(f"results folder not found: {folder}")
        require_folder(folder, "results folder")
    require_folder(args.out if args.out is not None else args.results_dir / "report")
    path = build_report(args.results_dir, compare=args.compare, out_dir=args.out, margin=args.margin,
                        title=args.title)
    print(f"report written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with sigterm_interrupts() as terminated:  # kill PID ends a run or sweep as Ctrl-C does
        try:
            code = int(args.func(args) or 0)
        except ConfigError as exc:
            print(f"gradasym: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # e.g. a full disk (gradasym.runfolder.DiskFullError): one line, no traceback
            print(f"gradasym: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ngradasym: interrupted", file=sys.stderr)
            code = 130
    if terminated.received and code == 130:  # the commands print what a rerun does
        print("gradasym: stopped by SIGTERM", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a process ended by it
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
