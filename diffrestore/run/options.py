"""The run's options (``RunOptions``, one field per flag of a restoration command besides the task's own, as
``run.flags`` declares them) and ``check_run_options``, every check that needs nothing but these flags: each
value against its declaration (ranges, choices), then the combinations. No torch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..solvers.methods import DEFAULT_SAMPLES, MAX_STEPS, PRESET_STEPS
from .flags import DEFAULT_METRICS, RUN_FLAG_BY_NAME, RUN_FLAGS
from .runtime import check_device_name, check_dtype_name

if TYPE_CHECKING:
    from ..split.shards import Shard

@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides the task's own flags; the CLI's flags with the same names. Read-only: what
    a run derives from them (the task, the method that runs, the sample count) lives in ``preflight.Job``."""

    task: str
    method: str = "daps"
    model: str | None = None  # None: the task's own default prior (TaskSpec.default_model)
    preset: str = "fast"
    steps: int | None = None
    seed: int = 0
    num_samples: int | None = None  # None: the method's default (methods.DEFAULT_SAMPLES, else 1)
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 4
    output: Path | None = None
    suffix: str | None = None
    overwrite: bool = False
    skip_existing: bool = False
    json_output: bool = False
    quiet: bool = False
    progress: str = "auto"
    fail_fast: bool = False
    simulate: bool = False
    metrics: str | tuple[str, ...] | None = None  # --metrics: names (text or a sequence); None = DEFAULT_METRICS
    recursive: bool = False
    offline: bool | None = None
    include_outputs: bool = False  # also restore folder files named like this command's outputs
    registry: Path | None = None  # a models.toml to use instead of the shipped one
    prompt: str | None = None  # text-conditioned priors: None = the model's default prompt
    negative_prompt: str | None = None
    guidance: float | None = None  # classifier-free guidance scale; None = the method's preset
    tile_overlap: int | None = None  # fixed-size priors: window overlap in pixels; None = a quarter of the window
    g2d2_process: str | None = None  # --method g2d2: "star" or "markov"; None = the solver's (star)
    solver_options: dict[str, Any] = field(default_factory=dict)  # --set KEY=VALUE: solver hyper-parameters
    shard: str | None = None  # --shard I/N: restore the I-th of N parts of the inputs (shards.py)
    summary_file: Path | None = None  # --summary FILE: the JSON summary written to a file (summaries.py)
    sharding: Shard | None = None  # this process's part of a split run (split.distributed gives it, not a flag)

    def __post_init__(self) -> None:
        if self.model is None:  # filled once here, so every reader of ``model`` sees a name
            from ..tasks.table import TASK_ALIASES, TASKS

            key = str(self.task).strip().lower()
            spec = TASKS.get(TASK_ALIASES.get(key, key))
            object.__setattr__(self, "model", spec.default_model if spec is not None else "builtin")


def samples_per_image(opts: RunOptions) -> int:
    """-n, or the method's default when it is not given (methods.DEFAULT_SAMPLES: dwgf 4, the others 1)."""
    return int(opts.num_samples) if opts.num_samples is not None else DEFAULT_SAMPLES.get(opts.method, 1)


def run_metrics(opts: RunOptions) -> tuple[str, ...]:
    """The metric names --simulate scores: --metrics parsed (UsageError for an unknown name), else the default."""
    if opts.metrics is None:
        return DEFAULT_METRICS
    return RUN_FLAG_BY_NAME["metrics"].check(opts.metrics)


def check_steps(method: str, steps: int | None) -> None:
    """UsageError for more --steps than ``method`` takes (methods.MAX_STEPS)."""
    limit = MAX_STEPS.get(method)
    if steps is not None and limit is not None and steps > limit:
        raise UsageError(f"--steps {steps} is more than method {method} takes: at most {limit}",
                         hint=f"the paper preset uses {PRESET_STEPS[method]['paper']}")


def check_run_options(opts: RunOptions) -> None:
    """Every check that needs nothing but the run's flags: each value against its declaration in ``RUN_FLAGS``
    (ranges, choices), then the combinations."""
    if opts.overwrite and opts.skip_existing:
        raise UsageError("--overwrite and --skip-existing cannot be combined")
    for flag in RUN_FLAGS:
        if flag.repeat:
            continue  # --set pairs are the solver's to check (run.solver_settings)
        flag.check(samples_per_image(opts) if flag.name == "num_samples" else getattr(opts, flag.name))
    if opts.suffix is not None and ("/" in opts.suffix or os.sep in opts.suffix):
        raise UsageError(f"--suffix '{opts.suffix}' must not contain a path separator")
    # Names only, torch-free: whether the device exists here is runtime.resolve_device's to say, later.
    check_dtype_name(opts.dtype, check_device_name(opts.device))
