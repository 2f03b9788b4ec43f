"""``--batch-runs``: which runs of a sweep are trained together as one computation.

The pending runs are grouped by their algorithm's :meth:`~gradasym.algos.base.Algorithm.batch_key`
(runs of one key have the same tensor shapes and code path) and each group is dealt out
into batches of at most R runs of nearly equal size, run i of the group into batch
``i mod batches``; each batch is one worker task
(:class:`~gradasym.sweep.backends.BatchJob`). Runs the algorithm cannot batch
(:meth:`~gradasym.algos.base.Algorithm.batch_unsupported`) stay single-run tasks, said in
one log line per reason.

``auto`` picks R so that the runs are spread evenly over the workers (one batch per worker),
with at most :data:`AUTO_MAX_RUNS` runs per batch (more batches, still a multiple of the
workers, beyond that)::

    batches = workers * ceil(n / (workers * AUTO_MAX_RUNS));   R = ceil(n / batches)

e.g. 16 pending runs on 2 workers: 2 batches of 8; 160 runs on 2 workers: 4 batches of 40.
Dealing the runs out in turn, rather than cutting the group into consecutive blocks, mixes
the grid's configurations in every batch: in the paper grid (actor LR the outer axis) the
early-stopping runs at a high actor LR would otherwise fill one batch, which ends after a few
hundred episodes while the other batch runs its full budget on one core.
With batching on, every batchable run is trained by the batched trainer, even a batch of
one, so a run's numbers do not depend on how the runs were grouped (a restarted sweep may
group its unfinished runs differently).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from gradasym import algos
from gradasym.algos.base import ConfigError
from gradasym.runfolder import BATCHED, SINGLE

from .backends import BatchJob, Job, Task

#: The largest batch ``auto`` forms (the largest size measured in benchmarks/RESULTS.md).
AUTO_MAX_RUNS = 64

BatchRuns = int | str  # a number of runs >= 1, "auto" or "off"


def check_batch_runs(value: Any) -> BatchRuns:
    """``"auto"``, ``"off"`` or a whole number >= 1 (also as text); anything else is a ConfigError."""
    text = str(value).strip().lower() if value is not None else "off"
    if text in ("auto", "off"):
        return text
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1 or isinstance(value, (bool, float)):
        raise ConfigError(f"--batch-runs must be 'auto', 'off' or a number of runs >= 1, got {value!r}")
    return number


def auto_batch_size(n_runs: int, workers: int) -> int:
    """R for ``--batch-runs auto``: ``n_runs`` spread evenly over ``workers`` batches, at most
    :data:`AUTO_MAX_RUNS` each (see the module docstring)."""
    workers = max(1, workers)
    if n_runs <= 0:
        return 1
    batches = workers * math.ceil(n_runs / (workers * AUTO_MAX_RUNS))
    return math.ceil(n_runs / batches)


def plan_tasks(jobs: list[Job], batch_runs: BatchRuns, workers: int,
               note: Callable[[str], None] | None = None, started: dict[str, str] | None = None,
               cap: int | None = None) -> list[Task]:
    """The worker tasks of ``jobs``: batches of at most R runs of one batch key, and single
    runs for what cannot be batched (``note`` gets one line per reason). ``"off"``: every
    run its own task (run by run, as without batching).

    ``started`` maps the run ids of started runs to the trainer they were trained by
    (:meth:`~gradasym.algos.base.Algorithm.started_trainer`): a run started batched goes into a
    batch and a run started alone runs alone, whatever ``batch_runs`` says (the two trainers round
    differently); ``note`` says in one line how many runs keep a trainer the flag does not ask for.
    Runs of a mixed or unknown trainer, and runs not started, follow ``batch_runs``. Under
    ``"off"`` the runs kept batched form ``auto``-sized batches. ``cap``: at most this many runs
    per batch (the memory check of :func:`~gradasym.sweep.core.run_sweep`).
    """
    batch_runs = check_batch_runs(batch_runs)
    started = started or {}
    flag_on = batch_runs != "off"
    kept: list[str] = []  # runs whose recorded trainer the flag does not ask for
    unknown = [rid for rid, t in started.items() if t not in (SINGLE, BATCHED)]
    groups: dict[Any, list[Job]] = {}
    alone: dict[str, list[str]] = {}
    order: list[Any] = []  # tasks in the order of their first run: a group key or a single Job
    lost: list[str] = []  # started batched, but the batched trainer does not cover them now
    for job in jobs:
        trainer = started.get(job.run_id)
        batched = trainer == BATCHED if trainer in (SINGLE, BATCHED) else flag_on
        reason = _unsupported(job) if batched or flag_on else None
        if not batched:
            if reason is None and flag_on:
                kept.append(job.run_id)
            order.append(job)
            continue
        if reason is not None:
            if trainer == BATCHED:
                lost.append(job.run_id)
            if flag_on:
                alone.setdefault(reason, []).append(job.run_id)
            order.append(job)
            continue
        if not flag_on:
            kept.append(job.run_id)
        plugin = algos.of(job.config)
        key = (plugin.name, plugin.batch_key(job.config))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(job)
    n_batched = sum(map(len, groups.values()))
    size = batch_runs if isinstance(batch_runs, int) else auto_batch_size(n_batched, workers)
    size = min(size, cap) if cap is not None else size
    tasks: list[Task] = []
    for item in order:
        if isinstance(item, Job):
            tasks.append(item)
            continue
        group = groups[item]
        n_batches = math.ceil(len(group) / size)  # nearly equal batches of <= size runs, dealt out in turn
        tasks.extend(BatchJob(group[b::n_batches]) for b in range(n_batches))
    if note is not None:
        if kept:
            which = "batched trainer (in batches)" if not flag_on else "single-run trainer (one by one)"
            note(f"--batch-runs {batch_runs}: {len(kept)} started run(s) keep the {which} they started with: "
                 f"{some_ids(kept)}")
        if unknown:
            note(f"{len(unknown)} started run(s) do not record one trainer (made before gradasym recorded it, "
                 f"or continued by the other trainer): they follow --batch-runs {batch_runs}: {some_ids(unknown)}")
        if lost:
            note(f"{len(lost)} run(s) started batched go on with the single-run trainer (the batched trainer "
                 f"does not cover their configuration now; recorded as mixed): {some_ids(lost)}")
        for reason, ids in alone.items():
            note(f"{len(ids)} run(s) trained one by one, not batched ({reason}): {some_ids(ids)}")
        n_batches = sum(isinstance(t, BatchJob) for t in tasks)
        if n_batches:
            sizes = sorted({len(t.jobs) for t in tasks if isinstance(t, BatchJob)})
            note(f"{n_batched} runs in {n_batches} batch(es) of {'/'.join(map(str, sizes))} runs "
                 f"(--batch-runs {batch_runs})")
    return tasks


def _unsupported(job: Job) -> str | None:
    """Why the batched trainer cannot train ``job`` (None: it can)."""
    plugin = algos.of(job.config)
    if plugin.batch_runner is None:
        return f"{plugin.name} has no batched trainer"
    return plugin.batch_unsupported(job.config)


def some_ids(ids: list[str]) -> str:
    """The first three ids, and how many more."""
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return ", ".join(ids[:3]) + more


def largest_task(tasks: list[Task]) -> int:
    """The number of runs of the largest task (1 without batches)."""
    return max((len(t.jobs) for t in tasks if isinstance(t, BatchJob)), default=1)
