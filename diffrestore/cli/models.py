"""``diffrestore models ...``: list, inspect, download, verify and locate the priors of the registry.

Mounted by cli.py with ``app.add_typer(models_app, name="models")``. No torch import here: these commands only
read models.toml and the cache. Errors are raised as diffrestore.errors classes; ``cli.main`` prints them on one
line with their exit code (3 for model and download errors). Results go to stdout, progress and licences to
stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from .. import registry as reg
from ..errors import ChecksumError, DiffrestoreError, DownloadError
from ..run import streams
from ..run.interrupts import signal_name, signal_of
from ..solvers.methods import methods_for_kind
from .flags import PlainHelpCommand, sub_app

models_app = sub_app("models", "List, download and verify the diffusion priors of the model registry (models.toml).")

_REGISTRY_KEY = "diffrestore.registry"


@models_app.callback()
def _models_root(
    ctx: typer.Context,
    registry_file: Annotated[
        str | None,
        typer.Option("--registry", metavar="FILE", envvar="DIFFRESTORE_REGISTRY",
                     help="Use this models.toml instead of the one shipped with diffrestore."),
    ] = None,
) -> None:
    """List, download and verify the diffusion priors of the model registry (models.toml)."""
    ctx.meta[_REGISTRY_KEY] = registry_file


def _registry(ctx: typer.Context) -> reg.Registry:
    return reg.load_registry(ctx.meta.get(_REGISTRY_KEY))


def _describe(entry: reg.ModelEntry) -> dict[str, Any]:
    """The registry's view of an entry plus the --method names that fit its prior kind.

    The registry only knows files and kinds; which methods exist is diffrestore/methods.py's business.
    """
    info = reg.describe(entry)
    info["methods"] = list(methods_for_kind(entry.kind))
    if entry.family in reg.METRIC_FAMILIES:  # the weights of a metric's network: which metrics, not which methods
        from ..metrics.catalogue import metrics_using

        info["metrics"] = list(metrics_using(entry.name))
    return info


def _stopped(stop: KeyboardInterrupt, names: list[str], doing: str = "downloading") -> DiffrestoreError:
    """A stop signal during a download as one line and 128 + its number (typer alone exits 130, silently)."""
    again = " ".join(names)
    error = DiffrestoreError(
        f"interrupted ({signal_name(stop)}) while {doing} {again}",
        hint=f"run `diffrestore models download {again}` again to finish: verified files are kept, and a partly "
        "downloaded file whose sha256 is pinned resumes" if doing == "downloading" else None,
    )
    error.exit_code = 128 + signal_of(stop)
    return error


def _recorded(entry: reg.ModelEntry) -> dict[str, Any]:
    """The lock file's records, with any credentials in a recorded source URL redacted (older lock files)."""
    files = reg.read_lock(entry).get("files", {}) if entry.downloadable else {}
    if not isinstance(files, dict):
        return {}
    return {path: ({**record, "source": reg.redact_url(str(record["source"]))}
                   if isinstance(record, dict) and "source" in record else record)
            for path, record in files.items()}


def _err(message: str) -> None:
    streams.write_err(message)


def _fancy() -> bool:
    import os

    return sys.stdout.isatty() and not os.environ.get("CI")


@models_app.command("list", cls=PlainHelpCommand)
def list_command(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array on stdout.")] = False,
) -> None:
    """Show every model: name, family, download size, whether it is cached, licence."""
    registry = _registry(ctx)
    rows = [_describe(entry) for entry in registry]
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    headers = ("name", "family", "size", "cached", "licence")
    table = [(r["name"], r["family"] + (f" ({r['of']})" if r.get("of") else "")
              + (f" ({', '.join(r['metrics'])})" if r.get("metrics") else ""), r["size"], r["cached"],
              r["licence"]) for r in rows]
    if _fancy():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        rich_table = Table(*headers, title=f"models in {registry.path}", title_justify="left")
        for row in table:
            rich_table.add_row(*(escape(cell) for cell in row))  # a registry's "[...]" is text, not markup
        Console().print(rich_table)
        return
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    for row in (headers, *table):
        typer.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@models_app.command("info", cls=PlainHelpCommand)
