"""Repository-level promises: the README's test command is the one CI runs, its quickstart command works, and
`--help` stays fast."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_block(label: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {label} -->\s*```(?:bash|sh)\n(.+?)\n```", text, re.S)
    assert match, f"README.md has no fenced command after <!-- {label} -->"
    return match.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _readme_block("test-command")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert command in ci_lines, "README's test command and .ci/run differ: keep them identical"


def _quickstart_run_command() -> list[str]:
    """The README quickstart's main job: the part after the installs, ``.venv/bin/diffrestore ARGS``, as argv."""
    command = _readme_block("quickstart-command")
    parts = [part.strip() for part in command.split("&&")]
    assert any("pip install" in part and "-e ." in part for part in parts), "the quickstart must install the package"
    runs = [shlex.split(part) for part in parts if part.startswith(".venv/bin/diffrestore ")]
    assert len(runs) == 1, f"the quickstart must run one .venv/bin/diffrestore command: {command}"
    return runs[0][1:]


def _installed_cli() -> list[str]:
    """The installed console script next to this interpreter (no reinstall), else ``python -m diffrestore``."""
    script = Path(sys.executable).parent / ("diffrestore.exe" if os.name == "nt" else "diffrestore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "diffrestore"]


def test_readme_quickstart_runs_its_main_job(tmp_path: Path) -> None:
    """The quickstart's restore command, as the README writes it, run in a fresh folder holding the repository
    files it names; only ``--steps 2`` is added, to keep the test quick. Exit 0 and the output file it names."""
    args = _quickstart_run_command()
    task, inputs = args[0], [arg for arg in args[1:] if (ROOT / arg).is_file()]
    assert inputs, f"the quickstart's input file is not in the repository: {args}"
    for name in inputs:  # the repository's own files, at the same relative paths
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)
    out_dir = args[args.index("-o") + 1] if "-o" in args else str(Path(inputs[0]).parent)
    expected = tmp_path / out_dir / f"{Path(inputs[0]).stem}_{task}{Path(inputs[0]).suffix}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DIFFRESTORE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([*_installed_cli(), *args, "--steps", "2"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert expected.is_file(), f"{expected} was not written\n{result.stdout}\n{result.stderr}"


def test_cli_import_does_not_import_torch() -> None:
    code = "import diffrestore.cli, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys, diffrestore.cli as c\n"
        "for argv in (['--help'], ['--version']):\n"
        "    assert c.main(argv) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Exit codes" in result.stdout  # the exit-code table is in --help


def test_changelog_keeps_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
