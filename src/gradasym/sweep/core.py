"""``run_sweep``: run every (configuration, seed) of a :class:`SweepSpec`, resumably.

Guarantees (``docs/sweeps.md``):

* one run folder per run under ``out_dir/runs/<run_id>``; ``sweep.json`` and the
  summary table (``summary.parquet`` + ``summary.csv``) at the top, all written atomically;
  the summary is rewritten whenever a run ends;
* running the same sweep again skips finished runs, resumes unfinished ones from
  their checkpoints (``resume=True``) and retries failed ones, so an interrupted
  sweep ends with the same summary as an uninterrupted one;
* a run that raises is recorded (``status="failed"``, ``error``) and the others go on;
  :class:`SweepResult` says which failed and gives the exit code;
* a folder holding a different grid is refused (:class:`SweepMismatchError`)
  unless ``force=True``; a larger grid (more seeds / values / combinations) extends it.
"""

from __future__ import annotations

import copy
import errno
import os
import pickle
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import pandas as pd

from gradasym import algos
from gradasym.algos.base import AlgoConfig, ConfigError
from gradasym.io import remove_temp_files, write_json
from gradasym.runfolder import (RUN_DISK_FULL_REMEDY, RUN_FOLDER_FILES, DiskFullError, FolderKindError,
                                 disk_full_message, is_disk_full, present, require_folder, run_subfolders, some)
from gradasym.schemas import check_run_files

from . import store
from .backends import RAY_MAX_RETRIES, Job, Runner, run_inline, run_pool, run_ray, run_result, run_submitit
from .spec import RunSpec, SweepSpec
from .store import (FAILED, FINISHED, INTERRUPTED, PENDING, RUNNING, SweepError, SweepLock,
                    SweepMismatchError)
from .view import RunProgress, SweepView, make_view

