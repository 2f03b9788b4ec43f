"""The report for algorithms without the paper's extras (Stable-Baselines3 TD3, DDPG, SAC...).

:func:`build_generic_report` is what ``gradasym report`` builds when the runs of the
main results folder belong to an algorithm whose plugin lacks the ``"paper"``
report extra (``docs/algorithms.md``). Units and wording come from the run folders
(the plugin's ``progress_unit`` / ``stop_unit`` / ``summary_keys``, the ``units`` of
``summary.json``); nothing here knows MEC or the paper's tables. It shows:

* learning curves: episode return vs environment steps (mean and 95 % t-interval
  over seeds, one panel per critic LR), and the same for the deterministic evaluation
  return (``eval.parquet``, runs with ``run.eval_interval``);
* heatmaps over the actor LR x critic LR grid of the stopping step and the
  gradient-death step (mean over the seeds where it happened, "k/n" seeds);
* saturation ratio, max |z|, the dead-output fraction (when the monitor records
  ``dead_output_frac``) and the actor/critic gradient-norm ratio over gradient steps;
* per-configuration table (95 % t-intervals over seeds, "1 seed: no interval")
  and the viable-configuration count (Wilson 95 % interval on the improving seeds).
"""

from __future__ import annotations

import math
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from gradasym import algos

from ..config import ConfigError
from ..provenance import collect as collect_provenance
from .failures import Failures
from .html import ConfigInfo, FigureResult, MainResult, ReportContent, render_html
from .load import ResultSet, RunData
from .markdown import write_markdown
from .stats import geometric_mean_ci, mean_ci, wilson_interval
from .tables import Table, provenance_text, write_table

__all__ = ["build_generic_report", "is_paper_set", "run_algorithm", "generic_runs", "config_summary"]

LEVEL = 0.95
_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


class NoFigure(Exception):
    """The data a figure needs is not there (the message says what)."""


# ------------------------------------------------------------------ which report
def run_algorithm(run: RunData) -> str:
    """The algorithm of a run: its ``config.json``'s ``algo``, else its summary's, else the default."""
    return algos.name_of_dict(run.config) if run.config else str(run.summary.get("algo") or algos.DEFAULT_ALGO)


def is_paper_set(rs: ResultSet) -> bool:
    """Whether the paper-specific report applies: every run's algorithm has the ``paper`` extra."""
    names = {run_algorithm(r) for r in rs.runs} or {algos.DEFAULT_ALGO}
    return all("paper" in _plugin(n).report_extras for n in names)


def _plugin(name: str) -> algos.Algorithm:
    try:
        return algos.get(name)
    except Exception:  # noqa: BLE001 - an unknown name in a folder: treat as generic
        return algos.get("td3")


# ------------------------------------------------------------------ tables of runs
def generic_runs(rs: ResultSet) -> pd.DataFrame:
    """One row per run in generic roles (``done``, ``stop``, ``return_first``...), with units."""
    rows = []
    for run in rs.runs:
        s, plugin = run.summary, _plugin(run_algorithm(run))
        keys = plugin.summary_keys
        cfg = run.config or {}
        rows.append({
            "run_id": run.run_id, "algo": plugin.name,
            "env": s.get("env") or (cfg.get("env") or {}).get("id"),
            "actor_lr": _num(s.get("actor_lr")), "critic_lr": _num(s.get("critic_lr")),
            "seed": s.get("seed"), "status": run.status, "error": s.get("error"),
            "done": _num(s.get(keys["done"])), "total": _num(s.get(keys["total"])),
            "stop": _num(s.get(keys["stop"])), "grad_death": _num(s.get(keys.get("grad_death", ""))),
            "critic_stopped": bool(s.get("critic_stopped")), "diverged": bool(s.get("diverged")),
            "max_abs_preactivation": _num(s.get("max_abs_preactivation")),
            "final_saturation_ratio": _num(s.get("final_saturation_ratio")),
            "final_rho": _num(s.get("final_rho")),
            "return_first": _num(s.get(keys["return_first"])), "return_last": _num(s.get(keys["return_last"])),
            "seconds_per_unit": _num(s.get(keys["seconds_per_unit"])),
            "unit": plugin.progress_unit, "stop_unit": plugin.stop_unit,
        })
    return pd.DataFrame(rows, columns=["run_id", "algo", "env", "actor_lr", "critic_lr", "seed", "status", "error",
                                       "done", "total", "stop", "grad_death", "critic_stopped", "diverged",
                                       "max_abs_preactivation", "final_saturation_ratio", "final_rho",
                                       "return_first", "return_last", "seconds_per_unit", "unit", "stop_unit"])


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _improves(first: float, last: float, margin: float) -> bool | None:
    if not (np.isfinite(first) and np.isfinite(last)):
        return None
    return bool(last > first + margin * abs(first))


