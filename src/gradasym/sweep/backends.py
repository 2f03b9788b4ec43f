"""Where the runs of a sweep execute: this process, a local process pool, Ray, or SLURM.

Every backend calls :func:`execute_run` for each run (in whatever process or
node runs it) and reports to the driver through three callbacks of a
:class:`Reporter`: ``started(run_id, where)``, ``progress(run_id, info)`` and
``done(run_id, result)``. Run folders are written by the runner itself (on the
worker); the driver only writes ``sweep.json`` and the summary table.

The result of :func:`execute_run` is a plain dict (picklable, JSON-friendly)::

    {"run_id": str, "status": "finished" | "failed" | "interrupted",
     "summary": dict | None, "error": str | None, "traceback": str | None}
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import socket
import threading
import time
import traceback
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.managers import SyncManager
from pathlib import Path
from queue import Empty
from typing import Any, Callable, Iterator, Protocol

from gradasym.algos.base import AlgoConfig
from gradasym.errors import describe
from gradasym.provenance import placed_on
from gradasym.runfolder import RUN_LOCK_FILE, FolderLock, is_disk_full, pid_alive

from .store import FAILED, FINISHED, INTERRUPTED

#: ``run_experiment``-compatible callable: ``runner(cfg, out_dir, resume=, progress=, show_progress=) -> summary``.
Runner = Callable[..., dict]

#: How often (seconds) a remote run sends per-episode progress to the driver at most.
PROGRESS_INTERVAL = 0.2


class Reporter(Protocol):
    """The driver's side of the event stream (see the module docstring)."""

    def started(self, run_id: str, where: str = "") -> None: ...
    def progress(self, run_id: str, info: dict[str, Any]) -> None: ...
    def done(self, run_id: str, result: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class Job:
    """One run to execute: id, resolved config (threads already set) and folder."""

    run_id: str
    config: AlgoConfig
    run_dir: str


#: Result status of a run that a worker dequeued after the sweep was stopped (not reported).
NOT_STARTED = "not started"


def run_result(run_id: str, status: str, summary: dict[str, Any] | None = None, error: str | None = None,
               trace: str | None = None, **extra: Any) -> dict[str, Any]:
    """The result of one run as every backend reports it (the dict of the module docstring;
    ``trace`` is its ``traceback``)."""
    return {"run_id": run_id, "status": status, "summary": summary, "error": error,
            "traceback": trace, **extra}


def failed_result(run_id: str, exc: BaseException, *, first_line: bool = False,
                  trace: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``failed`` result for a run that raised ``exc`` (``first_line``: keep the error one line)."""
    error = describe(exc)
    return run_result(run_id, FAILED, error=error.splitlines()[0] if first_line else error,
                      trace=trace, **extra)


def summary_result(run_id: str, summary: Any) -> dict[str, Any]:
    """The result of a run that ended with ``summary`` (its ``status``; ``finished`` if it has none)."""
    summary = dict(summary) if isinstance(summary, dict) else None
    status = str((summary or {}).get("status") or FINISHED)
    error = (summary or {}).get("error") if status != FINISHED else None
    return run_result(run_id, status, summary, error)


class RunInterrupted(KeyboardInterrupt):
    """Raised inside a run (from its progress callback) when the sweep is being stopped."""


# ------------------------------------------------------------------ one run
def _checked_progress(report: Callable[[str, str, dict[str, Any]], None] | None,
                      should_stop: Callable[[], bool] | None, what: str) -> Callable[[str, dict[str, Any]], None]:
    """``progress(run_id, info)`` for a runner: raises :class:`RunInterrupted` once
    ``should_stop()`` is true (at an episode boundary), else forwards the info to ``report``;
    neither a broken control channel nor a broken display stops the run."""

    def progress(run_id: str, info: dict[str, Any]) -> None:
        if should_stop is not None:
            try:
                stop = should_stop()
            except Exception:  # noqa: BLE001 - a broken control channel is not a stop
                stop = False
            if stop:
                raise RunInterrupted(f"sweep stopped during {what}")
        if report is not None:
            try:
                report("progress", run_id, dict(info))
            except Exception:  # noqa: BLE001 - progress display must never kill a run
                pass

    return progress


def execute_run(
    runner: Runner,
    cfg: AlgoConfig,
    run_dir: str | Path,
    run_id: str,
    report: Callable[[str, str, dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one config with ``resume=True`` and turn the outcome into a result dict.

    Never raises: an exception becomes ``status="failed"`` with its message and
    traceback (and ``"disk_full": True`` when it was a full disk); a ``KeyboardInterrupt``
    (Ctrl-C, or ``should_stop()`` turning true at an episode boundary) becomes
    ``status="interrupted"`` — the run folder keeps its last checkpoint, and the next
    sweep resumes it.
    """

    checked = _checked_progress(report, should_stop, run_id)

    def progress(info: dict[str, Any]) -> None:
        checked(run_id, info)

    try:
        summary = runner(cfg, run_dir, resume=True, progress=progress, show_progress=False)
    except KeyboardInterrupt:
        return run_result(run_id, INTERRUPTED)
    except BaseException as exc:  # noqa: BLE001 - a failed run must not stop the sweep
        result = failed_result(run_id, exc, trace=traceback.format_exc())
        if is_disk_full(exc):
            result["disk_full"] = True  # the driver stops the sweep (see run_sweep)
        return result
    return summary_result(run_id, summary)


class _Throttle:
    """Forward each run's progress at most every ``interval`` seconds (other kinds immediately)."""

    def __init__(self, send: Callable[[tuple], None], interval: float = PROGRESS_INTERVAL) -> None:
        self.send, self.interval = send, interval
        self.last: dict[str, float] = {}

    def __call__(self, kind: str, run_id: str, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        if kind == "progress":
            if now - self.last.get(run_id, 0.0) < self.interval:
                return
            self.last[run_id] = now
        self.send((kind, run_id, payload))


def _dispatch(reporter: Reporter, msg: tuple) -> None:
    kind, run_id, payload = msg
    if kind == "start":
        reporter.started(run_id, payload.get("where", ""))
    elif kind == "progress":
        reporter.progress(run_id, payload)
    elif kind == "message":  # a log line from a task (e.g. a lock taken over)
        reporter.message(str(payload.get("text", "")))


# ------------------------------------------------------------------ in-process
def run_inline(jobs: list[Job], runner: Runner, reporter: Reporter) -> None:
    """Run the jobs one after the other in this process (``workers=1``).

    Ctrl-C interrupts the current run (its folder keeps its last checkpoint) and raises
    ``KeyboardInterrupt`` after it has been reported.
    """
    for job in jobs:
        reporter.started(job.run_id, "this process")
        result = execute_run(runner, job.config, job.run_dir, job.run_id,
                             report=lambda kind, rid, info: _dispatch(reporter, (kind, rid, info)))
        reporter.done(job.run_id, result)
        if result["status"] == INTERRUPTED:
            raise KeyboardInterrupt


# ------------------------------------------------------------------ process pool
def _ignore_sigint() -> None:
    """Ctrl-C is handled by the driver, which stops runs cleanly (not by each worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child_init(parent: int) -> None:
    """Initializer of pool workers and of the manager process.

    Ignores Ctrl-C (see :func:`_ignore_sigint`) and exits when the driver ``parent``
    dies (e.g. ``kill -9``), so no orphan keeps writing into the sweep folder; files
    are written atomically, so exiting at any point leaves consistent run folders.
    """
    _ignore_sigint()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="gradasym-parent-watch", daemon=True).start()


def _pool_task(runner: Runner, job: Job, queue: Any, stop: Any) -> dict[str, Any]:
    """Body of one run in a pool worker; progress goes to the driver through ``queue``."""
    parent = os.getppid()

    def send(msg: tuple) -> None:
        queue.put(msg)

    def should_stop() -> bool:
        # Stop when the driver asks, or when it died (we got re-parented).
        return os.getppid() != parent or stop.is_set()

    if should_stop():  # dequeued after Ctrl-C: leave it pending
        return run_result(job.run_id, NOT_STARTED)
    try:
        send(("start", job.run_id, {"where": f"pid {os.getpid()}"}))
    except Exception:  # noqa: BLE001
        pass
    return execute_run(runner, job.config, job.run_dir, job.run_id, report=_Throttle(send), should_stop=should_stop)


def _drain(queue: Any, reporter: Reporter) -> None:
    while True:
        try:
            msg = queue.get_nowait()
        except (Empty, EOFError, OSError, BrokenPipeError):
            return
        try:
            _dispatch(reporter, msg)
        except Exception:  # noqa: BLE001
            pass


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    procs = getattr(executor, "_processes", None) or {}
    for p in list(procs.values()):
        try:
            p.terminate()
        except Exception:  # noqa: BLE001
            pass


def run_pool(
    jobs: list[Job],
    runner: Runner,
    reporter: Reporter,
    workers: int,
    start_method: str = "spawn",
    interrupt_grace: float = 120.0,
) -> None:
    """Run the jobs in ``workers`` worker processes (``spawn`` context by default).

    ``runner`` must be picklable (a module-level function). Per-episode progress
    comes back through a ``multiprocessing.Manager`` queue. If a worker process dies
    (e.g. killed for memory), the pool breaks and terminates its other workers: the
    run of the dead worker (told by the pid of its ``start`` message and the exit
    codes: the pool's own terminations exit with SIGTERM) is recorded as failed, and
    every other run (started or not) is retried in a fresh pool, resuming from its
    checkpoint. When the dead worker cannot be told apart (it too died of SIGTERM),
    its candidates are retried, and a run caught in :data:`MAX_BROKEN` broken pools fails. Ctrl-C asks every running run
    to stop at its next episode (checkpoints stay), waits up to ``interrupt_grace``
    seconds (a second Ctrl-C kills the workers), then raises ``KeyboardInterrupt``.
    """
    ctx = mp.get_context(start_method)
    manager = SyncManager(ctx=ctx)
    manager.start(_child_init, (os.getpid(),))
    try:
        queue, stop = manager.Queue(), manager.Event()
        remaining = list(jobs)
        broken: dict[str, int] = {}
        rounds = 0
        while remaining:
            rounds += 1
            if rounds > len(jobs) + 1:
                for job in remaining:
                    reporter.done(job.run_id, run_result(job.run_id, FAILED, error="worker processes keep dying"))
                return
            remaining = _pool_round(remaining, runner, reporter, workers, ctx, queue, stop, interrupt_grace,
                                    broken)
    finally:
        try:
            manager.shutdown()
        except Exception:  # noqa: BLE001
            pass


#: A run whose pool broke this many times (its worker could not be told apart) is failed.
MAX_BROKEN = 2


def _dead_workers(procs: dict[int, Any]) -> dict[int, int]:
    """``{pid: exit code}`` of the workers of a broken pool that died on their own.

    The pool terminates its remaining workers (SIGTERM) once one has died, so a
    worker whose exit code is anything but ``-SIGTERM`` is the one that broke it.
    """
    dead = {}
    deadline = time.monotonic() + 10
    for pid, proc in list(procs.items()):
        try:
            # The pool's own thread reaps the processes too: poll until one of us has.
            while proc.exitcode is None and time.monotonic() < deadline:
                proc.join(timeout=0.05)
            code = proc.exitcode
        except Exception:  # noqa: BLE001
            continue
        if code is not None and code != -signal.SIGTERM:
            dead[pid] = code
    return dead


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _pool_round(jobs: list[Job], runner: Runner, reporter: Reporter, workers: int, ctx: Any,
                queue: Any, stop: Any, interrupt_grace: float, broken: dict[str, int] | None = None) -> list[Job]:
    """One process pool over ``jobs``; returns the jobs to retry after a broken pool.

    ``broken`` counts, per run id, the broken pools a run was caught in (across rounds).
    """
    executor = ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))), mp_context=ctx,
                                   initializer=_child_init, initargs=(os.getpid(),))
    futures: dict[Future, Job] = {}
    started: set[str] = set()
    pids: dict[str, int] = {}  # run id -> pid of its worker (from the 'start' message)
    procs: dict[int, Any] = {}  # pid -> worker process of this pool
    dead: dict[int, int] | None = None  # decided once, at the first broken future
    broken = {} if broken is None else broken
    retry: list[Job] = []

    class _Track:
        """Reporter proxy that remembers which runs have started in this pool, and where."""

        def started(self, run_id: str, where: str = "") -> None:
            started.add(run_id)
            match = re.search(r"pid (\d+)", where)
            if match:
                pids[run_id] = int(match.group(1))
            reporter.started(run_id, where)

        def progress(self, run_id: str, info: dict[str, Any]) -> None:
            reporter.progress(run_id, info)

        def message(self, text: str) -> None:
            reporter.message(text)

    track = _Track()

    def fail(job: Job, why: str) -> None:
        reporter.done(job.run_id, run_result(job.run_id, FAILED, error=why))

    def on_broken(job: Job) -> None:
        """A future of a broken pool: fail the dead worker's run, retry the others."""
        nonlocal dead
        if dead is None:
            procs.update(getattr(executor, "_processes", None) or {})
            dead = _dead_workers(procs)
        key = job.run_id
        pid = pids.get(key)
        if key not in started:
            retry.append(job)  # never started: its worker was not the one that died
        elif pid in dead:
            fail(job, f"its worker process (pid {pid}) died ({_exit_text(dead[pid])}; killed? out of memory?)")
        elif dead:
            retry.append(job)  # terminated by the pool because another worker died
        else:  # the dead worker cannot be told apart: retry, a bounded number of times
            broken[key] = broken.get(key, 0) + 1
            if broken[key] >= MAX_BROKEN:
                fail(job, f"its worker process{f' (pid {pid})' if pid else ''} died "
                          f"{broken[key]} times (killed? out of memory?)")
            else:
                retry.append(job)

    def collect(done: set[Future]) -> None:
        _drain(queue, track)  # start messages before results
        for fut in done:
            job = futures.pop(fut)
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is None:
                result = fut.result()
                if result["status"] != NOT_STARTED:
                    reporter.done(job.run_id, result)
            elif isinstance(exc, BrokenProcessPool):
                on_broken(job)
            else:
                fail(job, describe(exc))

    try:
        for job in jobs:
            futures[executor.submit(_pool_task, runner, job, queue, stop)] = job
        # CPython wakes the pool's manager thread *before* spawning the worker of each
        # submit, so it may not watch the last workers until its next wake-up: a worker
        # killed meanwhile would go unnoticed until another run ends. Wake it once more.
        wakeup = getattr(executor, "_executor_manager_thread_wakeup", None)
        if wakeup is not None:
            wakeup.wakeup()
        procs.update(getattr(executor, "_processes", None) or {})
        while futures:
            procs.update(getattr(executor, "_processes", None) or {})
            done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(queue, track)
            collect(done)
    except BaseException as exc:
        # Ctrl-C, or an error in the driver itself (e.g. the summary cannot be written):
        # stop the runs at their next episode so no worker outlives the sweep.
        interrupt = isinstance(exc, KeyboardInterrupt)
        # Tasks not started yet see ``stop`` and return at once. They are not cancelled: on
        # CPython 3.11 a pool that breaks meanwhile (its workers killed by the same SIGTERM)
        # fails on cancelled futures with a traceback of its own thread (InvalidStateError).
        try:
            stop.set()
        except Exception:  # noqa: BLE001
            pass
        if interrupt:
            reporter.message("interrupted: stopping the running runs at their next episode "
                             "(their checkpoints stay; press Ctrl-C again to kill them now)")
        try:
            deadline = time.monotonic() + (interrupt_grace if interrupt else 30.0)
            while futures and time.monotonic() < deadline:
                done, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
                if interrupt:
                    collect(done)
                else:
                    for fut in done:
                        futures.pop(fut)
        except BaseException:  # noqa: BLE001 - a second Ctrl-C (or error): kill now
            pass
        _kill_workers(executor)
        executor.shutdown(wait=False)
        if interrupt:
            raise KeyboardInterrupt from None
        raise
    executor.shutdown(wait=True)
    return retry


# ------------------------------------------------------------------ Ray
#: Default ``max_retries`` of the Ray backend (``--backend-option max_retries=N``): how many times
#: a task whose Ray worker or node was lost is started again before its runs are failed.
RAY_MAX_RETRIES = 3
#: Seconds a retried task waits for the lock its lost worker left in a run folder to be taken
#: over (Ray reports a lost node dead only after missed heartbeats) before it starts anyway.
RAY_LOCK_WAIT = 60.0


def import_ray() -> Any:
    """Import ray lazily, with an install hint when it is missing."""
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Ray backend needs the 'ray' package: pip install 'gradasym[ray]' (or pip install ray)"
        ) from exc
    return ray


def ray_lost_worker(exc: BaseException) -> bool:
    """The Ray task failed because its worker process or its node was lost (node died, worker
    crashed, result lost with its node), not because its run raised (``RayTaskError``: the run's
    own error) or it was cancelled: running it again may finish it."""
    from ray import exceptions as rex  # noqa: PLC0415

    if isinstance(exc, (rex.RayTaskError, rex.TaskCancelledError)):
        return False
    return isinstance(exc, (rex.NodeDiedError, rex.WorkerCrashedError, rex.ObjectLostError))


#: Name prefix of the progress actor of a Ray sweep (one per sweep, in the driver's namespace).
PROGRESS_ACTOR = "gradasym-progress"


class _ProgressBox:
    """The Ray actor that carries the tasks' events to the driver: tasks ``put`` (without waiting),
    the driver ``take``s them all. Created restartable: events held when it dies are lost, the
    stream goes on (the view is only a view; results come back with the tasks)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def put(self, event: tuple) -> None:
        self.events.append(event)

    def take(self) -> list[tuple]:
        events, self.events = self.events, []
        return events

    def pid(self) -> int:
        """The process this instance runs in (a restarted actor has another one; tests)."""
        return os.getpid()


def _progress_box(ray: Any) -> Any:
    """A :class:`_ProgressBox` actor on the driver's node (a node lost under the sweep does not
    take the live view with it); restarted by Ray (elsewhere if need be) whenever it dies."""
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1,
                               "name": f"{PROGRESS_ACTOR}-{uuid.uuid4().hex[:12]}"}
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=True)
    except Exception:  # noqa: BLE001 - no node of its own (Ray Client): Ray places it
        pass
    return ray.remote(_ProgressBox).options(**options).remote()


def _ray_node(ray: Any) -> dict[str, Any]:
    """The Ray node this task runs on: ``{"id", "host", "ip"}``."""
    node = {"id": "unknown", "host": socket.gethostname(), "ip": "unknown"}
    try:
        node["id"] = str(ray.get_runtime_context().get_node_id())
        node["ip"] = str(ray.util.get_node_ip_address())
    except Exception:  # noqa: BLE001 - the log line and summary say "unknown"
        pass
    return node


def ray_where(node: dict[str, Any], pid: int | None = None) -> str:
    """How the log names a Ray node: ``Ray node 84dbee2a708d (host vm)`` (+ ``pid N``)."""
    text = f"Ray node {str(node.get('id'))[:12]} (host {node.get('host')})"
    return f"{text} pid {pid}" if pid is not None else text


def _pid_gone(pid: int) -> bool:
    """No process ``pid`` exists here (run on the node that holds a lock)."""
    return not pid_alive(pid)


def _gone_on_its_node(ray: Any) -> Callable[[dict[str, Any]], str | None]:
    """``gone(owner)`` for :meth:`FolderLock.take_over_stale`: for a lock of a Ray worker on another
    node that is alive, ask that node (a CPU-less task pinned to it) whether the pid still exists:
    the locks of workers killed with their driver are taken over from any host."""

    def gone(owner: dict[str, Any]) -> str | None:
        node, pid = owner.get("ray_node"), owner.get("pid")
        if not isinstance(node, str) or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

            if not any(n.get("NodeID") == node and n.get("Alive") for n in ray.nodes()):
                return None  # dead (FolderLock's own check) or unknown (another cluster): not asked
            probe = ray.remote(_pid_gone).options(
                num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False))
            dead = bool(ray.get(probe.remote(pid), timeout=60))
        except Exception:  # noqa: BLE001 - the node cannot be asked: keep the lock
            return None
        return f"its process no longer exists on its Ray node {node}" if dead else None

    return gone


def _take_over_locks(job: Job, wait: float, gone: Callable[[dict[str, Any]], str | None] | None = None
                     ) -> Iterator[str]:
    """Take over the run folders' locks left by lost workers (:meth:`FolderLock.take_over_stale`:
    a process gone on this host, a Ray node reported dead, or ``gone(owner)``); yield one log line
    per lock taken. ``wait`` > 0 (a retry): wait up to that long for a lock still held to go or be
    taken over."""
    deadline = time.monotonic() + wait
    for j in [job]:
        lock = FolderLock(j.run_dir, RUN_LOCK_FILE)
        while True:
            line = lock.take_over_stale(gone)
            if line:
                yield f"{j.run_id}: {line}"
                break
            owner, _ = lock.owner()
            if owner is None or time.monotonic() >= deadline:
                break  # free, or held: the runner says by whom
            time.sleep(1.0)


def _ray_task(runner: Runner, job: Job, box: Any, attempt: int = 0,
              lock_wait: float = RAY_LOCK_WAIT) -> dict[str, Any]:
    """Body of one run as a Ray task: events go to the driver through the
    :class:`_ProgressBox` actor ``box``; the run's ``summary.json`` names the node (provenance
    ``ray_node``). ``attempt`` > 0: a retry after a lost worker (waits for its lock)."""
    ray = import_ray()
    node = _ray_node(ray)
    where = ray_where(node, os.getpid())
    last: list[Any] = []  # the latest event sent (the actor runs one caller's calls in order)

    def send(msg: tuple) -> None:
        last[:] = [box.put.remote(msg)]  # no wait: a slow or restarting driver channel never stalls a run

    def delivered(timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the events sent so far are in the actor."""
        try:
            ray.wait(last, timeout=timeout)
        except Exception:  # noqa: BLE001 - events are only for the view
            pass

    try:
        send(("start", job.run_id, {"where": where, "node": node}))
        delivered(5.0)  # the driver knows the node before the run can be lost with it
        for line in _take_over_locks(job, lock_wait if attempt else 0.0, _gone_on_its_node(ray)):
            send(("message", job.run_id, {"text": line}))
    except Exception:  # noqa: BLE001
        pass
    with placed_on(node):
        result = execute_run(runner, job.config, job.run_dir, job.run_id, report=_Throttle(send))
    delivered(10.0)  # the events reach the driver before the result
    return {**result, "where": where}


