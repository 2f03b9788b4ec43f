"""A run folder's safety rules, for every runner (``gradasym.algos.ccm_madrl.runner`` and others).

A run folder holds one training run: ``config.json`` (what was asked),
``checkpoint.pt`` (+ ``checkpoint.prev.pt``, the one before), tables and
``summary.json``. This module owns the rules that keep such a folder trustworthy,
independent of the training framework:

* **one writer**: :class:`FolderLock` is an exclusive lock file whose owner (pid,
  host, a random token) is written into a temporary file that is then hard-linked
  into place, so the lock is never seen empty and its creation is exclusive. A lock
  of a dead process on this host is taken over (under an ``flock`` of the folder,
  so two takers cannot both win); a lock whose owner cannot be read is never
  deleted; :meth:`FolderLock.release` deletes the lock only if it is still its own.
  A lock taken inside Ray also records the Ray node id (``ray_node``), and a lock whose
  node Ray reports dead is taken over too, on any host (:meth:`FolderLock.take_over_stale`
  says whose lock it took, for a log line). The sweep lock
  (``gradasym.sweep.store.SweepLock``) is the same class;
* **same configuration on resume**: :meth:`RunFolder.check_config` compares the
  new configuration with ``config.json`` *and* with the one stored inside the
  checkpoint (a deleted ``config.json`` or a checkpoint copied from another run is
  refused, naming the differing fields);
* **checkpoints that survive**: :meth:`RunFolder.save_checkpoint` writes atomically
  and keeps the previous checkpoint as ``checkpoint.prev.pt``;
  :meth:`RunFolder.load_checkpoint` falls back to it when the newest one is empty,
  truncated or corrupted, and otherwise says which file is bad and how to restart;
* **clean starts**: :meth:`RunFolder.clean_temp_files` removes the ``.NAME.*.tmp``
  files of writes that were interrupted and the owner files of killed lock
  acquirers (call it holding the lock);
  unreadable ``config.json`` / ``summary.json`` raise :class:`RunFolderError`
  naming the file;
* **only its own kind of results**: :meth:`RunFolder.check_usable` refuses (:class:`FolderKindError`)
  a file, a sweep folder, a folder of run folders, and a run's output files without its
  ``config.json`` or a checkpoint (not a gradasym run's: a run would overwrite them);
* **disk full**: :func:`disk_full_guard` turns ``ENOSPC``/``EDQUOT`` into a
  :class:`DiskFullError` with one line (the file, what to do); the earlier files stay
  intact because every write is atomic (``gradasym.io``).

Typical use by a runner (``gradasym.algos.ccm_madrl.runner.run_experiment`` does exactly this)::

    folder = RunFolder(out)
    folder.check_usable()                     # FolderKindError: a file, a sweep, foreign files
    if folder.holds_run() and not resume:
        raise ConfigError(...)
    with folder.lock():                       # RunFolderError if another process writes here
        folder.clean_temp_files()
        state = None
        if resume:
            folder.check_config(wanted, folder.read_config(), source=folder.config_path)
            loaded = folder.load_checkpoint()  # (state, path) or None; CheckpointError if all bad
            if loaded:
                state, path = loaded
                folder.check_config(wanted, state["config"], source=path)
        ... build the trainer, load ``state`` ...
        folder.write_config(record)           # only after a successful start
        with disk_full_guard():
            folder.save_checkpoint(trainer.state_dict()); write tables ...

``loader``/``saver`` arguments let a runner whose checkpoint is not a ``torch.save``
dict (e.g. a Stable-Baselines3 zip) reuse the rotation and validation.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .config import ConfigError
from .errors import describe
from .io import (
    DISK_FULL_ERRNOS,
    read_json,
    remove_temp_files,
    require_regular_file,
    torch_save,
    unlink_existing,
    write_json,
)

try:  # POSIX; elsewhere stale-lock take-over is unguarded (creation stays exclusive)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
RUN_LOCK_FILE = ".run.lock"
#: Files a run writes besides ``config.json`` and the checkpoints; found without either, they
#: are not a gradasym run's (a run would overwrite them).
RUN_OUTPUT_FILES = (SUMMARY_FILE, "episodes.parquet", "tracking.parquet", "tracking_agents.parquet")
#: What only a run folder holds at its top: a sweep is never written into such a folder.
RUN_FOLDER_FILES = (CONFIG_FILE, SUMMARY_FILE, CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE)
#: What a sweep folder holds at its top (``gradasym.sweep.store``): a run is never written there.
SWEEP_FOLDER_NAMES = ("sweep.json", "runs")
#: Key of a run's checkpoint and ``summary.json`` naming the trainer that produced its episodes:
#: :data:`SINGLE` (``run_experiment``, the only trainer now); in folders written before the batched
#: trainer was retired (docs/sweeps.md) also :data:`BATCHED` (its ``train_batch``) or :data:`MIXED`
#: (started by one trainer, continued by the other: its numbers are neither's). Such folders still
#: load, report and resume: the single-run trainer continues them, recorded as :data:`MIXED`.
TRAINER_KEY = "trainer"
SINGLE, BATCHED, MIXED = "single", "batched", "mixed"


class RunFolderError(ConfigError):
    """A run folder cannot be used as asked (busy, unreadable file, other configuration)."""


class CheckpointError(RunFolderError):
    """No checkpoint of the folder can be read."""


class FolderKindError(RunFolderError):
    """An output folder cannot take these results: it is a file, or it holds results of another
    kind (a sweep where a run goes, a run where a sweep goes, files gradasym did not write)."""


class DiskFullError(OSError):
    """The disk filled up while writing; the message is one line (file and remedy)."""

    def __str__(self) -> str:
        return str(self.args[1] if len(self.args) > 1 else self.args[0])


# ------------------------------------------------------------------ disk full
def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` meaning "no space left" (or quota exceeded)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


#: The remedy that ends a run's disk-full line (a sweep, which resumes by itself, gives its own instead).
RUN_DISK_FULL_REMEDY = ": free some space and rerun the same command (with --resume for `gradasym run`) to continue"


def disk_full_message(exc: OSError, what: str = "") -> str:
    """One line for a disk-full error: the file, that earlier files are intact, and
    :data:`RUN_DISK_FULL_REMEDY`."""
    where = f" writing {exc.filename}" if exc.filename else ""
    doing = f" ({what})" if what else ""
    return f"no space left on the device{where}{doing}; the files written before are intact{RUN_DISK_FULL_REMEDY}"


@contextmanager
def disk_full_guard(what: str = "") -> Iterator[None]:
    """Re-raise an ``ENOSPC``/``EDQUOT`` ``OSError`` as :class:`DiskFullError` (one line)."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(exc.errno, disk_full_message(exc, what), exc.filename) from None


