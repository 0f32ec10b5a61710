"""The ``--method`` names, the prior kind each one needs ("pixel", "latent" or "discrete"), and the step counts
of their presets and the most steps each takes.

A model's kind follows from its family (``ModelEntry.kind`` in the registry), so this table is the one place
that decides which methods fit which models; listing methods per entry in models.toml went stale. Kept free of
torch so ``diffrestore models`` can show it at start-up.
"""

from __future__ import annotations

#: method -> the prior kind it works with
METHOD_KINDS: dict[str, str] = {
    "dps": "pixel", "mcg": "pixel", "daps": "pixel", "mmse": "pixel", "latent-daps": "latent", "dwgf": "latent",
    "g2d2": "discrete", "fbp": "none", "sart": "none", "tv": "none",
    "zero-filled": "none", "sense": "none", "cs-wavelet": "none", "cs-tv": "none",
}
#: the classical reconstructions: no prior at all (kind "none": --model is not loaded): CT's (solvers/classical.py)
#: and MRI's (solvers/classical_mri.py)
CLASSICAL_METHODS: tuple[str, ...] = ("fbp", "sart", "tv", "zero-filled", "sense", "cs-wavelet", "cs-tv")
#: (method, prior kind) -> the method that runs: one name for an algorithm whatever space its prior works in
#: (``--method daps`` with Stable Diffusion runs LatentDAPS)
KIND_VARIANTS: dict[tuple[str, str], str] = {("daps", "latent"): "latent-daps"}
#: methods that take --prompt, --negative-prompt and --guidance (their priors may be text-conditioned)
CONDITIONED_METHODS: tuple[str, ...] = ("latent-daps", "dwgf", "g2d2")
#: g2d2's ways to the next step (--g2d2-process): the paper's star-shaped process first (the default)
G2D2_PROCESSES: tuple[str, ...] = ("star", "markov")
#: posterior samples per image when -n is not given: 1, but particle methods move several together and are
#: another algorithm with one (DWGF with one particle is RED-diff), so they default to their paper's count
DEFAULT_SAMPLES: dict[str, int] = {"dwgf": 4}
#: the methods whose config reads the run's posterior samples per image (``num_samples``, set from -n by
#: ``sample_settings``): DAPS takes its inner target's mean for one sample and draws it for several
#: (tests/solvers/test_methods.py keeps this equal to the configs with that field)
SAMPLE_COUNT_METHODS: tuple[str, ...] = ("daps",)
#: the --preset names every method accepts (each solver's ``presets`` table has exactly these keys)
PRESET_NAMES: tuple[str, ...] = ("paper", "fast")
#: method -> preset -> solver steps, as the solvers' presets say (tests/solvers/test_methods.py keeps them equal): here
#: so that --help can show each default without importing torch
PRESET_STEPS: dict[str, dict[str, int]] = {
    "daps": {"fast": 100, "paper": 200},
    "dps": {"fast": 100, "paper": 1000},
    "mcg": {"fast": 100, "paper": 1000},
    "mmse": {"fast": 1, "paper": 1},
    "latent-daps": {"fast": 25, "paper": 50},
    "dwgf": {"fast": 100, "paper": 998},
    "g2d2": {"fast": 25, "paper": 100},
    "fbp": {"fast": 1, "paper": 1},
    "sart": {"fast": 5, "paper": 5},
    "tv": {"fast": 100, "paper": 100},
    "zero-filled": {"fast": 1, "paper": 1},
    "sense": {"fast": 50, "paper": 50},
    "cs-wavelet": {"fast": 100, "paper": 100},
    "cs-tv": {"fast": 200, "paper": 200},
}
#: method -> preset -> classifier-free guidance scale on text-conditioned models, as the solvers' presets say
#: (``default_guidance``; tests/cli/test_flags.py keeps them equal): here so that --help can show them
PRESET_GUIDANCE: dict[str, dict[str, float]] = {
    "latent-daps": {"fast": 1.0, "paper": 7.5},
    "dwgf": {"fast": 1.0, "paper": 1.0},
    "g2d2": {"fast": 1.0, "paper": 5.0},
}
#: the most --steps each method takes. DPS and MCG walk the respaced timesteps of a 1000-step DDPM schedule, so
#: more steps than it has do not exist; DAPS's annealing grid could be finer, but 50 times the paper's 200 steps
#: is already days of network calls on any device; MMSE is one denoiser call; DWGF takes one Adam step per
#: timestep of a 1000-step model but the first and last (999 .. 2).
MAX_STEPS: dict[str, int] = {"daps": 10000, "dps": 1000, "mcg": 1000, "mmse": 1, "latent-daps": 10000,
                             "dwgf": 998, "g2d2": 100, "fbp": 1, "sart": 1000, "tv": 10000,
             "zero-filled": 1, "sense": 10000, "cs-wavelet": 10000, "cs-tv": 10000}


def resolve_method(method: str, kind: str | None) -> str:
    """The method that runs for ``--method`` on a prior of ``kind`` (None: not known yet): the kind's variant
    of the algorithm where it has one (daps on a latent prior is latent-daps), else the method itself."""
    return KIND_VARIANTS.get((method, kind or ""), method)


def sample_settings(method: str, num_samples: int) -> dict[str, int]:
    """The solver setting that tells ``method`` the run's samples per image, for the methods that read it
    (``SAMPLE_COUNT_METHODS``); none for the others."""
    return {"num_samples": int(num_samples)} if method in SAMPLE_COUNT_METHODS else {}


def methods_for_kind(kind: str) -> tuple[str, ...]:
    """The methods that can use a prior of ``kind``, sorted; empty when none does (yet)."""
    return tuple(sorted(name for name, needs in METHOD_KINDS.items() if needs == kind))


__all__ = [
    "CLASSICAL_METHODS", "CONDITIONED_METHODS", "DEFAULT_SAMPLES", "G2D2_PROCESSES", "KIND_VARIANTS", "MAX_STEPS",
    "METHOD_KINDS",
    "PRESET_GUIDANCE", "PRESET_NAMES", "PRESET_STEPS", "SAMPLE_COUNT_METHODS", "methods_for_kind",
    "resolve_method", "sample_settings",
]