def config_summary(runs: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Per (actor LR, critic LR): seeds, stop / death counts and means with CIs, returns, viability.

    Intervals are clipped to the values the quantity can take: stop and gradient-death steps
    at 0 (a step count), the final return to the task's :func:`return_bounds`.
    """
    rlo, rhi = return_bounds(runs)
    rows = []
    for (alr, clr), g in runs.groupby(["actor_lr", "critic_lr"], sort=True):
        finished = g[g["status"] == "finished"]
        stop, death = mean_ci(g["stop"].dropna(), LEVEL), mean_ci(g["grad_death"].dropna(), LEVEL)
        ret = mean_ci(finished["return_last"], LEVEL)
        imp = [_improves(f, l, margin) for f, l in zip(finished["return_first"], finished["return_last"])]
        evaluated = [x for x in imp if x is not None]
        k = sum(evaluated)
        ci = wilson_interval(k, len(evaluated))
        lo, hi = ci.lo, ci.hi
        rows.append({
            "actor_lr": alr, "critic_lr": clr, "seeds": len(g), "finished": len(finished),
            "stopped": int(g["stop"].notna().sum()), "stop_mean": stop.mean, "stop_lo": float(np.maximum(0.0, stop.lo)),
            "stop_hi": stop.hi, "stop_n": stop.n, "grad_dead": int(g["grad_death"].notna().sum()),
            "death_mean": death.mean, "death_lo": float(np.maximum(0.0, death.lo)), "death_hi": death.hi, "death_n": death.n,
            "critic_stopped": int(g["critic_stopped"].sum()), "diverged": int(g["diverged"].sum()),
            "max_abs_z": float(g["max_abs_preactivation"].mean()),
            "final_saturation": float(g["final_saturation_ratio"].mean()),
            "return_mean": ret.mean, "return_lo": float(np.clip(ret.lo, rlo, rhi)),
            "return_hi": float(np.clip(ret.hi, rlo, rhi)), "return_n": ret.n,
            "improving": k, "evaluated": len(evaluated), "improving_lo": lo, "improving_hi": hi,
            "viable": bool(evaluated) and k == len(evaluated),
        })
    return pd.DataFrame(rows)


def _ci_text(ci_mean: float, lo: float, hi: float, n: int, digits: int = 3) -> str:
    if not n or not np.isfinite(ci_mean):
        return "—"
    if n == 1:
        return f"{ci_mean:.{digits}g} (1 seed: no interval)"
    return f"{ci_mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def _units(runs: pd.DataFrame) -> tuple[str, str]:
    unit = "/".join(sorted(set(runs["unit"]))) or "steps"
    stop_unit = "/".join(sorted(set(runs["stop_unit"]))) or "steps"
    return unit, stop_unit


def config_table(agg: pd.DataFrame, unit: str, stop_unit: str, clip: str = "") -> Table:
    frame = pd.DataFrame({
        "actor LR": [f"{v:g}" for v in agg["actor_lr"]], "critic LR": [f"{v:g}" for v in agg["critic_lr"]],
        "seeds": agg["seeds"],
        "actor stopped (seeds)": [f"{s}/{n}" for s, n in zip(agg["stopped"], agg["seeds"])],
        f"stopping step ({stop_unit})": [_ci_text(*r) for r in
                                         agg[["stop_mean", "stop_lo", "stop_hi", "stop_n"]].itertuples(index=False)],
        "actor gradient died (seeds)": [f"{s}/{n}" for s, n in zip(agg["grad_dead"], agg["seeds"])],
        f"gradient-death step ({stop_unit})": [_ci_text(*r) for r in agg[["death_mean", "death_lo", "death_hi",
                                                                          "death_n"]].itertuples(index=False)],
        "critic stopped": [f"{s}/{n}" for s, n in zip(agg["critic_stopped"], agg["seeds"])],
        "diverged": [f"{s}/{n}" for s, n in zip(agg["diverged"], agg["seeds"])],
        "max |z| (mean)": [f"{v:.3g}" for v in agg["max_abs_z"]],
        "final saturation (mean)": [f"{v:.2f}" if np.isfinite(v) else "—" for v in agg["final_saturation"]],
        "final return": [_ci_text(*r) for r in agg[["return_mean", "return_lo", "return_hi",
                                                     "return_n"]].itertuples(index=False)],
    })
    caption = (f"One row per configuration over its seeds. Stopping step: the first gradient step at which the actor's "
               f"weights were unchanged (never cleared, as in the study's definition); gradient-death step: the first step of the final run of dead "
               f"actor gradients; both in {stop_unit}, mean and 95 % Student-t interval over the seeds where it "
               f"happened, the interval clipped at 0 (a step count). Final return: mean episode return over the "
               f"last 10 % of episodes (finished runs)"
               + (f", its interval clipped to the returns the task can give ({clip})" if clip else "")
               + f". One seed: no interval. Runs count {unit}.")
    return Table("table_configurations", "", "Stop, gradient death and return per configuration", caption,
                 frame, agg)


def viable_table(agg: pd.DataFrame, margin: float) -> tuple[Table, str]:
    n_viable, n_eval = int(agg["viable"].sum()), int((agg["evaluated"] > 0).sum())
    k, n = int(agg["improving"].sum()), int(agg["evaluated"].sum())
    ci = wilson_interval(k, n)
    lo, hi = ci.lo, ci.hi
    frame = pd.DataFrame({
        "actor LR": [f"{v:g}" for v in agg["actor_lr"]], "critic LR": [f"{v:g}" for v in agg["critic_lr"]],
        "improving seeds": [f"{a}/{b}" for a, b in zip(agg["improving"], agg["evaluated"])],
        "95 % interval (Wilson)": [f"[{a:.2f}, {b:.2f}]" if e else "—"
                                   for a, b, e in zip(agg["improving_lo"], agg["improving_hi"], agg["evaluated"])],
        "viable": ["yes" if v else ("no" if e else "not evaluated") for v, e in zip(agg["viable"], agg["evaluated"])],
    })
    line = (f"{n_viable} of {n_eval} configurations viable; {k} of {n} finished seeds improve"
            + (f" (fraction {k / n:.2f}, 95 % Wilson interval [{lo:.2f}, {hi:.2f}])" if n else ""))
    table = Table("table_viable", "", "Viable configurations", line, frame, agg[
        ["actor_lr", "critic_lr", "improving", "evaluated", "improving_lo", "improving_hi", "viable"]])
    return table, line


def viable_definition(margin: float) -> str:
    return (f"A configuration is viable when, in every finished seed, the mean episode return over the last 10 % "
            f"of episodes beats the mean over the first 10 % by more than {margin:g} x |first-10 % mean|. "
            "Intervals on fractions are 95 % Wilson intervals (inside [0, 1]).")


def scale_text(runs: pd.DataFrame) -> str:
    """``"400 environment steps, seeds 1, 2"`` (the largest requested length; the seeds)."""
    if not len(runs):
        return ""
    total = runs["total"].max()
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    unit = _units(runs)[0]
    length = f"{total:.0f} {unit}" if np.isfinite(total) else unit
    return f"{length}, seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}"


def provenance_table(rs: ResultSet, runs: pd.DataFrame) -> Table:
    """Where the runs ran (code commit and machine from each ``summary.json``) and how fast, in their units."""
    unit = _units(runs)[0].rstrip("s") if len(runs) else "step"
    where = pd.Series([provenance_text(r.summary.get("provenance")) for r in rs.runs], dtype=object)
    frame = pd.DataFrame({"where": where, "seconds_per_unit": runs["seconds_per_unit"].to_numpy()})
    rows = []
    for w, g in frame.groupby("where", sort=True):
        spu = g["seconds_per_unit"].dropna()
        rows.append({"Code commit · machine · Python": w, "runs": len(g),
                     f"s per {unit} (median, range)": (f"{spu.median():.3g} ({spu.min():.3g} … {spu.max():.3g})"
                                                       if len(spu) else "—")})
    shown = pd.DataFrame(rows)
    return Table("table_provenance", "", "Where the runs ran", "Code commit and machine recorded by each run "
                 "in summary.json (provenance); \"not recorded\": runs written before it existed.", shown, shown)


def runs_table(runs: pd.DataFrame) -> Table:
    frame = pd.DataFrame({
        "run": runs["run_id"], "algo": runs["algo"], "task": runs["env"], "status": runs["status"],
        "progress": [f"{d:.0f}/{t:.0f} {u}" if np.isfinite(d) and np.isfinite(t) else "—"
                     for d, t, u in zip(runs["done"], runs["total"], runs["unit"])],
        "stopping step": [f"{v:.0f} {u}" if np.isfinite(v) else "none" for v, u in zip(runs["stop"], runs["stop_unit"])],
        "gradient death": [f"{v:.0f} {u}" if np.isfinite(v) else "none"
                           for v, u in zip(runs["grad_death"], runs["stop_unit"])],
        "final return": [f"{v:.4g}" if np.isfinite(v) else "—" for v in runs["return_last"]],
        "error": [str(e).splitlines()[0][:120] if e else "" for e in runs["error"]],
    })
    return Table("table_runs", "", "Runs", "Every run folder found, with its status and progress.", frame, runs)


# ------------------------------------------------------------------ figures
def _by_critic(agg_keys: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return sorted({a for a, _ in agg_keys}), sorted({c for _, c in agg_keys})


def _panels(n: int) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(max(5.2, 3.6 * n + 0.8), 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, list(axes)


def _title(fig: Figure, text: str, fontsize: float = 10) -> None:
    """``fig.suptitle`` wrapped to the figure's width (a long title on a narrow figure is cut off otherwise)."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def _steps_axis(ax: Any) -> None:
    """At most 5 ticks on a step axis, written 17.5k, 20k (full numbers collide on narrow panels)."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _band(ax: Any, x: np.ndarray, ys: np.ndarray, color: str, label: str,
          bounds: tuple[float, float] = (-math.inf, math.inf), geometric: bool = False) -> bool:
    """Mean over seeds (rows of ``ys``) with a 95 % t-band where at least two seeds exist; returns
    whether a band was drawn.

    ``bounds`` clips the band to the quantity's range (a ratio >= 0, a fraction in [0, 1], a
    return the task cannot exceed); ``geometric`` uses the geometric mean and its interval
    (positive, log-axis quantities).
    """
    ci = geometric_mean_ci if geometric else mean_ci
    cis = [ci(col, LEVEL) for col in ys.T]
    mean = np.array([c.mean for c in cis])
    ax.plot(x, mean, color=color, label=label, lw=1.4)
    if ys.shape[0] >= 2:
        lo = np.clip([c.lo for c in cis], *bounds)
        hi = np.clip([c.hi for c in cis], *bounds)
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        return True
    return False


def _band_note(banded: bool, what: str) -> str:
    """The title's account of the bands: what they are, or that one seed per configuration has none."""
    return f"{what}, 95 % band over seeds" if banded else f"{what}; one seed per configuration: no band"


