"""diffrestore.cli.flags: the shared flags' help states what the methods really do (from the torch-free method
table, which these tests keep equal to the solvers' presets)."""

from __future__ import annotations

from diffrestore.cli import main
from diffrestore.solvers import get_solver
from diffrestore.solvers.methods import CONDITIONED_METHODS, PRESET_GUIDANCE, PRESET_NAMES


def test_preset_guidance_is_the_solvers_default_guidance() -> None:
    assert set(PRESET_GUIDANCE) == set(CONDITIONED_METHODS)
    for method, per_preset in PRESET_GUIDANCE.items():
        assert set(per_preset) == set(PRESET_NAMES), method
        for preset, scale in per_preset.items():
            assert float(get_solver(method, preset).config.default_guidance) == scale, (method, preset)


def test_guidance_help_names_each_methods_default(capsys) -> None:
    assert main(["inpaint", "--help"]) == 0
    page = " ".join(capsys.readouterr().out.replace("│", " ").split())
    # It said "7.5 with --preset paper, 1 with fast" for every method; G2D2's paper scale is 5 and DWGF's 1.
    assert "latent-daps 1 (fast) / 7.5 (paper), dwgf 1, g2d2 1 (fast) / 5 (paper)" in page
