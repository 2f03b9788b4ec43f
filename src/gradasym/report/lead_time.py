"""Which instrument announces the actors' freeze earliest and most reliably (issue 20, item 4).

Two measures over the runs of a result set (``tracking_long`` rows and ``runs_frame``):

* **lead time** (:func:`lead_times`, :func:`lead_time_summary`): for a run whose actors all
  stopped at episode S, an instrument's *onset* is the first logged episode at which it has
  covered ``fraction`` (default one half) of its change between its first logged value and its
  value at the last log at or before S, in the direction that goes with a freeze (saturation,
  ``|z|``, the dormant fraction rise; the effective rank and the gradient ratio rho fall; rho and
  ``|z|`` on log10). The lead time is ``S - onset`` (episodes). An instrument that did not move
  in its direction by S does not announce the freeze in that run (no lead time; counted). The
  criterion needs no threshold per instrument, so the instruments are compared on one footing.
* **correlation over runs** (:func:`instrument_correlations`): Spearman's rank correlation (and
  Pearson's) of the instrument's value at a fixed early episode (the first log at or after
  ``at_episode``) with the stopping episode, over the runs (never-stopped runs at the episodes
  they ran, the report's convention, and separately the stopped runs only), with n and the
  Fisher-z interval of :func:`gradasym.report.stats.correlation`.

Summaries give n, the median lead time with its distribution-free 95 % interval
(:func:`gradasym.report.stats.median_ci`) and the fraction of stopped runs the instrument
announced with a Wilson interval. Pure functions of data frames, tested on synthetic runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import correlation, median_ci, wilson_interval

__all__ = ["INSTRUMENTS", "instrument_correlations", "lead_time_summary", "lead_times", "onset_episode"]

#: (tracking column, label, direction towards a freeze (+1 rises, -1 falls), log10 scale)
INSTRUMENTS: list[tuple[str, str, int, bool]] = [
    ("saturation_ratio", "saturation ratio", +1, False),
    ("preact_max_abs", "max |z|", +1, True),
    ("actor_dormant_tau0.025", "τ-dormant fraction of the actors (τ = 0.025)", +1, False),
    ("actor_effective_rank", "effective rank of the actors' features", -1, False),
    ("rho", "gradient ratio ρ", -1, True),
]

_TINY = 1e-300  # log10 of an exact 0 (rho of a vanished gradient): far below any real value


def _scaled(v: pd.Series, log: bool) -> np.ndarray:
    x = pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
    return np.log10(np.maximum(x, _TINY)) if log else x


def onset_episode(episodes: np.ndarray, values: np.ndarray, stop: float, direction: int,
                  fraction: float = 0.5) -> float:
    """The first episode (of ``episodes``, ascending) at or before ``stop`` at which ``values`` has
    covered ``fraction`` of its change from the first finite value to the last finite one at or
    before ``stop``, in ``direction``; NaN when it did not move that way (or has < 2 values)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keep = (episodes <= stop) & np.isfinite(values)
    e, v = episodes[keep], values[keep]
    if len(v) < 2:
        return math.nan
    change = direction * (v[-1] - v[0])
    if not change > 0:
        return math.nan
    crossed = direction * (v - v[0]) >= fraction * change
    return float(e[np.argmax(crossed)])  # the last value always crosses


def lead_times(track: pd.DataFrame, runs: pd.DataFrame, instruments=INSTRUMENTS,
               fraction: float = 0.5) -> pd.DataFrame:
    """One row per (stopped run, instrument present in ``track``): ``run_id``, ``instrument``,
    ``stop`` (the stopping episode), ``onset`` (NaN: not announced) and ``lead`` = stop - onset."""
    stopped = runs[runs["stopped"].astype(bool)].set_index("run_id")["stop_value"]
    rows = []
    for run_id, t in track.groupby("run_id", sort=True):
        if run_id not in stopped.index:
            continue
        t = t.sort_values("episode")
        stop = float(stopped[run_id])
        ep = t["episode"].to_numpy(dtype=float)
        for col, _, direction, log in instruments:
            if col not in t:
                continue
            onset = onset_episode(ep, _scaled(t[col], log), stop, direction, fraction)
            rows.append({"run_id": run_id, "instrument": col, "stop": stop, "onset": onset, "lead": stop - onset})
    return pd.DataFrame(rows, columns=["run_id", "instrument", "stop", "onset", "lead"])


def lead_time_summary(leads: pd.DataFrame, instruments=INSTRUMENTS, level: float = 0.95) -> pd.DataFrame:
    """Per instrument: ``n_runs`` (stopped runs with the instrument), ``n_announced`` (with an onset),
    ``announced`` and its Wilson interval ``announced_lo``/``_hi``, and over the announced runs the
    median lead time with its order-statistic interval ``lead_lo``/``lead_hi`` (NaN when n is too
    small for one)."""
    rows = []
    for col, label, _, _ in instruments:
        sub = leads[leads["instrument"] == col]
        if not len(sub):
            continue
        have = sub["lead"].to_numpy(dtype=float)
        have = have[np.isfinite(have)]
        w = wilson_interval(len(have), len(sub), level)
        row = {"instrument": col, "label": label, "n_runs": len(sub), "n_announced": len(have),
               "announced": len(have) / len(sub), "announced_lo": w.lo, "announced_hi": w.hi,
               "lead_median": math.nan, "lead_lo": math.nan, "lead_hi": math.nan}
        if len(have):
            m = median_ci(have, level=level)
            row.update(lead_median=m.median_lo, lead_lo=m.ci_lo_lo if m.ci_k else math.nan,
                       lead_hi=m.ci_hi_lo if m.ci_k else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def instrument_correlations(track: pd.DataFrame, runs: pd.DataFrame, at_episode: float,
                            instruments=INSTRUMENTS, level: float = 0.95) -> pd.DataFrame:
    """Per instrument and run set (``"all"``: never-stopped runs at the episodes they ran; ``"stopped"``):
    Pearson (on log10 for the log instruments) and Spearman correlation over runs of the
    instrument's value at the first log at or after ``at_episode`` with the stopping episode, with
    n and the Fisher-z interval. A run that stopped before ``at_episode`` has no early value and
    is left out (counted in ``n_stopped_before``)."""
    rows = []
    r = runs.set_index("run_id")
    for col, label, _, log in instruments:
        if col not in track:
            continue
        early = (track[track["episode"] >= at_episode].sort_values("episode").groupby("run_id").first())
        vals = pd.Series(_scaled(early[col], log), index=early.index)
        joined = r[["stop_value", "stopped"]].join(vals.rename("v"), how="inner")
        before = int((r["stopped"].astype(bool) & (r["stop_value"] < at_episode)).sum())
        joined = joined[joined["stop_value"] >= at_episode]
        for which, sub in (("all", joined), ("stopped", joined[joined["stopped"].astype(bool)])):
            pear = correlation(sub["stop_value"], sub["v"], "pearson", level)
            spear = correlation(sub["stop_value"], sub["v"], "spearman", level)
            rows.append({"instrument": col, "label": label, "runs": which, "at_episode": at_episode,
                         "n_stopped_before": before,
                         **{f"{c.method}_{k}": getattr(c, k) for c in (pear, spear) for k in ("r", "lo", "hi", "n")}})
    return pd.DataFrame(rows)