def bounds_text(bounds: tuple[float, float]) -> str:
    """``"<= 0"``, ``">= 0"``, ``"in [0, 1]"`` or ``""`` (no known bound)."""
    lo, hi = bounds
    if math.isfinite(lo) and math.isfinite(hi):
        return f"in [{lo:g}, {hi:g}]"
    if math.isfinite(hi):
        return f"<= {hi:g}"
    if math.isfinite(lo):
        return f">= {lo:g}"
    return ""


def return_bounds(runs: pd.DataFrame) -> tuple[float, float]:
    """What an episode return of these runs' task can be (``Algorithm.return_bounds``; one task per set)."""
    if not len(runs):
        return (-math.inf, math.inf)
    row = runs.iloc[0]
    return _plugin(str(row["algo"])).return_bounds(row["env"])


def fig_learning_curves(rs: ResultSet, runs: pd.DataFrame) -> Figure:
    """Episode return vs environment steps (mean, 95 % band over seeds, clipped to the task's possible
    returns), one panel per critic LR."""
    eps = {r.run_id: r.episodes for r in rs.runs if r.episodes is not None and len(r.episodes)
           and {"step", "return"} <= set(r.episodes.columns)}
    if not eps:
        raise NoFigure("no episodes.parquet with step and return columns")
    return _return_curves(eps, runs, "return", "episode return", "Learning curves")


