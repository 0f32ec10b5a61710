"""A run split over processes: ``--shard I/N``, Slurm arrays, and torchrun / accelerate worlds.

Each process plans the same input list and keeps its part (``shards.py``); results do not depend on the process
(every image's random streams come from the seed and its own pixels), so the outputs are bitwise a single
process's on the CPU. Outer shards (``--shard``, Slurm) share nothing: each writes its own summary, and
``diffrestore summary merge`` joins them. A torchrun / accelerate world talks over torch.distributed: the
process group (gloo on the CPU, nccl on CUDA, one device per LOCAL_RANK) checks at planning that every process
planned the same list, and the launcher's key-value store carries each process's finished images, output lines
and notes to rank 0, which alone prints progress and results for the whole world and writes the one summary.

Faults: outputs are written atomically, each image by the one process that owns it, so a process that dies
loses only its unfinished images, and the same command with ``--skip-existing`` finishes them. torchrun stops
every process when one fails, so the others exit 0 when their part ran (their failed images are counted in
rank 0's summary and exit code), and rank 0, which waits for them, exits last with the code of the whole world.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DiffrestoreError, UsageError
from ..run.progress import Reporter, make_reporter
from .shards import Shard, World, launch_shard
from .summaries import check_summary_file, merge_parts, summary_exit_code, summary_line

if TYPE_CHECKING:
    from ..run.options import RunOptions
    from ..run.plan import Item, RunSummary

#: how often rank 0 reads the others' events while it restores (at most) and while it waits for them
POLL_SECONDS = 0.5
WAIT_POLL_SECONDS = 0.1
#: how long the processes may take to reach planning together (model downloads come after it)
PLAN_TIMEOUT = timedelta(minutes=30)


def run(inputs: list[str], opts: RunOptions, task_values: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """The CLI's run: (the summary document this process prints and writes, or None, and its exit code).
    ``task_values``: the task's flags (name -> value, None = not given)."""
    from ..run import engine

    shard = launch_shard(opts.shard)
    if opts.summary_file is not None:
        check_summary_file(Path(opts.summary_file))
    if shard.world is None:
        opts = dataclasses.replace(opts, sharding=shard if shard.split else None)
        reporter = make_reporter(opts)
        for note in shard.notes:
            reporter.message(note)
        summary = engine.run(inputs, opts, task_values, reporter=reporter)
        if shard.split:
            _describe(summary, shard)
            _note_output_like(reporter, shard)
        return summary.to_json(), summary.exit_code
    return _run_world(inputs, opts, task_values, shard)


def _note_output_like(reporter: Reporter, shard: Shard) -> None:
    if shard.output_like:
        reporter.message(f"note: left out {shard.output_like} file(s) named like outputs of this command: a split "
                         "run never restores them")


# ------------------------------------------------------------------------------------------ one torch world


def _world_device(name: str, world: World) -> str:
    """``auto`` / ``cuda`` -> ``cuda:LOCAL_RANK`` when CUDA is there; an explicit ``cuda:N``, cpu or mps as given."""
    import torch

    if name.strip().lower() not in ("auto", "cuda") or not torch.cuda.is_available():
        return name
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise UsageError(f"LOCAL_RANK {world.local_rank} has no GPU: this machine has {count} CUDA device(s)",
                         hint=f"launch at most {count} processes per node (torchrun --nproc-per-node {count})")
    torch.cuda.set_device(world.local_rank)
    return f"cuda:{world.local_rank}"


