"""``diffrestore eval``: the method x metric table of an evaluation (``run/evaluate.py`` does the work).

Two modes. ``diffrestore eval TASK CLEAN_DIR [task flags] --method daps,dps -o OUT``: one command per task of
the table, with the task's own flags and the run's (as the task command has them, less the output naming), that
runs the task command's split run once per method. ``diffrestore eval --restored DIR --reference DIR``: the
group's own options score folders of results, ours or another tool's. Mounted by ``commands.py``; no torch here.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..run import streams
from ..run.flags import EVAL_FLAG_BY_NAME, EVAL_FLAGS, RUN_FLAG_BY_NAME, RUN_FLAGS
from ..tasks.spec import TaskSpec
from ..tasks.table import TASKS
from .flags import PlainHelpCommand, PlainHelpGroup, flag_param, task_params, with_params

#: run flags an evaluation sets itself: the output naming, --simulate, and the flags it has its own of
_SET_BY_EVAL = frozenset({"method", "metrics", "output", "suffix", "include_outputs", "summary_file", "simulate"})
#: the run flags that scoring folders takes
_FOLDER_RUN_FLAGS = ("overwrite", "json_output", "device", "offline", "registry", "quiet")

EVAL_HELP = (
    "Score restorations: a method x metric table (mean ± std per image metric, FID / KID over the set).\n\n"
    "Simulate a task on clean images and compare methods, each restored into OUT/<method>/ by the task command's "
    "own run with --simulate: diffrestore eval inpaint clean/ --box 40,36,32,32 --method daps,dps -o results/\n\n"
    "Score any folders of results against references (ours or another tool's): diffrestore eval --restored "
    "out/daps --restored out/dps --reference clean/ -o scores/\n\n"
    "Matching by name: a restored file matches the reference with the same stem, or the longest reference stem it "
    "starts with followed by '_' (photo_inpaint.png and photo_daps.png match photo.png); diffrestore's _std and "
    "_sK files are left out. --suffix TEXT makes it exact: <reference stem>TEXT. Every file needs its match, of "
    "the same size, or the command stops with one line naming it (exit 2) before any network loads.\n\n"
    "The report (-o OUT): results.csv (one line per image), results.json (everything, with the settings and what "
    "each metric means), table.md (the table as printed), contact_sheet.png. See 'diffrestore eval TASK --help'."
)

eval_app = typer.Typer(name="eval", help=EVAL_HELP, no_args_is_help=True, cls=PlainHelpGroup,
                       pretty_exceptions_enable=False, add_completion=False,
                       context_settings={"help_option_names": ["-h", "--help"]})


def _run_flag_param(name: str) -> inspect.Parameter:
    """A run flag as eval's option: the same declaration, --json saying what eval prints instead."""
    flag = RUN_FLAG_BY_NAME[name]
    if name == "json_output":
        flag = dataclasses.replace(flag, help="Print the results' JSON document (as results.json) on stdout "
                                   "instead of the table.")
    return flag_param(flag, flag.default)


def _say(quiet: bool) -> Any:
    return (lambda text: None) if quiet else streams.write_err


def _print_report(report: Any, *, json_output: bool, quiet: bool) -> None:
    """The table on stdout (or the results' JSON with --json): the result of the command, as paths are a run's."""
    from ..run.eval_report import results_json, table_markdown

    if json_output:
        streams.write_out(json.dumps(results_json(report), indent=2, ensure_ascii=False))
    elif not quiet:
        streams.write_out(table_markdown(report).rstrip("\n"))


# ------------------------------------------------------------------------- mode (b): the group's own options

_RESTORED = inspect.Parameter(
    "restored", inspect.Parameter.KEYWORD_ONLY, default=None,
    annotation=Annotated[list[Path] | None, typer.Option(
        "--restored", metavar="DIR", show_default=False, rich_help_panel="Scoring folders",
        help="A folder of restored images (repeatable: one row of the table per folder, named after it).")])
_REFERENCE = inspect.Parameter(
    "reference", inspect.Parameter.KEYWORD_ONLY, default=None,
    annotation=Annotated[Path | None, typer.Option(
        "--reference", metavar="DIR", show_default=False, rich_help_panel="Scoring folders",
        help="The folder of reference (clean) images the restored files are matched to by name.")])
_SUFFIX = inspect.Parameter(
    "match_suffix", inspect.Parameter.KEYWORD_ONLY, default=None,
    annotation=Annotated[str | None, typer.Option(
        "--suffix", metavar="TEXT", show_default=False, rich_help_panel="Scoring folders",
        help="Match exactly: a restored file is <reference stem>TEXT (e.g. _inpaint; '' = the same stem). "
        "Default: the same stem, or a reference stem followed by _<anything>.")])
_CONTEXT = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


def _folders_root(ctx: typer.Context, **values: Any) -> None:
    if ctx.invoked_subcommand is not None:
        given = [name for name in ("restored", "reference", "match_suffix") if values.get(name) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('match_', '')} scores folders; it does not go with "
                             f"'eval {ctx.invoked_subcommand}'", hint="see 'diffrestore eval --help'")
        return
    raise typer.Exit(_score_folders(values))