def eval_tables(rs: ResultSet) -> dict[str, pd.DataFrame]:
    """Each run's ``eval.parquet`` (SB3 runs with ``run.eval_interval``), by run id."""
    from .load import _read_parquet  # noqa: PLC0415

    out = {}
    for r in rs.runs:
        if (r.path / "eval.parquet").is_file():
            table, _ = _read_parquet(r.path / "eval.parquet")
            if table is not None and len(table) and {"step", "eval_return"} <= set(table.columns):
                out[r.run_id] = table
    return out


def fig_eval_curves(rs: ResultSet, runs: pd.DataFrame) -> Figure:
    """Deterministic evaluation return vs environment steps (mean, 95 % band over seeds)."""
    ev = eval_tables(rs)
    if not ev:
        raise NoFigure("no eval.parquet (runs without run.eval_interval)")
    return _return_curves(ev, runs, "eval_return", "evaluation return", "Evaluation (deterministic episodes)")


def _return_curves(tables: dict[str, pd.DataFrame], runs: pd.DataFrame, column: str, ylabel: str,
                   title: str) -> Figure:
    """``column`` vs environment steps (``step``), mean and band over seeds (two seeds or more, clipped to
    the task's possible returns), one panel per critic LR; ``title``: the figure title's start."""
    eps = {k: t.rename(columns={column: "return"}) for k, t in tables.items()}
    sub = runs[runs["run_id"].isin(eps)]
    bounds = return_bounds(sub)
    actors, critics = _by_critic(list(zip(sub["actor_lr"], sub["critic_lr"])))
    fig, axes = _panels(len(critics))
    banded = False
    for ax, clr in zip(axes, critics):
        for i, alr in enumerate(actors):
            ids = sub[(sub["actor_lr"] == alr) & (sub["critic_lr"] == clr)]["run_id"]
            curves = [eps[i_] for i_ in ids]
            if not curves:
                continue
            end = min(float(c["step"].max()) for c in curves)
            start = max(float(c["step"].min()) for c in curves)
            grid = np.linspace(start, end, 60) if end > start else np.array([end])
            ys = np.vstack([np.interp(grid, c["step"].to_numpy(float), c["return"].to_numpy(float)) for c in curves])
            banded |= _band(ax, grid, ys, _COLORS[i % len(_COLORS)], f"actor LR {alr:g} (n={len(curves)})",
                            bounds=bounds)
        ax.set_title(f"critic LR {clr:g}")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        _steps_axis(ax)
        ax.legend(fontsize=7)
    clip = bounds_text(bounds)
    _title(fig, f"{title}: " + _band_note(banded, f"mean {ylabel}")
           + (f" (clipped: a return is {clip})" if banded and clip else ""))
    return fig


