"""Does the critic lose plasticity while it keeps learning; do remedies un-freeze the actors (issue 20, item 4).

Two pure functions of the report's frames, beside :mod:`~gradasym.report.lead_time`:

* :func:`plasticity_first_last` / :func:`plasticity_by_config`: per run, the critic's and the
  actors' tau-dormant fraction and effective rank at the run's first and at its last tracking row
  (the first / last row where the value is finite), and whether the critic's weights still
  moved at the end (``critic_frozen`` of the last ``episodes.parquet`` row) and its gradient
  was still non-zero (``critic_grad_norm`` of the last tracking row); per configuration the
  median over its seeds (:data:`~gradasym.report.stats.MEDIAN_DEFINITION`) with the
  distribution-free order-statistic interval (6 seeds or more), the range over 2-5 seeds, the
  value alone for one seed.
* :func:`freeze_history` / :func:`unfreezing`: from ``episodes.parquet``'s ``actors_frozen``
  (actors whose parameters an update left unchanged, recorded every episode), the first episode
  at which every actor was frozen, the actors frozen at the end, and whether (and when) fewer
  than all were frozen again after that: the actors un-froze. An actor's *stop* episode is set
  once and never cleared (docs/monitor.md), so un-freezing shows here and not in the stopping
  episode.

Tested on synthetic frames (``tests/report/test_report_plasticity_tables.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .analysis import CONFIG_KEYS
from .stats import median_ci

__all__ = ["PLASTICITY_QUANTITIES", "plasticity_first_last", "plasticity_by_config", "median_cell",
           "freeze_history", "unfreezing"]

#: (tracking column, short label) of the quantities compared at the first and last tracking row.
PLASTICITY_QUANTITIES: list[tuple[str, str]] = [
    ("critic_dormant_tau0.025", "critic τ-dormant"),
    ("actor_dormant_tau0.025", "actors τ-dormant"),
    ("critic_effective_rank", "critic eff. rank"),
    ("actor_effective_rank", "actors eff. rank"),
]


def _first_last(t: pd.DataFrame, col: str) -> tuple[float, float]:
    """The first and last finite value of ``col`` in ``t`` (sorted by episode); NaN when none."""
    if col not in t:
        return math.nan, math.nan
    v = pd.to_numeric(t[col], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return (float(v[0]), float(v[-1])) if len(v) else (math.nan, math.nan)


def _last_bool(frame: pd.DataFrame | None, col: str) -> float:
    """The last non-missing value of a 0/1 column as 1.0 / 0.0; NaN when absent."""
    if frame is None or not len(frame) or col not in frame:
        return math.nan
    v = frame[col].dropna()
    return float(bool(v.iloc[-1])) if len(v) else math.nan


def plasticity_first_last(track: pd.DataFrame, runs: pd.DataFrame, eps: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run of ``runs`` that has tracking rows: configuration keys, ``run_id``, ``seed``,
    ``<column>_first`` / ``<column>_last`` for each :data:`PLASTICITY_QUANTITIES` column,
    ``critic_moved_end`` (1.0: the last episode's ``critic_frozen`` is false; 0.0: true; NaN:
    no such column), ``critic_grad_end`` (1.0: ``critic_grad_norm`` > 0 at the last tracking
    row; NaN: unknown) and ``critic_ever_froze`` (the summary's ``critic_stopped``).

    ``track``: :func:`~gradasym.report.analysis.tracking_long` rows; ``eps``: episode rows with
    ``run_id`` and, when recorded, ``critic_frozen`` (:func:`~gradasym.report.analysis.episodes_long`).
    """
    cols = [*CONFIG_KEYS, "run_id", "seed"] + [f"{c}_{w}" for c, _ in PLASTICITY_QUANTITIES for w in ("first", "last")]
    cols += ["critic_moved_end", "critic_grad_end", "critic_ever_froze"]
    if track is None or not len(track) or "run_id" not in track:
        return pd.DataFrame(columns=cols)
    by_run = dict(tuple(track.sort_values("episode", kind="stable").groupby("run_id", sort=False)))
    eps_by = (dict(tuple(eps.sort_values("episode", kind="stable").groupby("run_id", sort=False)))
              if eps is not None and len(eps) and "run_id" in eps else {})
    rows = []
    for _, r in runs.iterrows():
        t = by_run.get(r["run_id"])
        if t is None:
            continue
        row: dict[str, Any] = {k: r[k] for k in CONFIG_KEYS} | {"run_id": r["run_id"], "seed": r["seed"]}
        for col, _ in PLASTICITY_QUANTITIES:
            row[f"{col}_first"], row[f"{col}_last"] = _first_last(t, col)
        grad = _first_last(t, "critic_grad_norm")[1]
        row["critic_grad_end"] = float(grad > 0) if np.isfinite(grad) else math.nan
        row["critic_moved_end"] = 1.0 - _last_bool(eps_by.get(r["run_id"]), "critic_frozen")
        cs = r.get("critic_stopped")
        row["critic_ever_froze"] = math.nan if cs is None or pd.isna(cs) else float(bool(cs))
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def plasticity_by_config(per_run: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per configuration of :func:`plasticity_first_last`'s rows: ``n_runs``; for each
    ``<column>_<first|last>`` its ``_median`` (X_(ceil(n/2))), ``_lo`` / ``_hi`` (the order-statistic
    interval with 6 runs or more, else the range; equal to the median for one run), ``_n`` and
    ``_band`` (``"ci"``, ``"range"`` or ``"none"``); for ``critic_moved_end``, ``critic_grad_end``,
    ``critic_ever_froze`` the count of runs where it holds (``_k``) of those where it is known (``_n``)."""
    values = [f"{c}_{w}" for c, _ in PLASTICITY_QUANTITIES for w in ("first", "last")]
    flags = ["critic_moved_end", "critic_grad_end", "critic_ever_froze"]
    rows = []
    for key, g in per_run.groupby(CONFIG_KEYS, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(CONFIG_KEYS, key)) | {"n_runs": len(g)}
        for v in values:
            m = median_ci(pd.to_numeric(g[v], errors="coerce"), level=level)
            band = "ci" if m.ci_k else ("range" if m.n > 1 else "none")
            lo, hi = (m.ci_lo_lo, m.ci_hi_lo) if m.ci_k else (m.min_lo, m.max_lo)
            row.update({f"{v}_median": m.median_lo, f"{v}_lo": lo, f"{v}_hi": hi, f"{v}_n": m.n,
                        f"{v}_band": band if m.n else "none"})
        for f in flags:
            known = pd.to_numeric(g[f], errors="coerce").dropna()
            row.update({f"{f}_k": int((known > 0).sum()), f"{f}_n": int(len(known))})
        rows.append(row)
    return pd.DataFrame(rows)


def median_cell(median: float, lo: float, hi: float, band: str, fmt=lambda v: f"{v:.3g}") -> str:
    """``0.12 [0.05, 0.20]`` (95 % interval), ``0.12 (range 0.05–0.20)`` (2-5 runs), ``0.12`` (one run), ``—``."""
    if not np.isfinite(median):
        return "—"
    if band == "ci":
        return f"{fmt(median)} [{fmt(lo)}, {fmt(hi)}]"
    if band == "range":
        return f"{fmt(median)} (range {fmt(lo)}–{fmt(hi)})"
    return fmt(median)


def freeze_history(episodes: pd.DataFrame | None, n_agents: int | None) -> dict[str, float]:
    """From one run's episode rows (``episode``, ``actors_frozen``): ``all_frozen_first`` (first
    episode with every one of the ``n_agents`` actors frozen; NaN: never), ``frozen_end`` (actors
    frozen at the last episode), ``unfrozen_at`` (first episode after ``all_frozen_first`` with fewer
    than all frozen; NaN: never, or never all frozen) and ``all_frozen_end`` (1.0 / 0.0). Every value
    is NaN when the table lacks ``actors_frozen`` or ``n_agents`` is unknown."""
    out = {"all_frozen_first": math.nan, "frozen_end": math.nan, "unfrozen_at": math.nan,
           "all_frozen_end": math.nan}
    if episodes is None or not len(episodes) or "actors_frozen" not in episodes or not n_agents:
        return out
    e = episodes.sort_values("episode", kind="stable")
    frozen = pd.to_numeric(e["actors_frozen"], errors="coerce").to_numpy(dtype=float)
    ep = e["episode"].to_numpy(dtype=float)
    keep = np.isfinite(frozen)
    frozen, ep = frozen[keep], ep[keep]
    if not len(frozen):
        return out
    out["frozen_end"] = float(frozen[-1])
    out["all_frozen_end"] = float(frozen[-1] >= n_agents)
    hit = np.flatnonzero(frozen >= n_agents)
    if len(hit):
        first = hit[0]
        out["all_frozen_first"] = float(ep[first])
        after = np.flatnonzero(frozen[first:] < n_agents)
        if len(after):
            out["unfrozen_at"] = float(ep[first + after[0]])
    return out


def unfreezing(eps: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``runs``: configuration keys, ``run_id``, ``seed``, ``n_agents``,
    ``episodes_run``, :func:`freeze_history` of its rows in ``eps`` (episode rows with ``run_id``
    and ``actors_frozen``), ``final_saturation_ratio`` and ``reward_last10`` (the mean reward of the
    last 10 % of its episodes) from ``runs`` (:func:`~gradasym.report.load.runs_frame`)."""
    by_run = dict(tuple(eps.groupby("run_id", sort=False))) if eps is not None and len(eps) else {}
    rows = []
    for _, r in runs.iterrows():
        n = r.get("n_agents")
        n = int(n) if n is not None and not pd.isna(n) else None
        rows.append({k: r[k] for k in CONFIG_KEYS} | {
            "run_id": r["run_id"], "seed": r["seed"], "n_agents": n, "episodes_run": r["episodes_run"],
            **freeze_history(by_run.get(r["run_id"]), n),
            "final_saturation_ratio": r["final_saturation_ratio"], "reward_last10": r["reward_last10"]})
    return pd.DataFrame(rows, columns=[*CONFIG_KEYS, "run_id", "seed", "n_agents", "episodes_run",
                                       "all_frozen_first", "frozen_end", "unfrozen_at", "all_frozen_end",
                                       "final_saturation_ratio", "reward_last10"])
