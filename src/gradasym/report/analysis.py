"""Derived tables the figures and tables share: per-configuration aggregates and curves.

A *configuration* is ``(set, group, actor_lr, critic_lr)``: the result set (a
results folder), the preset group inside it, and the learning rates; its runs are
the seeds. Stopping episodes follow the paper's convention: a run whose actors
never all stopped counts as the number of episodes it ran (Table 3 writes 2000),
i.e. a lower bound ("censored"); aggregates say when they include such values.

Failed runs whose actors had not all stopped are left out of the stopping
statistics (their true stopping episode is unknown and not even bounded by the
training length); running runs count as lower bounds and are flagged ``partial``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ConfigError
from .load import ResultSet, presets_label
from .paper import PAPER_MAX_EPISODES, paper_category
from .stats import (
    MeanCI, correlation, fraction_mean_ci, geometric_mean_ci, logit, mean_ci, median_ci, median_ci_ranks,
    t_quantile, wilson_interval,
)

CONFIG_KEYS = ["set", "group", "actor_lr", "critic_lr"]

__all__ = [
    "CONFIG_KEYS", "check_margin", "comparable_with_paper", "config_table", "stop_cell_text", "tracking_long",
    "episodes_long", "scale_text", "curve_summary", "curve_median",
    "smoothing_window", "final_tracking", "reward_at_stop_and_end", "viable_table", "ViableCount",
    "viable_count", "fmt_lr", "fmt_num", "group_title", "GroupData", "build_groups", "multi_seed",
    "single_seed", "single_seed_viable", "viable_by_seed", "stop_correlations", "CORRELATION_TARGETS", "bounded_text",
    "correlation_text",
]


def fmt_lr(x: float) -> str:
    """Learning rate as the paper prints it (``0.0001``)."""
    return f"{x:g}" if x is not None and np.isfinite(x) else "?"


def fmt_num(x: float | None, digits: int = 3) -> str:
    """Compact number: scientific for very large/small magnitudes; ``—`` for missing."""
    if x is None or not np.isfinite(x):
        return "—"
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        return f"{x:.{max(1, digits - 1)}e}"
    return f"{x:.{digits}g}" if ax < 1000 else f"{x:,.0f}"


def check_margin(margin: object) -> float:
    """The viability margin as a float, or :class:`~gradasym.config.ConfigError` naming the problem.

    The margin is a fraction of |first-10 % mean reward| and must be a finite number
    >= 0: NaN would make every comparison false (no configuration viable), a
    negative margin would call a run that got worse an improvement.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)):
        raise ConfigError(f"margin must be a number >= 0, got {margin!r}")
    value = float(margin)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"margin must be a finite number >= 0 (a fraction of |first-10% mean reward|), "
                          f"got {value!r}")
    return value


def _span(values: list[int]) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}–{values[-1]}"


def scale_text(runs: pd.DataFrame, unit: str = "episodes") -> str:
    """The scale of a set of runs, derived from them: ``reduced scale: 1000 episodes, seed 42``.

    Lengths are the requested training lengths (the episodes run when unknown);
    "reduced scale" / "paper scale" compare them with the paper's 2000 episodes and
    only appear for ``unit == "episodes"``. Seeds: ``seed 42``, ``seeds 0–2`` or
    ``3 seeds`` when not contiguous. ``""`` when nothing is known.
    """
    if runs is None or not len(runs):
        return ""
    length = runs["episodes_requested"].where(runs["episodes_requested"].notna(), runs["episodes_run"])
    lengths = sorted({int(v) for v in length.dropna()})
    parts = []
    if lengths:
        text = f"{_span(lengths)} {unit}"
        if unit == "episodes":
            if lengths[-1] < PAPER_MAX_EPISODES:
                text = f"reduced scale: {text}"
            elif lengths == [PAPER_MAX_EPISODES]:
                text = f"paper scale: {text}"
        parts.append(text)
    seeds = sorted({int(v) for v in pd.to_numeric(runs["seed"], errors="coerce").dropna()})
    if len(seeds) == 1:
        parts.append(f"seed {seeds[0]}")
    elif seeds:
        contiguous = seeds == list(range(seeds[0], seeds[-1] + 1))
        parts.append(f"seeds {seeds[0]}–{seeds[-1]}" if contiguous else f"{len(seeds)} seeds")
    return ", ".join(parts)