Backend = Literal["local", "ray", "submitit"]


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was interrupted (Ctrl-C); the summary was written and reruns resume."""


class SweepDiskFullError(SweepError):
    """The disk filled up: the sweep stopped its runs, recorded what it could and exited."""


def default_runner(cfg: AlgoConfig | None = None) -> Runner:
    """The runner of ``cfg``'s algorithm (default: CCM-MADRL's ``run_experiment``), imported on first use."""
    return (algos.get(None) if cfg is None else algos.of(cfg)).runner


def _version() -> str:
    try:
        from gradasym import __version__  # noqa: PLC0415

        return str(__version__)
    except Exception:  # noqa: BLE001
        return "unknown"


def resolve_threads(base: AlgoConfig, backend: str, workers: int, threads: int | None) -> int:
    """Torch threads per run: explicit ``threads``, else the base config's ``run.threads``.

    ``run.threads`` defaults to 1: a multi-threaded run slows down many times as soon as
    another process competes for its cores (benchmarks/RESULTS.md, "Threads"), and one
    thread per run is also how the committed reproduction results were computed. Locally
    a base ``run.threads`` of 0 means ``cores // workers`` and a larger value is capped at
    it, so that ``workers x threads <= os.cpu_count()``. For Ray/submitit the default is
    the base config's ``run.threads`` (0 counts as 1): each task asks the scheduler for
    that many CPUs.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        return int(threads)
    if backend == "local":
        share = max(1, (os.cpu_count() or 1) // max(1, workers))
        return min(base.run.threads, share) if base.run.threads > 0 else share
    return base.run.threads if base.run.threads > 0 else 1


# ------------------------------------------------------------------ result
@dataclass
class SweepResult:
    """Which runs of a summary table finished, failed or are still to do."""

    table: pd.DataFrame
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> "SweepResult":
        status = table["status"].astype(str) if len(table) else pd.Series([], dtype=str)
        ids = table["run_id"].astype(str) if len(table) else pd.Series([], dtype=str)
        return cls(
            table=table,
            finished=list(ids[status == FINISHED]),
            failed=list(ids[status == FAILED]),
            unfinished=list(ids[~status.isin([FINISHED, FAILED])]),
        )

    @classmethod
    def from_dir(cls, out_dir: str | Path) -> "SweepResult":
        """A sweep folder's state as its driver last recorded it (``summary.parquet``).

        Falls back to rebuilding the table from the run folders when there is none.
        """
        path = Path(out_dir) / store.SUMMARY_PARQUET
        table = pd.read_parquet(path) if path.is_file() else collect_summary(out_dir, write=False)
        return cls.from_table(table)

    @property
    def ok(self) -> bool:
        """Every run finished."""
        return not self.failed and not self.unfinished

    @property
    def exit_code(self) -> int:
        """0 if every run finished, 1 if any failed, 2 if some are unfinished (none failed)."""
        return 0 if self.ok else (1 if self.failed else 2)

    def describe(self) -> str:
        """One line for the terminal."""
        text = f"{len(self.finished)} finished, {len(self.failed)} failed, {len(self.unfinished)} unfinished"
        if self.failed:
            errors = dict(zip(self.table["run_id"], self.table["error"]))
            text += "\nfailed runs:\n" + "\n".join(f"  {r}: {errors.get(r)}" for r in self.failed)
        return text


def exit_code(table: pd.DataFrame) -> int:
    """CLI exit code for a summary table (see :attr:`SweepResult.exit_code`)."""
    return SweepResult.from_table(table).exit_code


# ------------------------------------------------------------------ driver state
class _Driver:
    """The driver's bookkeeping: run states, the summary file and the view."""

    def __init__(self, out_dir: Path, runs: list[RunSpec], todo: set[str], view: SweepView) -> None:
        self.out_dir = out_dir
        self.entries = [r.to_dict() for r in runs]
        self.todo = todo
        self.view = view
        self.active: set[str] = set()
        self.results: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, dict[str, Any]] = {}  # summaries of finished runs never change

    # Reporter protocol --------------------------------------------------------
    # A run ends once per sweep: the first ``done`` counts, and an ended run is not started again.
    def started(self, run_id: str, where: str = "") -> None:
        if run_id in self.results:
            return
        self.active.add(run_id)
        _safe(self.view.started, run_id, where)

    def progress(self, run_id: str, info: dict[str, Any]) -> None:
        _safe(self.view.progress, run_id, info)

    def done(self, run_id: str, result: dict[str, Any]) -> None:
        if run_id in self.results:
            return
        self.active.discard(run_id)
        self.results[run_id] = result
        table = self.write()
        row = table.loc[table["run_id"] == run_id]
        row_dict = row.iloc[0].to_dict() if len(row) else None
        if row_dict:
            row_dict = {k: (None if v is pd.NA or (isinstance(v, float) and v != v) else v)
                        for k, v in row_dict.items()}
            row_dict["events"] = (result.get("summary") or {}).get("events")  # the view prints those not shown yet
        _safe(self.view.done, run_id, result["status"], row_dict, result.get("error"))
        if result.get("disk_full"):  # the other runs would fail the same way: stop the sweep
            raise DiskFullError(errno.ENOSPC, f"run {run_id}: {result.get('error')}")

    def message(self, text: str) -> None:
        _safe(self.view.message, text)

    def interrupted(self) -> None:
        """After an interrupt: the runs still in flight (their workers did not report back,
        e.g. killed by the same SIGTERM) are recorded ``interrupted``, not ``running``."""
        for rid in list(self.active):
            self.active.discard(rid)
            self.results[rid] = run_result(rid, INTERRUPTED)

    # summary ------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        rows = []
        for entry in self.entries:
            rid = entry["run_id"]
            on_disk = self._finished.get(rid) or store.read_run_summary(store.run_dir(self.out_dir, rid))
            if on_disk is not None and on_disk.get("status") == FINISHED and rid not in self.active:
                self._finished[rid] = on_disk
            result = self.results.get(rid)
            status = error = None
            summary = on_disk
            if result is not None:  # ended in this sweep
                status = result["status"]
                if on_disk is None or on_disk.get("status") != status:
                    returned = result.get("summary")
                    summary = returned if returned and store.summary_is_valid(returned) else on_disk
                if status == FAILED:
                    disk_error = on_disk.get("error") if on_disk and on_disk.get("status") == FAILED else None
                    error = disk_error or result.get("error") or "failed (no error message)"
            elif rid in self.active:
                status = RUNNING
            elif rid in self.todo:  # not started yet in this sweep (maybe resumable)
                status, summary = PENDING, None
            rows.append(store.summary_row(entry, summary, status=status, error=error))
        return store.build_table(rows)

    def write(self) -> pd.DataFrame:
        table = self.table()
        store.write_summary(self.out_dir, table)
        return table


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the view must never break the sweep
        pass


def _run_progress(run: RunSpec) -> RunProgress:
    """What the view shows of a run, in its algorithm's units."""
    plugin = algos.of(run.config)
    return RunProgress(run.run_id, plugin.progress_total(run.config), plugin.n_actors(run.config),
                       unit=plugin.progress_unit, stop_unit=plugin.stop_unit, keys=dict(plugin.summary_keys))


