"""diffrestore.imageio.write: an image's files written as a set (``OutputSet``: whole or absent, the main output
last), temporary names that fit NAME_MAX, and ``ProtectedFiles`` (inputs found in O(1), hard links too)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from image_files import assert_one_line, pil_array

from diffrestore.errors import OutputError
from diffrestore.imageio import save_image
from diffrestore.imageio import write as imageio_write
from diffrestore.imageio.write import NAME_MAX, OutputSet, ProtectedFiles, temp_name

NAMES = ("a_s1.png", "a_s2.png", "a_std.png", "a.png")  # the engine's order: the main output last


def _write_set(folder: Path, *, overwrite: bool = False) -> None:
    with OutputSet() as files:
        for value, name in enumerate(NAMES):
            save_image(torch.full((1, 1, 3, 2), value / 4), folder / name, overwrite=overwrite, output_set=files)
        files.commit()


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, folder: Path) -> int:
    calls = []
    real = getattr(os, name)
    monkeypatch.setattr(imageio_write.os, name, lambda *a, **k: calls.append(a) or real(*a, **k))
    _write_set(folder)
    monkeypatch.setattr(imageio_write.os, name, real)
    return len(calls)


def test_a_set_appears_only_when_all_its_files_are_written(tmp_path: Path, monkeypatch) -> None:
    seen = []
    real_link = os.link

    def watching_link(src, dst):
        seen.append(sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")))
        return real_link(src, dst)

    monkeypatch.setattr(imageio_write.os, "link", watching_link)
    _write_set(tmp_path)
    assert seen[0] == []  # every file written (as a temporary) before the first one appears
    assert seen[-1] == ["a_s1.png", "a_s2.png", "a_std.png"]  # the main output is placed last
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize("where", ["fsync", "link"])
@pytest.mark.parametrize("fault", ["disk full", "signal"])
def test_a_fault_anywhere_in_the_write_leaves_no_file_of_the_set(tmp_path: Path, monkeypatch, where, fault) -> None:
    # fsync: while the files are written (a full disk); link: while they are renamed into place.
    calls = _count_calls(monkeypatch, where, tmp_path / "count")
    assert calls >= len(NAMES)
    for k in range(len(NAMES)):  # the k-th file's fsync or rename (a folder's fsync after them may fail quietly)
        folder = tmp_path / f"{where}{k}"
        folder.mkdir()
        count = [0]
        real = getattr(os, where)

        def failing(*args, real=real, count=count, k=k):
            count[0] += 1
            if count[0] == k + 1:
                if fault == "signal":
                    raise KeyboardInterrupt
                raise OSError(28, "No space left on device") if where == "fsync" else FileExistsError(17, "File exists")
            return real(*args)

        monkeypatch.setattr(imageio_write.os, where, failing)
        with pytest.raises(KeyboardInterrupt if fault == "signal" else OutputError):
            _write_set(folder)
        monkeypatch.setattr(imageio_write.os, where, real)
        assert list(folder.iterdir()) == [], (where, k)  # no file of the set, and no temporary


def test_a_failed_set_keeps_the_files_it_would_have_replaced(tmp_path: Path, monkeypatch) -> None:
    old = tmp_path / "a_s2.png"
    old.write_bytes(b"an earlier sample")
    real = os.replace

    def fail_on_the_main_output(src, dst):
        if Path(dst).name == "a.png":
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(imageio_write.os, "replace", fail_on_the_main_output)
    with pytest.raises(OutputError) as info:
        _write_set(tmp_path, overwrite=True)
    assert_one_line(info.value, "a.png", "Input/output error")
    # the new a_s1 and a_std are taken back; a_s2 was replaced before the failure (its old bytes are gone) and
    # stays: removing it would lose both
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_s2.png"]
    assert (pil_array(old) == 159).all()  # the new sample (value 0.25 in tensor units)


def test_a_set_refused_for_an_existing_file_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a_std.png").write_bytes(b"someone else's")
    with pytest.raises(OutputError, match="already exists"):
        _write_set(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_std.png"]
    assert (tmp_path / "a_std.png").read_bytes() == b"someone else's"


def test_a_255_byte_name_gets_a_temporary_name_that_fits(tmp_path: Path) -> None:
    for name in ("x" * (NAME_MAX - 4) + ".png", "é" * ((NAME_MAX - 4) // 2) + ".png"):
        assert len(os.fsencode(name)) <= NAME_MAX
        temp = temp_name(tmp_path / name)
        assert len(os.fsencode(temp.name)) <= NAME_MAX and temp.name.startswith(".") and temp.parent == tmp_path
        temp.name.encode("utf-8")  # cut between characters, never inside one
        save_image(torch.zeros(1, 3, 2, 2), tmp_path / name)
        assert (tmp_path / name).is_file()
    assert len(list(tmp_path.iterdir())) == 2


def test_protected_files_find_other_spellings_and_hard_links(tmp_path: Path) -> None:
    src = tmp_path / "in" / "photo.png"
    src.parent.mkdir()
    src.write_bytes(b"x")
    os.link(src, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(src)
    guard = ProtectedFiles([src, tmp_path / "missing.png"])
    for same in (src, tmp_path / "in" / ".." / "in" / "photo.png", tmp_path / "hard.png", tmp_path / "soft.png"):
        assert guard.find(same) == src
    assert guard.find(tmp_path / "missing.png") == tmp_path / "missing.png"
    assert guard.find(tmp_path / "other.png") is None
    with pytest.raises(OutputError, match="inputs are never overwritten"):
        save_image(torch.zeros(1, 3, 2, 2), tmp_path / "hard.png", protected=guard, overwrite=True)
    assert src.read_bytes() == b"x"
