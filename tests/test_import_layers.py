"""Imports run one way: down the layer list of docs/architecture.md, with no cycle (function-level imports included)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ghostcli"


def layers() -> list[list[str]]:
    """The numbered layer list between the ``layers`` markers of docs/architecture.md, top first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- layers -->")[1]
    rows = re.findall(r"^\d+\. (.+?)(?:\s+—.*)?$", block, flags=re.M)
    return [[name.strip().strip("`") for name in row.split(",")] for row in rows]


def units() -> set[str]:
    """The modules and packages directly under ``ghostcli/`` (the package's own ``__init__``/``__main__`` aside)."""
    return {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").exists()}


def unit(module: str) -> str:
    """The unit a module belongs to: ``ghostcli.cli.app`` -> ``cli``, ``ghostcli.resolve`` -> ``resolve``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ghostcli"


def edges() -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the files that make the import, for every ghostcli import anywhere in a file."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + ([f"{node.module}.{a.name}" for a in node.names]
                                           if node.module == "ghostcli" else [])
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                b = unit(target) if target.startswith("ghostcli.") else None
                if b and b != unit(module) and b in units():
                    found[(unit(module), b)].append(str(rel))
    return found


def test_every_unit_has_a_layer() -> None:
    named = {n for row in layers() for n in row}
    assert units() - named == set(), "add these to the layer list in docs/architecture.md"
    assert named - units() == set(), "the layer list names units that do not exist"


def test_imports_only_go_down() -> None:
    rank = {name: i for i, row in enumerate(layers()) for name in row}
    upward = {f"{a} -> {b}": files for (a, b), files in edges().items()
              if a in rank and b in rank and rank[b] < rank[a]}
    assert upward == {}


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges():
        graph[a].add(b)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, path + [node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(n, []) for n in sorted(graph) if n not in state), " -> ".join(cycle)


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    from ghostcli.cli import app\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "ghostcli.cli" for n in ast.walk(tree))
    assert ("analysis", "runtime") in edges()  # analysis/latency.py imports the runtime inside a function