# ------------------------------------------------------------------ what a folder holds
def require_folder(path: str | Path, what: str = "--out") -> Path:
    """``path`` as a :class:`Path`; :class:`FolderKindError` if it exists but is not a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FolderKindError(f"{path} is a file, not a folder; choose another {what}")
    return path


def present(folder: Path, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that exist directly in ``folder``."""
    return [n for n in names if (folder / n).exists()]


def run_subfolders(folder: Path) -> list[str]:
    """Names of the sub-folders of ``folder`` that hold a run (a ``config.json`` or a checkpoint)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and RunFolder(p).holds_run())


def some(names: list[str], limit: int = 3) -> str:
    """``a, b, c`` (and ``and N more`` beyond ``limit``)."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ------------------------------------------------------------------ lock
def pid_alive(pid: int) -> bool:
    """A process ``pid`` exists on this host (also one owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _ray_node_id() -> str | None:
    """The Ray node this process runs on when Ray is initialised in it (a Ray worker), else None."""
    ray = sys.modules.get("ray")  # never imported here: only a process that already uses Ray asks it
    try:
        return str(ray.get_runtime_context().get_node_id()) if ray is not None and ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - no Ray context: a lock without a node
        return None


def _ray_node_dead(node_id: str) -> bool:
    """Ray, initialised in this process, reports the node ``node_id`` dead (``Alive`` False in ``ray.nodes()``)."""
    ray = sys.modules.get("ray")
    try:
        nodes = ray.nodes() if ray is not None and ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - Ray cannot say: the node is not known to be dead
        return False
    return any(n.get("NodeID") == node_id and n.get("Alive") is False for n in nodes)


class FolderLock:
    """An exclusive lock file ``folder/name`` holding its owner; see the module docstring.

    Args:
        folder: the folder to lock (created if needed).
        name: the lock file's name (``.run.lock``; the sweep uses ``.sweep.lock``).
        error: exception class raised when the folder is busy (default :class:`RunFolderError`).
        busy: message start when busy, formatted with ``folder``, e.g. "{folder} is in use by
            another sweep".
    """

    def __init__(self, folder: str | Path, name: str = RUN_LOCK_FILE, *,
                 error: type[Exception] = RunFolderError,
                 busy: str = "{folder} is being written by another process") -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.error = error
        self.busy = busy
        self.held = False
        self._owner: dict[str, Any] | None = None

    # -- reading ------------------------------------------------------------
    def owner(self) -> tuple[dict[str, Any] | None, bool]:
        """``(owner, readable)``: ``(None, True)`` when there is no lock file."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None, True
        except (OSError, ValueError):
            return None, False
        return (data, True) if isinstance(data, dict) and data else (None, False)

    @staticmethod
    def stale_reason(owner: dict[str, Any]) -> str | None:
        """Why the owner is gone, or None while it may hold the lock: a Ray worker whose node
        (``ray_node``) Ray reports dead (asked only where Ray is initialised, e.g. in a Ray task),
        or a process of this host that no longer exists."""
        pid = owner.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None  # not a lock we understand: never delete it
        node = owner.get("ray_node")
        if isinstance(node, str) and node and node != _ray_node_id() and _ray_node_dead(node):
            return f"its Ray node {node} is dead"
        if owner.get("host") == socket.gethostname() and pid != os.getpid() and not pid_alive(pid):
            return "its process no longer exists"
        return None

    @classmethod
    def is_stale(cls, owner: dict[str, Any]) -> bool:
        """The owner is gone (:meth:`stale_reason`): its lock may be taken over."""
        return cls.stale_reason(owner) is not None

    def take_over_stale(self, gone: Callable[[dict[str, Any]], str | None] | None = None) -> str | None:
        """Delete the lock if its owner is gone (:meth:`stale_reason`, or ``gone(owner)`` saying why,
        e.g. a Ray backend that asked the owner's node); return a line saying whose lock was taken
        over and why (for the log), None when there was none to take."""
        owner, _ = self.owner()
        why = None
        if owner is not None:
            why = self.stale_reason(owner) or (gone(owner) if gone is not None else None)
        if why is None or not self._take_over(owner):
            return None
        node = f", Ray node {owner['ray_node']}" if owner.get("ray_node") else ""
        return f"took over the lock {self.path} of pid {owner.get('pid')} on {owner.get('host')}{node}: {why}"

    # -- acquire / release ---------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise ``error`` naming the owner (and the file to delete)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "token": token}
        node = _ray_node_id()
        if node:
            me["ray_node"] = node  # a lock of a lost node is taken over from any host (stale_reason)
        tmp = self.folder / f"{self.path.name}.{token}.new"
        try:
            for _ in range(20):
                self._write_owner(tmp, me)
                if self._link(tmp):
                    self.held, self._owner = True, me
                    return
                owner, readable = self._read_owner_patiently()
                if owner is None and readable:
                    continue  # released meanwhile: try again
                if not readable:
                    raise self.error(
                        f"{self.busy.format(folder=self.folder)}: its lock {self.path} cannot be read; "
                        f"if no process is using the folder, delete {self.path}"
                    )
                if not self.is_stale(owner):
                    raise self.error(
                        f"{self.busy.format(folder=self.folder)} (pid {owner.get('pid')} on "
                        f"{owner.get('host')}); if none is running, delete {self.path}"
                    )
                self._take_over(owner)
            raise self.error(f"could not take the lock {self.path} (too much contention)")
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass

    def release(self) -> None:
        """Delete the lock file if it is still this lock's (same owner token)."""
        if not self.held:
            return
        self.held = False
        owner, _ = self.owner()
        if owner is not None and owner == self._owner:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def remove_leftovers(self) -> list[Path]:
        """Delete owner files (``NAME.<token>.new``) left by acquirers that were killed; return them.

        Safe while holding the lock: a live acquirer whose file vanishes writes it again
        and is then refused as usual.
        """
        return unlink_existing(list(self.folder.glob(f"{self.path.name}.*.new")))

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- internals -------------------------------------------------------------
    @staticmethod
    def _write_owner(tmp: Path, me: dict[str, Any]) -> None:
        with open(tmp, "w") as fh:
            json.dump(me, fh)
            fh.flush()
            os.fsync(fh.fileno())

    def _link(self, tmp: Path) -> bool:
        """Hard-link ``tmp`` to the lock path: True if we created it."""
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except FileNotFoundError:  # our temporary file vanished: write it again
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise
        # No hard links on this filesystem: exclusive create, then write (a reader
        # waits a moment for the content, see _read_owner_patiently).
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(tmp.read_text())
        return True

    def _read_owner_patiently(self) -> tuple[dict[str, Any] | None, bool]:
        owner, readable = self.owner()
        deadline = time.monotonic() + 0.5  # only the no-hard-link fallback can show an empty lock
        while not readable and time.monotonic() < deadline:
            time.sleep(0.02)
            owner, readable = self.owner()
        return owner, readable

    def _take_over(self, stale: dict[str, Any]) -> bool:
        """Delete the lock if it still holds ``stale``, serialised by an flock of the folder;
        True if this call deleted it."""
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:
                    pass
            owner, _ = self.owner()
            if owner == stale:
                try:
                    self.path.unlink()
                    return True
                except FileNotFoundError:
                    pass
            return False
        finally:
            os.close(fd)  # releases the flock


