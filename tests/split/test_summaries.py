"""diffrestore.split.summaries: merging the parts' summaries into one run's, and refusing what is not one
run."""

from __future__ import annotations

import json

import pytest

from diffrestore.errors import UsageError
from diffrestore.split.summaries import check_summary_file, merge_parts

# ------------------------------------------------------------------------------------ summaries and merging


def doc(shard: int, count: int, indices: list[int], *, seed: int = 0, total: int = 6) -> dict:
    return {"task": "denoise", "method": "dps", "seed": seed, "items_total": total, "device": "cpu",
            "shard": {"index": shard, "count": count, "source": "--shard"}, "seconds": 1.0 + shard,
            "items": [{"input": f"in/{i}.png", "status": "done", "index": i, "shard": f"{shard}/{count}"}
                      for i in indices]}


def test_merge_orders_items_and_counts() -> None:
    merged = merge_parts([doc(2, 2, [1, 3, 5]), doc(1, 2, [0, 2, 4])], ["b", "a"], level="shard",
                         expected=["1/2", "2/2"])
    assert [item["index"] for item in merged["items"]] == list(range(6))
    assert merged["done"] == 6 and merged["seconds"] == 3.0 and "missing_items" not in merged
    assert [part["part"] for part in merged["parts"]] == ["1/2", "2/2"]


@pytest.mark.parametrize("docs, message", [
    ([doc(1, 2, [0, 2, 4]), doc(2, 2, [1, 3, 5], seed=1)], "seed"),
    ([doc(1, 2, [0, 2, 4]), {**doc(2, 2, [1, 3, 5]), "settings": {"inner_spread": 1.0}}], "settings"),
    ([doc(1, 2, [0, 2, 4]), doc(1, 2, [0, 2, 4])], "both shard 1/2"),
    ([doc(1, 2, [0, 2, 4]), doc(2, 2, [1, 2, 5])], "both list image 2"),
    ([doc(1, 2, [0, 2, 4])], "missing"),
    ([doc(1, 2, [0, 2, 4]), doc(2, 3, [1])], "split the inputs differently"),
])
def test_merge_refuses_what_is_not_one_run(docs, message) -> None:
    count = docs[0]["shard"]["count"]
    with pytest.raises(UsageError, match=message):
        merge_parts(docs, [f"s{i}.json" for i in range(len(docs))], level="shard",
                    expected=[f"{i}/{count}" for i in range(1, count + 1)])


def test_partial_merge_counts_what_is_missing() -> None:
    merged = merge_parts([doc(1, 2, [0, 2, 4])], ["a"], level="shard", expected=["1/2", "2/2"], partial=True)
    assert merged["missing_items"] == 3 and merged["missing_parts"] == ["2/2"]


def test_summary_file_replaces_only_a_summary(tmp_path) -> None:
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    with pytest.raises(Exception, match="not a diffrestore summary"):
        check_summary_file(other)
    ours = tmp_path / "run.json"
    ours.write_text(json.dumps(doc(1, 1, [0])))
    check_summary_file(ours)  # an earlier run's: replaced
