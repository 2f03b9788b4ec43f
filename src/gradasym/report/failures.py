"""What fails while a report is built: one line on the page and on the terminal, the traceback in a file.

A report never dies on one figure, table or result set whose data defeats the code (that is a
bug): the page lists it as missing, the terminal gets one warning line, and the traceback, the
material of a bug report, is appended to ``errors.log`` beside ``report.html`` (removed by the
next build), so no traceback reaches the user's terminal.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from ..errors import describe

#: Tracebacks of what failed to build, next to report.html.
ERRORS_LOG = "errors.log"

log = logging.getLogger(__name__)


class Failures(list):
    """The report's error lines (a ``list[str]``, shown on the page with the missing items);
    :meth:`add` records each failure in all three places."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__()
        self.log_path = Path(out_dir) / ERRORS_LOG

    def add(self, line: str, what: str, exc: BaseException) -> None:
        """Call inside the ``except`` block of ``exc``: ``line`` for the page, one warning naming
        ``what`` (e.g. ``"figure fig04_grad_norms"``), the traceback appended to ``errors.log``."""
        self.append(line)
        try:
            with self.log_path.open("a") as fh:
                fh.write(f"{what}:\n{traceback.format_exc()}\n")
            where = f"traceback in {self.log_path}"
        except OSError:
            where = "traceback not written"
        log.warning("%s failed (%s), marked missing in the report; %s", what, describe(exc), where)