# ------------------------------------------------------------------ configs
def config_differences(saved: dict[str, Any], wanted: dict[str, Any],
                       ignore: Iterable[tuple[str, str]] = ()) -> list[str]:
    """``section.field: old -> new`` for each field that differs between two ``Config.to_dict()``.

    Only fields present in both are compared (a field added to ``Config`` later does
    not invalidate old runs); ``version`` and the ``(section, field)`` pairs in
    ``ignore`` are skipped; ``presets`` is compared as a set.
    """
    ignore = set(ignore)
    diffs: list[str] = []
    saved = json.loads(json.dumps(saved))
    wanted = json.loads(json.dumps(wanted))
    for section, values in wanted.items():
        if section == "version" or section not in saved:
            continue
        old = saved[section]
        if isinstance(values, dict) and isinstance(old, dict):
            for name, value in values.items():
                if (section, name) in ignore or name not in old:
                    continue
                if old[name] != value:
                    diffs.append(f"{section}.{name}: {old[name]!r} -> {value!r}")
        elif section == "presets" and isinstance(old, list) and isinstance(values, list):
            if sorted(map(str, old)) != sorted(map(str, values)):
                diffs.append(f"presets: {old!r} -> {values!r}")
        elif old != values:
            diffs.append(f"{section}: {old!r} -> {values!r}")
    return diffs


