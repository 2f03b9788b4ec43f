"""Progress views for a sweep: a live ``rich`` dashboard or plain log lines.

Both receive the same events from the driver (run started, per-episode progress,
run done) and never raise into it: a display problem must not stop a run.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class RunProgress:
    """What the view knows about one run."""

    run_id: str
    episodes: int
    n_agents: int
    status: str = "pending"
    episode: int = 0
    reward: float | None = None
    saturation: float | None = None
    actors_stopped: int | None = None
    seconds_per_episode: float | None = None
    stopping_episode: int | None = None
    error: str | None = None
    where: str = ""
    started: float | None = None
    ended: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Completed fraction of this run (1 once it has finished or failed)."""
        if self.status in ("finished", "failed", "skipped"):
            return 1.0
        if self.episodes <= 0:
            return 0.0
        return min(1.0, self.episode / self.episodes)


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


class SweepView:
    """Base view: keeps the per-run state; subclasses render it."""

    def __init__(self, runs: list[RunProgress], n_skipped: int = 0) -> None:
        self.runs = {r.run_id: r for r in runs}
        self.order = [r.run_id for r in runs]
        self.n_skipped = n_skipped
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

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
            r.episode = int(info.get("episode") or r.episode)
            if info.get("episodes"):
                r.episodes = int(info["episodes"])
            for key, attr in (("reward", "reward"), ("saturation_ratio", "saturation"),
                              ("actors_stopped", "actors_stopped"),
                              ("seconds_per_episode", "seconds_per_episode")):
                if info.get(key) is not None:
                    setattr(r, attr, info[key])
        self._on_progress(run_id)

    def done(self, run_id: str, status: str, row: dict[str, Any] | None, error: str | None) -> None:
        with self.lock:
            r = self.runs[run_id]
            r.status, r.error, r.ended = status, error, time.monotonic()
            if row:
                if row.get("episodes_run") is not None and status == "finished":
                    r.episode = int(row["episodes_run"])
                r.stopping_episode = row.get("stopping_episode")
                if row.get("actors_stopped") is not None:
                    r.actors_stopped = row["actors_stopped"]
                if row.get("seconds_per_episode") is not None:
                    r.seconds_per_episode = row["seconds_per_episode"]
                if row.get("reward_last10") is not None:
                    r.reward = row["reward_last10"]
                if row.get("final_saturation_ratio") is not None:
                    r.saturation = row["final_saturation_ratio"]
        self._on_done(run_id)

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
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(runs, n_skipped)
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
        if r.episodes <= 0:
            return
        mark = int(4 * r.episode / r.episodes)
        if 0 < mark < 4 and mark > self._marks.get(run_id, 0):
            self._marks[run_id] = mark
            self._safe(
                f"{self._prefix()} progress {run_id}: episode {r.episode}/{r.episodes}, "
                f"reward {_fmt(r.reward, '.4g')}, saturation {_fmt(r.saturation, '.2f')}, "
                f"actors stopped {_fmt(r.actors_stopped, 'd')}/{r.n_agents}"
            )

    def _on_done(self, run_id: str) -> None:
        r = self.runs[run_id]
        if r.status == "finished":
            stop = "none" if r.stopping_episode is None else str(r.stopping_episode)
            self._safe(
                f"{self._prefix()} finished {run_id}: {r.episode} episodes, stopping episode {stop}, "
                f"actors stopped {_fmt(r.actors_stopped, 'd')}/{r.n_agents}, "
                f"{_fmt(r.seconds_per_episode, '.3f')} s/episode"
            )
        elif r.status == "failed":
            self._safe(f"{self._prefix()} FAILED   {run_id}: {r.error}")
        else:
            self._safe(f"{self._prefix()} {r.status} {run_id}")


class LiveView(SweepView):
    """A ``rich`` dashboard: overall progress bar with ETA and a table of runs.

    The bar counts runs; a running run contributes its fraction of episodes, so
    the ETA moves smoothly. The table shows running runs and the latest finished
    ones (``max_rows`` rows at most).
    """

    def __init__(self, runs: list[RunProgress], n_skipped: int = 0, max_rows: int = 20,
                 title: str = "sweep") -> None:
        super().__init__(runs, n_skipped)
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)

        self.max_rows = max_rows
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn(f"[bold]{title}"), BarColumn(), TaskProgressColumn(),
            MofNCompleteColumn(), TextColumn("runs ·"), TimeElapsedColumn(), TextColumn("· ETA"),
            TimeRemainingColumn(), console=self.console,
        )
        total = len(runs) + n_skipped
        self.task = self.bar.add_task("runs", total=total, completed=n_skipped)
        self._group = Group
        self.live = Live(console=self.console, refresh_per_second=4, get_renderable=self._render,
                         transient=False, redirect_stdout=True, redirect_stderr=True)

    def _render(self) -> Any:
        from rich.table import Table

        with self.lock:
            self.bar.update(self.task, completed=self.n_skipped + self.completed_units())
            c = self.counts()
            table = Table(
                title=(f"finished {c['finished'] + self.n_skipped} · failed {c['failed']} · "
                       f"running {c['running']} · pending {c['pending']}"),
                title_justify="left", expand=False,
            )
            for col, just in (("run", "left"), ("status", "left"), ("episode", "right"),
                              ("reward", "right"), ("saturation", "right"),
                              ("actors stopped", "right"), ("stop ep.", "right"), ("s/ep", "right")):
                table.add_column(col, justify=just)  # type: ignore[arg-type]
            running = [r for r in self.runs.values() if r.status == "running"]
            ended = sorted((r for r in self.runs.values() if r.ended is not None and r.status != "running"),
                           key=lambda r: r.ended or 0.0, reverse=True)
            shown = running + ended[: max(0, self.max_rows - len(running))]
            style = {"running": "cyan", "finished": "green", "failed": "bold red", "interrupted": "yellow"}
            for r in shown:
                status = r.status if r.status != "failed" else f"failed: {(r.error or '')[:40]}"
                table.add_row(
                    r.run_id, f"[{style.get(r.status, '')}]{status}", f"{r.episode}/{r.episodes}",
                    _fmt(r.reward, ".4g"), _fmt(r.saturation, ".2f"),
                    f"{_fmt(r.actors_stopped, 'd')}/{r.n_agents}",
                    _fmt(r.stopping_episode, "d"), _fmt(r.seconds_per_episode, ".3f"),
                )
        return self._group(self.bar, table)

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
            self.live.refresh()
        finally:
            self.live.stop()


def make_view(runs: list[RunProgress], n_skipped: int, live: bool,
              log: Callable[[str], None] | None = None, title: str = "sweep") -> SweepView:
    """A :class:`LiveView` when ``live`` and stderr is a terminal, else a :class:`LogView`."""
    if live:
        try:
            from rich.console import Console  # noqa: PLC0415

            if Console(stderr=True).is_terminal:  # log files get plain lines
                return LiveView(runs, n_skipped, title=title)
        except Exception:  # noqa: BLE001 - fall back to log lines
            pass
    return LogView(runs, n_skipped, log=log)