def _heatmap(agg: pd.DataFrame, value: str, count: str, title: str, unit: str) -> Figure:
    if agg.empty:
        raise NoFigure("no configurations")
    actors, critics = _by_critic(list(zip(agg["actor_lr"], agg["critic_lr"])))
    grid = np.full((len(actors), len(critics)), np.nan)
    text = np.full(grid.shape, "no runs", dtype=object)
    for _, row in agg.iterrows():
        i, j = actors.index(row["actor_lr"]), critics.index(row["critic_lr"])
        grid[i, j] = row[value]
        k, n = int(row[count]), int(row["seeds"])
        text[i, j] = f"{row[value]:.0f}\n{k}/{n} seeds" if k else f"never\n0/{n} seeds"
    fig = Figure(figsize=(max(4.8, 1.3 * len(critics) + 3.2), max(3.6, 1.0 * len(actors) + 1.8)),
                 layout="constrained")
    ax = fig.subplots()
    finite = grid[np.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=max(1.0, finite.min()), vmax=max(2.0, finite.max())) if finite.size else None
    cmap = __import__("matplotlib").colormaps["viridis"].with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(np.where(grid > 0, grid, np.nan)), origin="lower", cmap=cmap, norm=norm,
                   aspect="auto")
    for i in range(len(actors)):
        for j in range(len(critics)):
            ax.text(j, i, text[i, j], ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(grid[i, j]) else "#444")
    ax.set_xticks(range(len(critics)), [f"{c:g}" for c in critics])
    ax.set_yticks(range(len(actors)), [f"{a:g}" for a in actors])
    ax.set_xlabel("critic learning rate")
    ax.set_ylabel("actor learning rate")
    ax.grid(False)
    if norm is not None:
        fig.colorbar(im, ax=ax, label=f"{unit}\n(mean over the seeds\nwhere it happened)")
    ax.set_title(title, fontsize=10)
    return fig


