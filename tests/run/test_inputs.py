"""diffrestore.run.inputs: prepared inputs batch by size and keep their order."""

from __future__ import annotations

from pathlib import Path

from diffrestore.run import plan
from diffrestore.tasks import MaskSource


def test_batches_group_by_key_and_keep_order() -> None:
    from diffrestore.run.inputs import Prepared, batches

    def prepared(i: int, size: int) -> Prepared:
        item = plan.Item(index=i, input=Path(f"{i}.png"), output=Path(f"{i}o.png"))
        return Prepared(size=(size, size), restored_size=(size, size), channels=3, mask_source=MaskSource("none"),
                        item=item)

    grouped = batches([prepared(0, 8), prepared(1, 9), prepared(2, 8), prepared(3, 8)], 2)
    assert [[p.item.index for p in b] for b in grouped] == [[0, 2], [1], [3]]
