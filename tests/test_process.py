"""Process settings applied before training (speed only)."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch

from gradasym import process


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_malloc_settings() -> None:
    assert process.keep_freed_memory() is True


def test_without_glibc_nothing_changes(monkeypatch) -> None:
    def no_libc(*args, **kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert process.keep_freed_memory() is False


def test_configure_process_sets_threads_only_when_asked() -> None:
    before = torch.get_num_threads()
    try:
        process.configure_process(0)
        assert torch.get_num_threads() == before
        process.configure_process(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