def continued_trainer(stored: str | None, now: str) -> str:
    """The :data:`TRAINER_KEY` of a run that trainer ``now`` continues from a checkpoint marked
    ``stored`` (None: a checkpoint older than the marker, taken as ``now``'s): ``now`` when they
    agree, else :data:`MIXED` (its numbers are neither trainer's)."""
    return now if stored in (None, now) else MIXED


#: Tags of :func:`plain_state`: a numpy array / numpy scalar stored as a tensor inside a one-key dict.
NDARRAY_TAG, NPSCALAR_TAG = "__ndarray__", "__npscalar__"


def plain_state(obj: Any) -> Any:
    """``obj`` with every numpy array and numpy scalar replaced by a tagged tensor
    (``{"__ndarray__": tensor}``, ``{"__npscalar__": 0-d tensor}``), tuples kept, so that the
    checkpoint holds only what ``torch.load(weights_only=True)`` reads: tensors, dicts, lists,
    tuples, str, int, float, bool, None. :func:`restore_state` undoes it exactly (same dtype,
    same bits). A value of another type is a ``TypeError`` naming its place (a bug of the saver)."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    def walk(x: Any, where: str) -> Any:
        if isinstance(x, np.generic):  # before float: np.float64 is a float subclass, pickled as numpy
            return {NPSCALAR_TAG: torch.from_numpy(np.asarray(x).copy())}
        if x is None or isinstance(x, (bool, int, float, str, torch.Tensor)):
            return x
        if isinstance(x, dict):
            return {k: walk(v, f"{where}.{k}") for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, tuple):
            return tuple(walk(v, f"{where}[{i}]") for i, v in enumerate(x))
        if isinstance(x, np.ndarray):
            return {NDARRAY_TAG: torch.from_numpy(np.ascontiguousarray(x).copy())}
        raise TypeError(f"checkpoint value {where or '<root>'} is a {type(x).__name__}, which a safe "
                        "(weights_only) load cannot read")

    return walk(obj, "")


def restore_state(obj: Any) -> Any:
    """Undo :func:`plain_state`: tagged tensors back to numpy arrays / scalars."""
    if isinstance(obj, dict):
        if len(obj) == 1 and NDARRAY_TAG in obj:
            return obj[NDARRAY_TAG].numpy()
        if len(obj) == 1 and NPSCALAR_TAG in obj:
            return obj[NPSCALAR_TAG].numpy()[()]
        return {k: restore_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(restore_state(v) for v in obj)
    return obj


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds Python objects other than plain data: it is not loaded (no code runs)."""