def run_ray(
    jobs: list[Job],
    runner: Runner,
    reporter: Reporter,
    threads: int,
    address: str | None = None,
    max_in_flight: int | None = None,
    init_kwargs: dict[str, Any] | None = None,
    max_retries: int = RAY_MAX_RETRIES,
    before_retry: Callable[[Job], str] | None = None,
) -> None:
    """Run the jobs as Ray tasks (``num_cpus=threads`` each) on a local or remote cluster.

    If Ray is not initialised yet, ``ray.init(address=address, **init_kwargs)`` is
    called (``address=None`` starts a local instance; ``"auto"`` joins the cluster this
    node belongs to) and shut down at the end. Run folders are written by the tasks,
    so on several nodes the sweep folder must be on a filesystem shared by all of
    them, at the same path. ``max_in_flight`` caps the number of submitted tasks
    (None = all at once; Ray queues them by free CPUs).

    A task whose worker or node is lost (:func:`ray_lost_worker`: a node died, a worker
    crashed) is submitted again, up to ``max_retries`` times, after ``before_retry(task)``
    (returns how the runs go on, for the log line: the runner resumes them from their
    checkpoints); a run that raises is failed as by every backend. Events (start, progress,
    log lines) come back through a restartable actor on the driver's node; every run's start
    line names its Ray node and host.
    """
    ray = import_ray()

    owns = not ray.is_initialized()
    if owns:
        ray.init(address=address, **(init_kwargs or {}))
    box = _progress_box(ray)
    remote = ray.remote(_ray_task)
    todo = list(jobs)
    in_flight: dict[Any, Job] = {}
    cap = max_in_flight if max_in_flight and max_in_flight > 0 else len(todo)
    retries: dict[str, int] = {}  # task name -> times it was submitted again
    nodes: dict[str, dict[str, Any]] = {}  # run id -> the node of its latest start
    ended: set[str] = set()  # runs whose result arrived (late events of theirs are dropped)

    def submit() -> None:
        while todo and len(in_flight) < cap:
            job = todo.pop(0)
            ref = remote.options(num_cpus=threads, name=f"gradasym:{job.run_id}", max_retries=0).remote(
                runner, job, box, retries.get(job.run_id, 0))
            in_flight[ref] = job

    def dispatch(msg: tuple) -> None:
        kind, run_id, payload = msg
        if run_id in ended and kind != "message":
            return  # an event that arrived after the run's result
        if kind == "start":
            nodes[run_id] = dict(payload.get("node") or {})
        try:
            _dispatch(reporter, msg)
        except Exception:  # noqa: BLE001
            pass

    taking: list[Any] = []  # the one outstanding ``take`` call (kept while the actor restarts)

    def drain(wait: float = 0.1) -> None:
        """Dispatch the events the actor holds; waits at most ``wait`` seconds (a restarting actor
        answers the same call later: nothing piles up and the driver loop never stalls)."""
        if not taking:
            taking.append(box.take.remote())
        ready, _ = ray.wait(taking, timeout=wait)
        if not ready:
            return
        try:
            msgs = ray.get(taking.pop())
        except Exception:  # noqa: BLE001 - the call was lost with the actor: the next one asks again
            msgs = []
        for msg in msgs:
            dispatch(msg)

    def retry(job: Job, exc: BaseException) -> bool:
        """Submit ``job`` again after its worker was lost; False if it could not be prepared."""
        n = retries[job.run_id] = retries.get(job.run_id, 0) + 1
        node = nodes.get(job.run_id)
        lost = f"its worker on {ray_where(node)}" if node else "its Ray worker"
        try:
            how = before_retry(job) if before_retry is not None else ""
        except Exception as err:  # noqa: BLE001 - e.g. its folder cannot be moved aside: the run fails
            reporter.message(f"{job.run_id}: lost {lost} ({type(exc).__name__}); not retried: {describe(err)}")
            return False
        reporter.message(f"{job.run_id}: lost {lost} ({type(exc).__name__}); submitting it again "
                         f"(retry {n} of {max_retries}){f', {how}' if how else ''}")
        todo.insert(0, job)
        return True

    def collect(ready: list[Any]) -> None:
        if ready:  # the events the tasks sent before their results first, if the actor answers:
            drain(wait=2.0)  # answers the call outstanding (maybe sent before the results were ready)
            if not taking:
                drain(wait=2.0)  # and a call sent after them
        for ref in ready:
            job = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - task/worker crashed, cancelled, node lost
                if ray_lost_worker(exc) and retries.get(job.run_id, 0) < max_retries and retry(job, exc):
                    continue
                result = failed_result(job.run_id, exc, first_line=True, trace=str(exc))
            rid = job.run_id
            if rid not in ended and rid not in nodes and result.get("where"):
                dispatch(("start", rid, {"where": result["where"]}))  # its start event came late
            ended.add(rid)
            reporter.done(rid, result)

    try:
        submit()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.25)
            drain()
            collect(ready)
            submit()
    except BaseException as exc:
        interrupt = isinstance(exc, KeyboardInterrupt)
        if interrupt:
            reporter.message("interrupted: cancelling the Ray tasks (run folders keep their checkpoints)")
        for ref in list(in_flight):
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001
                pass
        if interrupt and in_flight:
            try:
                ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=30)
                for ref in ready:
                    job = in_flight.pop(ref)
                    reporter.done(job.run_id, run_result(job.run_id, INTERRUPTED))
            except BaseException:  # noqa: BLE001
                pass
        raise
    finally:
        try:
            ray.kill(box)
        except Exception:  # noqa: BLE001
            pass
        if owns:
            ray.shutdown()