def _units(runs: list[RunSpec]) -> tuple[str, str] | None:
    """The progress and stop units of a sweep's runs (its first run's algorithm), for the view's headers
    even when every run has finished already; None for no runs."""
    if not runs:
        return None
    plugin = algos.of(runs[0].config)
    return plugin.progress_unit, plugin.stop_unit


# ------------------------------------------------------------------ sweep.json
def _sweep_document(spec: SweepSpec, runs: list[RunSpec], old: dict[str, Any] | None) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc = {"format": store.SWEEP_FORMAT, "version": _version(), **spec.to_dict(),
           "run_ids": [r.run_id for r in runs], "runs": [r.to_dict() for r in runs],
           "created": (old or {}).get("created", now), "updated": now}
    return doc


def check_sweep_folder(out_dir: Path) -> None:
    """Refuse (:class:`FolderKindError`, one line) an ``out_dir`` that is a file, holds a run at its
    top (``config.json``, ``summary.json``, a checkpoint: a sweep written there would mix its
    ``runs/`` and ``sweep.json`` into the run's folder) or run folders beside ``runs/``."""
    require_folder(out_dir)
    held = present(out_dir, RUN_FOLDER_FILES) if out_dir.is_dir() else []
    if held:
        raise FolderKindError(f"{out_dir} holds a run ({', '.join(held)}); a sweep is not written into a run "
                              "folder: choose another --out")
    beside = run_subfolders(out_dir)
    if beside:
        raise FolderKindError(f"{out_dir} holds run folders ({some(beside)}) outside {store.RUNS_DIR}/; a sweep "
                              "written there would hide them from its report: choose another --out")


def _foreign_entries(out_dir: Path, runs: list[RunSpec], old: dict[str, Any] | None) -> list[Path]:
    """The folders under ``out_dir/runs/`` that are runs neither of this grid nor of the recorded
    sweep (``old``): reports read every folder there (hidden and ``_`` ones excepted)."""
    root = out_dir / store.RUNS_DIR
    if not root.is_dir():
        return []
    known = {r.run_id for r in runs} | {str(i) for i in (old or {}).get("run_ids", []) or []}
    known |= {str(e.get("run_id")) for e in (old or {}).get("runs", []) or [] if isinstance(e, dict)}
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")) and p.name not in known)


def _move_to_stale(out_dir: Path, rdir: Path, stamp: str) -> Path:
    """Move the run folder ``rdir`` to ``out_dir/stale/<name>-<stamp>[-n]`` (never deleted); return it."""
    stale = out_dir / "stale" / f"{rdir.name}-{stamp}"
    n = 1
    while stale.exists():
        n += 1
        stale = out_dir / "stale" / f"{rdir.name}-{stamp}-{n}"
    stale.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(rdir), str(stale))
    return stale


def _before_retry(out_dir: Path) -> Callable[[Job], str]:
    """What the Ray backend does before it runs a run again after losing its worker or node
    (``run_ray(before_retry=)``): a run that can resume goes on from its last checkpoint; the
    unfinished folder of a run that cannot (SB3) is moved to ``stale/`` so it restarts from scratch.
    Returns how the run goes on, for the log line."""

    def prepare(job: Job) -> str:
        plugin, rdir = algos.of(job.config), Path(job.run_dir)
        if not plugin.can_resume and rdir.is_dir() and store.run_status(rdir) != FINISHED:
            stale = _move_to_stale(out_dir, rdir, datetime.now().strftime("%Y%m%d-%H%M%S"))
            return f"from scratch ({plugin.name} runs cannot resume; its folder was moved to {stale})"
        return "resuming from its last checkpoint"

    return prepare