def info_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name (see `diffrestore models list`).", metavar="NAME")],
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout.")] = False,
) -> None:
    """Everything the registry knows about one model: licence, files with sha256, sources, cache state."""
    entry = _registry(ctx).get(name)
    info = _describe(entry)
    recorded = _recorded(entry)
    if json_output:
        info["recorded"] = recorded
        typer.echo(json.dumps(info, indent=2))
        return
    out = typer.echo
    out(f"{entry.name}: {entry.description}")
    family = entry.family + (f" (built like {entry.of})" if entry.of else "")
    out(f"  family      {family}")
    out(f"  resolution  {entry.resolution or 'any'}")
    out(f"  kind        {entry.kind}")
    if "metrics" in info:
        from ..metrics.catalogue import weights_text

        out(f"  methods     none: {weights_text(entry.name)} (--metrics, diffrestore eval), not a prior")
    else:
        methods = ", ".join(info["methods"]) or f"none yet (no --method uses {entry.kind} priors)"
        out(f"  methods     {methods}")
    out(f"  tasks       {', '.join(entry.tasks)}")
    if entry.prompt:
        out(f"  prompt      {entry.prompt}")
    out(f"  licence     {entry.licence}")
    if entry.licence_note:
        out(f"              {entry.licence_note}")
    out(f"  verified    {'yes' if entry.verified else 'NO - some sha256/size/revision are unconfirmed claims'}")
    if entry.notes:
        out(f"  notes       {entry.notes}")
    out(f"  size        {info['size']}")
    out(f"  cached      {info['cached']}")
    if info["path"]:
        out(f"  path        {info['path']}")
    for spec in entry.files:
        pinned = spec.sha256 or "UNVERIFIED" + (
            f" (recorded {recorded[spec.path]['sha256']})" if spec.path in recorded else "")
        size = f"{spec.size} B" if spec.size else "size unknown"
        out(f"  file        {spec.path}  [{size}]  sha256 {pinned}")
    for source in entry.sources:
        note = f"  ({source.note})" if source.note else ""
        out(f"  source      {source.describe()}{note}")


@models_app.command("download", cls=PlainHelpCommand)
def download_command(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Model names to download (see `diffrestore models list`).",
                                                metavar="NAMES")],
    offline: Annotated[bool, typer.Option("--offline", help="Never use the network (only check the cache).")] = False,
    trust_unverified: Annotated[
        bool,
        typer.Option("--trust-unverified", envvar="DIFFRESTORE_TRUST_UNVERIFIED",
                     help="Accept bytes that no sha256 or commit pins (their sha256 is recorded)."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
) -> None:
    """Download models into the cache (verified by sha256); print each model's folder on stdout."""
    registry = _registry(ctx)
    entries = [registry.get(name) for name in names]  # unknown names fail before any download starts
    for done, entry in enumerate(entries):
        if entry.family == "tiny":
            _err(f"{entry.name}: tiny test model built in code; nothing to download")
            continue
        try:
            path = reg.download_model(entry, offline=offline or None, trust_unverified=trust_unverified or None,
                                      force=force, echo=_err)
        except KeyboardInterrupt as stop:  # SIGINT, or SIGTERM through run.interrupts (installed by cli.main)
            raise _stopped(stop, [e.name for e in entries[done:]]) from None
        typer.echo(str(path))


@models_app.command("verify", cls=PlainHelpCommand)
def verify_command(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Models to check (default: every cached one).",
                                                              metavar="NAMES")] = None,
) -> None:
    """Re-hash cached files against the pinned (or first-download) sha256; exit 3 on any mismatch."""
    registry = _registry(ctx)
    if names:
        entries = [registry.get(name) for name in names]
    else:
        entries = [e for e in registry if e.downloadable and reg.cache_state(e) != "no"]
        if not entries:
            _err(f"no downloaded models in {reg.cache_dir() / 'models'}")
            return
    bad: list[str] = []
    missing: list[str] = []
    for entry in entries:
        if not entry.downloadable:
            typer.echo(f"{entry.name}: {entry.family} model, nothing to verify")
            continue
        try:
            results = reg.verify_model(entry)  # hashes gigabytes: a stop signal may well arrive here
        except KeyboardInterrupt as stop:
            raise _stopped(stop, [entry.name], doing="verifying") from None
        for result in results:
            typer.echo(f"{entry.name}/{result.path}: {result.status}"
                       + (f" (expected {result.expected}, got {result.actual})" if result.status == "mismatch" else ""))
            if result.status == "mismatch":
                bad.append(f"{entry.name}/{result.path}")
            elif result.status == "missing":
                missing.append(entry.name)
    if bad:
        first = bad[0].split("/", 1)[0]
        raise ChecksumError(
            f"{len(bad)} cached file(s) do not match their sha256: {', '.join(bad)}",
            hint=f"re-download with `diffrestore models download --force {first}`",
        )
    if missing and names:
        raise DownloadError(
            f"model(s) not fully downloaded: {', '.join(sorted(set(missing)))}",
            hint=f"run `diffrestore models download {' '.join(sorted(set(missing)))}`",
        )


@models_app.command("path", cls=PlainHelpCommand)
def path_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.", metavar="NAME")],
) -> None:
    """Print the folder holding a model's files (exit 3 if it is not downloaded)."""
    typer.echo(str(reg.model_path(_registry(ctx).get(name))))