def _score_folders(values: dict[str, Any]) -> int:
    from ..run.evaluate import evaluate_folders

    metrics = EVAL_FLAG_BY_NAME["eval_metrics"].check(values["eval_metrics"])  # a bad name before anything
    rows = EVAL_FLAG_BY_NAME["contact_rows"].check(values["contact_rows"])
    restored, reference = values["restored"] or [], values["reference"]
    if not restored or reference is None:
        raise UsageError("give --restored DIR and --reference DIR, or a task: eval TASK CLEAN_DIR ...",
                         hint="see 'diffrestore eval --help'")
    for name in ("device",):
        RUN_FLAG_BY_NAME[name].check(values[name])
    report = evaluate_folders(list(restored), reference, metrics, output=values["eval_output"],
                              suffix=values["match_suffix"], overwrite=values["overwrite"],
                              registry_file=values["registry"], offline=True if values["offline"] else None,
                              device=values["device"], contact_rows=rows, say=_say(values["quiet"]))
    _print_report(report, json_output=values["json_output"], quiet=values["quiet"])
    return 0


def _mount_folder_options() -> None:
    params = [_CONTEXT, _RESTORED, _REFERENCE, _SUFFIX,
              *(flag_param(flag, flag.default) for flag in EVAL_FLAGS if flag.name != "eval_methods"),
              *(_run_flag_param(name) for name in _FOLDER_RUN_FLAGS)]
    _folders_root.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    _folders_root.__annotations__ = {p.name: p.annotation for p in params}
    eval_app.callback(invoke_without_command=True)(_folders_root)


_mount_folder_options()


# ---------------------------------------------------------------------------------- mode (a): one per task

CLEAN = inspect.Parameter(
    "inputs", inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[list[str], typer.Argument(
        help="The clean images: folders (their images, sorted; --recursive for subfolders), files or quoted "
        "globs. Each is degraded by the task (as --simulate does), restored by every method and scored.",
        show_default=False, metavar="CLEAN_DIR")])


def _run_eval_task(task: str, values: dict[str, Any]) -> int:
    from ..run.evaluate import EvalRequest, evaluate_task, parse_methods
    from ..run.options import RunOptions
    from ..run.solver_settings import parse_pairs
    from ..split import distributed
    from ..split.shards import launch_shard

    inputs = values.pop("inputs")
    metrics = EVAL_FLAG_BY_NAME["eval_metrics"].check(values.pop("eval_metrics"))
    methods = parse_methods(values.pop("eval_methods"))
    rows = EVAL_FLAG_BY_NAME["contact_rows"].check(values.pop("contact_rows"))
    output = values.pop("eval_output")
    if output is None:
        raise UsageError("eval needs -o OUT, the folder of its report and restored images",
                         hint=f"e.g. diffrestore eval {task} clean/ ... -o results/")
    run_values = {flag.name: values.pop(flag.name) for flag in RUN_FLAGS if flag.name not in _SET_BY_EVAL}
    json_output = run_values.pop("json_output")
    run_values["offline"] = True if run_values["offline"] else None
    run_values["solver_options"] = parse_pairs(run_values.pop("solver_set") or [])
    base = RunOptions(task=task, **run_values)
    request = EvalRequest(methods=methods, metrics=metrics, output=Path(output), contact_rows=rows)
    task_values = values  # what is left: the task's own flags

    def run_method(opts: RunOptions) -> tuple[dict[str, Any] | None, int]:
        return distributed.run(inputs, opts, task_values)

    split = launch_shard(base.shard).split  # its other parts' outputs may be there already
    report, code = evaluate_task(inputs, base, task_values, request, run_method, say=_say(base.quiet), split=split)
    if report is not None:
        _print_report(report, json_output=json_output, quiet=base.quiet)
    return code


def _make_eval_command(spec: TaskSpec, name: str, *, epilog: str, wrap: Any, hidden: bool = False) -> None:
    run_params = [_run_flag_param(flag.name) for flag in RUN_FLAGS if flag.name not in _SET_BY_EVAL]
    eval_params = [flag_param(flag, flag.default) for flag in EVAL_FLAGS]
    params = [CLEAN, *task_params(spec), *eval_params, *run_params]

    @wrap
    def command(**values: Any) -> int:
        return _run_eval_task(spec.name, values)

    with_params(command, params, f"eval_{spec.name.replace('-', '_')}_command")
    task_flags = " ".join(spec.example.split()[3:])  # the example's flags, after 'diffrestore TASK FILE'
    example = " ".join(f"diffrestore eval {name} clean/ {task_flags} --method daps,dps -o results/".split())
    doc = (f"Compare methods on {spec.name} over clean images.\n\nEach clean image is degraded (as --simulate "
           "does), restored with every --method into OUT/<method>/ and scored; the table and the report go to OUT. "
           "A rerun with "
           "--skip-existing reuses the restored images and their recorded scores; with --shard I/N the last part "
           f"to finish writes the report.\n\nExample: {example}")
    eval_app.command(name, help=doc, epilog=epilog, hidden=hidden, no_args_is_help=True,
                     cls=PlainHelpCommand)(command)


def mount_task_commands(*, epilog: str, wrap: Any) -> None:
    """One eval command per task of the table (and hidden ones for its command aliases, such as sr); ``epilog``
    and ``wrap`` are the task commands' exit-code table and signal handling."""
    eval_app.epilog = epilog
    for spec in TASKS.values():
        _make_eval_command(spec, spec.name, epilog=epilog, wrap=wrap)
    for spec in TASKS.values():
        for alias in spec.command_aliases:
            _make_eval_command(spec, alias, epilog=epilog, wrap=wrap, hidden=True)
