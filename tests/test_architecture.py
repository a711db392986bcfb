"""The architecture, checked: dependencies point one way and no package imports in a circle.

Layers, bottom to top (DESIGN.md): errors, _atomic, _device, _types, db -> integrators, nets ->
data -> models -> checkpoint -> evaluation, report, plotting -> run -> training -> cli.
``simulators`` sits beside the library and depends on it; only the CLI joins the two.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hamgrad", "simulators")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, known: set[str], top_level_only: bool) -> set[str]:
    """Modules of ``known`` that ``path`` imports (at module level, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if top_level_only:
        nodes: list[ast.AST] = [n for n in tree.body if not _is_type_checking_block(n)]
        nodes += [n for stmt in tree.body if isinstance(stmt, ast.Try) for n in stmt.body]
    else:
        nodes = [
            n for stmt in tree.body if not _is_type_checking_block(stmt) for n in ast.walk(stmt)
        ]
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n in known or n.split(".")[0] in PACKAGES}
    return found


def import_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    modules = _modules()
    return {name: _imports(path, set(modules), top_level_only) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_any_package():
    assert find_cycle(import_graph()) is None


def test_the_cycle_check_can_fail():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _importers(target_prefixes: tuple[str, ...], graph) -> dict[str, set[str]]:
    return {m: {t for t in deps if t.startswith(target_prefixes)} for m, deps in graph.items()}


# (importing modules, modules they must not import)
FORBIDDEN = [
    (
        (
            "hamgrad.integrators",
            "hamgrad.nets",
            "hamgrad.errors",
            "hamgrad._atomic",
            "hamgrad._device",
            "hamgrad._resources",
            "hamgrad._types",
            "hamgrad._version",
            "hamgrad.db",
            "hamgrad.data",
        ),
        (
            "hamgrad.models",
            "hamgrad.training",
            "hamgrad.evaluation",
            "hamgrad.run",
            "hamgrad.checkpoint",
            "hamgrad.report",
            "hamgrad.plotting",
            "hamgrad.cli",
        ),
    ),
    (
        (
            "hamgrad.evaluation",
            "hamgrad.plotting",
            "hamgrad.report",
            "hamgrad.checkpoint",
            "hamgrad.run",
        ),
        ("hamgrad.training", "hamgrad.cli"),
    ),
    (("hamgrad.models",), ("hamgrad.training", "hamgrad.evaluation", "hamgrad.run", "hamgrad.cli")),
    (
        ("simulators",),
        (
            "hamgrad.models",
            "hamgrad.training",
            "hamgrad.evaluation",
            "hamgrad.run",
            "hamgrad.cli",
            "hamgrad.nets",
        ),
    ),
]


@pytest.mark.parametrize(("sources", "targets"), FORBIDDEN)
def test_dependencies_point_down(sources, targets):
    graph = import_graph(top_level_only=False)  # a hidden import in a function counts too
    bad = {
        m: deps for m, deps in _importers(targets, graph).items() if m.startswith(sources) and deps
    }
    assert not bad


def test_only_the_cli_joins_hamgrad_and_simulators():
    graph = import_graph(top_level_only=False)
    bad = {
        m
        for m, deps in graph.items()
        if m.startswith("hamgrad")
        and not m.startswith("hamgrad.cli")
        and any(d.startswith("simulators") for d in deps)
    }
    assert not bad


def test_library_imports_are_at_the_top_of_each_file():
    """Outside the CLI (which defers them to keep ``--help`` fast) no import hides in a body."""
    anywhere, top = import_graph(top_level_only=False), import_graph(top_level_only=True)
    hidden = {
        m: anywhere[m] - top[m]
        for m in anywhere
        if not m.startswith("hamgrad.cli") and anywhere[m] - top[m]
    }
    assert not hidden


def test_training_and_evaluation_do_not_load_simulators():
    code = (
        "import sys, hamgrad.training, hamgrad.evaluation, hamgrad.run, hamgrad.plotting; "
        "print('simulators' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


def test_version_and_help_do_not_load_torch():
    code = (
        "import sys; from click.testing import CliRunner; from hamgrad.cli import main; "
        "r = CliRunner().invoke(main, ['--version']); "
        "print(r.exit_code, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "0 False"
