"""A full disk for checkpoint (or table) writes, without mounting one: :class:`FullDisk` stands in for ``open``
in :mod:`gradasym.io` (``monkeypatch.setattr(gradasym.io, "open", FullDisk(n), raising=False)``).

On a real full disk torch's own file writer failed with ``RuntimeError: [enforce fail at
inline_container.cc] unexpected pos ...``; ``gradasym.io.torch_save`` serialises in memory and
writes the bytes with a plain write, which fails as this one does (``write_table`` likewise for
Parquet, whose pyarrow writer may report a full disk without an errno).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class FullDisk:
    """From the ``full_from``-th file opened for writing bytes ("wb") whose name contains ``only``
    (default: checkpoints; ``"parquet"``: the tables) on, a write stores ``room`` bytes and then
    raises ``OSError(ENOSPC)`` naming no file, as a plain write on a full disk does; ``opened``
    counts those files."""

    def __init__(self, full_from: int, room: int = 1000, only: str = "checkpoint") -> None:
        self.full_from, self.room, self.only, self.opened = full_from, room, only, 0

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        fh = open(file, mode, *args, **kw)  # noqa: SIM115 - returned to the caller's own `with`
        if mode != "wb" or self.only not in Path(file).name:
            return fh
        self.opened += 1
        if self.opened >= self.full_from:
            real_write, room = fh.write, self.room

            def write(data: Any) -> int:
                real_write(bytes(memoryview(data)[:room]))
                raise OSError(errno.ENOSPC, "No space left on device")

            fh.write = write
        return fh
