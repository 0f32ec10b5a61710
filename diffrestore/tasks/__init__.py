"""Restoration tasks as values: the task table (``table``), one spec per task (``photo``: inpaint, superres,
deblur, denoise, colorize, phase-retrieval, hdr), each resolved once from a run's flags into an immutable ``Task``
(``spec``); the flags declared once (``flags``); inpainting masks (``masks``), known pixels kept on real inputs
(``known_pixels``) and the noise level of a real input (``noise_estimate``).

    task = resolve_task("deblur", {"blur": "motion", "kernel_size": 31}, simulate=True)
    task.restored_size((64, 48)); task.describe(); task.operator((3, 48, 64), seed=0)
"""

from .flags import Flag
from .masks import MaskSource, parse_box
from .spec import Task, TaskSpec
from .table import TASK_ALIASES, TASK_NAMES, TASKS, resolve_task, task_spec

__all__ = ["TASKS", "TASK_ALIASES", "TASK_NAMES", "Flag", "MaskSource", "Task", "TaskSpec", "parse_box",
           "resolve_task", "task_spec"]
