"""How an exception is written down: one line for a page or log, a short traceback for a summary.

Every place that records a failure (run summaries, sweep results, report pages) uses these two,
so an error reads the same wherever a researcher meets it.
"""

from __future__ import annotations

import traceback


def describe(exc: BaseException) -> str:
    """``"TypeName: message"``, e.g. ``"ValueError: lr must be positive"``."""
    return f"{type(exc).__name__}: {exc}"


def failure_text(exc: BaseException, limit: int = 5) -> str:
    """:func:`describe` followed by the last ``limit`` frames of the traceback, as a run's
    ``summary.json`` stores it under ``error``."""
    return describe(exc) + "\n" + "".join(traceback.format_exception(exc, limit=limit))
