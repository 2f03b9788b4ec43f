"""A warning when a result set's runs are too short for the viable count to mean anything.

The viable criterion (``analysis.viable_table``, ``generic.config_summary``) compares a
run's mean return over its first and its last :data:`~gradasym.report.load.IMPROVEMENT_WINDOW`
(10 %) of episodes. A run with fewer than ``1 / IMPROVEMENT_WINDOW`` episodes
(:data:`MIN_EPISODES`, 10) cannot have such windows: they are clamped to one episode each
(the same episode in a one-episode run), so "improved" compares two single returns
rather than two parts of the learning curve. A run that made no training update
(no gradient step) cannot have improved by learning at all. The report still counts
such runs, but says so on the page and on stderr (:func:`short_runs_warning`).
"""

from __future__ import annotations

import math
from typing import Any

from .load import IMPROVEMENT_WINDOW, ResultSet, RunData

__all__ = ["MIN_EPISODES", "run_length", "short_runs_warning"]

#: Fewest episodes for which the first and last 10 % windows hold whole episodes.
MIN_EPISODES = math.ceil(round(1.0 / IMPROVEMENT_WINDOW, 9))


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def run_length(run: RunData) -> tuple[int | None, int | None]:
    """``(episodes, training updates)`` of a run; None where the folder does not tell.

    Episodes: ``summary.json``'s ``episodes_run``, else the rows of ``episodes.parquet``.
    Updates: ``gradient_steps`` (SB3 runs), else the ``updated`` episodes (CCM-MADRL).
    """
    episodes = _int(run.summary.get("episodes_run"))
    if episodes is None and run.episodes is not None:
        episodes = len(run.episodes)
    updates = _int(run.summary.get("gradient_steps"))
    if updates is None and run.episodes is not None and "updated" in run.episodes:
        updates = int(run.episodes["updated"].fillna(False).astype(bool).sum())
    return episodes, updates


def short_runs_warning(rs: ResultSet) -> str | None:
    """One line when finished runs of ``rs`` (the ones the viable count evaluates) have fewer
    than :data:`MIN_EPISODES` episodes or no training update; None when none has."""
    finished = [r for r in rs.runs if r.status == "finished"]
    short = []
    for run in finished:
        episodes, updates = run_length(run)
        if (episodes is not None and episodes < MIN_EPISODES) or updates == 0:
            short.append(run)
    if not short:
        return None
    pct = f"{IMPROVEMENT_WINDOW * 100:g} %"
    return (f"{rs.label}: {len(short)} of {len(finished)} finished runs have fewer than {MIN_EPISODES} episodes "
            f"or no training update, so the viable count is not meaningful (it compares the mean return of the "
            f"first and last {pct} of each run's episodes)")
