"""Atomic writes (gradasym.io): what a crash or a full disk leaves, and who can read the results."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

import gradasym.io
from fulldisk import FullDisk
from gradasym.io import FILE_MODE, torch_save, write_json, write_table
from gradasym.runfolder import DiskFullError, disk_full_guard


def test_results_are_as_readable_as_any_file_the_user_creates(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; results shared in a group folder must follow the umask (0644 under 022)."""
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        expected = stat.S_IMODE(plain.stat().st_mode)
    finally:
        os.umask(old)
    assert FILE_MODE == 0o666 & ~old                      # read once, at import, from the process's umask
    if old != 0o022:
        pytest.skip("this process's umask is not 022; the check below compares with a 022 file")
    write_json(tmp_path / "a.json", {"x": 1})
    write_table(tmp_path / "t.parquet", [{"a": 1}])
    write_table(tmp_path / "t.csv", [{"a": 1}])
    torch_save(tmp_path / "c.pt", {"x": 1})
    for name in ("a.json", "t.parquet", "t.csv", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected == 0o644, name


def test_parquet_on_a_full_disk_is_enospc_naming_the_file_and_keeps_the_old_table(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """pyarrow's own writer may report a full disk without an errno; the table is encoded in memory
    and written with a plain write, so a full disk is the one-line DiskFullError naming the file."""
    path = tmp_path / "episodes.parquet"
    write_table(path, [{"episode": 1}])
    monkeypatch.setattr(gradasym.io, "open", FullDisk(full_from=1, room=10, only="parquet"), raising=False)
    with pytest.raises(DiskFullError) as info, disk_full_guard("episode 2"):
        write_table(path, [{"episode": 1}, {"episode": 2}])
    assert info.value.errno == errno.ENOSPC and f"writing {path}" in str(info.value)
    monkeypatch.undo()
    assert pd.read_parquet(path)["episode"].tolist() == [1]  # the old table, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.parquet"]  # no temp file left
