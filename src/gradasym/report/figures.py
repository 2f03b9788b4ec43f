"""The paper's figures (2-15) drawn from result sets, as matplotlib ``Figure`` objects.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend switch), so the report works headless and leaves the caller's
matplotlib state alone. Every function takes prepared frames
(:class:`~gradasym.report.analysis.GroupData`) and returns a figure, or raises
:class:`NoData` with a reason when the data it needs does not exist (the report
then lists the figure as missing instead of failing).

Conventions, also stated on each figure: with several seeds, lines and bars are
means with a shaded band / error bar for the 95 % Student-t interval; quantities
drawn on log axes (gradient norms, rho, |z|) use geometric means with the
interval computed on log10, except the gradient norms over episodes (Fig. 4),
which are medians over seeds (a vanished gradient is exactly 0, which no mean on
log10 can hold); fractions (saturation ratios) get intervals computed
on the logit scale, inside [0, 1]. "≥N" marks configurations whose actors did not
all stop within the N episodes run (the paper writes the training length, 2000).

Nothing is dropped silently: on log axes, values that are exactly 0 (an actor
gradient that vanished in float32) are drawn at a marked *floor* a decade below
the smallest positive value (:func:`zero_floor`), with their count in the legend.
Figures whose content depends on the data set their caption
(:func:`set_caption`), so that a caption names only what is drawn.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterable

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator
from matplotlib.transforms import Bbox

from ..errors import describe
from .analysis import (
    CONFIG_KEYS, GroupData, correlation_text, curve_median, curve_summary, final_tracking, fmt_lr, multi_seed,
    reward_at_stop_and_end, stop_cell_text, stop_correlations,
)
from .failures import Failures
from .html import FigureResult
from .paper import PAPER_RHO_RANGE
from .stats import (
    BOOTSTRAP_CI_METHOD, CORRELATION_CI_METHOD, FRACTION_CI_METHOD, IQM_DEFINITION, MEDIAN_CI_METHOD,
    geometric_mean_ci, mean_ci, median_ci_ranks,
)
from .verdict import Verdict

__all__ = ["NoData", "STYLE", "save_figure", "render_figure", "draw_figure", "set_caption", "figure_caption", "zero_floor",
           "GROUP_FIGURES", "COMPARE_FIGURES", "PLASTICITY_FIGURES", "has_plasticity"] + [
    "fig_stopping_heatmap", "fig_stopping_bubbles", "fig_grad_norms", "fig_layer_grad_norms",
    "fig_rho_vs_stop", "fig_saturation_time", "fig_preactivation_time", "fig_saturation_heatmap",
    "fig_saturation_vs_stop", "fig_learning_curves", "fig_reward_stop_end", "fig_agent_stops", "fig_plasticity",
    "fig_lead_times",
    "fig_compare_stopping", "fig_compare_preactivation", "fig_seed_stops", "SEED_FIGURES", "fig_verdict",
    "VERDICT_FIGURE",
]

#: rcParams used for every figure (sized to stay legible when shown ~900 px wide).
STYLE: dict = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "legend.title_fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "savefig.dpi": 120,
}

PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
MAX_LINE = "#2ca02c"   # the paper's green dashed "maximum training duration" line
STOP_LABEL = "stopping episode (episodes)"


class NoData(Exception):
    """The data a figure needs does not exist (the message says what is missing)."""


# ------------------------------------------------------------------ helpers
def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Save ``fig`` as ``name.png`` and ``name.pdf`` under ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    with mpl.rc_context(STYLE):
        fig.savefig(png, format="png")
        fig.set_layout_engine("none")  # keep the layout computed for the PNG: same geometry, half the time
        fig.savefig(pdf, format="pdf")
    return png, pdf


def render_figure(make: Callable[[], Figure], out_dir: Path, name: str) -> tuple[Path, Path, str | None]:
    """Build a figure with :data:`STYLE` in effect and save it as PNG and PDF.

    Returns both paths and the figure's data-dependent caption (None when it has none).
    """
    with mpl.rc_context(STYLE):
        fig = make()
        return (*save_figure(fig, out_dir, name), figure_caption(fig))


_CAPTION_ATTR = "_gradasym_caption"


def set_caption(fig: Figure, caption: str) -> Figure:
    """Attach the caption that describes what ``fig`` actually draws (replaces the static one)."""
    setattr(fig, _CAPTION_ATTR, caption)
    return fig


def draw_figure(make: Callable[[], Figure], fig_dir: Path, res: FigureResult, errors: Failures, label: str,
                expected: tuple[type[Exception], ...] = (NoData,)) -> FigureResult:
    """Draw ``res``'s figure with :func:`render_figure` and return ``res`` with its files and caption.

    An ``expected`` exception (:class:`NoData`: nothing to draw) becomes ``res.missing``;
    any other is a bug, listed as an internal error (``label``, e.g. ``"Fig. 4 (baseline)"``)
    through :meth:`Failures.add`, so a report never dies on one figure.
    """
    try:
        res.png, res.pdf, caption = render_figure(make, fig_dir, res.name)
        res.caption = caption or res.caption  # a caption computed from what is drawn replaces the static one
    except expected as exc:
        res.missing = str(exc)
    except Exception as exc:  # noqa: BLE001 - a report must never die on one figure
        res.missing = f"internal error while drawing ({describe(exc)})"
        errors.add(f"{label}: {describe(exc)}", f"figure {res.name}", exc)
    return res


def figure_caption(fig: Figure) -> str | None:
    """The caption set by :func:`set_caption`, or None."""
    return getattr(fig, _CAPTION_ATTR, None)


def zero_floor(values: Iterable[float]) -> float:
    """Where exact zeros are drawn on a log axis: a decade below the smallest positive value.

    ``10 ** (floor(log10(min positive)) - 1)``; 1e-12 when no value is positive.
    """
    arr = np.asarray([_as_float(v) for v in values], dtype=float)
    pos = arr[np.isfinite(arr) & (arr > 0)]
    if not len(pos):
        return 1e-12
    return float(10.0 ** (math.floor(math.log10(pos.min())) - 1))


def _floor_line(ax: Axes, floor: float, label: str) -> None:
    """The dotted line where exact zeros are drawn, labelled just below it (clear of the markers on it)."""
    ax.axhline(floor, color="#555555", ls=":", lw=1.0, zorder=1)
    ax.text(0.995, floor / 1.3, label, transform=ax.get_yaxis_transform(), ha="right", va="top", fontsize=7.5,
            color="#555555")
    ax.update_datalim([(np.nan, floor / 6.0)])  # room for the label below the line (y only)


def _colors(values: Iterable[float]) -> dict[float, str]:
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(set(values)))}


def _lrs(agg: pd.DataFrame) -> tuple[list[float], list[float]]:
    return sorted(agg["actor_lr"].dropna().unique()), sorted(agg["critic_lr"].dropna().unique())


def _config_label(a: float, c: float) -> str:
    return f"{fmt_lr(a)}\n{fmt_lr(c)}"


def _as_float(value) -> float:
    """``float(value)``, NaN for None or anything not numeric."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise NoData(reason)


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _panels(n: int, height: float = 3.3) -> tuple[Figure, list[Axes]]:
    """A grid of ``n`` panels (two columns when n > 1) sharing the x axis."""
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig = _figure(7.0 if ncols == 1 else 11.0, height * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _band(ax: Axes, cs: pd.DataFrame, color: str, ls: str = "-", label: str | None = None) -> None:
    """Mean line with its CI band (band only where more than one seed contributed)."""
    ax.plot(cs["episode"], cs["mean"], color=color, ls=ls, lw=1.5, label=label)
    multi = cs["n"] >= 2
    if multi.any():
        ax.fill_between(cs["episode"], cs["lo"].where(multi), cs["hi"].where(multi), color=color, alpha=0.18, lw=0)


def _ended_runs_note(cs: pd.DataFrame, what: str) -> str:
    """A caption sentence when the seeds behind a configuration's curve change along it (runs that ended
    earlier than others: early termination, failures); empty when every curve has the same seeds throughout."""
    n = cs.groupby(CONFIG_KEYS)["n"].agg(["min", "max"]) if len(cs) else pd.DataFrame(columns=["min", "max"])
    if not (n["min"] < n["max"]).any():
        return ""
    return (f" Runs end at different episodes (early termination, failures): at each episode the {what} is over "
            f"the seeds that logged it ({int(n['min'].min())} to {int(n['max'].max())} per configuration), so "
            "a curve's late episodes show only the seeds that ran longest.")


def _default_caption(fn: Callable[[GroupData], Figure]) -> str:
    """The caption :data:`GROUP_FIGURES` gives the figure drawn by ``fn``."""
    return next(caption for _, _, _, caption, f in GROUP_FIGURES if f is fn)


def _log_y(ax: Axes) -> None:
    """Log y axis with decade ticks only (minor ticks cost time and add clutter)."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())


def _set_log_ticks(ax: Axes, axis: str, values: list[float]) -> None:
    lo, hi = min(values), max(values)
    lim = (lo / 3.0, hi * 3.0)
    if axis == "x":
        ax.set_xscale("log"), ax.set_xlim(*lim), ax.set_xticks(values), ax.set_xticklabels([fmt_lr(v) for v in values])
        ax.minorticks_off()
    else:
        ax.set_yscale("log"), ax.set_ylim(*lim), ax.set_yticks(values), ax.set_yticklabels([fmt_lr(v) for v in values])
        ax.minorticks_off()


def _suptitle(fig: Figure, title: str, gd: GroupData, note: str = "") -> None:
    extra = f" — {note}" if note else ""
    fig.suptitle(f"{title}\n{gd.title}: {gd.seeds_text}{extra}", fontsize=11)


# ------------------------------------------------------------------ heatmaps (2, 9)
def _lr_heatmap(fig: Figure, ax: Axes, agg: pd.DataFrame, value: str, text: Callable[[pd.Series], str],
                cmap: Colormap, norm: Normalize, cbar_label: str) -> None:
    """Actor LR (y) x critic LR (x) grid coloured by ``value`` and annotated by ``text``."""
    actors, critics = _lrs(agg)
    grid = np.full((len(actors), len(critics)), np.nan)
    cells: dict[tuple[int, int], pd.Series] = {}
    for _, row in agg.iterrows():
        i, j = actors.index(row["actor_lr"]), critics.index(row["critic_lr"])
        grid[i, j] = row[value]
        cells[(i, j)] = row
    cmap = cmap.with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", cmap=cmap, norm=norm, aspect="auto")
    fs = 10 if len(critics) <= 4 else 8
    for i in range(len(actors)):
        for j in range(len(critics)):
            row = cells.get((i, j))
            v = grid[i, j]
            label = text(row) if row is not None else "no data"
            color = _text_color(cmap(norm(v))) if np.isfinite(v) else "#555555"
            ax.text(j, i, label, ha="center", va="center", fontsize=fs, color=color)
    ax.set_xticks(range(len(critics)), [fmt_lr(c) for c in critics])
    ax.set_yticks(range(len(actors)), [fmt_lr(a) for a in actors])
    ax.set_xlabel("critic learning rate")
    ax.set_ylabel("actor learning rate")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=cbar_label, shrink=0.9)


def _n_line(row: pd.Series, key: str = "stop_n") -> str:
    return f"\nn={int(row[key])}" if row[key] != 1 else ""


def fig_stopping_heatmap(gd: GroupData) -> Figure:
    """Fig. 2: episode at which all actors stopped, per (actor LR, critic LR)."""
    _require(len(gd.agg) and gd.agg["stop_n"].sum() > 0, "no run has a stopping episode or episode count")
    fig = _figure(7.5, 5.6)
    ax = fig.subplots()
    vmax = gd.max_episodes if np.isfinite(gd.max_episodes) else float(gd.agg["stop_mean"].max())
    multi = gd.agg["stop_n"].max() > 1

    def text(row: pd.Series) -> str:
        t = stop_cell_text(row)
        if multi and row["stop_n"] > 0:
            t += f"\nn={int(row['stop_n'])}"
            if 0 < row["n_stopped"] < row["stop_n"]:
                t += f", {int(row['n_stopped'])} stopped"
        if row.get("partial"):
            t += "\n(running)"
        return t

    _lr_heatmap(fig, ax, gd.agg, "stop_mean", text, mpl.colormaps["RdYlGn"], Normalize(0, vmax), STOP_LABEL)
    ci = " ± 95% CI half-width" if multi else ""
    _suptitle(fig, f"Fig. 2 — Stopping episode (mean{ci})", gd,
              "≥N: actors never all stopped in the N episodes run")
    return fig


def fig_saturation_heatmap(gd: GroupData) -> Figure:
    """Fig. 9: final output saturation ratio per (actor LR, critic LR)."""
    _require(len(gd.agg) and gd.agg["sat_n"].sum() > 0, "no run reports final_saturation_ratio")
    fig = _figure(7.5, 5.6)
    ax = fig.subplots()
    multi = gd.agg["sat_n"].max() > 1

    def text(row: pd.Series) -> str:
        if not row["sat_n"]:
            return "—"
        t = f"{row['sat_mean']:.2f}"
        if row["sat_n"] >= 2:
            t += f"\n[{row['sat_lo']:.2f}, {row['sat_hi']:.2f}]\nn={int(row['sat_n'])}"
        return t

    _lr_heatmap(fig, ax, gd.agg, "sat_mean", text, mpl.colormaps["magma_r"], Normalize(0, 1),
                f"final saturation ratio (fraction of outputs with |tanh z| > {gd.saturation_threshold:g})")
    _suptitle(fig, "Fig. 9 — Final actor-output saturation" + (" (mean [95% CI])" if multi else ""), gd)
    return set_caption(fig, "Final saturation ratio per configuration" + (
        f"; with several seeds: mean [{FRACTION_CI_METHOD}] and n." if multi else " (one seed: no interval)."))


# ------------------------------------------------------------------ bubble (3)
def fig_stopping_bubbles(gd: GroupData) -> Figure:
    """Fig. 3: bubble plot of stopping episodes (size and colour = stopping episode)."""
    agg = gd.agg[gd.agg["stop_n"] > 0]
    _require(len(agg), "no run has a stopping episode or episode count")
    actors, critics = _lrs(agg)
    vmax = gd.max_episodes if np.isfinite(gd.max_episodes) else float(agg["stop_mean"].max())
    norm = Normalize(0, vmax)
    fig = _figure(7.5, 5.8)
    ax = fig.subplots()
    sizes = 80 + 1800 * np.clip(agg["stop_mean"] / vmax, 0, 1)
    sc = ax.scatter(agg["critic_lr"], agg["actor_lr"], s=sizes, c=agg["stop_mean"], cmap="RdYlGn", norm=norm,
                    edgecolors="black", linewidths=[1.8 if c else 0.6 for c in agg["any_censored"]], alpha=0.85,
                    zorder=3)
    for _, row in agg.iterrows():
        ax.annotate(stop_cell_text(row, with_ci=False), (row["critic_lr"], row["actor_lr"]), ha="center",
                    va="center", fontsize=9, zorder=4)
    _set_log_ticks(ax, "x", critics)
    _set_log_ticks(ax, "y", actors)
    ax.set_xlabel("critic learning rate (log scale)")
    ax.set_ylabel("actor learning rate (log scale)")
    fig.colorbar(sc, ax=ax, label=STOP_LABEL, shrink=0.9)
    n_censored = int(agg["any_censored"].sum())
    _suptitle(fig, "Fig. 3 — Stopping episodes (bubble area and colour ∝ episode)", gd,
              "thick edge: never stopped" if n_censored else "")
    caption = "Bubble area and colour proportional to the stopping episode"
    caption += "; with several seeds the mean over seeds." if gd.agg["stop_n"].max() > 1 else " (one seed)."
    if n_censored:
        caption += (f" Thick edges: the {n_censored} configuration(s) where at least one seed never stopped "
                    "(drawn at the episodes run, a lower bound).")
    missing = len(gd.agg) - len(agg)
    if missing:
        caption += f" {missing} configuration(s) without a stopping episode or episode count are not drawn."
    return set_caption(fig, caption)


# ------------------------------------------------------------------ over-time panels (4, 7, 8, 11)
def _per_actor_panels(gd: GroupData, data: pd.DataFrame, draw: Callable[[Axes, pd.DataFrame, str], None],
                      ylabel: str, legend_extra: list | None = None) -> Figure:
    """One panel per actor LR; ``draw(ax, rows_of_one_critic_lr, color)`` per critic LR."""
    actors = sorted(data["actor_lr"].dropna().unique())
    colors = _colors(data["critic_lr"].dropna().unique())
    fig, axes = _panels(len(actors))
    for ax, a in zip(axes, actors):
        sub = data[data["actor_lr"] == a]
        for c, color in colors.items():
            rows = sub[sub["critic_lr"] == c]
            if len(rows):
                draw(ax, rows, color)
        ax.set_title(f"actor LR = {fmt_lr(a)}")
        ax.set_ylabel(ylabel)
    for ax in axes[-2:] if len(axes) > 1 else axes:
        ax.set_xlabel("episode")
        ax.tick_params(labelbottom=True)
    handles = [Line2D([], [], color=col, lw=2, label=fmt_lr(c)) for c, col in colors.items()]
    handles += legend_extra or []
    fig.legend(handles=handles, title="critic LR", loc="outside right center")
    return fig


def fig_grad_norms(gd: GroupData) -> Figure:
    """Fig. 4: actor (solid) and critic (dashed) gradient norms over episodes, log y.

    The curve is the median over seeds (:func:`~gradasym.report.analysis.curve_median`): a
    seed whose gradient vanished exactly counts as 0, whatever the axis draws it at (a mean
    on log10 would follow the arbitrary floor). Zeros (median or band end) are drawn at the
    floor of :func:`zero_floor` (dotted line), a median of 0 marked with triangles, so a
    panel whose actor gradient vanished still shows its line.
    """
    _require(len(gd.track) and {"actor_grad_norm", "critic_grad_norm"} <= set(gd.track), "no tracking.parquet rows")
    norms = {k: pd.to_numeric(gd.track[f"{k}_grad_norm"], errors="coerce") for k in ("actor", "critic")}
    floor = zero_floor(pd.concat(list(norms.values())))  # every median and band end is one of these values
    act = curve_median(gd.track, "actor_grad_norm")
    cri = curve_median(gd.track, "critic_grad_norm")
    _require(len(act) or len(cri), "gradient norms are missing")
    both = pd.concat([act.assign(kind="actor"), cri.assign(kind="critic")])
    for c in ("median", "lo", "hi"):
        both[c] = both[c].where(both[c] != 0, floor)
    both = both.rename(columns={"median": "mean"})  # what _band draws as the line
    zeros = {k: int((v == 0).sum()) for k, v in norms.items()}
    total = {k: int(v.notna().sum()) for k, v in norms.items()}
    runs_zero = {k: int(gd.track.loc[v == 0, "run_id"].nunique()) for k, v in norms.items()}
    floored: set[int] = set()

    def draw(ax: Axes, rows: pd.DataFrame, color: str) -> None:
        for kind, ls in (("actor", "-"), ("critic", "--")):
            r = rows[rows["kind"] == kind]
            if len(r):
                _band(ax, r, color, ls)
                z = r[r["mean"] == floor]
                if len(z):
                    ax.plot(z["episode"], z["mean"], ls="", marker="v", ms=4, color=color, zorder=4)
                if (r["lo"] == floor).any() and id(ax) not in floored:  # one floor line per panel
                    _floor_line(ax, floor, "exactly 0")
                    floored.add(id(ax))
        _log_y(ax)

    extra = [Line2D([], [], color="black", ls="-", label="actor"),
             Line2D([], [], color="black", ls="--", label="critic")]
    n_zero = zeros["actor"] + zeros["critic"]
    zero_counts = [f"{zeros[k]} of {total[k]} {k}" for k in zeros if zeros[k]]  # the caption's counts, per kind
    if n_zero:
        extra.append(Line2D([], [], color="#555555", ls=":", marker="v", ms=4,
                            label=f"exactly 0, drawn at {floor:.0e}\n({' and '.join(zero_counts)} norms)"))
    fig = _per_actor_panels(gd, both, draw, "gradient L2 norm (log)", extra)
    bands = set(both["band"])
    band_note = {frozenset({"ci"}): ", band = 95% CI of the median",
                 frozenset({"ci", "range"}): ", band = 95% CI of the median (range where < 6 seeds)",
                 frozenset({"range"}): ", band = range over seeds"}.get(frozenset(bands - {"none"}), "")
    _suptitle(fig, "Fig. 4 — Actor vs critic gradient norms", gd,
              ("one seed" if bands == {"none"} else "median over seeds") + band_note)
    caption = ("Actor (solid) and critic (dashed) gradient L2 norms at each log interval, log scale, one panel "
               "per actor LR, one colour per critic LR; ")
    if bands == {"none"}:
        caption += "one seed per configuration (no interval)."
    else:
        caption += ("median over seeds (for an even count the geometric midpoint of the two middle seeds), so a "
                    "seed whose gradient vanished counts as 0 and no more")
        if "ci" in bands:
            k, coverage = median_ci_ranks(int(both.loc[both["band"] == "ci", "n"].max()))
            caption += (f"; band: the distribution-free 95% interval of the median, from the k-th smallest to the "
                        f"k-th largest seed (where at least 6 seeds logged the episode; k = {k} and coverage "
                        f"{coverage:.1%} at {int(both['n'].max())} seeds)")
        if "range" in bands:
            caption += ("; band: the range over the seeds where 2-5 seeds logged it (too few for a 95% interval "
                        "of a median)")
        caption += "." + _ended_runs_note(both, "median")
    if n_zero:
        parts = [f"{zeros[k]} of the {total[k]} logged {k} norms (in {runs_zero[k]} runs)" for k in zeros if zeros[k]]
        caption += (" Exactly zero: " + " and ".join(parts) + f"; zeros are drawn at the dotted floor {floor:.0e} "
                    "(a decade below the smallest positive norm)"
                    + (", a median of 0 marked ▼." if bands == {"none"} else
                       ", a median of 0 marked ▼ and a band reaching 0 cut there."))
    return set_caption(fig, caption)


def fig_saturation_time(gd: GroupData) -> Figure:
    """Fig. 7: saturation ratio over episodes with the 0.9 reference line."""
    _require(len(gd.track) and "saturation_ratio" in gd.track, "no saturation_ratio in tracking.parquet")
    cs = curve_summary(gd.track, "saturation_ratio", fraction=True)
    multi = bool((cs["n"] >= 2).any())

    def draw(ax: Axes, rows: pd.DataFrame, color: str) -> None:
        _band(ax, rows, color)
        ax.axhline(0.9, color="black", ls="--", lw=1)
        ax.set_ylim(-0.03, 1.03)

    extra = [Line2D([], [], color="black", ls="--", label="0.9 (severe saturation)")]
    fig = _per_actor_panels(gd, cs, draw, "saturation ratio (fraction)", extra)
    _suptitle(fig, f"Fig. 7 — Fraction of actor outputs with |tanh z| > {gd.saturation_threshold:g}", gd,
              "mean, band = 95% CI on the logit scale" if multi else "one seed per configuration")
    caption = (f"Fraction of actor outputs (all agents and action dimensions) with |tanh z| > "
               f"{gd.saturation_threshold:g} at each log interval; dashed: 0.9. "
               + (f"Mean over seeds; band: {FRACTION_CI_METHOD}." if multi else "One seed per configuration (no band).")
               + _ended_runs_note(cs, "mean"))
    return set_caption(fig, caption)


def fig_preactivation_time(gd: GroupData) -> Figure:
    """Fig. 8: output pre-activation mean ± std over episodes (symlog y, ±2 reference).

    Small multiples: one panel per configuration (rows: actor LR, columns: critic LR,
    shared axes), so each ±std band stands alone instead of covering the others'.
    """
    _require(len(gd.track) and {"preact_mean", "preact_std"} <= set(gd.track), "no preact_mean/std in tracking")
    mean = curve_summary(gd.track, "preact_mean")
    std = curve_summary(gd.track, "preact_std")
    data = mean.merge(std[CONFIG_KEYS + ["episode", "mean"]].rename(columns={"mean": "std"}),
                      on=CONFIG_KEYS + ["episode"], how="left")
    actors = sorted(data["actor_lr"].dropna().unique())
    critics = sorted(data["critic_lr"].dropna().unique())
    colors = _colors(critics)
    fig = _figure(max(7.0, 2.6 * len(critics) + 1.0), 2.1 * len(actors) + 1.2)
    axes = fig.subplots(len(actors), len(critics), sharex=True, sharey=True, squeeze=False)
    for i, a in enumerate(actors[::-1]):  # the highest actor LR on top, as in the heatmaps
        for j, c in enumerate(critics):
            ax = axes[i, j]
            rows = data[(data["actor_lr"] == a) & (data["critic_lr"] == c)]
            if len(rows):
                ax.plot(rows["episode"], rows["mean"], color=colors[c], lw=1.5)
                ax.fill_between(rows["episode"], rows["mean"] - rows["std"], rows["mean"] + rows["std"],
                                color=colors[c], alpha=0.25, lw=0)
            else:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#555555")
            for y in (-2, 2):
                ax.axhline(y, color="black", ls="--", lw=0.8)
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_title(f"actor {fmt_lr(a)} · critic {fmt_lr(c)}", fontsize=9)
            if i == len(actors) - 1:
                ax.set_xlabel("episode")
            if j == 0:
                ax.set_ylabel("z (symlog)")
    top = float(np.nanmax(np.abs(np.r_[data["mean"] - data["std"], data["mean"] + data["std"], 2.0])))
    axes[0, 0].set_yticks(_symlog_ticks(top))  # shared y: a few decades, labels that stay apart
    handles = [Patch(color="grey", alpha=0.3, label="± 1 std"), Line2D([], [], color="black", ls="--", label="z = ±2")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2)
    _suptitle(fig, "Fig. 8 — Actor output pre-activations (tanh inputs): mean ± std", gd,
              "averaged over seeds" if (data["n"] >= 2).any() else "")
    return set_caption(fig, _default_caption(fig_preactivation_time) + _ended_runs_note(mean, "mean"))


def _symlog_ticks(top: float, most: int = 7) -> list[float]:
    """Ticks 0, ±10^d, ±10^2d ... up to ``top`` for a symlog axis (linthresh 1), every d-th decade so that
    at most ``most`` ticks remain (every decade of a 1e6 range in a small panel would make labels collide;
    ±1 sits too close to 0 on this axis)."""
    kmax = max(1, math.ceil(math.log10(max(top, 1.0))))
    step = max(1, math.ceil(2 * kmax / (most - 1)))
    decades = [10.0 ** k for k in range(step, kmax + 1, step)]
    return sorted([-d for d in decades] + [0.0] + decades)


def fig_learning_curves(gd: GroupData) -> Figure:
    """Fig. 11: smoothed learning curves with dotted lines at the stopping episodes."""
    _require(len(gd.eps), "no episodes.parquet rows")
    cs = curve_summary(gd.eps, "reward_smooth")
    stops = gd.agg.set_index(["actor_lr", "critic_lr"])

    def draw(ax: Axes, rows: pd.DataFrame, color: str) -> None:
        _band(ax, rows, color)
        key = (rows["actor_lr"].iloc[0], rows["critic_lr"].iloc[0])
        if key in stops.index:
            st = stops.loc[key]
            if st["n_stopped"] > 0 and not st["all_censored"]:
                ax.axvline(st["stop_mean"], color=color, ls=":", lw=1.6)

    extra = [Line2D([], [], color="black", ls=":", label="stopping episode (mean)")]
    fig = _per_actor_panels(gd, cs, draw, f"episode reward ({gd.window}-ep. mov. avg.)", extra)
    multi = bool((cs["n"] >= 2).any())
    _suptitle(fig, "Fig. 11 — Learning curves (team reward = −cost)", gd,
              "mean, band = 95% t-CI" if multi else "one seed per configuration: no band")
    return set_caption(fig, _default_caption(fig_learning_curves)
                       + (" Mean over seeds; band: 95% Student-t interval." if multi else
                          " One seed per configuration: no band.")
                       + _ended_runs_note(cs, "mean"))


# ------------------------------------------------------------------ per-layer (5)
def _layer_cols(track: pd.DataFrame, who: str) -> list[str]:
    pat = re.compile(rf"^{who}_grad_norm_l(\d+)$")
    cols = [c for c in track.columns if pat.match(c)]
    return sorted(cols, key=lambda c: int(pat.match(c).group(1)))


def _representative_configs(agg: pd.DataFrame) -> list[tuple[float, float]]:
    """Lowest actor LR with its latest-stopping critic LR; highest with its earliest."""
    agg = agg[agg["stop_n"] > 0] if (agg["stop_n"] > 0).any() else agg
    lo, hi = agg["actor_lr"].min(), agg["actor_lr"].max()
    a = agg[agg["actor_lr"] == lo].sort_values(["stop_mean", "critic_lr"], ascending=[False, True]).iloc[0]
    b = agg[agg["actor_lr"] == hi].sort_values(["stop_mean", "critic_lr"], ascending=[True, False]).iloc[0]
    pairs = [(a["actor_lr"], a["critic_lr"]), (b["actor_lr"], b["critic_lr"])]
    return pairs[:1] if pairs[0] == pairs[1] else pairs


def fig_layer_grad_norms(gd: GroupData) -> Figure:
    """Fig. 5: per-layer gradient norms at the final log, two representative configurations."""
    _require(len(gd.track), "no tracking.parquet rows")
    acols, ccols = _layer_cols(gd.track, "actor"), _layer_cols(gd.track, "critic")
    _require(acols or ccols, "no per-layer gradient columns (actor_grad_norm_l{j})")
    final = final_tracking(gd.track)
    pairs = _representative_configs(gd.agg)
    fig = _figure(5.5 * len(pairs) + 0.5, 4.6)
    axes = fig.subplots(1, len(pairs), squeeze=False, sharey=True).ravel()
    any_ci = False
    cols = acols + ccols
    labels = [f"actor\nl{i}" + (" (out)" if i == len(acols) - 1 else "") for i in range(len(acols))]
    labels += [f"critic\nl{i}" + (" (out)" if i == len(ccols) - 1 else "") for i in range(len(ccols))]
    for ax, (a, c) in zip(axes, pairs):
        rows = final[(final["actor_lr"] == a) & (final["critic_lr"] == c)]
        cis = [geometric_mean_ci(rows[col]) for col in cols]
        means = np.array([ci.mean for ci in cis])
        colors = ["#1f77b4"] * len(acols) + ["#ff7f0e"] * len(ccols)
        x = np.arange(len(cols))
        if len(rows) >= 2:  # an interval needs two seeds: one seed gets bars without error bars (no caps)
            err = np.array([[ci.mean - ci.lo for ci in cis], [ci.hi - ci.mean for ci in cis]])
            ax.bar(x, np.nan_to_num(means, nan=0.0), color=colors, yerr=np.nan_to_num(err), capsize=3)
            any_ci = True
        else:
            ax.bar(x, np.nan_to_num(means, nan=0.0), color=colors)
        _log_y(ax)
        ax.set_xticks(x, labels)
        ep = int(rows["episode"].max()) if len(rows) else 0
        ax.set_title(f"actor LR {fmt_lr(a)}, critic LR {fmt_lr(c)}\n(final log ≈ episode {ep}, n={len(rows)})")
        for i, m in enumerate(means):
            if not np.isfinite(m):
                ax.text(i, 1, "0 / n.a.", ha="center", fontsize=8, rotation=90, transform=ax.get_xaxis_transform(),
                        va="top")
    axes[0].set_ylabel("gradient L2 norm at final log (log)")
    _suptitle(fig, "Fig. 5 — Per-layer gradient norms (blue: actor, orange: critic)", gd,
              "geometric mean, error bars = 95% t-CI on log10" if any_ci else "one seed: no interval")
    return set_caption(fig, _default_caption(fig_layer_grad_norms) + (
        " Bars: geometric mean over seeds; error bars: 95% Student-t interval on log10." if any_ci else
        " One seed per configuration: no interval."))


# ------------------------------------------------------------------ scatter vs stop (6, 10)
def _scatter_vs_stop(gd: GroupData, ycol: str, agg_prefix: str, ylabel: str, log: bool, title: str,
                     what: str, noun: str, refs: Callable[[Axes], str] | None = None,
                     ci_method: str = "Student-t", below: Iterable[float] = ()) -> Figure:
    """Per-run ``ycol`` against the stopping episode; returns the figure with a caption of what it draws.

    On a log axis (``log``) runs whose value is exactly 0 are drawn as triangles at
    the floor of :func:`zero_floor` (dotted line), below every positive value, every
    drawn interval and the values in ``below`` (reference marks); runs without a
    value are listed in the caption. ``refs(ax)`` draws reference marks and returns
    their caption text.
    """
    have_stop = gd.runs[gd.runs["stop_value"].notna()]
    vals = pd.to_numeric(have_stop[ycol], errors="coerce")
    runs = have_stop[vals.notna()].assign(_y=vals[vals.notna()])
    without = sorted(have_stop.loc[vals.isna(), "run_id"])
    _require(len(runs), f"no run has both a stopping episode and {ycol}")
    lows = gd.agg[f"{agg_prefix}_lo"] if multi_seed(gd) else pd.Series(dtype=float)
    floor = zero_floor([*runs["_y"], *lows, *below]) if log else math.nan
    is_zero = (runs["_y"] == 0) if log else pd.Series(False, index=runs.index)
    runs = runs.assign(_zero=is_zero, _plot=runs["_y"].where(~is_zero, floor))
    colors = _colors(runs["actor_lr"].unique())
    fig = _figure(7.8, 5.2)
    ax = fig.subplots()
    multi = gd.agg["n_runs"].max() > 1
    size = 28 if multi else 60  # marker area (points^2)
    skipped_means = 0
    drew_means = False
    for a, color in colors.items():
        r = runs[runs["actor_lr"] == a]
        for zero, marker in ((False, "o"), (True, "v")):
            rr = r[r["_zero"] == zero]
            if len(rr):
                ax.scatter(rr["stop_value"], rr["_plot"], c=[color if st else "white" for st in rr["stopped"]],
                           edgecolors=color, marker=marker, s=size * (1.4 if zero else 1.0),
                           alpha=0.6 if multi else 0.9, linewidths=1.3, zorder=3)
        if multi:
            agg = gd.agg[(gd.agg["actor_lr"] == a) & (gd.agg["n_runs"] > 1)]
            if log:  # a geometric mean over positive seeds only would hide the zeros: no diamond then
                has_zero = agg["critic_lr"].isin(set(r.loc[r["_zero"], "critic_lr"]))
                skipped_means += int(has_zero.sum())
                agg = agg[~has_zero]
            agg = agg[agg[f"{agg_prefix}_n"] > 0]
            if len(agg):
                yerr = np.array([agg[f"{agg_prefix}_mean"] - agg[f"{agg_prefix}_lo"],
                                 agg[f"{agg_prefix}_hi"] - agg[f"{agg_prefix}_mean"]])
                ok = ~agg["any_censored"].astype(bool)  # no CI on lower bounds
                xerr = np.array([(agg["stop_mean"] - agg["stop_lo"]).where(ok, 0.0),
                                 (agg["stop_hi"] - agg["stop_mean"]).where(ok, 0.0)])  # clipped: asymmetric
                ax.errorbar(agg["stop_mean"], agg[f"{agg_prefix}_mean"], xerr=xerr, yerr=yerr, fmt="D",
                            color=color, ms=7, mec="black", capsize=3, zorder=4)
                drew_means = True
    n_zero = int(runs["_zero"].sum())
    if n_zero:
        _floor_line(ax, floor, f"{what} = 0 exactly (drawn at {floor:.0e})")
    if np.isfinite(gd.max_episodes):
        ax.axvline(gd.max_episodes, color=MAX_LINE, ls="--", lw=1)
    if log:
        _log_y(ax)
    ref_text = refs(ax) if refs else ""
    any_hollow, any_filled = bool((~runs["stopped"]).any()), bool(runs["stopped"].any())
    ax.set_xlabel("stopping episode (episodes)" + ("; hollow = never stopped, plotted at episodes run"
                                                   if any_hollow else ""))
    ax.set_ylabel(ylabel)
    handles = [Line2D([], [], marker="o", ls="", color=col, label=fmt_lr(a)) for a, col in colors.items()]
    n_pos = len(runs) - int(runs["_zero"].sum())
    shape = "o" if n_pos else "v"
    if any_filled and any_hollow:
        handles.append(Line2D([], [], marker=shape, ls="", color="grey", label="filled: actors stopped"))
        handles.append(Line2D([], [], marker=shape, ls="", color="grey", mfc="white", label="hollow: never stopped"))
    if n_zero:
        handles.append(Line2D([], [], marker="v", ls=":", color="#555555", mfc="white",
                              label=f"{what} = 0 exactly ({n_zero} of {len(runs)} runs)"))
    if drew_means:
        handles.append(Line2D([], [], marker="D", ls="", color="grey", mec="black",
                              label="configuration mean ± 95% CI"))
    if np.isfinite(gd.max_episodes):
        handles.append(Line2D([], [], color=MAX_LINE, ls="--", label="episodes requested"))
    ax.legend(handles=handles, title="actor LR", loc="best")
    _suptitle(fig, title, gd)
    corr_text = _correlation_box(ax, gd, ycol) if multi_seed(gd) else ""
    crowded, places = _count_labels(fig, ax, runs["stop_value"], runs["_plot"],
                                    marker_pt=math.sqrt(size * (1.4 if n_zero else 1.0)))

    n_stopped = int(runs["stopped"].sum())
    parts = [f"{noun} of each run against its stopping episode, one colour per actor LR ({len(runs)} runs)."]
    if any_filled:
        parts.append(f"Filled markers: the {n_stopped} runs whose actors all stopped.")
    if any_hollow:
        parts.append(f"Hollow markers: the {len(runs) - n_stopped} runs that never stopped, plotted at the episodes "
                     "they ran.")
    if n_zero and n_pos:
        parts.append(f"Circles: the {n_pos} runs with {what} > 0.")
    if n_zero:
        parts.append(f"Triangles on the dotted floor: the {n_zero} runs whose {what} is exactly 0 (their final actor "
                     f"gradient vanished), drawn at {floor:.0e}, a decade below every positive value"
                     + (", interval" if drew_means else "") + " and reference mark.")
    if drew_means:
        parts.append("Diamonds: configuration means with 95% intervals"
                     + (" (geometric mean, t-interval on log10)" if log else f" ({ci_method})")
                     + (f"; {skipped_means} configurations with a zero seed have no diamond (a geometric mean "
                        "cannot include it)" if skipped_means else "") + ".")
    if np.isfinite(gd.max_episodes):
        parts.append("Green dashed: the episodes requested.")
    if ref_text:
        parts.append(ref_text)
    if places:
        parts.append(f"×k: k runs whose markers coincide or overlap ({crowded} runs in {places} "
                     + ("place)." if places == 1 else "places)."))
    if without:
        parts.append(f"Not drawn: {len(without)} runs without a value ({', '.join(without[:8])}"
                     + (" …" if len(without) > 8 else "") + ").")
    if corr_text:
        parts.append(corr_text)
    return set_caption(fig, " ".join(parts))


def _count_labels(fig: Figure, ax: Axes, xs: Iterable[float], ys: Iterable[float], marker_pt: float,
                  fontsize: float = 8) -> tuple[int, int]:
    """Write "×k" beside each place where k runs' markers coincide or overlap (they would look like
    fewer runs than there are); returns (runs in such places, number of places) for the caption.

    Call when everything else is drawn: the layout is computed once to know where the points land.
    Points closer on the page than half a marker (``marker_pt`` points wide), whose markers then read
    as one, form one place (chains of them too); its label goes left of it (at its mid-height), or, if that would cover an
    earlier label, the nearest free line below or above, joined to the point by a thin leader. The
    labels take no part in the layout.
    """
    pts = np.column_stack([np.asarray(list(xs), float), np.asarray(list(ys), float)])
    if len(pts) < 2:
        return 0, 0
    fig.draw_without_rendering()  # final axis limits and axes position
    px = fig.dpi / 72.0
    disp = ax.transData.transform(pts)
    places = _overlapping(disp, 0.5 * marker_pt * px)  # markers more than half covered read as one
    frame = ax.get_window_extent()
    placed: list[Bbox] = []
    lead = {"arrowstyle": "-", "color": "#888888", "lw": 0.6, "shrinkA": 0, "shrinkB": 3}
    crowded = [m for m in places if len(m) > 1]
    for members in sorted(crowded, key=lambda m: tuple(disp[m].min(axis=0))):
        left, (low, high) = disp[members, 0].min(), np.percentile(disp[members, 1], [0, 100])
        anchor = tuple(ax.transData.inverted().transform((left, (low + high) / 2)))  # left of the place, mid-height
        text = f"×{len(members)}"
        first = ax.annotate(text, anchor, xytext=(-7, 0), textcoords="offset points", ha="right", va="center",
                            fontsize=fontsize, color="#333333", zorder=5)
        first.set_in_layout(False)
        at = first.get_window_extent().padded(1.5 * px)  # no leader yet: the text's box, at its point
        line = at.height

        def free(b: Bbox) -> bool:
            return frame.y0 <= b.y0 and b.y1 <= frame.y1 and not any(b.overlaps(o) for o in placed)

        # the nearest free line (0, one down, one up, two down, ...), else at the point itself
        steps = [0, *(sign * d for d in range(1, int(frame.height // line) + 1) for sign in (-1, 1))]
        step = next((s for s in steps if free(at.translated(0, s * line))), 0)
        placed.append(at.translated(0, step * line))
        if step:
            first.remove()
            ax.annotate(text, anchor, xytext=(-7, step * line / px), textcoords="offset points", ha="right",
                        va="center", fontsize=fontsize, color="#333333", zorder=5,
                        arrowprops=lead).set_in_layout(False)
    return sum(len(m) for m in crowded), len(crowded)


def _overlapping(disp: np.ndarray, diameter: float) -> list[np.ndarray]:
    """Indices of ``disp`` (n x 2 page positions) grouped into chains of points closer than ``diameter``."""
    parent = list(range(len(disp)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(disp[:, 0], kind="stable")
    for a, i in enumerate(order):  # sweep in x: only neighbours within one diameter can overlap
        for j in order[a + 1:]:
            if disp[j, 0] - disp[i, 0] >= diameter:
                break
            if np.hypot(*(disp[j] - disp[i])) < diameter:
                parent[root(int(j))] = root(int(i))
    groups: dict[int, list[int]] = {}
    for i in range(len(disp)):
        groups.setdefault(root(i), []).append(i)
    return [np.array(g) for g in groups.values()]


def _correlation_box(ax: Axes, gd: GroupData, ycol: str) -> str:
    """Pearson/Spearman correlations of ``ycol`` with the stopping episode above the axes; returns the caption text."""
    corr = stop_correlations(gd.runs)
    corr = corr[corr["quantity"] == ycol]
    if not len(corr):
        return ""
    lines, parts = [], []
    for _, c in corr.iterrows():
        who = "all runs" if c["runs"] == "all" else "stopped runs"
        pr = correlation_text(c["pearson_r"], c["pearson_lo"], c["pearson_hi"], c["pearson_n"],
                     "r(log10)" if c["log10"] else "r")
        sr = correlation_text(c["spearman_r"], c["spearman_lo"], c["spearman_hi"], c["spearman_n"], "r_s")
        lines.append(f"{who}: {pr}; {sr}")
        parts.append(f"{who}: Pearson {pr}, Spearman {sr}")
    ax.set_title("\n".join(lines), fontsize=8, loc="left")  # above the axes: never hides a point
    c0 = corr.iloc[0]
    zero = (f" Pearson's r is on log10 ρ, without the {int(c0['n_zero'])} runs with ρ exactly 0 (Spearman's "
            "includes them, ranked lowest)." if c0["log10"] and c0["n_zero"] else
            (" Pearson's r is on log10 ρ." if c0["log10"] else ""))
    return ("Correlation with the stopping episode (above the plot): " + "; ".join(parts) + ". 'All runs' counts "
            "the runs that never stopped at the episodes they ran (hollow markers), 'stopped runs' leaves them out."
            + zero
            + f" Intervals: {CORRELATION_CI_METHOD}.")


def fig_rho_vs_stop(gd: GroupData) -> Figure:
    """Fig. 6: final gradient asymmetry rho = |grad actor| / |grad critic| vs stopping episode."""
    def refs(ax: Axes) -> str:
        ax.axhspan(*PAPER_RHO_RANGE, color="grey", alpha=0.08, lw=0)
        ax.text(0.01, PAPER_RHO_RANGE[1], "paper's ρ range 1e-8…1e-4", transform=ax.get_yaxis_transform(),
                fontsize=8, va="bottom", color="grey")
        return "Grey band: the paper's ρ range 1e-8 … 1e-4."

    return _scatter_vs_stop(gd, "final_rho", "rho", "final ρ = ‖∇actor‖ / ‖∇critic‖ (log)", True,
                            "Fig. 6 — Gradient asymmetry vs stopping episode", "ρ",
                            "Final ρ = ‖∇actor‖/‖∇critic‖", refs, below=PAPER_RHO_RANGE)


def fig_saturation_vs_stop(gd: GroupData) -> Figure:
    """Fig. 10: final saturation ratio vs stopping episode."""
    def refs(ax: Axes) -> str:
        ax.axhline(0.9, color="black", ls="--", lw=0.8)
        ax.set_ylim(-0.03, 1.03)
        return "Black dashed: 0.9."

    return _scatter_vs_stop(gd, "final_saturation_ratio", "sat", "final saturation ratio (fraction)", False,
                            "Fig. 10 — Final saturation vs stopping episode", "saturation",
                            "Final saturation ratio", refs, ci_method=FRACTION_CI_METHOD)


# ------------------------------------------------------------------ bars (12, 13)
def _config_axis(ax: Axes, pairs: list[tuple[float, float]]) -> np.ndarray:
    x = np.arange(len(pairs))
    ax.set_xticks(x, [_config_label(a, c) for a, c in pairs])
    ax.set_xlabel("actor LR / critic LR")
    return x


def fig_reward_stop_end(gd: GroupData) -> Figure:
    """Fig. 12: smoothed reward at the stopping episode vs at the end of training, as a dot plot.

    One column per configuration on a linear reward axis: a dot at the reward when
    the actors stopped and one at the end, joined by a line (position is the value;
    rewards are negative costs, so bars from an arbitrary floor would mean nothing).
    The stop value averages the seeds that stopped; a configuration where none
    stopped has only its end dot. Error bars only with two or more seeds.
    """
    _require(len(gd.eps), "no episodes.parquet rows")
    per_run = reward_at_stop_and_end(gd.eps, gd.runs)
    pairs = sorted({(a, c) for a, c in zip(per_run["actor_lr"], per_run["critic_lr"])})
    fig = _figure(max(7.0, 0.65 * len(pairs) + 2.5), 4.8)
    ax = fig.subplots()
    x = _config_axis(ax, pairs)
    styles = (("at_stop", "#d62728", "o", -0.12, "at stopping episode"),
              ("at_end", "#1f77b4", "s", 0.12, "at end of training"))
    any_ci = False
    no_stop = 0
    for i, (a, c) in enumerate(pairs):
        rows = per_run[(per_run["actor_lr"] == a) & (per_run["critic_lr"] == c)]
        pts = {}
        for col, color, marker, dx, _ in styles:
            vals = rows.loc[rows["stopped"], col] if col == "at_stop" else rows[col]
            ci = mean_ci(vals)
            if ci.n == 0:
                continue
            pts[col] = (x[i] + dx, ci.mean)
            if ci.n >= 2:
                ax.scatter(np.full(ci.n, x[i] + dx), vals, s=10, color=color, alpha=0.35, lw=0, zorder=2)
                ax.errorbar(x[i] + dx, ci.mean, yerr=[[ci.mean - ci.lo], [ci.hi - ci.mean]], color=color,
                            capsize=3, lw=1.2, zorder=3)
                any_ci = True
            ax.plot(x[i] + dx, ci.mean, marker=marker, color=color, ms=7, ls="", zorder=4)
        if len(pts) == 2:
            (x0, y0), (x1, y1) = pts["at_stop"], pts["at_end"]
            ax.plot([x0, x1], [y0, y1], color="#888888", lw=1.2, zorder=1)
        elif "at_end" in pts:
            no_stop += 1
            ax.annotate("no stop", pts["at_end"], xytext=(0, 8), textcoords="offset points", ha="center",
                        fontsize=7.5, color="#555555")
    ax.set_ylabel(f"episode reward ({gd.window}-episode trailing mean)")
    ax.legend(handles=[Line2D([], [], marker=m, ls="", color=col, label=lab) for _, col, m, _, lab in styles],
              loc="best", fontsize=8, framealpha=0.95)
    _suptitle(fig, "Fig. 12 — Reward at stopping point vs end of training", gd,
              "mean ± 95% t-CI" if any_ci else "one seed per configuration")
    caption = (f"Trailing-mean reward ({gd.window} episodes) per configuration on a linear axis: red circle at the "
               "stopping episode (mean over the seeds that stopped), blue square at the last episode run, joined by "
               "a grey line.")
    if no_stop:
        caption += f" {no_stop} configurations never stopped in any seed: only their end value, marked 'no stop'."
    caption += (" Error bars: 95% Student-t intervals; small dots: the seeds." if any_ci
                else " One seed per configuration: no interval.")
    return set_caption(fig, caption)


def fig_agent_stops(gd: GroupData) -> Figure:
    """Fig. 13: distribution of per-agent stopping episodes (box plots, seeds pooled)."""
    runs = gd.runs[gd.runs["per_agent_stop_episode"].map(lambda v: isinstance(v, (list, tuple, np.ndarray)))]
    _require(len(runs), "no run reports per_agent_stop_episode")
    pairs = sorted({(a, c) for a, c in zip(runs["actor_lr"], runs["critic_lr"])})
    data, counts = [], []
    for a, c in pairs:
        lists = runs.loc[(runs["actor_lr"] == a) & (runs["critic_lr"] == c), "per_agent_stop_episode"]
        flat = [v for lst in lists for v in lst]
        stopped = [v for v in map(_as_float, flat) if np.isfinite(v)]
        data.append(stopped)
        counts.append((len(stopped), len(flat)))
    fig = _figure(max(7.0, 0.65 * len(pairs) + 2.5), 4.8)
    ax = fig.subplots()
    x = _config_axis(ax, pairs)
    boxes = [(i, d) for i, d in enumerate(data) if d]
    if boxes:
        ax.boxplot([d for _, d in boxes], positions=[i for i, _ in boxes], widths=0.6, showfliers=True,
                   patch_artist=True, boxprops={"facecolor": "#9ecae1"}, medianprops={"color": "black"})
    ax.set_xticks(x, [_config_label(a, c) for a, c in pairs])
    top = gd.max_episodes if np.isfinite(gd.max_episodes) else max([max(d) for d in data if d] + [1])
    ax.set_ylim(0, top * 1.1)
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.axhline(top, color=MAX_LINE, ls="--", lw=1)
    for i, (k, n) in enumerate(counts):
        ax.text(i, top * 1.02, f"{k}/{n}", ha="center", va="bottom", fontsize=8,
                color="black" if k else "grey")
    ax.set_ylabel("agent stopping episode (episodes)")
    _suptitle(fig, "Fig. 13 — Per-agent stopping episodes (k/n = agents stopped / agents, seeds pooled)", gd,
              "green dashed: episodes requested")
    return fig


# ------------------------------------------------------------------ seeds (16)
def fig_seed_stops(gd: GroupData) -> Figure:
    """Fig. 16: every seed's stopping episode per configuration, with the median and its order-statistic CI.

    Filled circles: seeds whose actors all stopped; hollow triangles pointing up, at
    the episodes run: seeds that never stopped (right-censored, "at least" this).
    Seeds at the same value are spread sideways, so each stays visible. A black bar
    marks the median, a vertical line its 95 % interval; an end that is a censored
    seed gets an arrow (only a lower bound is known).
    """
    _require(multi_seed(gd), "needs several seeds per configuration")
    agg = gd.agg[gd.agg["stop_n"] > 0].sort_values(["actor_lr", "critic_lr"])
    _require(len(agg), "no run has a stopping episode or episode count")
    runs = gd.runs[gd.runs["stop_value"].notna() & (gd.runs["stopped"] | (gd.runs["status"] != "failed"))]
    pairs = list(zip(agg["actor_lr"], agg["critic_lr"]))
    fig = _figure(max(7.5, 0.7 * len(pairs) + 2.5), 5.0)
    ax = fig.subplots()
    x = _config_axis(ax, pairs)
    colors = _colors(agg["actor_lr"].unique())
    n_drawn = n_cens = 0
    for i, (a, c) in enumerate(pairs):
        rr = runs[(runs["actor_lr"] == a) & (runs["critic_lr"] == c)].sort_values(["stop_value", "seed"])
        rank = rr.groupby("stop_value").cumcount().to_numpy()
        count = rr.groupby("stop_value")["stop_value"].transform("size").to_numpy()
        dx = (rank - (count - 1) / 2.0) * min(0.08, 0.6 / max(1, count.max()))
        color = colors[a]
        st = rr["stopped"].to_numpy(dtype=bool)
        ax.scatter(x[i] + dx[st], rr["stop_value"].to_numpy()[st], s=22, color=color, edgecolors=color, zorder=3)
        ax.scatter(x[i] + dx[~st], rr["stop_value"].to_numpy()[~st], s=34, marker="^", facecolors="white",
                   edgecolors=color, linewidths=1.2, zorder=3)
        n_drawn += len(rr)
        n_cens += int((~st).sum())
        row = agg.iloc[i]
        ax.hlines(row["stopmed_lo"], x[i] - 0.3, x[i] + 0.3, color="black", lw=2, zorder=4)
        if np.isfinite(row["stopmed_ci_lo"]):
            hi = row["stopmed_ci_hi"]
            ax.vlines(x[i] + 0.33, row["stopmed_ci_lo"], hi, color="black", lw=1.2, zorder=4)
            if not np.isfinite(row["stopmed_ci_hi_hi"]):  # the upper end is a seed that never stopped
                ax.annotate("", (x[i] + 0.33, hi * 1.06), (x[i] + 0.33, hi), zorder=4,
                            arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
    if np.isfinite(gd.max_episodes):
        ax.axhline(gd.max_episodes, color=MAX_LINE, ls="--", lw=1)
    ax.set_ylim(0, (gd.max_episodes if np.isfinite(gd.max_episodes) else float(runs["stop_value"].max())) * 1.12)
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.set_ylabel(STOP_LABEL)
    handles = [Line2D([], [], marker="o", ls="", color=col, label=f"actor LR {fmt_lr(a)}") for a, col in colors.items()]
    if n_cens:
        handles.append(Line2D([], [], marker="^", ls="", color="grey", mfc="white", label="never stopped (≥)"))
    no_ci = int((~np.isfinite(agg["stopmed_ci_lo"])).sum())
    any_ci = no_ci < len(agg)
    handles.append(Line2D([], [], color="black", lw=2, label="median"))
    if any_ci:
        handles.append(Line2D([], [], color="black", lw=1.2, label="median 95% CI"))
    if np.isfinite(gd.max_episodes):
        handles.append(Line2D([], [], color=MAX_LINE, ls="--", label="episodes requested"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    _suptitle(fig, "Fig. 16 — Stopping episode of every seed per configuration", gd,
              "median and 95% CI" if any_ci else "median (no interval: fewer than 6 seeds)")
    caption = (f"Every seed's stopping episode ({n_drawn} runs in {len(pairs)} configurations), one column per "
               "configuration (actor LR / critic LR); seeds at the same value are spread sideways. Filled circles: "
               f"the {n_drawn - n_cens} runs whose actors all stopped")
    running = int((~runs["stopped"] & (runs["status"] == "running")).sum())
    caption += (f"; hollow triangles: the {n_cens} runs whose actors did not all stop, drawn at the episodes they "
                "ran (a lower bound: right-censored, not dropped)"
                + (f"; {running} of them are still running" if running else "")
                + "." if n_cens else ".")
    failed = gd.runs[gd.runs["stop_value"].notna() & ~gd.runs["stopped"] & (gd.runs["status"] == "failed")]
    if len(failed):
        caption += (f" Not drawn: {len(failed)} failed runs whose actors had not stopped (their stopping episode is "
                    f"not even bounded): {', '.join(sorted(failed['run_id'])[:8])}" + (" …" if len(failed) > 8 else "")
                    + ".")
    caption += (f" Black bar: the median (never-stopped seeds ranked as ≥ their episodes); vertical line: the "
                f"{MEDIAN_CI_METHOD}; an arrow marks an end that is a never-stopped seed (only a lower bound).")
    if no_ci:
        caption += f" {no_ci} configurations have fewer than 6 seeds: no interval."
    if np.isfinite(gd.max_episodes):
        caption += " Green dashed: the episodes requested."
    return set_caption(fig, caption)


# ------------------------------------------------------------------ comparisons (14, 15)
def _comparable_pairs(groups: list[GroupData], value: str) -> list[tuple[float, float]]:
    """Configurations with data in at least two result sets (all of them if none is shared)."""
    counts: dict[tuple[float, float], int] = {}
    for g in groups:
        ok = g.agg[g.agg[f"{value}_n"] > 0]
        for p in set(zip(ok["actor_lr"], ok["critic_lr"])):
            counts[p] = counts.get(p, 0) + 1
    shared = [p for p, n in counts.items() if n >= 2]
    return sorted(shared or counts)


def _compare_bars(groups: list[GroupData], value: str, log: bool, ylabel: str, title: str,
                  max_line: bool) -> Figure:
    usable = [g for g in groups if len(g.agg) and (g.agg[f"{value}_n"] > 0).any()]
    _require(len(usable) >= 2, "needs at least two result sets with data (use --compare)")
    pairs = _comparable_pairs(usable, value)
    fig = _figure(min(13.0, max(7.5, 0.28 * len(pairs) * len(usable) + 3.0)), 5.4)
    ax = fig.subplots()
    x = _config_axis(ax, pairs)
    w = 0.8 / len(usable)
    handles = []
    hatched = 0
    for k, (g, color) in enumerate(zip(usable, PALETTE)):
        idx = g.agg.set_index(["actor_lr", "critic_lr"])
        rows = [idx.loc[p] if p in idx.index and idx.loc[p][f"{value}_n"] > 0 else None for p in pairs]
        have = [i for i, r in enumerate(rows) if r is not None]
        if not have:
            continue
        mean = np.array([rows[i][f"{value}_mean"] for i in have], dtype=float)
        err = np.array([[mean[j] - rows[i][f"{value}_lo"], rows[i][f"{value}_hi"] - mean[j]]
                        if not (value == "stop" and rows[i]["any_censored"]) else [0.0, 0.0]  # bounds: no CI
                        for j, i in enumerate(have)], dtype=float).T
        pos = x[have] + (k - (len(usable) - 1) / 2) * w
        bars = ax.bar(pos, mean, w, color=color, yerr=np.nan_to_num(err), capsize=2, edgecolor="black", lw=0.4)
        if value == "stop":
            for b, i in zip(bars, have):
                if rows[i]["any_censored"]:
                    b.set_hatch("//")
                    hatched += 1
        handles.append(Patch(facecolor=color, edgecolor="black", label=f"{g.title} ({g.seeds_text})"))
    if log:
        _log_y(ax)
    if max_line:
        for m in sorted({g.max_episodes for g in usable if np.isfinite(g.max_episodes)}):
            ax.axhline(m, color=MAX_LINE, ls="--", lw=1.2)
        handles.append(Line2D([], [], color=MAX_LINE, ls="--", label="maximum training duration"))
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="≥: not all seeds stopped"))
    ax.set_ylabel(ylabel)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8.5)
    fig.suptitle(title, fontsize=11)
    return set_caption(fig, _compare_caption(usable, value, max_line, hatched))


def _compare_caption(groups: list[GroupData], value: str, max_line: bool, hatched: int) -> str:
    """What :func:`_compare_bars` drew: which sets have intervals (several seeds) and which marks appear."""
    what = "mean stopping episode" if value == "stop" else "maximum |z| (geometric mean over seeds, log y)"
    multi = [g.title for g in groups if g.agg[f"{value}_n"].max() > 1]
    parts = [f"Grouped bars: one bar per result set for each configuration, the {what}."]
    if multi:
        parts.append("Error bars: 95% CI over seeds, for " + (
            "every set" if len(multi) == len(groups) else "the sets with several seeds (" + ", ".join(multi) + ")")
            + "; a single seed gets no interval.")
    else:
        parts.append("One seed per set: no intervals.")
    if hatched:
        parts.append(f"Hatched: {hatched} bar(s) with seeds that never stopped (the episodes run, a lower bound; "
                     "no interval).")
    if max_line:
        parts.append("Green dashed: maximum training duration.")
    return " ".join(parts)


def fig_compare_stopping(groups: list[GroupData]) -> Figure:
    """Figs. 14-15 style: stopping episodes per configuration, one bar per result set."""
    return _compare_bars(groups, "stop", False, STOP_LABEL,
                         "Figs. 14–15 — Stopping episodes per configuration and result set (mean ± 95% CI)", True)


def fig_compare_preactivation(groups: list[GroupData]) -> Figure:
    """Table 9 as a figure: max |pre-activation| per configuration and result set (log y)."""
    return _compare_bars(groups, "zmax", True, "max |pre-activation z| over training (log)",
                         "Fig. 15b — Max |tanh input| per configuration and result set (geometric mean ± 95% CI)",
                         False)


# ------------------------------------------------------------------ the remedy verdict (issue 21)
def fig_verdict(v: Verdict) -> Figure:
    """Fig. 19: per result set, the IQM of the improvement and of the final reward with bootstrap intervals.

    One row per result set (the baseline on top, in black), two panels sharing the rows:
    the relative improvement (the viability quantity, dashed at the margin) and the
    final-reward level (the last-10 % mean reward), each the IQM over all (configuration,
    seed) runs of the set with its stratified bootstrap interval (drawn only where some
    configuration has several seeds); dotted: the baseline's IQM. The row labels give the
    viable counts under both criteria.
    """
    rem = v.remedies[v.remedies["imp_n"] > 0].reset_index(drop=True)
    _require(len(rem) >= 2, "needs the baseline and another result set with finished runs")
    fig = _figure(10.5, 1.2 + 0.62 * len(rem))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rem))[::-1]
    colors = ["black"] + [PALETTE[i % len(PALETTE)] for i in range(len(rem) - 1)]
    with_ci = []
    for ax, (col, scale, label) in zip(axes, (("imp", 100.0, "improvement IQM (% of |first-10% mean reward|)"),
                                               ("final", 1.0, "final reward IQM (last-10% mean reward)"))):
        for i, r in rem.iterrows():
            est, lo, hi = scale * r[f"{col}_iqm"], scale * r[f"{col}_lo"], scale * r[f"{col}_hi"]
            if hi > lo:
                ax.errorbar([est], [y[i]], xerr=[[est - lo], [hi - est]], fmt="o", color=colors[i], capsize=3, ms=6)
                with_ci.append(r["set"])
            else:
                ax.plot([est], [y[i]], "o", color=colors[i], ms=6)
        base = scale * rem.loc[0, f"{col}_iqm"]
        ax.axvline(base, color="black", ls=":", lw=1)
        ax.set_xlabel(label)
    axes[0].axvline(100.0 * v.margin, color=MAX_LINE, ls="--", lw=1.2)
    names = [r["set"] if i or r["set"] == "baseline" else f"{r['set']} (baseline)" for i, r in rem.iterrows()]
    labels = [f"{name}\nviable {r['viable_every']}/{r['evaluated_every']}, robust {r['viable_robust']}/"
              f"{r['evaluated_robust']}" for name, (_, r) in zip(names, rem.iterrows())]
    axes[0].set_yticks(y, labels)
    axes[0].set_ylim(-0.7, len(rem) - 0.3)
    handles = [Line2D([], [], color="black", ls=":", label="baseline IQM"),
               Line2D([], [], color=MAX_LINE, ls="--", label=f"margin {v.margin:.0%}")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8.5)
    with_ci = list(dict.fromkeys(with_ci))
    fig.suptitle(f"Fig. {VERDICT_FIGURE[1]} — Remedy verdict: IQM over all runs of each result set"
                 + (" with 95% stratified bootstrap CI" if with_ci else " (one seed per configuration: no interval)"),
                 fontsize=11)
    caption = (f"Baseline: {v.baseline.title} (black, top row; dotted: its IQM). One row per result set: the "
               f"{IQM_DEFINITION} over all its finished (configuration, seed) runs of the relative improvement "
               "(left; dashed: the viability margin) and of the final reward (right). ")
    if with_ci:
        caption += (f"Error bars: the {BOOTSTRAP_CI_METHOD}" + ("" if len(with_ci) == len(rem) else
                    " (drawn for " + ", ".join(with_ci) + "; the others have one seed per configuration)") + ". ")
    else:
        caption += "One seed per configuration: nothing to resample, so no bars are drawn. "
    caption += ("Row labels: configurations viable in every seed / by the robust criterion, of those judged. Runs per "
                "set: " + "; ".join(f"{r['set']} {int(r['imp_n'])} in {int(r['strata'])} configurations"
                                    + (f" (missing: {r['missing']})" if r["missing"] else "")
                                    for _, r in rem.iterrows()) + ".")
    dropped = [s for s in v.remedies["set"] if s not in set(rem["set"])]
    if dropped:
        caption += " Not drawn (no finished run): " + ", ".join(dropped) + "."
    return set_caption(fig, caption)


VERDICT_FIGURE = ("fig19_verdict", "19", "Remedy verdict: IQM of improvement and final reward",
                  "IQM over all runs of each result set with its stratified bootstrap interval.")


#: (file stem, number, title, caption, function) of the per-group figures.
GROUP_FIGURES: list[tuple[str, str, str, str, Callable[[GroupData], Figure]]] = [
    ("fig02_stopping_heatmap", "2", "Stopping-episode heatmap",
     "Episode at which all actors had stopped updating, per actor LR (y) and critic LR (x). "
     "≥N: the actors did not all stop within the N episodes run (the paper's Table 3 writes the "
     "training length, 2000); with several seeds the cell shows mean ± 95% Student-t half-width and n.",
     fig_stopping_heatmap),
    ("fig03_stopping_bubbles", "3", "Stopping-episode bubble plot",
     "Bubble area and colour proportional to the stopping episode; thick edges mark configurations "
     "where at least one seed never stopped.", fig_stopping_bubbles),
    ("fig04_grad_norms", "4", "Actor vs critic gradient norms",
     "Actor (solid) and critic (dashed) gradient L2 norms at each log interval, log scale; exact zeros "
     "drawn at a marked floor.", fig_grad_norms),
    ("fig05_layer_grad_norms", "5", "Per-layer gradient norms",
     "Gradient norm of each layer (l0 = input layer) at the final log, for the lowest actor LR "
     "(latest-stopping critic LR) and the highest actor LR (earliest-stopping critic LR).", fig_layer_grad_norms),
    ("fig06_rho_vs_stop", "6", "Gradient asymmetry vs stopping",
     "Final ρ = ‖∇actor‖/‖∇critic‖ per run against its stopping episode; runs with ρ exactly 0 drawn "
     "at a marked floor.", fig_rho_vs_stop),
    ("fig07_saturation_time", "7", "Saturation ratio over training",
     "Fraction of actor outputs (all agents and action dimensions) beyond the saturation threshold; "
     "dashed: 0.9.", fig_saturation_time),
    ("fig08_preactivation_time", "8", "Pre-activation statistics",
     "Mean ± std of the tanh inputs (the actor's output pre-activations z) over training, one panel per "
     "configuration (rows: actor LR, columns: critic LR; shared axes, symmetric-log y); the line is the mean "
     "over seeds of each run's mean z, the band ± the mean over seeds of each run's std of z (the spread of z "
     "within a run, not an interval over seeds); dashed at z = ±2.",
     fig_preactivation_time),
    ("fig09_saturation_heatmap", "9", "Final saturation heatmap",
     "Final saturation ratio per configuration.", fig_saturation_heatmap),
    ("fig10_saturation_vs_stop", "10", "Saturation vs stopping",
     "Final saturation ratio per run against its stopping episode.", fig_saturation_vs_stop),
    ("fig11_learning_curves", "11", "Learning curves",
     "Trailing moving average of the episode reward; dotted vertical lines at the mean stopping episode.",
     fig_learning_curves),
    ("fig12_reward_stop_end", "12", "Reward at stop vs end",
     "Trailing-mean reward at the stopping episode and at the last episode run, as dots on a linear axis.",
     fig_reward_stop_end),
    ("fig13_agent_stops", "13", "Per-agent stopping distribution",
     "Box plots of the episodes at which individual agents stopped (seeds pooled); k/n above each box "
     "counts the agents that stopped.", fig_agent_stops),
]

#: Figures that compare result sets (need ``--compare`` or several preset groups).
COMPARE_FIGURES: list[tuple[str, str, str, str, Callable[[list[GroupData]], Figure]]] = [
    ("fig14_compare_stopping", "14–15", "Stopping episodes across result sets",
     "Grouped bars: one bar per result set for each configuration, mean ± 95% CI; hatched bars include "
     "seeds that never stopped (lower bounds); green dashed: maximum training duration.", fig_compare_stopping),
    ("fig15b_compare_preactivation", "15b", "Pre-activation magnitude across result sets",
     "Maximum |z| reached during training per configuration and result set (geometric mean ± 95% CI, log y); "
     "the graphic form of Table 9.", fig_compare_preactivation),
]


#: Figures of groups with several seeds per configuration (not drawn for single-seed groups).
SEED_FIGURES: list[tuple[str, str, str, str, Callable[[GroupData], Figure]]] = [
    ("fig16_seed_stops", "16", "Stopping episode of every seed",
     "Every seed's stopping episode per configuration, the median and its order-statistic 95% interval; seeds "
     "that never stopped at the episodes they ran (hollow).", fig_seed_stops),
]


# ------------------------------------------------------------------ plasticity (issue 20)
def _plasticity_tau_column(track: pd.DataFrame) -> str | None:
    """``actor_dormant_tau<t>`` at tau = 0.025 when recorded, else the first recorded tau (None: none)."""
    cols = [c for c in track.columns if re.fullmatch(r"actor_dormant_tau[0-9.e+-]+", str(c))]
    if not cols:
        return None
    return "actor_dormant_tau0.025" if "actor_dormant_tau0.025" in cols else sorted(cols)[0]


def has_plasticity(gd: GroupData) -> bool:
    """Whether a group's tracking tables hold the plasticity instruments (runs before issue 20 do not)."""
    return len(gd.track) > 0 and _plasticity_tau_column(gd.track) is not None