def _prepare_folder(out_dir: Path, spec: SweepSpec, runs: list[RunSpec], force: bool,
                    note: Callable[[str], None]) -> None:
    """Check the folder against the grid, write ``sweep.json``, vet existing run folders."""
    path = out_dir / store.SWEEP_JSON
    old = store.read_json(path)
    if path.exists() and old is None and not force:
        raise SweepMismatchError(f"{path} is unreadable; pass force=True (--force) to overwrite it")
    doc = _sweep_document(spec, runs, old)
    if old is not None:
        reasons = store.grid_differences(old, doc)
        if reasons and not force:
            more = f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
            raise SweepMismatchError(
                f"{out_dir} already holds a different sweep ({'; '.join(reasons[:5])}{more}); use another "
                "folder, or force=True (--force) to redefine the sweep here (run folders whose config changed "
                "are moved to stale/)"
            )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")

    def move_aside(rdir: Path, why: str) -> None:
        stale = _move_to_stale(out_dir, rdir, stamp)
        note(f"--force: moved {rdir} ({why}) to {stale}")

    foreign = _foreign_entries(out_dir, runs, old)
    if foreign and not force:
        raise FolderKindError(
            f"{out_dir / store.RUNS_DIR} holds {some([p.name for p in foreign])}, not runs of this sweep (a report "
            "would mix them in): choose another --out, or --force to move them to stale/")
    for rdir in foreign:
        move_aside(rdir, "not a run of this sweep")
    if old is not None and reasons:
        note(f"--force: redefining the sweep in {out_dir} ({'; '.join(reasons)[:200]})")
        # Runs of the old grid that the new one lacks would otherwise mix into reports.
        wanted = {r.run_id for r in runs}
        for entry in old.get("runs", []):
            rdir = store.run_dir(out_dir, str(entry.get("run_id")))
            if entry.get("run_id") not in wanted and rdir.is_dir():
                move_aside(rdir, "not in the new grid")
    # Run folders left with a different config (by hand, or an older grid under --force).
    for run in runs:
        rdir = store.run_dir(out_dir, run.run_id)
        saved = store.read_json(rdir / "config.json")
        if saved is None and (rdir / "config.json").exists():
            if not force:
                raise SweepMismatchError(
                    f"{rdir / 'config.json'} is unreadable; delete it (the run resumes from its checkpoint, "
                    "whose stored configuration is checked), or force=True (--force) to move the run to stale/"
                )
            move_aside(rdir, "unreadable config.json")
            continue
        problems = check_run_files(rdir, saved, summary_types=False)  # another run's files, wrong columns
        if problems and not force:
            raise SweepMismatchError(f"{rdir}: {problems[0]}; delete that file (the run is resumed and rewrites "
                                     "it) or force=True (--force) to move the run to stale/ and rerun it")
        if problems:
            move_aside(rdir, problems[0])
            continue
        if (rdir / "summary.json").exists() and store.read_run_summary(rdir) is None:
            note(f"{rdir / 'summary.json'} is unreadable: the run is resumed and rewrites it")
        if saved is None:
            continue
        diffs = store.config_differences(saved, run.config.to_dict())
        if not diffs:
            continue
        if not force:
            raise SweepMismatchError(
                f"run folder {rdir} was made with another config ({'; '.join(diffs[:5])}); "
                "use another sweep folder, or force=True (--force) to move it to stale/ and rerun it"
            )
        move_aside(rdir, f"config changed: {'; '.join(diffs[:3])}")
    # Algorithms that cannot resume (none registered now) rerun an unfinished run from scratch.
    for run in runs:
        plugin = algos.of(run.config)
        rdir = store.run_dir(out_dir, run.run_id)
        if not plugin.can_resume and rdir.is_dir() and store.run_status(rdir) != FINISHED:
            move_aside(rdir, f"unfinished; {plugin.name} runs cannot resume, so it reruns from scratch")
    write_json(path, doc)


def _record(driver: _Driver) -> bool:
    """Write the summary once more after a full disk (best effort); True if it worked."""
    try:
        driver.write()
    except OSError:
        return False
    return True


def rerun_hint(runs: list[RunSpec]) -> str:
    """What running the same command again does with the unfinished runs, per algorithm
    (:meth:`~gradasym.algos.base.Algorithm.rerun_note`): resume or restart from scratch."""
    plugins = {p.name: p for p in (algos.of(r.config) for r in runs)}
    if not plugins:
        return "no runs in the grid"
    if len(plugins) == 1:
        return next(iter(plugins.values())).rerun_note()
    return "; ".join(f"{name}: {p.rerun_note()}" for name, p in sorted(plugins.items()))


@contextmanager
def _full_disk_stops_sweep(out_dir: Path, hint: str) -> Iterator[None]:
    """Turn a full disk into :class:`SweepDiskFullError`: one line saying what was recorded and
    what a rerun does (``hint``: :func:`rerun_hint`)."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        where = (f"the summary ({out_dir / store.SUMMARY_CSV}) records the runs so far"
                 if getattr(exc, "recorded", False) else
                 "the summary could not be rewritten (the previous one is intact)")
        line = str(exc) if isinstance(exc, DiskFullError) else disk_full_message(exc, "sweep")
        line = line.splitlines()[0].replace(RUN_DISK_FULL_REMEDY, "")  # the sweep's own remedy follows
        raise SweepDiskFullError(
            f"{line}; the sweep stopped: {where}; "
            f"free some space and run the same command again ({hint})"
        ) from None


def load_spec(out_dir: str | Path) -> SweepSpec:
    """The :class:`SweepSpec` recorded in a sweep folder's ``sweep.json`` (to rerun/resume it)."""
    doc = store.read_json(Path(out_dir) / store.SWEEP_JSON)
    if doc is None:
        raise SweepError(f"no readable {store.SWEEP_JSON} in {out_dir}")
    return SweepSpec.from_dict(doc)


