"""``reproduce``: the paper's main experiment in one call (the newcomer's entry point).

Runs the paper's 4x4 learning-rate grid (``docs/study.md``, "The experiment") with the
faithful algorithm, writes the summary table and the stopping-episode heatmap.

* Reduced scale (default): :data:`REDUCED_EPISODES` episodes per configuration with
  early termination on (:data:`REDUCED_EARLY_STOP_PATIENCE` episodes after all actors
  stopped). High actor learning rates (>= 0.01) stop after ~150-350 episodes and end
  early; low ones run the whole budget without stopping. This shows the paper's
  main finding (Table 3: actor LR decides; the critic never stops) on a 2-core
  machine in about 20 minutes. It cannot show the *late* stops of critic_lr = 0.1
  (paper: episodes 696 and 763); use ``full=True`` for those.
* ``full=True``: the paper's protocol, :data:`FULL_EPISODES` episodes.

Everything else is the faithful default config (N = 50, H2, batch 64, replay
10,000, epsilon decay 2000, sequential actor updates, seed 42).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from ..errors import describe
from .backends import Runner
from .core import Backend, run_sweep
from .spec import SweepSpec, build_base_config, paper_axes
from .store import FINISHED

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")

#: Episodes per configuration at reduced scale (tune after measuring the trainer).
REDUCED_EPISODES: int = 1000
#: Early termination at reduced scale (high actor-LR runs end soon after stopping).
REDUCED_EARLY_STOP: bool = True
#: Episodes run after all actors stopped before terminating (the paper's 100).
REDUCED_EARLY_STOP_PATIENCE: int = 100
#: The paper's protocol.
FULL_EPISODES: int = 2000
FULL_EARLY_STOP: bool = True
FULL_EARLY_STOP_PATIENCE: int = 100
#: Seeds when none are given (the paper's).
DEFAULT_SEEDS: tuple[int, ...] = (42,)


def reproduce_spec(full: bool = False, seeds: Iterable[int] = DEFAULT_SEEDS,
                   presets: Iterable[str] = (), keep_replay: bool = False, device: str | None = None) -> SweepSpec:
    """The paper grid at reduced (default) or full scale, with ``presets`` on every run
    (``keep_replay``: finished runs keep their replay buffers, ``run.keep_replay``; ``device``:
    ``run.device``, None = its default, the CPU)."""
    overrides: dict[str, Any] = {
        "run.episodes": FULL_EPISODES if full else REDUCED_EPISODES,
        "run.early_stop": FULL_EARLY_STOP if full else REDUCED_EARLY_STOP,
        "run.early_stop_patience": FULL_EARLY_STOP_PATIENCE if full else REDUCED_EARLY_STOP_PATIENCE,
    }
    if keep_replay:
        overrides["run.keep_replay"] = True
    if device is not None:
        overrides["run.device"] = device
    base = build_base_config({}, presets=list(presets), overrides=overrides, source="reproduce")
    return SweepSpec(base=base, axes=paper_axes(), seeds=list(seeds))


def reproduce(
    out_dir: str | Path,
    full: bool = False,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    presets: Iterable[str] = (),
    workers: int | None = None,
    live: bool = True,
    *,
    backend: Backend = "local",
    address: str | None = None,
    runner: Runner | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    report: bool = True,
    threads: int | None = None,
    backend_options: dict[str, Any] | None = None,
    keep_replay: bool = False,
    device: str | None = None,
) -> pd.DataFrame:
    """Run the paper's learning-rate grid into ``out_dir``, then summarise and plot it.

    Args:
        out_dir: the sweep folder; running again resumes (finished runs are
            skipped). Giving more ``seeds`` later adds runs to the same folder.
        full: the paper's 2,000-episode protocol instead of the reduced scale.
        seeds: one run per configuration and seed (the thesis used 10 seeds).
        presets: presets applied to every run (e.g. ``["layernorm"]``); use a
            separate folder per preset set.
        workers: local worker processes (default: one per core, at most one per run).
        live: ``rich`` live view (False: plain log lines).
        backend, address: as in :func:`run_sweep` (``"ray"`` to use a cluster).
        runner: replaces ``gradasym.algos.ccm_madrl.runner.run_experiment`` (tests).
        force: see :func:`run_sweep`.
        report: also build the HTML report (``out_dir/report/report.html``).
        threads, backend_options: as in :func:`run_sweep`.
        keep_replay: finished runs keep their replay buffers (``run.keep_replay``; by
            default their final checkpoints drop them: a small folder, runs not extendable).
        device: ``run.device`` of every run (None: the default, the CPU, as the committed results).

    Returns:
        The summary table. The stopping-episode grid is printed, the heatmap
        written to ``out_dir/stopping_heatmap.png`` and (``report``) the full report
        built, when the report module is available; their failures never raise.
    """
    spec = reproduce_spec(full=full, seeds=seeds, presets=presets, keep_replay=keep_replay, device=device)
    if workers is None and backend == "local":
        workers = max(1, min(os.cpu_count() or 1, len(spec.expand())))
    title = "reproduce (full)" if full else f"reproduce ({REDUCED_EPISODES} episodes)"
    table = run_sweep(spec, out_dir, workers=workers, backend=backend, address=address, runner=runner,
                      live=live, force=force, log=log, title=title, threads=threads,
                      backend_options=backend_options)
    print_stopping_grid(table, live=live)
    _write_heatmap(Path(out_dir), table)
    if report:
        _write_report(Path(out_dir))
    return table


# ------------------------------------------------------------------ outputs
def stopping_grid(table: pd.DataFrame) -> pd.DataFrame:
    """actor_lr (rows) x critic_lr (columns) grid of stopping episodes, as text cells.

    A cell is the stopping episode (mean over the seeds where all actors stopped,
    with ``k/n`` when only some seeds stopped), ``none (E)`` when the actors never all
    stopped within the E episodes run, ``-`` when no run of that cell finished.
    """
    done = table[table["status"].astype(str) == FINISHED]
    cells: dict[tuple[float, float], str] = {}
    for (alr, clr), g in done.groupby(["actor_lr", "critic_lr"]):
        stops = g["stopping_episode"].dropna()
        n = len(g)
        if len(stops) == 0:
            cells[(alr, clr)] = f"none ({int(g['episodes_run'].max())})" if g["episodes_run"].notna().any() else "none"
        elif len(stops) == n:
            cells[(alr, clr)] = f"{stops.mean():.0f}" + (f" ±{stops.std():.0f}" if n > 1 else "")
        else:
            cells[(alr, clr)] = f"{stops.mean():.0f} ({len(stops)}/{n})"
    alrs = sorted(table["actor_lr"].dropna().unique(), reverse=True)
    clrs = sorted(table["critic_lr"].dropna().unique())
    grid = pd.DataFrame([[cells.get((a, c), "-") for c in clrs] for a in alrs],
                        index=pd.Index([f"{a:g}" for a in alrs], name="actor_lr \\ critic_lr"),
                        columns=[f"{c:g}" for c in clrs])
    return grid


def print_stopping_grid(table: pd.DataFrame, live: bool = True) -> None:
    """Print the stopping-episode grid and the pattern the paper reports."""
    grid = stopping_grid(table)
    note = ("paper (Table 3): actor_lr >= 0.01 -> all actors stop early (161-247); "
            "actor_lr <= 0.001 -> no stop (except late stops with critic_lr = 0.1); the critic never stops")
    critic = table.loc[table["status"].astype(str) == FINISHED, "critic_stopped"].dropna()
    critic_line = f"critic stopped in {int(critic.sum())} of {len(critic)} finished runs"
    if live:
        try:
            from rich.console import Console  # noqa: PLC0415
            from rich.table import Table  # noqa: PLC0415

            t = Table(title="stopping episode (all actors stopped)", title_justify="left")
            t.add_column(grid.index.name or "")
            for c in grid.columns:
                t.add_column(str(c), justify="right")
            for idx, row in grid.iterrows():
                t.add_row(str(idx), *[str(v) for v in row])
            console = Console()
            console.print(t)
            console.print(critic_line)
            console.print(f"[dim]{note}[/dim]")
            return
        except Exception:  # noqa: BLE001 - fall back to plain text
            pass
    print("stopping episode (all actors stopped):")
    print(grid.to_string())
    print(critic_line)
    print(note)


def _write_heatmap(out_dir: Path, table: pd.DataFrame | None = None) -> list[Path]:
    """Draw the stopping-episode heatmap (paper Fig. 2) with the report module.

    Writes ``out_dir/stopping_heatmap.png`` (one file per preset group,
    ``stopping_heatmap_<group>.png``, when the folder holds several). Never raises:
    when the report module or its plotting stack is unavailable it prints a note
    (the summary table is already written). ``gradasym report OUT`` builds the full report.
    """
    try:
        from gradasym.report.analysis import build_groups  # noqa: PLC0415
        from gradasym.report.figures import fig_stopping_heatmap  # noqa: PLC0415
        from gradasym.report.load import load_results, runs_frame  # noqa: PLC0415
    except ImportError as exc:
        print(f"note: the report module is unavailable ({exc}); no heatmap drawn "
              f"(summary: {out_dir / 'summary.csv'})", file=sys.stderr)
        return []
    from .store import atomic_write  # noqa: PLC0415

    written: list[Path] = []
    try:
        rs = load_results(out_dir)
        groups = build_groups(rs, runs_frame(rs))
        for gd in groups:
            suffix = f"_{_SAFE_NAME.sub('-', gd.group)}" if len(groups) > 1 and gd.group else ""
            path = Path(out_dir) / f"stopping_heatmap{suffix}.png"
            fig = fig_stopping_heatmap(gd)
            atomic_write(path, lambda p, fig=fig: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
            written.append(path)
    except Exception as exc:  # noqa: BLE001 - the results are safe; only the figure failed
        print(f"note: the stopping-episode heatmap could not be drawn ({describe(exc)}); "
              f"the summary is in {out_dir / 'summary.csv'}", file=sys.stderr)
        return written
    for path in written:
        print(f"stopping-episode heatmap: {path}")
    return written


def _write_report(out_dir: Path) -> Path | None:
    """Build the full HTML report (``gradasym.report.build_report``); never raises."""
    try:
        from gradasym.report import build_report  # noqa: PLC0415
    except ImportError as exc:
        print(f"note: the report module is unavailable ({exc}); no HTML report", file=sys.stderr)
        return None
    try:
        path = Path(build_report(out_dir))
    except Exception as exc:  # noqa: BLE001 - the results are safe; only the report failed
        print(f"note: the report could not be built ({describe(exc)}); "
              f"retry with `gradasym report {out_dir}`", file=sys.stderr)
        return None
    print(f"report: {path}")
    return path
