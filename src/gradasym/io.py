"""Atomic file writes: a crash never leaves a half-written result behind.

Every result file is written to a temporary file in the same folder and then
moved over the target with ``os.replace`` (atomic on POSIX), so readers see either
the old complete file or the new complete file. The temporary files are named
``.NAME.<random>.tmp``; one left by a killed writer is removed by
:func:`remove_temp_files` when the folder is next opened (``gradasym.runfolder``).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd


#: Suffix of :func:`atomic_path`'s temporary files (``.NAME.<random>.tmp``).
TEMP_SUFFIX = ".tmp"
#: errno values meaning "the disk (or the quota) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _file_mode() -> int:
    """The mode a plainly created file gets under this process's umask (e.g. 0o644 under 022)."""
    mask = os.umask(0)  # the only way to read the umask; restored at once (at import, before any thread)
    os.umask(mask)
    return 0o666 & ~mask


#: Results are as readable as any file the user creates (``mkstemp`` alone would make them 0600,
#: unreadable for the colleagues sharing a results folder).
FILE_MODE = _file_mode()


@contextmanager
def atomic_path(path: str | Path, keep_previous: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is synced and replaces ``path``.

    The temporary file lives in the same folder (so ``os.replace`` is a rename on
    one filesystem) and is removed if writing fails; the old ``path`` is untouched.
    With ``keep_previous``, an existing ``path`` is first moved (atomically) to
    ``keep_previous``, so the last good version survives next to the new one.
    A disk-full ``OSError`` that names no file (a plain ``write`` or ``fsync``) is
    given ``path`` as its ``filename``, so the error says which file did not fit.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS and exc.filename is None:
            exc.filename = str(path)
        raise


def temp_files(folder: str | Path) -> list[Path]:
    """The :func:`atomic_path` temporary files (``.NAME.*.tmp``) directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".*.*{TEMP_SUFFIX}") if p.is_file())


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted writes in ``folder``; return them.

    Call it only while no other process writes into ``folder`` (e.g. holding the
    folder's lock): a live writer's temporary file would be removed too.
    """
    return unlink_existing(temp_files(folder))


def unlink_existing(paths: list[Path]) -> list[Path]:
    """Delete ``paths``, skipping those already gone (another process may race us); return
    the ones this call deleted."""
    removed = []
    for p in paths:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf as None and numpy/torch scalars as Python numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return jsonable(obj.item())
    return obj


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (NaN/inf become null so any JSON reader accepts it)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(data), indent=2))


class NotRegularFileError(ValueError):
    """A result file's path holds something other than a regular file (a FIFO, a device, a socket):
    reading it could block forever or never end, so it is not read."""


def require_regular_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path`; :class:`NotRegularFileError` when it exists but is not a regular
    file (``FileNotFoundError`` handling is the caller's)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise NotRegularFileError(f"{path} is not a regular file (a FIFO, device or folder); not read")
    return path


def read_json(path: str | Path) -> Any:
    """A JSON file's content; :class:`NotRegularFileError` for a FIFO or device (never blocks on one)."""
    return json.loads(require_regular_file(path).read_text())


def write_table(path: str | Path, rows: list[dict] | pd.DataFrame, metadata: dict[str, str] | None = None) -> None:
    """Write a table atomically as Parquet (or CSV when the suffix is .csv); ``metadata``: string
    key/value pairs stored in the Parquet schema (a run's identity, ``gradasym.schemas``).

    Parquet is encoded in memory and written with a plain file write, as :func:`torch_save`
    does: pyarrow's file writer may report a full disk without an ``errno``, which would
    then not read as a full disk (:func:`gradasym.runfolder.is_disk_full`)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if Path(path).suffix == ".csv":
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        return
    buffer = io.BytesIO()
    if metadata:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
        pq.write_table(table, buffer)
    else:
        df.to_parquet(buffer, index=False)
    write_bytes(path, buffer)


def torch_save(path: str | Path, obj: Any, keep_previous: str | Path | None = None) -> None:
    """``torch.save`` atomically (``keep_previous``: see :func:`atomic_path`).

    The object is serialised in memory first and its bytes written with an ordinary
    file write: torch's own file writer reports a full disk as a ``RuntimeError``
    ("unexpected pos ..."), a plain write as ``OSError(ENOSPC)`` naming ``path``, which
    :func:`gradasym.runfolder.disk_full_guard` turns into one line. The in-memory copy
    costs the checkpoint's size once more (at most ~90 MB with a replay buffer); the
    bytes are written from the buffer without a further copy.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer, keep_previous=keep_previous)


def write_bytes(path: str | Path, buffer: io.BytesIO, keep_previous: str | Path | None = None) -> None:
    """Write ``buffer``'s bytes to ``path`` atomically with a plain file write (a full disk is
    ``OSError(ENOSPC)`` naming ``path``), without copying them."""
    with atomic_path(path, keep_previous=keep_previous) as tmp, open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())
