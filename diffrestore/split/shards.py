"""Which of a folder's images this process restores, when many processes share one run (no torch here).

Three launchers split a run, and they compose:

- ``--shard I/N`` (1-based, explicit) or a Slurm array job (``SLURM_ARRAY_TASK_ID`` within
  ``SLURM_ARRAY_TASK_MIN``, ``_MAX``, ``_STEP`` and ``_COUNT``) pick the *outer* shard; ``--shard`` wins over
  Slurm, and ``--shard 1/1`` turns a Slurm array's split off (an array whose tasks restore different folders);
- ``torchrun`` and ``accelerate launch`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``) make a *world*
  of processes that split the outer shard's images again and talk over torch.distributed (``distributed.py``).

The split is round-robin over the planned inputs in their planned order (folders sorted, arguments in order):
image k of M goes to part ``k mod P`` of the P = outer count x world size parts, part ``outer index x world
size + rank``. It is a function of the input list alone, never of which outputs exist, so every process, and a
rerun with ``--skip-existing`` days later, agrees on who restores what. Files named like this command's outputs
are no inputs of a sharded run: they appear while it runs, and counting them would shift the split.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import UsageError


class Item(Protocol):
    """What the split reads and writes of a planned input (``run.plan.Item``)."""

    index: int
    input: Path
    output: Path
    shard: str | None
    rank: int | None

    @property
    def looks_like_output(self) -> bool: ...

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Outer:
    """An outer shard: ``index`` of ``count`` (0-based index; shown 1-based), and where it came from."""

    index: int
    count: int
    source: str  # "--shard" | "slurm"

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"


@dataclass(frozen=True)
class World:
    """The torch.distributed processes of one launch: this process's global and local rank."""

    rank: int
    size: int
    local_rank: int


@dataclass
class Shard:
    """This process's part of the run, and what planning found (``total`` images, ``digest`` of their list)."""

    outer: Outer | None = None
    world: World | None = None
    on_planned: Callable[[int, str], None] | None = None  # the world checks every process planned the same
    total: int | None = None
    digest: str | None = None
    output_like: int = 0  # folder files named like outputs, left out of the split
    notes: list[str] = field(default_factory=list)

    @property
    def parts(self) -> int:
        return (self.outer.count if self.outer else 1) * (self.world.size if self.world else 1)

    @property
    def part(self) -> int:
        world_size, rank = (self.world.size, self.world.rank) if self.world else (1, 0)
        return (self.outer.index if self.outer else 0) * world_size + rank

    @property
    def split(self) -> bool:
        """A shard was named (even 1/1, whose summary can still be merged) or a world launched."""
        return self.outer is not None or self.world is not None

    def select(self, items: list[Item]) -> list[Item]:
        """This process's items; the inputs are renumbered 0..M-1 first (the split's positions), output-like
        files dropped and counted."""
        inputs = [item for item in items if not item.looks_like_output]
        self.output_like = len(items) - len(inputs)
        for position, item in enumerate(inputs):
            item.index = position
            item.shard = self.outer.label if self.outer else None
            item.rank = self.world.rank if self.world else None
        self.total = len(inputs)
        self.digest = plan_digest(inputs)
        if self.on_planned is not None:
            self.on_planned(self.total, self.digest)
        return [item for item in inputs if item.index % self.parts == self.part]

    def info(self) -> dict:
        """The summary's description of the split."""
        data: dict = {"items_total": self.total}
        if self.outer:
            data["shard"] = {"index": self.outer.index + 1, "count": self.outer.count, "source": self.outer.source}
        if self.world:
            data["world_size"] = self.world.size
        return data


def plan_digest(items: list[Item]) -> str:
    """A digest of the planned list (inputs and outputs, in order): equal in processes that agree on the split."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.input}\0{item.output}\n".encode())
    return digest.hexdigest()[:16]


def parse_shard(text: str) -> Outer:
    """``--shard I/N`` with 1 <= I <= N; UsageError otherwise."""
    found = _SHARD.match(text or "")
    if not found:
        raise UsageError(f"--shard '{text}' is not I/N", hint="give the part and the count, e.g. --shard 2/8")
    index, count = int(found.group(1)), int(found.group(2))
    if count < 1:
        raise UsageError(f"--shard {text}: the count must be at least 1", hint="e.g. --shard 2/8")
    if not 1 <= index <= count:
        raise UsageError(f"--shard {text}: the part must be between 1 and the count {count}",
                         hint=f"use --shard 1/{count} .. {count}/{count}")
    return Outer(index - 1, count, "--shard")


def slurm_array(environ: Mapping[str, str]) -> Outer | None:
    """The outer shard of a Slurm array task, or None outside one. Task ids must form a regular range
    (``--array=0-9``, ``1-100:2``); an irregular list cannot be numbered and is a usage error."""
    task_id, count = environ.get("SLURM_ARRAY_TASK_ID"), environ.get("SLURM_ARRAY_TASK_COUNT")
    if task_id is None or count is None:
        return None
    try:
        tid, n = int(task_id), int(count)
        low = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except ValueError:
        raise UsageError(f"cannot read the Slurm array task (SLURM_ARRAY_TASK_ID={task_id}, "
                         f"SLURM_ARRAY_TASK_COUNT={count})", hint="give --shard I/N explicitly") from None
    high = int(environ.get("SLURM_ARRAY_TASK_MAX", str(low + (n - 1) * step)) or 0)
    index, rest = divmod(tid - low, max(step, 1))
    # A list (--array=1,2,7) reports step 1 and its largest id: only a range spans (count - 1) steps exactly, and
    # checking it in every task stops them all, not only the one whose id falls outside.
    if rest or not 0 <= index < n or high - low != (n - 1) * step:
        raise UsageError(f"Slurm array task {tid} is not part of a regular range of {n} tasks ({low} to {high})",
                         hint="use --array=A-B[:S], or give --shard I/N explicitly")
    return Outer(index, n, "slurm")


def torch_world(environ: Mapping[str, str]) -> World | None:
    """The world of a torchrun / accelerate launch (more than one process), or None."""
    try:
        size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers",
                         hint="launch with torchrun or accelerate launch") from None
    if size <= 1:
        return None
    if "MASTER_ADDR" not in environ or "MASTER_PORT" not in environ:
        raise UsageError(f"WORLD_SIZE={size} without MASTER_ADDR and MASTER_PORT",
                         hint="launch with torchrun or accelerate launch, which set them")
    if not 0 <= rank < size:
        raise UsageError(f"RANK={rank} is outside WORLD_SIZE={size}")
    return World(rank, size, local)


def launch_shard(flag: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """This process's shard from ``--shard``, Slurm's array variables and the torch.distributed launch."""
    environ = os.environ if environ is None else environ
    shard = Shard(world=torch_world(environ))
    if flag is not None:
        shard.outer = parse_shard(flag)
    else:
        shard.outer = slurm_array(environ)
        if shard.outer is not None and shard.outer.count > 1:
            shard.notes.append(f"note: Slurm array task {shard.outer.label}: restoring that shard of the inputs "
                               "(--shard 1/1 restores them all)")
    return shard