def collect_summary(out_dir: str | Path, write: bool = True) -> pd.DataFrame:
    """Rebuild the summary table of a sweep folder from ``sweep.json`` and the run folders.

    Runs whose ``summary.json`` says ``running`` are reported as ``running`` (a live
    sweep) — after a crash they are simply the ones the next sweep will resume.
    """
    out_dir = Path(out_dir)
    doc = store.read_json(out_dir / store.SWEEP_JSON)
    if doc is None:
        raise SweepError(f"no readable {store.SWEEP_JSON} in {out_dir}")
    rows = [store.summary_row(e, store.read_run_summary(store.run_dir(out_dir, e["run_id"])))
            for e in doc.get("runs", [])]
    table = store.build_table(rows)
    if write:
        store.write_summary(out_dir, table)
    return table


# ------------------------------------------------------------------ run_sweep
def ray_options(options: dict[str, Any] | None) -> tuple[dict[str, Any], int]:
    """Split the Ray backend's options into ``ray.init`` keyword arguments and gradasym's own
    ``max_retries`` (default :data:`~gradasym.sweep.backends.RAY_MAX_RETRIES`: how many times a
    task whose worker or node was lost is run again); a bad ``max_retries`` is a one-line ConfigError."""
    init = dict(options or {})
    retries = init.pop("max_retries", RAY_MAX_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"--backend-option max_retries={retries!r}: the number of retries after a lost Ray "
                          "worker or node must be an integer >= 0")
    return init, retries


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    workers: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
    runner: Runner | None = None,
    live: bool = True,
    *,
    threads: int | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    backend_options: dict[str, Any] | None = None,
    title: str = "sweep",
) -> pd.DataFrame:
    """Run every (configuration, seed) of ``spec`` into ``out_dir``; return the summary table.

    Args:
        spec: the grid (base config x axes x preset combinations x seeds).
        out_dir: the sweep folder (created if needed). Rerunning into it resumes.
        workers: local backend: number of worker processes (default 1 = runs one
            after the other in this process); Ray: maximum tasks in flight (default:
            all, Ray schedules them by free CPUs); ignored by submitit.
        backend: ``"local"``, ``"ray"`` (needs ``ray``) or ``"submitit"`` (needs ``submitit``).
        address: Ray cluster address for ``ray.init`` (``"auto"``, ``"ray://host:10001"``;
            None starts a local Ray instance unless one is already initialised).
        runner: ``run_experiment``-compatible callable (default:
            ``gradasym.algos.ccm_madrl.runner.run_experiment``); must be a picklable module-level
            function for ``workers > 1``, Ray and submitit.
        live: a ``rich`` live view (progress bar with ETA, table of runs); False
            prints plain log lines (CI, tests).
        threads: torch threads per run (``cfg.run.threads``); default
            ``cpu_count // workers`` locally, else ``run.threads`` or 1 (Ray: ``num_cpus`` per task).
        force: redefine a sweep folder that holds a different grid.
        log: where plain log lines go (default stderr).
        backend_options: Ray: keyword arguments for ``ray.init``, and ``max_retries`` (default 3):
            how many times a task whose Ray worker or node was lost is run again (:func:`ray_options`);
            submitit: executor parameters (``timeout_min``, ``slurm_partition``, ``cluster``...).
        title: label of the live view.

    Returns:
        The summary table (one row per run, columns in ``docs/architecture.md``);
        ``SweepResult.from_table(table)`` says which runs failed. Failed runs do not
        raise; ``KeyboardInterrupt`` is re-raised as :class:`SweepInterrupted` after the
        summary has been written.

    Raises:
        SweepMismatchError: ``out_dir`` holds another grid (and ``force`` is False), or a run
            folder's ``config.json`` is unreadable.
        SweepError: another sweep is using ``out_dir``.
        FolderKindError: ``out_dir`` is a file, holds a run (``config.json``, ``summary.json`` or a
            checkpoint at its top) or run folders beside ``runs/``, or its ``runs/`` holds folders
            that are not runs of this sweep
            (``force`` moves those to ``stale/``); a ``ConfigError``, raised before any run starts.
        SweepDiskFullError: the disk filled up (the runs were stopped, the summary written
            if possible; rerunning resumes).
        ConfigError: the grid produces an invalid config, or its runs cannot fit in memory.
    """
    if backend not in ("local", "ray", "submitit"):
        raise ValueError(f"unknown sweep backend {backend!r} (use 'local', 'ray' or 'submitit')")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if address is not None and backend != "ray":  # an option that does nothing must not pass for one that did
        raise ConfigError(f"address (--address {address}) is for the ray backend; this sweep's backend is {backend!r}")
    if backend_options and backend == "local":
        raise ConfigError(f"backend_options (--backend-option {', '.join(sorted(backend_options))}) are for the ray "
                          "and submitit backends; the local backend takes none")
    init_kwargs, max_retries = ray_options(backend_options) if backend == "ray" else (backend_options, 0)
    out_dir = Path(out_dir).resolve()
    runs = spec.expand()
    n_workers = workers or 1
    run_threads = resolve_threads(spec.base, backend, n_workers, threads)
    check_sweep_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = log or (lambda s: print(s, file=sys.stderr, flush=True))

    with _full_disk_stops_sweep(out_dir, rerun_hint(runs)), SweepLock(out_dir) as lock:
        for tmp in remove_temp_files(out_dir) + lock.remove_leftovers():
            emit(f"removed {tmp.name}, left by an interrupted write")
        _prepare_folder(out_dir, spec, runs, force, emit)
        todo_runs = [r for r in runs if store.run_status(store.run_dir(out_dir, r.run_id)) != FINISHED]
        n_skipped = len(runs) - len(todo_runs)
        if todo_runs:
            runner = runner or default_runner(spec.base)
        jobs = []
        for r in todo_runs:
            cfg = copy.deepcopy(r.config)
            cfg.run.threads = run_threads
            jobs.append(Job(r.run_id, cfg, str(store.run_dir(out_dir, r.run_id))))
        if todo_runs and backend == "local":  # runs elsewhere are sized by their scheduler
            largest = max(todo_runs, key=lambda r: algos.of(r.config).memory_bytes(r.config))
            algos.of(largest.config).check_memory(largest.config, concurrent=min(len(todo_runs), n_workers))
        if todo_runs and (backend != "local" or n_workers > 1):
            try:
                pickle.dumps(runner)
            except Exception as exc:  # noqa: BLE001
                raise TypeError(
                    f"the runner {runner!r} cannot be sent to worker processes ({exc}); "
                    "use a module-level function (or workers=1)"
                ) from None
        view = make_view(
            [_run_progress(r) for r in todo_runs],
            n_skipped, live=live, log=log, title=title, units=_units(runs),
        )
        driver = _Driver(out_dir, runs, {r.run_id for r in todo_runs}, view)
        driver.write()
        if n_skipped:
            emit(f"{out_dir}: {n_skipped} of {len(runs)} runs already finished, {len(todo_runs)} to run")
        t0 = time.monotonic()
        interrupted = False
        try:
            with view:
                if not jobs:
                    pass
                elif backend == "ray":
                    run_ray(jobs, runner, driver, run_threads, address=address, max_in_flight=workers,
                            init_kwargs=init_kwargs, max_retries=max_retries, before_retry=_before_retry(out_dir))
                elif backend == "submitit":
                    run_submitit(jobs, runner, driver, run_threads, folder=out_dir / "submitit",
                                 options=backend_options)
                elif n_workers == 1:
                    run_inline(jobs, runner, driver)
                else:
                    run_pool(jobs, runner, driver, n_workers)
        except KeyboardInterrupt:
            interrupted = True
            driver.interrupted()
        except OSError as exc:
            if is_disk_full(exc):
                exc.recorded = _record(driver)  # type: ignore[attr-defined]  # what the runs did, if there is room
            raise
        table = driver.write()
    result = SweepResult.from_table(table)
    table.attrs["failed"] = result.failed
    table.attrs["out_dir"] = str(out_dir)
    if interrupted:
        raise SweepInterrupted(
            f"sweep interrupted after {time.monotonic() - t0:.0f} s: {result.describe()}; "
            f"run the same command again ({rerun_hint(runs)}) ({out_dir})"
        )
    if jobs or result.failed:
        emit(f"{out_dir}: {result.describe()}")
    return table
