"""How an exception is written down: one line for a page or log, a short traceback for a summary.

Every place that records a failure (run summaries, sweep results, report pages) uses these two,
so an error reads the same wherever a researcher meets it.
"""

from __future__ import annotations

import traceback


def describe(exc: BaseException) -> str:
    """``"TypeName: message"``, e.g. ``"ValueError: lr must be positive"``."""
    return f"{type(exc).__name__}: {exc}"


def failure_text(exc: BaseException, frames: int = 5) -> str:
    """:func:`describe` followed by the innermost ``frames`` frames of the traceback (where it was
    raised, the part a bug report needs), as a run's ``summary.json`` stores it under ``error``."""
    return describe(exc) + "\n" + "".join(traceback.format_exception(exc, limit=-frames))
