"""gradasym.runfolder: the folder lock under contention, config checks, checkpoints, temp files, disk full."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gradasym.io
from fulldisk import FullDisk
from gradasym.io import atomic_path, write_json
from gradasym.runfolder import (CheckpointError, DiskFullError, FolderKindError, FolderLock, RunFolder,
                                RunFolderError, config_differences, disk_full_guard)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- lock
def _contender(folder: str, barrier, rounds: int, holding, overlaps, wins) -> None:
    for _ in range(rounds):
        barrier.wait()
        lock = FolderLock(folder)
        try:
            lock.acquire()
        except RunFolderError:
            pass
        else:
            with holding.get_lock():
                holding.value += 1
                if holding.value > 1:
                    overlaps.value += 1
            with wins.get_lock():
                wins.value += 1
            time.sleep(0.002)  # hold it long enough for an overlap to be seen
            with holding.get_lock():
                holding.value -= 1
            lock.release()
        barrier.wait()


def test_simultaneous_acquirers_never_both_hold(tmp_path: Path) -> None:
    """Pairs of processes released by one barrier race for the lock; a third of the rounds
    start from a stale lock of a dead process, so the take-over races too."""
    rounds = 300
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3, timeout=60)
    holding, overlaps, wins = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [ctx.Process(target=_contender, args=(str(tmp_path), barrier, rounds, holding, overlaps, wins))
             for _ in range(2)]
    for p in procs:
        p.start()
    dead = _dead_pid()
    lock = tmp_path / ".run.lock"
    t0 = time.monotonic()
    try:
        for i in range(rounds):
            if i % 3 == 0:
                write_json(lock, {"pid": dead, "host": socket.gethostname(), "time": 0})
            before = wins.value
            barrier.wait()
            barrier.wait()
            assert wins.value > before, f"round {i}: nobody got the lock"
            assert not lock.exists(), f"round {i}: the lock was not released"
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert overlaps.value == 0
    assert [p.exitcode for p in procs] == [0, 0]
    assert time.monotonic() - t0 < 120
    assert not list(tmp_path.glob(".run.lock.*"))  # no temporary owner files left


def test_lock_is_created_with_its_owner_and_released_only_by_it(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path)
    lock.acquire()
    owner = json.loads(lock.path.read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["token"]
    with pytest.raises(RunFolderError, match=f"pid {os.getpid()}"):
        FolderLock(tmp_path).acquire()  # held, even by this very process
    other = {**owner, "token": "someone else"}
    lock.path.write_text(json.dumps(other))  # e.g. taken over by hand meanwhile
    lock.release()
    assert json.loads(lock.path.read_text()) == other  # not ours: left alone


@pytest.mark.parametrize("content", ["", "{not json", "[]"])
def test_unreadable_lock_is_never_deleted(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".run.lock"
    path.write_text(content)
    with pytest.raises(RunFolderError, match="cannot be read.*delete"):
        FolderLock(tmp_path).acquire()
    assert path.read_text() == content


def test_lock_of_live_process_is_refused_and_of_dead_one_taken_over(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_json(tmp_path / ".run.lock", {"pid": other.pid, "host": socket.gethostname()})
        with pytest.raises(RunFolderError, match=f"being written by another process \\(pid {other.pid}"):
            FolderLock(tmp_path).acquire()
    finally:
        other.kill()
        other.wait()
    with FolderLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".run.lock").exists()
    write_json(tmp_path / ".run.lock", {"pid": 1, "host": "another-host"})
    with pytest.raises(RunFolderError, match="another-host"):  # cannot tell: refused
        FolderLock(tmp_path).acquire()


# ---------------------------------------------------------------- configs
def test_config_differences_names_fields() -> None:
    old = {"agent": {"actor_lr": 1e-4, "gamma": 0.99}, "run": {"episodes": 10, "threads": 1},
           "presets": ["a", "b"], "version": "1"}
    new = {"agent": {"actor_lr": 0.01, "gamma": 0.99, "added_later": 3}, "run": {"episodes": 20, "threads": 2},
           "presets": ["b", "a"], "version": "2"}
    assert config_differences(old, new) == ["agent.actor_lr: 0.0001 -> 0.01", "run.episodes: 10 -> 20",
                                            "run.threads: 1 -> 2"]
    assert config_differences(old, new, {("run", "episodes"), ("run", "threads")}) == [
        "agent.actor_lr: 0.0001 -> 0.01"]
    assert config_differences(old, {**new, "presets": ["a"]}, {("run", "episodes"), ("run", "threads"),
                                                               ("agent", "actor_lr")}) == [
        "presets: ['a', 'b'] -> ['a']"]


@pytest.mark.parametrize("content", ["{garbage", "", "[1, 2]"])
def test_garbage_json_files_are_named(tmp_path: Path, content: str) -> None:
    folder = RunFolder(tmp_path)
    folder.config_path.write_text(content)
    folder.summary_path.write_text(content)
    with pytest.raises(RunFolderError, match="config.json"):
        folder.read_config()
    with pytest.raises(RunFolderError, match="summary.json"):
        folder.read_summary()
    assert RunFolder(tmp_path / "empty").read_config() is None


# ---------------------------------------------------------------- checkpoints
def _state(n: int) -> dict:
    return {"config": {"run": {"seed": n}}, "episodes_done": n, "w": torch.full((3,), float(n))}


def test_checkpoint_rotation_and_fallback(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert folder.load_checkpoint() is None
    for n in (1, 2, 3):
        folder.save_checkpoint(_state(n))
    state, path = folder.load_checkpoint()
    assert path == folder.checkpoint_path and state["episodes_done"] == 3
    assert torch.load(folder.previous_checkpoint_path, weights_only=False)["episodes_done"] == 2
    warnings: list[str] = []
    for bad in (b"", folder.checkpoint_path.read_bytes()[:100], b"\x00garbage" * 50):
        folder.checkpoint_path.write_bytes(bad)
        state, path = RunFolder(tmp_path).load_checkpoint(warn=warnings.append)
        assert path == folder.previous_checkpoint_path and state["episodes_done"] == 2
    assert len(warnings) == 3 and "checkpoint.pt" in warnings[0] and "empty file" in warnings[0]
    # after a fallback the bad newest file is overwritten, not rotated over the good one
    resumed = RunFolder(tmp_path)
    resumed.load_checkpoint()
    resumed.save_checkpoint(_state(4))
    assert torch.load(folder.previous_checkpoint_path, weights_only=False)["episodes_done"] == 2
    assert resumed.load_checkpoint()[0]["episodes_done"] == 4


def test_no_readable_checkpoint_says_which_files_and_how_to_restart(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.checkpoint_path.write_bytes(b"PK\x03\x04 truncated")
    folder.previous_checkpoint_path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        folder.load_checkpoint()
    text = str(info.value)
    assert "checkpoint.pt (" in text and "checkpoint.prev.pt (empty file)" in text
    assert "delete the folder" in text and "\n" not in text
    torch.save({"no": "config"}, folder.checkpoint_path)
    with pytest.raises(CheckpointError, match="not a gradasym checkpoint"):
        folder.load_checkpoint()


# ---------------------------------------------------------------- temp files, disk full
def test_temp_files_of_interrupted_writes_are_removed(tmp_path: Path) -> None:
    (tmp_path / "keep.tmp").write_text("not ours")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "episodes.parquet") as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    left = tmp_path / ".summary.json.abc123.tmp"  # as a kill -9 leaves it
    left.write_text("{")
    owner = tmp_path / ".run.lock.0123abcd.new"  # an acquirer killed before linking its lock
    owner.write_text("{}")
    assert RunFolder(tmp_path).clean_temp_files() == [left, owner]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]


def test_disk_full_becomes_one_line(tmp_path: Path) -> None:
    with pytest.raises(DiskFullError) as info:
        with disk_full_guard("episode 7"):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoint.pt"))
    text = str(info.value)
    assert "no space left" in text and "checkpoint.pt" in text and "episode 7" in text and "\n" not in text
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(PermissionError):  # other OS errors pass unchanged
        with disk_full_guard():
            raise PermissionError(errno.EACCES, "denied")


def test_checkpoint_on_a_full_disk_is_one_line_and_keeps_the_earlier_ones(tmp_path: Path, monkeypatch) -> None:
    """torch's own file writer reports a full disk as RuntimeError("unexpected pos ..."); the checkpoint
    is serialised in memory and written with a plain write, so it is an ENOSPC naming the file."""
    folder = RunFolder(tmp_path)
    folder.save_checkpoint(_state(1))
    folder.save_checkpoint(_state(2))
    monkeypatch.setattr(gradasym.io, "open", FullDisk(full_from=1), raising=False)
    with pytest.raises(DiskFullError) as info, disk_full_guard("episode 3"):
        folder.save_checkpoint(_state(3))
    text = str(info.value)
    assert f"writing {folder.checkpoint_path}" in text and "episode 3" in text and "\n" not in text
    monkeypatch.undo()
    assert folder.load_checkpoint()[0]["episodes_done"] == 2  # the earlier checkpoints are intact
    assert torch.load(folder.previous_checkpoint_path, weights_only=False)["episodes_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]  # no temp file


# ---------------------------------------------------------------- what a folder holds
@pytest.mark.parametrize("make, message", [
    (lambda d: d.write_text("x"), "is a file, not a folder"),
    (lambda d: (d.mkdir(), (d / "sweep.json").write_text("{}")), "holds a sweep (sweep.json)"),
    (lambda d: (d / "runs").mkdir(parents=True), "holds a sweep (runs)"),
    (lambda d: ((d / "a").mkdir(parents=True), (d / "a" / "config.json").write_text("{}")), "holds run folders (a)"),
    (lambda d: (d.mkdir(), (d / "summary.json").write_text('{"status": "x"}')),
     "holds summary.json but no config.json or checkpoint"),
])
def test_a_folder_holding_other_results_is_refused(tmp_path: Path, make, message) -> None:
    out = tmp_path / "o"
    make(out)
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    with pytest.raises(FolderKindError, match="choose another --out") as info:
        RunFolder(out).check_usable()
    assert message in str(info.value) and str(out) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, RunFolderError)  # a ConfigError: the CLI's exit code 2
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before


@pytest.mark.parametrize("files", [[], ["notes.txt"], ["config.json", "summary.json"], ["checkpoint.pt", "summary.json"]])
def test_a_run_folder_or_one_with_notes_is_usable(tmp_path: Path, files: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_text("{}")
    (tmp_path / "tensorboard").mkdir()  # a run's own sub-folder
    RunFolder(tmp_path).check_usable()
    RunFolder(tmp_path / "absent").check_usable()
