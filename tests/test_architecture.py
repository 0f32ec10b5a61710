"""The package's shape: dependencies point one way (no import cycle, imports inside functions included), no module
grows past the size one reader can hold, the registry builds no networks, every solver's declared prior kind
matches the torch-free method table, and the tests mirror the package (tests/<package>/test_<module>.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffrestore"
MAX_LINES = 450  # a module past this is doing more than one job


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules imported anywhere in the file: top level, functions and TYPE_CHECKING blocks (a type-level
    cycle is still two modules that cannot be read apart)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            # the deepest package module named (``from . import plan`` names diffrestore.run.plan)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("diffrestore"):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # A module importing its own package's __init__ (e.g. ``from . import x``) is not a dependency on itself.
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert graph["diffrestore.run.engine"] >= {"diffrestore.run.plan", "diffrestore.run.preflight",
                                               "diffrestore.run.restore"}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_registry_builds_no_networks() -> None:
    graph = _graph()
    for name, targets in graph.items():
        if name.startswith("diffrestore.registry"):
            assert not {t for t in targets if t.startswith(("diffrestore.priors", "diffrestore.solvers"))}, name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_is_too_long(name: str) -> None:
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concern"


def test_the_top_level_shows_the_architecture() -> None:
    """A few entry modules and one package per concern; everything else lives in a package."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == {"__init__", "__main__", "api", "errors", "train"}, sorted(modules)


def test_type_level_imports_count_as_dependencies(tmp_path) -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    (tmp_path / "a.py").write_text(source, encoding="utf-8")
    assert _imports("diffrestore.a", tmp_path / "a.py", {"diffrestore.a", "diffrestore.b"}) == {"diffrestore.b"}


def test_solvers_declare_the_kind_the_method_table_says() -> None:
    from diffrestore.solvers import METHOD_NAMES, solver_class
    from diffrestore.solvers.methods import METHOD_KINDS

    assert set(METHOD_NAMES) == set(METHOD_KINDS)
    for method, kind in METHOD_KINDS.items():
        assert solver_class(method).prior_kind == kind, method


TESTS = Path(__file__).resolve().parent


def _mirror_problems(tests: Path, package: Path) -> list[str]:
    """How the tests folder strays from the package's layout: each subfolder of tests/ is a package of diffrestore
    and holds only test_<name>.py files, <name> starting with one of that package's module names (or the package's
    own name); a module's tests are found by its name. Basenames are unique across tests/ and there is no
    __init__.py: with pytest's default import mode a test module is imported by its basename (and a
    tests/imageio/__init__.py would shadow the real imageio package)."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("*.py")):
        relative = path.relative_to(tests)
        if relative.parts[0] in ("fixtures", "__pycache__"):
            continue
        if path.name == "__init__.py":
            problems.append(f"{relative}: no __init__.py in tests/ (test modules are imported by their basename)")
        if path.name in seen:
            problems.append(f"{relative}: basename also used by {seen[path.name]}")
        seen.setdefault(path.name, relative)
    folders = [p for p in tests.iterdir() if p.is_dir() and p.name not in ("fixtures", "__pycache__")]
    for folder in sorted(f for f in folders if any(f.rglob("*.py"))):  # a folder left with bytecode only: ignored
        source = package / folder.name
        if not (source / "__init__.py").is_file():
            problems.append(f"{folder.name}/: not a package of diffrestore (tests/<package>/ mirrors diffrestore/)")
            continue
        names = sorted({p.stem for p in source.glob("*.py") if p.stem not in ("__init__", "__main__")} | {folder.name})
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(tests)
            if "__pycache__" in relative.parts:
                continue
            if path.is_dir():
                problems.append(f"{relative}/: tests/<package>/ holds no subfolders")
            elif path.suffix == ".py" and path.name != "__init__.py":
                stem = path.stem.removeprefix("test_")
                if not path.name.startswith("test_") or not any(stem == n or stem.startswith(n + "_") for n in names):
                    problems.append(f"{relative}: name it test_<module>[_topic].py after a module of "
                                    f"diffrestore/{folder.name}/ ({', '.join(names)}), or move it")
    return problems


def test_the_tests_mirror_the_package() -> None:
    problems = _mirror_problems(TESTS, PACKAGE)
    assert not problems, "\n".join(problems)


def test_the_mirror_check_finds_misplaced_tests(tmp_path) -> None:
    package, tests = tmp_path / "diffrestore", tmp_path / "tests"
    for module in ("run/__init__.py", "run/plan.py", "run/progress.py", "solvers/__init__.py", "solvers/base.py"):
        (package / module).parent.mkdir(parents=True, exist_ok=True)
        (package / module).write_text("")
    files = ("test_api.py", "cli_support.py", "fixtures/model/make_fixture.py", "fixtures/model/test_plan.py",
             "run/test_plan.py", "run/test_progress_reporter.py", "run/test_run.py", "solvers/test_base_solver.py",
             # misplaced:
             "run/test_planner.py", "run/test_budget.py", "run/helpers.py", "run/deeper/test_plan_deep.py",
             "engine/test_engine.py", "solvers/test_api.py", "solvers/__init__.py")
    for name in files:
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text("")
    problems = _mirror_problems(tests, package)
    assert sorted(problem.split(": ")[0] for problem in problems) == [
        "engine/", "run/deeper/", "run/helpers.py", "run/test_budget.py", "run/test_planner.py",
        "solvers/__init__.py", "solvers/test_api.py", "test_api.py"], problems
    assert "test_api.py: basename also used by solvers/test_api.py" in problems, problems
