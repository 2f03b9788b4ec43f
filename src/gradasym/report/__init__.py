"""Figures, tables and a self-contained ``report.html`` from gradasym result folders.

Public API::

    from gradasym.report import build_report, summarize_sweep, load_results
    html = build_report("results/sweep", compare=["results/sweep-layernorm"])

Importing this package (or :mod:`gradasym.report.load`) does not import
matplotlib: :func:`build_report` loads the plotting modules on first call, so the
sweep can use :func:`summarize_sweep` without plotting side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .load import (
    SUMMARY_COLUMNS, ResultSet, RunData, load_results, read_run, runs_frame, summarize_sweep,
    write_sweep_summary,
)
from .stats import MeanCI, fraction_mean_ci, geometric_mean_ci, mean_ci, t_quantile, wilson_interval

__all__ = [
    "build_report", "summarize_sweep", "write_sweep_summary", "load_results", "read_run", "runs_frame",
    "ResultSet", "RunData", "SUMMARY_COLUMNS", "MeanCI", "mean_ci", "geometric_mean_ci", "t_quantile",
    "wilson_interval", "fraction_mean_ci",
]


def build_report(results_dir: str | Path, compare: Sequence[str | Path] = (), out_dir: str | Path | None = None,
                 *, margin: float = 0.05, title: str | None = None) -> Path:
    """Build the report for ``results_dir`` (see :func:`gradasym.report.build.build_report`).

    ``margin`` must be a finite number >= 0 (else :class:`gradasym.config.ConfigError`).
    """
    from .build import build_report as _build

    return _build(results_dir, compare=compare, out_dir=out_dir, margin=margin, title=title)
