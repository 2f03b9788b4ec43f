"""Progress views for a sweep: a live ``rich`` dashboard or plain log lines.

Both receive the same events from the driver (run started, progress, run done)
and never raise into it: a display problem must not stop a run. Units come from
the run's algorithm (``RunProgress.unit``: episodes, environment steps...), so the
same view serves every algorithm. Progress dicts carry ``done`` / ``total`` (in
``unit``), ``return``, ``saturation_ratio``, ``actors_stopped`` and
``seconds_per_unit``; the older names ``episode`` / ``episodes`` / ``reward`` /
``seconds_per_episode`` are read too. ``events`` (optional) is the list of the run's
monitor events so far (dicts with a ``message``, ``gradasym.monitor.ActorCriticMonitor.events``);
the view prints each one once as a line, ``<run_id>: <message>`` (also those of the
summary when the run ends; a resumed run's earlier events once more when it resumes).
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


#: Summary keys of each generic role (``Algorithm.summary_keys``) when a run gives none.
DEFAULT_KEYS: dict[str, str] = {"done": "episodes_run", "stop": "stopping_episode",
                                "return_last": "reward_last10", "seconds_per_unit": "seconds_per_episode"}


@dataclass
class RunProgress:
    """What the view knows about one run (counts in ``unit``, stop steps in ``stop_unit``)."""

    run_id: str
    total: int
    n_actors: int
    unit: str = "episodes"
    stop_unit: str = "episodes"
    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    status: str = "pending"
    done: int = 0
    reward: float | None = None  # last episode return (or the summary's last-10 % mean)
    saturation: float | None = None
    actors_stopped: int | None = None
    seconds_per_unit: float | None = None
    stop: int | None = None
    error: str | None = None
    where: str = ""
    started: float | None = None
    ended: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    events_shown: int = 0  # how many of the run's events have been printed

    @property
    def fraction(self) -> float:
        """Completed fraction of this run (1 once it has finished or failed)."""
        if self.status in ("finished", "failed", "skipped"):
            return 1.0
        if self.total <= 0:
            return 0.0
        return min(1.0, self.done / self.total)


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _int(v: Any) -> str:
    """A step count as an integer (``19000``, not ``19000.0``); ``-`` when missing."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-" if v is None else str(v)
    return str(int(round(f))) if math.isfinite(f) else "-"


_SEED = re.compile(r"_s-?\d+$")


