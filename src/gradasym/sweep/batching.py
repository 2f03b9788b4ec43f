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
               note: Callable[[str], None] | None = None) -> list[Task]:
    """The worker tasks of ``jobs``: batches of at most R runs of one batch key, and single
    runs for what cannot be batched (``note`` gets one line per reason). ``"off"``: every
    run its own task (run by run, as without batching)."""
    batch_runs = check_batch_runs(batch_runs)
    if batch_runs == "off":
        return list(jobs)
    groups: dict[Any, list[Job]] = {}
    alone: dict[str, list[str]] = {}
    order: list[Any] = []  # tasks in the order of their first run: a group key or a single Job
    for job in jobs:
        plugin = algos.of(job.config)
        reason = plugin.batch_unsupported(job.config) if plugin.batch_runner is not None \
            else f"{plugin.name} has no batched trainer"
        if reason is not None:
            alone.setdefault(reason, []).append(job.run_id)
            order.append(job)
            continue
        key = (plugin.name, plugin.batch_key(job.config))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(job)
    size = batch_runs if isinstance(batch_runs, int) else auto_batch_size(sum(map(len, groups.values())), workers)
    tasks: list[Task] = []
    for item in order:
        if isinstance(item, Job):
            tasks.append(item)
            continue
        group = groups[item]
        n_batches = math.ceil(len(group) / size)  # nearly equal batches of <= size runs, dealt out in turn
        tasks.extend(BatchJob(group[b::n_batches]) for b in range(n_batches))
    if note is not None:
        for reason, ids in alone.items():
            more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
            note(f"{len(ids)} run(s) trained one by one, not batched ({reason}): {', '.join(ids[:3])}{more}")
        n_batches = sum(isinstance(t, BatchJob) for t in tasks)
        if n_batches:
            sizes = sorted({len(t.jobs) for t in tasks if isinstance(t, BatchJob)})
            note(f"{sum(len(t.jobs) for t in tasks if isinstance(t, BatchJob))} runs in {n_batches} batch(es) "
                 f"of {'/'.join(map(str, sizes))} runs (--batch-runs {batch_runs})")
    return tasks


def largest_task(tasks: list[Task]) -> int:
    """The number of runs of the largest task (1 without batches)."""
    return max((len(t.jobs) for t in tasks if isinstance(t, BatchJob)), default=1)
