"""Matching restored files to references by name (one rule, or an exact --suffix)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import write_image

from diffrestore.errors import UsageError
from diffrestore.run.eval_folders import match_reference, pair_folders

REFS = {stem: Path(f"{stem}.png") for stem in ("photo", "photo_2", "cat")}


@pytest.mark.parametrize(("stem", "suffix", "expected"), [
    ("photo", None, "photo"),
    ("photo_inpaint", None, "photo"),
    ("photo_2_inpaint", None, "photo_2"),  # the longest reference stem wins
    ("photo_2", None, "photo_2"),
    ("photograph", None, None),  # a prefix must end at an underscore
    ("dog_inpaint", None, None),
    ("photo_inpaint", "_inpaint", "photo"),
    ("photo_2_inpaint", "_inpaint", "photo_2"),
    ("photo_daps", "_inpaint", None),
    ("cat", "", "cat"),
])
def test_match_reference(stem, suffix, expected) -> None:
    found = match_reference(stem, REFS, suffix)
    assert (found.stem if found else None) == expected


def test_pairs_leave_out_per_sample_files_and_name_columns_after_folders(tmp_path) -> None:
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "ref" / name)
    for name in ("a_x.png", "a_x_s1.png", "a_x_std.png", "b_x.png"):
        write_image(tmp_path / "daps" / name)
    notes = []
    labels, pairs = pair_folders([tmp_path / "daps"], tmp_path / "ref", note=notes.append)
    assert labels == ["daps"]
    assert [(p.restored.name, p.reference.name) for p in pairs] == [("a_x.png", "a.png"), ("b_x.png", "b.png")]
    assert notes and "left out 2" in notes[0]


def test_two_files_for_one_reference_are_refused(tmp_path) -> None:
    write_image(tmp_path / "ref" / "a.png")
    write_image(tmp_path / "mixed" / "a_daps.png")
    write_image(tmp_path / "mixed" / "a_dps.png")
    with pytest.raises(UsageError, match="both match the reference"):
        pair_folders([tmp_path / "mixed"], tmp_path / "ref")
