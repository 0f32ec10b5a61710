"""check_run_options refuses unknown --method, --device and --dtype names itself, torch-free (the checks that
once waited for the solver or torch.device), and lets every spelling a run can use through."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffrestore.errors import DeviceError, UsageError
from diffrestore.run.options import RunOptions, check_run_options
from diffrestore.run.runtime import check_device_name, check_dtype_name
from diffrestore.solvers.methods import METHOD_KINDS


@pytest.mark.parametrize("field, value, message", [
    ("method", "foo", "unknown --method 'foo' (use dps, mcg, daps, mmse, latent-daps, dwgf, g2d2, fbp, sart, tv, "
                        "zero-filled, sense, cs-wavelet or cs-tv)"),
    ("method", "DAPS", "unknown --method 'DAPS'"),
    ("device", "tpu", "unknown --device 'tpu' (use auto, cpu, cuda, cuda:N or mps)"),
    ("device", "cuda:", "unknown --device 'cuda:'"),
    ("device", "cuda:-1", "unknown --device 'cuda:-1'"),
    ("device", "cuda:0:1", "unknown --device 'cuda:0:1'"),
    ("device", "xpu", "unknown --device 'xpu'"),
    ("dtype", "fp64", "unknown --dtype 'fp64' (use one of auto, fp32, fp16, bf16)"),
    ("dtype", "float16", "unknown --dtype 'float16'"),
])
def test_unknown_names_are_usage_errors(field, value, message) -> None:
    with pytest.raises(UsageError) as caught:
        check_run_options(RunOptions(task="denoise", **{field: value}))
    assert str(caught.value) == message if "(" in message else str(caught.value).startswith(message)
    assert caught.value.exit_code == 2


def test_fp16_on_a_device_named_cpu_is_refused_without_torch() -> None:
    for device in ("cpu", "CPU", "cpu:0"):
        with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
            check_run_options(RunOptions(task="denoise", device=device, dtype="fp16"))
    check_run_options(RunOptions(task="denoise", device="cuda", dtype="fp16"))  # cuda may have it: torch says


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", " CUDA:1 ", "cpu:0", "mps:0"])
def test_every_usable_device_spelling_passes(name) -> None:
    assert check_device_name(name) == name.strip().lower()
    check_run_options(RunOptions(task="denoise", device=name))


def test_every_method_and_dtype_passes() -> None:
    for method in METHOD_KINDS:
        check_run_options(RunOptions(task="denoise", method=method))
    for dtype in ("auto", "fp32", "fp16", "bf16", "BF16"):
        assert check_dtype_name(dtype) == dtype.lower()


def test_the_checks_import_no_torch() -> None:
    code = ("import sys\n"
            "from diffrestore.errors import UsageError\n"
            "from diffrestore.run.options import RunOptions, check_run_options\n"
            "for bad in ({'method': 'foo'}, {'device': 'tpu'}, {'dtype': 'fp64'}):\n"
            "    try:\n"
            "        check_run_options(RunOptions(task='denoise', **bad))\n"
            "    except UsageError:\n"
            "        pass\n"
            "    else:\n"
            "        raise SystemExit('not refused: ' + repr(bad))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_model_defaults_to_the_task_s_own_prior(monkeypatch) -> None:
    """No --model: the task's table entry names the prior (CT and MRI ship their own); a given one wins."""
    from diffrestore.tasks.table import TASKS

    assert RunOptions(task="denoise").model == "builtin"
    monkeypatch.setattr(type(TASKS["ct"]), "default_model", "some-ct-prior")
    assert RunOptions(task="ct").model == "some-ct-prior"
    assert RunOptions(task="CT").model == "some-ct-prior"
    assert RunOptions(task="ct", model="builtin").model == "builtin"