def _legacy_numpy_globals() -> list[Any]:
    """What checkpoints written before :func:`plain_state` need besides plain data: numpy's
    array and scalar reconstruction (numeric data only; an object inside still needs its own,
    refused, global). Allowed only for the one load (``torch.serialization.safe_globals``)."""
    import numpy as np  # noqa: PLC0415

    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / 1
    numeric = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]  # bool, ints, floats, complex
    return [np.dtype, np.ndarray, core.scalar, core._reconstruct, *numeric]


def _torch_load(path: Path) -> Any:
    """A checkpoint, loaded with ``torch.load(weights_only=True)``: a results folder is data, so
    nothing in it is executed. Numpy arrays of checkpoints written before gradasym stored them as
    tensors (:func:`plain_state`) are still read; any other object is refused with
    :class:`UnsafeCheckpointError` (one line), before any of it is built."""
    import pickle  # noqa: PLC0415

    import torch  # noqa: PLC0415

    require_regular_file(path)  # a FIFO would block torch.load forever
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            state = torch.load(path, weights_only=True, map_location="cpu")  # any device; the agent moves it
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the object {found.group(1)}" if found else "a Python object"
        raise UnsafeCheckpointError(f"holds {what}, not plain data; not loaded (no code from a results "
                                    "folder is run)") from None
    return restore_state(state)


def _torch_save(path: Path, obj: Any, keep_previous: Path | None) -> None:
    torch_save(path, plain_state(obj), keep_previous=keep_previous)


def _has_config(state: Any) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError("not a gradasym checkpoint (no stored configuration)")