def group_title(group: str) -> str:
    """Human name of a preset group (``""`` is the baseline)."""
    return group if group else "baseline (no preset)"


def _stop_eligible(runs: pd.DataFrame) -> pd.Series:
    """Runs whose stopping value is meaningful: stopped, or not failed."""
    return runs["stop_value"].notna() & (runs["stopped"] | (runs["status"] != "failed"))


def _clip(value: float, lo: float, hi: float) -> float:
    """``value`` inside [lo, hi] (NaN stays NaN; a NaN bound does not clip)."""
    if not np.isfinite(value):
        return value
    return float(min(max(value, lo), hi if np.isfinite(hi) else value))


def _ci_cols(prefix: str, ci: MeanCI) -> dict[str, float]:
    return {f"{prefix}_mean": ci.mean, f"{prefix}_lo": ci.lo, f"{prefix}_hi": ci.hi,
            f"{prefix}_half": ci.half, f"{prefix}_n": ci.n}


def _aggregate_one(g: pd.DataFrame, level: float) -> dict:
    """Aggregate the runs (seeds) of one configuration."""
    elig = g[_stop_eligible(g)]
    stop = mean_ci(elig["stop_value"], level)
    max_ep = g["episodes_requested"].max()
    if not np.isfinite(max_ep):
        max_ep = g["episodes_run"].max()
    out = {
        "n_runs": len(g), "seeds": sorted(int(s) for s in g["seed"].dropna()),
        "n_finished": int((g["status"] == "finished").sum()),
        "n_failed": int((g["status"] == "failed").sum()),
        "n_running": int((g["status"] == "running").sum()),
        "n_stopped": int(elig["stopped"].sum()),
        "any_censored": bool(elig["censored"].any()), "all_censored": bool(len(elig) and elig["censored"].all()),
        "partial": bool((elig["censored"] & (elig["status"] != "finished")).any()),
        "max_episodes": float(max_ep) if np.isfinite(max_ep) else math.nan,
        "critic_stopped_runs": int(g["critic_stopped"].fillna(False).astype(bool).sum()),
    }
    out.update(_ci_cols("stop", stop))
    # a stopping episode lies in [1, episodes requested]: its interval is clipped to them (never "−40")
    out.update(stop_lo=_clip(out["stop_lo"], 1.0, max_ep), stop_hi=_clip(out["stop_hi"], 1.0, max_ep))
    med = median_ci(elig["stop_value"], elig["censored"], level)
    out.update(stopmed_lo=med.median_lo, stopmed_hi=med.median_hi, stopmed_ci_lo=med.ci_lo_lo,
               stopmed_ci_lo_hi=med.ci_lo_hi, stopmed_ci_hi=med.ci_hi_lo, stopmed_ci_hi_hi=med.ci_hi_hi,
               stopmed_coverage=med.coverage, stop_min=med.min_lo, stop_min_hi=med.min_hi, stop_max=med.max_lo,
               stop_max_hi=med.max_hi)
    out.update(_ci_cols("sat", fraction_mean_ci(g["final_saturation_ratio"], level)))
    out.update(_ci_cols("stopfrac", wilson_interval(out["n_stopped"], len(elig), level)))
    out.update(_ci_cols("death", mean_ci(g["grad_death_episode"], level)))
    out.update(death_lo=_clip(out["death_lo"], 1.0, max_ep), death_hi=_clip(out["death_hi"], 1.0, max_ep))
    out["n_dead"] = int(g["grad_death_episode"].notna().sum())
    out.update(_ci_cols("spe", mean_ci(g["seconds_per_episode"], level)))
    out.update(_ci_cols("rho", geometric_mean_ci(g["final_rho"], level)))
    out.update(_ci_cols("zmax", geometric_mean_ci(g["max_abs_preactivation"], level)))
    out.update(_ci_cols("first10", mean_ci(g["reward_first10"], level)))
    out.update(_ci_cols("last10", mean_ci(g["reward_last10"], level)))
    out["category"] = _category(out)
    return out


def comparable_with_paper(paper_stop: float | None, max_episodes: float) -> bool:
    """Whether runs of ``max_episodes`` could have shown the paper's stopping episode."""
    if paper_stop is None or not np.isfinite(max_episodes):
        return True
    return paper_stop >= PAPER_MAX_EPISODES and max_episodes >= PAPER_MAX_EPISODES or paper_stop <= max_episodes


