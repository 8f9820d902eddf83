"""The library's shape: dependencies point one way (docs/design.md), with no exception.

Every ``import`` of every module is read with ``ast`` -- including imports inside functions, which
run later but still make one module depend on another -- and checked against the order below.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "moralkit"

ORDER = [
    "_warnings",
    "storage",
    "data",
    "games",
    "rewards",
    "opponents",
    "profiles",
    "chapters",
    "env",
    "tabular",
    "llm.compat",
    "llm.prompts",
    "llm.models",
    "llm.adapters",
    "llm.graphs",
    "llm.agent",
    "llm",
    "ppo",
    "grpo",
    "evaluate",
    "pluralistic",
    "analysis",
    "training",
    "experiments",
    "bench",
    "plots",
    "exercises",
    "widgets",
    "solutions",
    "colab",
    "workbook",
    "site",
    "cli",
    "__main__",
]
"""Every module of moralkit, lowest first: a module may import only modules listed before it."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "moralkit"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if module_name(p) != "moralkit"}


def imports_of(name: str, path: Path) -> set[str]:
    """The moralkit modules that ``name`` imports anywhere in its code."""
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)] if node.level > 1 else base_parts
                base = ".".join(base_parts + ([node.module] if node.module else []))
            elif (node.module or "").startswith("moralkit"):
                base = node.module.removeprefix("moralkit").lstrip(".")
            else:
                continue
            targets = []
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                targets.append(sub if sub in known else base)
        else:
            continue
        for target in targets:
            target = target.removeprefix("moralkit.") if target.startswith("moralkit.") else target
            if target in known and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


def test_every_module_has_a_place_in_the_order():
    assert sorted(modules()) == sorted(ORDER), "add the new module to ORDER here and to docs/design.md"


def test_dependencies_point_one_way():
    rank = {name: i for i, name in enumerate(ORDER)}
    upward = [f"{name} imports {target}" for name, targets in graph().items() for target in sorted(targets)
              if rank[target] >= rank[name]]
    assert not upward, "imports against the dependency order:\n" + "\n".join(upward)


def test_no_module_imports_one_that_imports_it_back():
    edges = graph()
    cycles = []

    def visit(node, path):
        for nxt in sorted(edges[node]):
            if nxt == path[0]:
                cycles.append(" -> ".join(path + [nxt]))
            elif nxt not in path and len(path) < len(edges):
                visit(nxt, path + [nxt])

    for start in edges:
        visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:10])


def test_the_check_sees_function_level_and_relative_imports(tmp_path):
    """The parser itself: an import inside a function, from a sibling package, counts."""
    edges = graph()
    assert "llm.agent" in edges["ppo"] and "storage" in edges["llm.models"]  # module level, two levels
    assert "plots" in edges["cli"]  # `from . import plots` inside a function


def test_the_core_never_imports_the_front_ends():
    front = {"plots", "widgets", "exercises", "solutions", "workbook", "site", "cli", "__main__"}
    core = [name for name in ORDER if name not in front]
    leaks = [f"{name} imports {t}" for name in core for t in graph()[name] & front]
    assert not leaks, leaks


# --------------------------------------------------------------------- documents the code cites
CITING = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "notebooks").glob("*.ipynb"),
          ROOT / "README.md", *(ROOT / "docs").glob("*.md")]


def test_no_reference_points_outside_the_repository():
    outside = re.compile(r"\bSPEC\b|DESIGN\.md")
    this_file = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in CITING if p.resolve() != this_file
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if outside.search(line)]
    assert not hits, "references to documents that are not in the repository:\n" + "\n".join(hits)


def test_every_cited_section_of_the_docs_exists():
    cited = re.compile(r"docs/([\w-]+\.md)(?:\s*(?:§|section\s+)(\d+)(?:\s*[-–,]\s*§?(\d+))?)?")
    seen = 0
    for path in CITING:
        for match in cited.finditer(path.read_text(encoding="utf-8")):
            doc = ROOT / "docs" / match.group(1)
            assert doc.exists(), f"{path.name} cites {doc.name}, which does not exist"
            headings = set(re.findall(r"^## (\d+)\.", doc.read_text(encoding="utf-8"), flags=re.M))
            for section in filter(None, match.group(2, 3)):
                assert section in headings, f"{path.name} cites {doc.name} §{section}, which has no such section"
                seen += 1
    assert seen > 40  # the code cites the science page throughout
