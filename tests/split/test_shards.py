"""diffrestore.split.shards: the split, checked without torch (every image in exactly one part, whatever
exists already), --shard I/N, Slurm array variables and torchrun's world."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffrestore.errors import UsageError
from diffrestore.run.plan import LOOKS_LIKE_OUTPUT, Item
from diffrestore.split.shards import Outer, Shard, World, launch_shard, parse_shard, slurm_array, torch_world

# ----------------------------------------------------------------------------------------------- the split


def items(n: int, output_like: tuple[int, ...] = ()) -> list[Item]:
    planned = [Item(index=i, input=Path(f"in/{i}.png"), output=Path(f"out/{i}.png")) for i in range(n)]
    for i in output_like:
        planned[i].status, planned[i].error = "skipped", LOOKS_LIKE_OUTPUT
    return planned


@pytest.mark.parametrize("count, world", [(3, None), (1, 4), (2, 3), (7, None)])
def test_every_image_is_in_exactly_one_part(count, world) -> None:
    n = 20
    seen: list[Path] = []
    sizes = []
    for outer in range(count):
        for rank in range(world or 1):
            shard = Shard(outer=Outer(outer, count, "--shard") if count > 1 else None,
                          world=World(rank, world, rank) if world else None)
            mine = shard.select(items(n))
            sizes.append(len(mine))
            seen += [item.input for item in mine]
            assert shard.total == n
    assert sorted(seen) == sorted(Path(f"in/{i}.png") for i in range(n))
    assert max(sizes) - min(sizes) <= 1  # round-robin: parts differ by one image at most


def test_the_split_ignores_files_named_like_outputs() -> None:
    """An output written next to the inputs during the run must not shift the other processes' parts."""
    before = [item.input for item in Shard(outer=Outer(1, 3, "--shard")).select(items(9))]
    planned = items(10, output_like=(4,))
    planned[4].input = Path("in/3_denoise.png")
    for item in planned[5:]:
        item.input = Path(f"in/{int(item.input.stem) - 1}.png")
    shard = Shard(outer=Outer(1, 3, "--shard"))
    assert [item.input for item in shard.select(planned)] == before
    assert shard.output_like == 1 and shard.total == 9


def test_existing_outputs_do_not_change_the_split() -> None:
    planned = items(9)
    for item in planned[:5]:
        item.status = "skipped"  # --skip-existing found them
    assert [i.index for i in Shard(outer=Outer(0, 2, "--shard")).select(planned)] == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "1/0", "3", "-1/3", ""])
def test_bad_shards_are_usage_errors(text) -> None:
    with pytest.raises(UsageError):
        parse_shard(text)


def test_good_shards() -> None:
    assert parse_shard("1/3") == Outer(0, 3, "--shard")
    assert parse_shard(" 3 / 3 ").label == "3/3"


def slurm(task_id: int, count: int, low: int = 1, step: int = 1, high: int | None = None) -> dict[str, str]:
    """The variables Slurm 22.05 sets in an array task (as seen on a real one: MAX is the largest id)."""
    high = low + (count - 1) * step if high is None else high
    return {"SLURM_ARRAY_TASK_ID": str(task_id), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high), "SLURM_ARRAY_TASK_STEP": str(step)}


def test_slurm_array_tasks_number_the_shards() -> None:
    assert [slurm_array(slurm(t, 3)).index for t in (1, 2, 3)] == [0, 1, 2]
    assert [slurm_array(slurm(t, 3, low=0)).index for t in (0, 1, 2)] == [0, 1, 2]
    assert [slurm_array(slurm(t, 3, step=2)).index for t in (1, 3, 5)] == [0, 1, 2]
    assert slurm_array(slurm(4, 1, low=4)) == Outer(0, 1, "slurm")  # an array of one: its summary still merges
    assert slurm_array({}) is None
    for bad in (slurm(7, 3), slurm(2, 3, step=2), {**slurm(1, 3), "SLURM_ARRAY_TASK_ID": "x"}):
        with pytest.raises(UsageError):
            slurm_array(bad)


@pytest.mark.parametrize("ids", [(1, 2, 7), (1, 3, 5)])
def test_every_task_of_an_irregular_slurm_list_refuses(ids) -> None:
    """--array=1,2,7 (or 1,3,5 written as a list): Slurm says step 1 and the largest id; no task may run, or
    the tasks whose ids happen to fit would restore a wrongly numbered split."""
    for task_id in ids:
        with pytest.raises(UsageError, match="regular range"):
            slurm_array(slurm(task_id, 3, low=ids[0], high=ids[-1]))


def test_shard_flag_wins_over_slurm_and_1_of_1_turns_it_off() -> None:
    env = slurm(2, 3)
    assert launch_shard(None, env).outer == Outer(1, 3, "slurm")
    assert launch_shard(None, env).notes  # the split is said, with the way out
    assert launch_shard("3/4", env).outer == Outer(2, 4, "--shard")
    whole = launch_shard("1/1", env)
    assert whole.parts == 1 and not whole.notes


def test_torch_world_from_the_launcher_variables() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"}
    assert torch_world(env) == World(3, 4, 1)
    assert torch_world({"WORLD_SIZE": "1", "RANK": "0"}) is None
    with pytest.raises(UsageError):
        torch_world({"WORLD_SIZE": "2", "RANK": "0"})  # no rendezvous address
    with pytest.raises(UsageError):
        torch_world({**env, "RANK": "4"})