class Session:
    """This process's membership of the world: the process group and the event store."""

    def __init__(self, world: World, device: str) -> None:
        import torch.distributed as dist

        self.world = world
        backend = "nccl" if device.startswith("cuda") else "gloo"
        try:
            store, rank, size = next(dist.rendezvous("env://", timeout=PLAN_TIMEOUT))
            dist.init_process_group(backend, store=dist.PrefixStore("process-group", store), rank=rank,
                                    world_size=size, timeout=PLAN_TIMEOUT)
        except (RuntimeError, ValueError, OSError) as error:  # torch's DistStoreError / DistNetworkError too
            address = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
            raise DiffrestoreError(f"rank {world.rank} cannot join the other processes at {address} ({backend}): "
                                   f"{' '.join(str(error).split())[:200]}",
                                   hint="launch every process with the same torchrun / accelerate command") from None
        self.store = dist.PrefixStore("diffrestore", store)
        self.sent = 0
        self.lost: str | None = None  # why posting stopped working (the store went away)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def agree_on_plan(self, total: int, digest: str) -> None:
        """Every process must plan the same list, or the split would restore some images twice and others never."""
        import torch.distributed as dist

        views: list[Any] = [None] * self.world.size
        dist.all_gather_object(views, (total, digest))
        if any(view != views[0] for view in views):
            counts = ", ".join(f"rank {r}: {view[0]} image(s)" for r, view in enumerate(views))
            raise UsageError(f"the processes planned different inputs ({counts})",
                             hint="every process must see the same files: give them one shared folder")

    def post(self, kind: str, **data: Any) -> None:
        """An event for rank 0, in order. A store that went away (the launcher is stopping the world) ends
        posting, not the run: this process's outputs are still written."""
        if self.lost:
            return
        rank = self.world.rank
        try:
            self.store.set(f"event/{rank}/{self.sent}", json.dumps({"kind": kind, **data}))
            self.sent += 1
            self.store.add(f"count/{rank}", 1)
        except Exception as error:  # DistStoreError, DistNetworkError, RuntimeError: torch's store errors
            self.lost = f"{type(error).__name__}: {error}"

    def receive(self, seen: dict[int, int]) -> list[tuple[int, dict[str, Any]]]:
        """The events the other ranks posted since ``seen`` (updated), oldest first; read keys are deleted."""
        events = []
        for rank in range(1, self.world.size):
            count = int(self.store.add(f"count/{rank}", 0))
            for k in range(seen.get(rank, 0), count):
                key = f"event/{rank}/{k}"
                events.append((rank, json.loads(self.store.get(key))))
                self.store.delete_key(key)
            seen[rank] = max(seen.get(rank, 0), count)
        return events


def _item_event(item: Item) -> dict[str, Any]:
    return {"index": item.index, "input": str(item.input), "output": str(item.output), "status": item.status,
            "error": item.error, "seconds": item.seconds, "batch_images": item.batch_images,
            "batch_seconds": item.batch_seconds}


def _item_of(event: dict[str, Any]) -> Item:
    from ..run.plan import Item

    return Item(index=event["index"], input=Path(event["input"]), output=Path(event["output"]),
                status=event["status"], error=event["error"], seconds=event["seconds"],
                batch_images=event["batch_images"], batch_seconds=event["batch_seconds"])


class ForwardingReporter(Reporter):
    """Ranks > 0 print nothing: their images, output lines and notes go to rank 0."""

    def __init__(self, session: Session) -> None:
        super().__init__(quiet=True)
        self.session = session

    def result(self, text: str) -> None:
        self.session.post("result", text=text)

    def message(self, text: str) -> None:
        self.session.post("message", text=text)

    def failure(self, item: Item) -> None:
        pass  # rank 0 prints it when the item arrives

    def item_finished(self, item: Item) -> None:
        self.finished += 1
        self.session.post("item", item=_item_event(item))

    def run_finished(self, summary: RunSummary) -> None:
        pass


