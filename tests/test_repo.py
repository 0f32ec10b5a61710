"""Repository-level promises: the README's commands are the ones CI runs, and `--help` stays fast."""

from __future__ import annotations

import re
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


def test_readme_quickstart_installs_and_runs_a_command() -> None:
    command = _readme_block("quickstart-command")
    assert "pip install" in command and ".venv/bin/diffrestore" in command


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
