"""One folder over many processes, through the command line (diffrestore/split/distributed.py): shards,
Slurm array tasks and torchrun processes write bitwise the files one process writes, the merged
(``summary merge``) or gathered summary lists the single run's images, and a killed process loses only its
unfinished images. The split itself: test_shards.py; merging summaries: test_summaries.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import ROOT, make_tiny_model, run_main, write_image

from diffrestore.split.summaries import merge_files

TORCHRUN = Path(sys.executable).with_name("torchrun")
IMAGES = 6
#: what differs between runs that restored the same images: timings, batch sizes and where an image ran
RUN_DEPENDENT = ("seconds", "batch_images", "batch_seconds", "index", "shard", "rank")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs") / "in"
    for i in range(IMAGES):
        write_image(root / f"img{i}.png", seed=i)
    return root


def flags(model: Path, steps: int = 40) -> list[str]:
    # --noise-sigma fixed: every image alike, so batches form as they would in any part
    return ["--model", str(model), "--steps", str(steps), "--method", "dps", "--device", "cpu", "--noise-sigma",
            "0.02"]


@pytest.fixture(scope="module")
def single(tmp_path_factory, folder, model) -> tuple[Path, dict]:
    """The reference: one process, the whole folder."""
    out = tmp_path_factory.mktemp("single") / "out"
    summary = out.parent / "single.json"
    result = subprocess.run([sys.executable, "-m", "diffrestore", "denoise", str(folder), "-o", f"{out}/",
                             *flags(model), "--summary", str(summary), "-q"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return out, json.loads(summary.read_text())


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def comparable(items: list[dict]) -> list[dict]:
    """The items without what depends on the run; outputs by name (each run writes to its own folder)."""
    return [{k: Path(v).name if k == "output" else v for k, v in item.items() if k not in RUN_DEPENDENT}
            for item in items]


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b"])
def test_bad_shard_flag_is_one_line_exit_2(text, folder, model, tmp_path, capsys) -> None:
    result = run_main(["denoise", folder, "-o", f"{tmp_path}/", *flags(model), "--shard", text], capsys)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --shard"), result.err
    assert not any(tmp_path.iterdir())


def slurm(task_id: int, count: int, low: int = 1, step: int = 1, high: int | None = None) -> dict[str, str]:
    """The variables Slurm 22.05 sets in an array task (as seen on a real one: MAX is the largest id)."""
    high = low + (count - 1) * step if high is None else high
    return {"SLURM_ARRAY_TASK_ID": str(task_id), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high), "SLURM_ARRAY_TASK_STEP": str(step)}


def test_shards_write_the_single_run_and_merge_to_its_items(tmp_path, folder, model, single, capsys) -> None:
    out, summaries = tmp_path / "out", []
    for i in (1, 2, 3):
        path = tmp_path / f"shard_{i}.json"
        result = run_main(["denoise", folder, "-o", f"{out}/", *flags(model), "--shard", f"{i}/3",
                           "--summary", path, "-q"], capsys)
        assert result.code == 0, result.err
        summaries.append(path)
        assert len(json.loads(path.read_text())["items"]) == 2
    same_files(out, single[0])
    merged_path = tmp_path / "all.json"
    result = run_main(["summary", "merge", *reversed(summaries), "-o", merged_path], capsys)
    assert result.code == 0, result.err
    assert "6 done, 0 skipped, 0 failed" in result.err
    merged = json.loads(merged_path.read_text())
    assert comparable(merged["items"]) == comparable(single[1]["items"])
    assert sorted(item["shard"] for item in merged["items"]) == ["1/3", "1/3", "2/3", "2/3", "3/3", "3/3"]
    assert merge_files(summaries)["done"] == 6
    result = run_main(["summary", "merge", *summaries[:2]], capsys)  # one shard missing: said, exit 2
    assert result.code == 2 and "3/3" in result.err and len(result.err.strip().splitlines()) == 1


def test_a_slurm_array_task_restores_its_shard(tmp_path, folder, model, monkeypatch, capsys) -> None:
    for key, value in slurm(5, 3, low=1, step=2).items():  # --array=1-5:2, the last task
        monkeypatch.setenv(key, value)
    path = tmp_path / "s.json"
    result = run_main(["denoise", folder, "-o", f"{tmp_path}/out/", *flags(model), "--summary", path], capsys)
    assert result.code == 0, result.err
    assert "Slurm array task 3/3" in result.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img2_denoise.png", "img5_denoise.png"]
    assert json.loads(path.read_text())["shard"] == {"index": 3, "count": 3, "source": "slurm"}


# ---------------------------------------------------------------------------------------- torchrun worlds


def torchrun(args: list[str], **kwargs) -> subprocess.Popen:
    # gloo on the loopback device: a container's host name may not resolve to a usable interface
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")


@needs_torchrun
def test_torchrun_world_writes_the_single_run(tmp_path, folder, model, single) -> None:
    out, path = tmp_path / "out", tmp_path / "world.json"
    process = torchrun(["-m", "diffrestore", "denoise", str(folder), "-o", f"{out}/", *flags(model), "--json",
                        "--summary", str(path), "--progress", "plain"])
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    same_files(out, single[0])
    printed, written = json.loads(stdout), json.loads(path.read_text())  # rank 0 alone prints the document
    assert printed == written
    assert written["world_size"] == 2 and written["done"] == IMAGES
    assert comparable(written["items"]) == comparable(single[1]["items"])
    assert sorted(item["rank"] for item in written["items"]) == [0, 0, 0, 1, 1, 1]
    lines = stderr.splitlines()
    assert sum(line.startswith(f"[{k}/{IMAGES}]") for line in lines for k in range(1, IMAGES + 1)) == IMAGES
    assert [line for line in lines if " done, " in line] == [line for line in lines if line.startswith("6 done")]
    assert len([line for line in lines if " done, " in line]) == 1  # one last line, for the whole world


def worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes (their environment says their rank)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = dict(v.split("=", 1) for v in (entry / "environ").read_text().split("\0") if "=" in v)
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher.pid and "RANK" in environ:
            found[int(environ["RANK"])] = int(entry.name)
    return found


@needs_torchrun
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker processes through /proc")
def test_a_killed_process_loses_only_its_unfinished_images(tmp_path, folder, model, single) -> None:
    out, path = tmp_path / "out", tmp_path / "world.json"
    # one image per batch (about 0.3 s each here), so the kill lands mid-run
    argv = ["-m", "diffrestore", "denoise", str(folder), "-o", f"{out}/", *flags(model),
            "--batch-size", "1", "--summary", str(path), "-q"]
    process = torchrun(argv)
    deadline = time.monotonic() + 150
    while not any(out.glob("img[135]_denoise.png")) and time.monotonic() < deadline:  # rank 1 wrote one
        time.sleep(0.02)
    pids = worker_pids(process)
    assert 1 in pids, "rank 1 not found"
    os.kill(pids[1], signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode != 0
    written = sorted(p.name for p in out.iterdir())
    assert 0 < len(written) < IMAGES, f"the kill should land mid-run: {written}"
    for name in written:  # whatever was written is complete and the single run's
        assert (out / name).read_bytes() == (single[0] / name).read_bytes(), name
    interrupted = json.loads(path.read_text())  # rank 0 was stopped by torchrun and said so
    assert interrupted["interrupted"] and interrupted["missing_parts"] == ["rank 1"]

    process = torchrun([*argv, "--skip-existing"])
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    same_files(out, single[0])  # nothing lost, nothing half-written, no temp files
    finished = json.loads(path.read_text())
    assert finished["done"] + finished["skipped"] == IMAGES and finished["skipped"] == len(written)


@needs_torchrun
def test_processes_that_see_different_inputs_refuse_to_run(tmp_path, folder, model) -> None:
    script = tmp_path / "launch.py"
    extra = tmp_path / "more"
    write_image(extra / "x.png")
    script.write_text(
        "import os, sys\nfrom diffrestore.cli import main\n"
        f"inputs = [{str(folder)!r}] + ([{str(extra)!r}] if os.environ['RANK'] == '1' else [])\n"
        f"sys.exit(main(['denoise', *inputs, '-o', {str(tmp_path / 'out') + '/'!r}, *{flags(model)!r}]))\n")
    process = torchrun([str(script)])
    _, stderr = process.communicate(timeout=180)
    assert process.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("planned different inputs" in line for line in errors), stderr
    assert not (tmp_path / "out").exists()


def test_a_part_with_one_bad_image_records_it(tmp_path, model, capsys) -> None:
    """A part holding one image is not a single-image run: its bad file fails that item (in the summary), not
    the process (which under torchrun would stop every other process)."""
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_text("not a png")
    path = tmp_path / "s.json"
    result = run_main(["denoise", tmp_path / "in", "-o", f"{tmp_path}/out/", *flags(model), "--shard", "2/2",
                       "--summary", path], capsys)
    assert result.code == 1, result.err
    [item] = json.loads(path.read_text())["items"]
    assert item["status"] == "failed" and item["input"].endswith("b.png")


def test_a_run_of_one_shard_merges(tmp_path, folder, model, capsys) -> None:
    """--shard 1/1 (or a Slurm array of one task) restores everything and its summary is a mergeable part, so a
    pipeline that always merges works for N = 1 too."""
    path = tmp_path / "s.json"
    result = run_main(["denoise", folder, "-o", f"{tmp_path}/out/", *flags(model, steps=2), "--shard", "1/1",
                       "--summary", path, "-q"], capsys)
    assert result.code == 0, result.err
    assert len(list((tmp_path / "out").iterdir())) == IMAGES
    assert run_main(["summary", "merge", path], capsys).code == 0