def _median_over_seeds(track: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per configuration and episode: ``median`` (the ordinary median over the seeds that logged it),
    ``lo``/``hi`` = min/max over those seeds, ``n``. No interval is claimed: with one seed lo = hi."""
    df = track[CONFIG_KEYS + ["episode"]].copy()
    df["v"] = pd.to_numeric(track[value], errors="coerce").astype(float)
    df = df[np.isfinite(df["v"])]
    if not len(df):
        return pd.DataFrame(columns=CONFIG_KEYS + ["episode", "median", "lo", "hi", "n"])
    g = df.groupby(CONFIG_KEYS + ["episode"], sort=True)["v"].agg(["median", "min", "max", "count"]).reset_index()
    return g.rename(columns={"min": "lo", "max": "hi", "count": "n"})


def fig_plasticity(gd: GroupData) -> Figure:
    """Fig. 17: tau-dormant fraction (left) and effective rank of the penultimate features (right) over
    episodes, actors (solid) vs critic (dashed), one row per actor LR, one colour per critic LR; the
    median over seeds, with the range over seeds shaded where several logged the episode (no interval
    is claimed: a range is not a confidence interval)."""
    dcol = _plasticity_tau_column(gd.track) if len(gd.track) else None
    _require(dcol is not None, "no plasticity columns in tracking.parquet (runs recorded before they existed, "
                               "or run.plasticity = false)")
    tau = dcol.removeprefix("actor_dormant_tau")
    ccol = f"critic_dormant_tau{tau}"
    quantities = [(dcol, ccol, f"τ-dormant fraction (τ = {tau})"),
                  ("actor_effective_rank", "critic_effective_rank", "effective rank of the penultimate features")]
    data = {col: _median_over_seeds(gd.track, col) for a, c, _ in quantities for col in (a, c) if col in gd.track}
    _require(any(len(v) for v in data.values()), "the plasticity columns hold no finite values")
    actors = sorted(pd.concat([v["actor_lr"] for v in data.values() if len(v)]).dropna().unique())
    colors = _colors(pd.concat([v["critic_lr"] for v in data.values() if len(v)]).dropna().unique())
    fig = _figure(11.0, 2.9 * len(actors) + 0.9)
    axes = fig.subplots(len(actors), 2, sharex=True, squeeze=False)
    several = False
    for row, a in zip(axes, actors):
        for ax, (acol, ccol_, label) in zip(row, quantities):
            for col, ls in ((acol, "-"), (ccol_, "--")):
                cs = data.get(col)
                if cs is None or not len(cs):
                    continue
                for c, color in colors.items():
                    r = cs[(cs["actor_lr"] == a) & (cs["critic_lr"] == c)]
                    if not len(r):
                        continue
                    ax.plot(r["episode"], r["median"], color=color, ls=ls, lw=1.5)
                    multi = r["n"] >= 2
                    if multi.any():
                        several = True
                        ax.fill_between(r["episode"], r["lo"].where(multi), r["hi"].where(multi), color=color,
                                        alpha=0.15, lw=0)
            ax.set_title(f"actor LR = {fmt_lr(a)}", fontsize=9)
            ax.set_ylabel(label, fontsize=8)
            if "fraction" in label:
                ax.set_ylim(-0.03, 1.03)
    for ax in axes[-1]:
        ax.set_xlabel("episode")
    handles = [Line2D([], [], color=col, lw=2, label=fmt_lr(c)) for c, col in colors.items()]
    handles += [Line2D([], [], color="black", ls="-", label="actors (mean over actors)"),
                Line2D([], [], color="black", ls="--", label="critic")]
    fig.legend(handles=handles, title="critic LR", loc="outside right center")
    note = "median over seeds, shaded: range over seeds" if several else "one seed per configuration"
    _suptitle(fig, "Fig. 17 — Dormant units and feature rank, actors vs critic", gd, note)
    caption = (f"Left: fraction of τ-dormant hidden units (Sokar et al. 2023: a unit's mean |activation| on the "
               f"update's batch is at most τ = {tau} times its layer's mean), over all hidden layers, actors "
               "(solid; each actor's fraction, then the mean over the actors) and critic (dashed). Right: effective "
               "rank (exp of the entropy of the normalised singular values) of the last hidden layer's features on "
               "the batch; the actors' (at most their last hidden width) is the mean over the actors. One row per "
               "actor LR, one colour per critic LR, at each log interval. ")
    caption += ("Lines: the median over the seeds that logged the episode; shaded: the range over those seeds "
                "(not a confidence interval)." if several else
                "One seed per configuration: no interval.")
    return set_caption(fig, caption)


def fig_lead_times(gd: GroupData) -> Figure:
    """Fig. 18: every stopped run's lead time per instrument (one row per instrument), with the median
    and its order-statistic interval; runs where an instrument did not announce the freeze are counted
    in its label, not dropped silently."""
    from .lead_time import INSTRUMENTS, lead_time_summary, lead_times  # noqa: PLC0415 - the table's functions
    from .plasticity_tables import ONSET_DEFINITION, lead_time_runs  # noqa: PLC0415

    leads = lead_times(gd.track, lead_time_runs(gd.runs))
    _require(len(leads), "no run whose actors all stopped has the instruments in tracking.parquet (no lead time)")
    summary = lead_time_summary(leads).set_index("instrument")
    order = [(col, label) for col, label, _, _ in INSTRUMENTS if col in summary.index]
    fig = _figure(8.5, 0.75 * len(order) + 1.6)
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # sideways spread of equal values: fixed, so the figure is reproducible
    any_ci = False
    labels = []
    for i, (col, label) in enumerate(order):
        y = len(order) - 1 - i
        lead = leads.loc[leads["instrument"] == col, "lead"].to_numpy(dtype=float)
        have = lead[np.isfinite(lead)]
        s = summary.loc[col]
        ax.scatter(have, y + rng.uniform(-0.18, 0.18, len(have)), s=14, color=PALETTE[i % len(PALETTE)],
                   alpha=0.7, zorder=3)
        if len(have):
            ax.vlines(s["lead_median"], y - 0.3, y + 0.3, color="black", lw=2.2, zorder=4)
            if np.isfinite(s["lead_lo"]):
                any_ci = True
                ax.hlines(y - 0.32, s["lead_lo"], s["lead_hi"], color="black", lw=1.4, zorder=4)
        missed = int(s["n_runs"] - s["n_announced"])
        labels.append(f"{label}\n{int(s['n_announced'])}/{int(s['n_runs'])} announced"
                      + (f", {missed} did not" if missed else ""))
    ax.set_yticks(range(len(order)), labels[::-1], fontsize=8)
    ax.set_ylim(-0.7, len(order) - 0.4)
    ax.axvline(0, color="#888888", lw=0.8, ls=":")
    ax.set_xlabel("lead time before the stopping episode (episodes)")
    _suptitle(fig, "Fig. 18 — Lead time of each instrument before the actors' freeze", gd,
              "median and 95% CI" if any_ci else "median (no interval: fewer than 6 runs announced)")
    n_stopped = int(leads["run_id"].nunique())
    caption = (f"One point per stopped run ({n_stopped} runs) and instrument, at its lead time; {ONSET_DEFINITION}; "
               "those runs are counted in the row's label ('k/n announced, m did not'), not drawn. Points at "
               "equal values are spread vertically. Black bar: the median lead time over the runs that announced")
    caption += (f"; horizontal line below it: the {MEDIAN_CI_METHOD}." if any_ci else
                "; no interval: fewer than 6 runs announced for every instrument.")
    return set_caption(fig, caption)


#: Figures drawn for groups whose tracking tables hold the plasticity instruments (:func:`has_plasticity`).
PLASTICITY_FIGURES: list[tuple[str, str, str, str, Callable[[GroupData], Figure]]] = [
    ("fig17_plasticity", "17", "Dormant units and feature rank, actors vs critic",
     "τ-dormant fraction and effective rank of the penultimate features over episodes, actors (solid) vs critic "
     "(dashed), median over seeds.", fig_plasticity),
    ("fig18_lead_times", "18", "Lead time of each instrument before the actors' freeze",
     "Every stopped run's lead time per instrument, median and its interval.", fig_lead_times),
]