# ------------------------------------------------------------------ SLURM (submitit)
def _submitit_task(runner: Runner, job: Job) -> dict[str, Any]:
    """Body of one run as a submitit job (SLURM or submitit's local executor)."""
    return execute_run(runner, job.config, job.run_dir, job.run_id)


def run_submitit(
    jobs: list[Job],
    runner: Runner,
    reporter: Reporter,
    threads: int,
    folder: str | Path,
    options: dict[str, Any] | None = None,
    poll: float = 5.0,
) -> None:
    """Run the jobs as one submitit job array (SLURM when available).

    ``options`` go to ``AutoExecutor.update_parameters`` (e.g. ``timeout_min``,
    ``slurm_partition``, ``mem_gb``, ``slurm_array_parallelism``); the key ``cluster``
    (``"slurm"``, ``"local"``, ``"debug"``) goes to the executor. Each job gets
    ``cpus_per_task=threads``. Logs land in ``folder``. Progress is reported per job
    (no per-episode view: look at the run folders). Ctrl-C cancels the jobs.
    """
    try:
        import submitit  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the submitit backend needs 'submitit': pip install 'gradasym[slurm]'") from exc
    opts = dict(options or {})
    cluster = opts.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = {"cpus_per_task": threads, "timeout_min": 24 * 60}
    params.update(opts)
    if executor.cluster in ("local", "debug"):
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    with executor.batch():
        pending = [(executor.submit(_submitit_task, runner, job), job) for job in jobs]
    for sub, job in pending:
        reporter.started(job.run_id, f"job {getattr(sub, 'job_id', '?')}")
    try:
        while pending:
            still = []
            for sub, job in pending:
                if executor.cluster == "debug" or sub.done():
                    try:
                        result = sub.result()
                    except Exception as exc:  # noqa: BLE001
                        result = failed_result(job.run_id, exc, first_line=True, trace=str(exc))
                    reporter.done(job.run_id, result)
                else:
                    still.append((sub, job))
            pending = still
            if pending:
                time.sleep(poll)
    except KeyboardInterrupt:
        reporter.message("interrupted: cancelling the submitit jobs (run folders keep their checkpoints)")
        for sub, _ in pending:
            try:
                sub.cancel(check=False)
            except Exception:  # noqa: BLE001
                pass
        raise