def _tracking(rs: ResultSet) -> dict[str, pd.DataFrame]:
    return {r.run_id: r.tracking for r in rs.runs if r.tracking is not None and len(r.tracking)
            and "gradient_step" in r.tracking.columns}


def _over_time(rs: ResultSet, runs: pd.DataFrame, column: str, ylabel: str, scale: str, what: str,
               bounds: tuple[float, float] = (-math.inf, math.inf)) -> Figure:
    track = _tracking(rs)
    if not track or not any(column in t for t in track.values()):
        raise NoFigure(f"no tracking.parquet with gradient_step and {column}")
    sub = runs[runs["run_id"].isin(track)]
    actors, critics = _by_critic(list(zip(sub["actor_lr"], sub["critic_lr"])))
    fig, axes = _panels(len(critics))
    banded = False
    for ax, clr in zip(axes, critics):
        for i, alr in enumerate(actors):
            ids = sub[(sub["actor_lr"] == alr) & (sub["critic_lr"] == clr)]["run_id"]
            tabs = [track[x] for x in ids if column in track[x]]
            if not tabs:
                continue
            steps = sorted(set.intersection(*(set(t["gradient_step"]) for t in tabs)))
            if not steps:
                continue
            ys = np.vstack([t.set_index("gradient_step")[column].reindex(steps).to_numpy(float) for t in tabs])
            banded |= _band(ax, np.asarray(steps, float), ys, _COLORS[i % len(_COLORS)],
                            f"actor LR {alr:g} (n={len(tabs)})", bounds=bounds, geometric=scale == "log")
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=1e-8)
            ax.set_ylim(bottom=0)
        elif scale == "log":
            ax.set_yscale("log")
        ax.set_title(f"critic LR {clr:g}")
        ax.set_xlabel("gradient steps")
        ax.set_ylabel(ylabel)
        _steps_axis(ax)
        ax.legend(fontsize=7)
    clip = bounds_text(bounds)
    _title(fig, _band_note(banded, what) + (f" (clipped: values {clip})" if banded and clip else ""))
    return fig


