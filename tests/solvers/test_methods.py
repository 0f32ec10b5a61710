"""The torch-free method table (diffrestore/methods.py) says what the solvers do: the --help text is built from it
without importing torch, so it must not drift from the solvers' own presets and limits."""

from __future__ import annotations

import pytest

from diffrestore import registry as reg
from diffrestore.errors import UsageError
from diffrestore.solvers import get_solver, solver_class
from diffrestore.solvers.methods import (
    MAX_STEPS,
    METHOD_KINDS,
    PRESET_NAMES,
    PRESET_STEPS,
    SAMPLE_COUNT_METHODS,
    methods_for_kind,
    sample_settings,
)


def test_preset_steps_are_the_solvers_presets() -> None:
    assert set(PRESET_STEPS) == set(METHOD_KINDS)
    for method, per_preset in PRESET_STEPS.items():
        assert set(per_preset) == set(PRESET_NAMES), method
        for preset, steps in per_preset.items():
            assert int(get_solver(method, preset).config.steps) == steps, (method, preset)


def test_the_step_limits_are_what_the_schedules_take() -> None:
    from diffrestore.solvers.base import ddpm_sigmas

    assert set(MAX_STEPS) == set(METHOD_KINDS)
    for method in ("dps", "mcg"):  # respaced DDPM timesteps: no more steps than the schedule has
        assert len(ddpm_sigmas(MAX_STEPS[method])) == MAX_STEPS[method] + 1
        with pytest.raises(UsageError):
            ddpm_sigmas(MAX_STEPS[method] + 1)
    assert MAX_STEPS["mmse"] == 1
    assert MAX_STEPS["daps"] >= 10 * PRESET_STEPS["daps"]["paper"]


def test_methods_for_kind() -> None:
    assert methods_for_kind("pixel") == ("daps", "dps", "mcg", "mmse")
    assert methods_for_kind("latent") == ("dwgf", "latent-daps") and methods_for_kind("discrete") == ("g2d2",)
    assert methods_for_kind("no-such-kind") == ()
    # every method fits some family, but the classical CT reconstructions, which take no prior at all
    assert set(METHOD_KINDS.values()) - {"none"} <= set(reg.FAMILY_KINDS.values())
    assert methods_for_kind("none") == ("cs-tv", "cs-wavelet", "fbp", "sart", "sense", "tv", "zero-filled")


def test_every_method_has_a_kind() -> None:
    kinds = ("pixel", "latent", "discrete", "none")
    assert set().union(*(methods_for_kind(kind) for kind in kinds)) == set(METHOD_KINDS)
    assert methods_for_kind("latent") == ("dwgf", "latent-daps")
    assert methods_for_kind("discrete") == ("g2d2",)


def test_the_methods_told_the_sample_count_are_those_whose_config_reads_it() -> None:
    """-n reaches a solver's config only where it has the field (preflight passes ``sample_settings``): DAPS,
    whose inner step is the mean for one sample and a draw for several."""
    reads = {m for m in METHOD_KINDS if "num_samples" in solver_class(m).config_class.__dataclass_fields__}
    assert set(SAMPLE_COUNT_METHODS) == reads == {"daps"}
    assert sample_settings("daps", 4) == {"num_samples": 4} and sample_settings("dps", 4) == {}
