"""Do two result sets of the same grid tell the same findings? (regenerated vs published results).

When a code change moves the numbers (a new engine, another summation order), the committed
results are regenerated and must be shown to be *statistically* the same findings, not the same
bits. :func:`findings_agreement` puts two runs tables of the same grid side by side, one row per
configuration (``actor_lr``, ``critic_lr``), with the per-configuration summaries of
:func:`gradasym.report.analysis.config_table`:

* the Table-3 **category** of each (Early < 300 / Late > 500 / No stopping), and whether it is the same;
* the **fraction of seeds whose actors all stopped** with its Wilson interval, and whether the two
  intervals overlap;
* the **median stopping episode** (right-censored seeds as ">= episodes") and its distribution-free
  interval; whether each median lies inside the *other* set's interval (a censored median
  ">= 2000" lies inside an interval whose upper end is censored too);
* the geometric-mean **max |z|** with its interval on log10, and whether the intervals overlap.

``differences`` lists every configuration where one of these checks fails, as a sentence, so
that each can be named and explained where the results are published. Pure functions of the
report's runs tables (``tables/table_runs.csv``); no run folders needed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import config_table

__all__ = ["findings_agreement", "differences", "agreement_markdown"]

_KEYS = ["actor_lr", "critic_lr"]


def _prepare(runs: pd.DataFrame) -> pd.DataFrame:
    """One result set's runs as :func:`config_table` wants them, all in one set and group."""
    runs = runs.copy()
    runs["set"], runs["group"] = "", ""
    for col in ("stopped", "censored", "critic_stopped"):
        runs[col] = runs[col].fillna(False).astype(bool)
    if "grad_death_episode" not in runs:
        runs["grad_death_episode"] = np.nan
    return config_table(runs).set_index(_KEYS)


def _median_interval(row: pd.Series) -> tuple[float, float]:
    """Where the median lies: ``[lo, hi]`` (``hi = inf``: only ">= lo" is known)."""
    return float(row["stopmed_lo"]), float(row["stopmed_hi"])


def _ci(row: pd.Series) -> tuple[float, float]:
    """The median's distribution-free interval, its upper end ``inf`` where that end is censored."""
    lo, hi = float(row["stopmed_ci_lo"]), float(row["stopmed_ci_hi"])
    hi_hi = float(row.get("stopmed_ci_hi_hi", hi))
    return lo, (math.inf if not np.isfinite(hi_hi) else hi)


def _inside(median: tuple[float, float], interval: tuple[float, float]) -> bool | None:
    """Whether a median (known up to bounds) can lie inside ``interval``; None when unknown."""
    (m_lo, m_hi), (lo, hi) = median, interval
    if not (np.isfinite(m_lo) and np.isfinite(lo)):
        return None
    return bool(m_lo <= hi and m_hi >= lo)


def _overlap(a_lo: float, a_hi: float, b_lo: float, b_hi: float) -> bool | None:
    if not all(np.isfinite(v) for v in (a_lo, a_hi, b_lo, b_hi)):
        return None
    return bool(a_lo <= b_hi and b_lo <= a_hi)


def _median_text(row: pd.Series) -> str:
    lo, hi = _median_interval(row)
    if not np.isfinite(lo):
        return "—"
    med = f"≥{lo:.0f}" if not np.isfinite(hi) else (f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}")
    c_lo, c_hi = _ci(row)
    if not np.isfinite(c_lo):
        return med
    lo_censored = not np.isfinite(float(row.get("stopmed_ci_lo_hi", c_lo)))
    return (f"{med} [{'≥' if lo_censored else ''}{c_lo:.0f}, "
            f"{'≥' if not np.isfinite(c_hi) else ''}{row['stopmed_ci_hi']:.0f}]")


