"""Fail fast: every error that needs no model and no tensor comes before torch is imported (a bad flag costs a
fraction of a second, not the seconds torch takes to load).

Each case runs the real command in a subprocess under ``python -X importtime``, which lists every module the
process imported on stderr: torch must not be among them, and what is left of stderr must be the one error line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import write_image

IMG = "photo.png"
BOX = ["--box", "2,2,4,4"]

#: (argv, exit code, a part of the message)
CASES: list[tuple[list[str], int, str]] = [
    (["inpaint", IMG, *BOX, "--method", "foo"], 2, "unknown --method 'foo'"),
    (["inpaint", IMG, *BOX, "--device", "tpu"], 2, "unknown --device 'tpu'"),
    (["inpaint", IMG, *BOX, "--device", "cuda:x"], 2, "unknown --device 'cuda:x'"),
    (["inpaint", IMG, *BOX, "--dtype", "fp64"], 2, "unknown --dtype 'fp64'"),
    (["inpaint", IMG, *BOX, "--device", "cpu", "--dtype", "fp16"], 2, "fp16 is not supported on the CPU"),
    (["inpaint", IMG, *BOX, "--preset", "x"], 2, "unknown --preset 'x'"),
    (["inpaint", IMG, *BOX, "--steps", "0"], 2, "--steps must be at least 1"),
    (["inpaint", IMG, *BOX, "--method", "dps", "--steps", "5000"], 2, "at most 1000"),
    (["inpaint", IMG, *BOX, "-n", "0"], 2, "--num-samples must be at least 1"),
    (["inpaint", "missing.png", *BOX], 2, "missing.png"),
    (["inpaint", IMG, "--box", "1,1,4"], 2, "invalid --box '1,1,4'"),
    (["inpaint", IMG, *BOX, "--overwrite", "--skip-existing"], 2, "cannot be combined"),
    (["inpaint", IMG, *BOX, "--random-fraction", "0.5"], 2, "cannot be combined"),
    (["inpaint", IMG, *BOX, "--prompt", "a cat"], 2, "takes no prompt"),
    (["inpaint", IMG, *BOX, "--g2d2-process", "star"], 2, "--g2d2-process"),
    (["inpaint", IMG, *BOX, "--model", "no-such-model"], 3, "unknown model 'no-such-model'"),
    (["inpaint", IMG, *BOX, "-o", "afile/out.png"], 2, "is a file, not a folder"),
    (["superres", IMG, "--scale", "5"], 2, "--scale 5 is not supported"),
    (["denoise", "existing.png"], 2, "already exists"),
    (["train", "data", "--out", "m", "--lr", "nan"], 2, "--lr must be a finite number above 0"),
    (["train", "data", "--out", "m", "--lr=-1"], 2, "--lr must be a finite number above 0"),
    (["train", "data", "--out", "m", "--device", "tpu"], 2, "unknown --device 'tpu'"),
    (["train", "data", "--out", "afile"], 2, "is a file, not a folder"),
    (["train", "no-data", "--out", "m"], 2, "does not exist"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fail-fast")
    write_image(folder / IMG)
    write_image(folder / "existing.png")
    write_image(folder / "existing_denoise.png")  # the output of 'denoise existing.png' is there already
    for i in range(2):
        write_image(folder / "data" / f"p{i}.png", seed=i, size=(32, 32))
    (folder / "afile").write_text("a file, not a folder")
    return folder


def run_traced(argv: list[str], cwd: Path) -> tuple[int, list[str], set[str]]:
    """(exit code, stderr without the import-time lines, the modules imported) of the real command."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "diffrestore.cli", *argv], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return result.returncode, [line for line in lines if not line.startswith("import time:")], imported


@pytest.mark.parametrize("argv, code, message", CASES, ids=[" ".join(case[0]) for case in CASES])
def test_errors_that_need_no_model_come_before_torch(workdir, argv, code, message) -> None:
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    returncode, err, imported = run_traced(argv, workdir)
    assert returncode == code, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert "torch" not in imported, f"{argv}: torch imported before the error"
    assert "diffusers" not in imported
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before  # nothing written


def test_the_trace_sees_torch_when_it_is_imported(workdir) -> None:
    """The check above can fail: a run that gets as far as the solver does import torch."""
    _, _, imported = run_traced(["inpaint", IMG, *BOX, "--set", "no_such_setting=1"], workdir)
    assert "torch" in imported


def test_a_cuda_device_on_a_machine_without_one_fails_before_any_model_loads(workdir) -> None:
    """Whether CUDA is there needs torch, so this one may import it, but it still stops before the model."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    returncode, err, imported = run_traced(["inpaint", IMG, *BOX, "--device", "cuda"], workdir)
    assert returncode == 2 and err == ["error: device 'cuda' is not available on this machine (use --device cpu)"]
    assert "diffrestore.priors.builtin" not in imported  # no prior was built