def _figure_specs(rs: ResultSet, runs: pd.DataFrame, agg: pd.DataFrame, stop_unit: str) -> list[tuple]:
    clip = bounds_text(return_bounds(runs))
    return [
        ("fig_learning_curves", "1", "Learning curves",
         "Episode return against environment steps; mean over seeds with a 95 % Student-t band where a "
         "configuration has two seeds or more (none for one seed)"
         + (f", clipped to the returns the task can give ({clip})." if clip else "."),
         lambda: fig_learning_curves(rs, runs)),
        ("fig_stopping_heatmap", "2", "Stopping step over the learning-rate grid",
         f"Gradient step at which the actor's weights stopped changing ({stop_unit}), mean over the seeds "
         "where it happened; 'never' = no seed stopped within its run.",
         lambda: _heatmap(agg, "stop_mean", "stopped", "actor weights stopped changing", stop_unit)),
        ("fig_grad_death_heatmap", "3", "Gradient-death step over the learning-rate grid",
         f"First gradient step of the final run of dead actor gradients ({stop_unit}), mean over the seeds "
         "where it happened.",
         lambda: _heatmap(agg, "death_mean", "grad_dead", "actor gradient died", stop_unit)),
        ("fig_saturation_time", "4", "Saturation ratio over training",
         "Fraction of actor outputs with |tanh z| above the saturation threshold, per tracking row; mean over "
         "seeds, 95 % Student-t band (two seeds or more) clipped to [0, 1].",
         lambda: _over_time(rs, runs, "saturation_ratio", "saturation ratio", "linear",
                            "Saturation ratio: mean", bounds=(0.0, 1.0))),
        ("fig_preactivation_time", "5", "Largest |z| over training",
         "Largest |pre-activation| of the actor's tanh output on the training batch; geometric mean over seeds "
         "with its 95 % interval on log10 (two seeds or more; positive by construction), log axis.",
         lambda: _over_time(rs, runs, "preact_max_abs", "max |z|", "log", "max |z|: geometric mean")),
        ("fig_dead_output_time", "6", "Dead-output fraction over training",
         "Fraction of actor outputs whose tanh derivative is exactly 0 in the run's dtype (no gradient can "
         "flow through them), per tracking row; mean over seeds, 95 % Student-t band (two seeds or more) "
         "clipped to [0, 1].",
         lambda: _over_time(rs, runs, "dead_output_frac", "dead-output fraction", "linear",
                            "Dead outputs: mean", bounds=(0.0, 1.0))),
        ("fig_rho_time", "7", "Actor/critic gradient-norm ratio over training",
         "rho = ||actor gradient|| / ||critic gradient||; symmetric-log axis (linear below 1e-8) so that "
         "exact zeros (dead actor gradients) are drawn at 0, not dropped; mean over seeds, 95 % Student-t band "
         "(two seeds or more) clipped at 0 (rho >= 0).",
         lambda: _over_time(rs, runs, "rho", "rho", "symlog", "rho: mean", bounds=(0.0, math.inf))),
        ("fig_eval_curves", "8", "Evaluation return over training",
         "Mean return of the deterministic evaluation episodes (run.eval_interval, a separately seeded "
         "environment) against environment steps; mean over seeds with a 95 % Student-t band (two seeds or "
         "more), clipped to the task's possible returns. Only for runs with evaluations.",
         lambda: fig_eval_curves(rs, runs)),
    ]


def _draw(name: str, number: str, title: str, caption: str, make: Callable[[], Figure], fig_dir: Path,
          errors: Failures) -> FigureResult:
    from .figures import NoData, draw_figure  # noqa: PLC0415 - the shared style, PNG/PDF writer and failure policy

    return draw_figure(make, fig_dir, FigureResult(name, number, title, caption, "Learning-rate grid"), errors,
                       f"Fig. {number}", expected=(NoFigure, NoData))


# ------------------------------------------------------------------ the page
def _summary(runs: pd.DataFrame, agg: pd.DataFrame, viable_line: str, unit: str, stop_unit: str) -> list[str]:
    n = len(runs)
    algos_, envs = sorted(set(runs["algo"])), sorted({str(e) for e in runs["env"] if e})
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    lines = [f"{n} runs of {', '.join(algos_)} on {', '.join(envs) or 'unknown task'}: {len(agg)} "
             f"configurations x {len(seeds)} seed(s); runs count {unit}, stop steps are {stop_unit}."]
    stopped, dead = runs[runs["stop"].notna()], runs[runs["grad_death"].notna()]
    lines.append(f"Actor weights stopped changing in {len(stopped)} of {n} runs"
                 + (f" (at {stop_unit} {stopped['stop'].min():.0f}–{stopped['stop'].max():.0f})" if len(stopped) else "")
                 + f"; the actor gradient died in {len(dead)} of {n} runs"
                 + (f" ({stop_unit} {dead['grad_death'].min():.0f}–{dead['grad_death'].max():.0f})" if len(dead) else "")
                 + ".")
    lines.append(f"The critic stopped in {int(runs['critic_stopped'].sum())} of {n} runs; "
                 f"{int(runs['diverged'].sum())} of {n} runs diverged (non-finite gradients or weights).")
    lines.append(viable_line + ".")
    return lines