def findings_agreement(old_runs: pd.DataFrame, new_runs: pd.DataFrame, old: str = "published",
                       new: str = "regenerated") -> pd.DataFrame:
    """One row per configuration present in either runs table (``tables/table_runs.csv`` of a
    report): the four findings of each set as text and the checks ``same_category``,
    ``stopfrac_overlap``, ``new_median_in_old_ci``, ``old_median_in_new_ci``, ``zmax_overlap``
    (True / False, or None where a set lacks the configuration or the value)."""
    a, b = _prepare(old_runs), _prepare(new_runs)
    rows = []
    for key in sorted(set(a.index) | set(b.index)):
        ra, rb = (a.loc[key] if key in a.index else None), (b.loc[key] if key in b.index else None)
        row: dict = dict(zip(_KEYS, key))
        for name, r in ((old, ra), (new, rb)):
            row[f"n_{name}"] = int(r["n_runs"]) if r is not None else 0
            row[f"category_{name}"] = (r["category"] or "—") if r is not None else "—"
            row[f"stopped_{name}"] = (f"{int(r['n_stopped'])}/{int(r['stopfrac_n'])} "
                                      f"[{r['stopfrac_lo']:.2f}, {r['stopfrac_hi']:.2f}]") if r is not None else "—"
            row[f"median_stop_{name}"] = _median_text(r) if r is not None else "—"
            row[f"max_abs_z_{name}"] = (f"{r['zmax_mean']:.3g} [{r['zmax_lo']:.3g}, {r['zmax_hi']:.3g}]"
                                        if r is not None and np.isfinite(r["zmax_mean"]) else "—")
        both = ra is not None and rb is not None
        row["same_category"] = bool(ra["category"] == rb["category"]) if both else None
        row["stopfrac_overlap"] = _overlap(ra["stopfrac_lo"], ra["stopfrac_hi"], rb["stopfrac_lo"],
                                           rb["stopfrac_hi"]) if both else None
        row["new_median_in_old_ci"] = _inside(_median_interval(rb), _ci(ra)) if both else None
        row["old_median_in_new_ci"] = _inside(_median_interval(ra), _ci(rb)) if both else None
        row["zmax_overlap"] = _overlap(ra["zmax_lo"], ra["zmax_hi"], rb["zmax_lo"], rb["zmax_hi"]) if both else None
        rows.append(row)
    return pd.DataFrame(rows)


_CHECKS = {
    "same_category": "category differs",
    "stopfrac_overlap": "all-stopped fractions' Wilson intervals do not overlap",
    "new_median_in_old_ci": "the {new} median stopping episode lies outside the {old} interval",
    "old_median_in_new_ci": "the {old} median stopping episode lies outside the {new} interval",
    "zmax_overlap": "max |z| intervals do not overlap",
}


def differences(table: pd.DataFrame, old: str = "published", new: str = "regenerated") -> list[str]:
    """One sentence per configuration and failed check of :func:`findings_agreement` (a missing
    configuration or value is named too: nothing is dropped silently)."""
    out = []
    for _, r in table.iterrows():
        cfg = f"actor LR {r['actor_lr']:g} / critic LR {r['critic_lr']:g}"
        if not r[f"n_{old}"] or not r[f"n_{new}"]:
            out.append(f"{cfg}: only in the {old if r[f'n_{old}'] else new} results")
            continue
        for check, text in _CHECKS.items():
            if r[check] is False:
                out.append(f"{cfg}: {text.format(old=old, new=new)} ({old}: {_cell(r, check, old)}; "
                           f"{new}: {_cell(r, check, new)})")
            elif r[check] is None:
                out.append(f"{cfg}: {check.replace('_', ' ')} cannot be checked (a value is missing)")
    return out


def _cell(r: pd.Series, check: str, name: str) -> str:
    col = {"same_category": "category", "stopfrac_overlap": "stopped", "zmax_overlap": "max_abs_z"}.get(
        check, "median_stop")
    return str(r[f"{col}_{name}"])


def agreement_markdown(table: pd.DataFrame, old: str = "published", new: str = "regenerated") -> str:
    """The table as Markdown (one row per configuration, the checks as yes/no) and the differences."""
    def yn(v) -> str:
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else ("yes" if v else "**no**")

    head = (f"| actor LR | critic LR | category {old} | category {new} | all stopped {old} | all stopped {new} | "
            f"overlap | median stop {old} | median stop {new} | {new} in {old}'s CI | {old} in {new}'s CI | "
            f"max abs z {old} | max abs z {new} | overlap |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['actor_lr']:g} | {r['critic_lr']:g} | {r[f'category_{old}']} | {r[f'category_{new}']} | "
            f"{r[f'stopped_{old}']} | {r[f'stopped_{new}']} | {yn(r['stopfrac_overlap'])} | "
            f"{r[f'median_stop_{old}']} | {r[f'median_stop_{new}']} | {yn(r['new_median_in_old_ci'])} | "
            f"{yn(r['old_median_in_new_ci'])} | {r[f'max_abs_z_{old}']} | {r[f'max_abs_z_{new}']} | "
            f"{yn(r['zmax_overlap'])} |")
    diffs = differences(table, old, new)
    lines += ["", "Differences beyond the intervals: " + ("none." if not diffs else ""), *[f"* {d}" for d in diffs]]
    return "\n".join(lines) + "\n"