# ------------------------------------------------------------------ the folder
class RunFolder:
    """One run folder: its files, lock, stored configuration and checkpoints."""

    def __init__(self, path: str | Path, checkpoint: str = CHECKPOINT_FILE,
                 previous_checkpoint: str = PREVIOUS_CHECKPOINT_FILE) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG_FILE
        self.summary_path = self.path / SUMMARY_FILE
        self.checkpoint_path = self.path / checkpoint
        self.previous_checkpoint_path = self.path / previous_checkpoint
        self._newest_ok = True  # False: checkpoint.pt is bad, do not rotate it into .prev

    def holds_run(self) -> bool:
        """A run was started here (a configuration or a checkpoint is stored)."""
        return any(p.exists() for p in (self.config_path, self.checkpoint_path, self.previous_checkpoint_path))

    def check_usable(self) -> None:
        """Raise :class:`FolderKindError` (one line: the folder, what it holds, what to do) unless
        the folder is absent, holds no results, or holds a run (``config.json`` or a checkpoint).

        Refused: a file; a sweep folder (``sweep.json`` or ``runs/``); a folder of run folders (a
        report would show only the run written at its top); a run's output files
        (``summary.json``, tables) with neither ``config.json`` nor a checkpoint, which are not a
        gradasym run's and would be overwritten. Other files (notes) are left alone.
        """
        path = require_folder(self.path)
        if not path.is_dir():
            return
        sweep = present(path, SWEEP_FOLDER_NAMES)
        if sweep:
            raise FolderKindError(f"{path} holds a sweep ({', '.join(sweep)}); a run is not written into a "
                                  "sweep folder (it would hide the sweep's runs): choose another --out")
        runs = run_subfolders(path)
        if runs:
            raise FolderKindError(f"{path} holds run folders ({some(runs)}); a run is not written above "
                                  "other runs: choose another --out")
        outputs = present(path, RUN_OUTPUT_FILES)
        if outputs and not self.holds_run():
            raise FolderKindError(f"{path} holds {', '.join(outputs)} but no {CONFIG_FILE} or checkpoint, so it "
                                  "is not a gradasym run folder and a run would overwrite them: "
                                  "choose another --out")

    def lock(self) -> FolderLock:
        """The folder's :class:`FolderLock` (``.run.lock``); use it as a context manager."""
        return FolderLock(self.path, RUN_LOCK_FILE)

    def clean_temp_files(self) -> list[Path]:
        """Remove the temporary files of interrupted writes and locks (hold the lock); return them."""
        return remove_temp_files(self.path) + self.lock().remove_leftovers()

    # -- json files -------------------------------------------------------------
    def _read_json(self, path: Path, what: str) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:80]}); {what}") from None
        if not isinstance(data, dict):
            raise RunFolderError(f"{path} is not a JSON object; {what}")
        return data

    def read_config(self) -> dict[str, Any] | None:
        """``config.json`` (None if absent); :class:`RunFolderError` naming it if garbage."""
        return self._read_json(self.config_path, "delete it to resume from the checkpoint (whose stored "
                               "configuration is checked), or use another folder")

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json`` (None if absent); :class:`RunFolderError` naming it if garbage."""
        return self._read_json(self.summary_path, "delete it (it is rewritten by the next start)")

    def write_config(self, record: dict[str, Any]) -> None:
        """Write ``config.json`` atomically (call it once the run has started well)."""
        write_json(self.config_path, record)

    def check_config(self, wanted: dict[str, Any], stored: dict[str, Any] | None, source: str | Path,
                     ignore: Iterable[tuple[str, str]] = ()) -> None:
        """Raise :class:`RunFolderError` if ``stored`` (read from ``source``) differs from ``wanted``."""
        if stored is None:
            return
        diffs = config_differences(stored, wanted, ignore)
        if diffs:
            raise RunFolderError(
                f"{self.path} holds a run with a different configuration (stored in {source}: "
                f"{'; '.join(diffs)}); use another folder"
            )

    def check_files(self, config: dict[str, Any] | None,
                    remedy: str = "delete the file(s) to resume (the run rewrites them from its checkpoint), "
                                  "or use another folder",
                    warn: Callable[[str], None] | None = None) -> None:
        """Raise :class:`RunFolderError` (one line naming the file) when ``summary.json`` or a table is
        another run's or malformed (:func:`gradasym.schemas.check_run_files`; ``config``: the
        folder's ``config.json``). A summary with a value of the wrong type is rewritten by the
        resumed run, as an unreadable one: with ``warn``, it says so (``warn`` absent: refused)."""
        from .schemas import check_run_files, summary_type_problem  # noqa: PLC0415

        if warn is not None:
            mistyped = summary_type_problem(self.path)
            if mistyped:
                warn(f"{self.path}: {mistyped}; it is rewritten from the checkpoint")
        problems = check_run_files(self.path, config, summary_types=warn is None)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise RunFolderError(f"{self.path}: {problems[0]}{more}; {remedy}")

    # -- checkpoints --------------------------------------------------------------
    def save_checkpoint(self, state: Any,
                        saver: Callable[[Path, Any, Path | None], None] = _torch_save) -> None:
        """Write the checkpoint atomically; the previous good one becomes ``checkpoint.prev.pt``."""
        keep = self.previous_checkpoint_path if self._newest_ok else None
        saver(self.checkpoint_path, state, keep)
        self._newest_ok = True

    def load_checkpoint(self, loader: Callable[[Path], Any] = _torch_load,
                        validate: Callable[[Any], None] = _has_config,
                        warn: Callable[[str], None] | None = None) -> tuple[Any, Path] | None:
        """``(state, path)`` of the newest readable checkpoint, or None when there is none.

        A newest checkpoint that cannot be loaded (empty, truncated, corrupted, or
        rejected by ``validate``) is skipped for ``checkpoint.prev.pt`` (``warn`` says so);
        when no checkpoint can be read, :class:`CheckpointError` names the files and
        how to restart.
        """
        problems = []
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            if not path.exists():
                continue
            try:
                state = loader(path)
                validate(state)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
                line = describe(exc).splitlines()[0][:200]
                problems.append(f"{path} ({'empty file' if path.stat().st_size == 0 else line})")
                if path == self.checkpoint_path:
                    self._newest_ok = False
                continue
            if problems and warn is not None:
                warn(f"{problems[0]} is unreadable; resuming from {path}")
            return state, path
        if problems:
            raise CheckpointError(
                f"cannot resume {self.path}: no readable checkpoint ({'; '.join(problems)}); "
                "to restart the run from scratch, delete the folder (or choose another --out)"
            )
        return None