def _missing(rs: ResultSet, runs: pd.DataFrame) -> list[str]:
    out = [f"{rs.label}: {p}" for p in rs.problems]
    out += [f"{rid}: pending (no run folder yet)" for rid in rs.pending]
    out += [f"{run.run_id}: {p}" for run in rs.runs for p in run.problems]  # missing or unreadable files
    for _, r in runs.iterrows():
        if r["status"] != "finished":
            done = f" after {r['done']:.0f} {r['unit']}" if np.isfinite(r["done"]) else ""
            err = f": {str(r['error']).splitlines()[0]}" if r["error"] else ""
            out.append(f"{r['run_id']}: {r['status']}{done}{err}")
    return out


def check_one_task(rs: ResultSet, runs: pd.DataFrame) -> None:
    """Refuse (:class:`~gradasym.config.ConfigError`, one line) a result set whose runs are of several
    algorithms or tasks: the report groups runs by learning rates, so a DDPG and a TD3 run at the same
    rates would be pooled as two seeds of one configuration."""
    kinds = runs.groupby(["algo", "env"], dropna=False).size() if len(runs) else pd.Series(dtype=int)
    if len(kinds) > 1:
        listed = "; ".join(f"{a} on {e}: {n} run(s)" for (a, e), n in kinds.items())
        raise ConfigError(f"{rs.path} holds runs of several algorithms or tasks ({listed}); the report pools runs "
                          "by learning rates, so report each in its own folder")


def build_generic_report(rs: ResultSet, runs: pd.DataFrame, out: Path, margin: float, title: str | None,
                         version: str, config_info: ConfigInfo, extra_missing: list[str] | None = None,
                         warning: str | None = None) -> Path:
    """Write figures, tables, ``report.md`` and ``report.html`` for one result set under ``out``
    (``runs``: its :func:`generic_runs`, which the caller has passed through :func:`check_one_task`
    before writing anything; ``warning``: one line shown in the summary and the viable section,
    e.g. runs too short)."""
    fig_dir, tab_dir = out / "figures", out / "tables"
    unit, stop_unit = _units(runs) if len(runs) else ("steps", "steps")
    agg = config_summary(runs, margin) if len(runs) else pd.DataFrame()
    errors = Failures(out)
    figures = [_draw(*spec, fig_dir=fig_dir, errors=errors) for spec in _figure_specs(rs, runs, agg, stop_unit)]
    tables = [config_table(agg, unit, stop_unit, bounds_text(return_bounds(runs)))] if len(agg) else []
    viable, viable_line = viable_table(agg, margin) if len(agg) else (None, "no configurations evaluated")
    runs_tab = runs_table(runs)
    scale = scale_text(runs)
    heatmap = [f for f in figures if f.name == "fig_stopping_heatmap"]
    summary = [(rs.label, _summary(runs, agg, viable_line, unit, stop_unit) if len(runs)
                else ["No runs found yet: " + "; ".join(rs.problems or ["empty folder"])])]
    if warning:
        summary[0][1].insert(0, f"Warning: {warning}.")
    definition = viable_definition(margin) + (f" Warning: {warning}." if warning else "")
    content = ReportContent(
        title=title or f"gradasym report — {rs.label}" + (f" ({scale})" if scale else ""),
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), version=version,
        scale=scale, provenance_line=provenance_text(collect_provenance()),
        main=[MainResult("Stopping over the learning-rate grid", heatmap, tables)],
        provenance_table=provenance_table(rs, runs),
        sets=[{"role": "main", "label": rs.label, "path": str(rs.path), "kind": rs.kind, "runs": len(rs.runs)}],
        summary=summary, missing=_missing(rs, runs) + errors + list(extra_missing or []),
        viable=[viable] if viable else [], viable_definition=definition, figures=figures,
        group_tables=tables, compare_tables=[], runs_table=runs_tab, configs=[config_info], out_dir=out,
        runs_note=f"status, progress in {unit}, stopping step in {stop_unit}, errors",
    )
    for t in ([viable] if viable else []) + tables + [runs_tab, content.provenance_table]:
        write_table(t, tab_dir)
    write_markdown(out / "report.md", content, ([viable] if viable else []) + tables + [runs_tab])
    html_path = out / "report.html"
    html_path.write_text(render_html(content), encoding="utf-8")
    return html_path

