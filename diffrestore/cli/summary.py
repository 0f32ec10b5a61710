"""``diffrestore summary merge``: the summaries of a split run's shards (``--shard I/N``, Slurm array tasks) joined
into the summary of the whole run, as one process would have written it (``summaries.merge_files``).

Mounted by cli.py beside ``models``. No torch here. The merged JSON goes to stdout or ``-o FILE``, its one-line
form to stderr; the exit code is the whole run's (0 all done, 1 some images failed or are unaccounted for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import OutputError
from ..run import streams
from .flags import PlainHelpCommand, sub_app

summary_app = sub_app("summary", "Work with the JSON summaries that --summary and --json write.")


@summary_app.callback()
def _summary_root() -> None:
    """Work with the JSON summaries that --summary and --json write."""


@summary_app.command("merge", cls=PlainHelpCommand, no_args_is_help=True)
def merge_command(
    files: Annotated[list[Path], typer.Argument(help="The summary of every shard of one run (any order).",
                                                metavar="SUMMARY.json...", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", show_default=False,
                                                help="Write the merged summary here instead of stdout.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing -o FILE.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Merge even when some shards' summaries are missing "
                                          "(their images are counted as unaccounted for).")] = False,
) -> int:
    """Merge the summaries of a run split with --shard I/N or a Slurm array into one.

    Example: diffrestore summary merge shard_*.json -o run.json
    """
    from ..split.summaries import merge_files, summary_exit_code, summary_line, write_summary

    merged = merge_files(files, partial=partial)
    if output is not None:
        if output.resolve() in {f.resolve() for f in files}:
            raise OutputError(f"-o {output} is one of the summaries being merged", hint="choose another file")
        write_summary(output, merged, overwrite=overwrite)  # a FIFO or /dev/fd/N is written like a stream
    else:
        streams.write_out(json.dumps(merged, indent=2))  # a closed pipe or an odd encoding never fails the merge
    streams.write_err(summary_line(merged))  # failed images' names with their control characters escaped
    return summary_exit_code(merged)
