"""Process-wide settings of a training process (speed, and the thread count's rounding).

* ``torch`` intra-op threads (``run.threads``, default 1: with more, a run slows down
  many times as soon as another process competes for its cores; and the thread count
  changes float32 rounding, so 1 is also what the committed results were computed
  with; benchmarks/RESULTS.md, "Threads").
* glibc's ``malloc`` keeps freed memory for reuse instead of handing it back to the
  operating system. An update allocates and frees tensors of a few MB (rows x 512
  first-layer activations); by default glibc returns such blocks to the kernel
  after every update and the next update page-faults them in again, which cost
  10-15 % of an episode in the simultaneous mode (benchmarks/RESULTS.md). The price
  is that the process keeps its peak heap size until it exits.
* ``SIGTERM`` (``kill``, a scheduler's stop or time limit) takes the Ctrl-C path
  (:func:`sigterm_interrupts`): the runs stop, the sweep summary is written and the
  folder's lock released, instead of leaving runs marked ``running``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

import torch

_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit systems
_TRIM_THRESHOLD = 2**31 - 1  # never trim the heap top


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks (up to 32 MB) instead of returning them to
    the kernel. Returns False (and changes nothing) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_threads(threads: int) -> None:
    """Refuse (:class:`~gradasym.config.ConfigError`, one line) more torch threads than the cores this
    process may use: they only compete for the same cores, and very large counts crash torch. Not
    capped silently: the thread count changes float32 rounding (``run.threads``)."""
    cores = usable_cores()
    if threads > cores:
        from gradasym.config import ConfigError  # noqa: PLC0415

        raise ConfigError(f"run.threads = {threads} is more than the {cores} CPU core(s) this process may use; "
                          f"use at most {cores} (0 = torch's default, one per core)")


def configure_process(threads: int = 0) -> None:
    """The settings :func:`gradasym.algos.ccm_madrl.runner.run_experiment` applies before training:
    ``threads`` torch threads (0 = leave torch's default; more than :func:`usable_cores` is refused,
    :func:`check_threads`) and :func:`keep_freed_memory`."""
    check_threads(threads)
    if threads > 0:
        torch.set_num_threads(threads)
    keep_freed_memory()


class Terminated:
    """Whether :func:`sigterm_interrupts` turned a SIGTERM into ``KeyboardInterrupt`` (``received``)."""

    received: bool = False


@contextmanager
def sigterm_interrupts() -> Iterator[type[Terminated]]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does.

    So ``kill PID`` (or a batch scheduler's stop) ends a run or a sweep the way Ctrl-C does:
    a run keeps its last checkpoint, a sweep asks its workers to stop, writes its summary
    (the runs in flight ``interrupted``, not ``running``) and releases ``.sweep.lock``. Every
    further SIGTERM raises again (a sweep waiting for its workers then kills them). Outside
    the main thread (where Python cannot install handlers) it changes nothing. Yields
    :class:`Terminated`, whose ``received`` says whether a SIGTERM came.
    """
    Terminated.received = False
    if threading.current_thread() is not threading.main_thread():
        yield Terminated
        return

    def interrupt(signum: int, frame: object) -> None:
        Terminated.received = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield Terminated
    finally:
        signal.signal(signal.SIGTERM, previous)