class WorldReporter(Reporter):
    """Rank 0: its own reporter, fed with the whole world's images; waits for the others before it closes."""

    def __init__(self, inner: Reporter, session: Session, shard: Shard) -> None:
        super().__init__(quiet=inner.quiet)
        self.inner, self.session, self.shard = inner, session, shard
        self.seen: dict[int, int] = {}
        self.docs: dict[int, dict[str, Any]] = {}  # rank -> its summary document
        self.errors: dict[int, str] = {}  # rank -> the error that ended its run
        self.notes_seen: set[str] = set()
        self.last_poll = 0.0
        self.whole: dict[str, Any] | None = None

    # the inner reporter's job, plus a look at the others now and then
    def __enter__(self) -> WorldReporter:
        self.inner.__enter__()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None:  # this part is done: show the others' progress until they are too
                while len(self.docs) + len(self.errors) < self.session.world.size - 1:
                    if not self._poll(force=True):
                        break
                    time.sleep(WAIT_POLL_SECONDS)
        finally:
            self.inner.__exit__(exc_type, *exc)

    def result(self, text: str) -> None:
        self.inner.result(text)

    def message(self, text: str) -> None:
        self.inner.message(text)

    def failure(self, item: Item) -> None:
        self.inner.failure(item)

    def start(self, total: int) -> None:
        shard, world = self.shard, self.session.world
        assert shard.total is not None
        mine = range(shard.part - world.rank, shard.part - world.rank + world.size)  # this world's parts
        self.inner.start(sum(1 for k in range(shard.total) if k % shard.parts in mine))

    def batch_started(self, items: list[Item]) -> None:
        self.inner.batch_started(items)
        self._poll()

    def step(self, done: int, total: int, what: str) -> None:
        self.inner.step(done, total, what)
        self._poll()

    def item_finished(self, item: Item) -> None:
        self.inner.item_finished(item)
        self._poll()

    def _poll(self, force: bool = False) -> bool:
        """Show what the others did since the last look; False when the store cannot be reached."""
        now = time.monotonic()
        if not force and now - self.last_poll < POLL_SECONDS:
            return True
        self.last_poll = now
        try:
            events = self.session.receive(self.seen)
        except Exception as error:  # the launcher went away: report what arrived
            self.inner.message(f"note: lost contact with the other processes ({type(error).__name__})")
            return False
        for rank, event in events:
            kind = event["kind"]
            if kind == "item":
                self.inner.item_finished(_item_of(event["item"]))
            elif kind == "result":
                self.inner.result(event["text"])
            elif kind == "message" and event["text"] not in self.notes_seen:
                self.notes_seen.add(event["text"])
                self.inner.message(event["text"])
            elif kind == "end" and event.get("error"):
                self.errors[rank] = event["error"]
                self.inner.message(f"error: rank {rank}: {event['error']}")
            elif kind == "end":
                self.docs[rank] = event["doc"]
        return True

    def run_finished(self, summary: RunSummary) -> None:
        _describe(summary, self.shard)
        world = self.session.world
        docs = [summary.to_json(), *(self.docs[r] for r in sorted(self.docs))]
        names = ["rank 0", *(f"rank {r}" for r in sorted(self.docs))]
        expected = [f"rank {r}" for r in range(world.size)]
        share = self.inner.total
        self.whole = merge_parts(docs, names, level="rank", expected=expected, partial=True, expected_items=share)
        _note_output_like(self.inner, self.shard)
        self.inner.message(summary_line(self.whole))


def _describe(summary: RunSummary, shard: Shard) -> None:
    summary.info.update(shard.info())
    if shard.world is not None:
        summary.info["rank"] = shard.world.rank


def _run_world(inputs: list[str], opts: RunOptions, task_values: Mapping[str, Any],
               shard: Shard) -> tuple[dict[str, Any] | None, int]:
    from ..run import engine

    world = shard.world
    assert world is not None
    opts = dataclasses.replace(opts, device=_world_device(opts.device, world), sharding=shard)
    session = Session(world, opts.device)
    try:
        shard.on_planned = session.agree_on_plan
        if world.rank == 0:
            reporter: Reporter = WorldReporter(make_reporter(opts), session, shard)
            for note in shard.notes:
                reporter.message(note)
            summary = engine.run(inputs, opts, task_values, reporter=reporter)
            assert isinstance(reporter, WorldReporter)
            whole = reporter.whole if reporter.whole is not None else summary.to_json()
            return whole, summary_exit_code(whole)
        try:
            summary = engine.run(inputs, opts, task_values, reporter=ForwardingReporter(session))
        except DiffrestoreError as error:
            session.post("end", error=str(error))
            raise
        _describe(summary, shard)
        session.post("end", doc=summary.to_json())
        # A finished part exits 0 even when some of its images failed: rank 0 counts them in the world's exit
        # code, and a non-zero exit here would make torchrun stop the processes still working.
        return None, summary.exit_code if summary.interrupted else 0
    finally:
        session.close()