def _category(agg: dict) -> str:
    """Table-3 category of a configuration's mean stopping episode ('' when unknown).

    Thresholds are the paper's absolute 300 / 500 episodes whatever the run length:
    stopping episodes are absolute times (tanh saturation followed by Adam's momentum
    decay), not fractions of the run. What a shorter run cannot show is a stop later
    than its length (:func:`comparable_with_paper`).
    """
    if agg["stop_n"] == 0:
        return ""
    if agg["all_censored"]:
        return "No stopping" if not agg["partial"] else "Not stopped yet"
    return paper_category(agg["stop_mean"], max_episodes=math.inf)


def config_table(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per configuration with mean and ``level`` Student-t CI of its metrics.

    Columns: the :data:`CONFIG_KEYS`, run/seed counts, ``stop_*`` (stopping
    episode), ``sat_*`` (final saturation ratio), ``rho_*`` and ``zmax_*``
    (geometric means), ``first10_*``/``last10_*`` (rewards), flags
    ``any_censored``/``all_censored``/``partial``, ``max_episodes`` and
    ``category``; ``stopfrac_*`` (fraction of seeds whose actors all stopped, Wilson
    interval), ``death_*`` (run-level gradient-death episode, over the runs that have
    one; ``n_dead`` counts them) and ``spe_*`` (seconds per episode). ``sat_*`` uses
    :func:`~gradasym.report.stats.fraction_mean_ci` (inside [0, 1]). ``*_n`` is the
    number of runs that entered each statistic.

    The stopping episode's distribution (:func:`~gradasym.report.stats.median_ci`,
    never-stopped seeds right-censored at the episodes they ran): ``stopmed_lo`` /
    ``stopmed_hi`` bound the median (equal when it is known; ``inf`` high bound: only
    ``>= stopmed_lo`` is known), ``stopmed_ci_lo`` / ``stopmed_ci_hi`` the order-statistic
    interval's ends (their own high bounds in ``stopmed_ci_lo_hi`` / ``stopmed_ci_hi_hi``,
    NaN below 6 seeds), ``stopmed_coverage`` its exact coverage, ``stop_min`` /
    ``stop_max`` the range (``stop_min_hi`` / ``stop_max_hi`` inf when that end is censored).
    """
    if runs.empty:
        return pd.DataFrame(columns=CONFIG_KEYS)
    rows = []
    for key, g in runs.groupby(CONFIG_KEYS, sort=True, dropna=False):
        rows.append(dict(zip(CONFIG_KEYS, key)) | _aggregate_one(g, level))
    return pd.DataFrame(rows)


def stop_cell_text(row: pd.Series, with_ci: bool = True) -> str:
    """Stopping episode as shown in cells: ``233``, ``233 ± 12``, ``≥2000``; ``—`` if unknown."""
    if not row.get("stop_n", 0) or not np.isfinite(row.get("stop_mean", np.nan)):
        return "—"
    prefix = "≥" if row["any_censored"] else ""
    text = f"{prefix}{row['stop_mean']:.0f}"
    # A mean that includes lower bounds (never-stopped seeds) gets no interval: it is itself a bound.
    if with_ci and not row["any_censored"] and row["stop_n"] >= 2 and np.isfinite(row["stop_half"]) \
            and row["stop_half"] > 0:
        mean, lo, hi, half = row["stop_mean"], row["stop_lo"], row["stop_hi"], row["stop_half"]
        if np.isclose(mean - lo, half) and np.isclose(hi - mean, half):
            text += f" ± {half:.0f}"
        else:  # clipped to the possible episodes: no longer symmetric
            text += f" [{lo:.0f}, {hi:.0f}]"
    return text


def bounded_text(lo: float, hi: float) -> str:
    """A value known up to bounds (right-censored seeds): ``233``, ``≥2000``, or ``180–233``; ``—`` if unknown."""
    if not np.isfinite(lo):
        return "—"
    if not np.isfinite(hi):
        return f"≥{lo:.0f}"
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}"


# ------------------------------------------------------------------ curves
def _run_meta(rs: ResultSet) -> dict[str, dict]:
    return {r.run_id: {"set": rs.label, "group": presets_label(r.summary.get("presets")),
                       "actor_lr": _float(r.summary.get("actor_lr")), "critic_lr": _float(r.summary.get("critic_lr")),
                       "seed": r.summary.get("seed")} for r in rs.runs}


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def tracking_long(rs: ResultSet) -> pd.DataFrame:
    """All runs' ``tracking.parquet`` rows stacked, with run id, configuration and seed."""
    meta = _run_meta(rs)
    parts = [r.tracking.assign(run_id=r.run_id, **meta[r.run_id]) for r in rs.runs
             if r.tracking is not None and len(r.tracking) and "episode" in r.tracking]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def smoothing_window(n_episodes: float) -> int:
    """Moving-average window for learning curves: 2.5 % of the run length, at least 1."""
    if not np.isfinite(n_episodes) or n_episodes <= 0:
        return 1
    return max(1, int(round(n_episodes / 40)))


