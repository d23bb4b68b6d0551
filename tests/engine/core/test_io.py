"""Atomic writes: all-or-nothing, and the result is an ordinary readable file or directory."""

from __future__ import annotations

import stat

import pytest

from engine.core.errors import EquiLabError
from engine.core.io import atomic_dir, atomic_write, atomic_write_text


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path) -> None:
    f = atomic_write_text(tmp_path / "a.json", "new")
    assert f.read_text() == "new" and stat.S_IMODE(f.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    f = atomic_write_text(tmp_path / "a.txt", "old")

    def boom(path):
        path.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(f, boom)
    assert f.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_is_invisible_until_complete(tmp_path) -> None:
    out = tmp_path / "store"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "x.npy").write_bytes(b"1")
        raise RuntimeError("killed mid-build")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "x.npy").write_bytes(b"1")
    assert (out / "x.npy").read_bytes() == b"1" and stat.S_IMODE(out.stat().st_mode) == 0o755
    with pytest.raises(EquiLabError, match="already exists"), atomic_dir(out):
        pass


def test_unwritable_destination_is_a_clear_error(tmp_path) -> None:
    # A regular file where a directory should be: fails for root too (permission bits would not).
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(EquiLabError, match=r"cannot write .*not-a-dir/a\.txt"):
        atomic_write_text(tmp_path / "not-a-dir" / "a.txt", "x")
