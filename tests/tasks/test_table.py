"""diffrestore.tasks.table: the task table, a task resolved once from its flags, its checks (one line, exit 2,
before any model loads), every task a command whose help comes from the table, and what adding a task takes
(one table entry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
import torch
from cli_support import write_image

import diffrestore
from diffrestore.cli import main
from diffrestore.errors import UsageError
from diffrestore.tasks import TASKS, TaskSpec, resolve_task, task_spec
from diffrestore.tasks.flags import Flag


def _usage(task: str, values: dict[str, Any], *, simulate: bool = False) -> str:
    with pytest.raises(UsageError) as caught:
        resolve_task(task, values, simulate=simulate)
    return str(caught.value)


def test_checks_name_the_flag_and_the_range(tmp_path) -> None:
    cases = [
        ("deblur", {"box": (1, 1, 2, 2)}, "--box only applies to inpaint, not to deblur"),
        ("denoise", {"kernel_size": 5}, "--kernel-size only applies to deblur"),
        ("denoise", {"scale": 2}, "--scale only applies to superres or hdr, not to denoise"),
        ("deblur", {"kernel_size": 4}, "--kernel-size must be an odd number, got 4"),
        ("deblur", {"kernel_size": 100001}, "--kernel-size must be at most 4095, got 100001"),
        ("deblur", {"blur": "motion", "sigma": 2.0}, "--sigma applies to --blur gaussian"),
        ("deblur", {"blur": "zoom"}, "unknown --blur 'zoom'"),
        ("hdr", {"scale": 0.5}, "--scale must be above 1, got 0.5"),
        ("superres", {"scale": 5}, "--scale 5 is not supported"),
        ("superres", {"scale": "two"}, "invalid --scale 'two'"),
        ("denoise", {"noise": "poisson", "noise_sigma": 0.1}, "--noise-sigma applies to gaussian noise"),
        ("denoise", {"noise_sigma": 3}, "--noise-sigma must be at most 1, got 3"),
        ("denoise", {"noise_sigma": "loud"}, "invalid --noise-sigma 'loud'"),
        ("inpaint", {"mask": tmp_path / "none.png"}, "mask file not found"),
        ("inpaint", {"random_fraction": 1.5}, "--random-fraction must be below 1, got 1.5"),
        ("inpaint", {"box": "1,1,2,2", "random_fraction": 0.5}, "--box and --random-fraction cannot be combined"),
        ("inpaint", {"box": "1,1,0,2"}, "invalid --box '1,1,0,2'"),
        ("inpaint", {"blend": 300}, "--blend must be at most 256, got 300"),
        ("colorize", {"oversampling": 2.0}, "--oversampling only applies to phase-retrieval"),
        ("denoise", {"noise_sgima": 0.1}, "unknown option(s): noise_sgima"),
    ]
    for task, values, message in cases:
        assert message in _usage(task, values), (task, values)
    assert "--blend applies to real inputs" in _usage("inpaint", {"blend": 4}, simulate=True)
    assert "--noise-sigma auto estimates" in _usage("denoise", {"noise_sigma": "auto"}, simulate=True)


def test_motion_kernels_below_three_pixels_are_refused_before_the_model_loads(tmp_path, monkeypatch) -> None:
    # This passed the checks and failed every image after the model loaded (exit 1).
    assert "--kernel-size for --blur motion must be at least 3, got 1" in _usage(
        "deblur", {"blur": "motion", "kernel_size": 1})
    monkeypatch.setattr("diffrestore.priors.load.load_prior", _no_model)
    image = write_image(tmp_path / "a.png", size=(16, 16))
    assert main(["deblur", str(image), "--blur", "motion", "--kernel-size", "1", "--steps", "1"]) == 2


def _no_model(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the model was loaded")


def test_names_aliases_and_defaults() -> None:
    assert task_spec("SR") is TASKS["superres"] and task_spec("phase").name == "phase-retrieval"
    with pytest.raises(UsageError, match="unknown task 'blur'"):
        task_spec("blur")
    sr = resolve_task("sr", {"scale": "2"})
    assert sr.name == "superres" and sr.params["scale"] == 2 and sr.given == {"scale"}
    assert sr.restored_size((10, 7)) == (20, 14)  # a real input is the low-resolution picture
    assert resolve_task("sr", {"scale": 2}, simulate=True).restored_size((10, 7)) == (10, 7)
    deblur = resolve_task("deblur", {})
    assert deblur.describe() == {"task": "deblur", "blur": "gaussian", "kernel_size": 61, "sigma": 3.0,
                                 "noise": "gaussian", "noise_sigma": "auto"}
    assert deblur.kernel_shape() == (61, 61) and deblur.estimates_noise
    assert resolve_task("phase-retrieval", {}).simulate  # always simulated: the file is the clean object


def test_noise_levels() -> None:
    assert resolve_task("denoise", {}, simulate=True).noise_sigma == 0.1
    assert resolve_task("inpaint", {}, simulate=True).noise_sigma == 0.025
    assert resolve_task("inpaint", {"noise_sigma": "0.01"}).noise_sigma == 0.01
    assert resolve_task("inpaint", {"noise_sigma": 0.0}).noise_model().kind == "none"
    poisson = resolve_task("inpaint", {"noise": "poisson", "poisson_rate": 50})
    assert poisson.noise_model().kind == "poisson" and not poisson.estimates_noise
    assert poisson.describe()["poisson_rate"] == 50.0


def test_every_task_is_a_command_whose_help_comes_from_the_table(capsys) -> None:
    for spec in TASKS.values():
        assert main([spec.name, "--help"]) == 0
        page = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert spec.example in page, spec.name
        for flag in spec.all_flags():
            assert flag.option in page, (spec.name, flag.option)
            if flag.default is not None and flag.show_default and flag.kind is not bool:
                assert f"Default: {flag.default}." in page, (spec.name, flag.option)


class _Negate(TaskSpec):
    """A task added by one table entry: y = -x through the existing HDR operator at gain 1 (no clipping inside
    [-1, 1]): enough to show that the engine, the API and the CLI need nothing else."""

    name = "negate-test"
    summary = "A test task."
    example = "diffrestore negate-test x.png"
    flags: ClassVar[tuple[Flag, ...]] = (Flag("gain", "--gain", float, "Gain.", default=1.5, low=1.0,
                                              low_open=True),)

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"gain": params["gain"]}

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        return "hdr", {"scale": params["gain"]}


def test_a_new_task_is_one_table_entry(monkeypatch) -> None:
    monkeypatch.setitem(TASKS, "negate-test", _Negate())
    image = torch.zeros(1, 3, 8, 8)
    result = diffrestore.restore(image, task="negate-test", gain=2.0, simulate=True, steps=2, seed=1)
    assert result.image.shape == (1, 3, 8, 8) and "psnr" in result.metrics
    with pytest.raises(UsageError, match=r"--gain must be above 1, got 0\.5"):
        diffrestore.restore(image, task="negate-test", gain=0.5)