#: ``episodes.parquet`` columns kept by :func:`episodes_long` for the freeze history of a run.
EPISODE_FREEZE_COLUMNS = ("actors_frozen", "critic_frozen")


def episodes_long(rs: ResultSet, window: int, ids: set | None = None) -> pd.DataFrame:
    """Runs' episodes stacked (all, or those in ``ids``), with ``reward_smooth``
    (trailing mean over ``window`` episodes) and, where the run recorded them, the
    :data:`EPISODE_FREEZE_COLUMNS` (``actors_frozen``, ``critic_frozen``)."""
    meta = _run_meta(rs)
    parts = []
    for r in rs.runs:
        if ids is not None and r.run_id not in ids:
            continue
        if r.episodes is None or not len(r.episodes) or not {"episode", "reward"} <= set(r.episodes):
            continue
        ep = r.episodes[["episode", "reward", *[c for c in EPISODE_FREEZE_COLUMNS if c in r.episodes]]].copy()
        ep["reward_smooth"] = ep["reward"].rolling(window, min_periods=1).mean()
        parts.append(ep.assign(run_id=r.run_id, **meta[r.run_id]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def curve_median(long: pd.DataFrame, value: str, keys: list[str] | None = None,
                 level: float = 0.95) -> pd.DataFrame:
    """Median across seeds of a non-negative ``value`` at each episode of each configuration, for log axes.

    The median does not care how far below the others a seed's value lies, so exact zeros
    (a gradient that vanished in float32) count as what they are instead of pulling a mean
    on log10 towards wherever a plot draws them. For an even count the median is the
    geometric midpoint of the two middle values (0 when the lower one is 0). ``lo``/``hi``:
    the order-statistic interval of :func:`~gradasym.report.stats.median_ci_ranks`
    (``band = "ci"``, coverage at least ``level``, from 6 seeds at 95 %), else the range over
    the seeds (``band = "range"``, 2-5 seeds), else the value itself (``band = "none"``).
    Columns: keys, ``episode``, ``median``, ``lo``, ``hi``, ``n``, ``n_zero``, ``band``.
    """
    keys = keys or CONFIG_KEYS
    cols = keys + ["episode", "median", "lo", "hi", "n", "n_zero", "band"]
    if long.empty or value not in long:
        return pd.DataFrame(columns=cols)
    df = long[keys + ["episode"]].copy()
    df["v"] = pd.to_numeric(long[value], errors="coerce").astype(float)
    df = df[np.isfinite(df["v"])]

    def summarise(v: pd.Series) -> pd.Series:
        x = np.sort(v.to_numpy())
        n = len(x)
        k, _ = median_ci_ranks(n, level)
        lo, hi = (x[k - 1], x[n - k]) if k else (x[0], x[-1])
        return pd.Series({"median": math.sqrt(x[(n - 1) // 2] * x[n // 2]), "lo": lo, "hi": hi, "n": n,
                          "n_zero": int((x == 0).sum()), "band": "ci" if k else ("range" if n > 1 else "none")})

    g = df.groupby(keys + ["episode"], sort=True)["v"].apply(summarise).unstack().reset_index()
    g[["median", "lo", "hi"]] = g[["median", "lo", "hi"]].astype(float)
    g[["n", "n_zero"]] = g[["n", "n_zero"]].astype(int)
    return g[cols]


def curve_summary(long: pd.DataFrame, value: str, keys: list[str] | None = None,
                  level: float = 0.95, fraction: bool = False) -> pd.DataFrame:
    """Mean and t-CI across seeds of ``value`` at each episode of each configuration.

    With ``fraction=True`` (values in [0, 1]) the mean is arithmetic and the interval
    is the t interval on the logit scale (:func:`~gradasym.report.stats.fraction_mean_ci`),
    inside [0, 1]. Log-axis curves with exact zeros use :func:`curve_median` instead.
    Columns: keys, ``episode``, ``mean``, ``lo``, ``hi``, ``n``.
    """
    keys = keys or CONFIG_KEYS
    cols = keys + ["episode", "mean", "lo", "hi", "n"]
    if long.empty or value not in long:
        return pd.DataFrame(columns=cols)
    df = long[keys + ["episode", value]].copy()
    df["raw"] = pd.to_numeric(df[value], errors="coerce").astype(float)
    df["v"] = logit(df["raw"]) if fraction else df["raw"]
    df = df[np.isfinite(df["raw"])]
    grouped = df.groupby(keys + ["episode"], sort=True)
    g = grouped["v"].agg(["mean", "std", "count"]).reset_index()
    tq = g["count"].map(lambda n: t_quantile(0.5 + level / 2, n - 1) if n >= 2 else 0.0)
    half = (tq * g["std"].fillna(0.0) / np.sqrt(g["count"])).fillna(0.0)
    g["lo"], g["hi"] = g["mean"] - half, g["mean"] + half
    if fraction:
        raw = grouped["raw"].agg(["mean", "min", "max"]).reset_index(drop=True)
        expit = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
        same = (raw["max"] - raw["min"]).to_numpy() == 0
        g["mean"] = raw["mean"].to_numpy()
        g["lo"] = np.where(same, g["mean"], np.minimum(expit(g["lo"].to_numpy()), g["mean"]))
        g["hi"] = np.where(same, g["mean"], np.maximum(expit(g["hi"].to_numpy()), g["mean"]))
    return g.rename(columns={"count": "n"})[cols]


def final_tracking(long: pd.DataFrame) -> pd.DataFrame:
    """The last tracking row of every run (the "final log")."""
    if long.empty:
        return long
    return long.sort_values("episode").groupby("run_id", sort=False).tail(1).reset_index(drop=True)


def reward_at_stop_and_end(eps: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: smoothed reward at the stopping episode and at the last episode run.

    Uses ``reward_smooth`` of :func:`episodes_long` (trailing mean). A run whose
    actors never stopped has its "stop" at its last episode (both values equal).
    Columns: config keys, ``run_id``, ``at_stop``, ``at_end``, ``stopped``.
    """
    if eps.empty:
        return pd.DataFrame(columns=CONFIG_KEYS + ["run_id", "at_stop", "at_end", "stopped"])
    stop_of = runs.set_index("run_id")["stopping_episode"].to_dict()
    rows = []
    for rid, g in eps.groupby("run_id", sort=False):
        g = g.sort_values("episode")
        stop = stop_of.get(rid, math.nan)
        stopped = stop is not None and np.isfinite(stop)
        at = g[g["episode"] <= stop] if stopped else g
        rows.append({k: g[k].iloc[0] for k in CONFIG_KEYS} | {
            "run_id": rid, "stopped": bool(stopped),
            "at_stop": float(at["reward_smooth"].iloc[-1]) if len(at) else math.nan,
            "at_end": float(g["reward_smooth"].iloc[-1]),
        })
    return pd.DataFrame(rows)


@dataclass
class GroupData:
    """Everything the figures need about one preset group of one result set."""

    label: str              # result-set label (folder name)
    group: str              # preset label ("" = baseline)
    runs: pd.DataFrame      # runs_frame rows of this group
    agg: pd.DataFrame       # config_table of those runs
    track: pd.DataFrame     # tracking_long rows
    eps: pd.DataFrame       # episodes_long rows (with reward_smooth)
    window: int             # learning-curve smoothing window (episodes)
    max_episodes: float     # longest requested training (the "never stopped" value)
    saturation_threshold: float = 0.9

    @property
    def title(self) -> str:
        """``folder`` or ``folder [preset]`` when the folder holds a preset group."""
        return f"{self.label} [{self.group}]" if self.group else self.label

    @property
    def seeds_text(self) -> str:
        """``n = 3 seeds`` (or a range when configurations differ)."""
        n = self.agg["n_runs"] if len(self.agg) else pd.Series([0])
        lo, hi = int(n.min()), int(n.max())
        unit = "seed" if hi == 1 else "seeds"
        return f"n = {hi} {unit}" if lo == hi else f"n = {lo}–{hi} {unit} per configuration"


def build_groups(rs: ResultSet, runs: pd.DataFrame, level: float = 0.95) -> list[GroupData]:
    """Split a result set into its preset groups and prepare their frames."""
    out = []
    track_all = tracking_long(rs)
    placed = runs[runs["actor_lr"].notna() & runs["critic_lr"].notna()]  # others cannot go on the LR grid
    for group in sorted(placed["group"].dropna().unique()):
        g_runs = placed[placed["group"] == group]
        ids = set(g_runs["run_id"])
        max_ep = g_runs["episodes_requested"].max()
        if not np.isfinite(max_ep):
            max_ep = g_runs["episodes_run"].max()
        window = smoothing_window(max_ep)
        eps = episodes_long(rs, window, ids)
        out.append(GroupData(
            label=rs.label, group=group, runs=g_runs, agg=config_table(g_runs, level),
            track=track_all[track_all["run_id"].isin(ids)] if len(track_all) else track_all,
            eps=eps, window=window,
            max_episodes=float(max_ep) if np.isfinite(max_ep) else math.nan,
            saturation_threshold=_saturation_threshold(rs, ids),
        ))
    return out


def _saturation_threshold(rs: ResultSet, ids: set) -> float:
    """``run.saturation_threshold`` of the first of these runs with a config (0.9 by default)."""
    for r in rs.runs:
        if r.run_id in ids and isinstance(r.config, dict):
            v = (r.config.get("run") or {}).get("saturation_threshold")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
    return 0.9


def multi_seed(gd: GroupData) -> bool:
    """Whether some configuration of the group has more than one run (so means get intervals)."""
    return bool(len(gd.agg) and gd.agg["n_runs"].max() > 1)


# ------------------------------------------------------------------ correlations over runs
#: (runs_frame column, label, log10) of the quantities correlated with the stopping episode.
CORRELATION_TARGETS: list[tuple[str, str, bool]] = [
    ("final_saturation_ratio", "final saturation ratio", False),
    ("final_rho", "final ρ = ‖∇actor‖/‖∇critic‖", True),
]


def stop_correlations(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Pearson and Spearman correlations over runs of each :data:`CORRELATION_TARGETS` with the stopping episode.

    Runs entering: those with a meaningful stopping value (stopped, or not failed)
    and a finite value of the quantity; running runs that have not stopped yet are
    left out (their value is not yet the training length). Two rows per quantity:
    ``runs = "all"`` counts the never-stopped runs at the episodes they ran (the
    paper's convention), ``runs = "stopped"`` uses only the runs whose actors all
    stopped. For a quantity on a log scale (ρ) Pearson's r is computed on log10 of
    the positive values (``n_zero`` runs with ρ exactly 0 left out of it and counted)
    and Spearman's on all values (a zero ranks lowest). Columns: ``quantity``,
    ``label``, ``runs``, ``n_runs`` (runs with a value), ``n_censored``, ``n_zero``,
    ``n_running_left_out`` / ``n_failed_left_out`` (runs not stopped that were left out),
    ``pearson_*`` and ``spearman_*`` (``r``, ``lo``, ``hi``, ``n``).
    """
    base = runs[_stop_eligible(runs) & (runs["stopped"] | (runs["status"] != "running"))]
    unstopped = runs[~runs["stopped"]]
    left_out = {"n_running_left_out": int((unstopped["status"] == "running").sum()),
                "n_failed_left_out": int((unstopped["status"] == "failed").sum())}
    rows = []
    for col, label, log in CORRELATION_TARGETS:
        vals = pd.to_numeric(base[col], errors="coerce") if col in base else pd.Series(np.nan, index=base.index)
        have = base[np.isfinite(vals)].assign(_v=vals[np.isfinite(vals)])
        for which, sub in (("all", have), ("stopped", have[have["stopped"]])):
            zero = (sub["_v"] == 0) if log else pd.Series(False, index=sub.index)
            pos = sub[~zero & (sub["_v"] > 0)] if log else sub
            pear = correlation(pos["stop_value"], np.log10(pos["_v"]) if log else pos["_v"], "pearson", level)
            spear = correlation(sub["stop_value"], sub["_v"], "spearman", level)
            row = {"quantity": col, "label": label, "log10": log, "runs": which, "n_runs": len(sub),
                   "n_censored": int(sub["censored"].sum()), "n_zero": int(zero.sum()), **left_out}
            for c in (pear, spear):
                row.update({f"{c.method}_r": c.r, f"{c.method}_lo": c.lo, f"{c.method}_hi": c.hi,
                            f"{c.method}_n": c.n})
            rows.append(row)
    return pd.DataFrame(rows)


def correlation_text(r: float, lo: float, hi: float, n: int, name: str = "") -> str:
    """``r = -0.93 [-0.95, -0.90], n = 160`` (``name`` first when given); says when r or its CI is undefined."""
    head = f"{name} " if name else ""
    if not np.isfinite(r):
        return f"{head}undefined ({'fewer than 3 runs' if n < 3 else 'one variable is constant'}, n = {n})"
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else " (no CI: n < 4)"
    return f"{head}{'= ' if name else ''}{r:.2f}{ci}, n = {n}"


# ------------------------------------------------------------------ viability
@dataclass(frozen=True)
class ViableCount:
    """How many configurations of a group are viable, and out of how many evaluated."""

    viable: int
    evaluated: int
    total: int
    margin: float


def _run_improves(first: float, last: float, margin: float) -> bool | None:
    """``last - first > margin * |first|``; None when either mean is missing."""
    if first is None or last is None or not (np.isfinite(first) and np.isfinite(last)):
        return None
    return bool(last - first > margin * abs(first))


def viable_table(runs: pd.DataFrame, margin: float = 0.05, finished_only: bool = True) -> pd.DataFrame:
    """Per configuration: is the last-10 % mean reward better than the first-10 % in every seed?

    A run *improves* when ``reward_last10 - reward_first10 > margin * |reward_first10|``.
    A configuration is *viable* when every evaluated seed improves. Only finished
    runs are evaluated unless ``finished_only`` is False; a configuration with no
    evaluated run is ``None`` (unknown).
    """
    rows = []
    for key, g in runs.groupby(CONFIG_KEYS, sort=True, dropna=False):
        ev = g[g["finished"]] if finished_only else g
        flags = [_run_improves(f, l, margin) for f, l in zip(ev["reward_first10"], ev["reward_last10"])]
        flags = [f for f in flags if f is not None]
        delta = (ev["reward_last10"] - ev["reward_first10"]).to_numpy(dtype=float)
        rows.append(dict(zip(CONFIG_KEYS, key)) | {
            "seeds_evaluated": len(flags), "seeds_improved": int(sum(flags)),
            "seeds_total": len(g), "mean_improvement": float(np.nanmean(delta)) if len(delta) else math.nan,
            "viable": (all(flags) if flags else None),
        })
    return pd.DataFrame(rows, columns=CONFIG_KEYS + ["seeds_evaluated", "seeds_improved", "seeds_total",
                                                     "mean_improvement", "viable"])


def viable_count(table: pd.DataFrame, margin: float) -> ViableCount:
    """Count viable configurations in a :func:`viable_table`."""
    known = table["viable"].dropna() if len(table) else pd.Series(dtype=object)
    return ViableCount(int((known == True).sum()), int(len(known)), int(len(table)), margin)  # noqa: E712


def single_seed(runs: pd.DataFrame, preferred: int = 42) -> int | None:
    """The seed a single-seed study would have used: ``preferred`` (the paper's 42) if present, else the smallest."""
    seeds = sorted({int(v) for v in pd.to_numeric(runs["seed"], errors="coerce").dropna()})
    if not seeds:
        return None
    return preferred if preferred in seeds else seeds[0]


def single_seed_viable(runs: pd.DataFrame, margin: float, seed: int) -> ViableCount:
    """The viable count a study of only ``seed`` would report (the paper's single-seed view)."""
    return viable_count(viable_table(runs[pd.to_numeric(runs["seed"], errors="coerce") == seed], margin), margin)


def viable_by_seed(runs: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Per seed: the viable count of that seed alone (``seed``, ``viable``, ``evaluated``)."""
    seeds = sorted({int(v) for v in pd.to_numeric(runs["seed"], errors="coerce").dropna()})
    rows = []
    for s in seeds:
        c = single_seed_viable(runs, margin, s)
        rows.append({"seed": s, "viable": c.viable, "evaluated": c.evaluated})
    return pd.DataFrame(rows, columns=["seed", "viable", "evaluated"])
