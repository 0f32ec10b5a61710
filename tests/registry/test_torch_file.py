"""read_torch_file: the one reader of published .pt / .pth weights says the same for every family."""

from __future__ import annotations

import pytest
import torch

from diffrestore.errors import ModelError
from diffrestore.registry.torch_file import read_torch_file


class Gadget:
    """Any class: torch.load(weights_only=False) would import and build it."""


def test_tensors_and_containers_are_read_onto_the_cpu(tmp_path) -> None:
    torch.save({"model": {"w": torch.ones(2, 3)}, "step": 7}, tmp_path / "ok.pt")
    state = read_torch_file(tmp_path / "ok.pt", "test weights")
    assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.ones(2, 3))


def test_a_missing_file_names_the_download(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"test weights '.*gone\.pt' is missing") as error:
        read_torch_file(tmp_path / "gone.pt", "test weights", model="some-model")
    assert "diffrestore models download some-model" in error.value.hint


def test_a_damaged_file_is_one_line_naming_a_fresh_download(tmp_path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(ModelError, match="cannot be read as a tensor file") as error:
        read_torch_file(tmp_path / "bad.pt", "test weights", model="some-model")
    assert "\n" not in str(error.value) and "--force" in error.value.hint


def test_a_file_that_would_run_code_is_refused(tmp_path) -> None:
    """A pickled object of an arbitrary class (its code would run on unpickling) is not unpickled."""
    torch.save(Gadget(), tmp_path / "code.pt")
    with pytest.raises(ModelError, match="cannot be read as a tensor file"):
        read_torch_file(tmp_path / "code.pt", "test weights")
