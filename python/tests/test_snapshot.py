"""Snapshots and diffs without a session."""

from pathlib import Path

import pytest

import berth
from berth import Snapshot


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_capture_extract_read_and_diff(tmp_path: Path) -> None:
    old_root = tree(tmp_path / "old", {"a.txt": "1\n2\n", "d/b.txt": "b\n", "skip.log": "x"})
    new_root = tree(tmp_path / "new", {"a.txt": "1\n3\n", "c.bin": "\x00", "skip.log": "y"})
    archives = tmp_path / "archives"
    archives.mkdir()
    old = Snapshot.capture(old_root, archives, ignore=["*.log"])
    new = Snapshot.capture(new_root, archives, compression="zstd", ignore=["*.log"])
    assert old.paths == ["a.txt", "d/b.txt"]
    assert len(old) == 2 and old.compression == "gz" and new.compression == "zstd"
    assert old.archive_path is not None and Path(old.archive_path).parent == archives
    assert old.read_entries(["a.txt", "missing"]) == {"a.txt": b"1\n2\n"}
    assert old.read_entries(["d/b.txt"], limit=1) == {"d/b.txt": b"b"}

    again = Snapshot.capture(old_root, archives, compression="none", ignore=["*.log"])
    assert again.checksum == old.checksum != new.checksum

    out = tmp_path / "out"
    old.extract(out)
    assert (out / "d" / "b.txt").read_text() == "b\n"
    (out / "extra").write_text("stays")
    new.extract(out)
    assert (out / "extra").exists()
    new.extract(out, mirror=True)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "c.bin"]

    d = berth.diff(old, new)
    assert d.stat == "+1 -1 ~1 files"
    assert (d.summary["lines_added"], d.summary["lines_removed"]) == (1, 2)
    assert [(c.path, c.kind) for c in d.changes] == [
        ("a.txt", "modified"),
        ("c.bin", "created"),
        ("d/b.txt", "deleted"),
    ]
    assert d.changes[1].is_binary
    assert "-2\n+3\n" in d.unified and d.changes[0].unified_diff is not None
    assert d.to_dict()["summary"]["created"] == 1
    assert not berth.diff(old, again)


def test_unsafe_and_bad_inputs_raise(tmp_path: Path) -> None:
    root = tree(tmp_path / "root", {"a": "a"})
    with pytest.raises(berth.WorkspaceError):
        Snapshot.capture(root, root / "inside")
    with pytest.raises(ValueError):
        Snapshot.capture(root, tmp_path, compression="lz4")
    with pytest.raises(berth.SpecError):
        Snapshot.capture(root, tmp_path, ignore=["a[b"])
    with pytest.raises(berth.WorkspaceError):
        Snapshot.open(tmp_path / "no-such.tar.gz")