def fit_run_id(run_id: str, width: int) -> str:
    """``run_id`` in at most ``width`` characters, cut in the middle (``alr0.001_clr…_s42``): the
    learning rates at the start and the seed at the end stay readable (the seed is never cut)."""
    if len(run_id) <= width:
        return run_id
    seed = _SEED.search(run_id)
    tail = run_id[seed.start():] if seed else run_id[-max(1, width // 3):]
    head = max(0, width - len(tail) - 1)
    return run_id[:head] + "…" + tail


def eta_seconds(elapsed: float, done: float, total: float) -> float | None:
    """Seconds left if the remaining work goes at the average pace so far: ``(total - done) x elapsed /
    done`` (work in runs, a running run counting by its fraction). Over all the work finished, not a
    recent window, so it does not swing with each run's start and end; None before any work is done."""
    if done <= 0 or elapsed <= 0:
        return None
    return max(0.0, total - done) * elapsed / done


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _first(info: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` present (not None) in ``info``."""
    for key in keys:
        if info.get(key) is not None:
            return info[key]
    return None


def _singular(unit: str) -> str:
    """``"environment steps"`` -> ``"environment step"``."""
    return unit[:-1] if unit.endswith("s") else unit


class SweepView:
    """Base view: keeps the per-run state; subclasses render it."""

    def __init__(self, runs: list[RunProgress], n_skipped: int = 0, units: tuple[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runs = {r.run_id: r for r in runs}
        self.order = [r.run_id for r in runs]
        self.n_skipped = n_skipped
        self.lock = threading.Lock()
        self.clock = clock
        self.t0 = clock()
        # the sweep's units (progress, stop steps): shown even when no run is left to do
        if units is None:
            units = (runs[0].unit, runs[0].stop_unit) if runs else ("episodes", "episodes")
        self.units = units

    # -- events -------------------------------------------------------------
    def started(self, run_id: str, where: str = "") -> None:
        with self.lock:
            r = self.runs[run_id]
            if r.ended is not None:  # a late start message: the run already ended
                return
            r.status, r.where, r.started = "running", where, time.monotonic()
        self._on_started(run_id)

    def progress(self, run_id: str, info: dict[str, Any]) -> None:
        with self.lock:
            r = self.runs[run_id]
            if r.ended is not None:
                return
            if r.status == "pending":
                r.status, r.started = "running", time.monotonic()
            r.done = int(_first(info, "done", "episode") or r.done)
            if _first(info, "total", "episodes"):
                r.total = int(_first(info, "total", "episodes"))
            for keys, attr in ((("return", "reward"), "reward"), (("saturation_ratio",), "saturation"),
                               (("actors_stopped",), "actors_stopped"),
                               (("seconds_per_unit", "seconds_per_episode"), "seconds_per_unit")):
                value = _first(info, *keys)
                if value is not None:
                    setattr(r, attr, value)
            new = self._new_events(r, info.get("events"))
        self._print_events(run_id, new)
        self._on_progress(run_id)

    def done(self, run_id: str, status: str, row: dict[str, Any] | None, error: str | None) -> None:
        with self.lock:
            r = self.runs[run_id]
            r.status, r.error, r.ended = status, error, time.monotonic()
            if row:
                k = {**DEFAULT_KEYS, **r.keys}
                if row.get(k["done"]) is not None and status == "finished":
                    r.done = int(row[k["done"]])
                r.stop = row.get(k["stop"])
                if row.get("actors_stopped") is not None:
                    r.actors_stopped = row["actors_stopped"]
                if row.get(k["seconds_per_unit"]) is not None:
                    r.seconds_per_unit = row[k["seconds_per_unit"]]
                if row.get(k["return_last"]) is not None:
                    r.reward = row[k["return_last"]]
                if row.get("final_saturation_ratio") is not None:
                    r.saturation = row["final_saturation_ratio"]
            new = self._new_events(r, (row or {}).get("events"))
        self._print_events(run_id, new)
        self._on_done(run_id)

    @staticmethod
    def _new_events(r: RunProgress, events: Any) -> list[Any]:
        """The events of ``events`` not printed yet (call holding the lock)."""
        if not isinstance(events, list) or len(events) <= r.events_shown:
            return []
        new, r.events_shown = events[r.events_shown:], len(events)
        return new

    def _print_events(self, run_id: str, events: list[Any]) -> None:
        for event in events:
            text = event.get("message") if isinstance(event, dict) else None
            if text:
                self.message(f"{run_id}: {text}")

    def message(self, text: str) -> None:
        """A free-form line (warnings, notes)."""

    # -- totals -------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        c = {"finished": 0, "failed": 0, "running": 0, "pending": 0, "interrupted": 0}
        for r in self.runs.values():
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def completed_units(self) -> float:
        return sum(r.fraction for r in self.runs.values())

    def ended(self) -> int:
        """Runs that ended (finished, failed, interrupted) in this sweep or before it (skipped)."""
        return self.n_skipped + sum(1 for r in self.runs.values() if r.ended is not None)

    def eta(self) -> float | None:
        """Seconds left at the average pace of this sweep so far (:func:`eta_seconds`)."""
        return eta_seconds(self.clock() - self.t0, self.completed_units(), len(self.runs))

    # -- hooks --------------------------------------------------------------
    def _on_started(self, run_id: str) -> None: ...
    def _on_progress(self, run_id: str) -> None: ...
    def _on_done(self, run_id: str) -> None: ...

    def __enter__(self) -> "SweepView":
        return self

    def __exit__(self, *exc: Any) -> None: ...


class LogView(SweepView):
    """Plain log lines (CI, tests, non-interactive shells): start, quarter marks, end."""

    def __init__(self, runs: list[RunProgress], n_skipped: int = 0,
                 log: Callable[[str], None] | None = None, units: tuple[str, str] | None = None) -> None:
        super().__init__(runs, n_skipped, units=units)
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self._marks: dict[str, int] = {}
        self.total = len(runs) + n_skipped

    def _prefix(self) -> str:
        c = self.counts()
        return f"[{c['finished'] + c['failed'] + self.n_skipped}/{self.total}]"

    def message(self, text: str) -> None:
        self._safe(text)

    def _safe(self, text: str) -> None:
        try:
            self.log(text)
        except Exception:  # noqa: BLE001 - a broken log must not stop runs
            pass

    def _on_started(self, run_id: str) -> None:
        r = self.runs[run_id]
        where = f" on {r.where}" if r.where else ""
        self._safe(f"{self._prefix()} start    {run_id}{where}")

    def _on_progress(self, run_id: str) -> None:
        r = self.runs[run_id]
        if r.total <= 0:
            return
        mark = int(4 * r.done / r.total)
        if 0 < mark < 4 and mark > self._marks.get(run_id, 0):
            self._marks[run_id] = mark
            self._safe(
                f"{self._prefix()} progress {run_id}: {r.done}/{r.total} {r.unit}, "
                f"return {_fmt(r.reward, '.4g')}, saturation {_fmt(r.saturation, '.2f')}, "
                f"actors stopped {_fmt(r.actors_stopped, 'd')}/{r.n_actors}"
            )

    def _on_done(self, run_id: str) -> None:
        r = self.runs[run_id]
        if r.status == "finished":
            stop = "none" if r.stop is None else f"{_int(r.stop)} {r.stop_unit}"
            self._safe(
                f"{self._prefix()} finished {run_id}: {r.done} {r.unit}, actors stopped at: {stop}, "
                f"actors stopped {_fmt(r.actors_stopped, 'd')}/{r.n_actors}, "
                f"{_fmt(r.seconds_per_unit, '.3g')} s per {_singular(r.unit)}"
            )
        elif r.status == "failed":
            self._safe(f"{self._prefix()} FAILED   {run_id}: {r.error}")
        else:
            self._safe(f"{self._prefix()} {r.status} {run_id}")


class LiveView(SweepView):
    """A ``rich`` dashboard: overall progress bar with ETA and a table of runs.

    The bar fills by runs, a running run by its fraction of ``unit``; its count
    ("4/16 runs ended") counts ended runs only, the same runs as the table's title.
    The ETA is :meth:`SweepView.eta` (average pace over the whole sweep so far). While
    the sweep runs, the table shows the running runs and the latest ended ones
    (``max_rows`` rows at most); the final table lists the runs in grid order. Run ids
    are cut in the middle to fit the terminal (:func:`fit_run_id`; never the seed).
    """

    def __init__(self, runs: list[RunProgress], n_skipped: int = 0, max_rows: int = 20,
                 title: str = "sweep", units: tuple[str, str] | None = None, console: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(runs, n_skipped, units=units, clock=clock)
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.max_rows = max_rows
        self.final = False
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn(f"[bold]{title}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[ended]}/{task.total:.0f} runs ended · {task.fields[elapsed]} · ETA "
                       "{task.fields[eta]}"), console=self.console,
        )
        total = len(runs) + n_skipped
        self.task = self.bar.add_task("runs", total=total, completed=n_skipped, ended=n_skipped,
                                      elapsed=_duration(0), eta=_duration(None))
        self._group = Group
        self.live = Live(console=self.console, refresh_per_second=4, get_renderable=self._render,
                         transient=False, redirect_stdout=True, redirect_stderr=True)

    def _headers(self, short: bool) -> list[str]:
        """Column headers after run and status; ``short``: long unit names go to the caption."""
        unit, stop_unit = self.units
        long_unit = short and len(unit) > 10
        return [("progress" if long_unit else unit), "return", "saturation", "actors stopped",
                "stop" if short and len(stop_unit) > 10 else f"stop ({stop_unit})",
                "s/unit" if long_unit else f"s/{_singular(unit)}"]

    def _caption(self, short: bool) -> str | None:
        """The units the (``short``) headers leave out."""
        unit, stop_unit = self.units
        parts = []
        if short and len(unit) > 10:
            parts.append(f"progress in {unit}; s/unit: seconds per {_singular(unit)}")
        if short and len(stop_unit) > 10:
            parts.append(f"stop in {stop_unit}")
        return "; ".join(parts) or None

    def _shown(self) -> list[RunProgress]:
        if self.final:  # the last table: every run of this sweep in grid order
            return [self.runs[rid] for rid in self.order][: max(self.max_rows, 200)]
        running = [r for r in self.runs.values() if r.status == "running"]
        ended = sorted((r for r in self.runs.values() if r.ended is not None and r.status != "running"),
                       key=lambda r: r.ended or 0.0, reverse=True)
        return running + ended[: max(0, self.max_rows - len(running))]

    def _render(self) -> Any:
        with self.lock:
            self.bar.update(self.task, completed=self.n_skipped + self.completed_units(), ended=self.ended(),
                            elapsed=_duration(self.clock() - self.t0), eta=_duration(self.eta()))
        return self._group(self.bar, _RunsTable(self))

    def table(self, max_width: int) -> Any:
        """The table of runs laid out for a terminal ``max_width`` characters wide."""
        from rich.table import Table

        with self.lock:
            c = self.counts()
            shown = self._shown()
            table = Table(
                title=(f"finished {c['finished'] + self.n_skipped} · failed {c['failed']} · "
                       f"running {c['running']} · pending {c['pending']}"
                       + (f" · interrupted {c['interrupted']}" if c["interrupted"] else "")),
                title_justify="left", expand=False,
                caption_justify="left",
            )
            style = {"running": "cyan", "finished": "green", "failed": "bold red", "interrupted": "yellow"}
            rows = []
            for r in shown:
                status = r.status if r.status != "failed" else f"failed: {(r.error or '')[:40]}"
                rows.append([f"[{style[r.status]}]{status}" if r.status in style else status, f"{r.done}/{r.total}",
                             _fmt(r.reward, ".4g"), _fmt(r.saturation, ".2f"),
                             f"{_fmt(r.actors_stopped, 'd')}/{r.n_actors}", _int(r.stop),
                             _fmt(r.seconds_per_unit, ".3g")])
        # Full headers when the table fits at its natural width, else short ones (long units in the caption).
        # The run ids get what the other columns leave of the terminal: at their natural width if the
        # table fits so, else each at its longest word (headers wrap); 3 = padding and border per column.
        ids_natural = max([3] + [len(r.run_id) for r in shown])
        for short in (False, True):
            headers = [("status", "left"), *[(h, "right") for h in self._headers(short)]]
            cells = [[h] + [re.sub(r"\[[^\]]*\]", "", row[i]) for row in rows] for i, (h, _) in enumerate(headers)]
            natural = [max(len(c) for c in col) for col in cells]
            if ids_natural + sum(natural) + 3 * len(headers) + 4 <= max_width:
                break
        table.caption = self._caption(short)
        if self.final and len(shown) < len(self.order):  # never a silently shorter list
            more = f"… and {len(self.order) - len(shown)} more runs (summary.csv)"
            table.caption = f"{table.caption}; {more}" if table.caption else more
        narrow = [max(len(w) for c in col for w in c.split()) for col in cells]
        keep = list(range(len(headers)))
        for drop in (6, 3, 2, 4):  # a narrow terminal: s/unit, saturation, return, actors stopped go first
            if 16 + sum(narrow[i] for i in keep) + 3 * len(keep) + 4 <= max_width:
                break
            keep.remove(drop)
        headers, rows = [headers[i] for i in keep], [[row[i] for i in keep] for row in rows]
        natural, narrow = [natural[i] for i in keep], [narrow[i] for i in keep]
        fits = ids_natural + sum(natural) + 3 * len(headers) + 4 <= max_width
        widths = natural if fits else narrow
        width = max(16, max_width - sum(widths) - 3 * len(headers) - 4)
        ids = [fit_run_id(r.run_id, width) for r in shown]
        table.add_column("run", justify="left", no_wrap=True, min_width=min(width, max([3] + list(map(len, ids)))))
        for (h, just), w in zip(headers, widths):
            table.add_column(h, justify=just, width=None if fits else w)  # type: ignore[arg-type]
        for rid, row in zip(ids, rows):
            table.add_row(rid, *row)
        return table

    def message(self, text: str) -> None:
        try:
            self.live.console.print(text)
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "LiveView":
        self.live.start(refresh=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.final = True
            self.live.refresh()
        finally:
            self.live.stop()


class _RunsTable:
    """The live view's table, laid out when printed, for the width of the terminal it goes to."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield self.view.table(options.max_width)


def make_view(runs: list[RunProgress], n_skipped: int, live: bool,
              log: Callable[[str], None] | None = None, title: str = "sweep",
              units: tuple[str, str] | None = None) -> SweepView:
    """A :class:`LiveView` when ``live`` and stderr is a terminal, else a :class:`LogView`
    (``units``: the sweep's progress and stop units, shown even when no run is left to do)."""
    if live:
        try:
            from rich.console import Console  # noqa: PLC0415

            if Console(stderr=True).is_terminal:  # log files get plain lines
                return LiveView(runs, n_skipped, title=title, units=units)
        except Exception:  # noqa: BLE001 - fall back to log lines
            pass
    return LogView(runs, n_skipped, log=log, units=units)
