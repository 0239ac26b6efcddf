"""The house rules, checked on the source: no import circles inside atarchive/, and SQL only in
atarchive/catalogue/ (the one package that owns the database)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PKG = REPO / "atarchive"


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in PKG.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """module → atarchive modules it imports (at any depth of the file, inside functions too)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    stem = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from pkg import mod` depends on mod; `from mod import name` on mod
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("atarchive"):
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = import_graph()
    assert "atarchive.catalogue" in graph and graph["atarchive.reconciler"], "the graph was not built"
    assert cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE|PRAGMA)\b",
                 re.DOTALL)  # upper-case keywords, as every statement here is written


def test_sql_only_in_the_catalogue():
    offenders = []
    for path in PKG.rglob("*.py"):
        if "catalogue" in path.relative_to(PKG).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("sqlite3", "sqlite_utils") for n in names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports sqlite")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value[:50]!r}")
            if isinstance(node, ast.Attribute) and node.attr in ("conn", "db") and \
                    isinstance(node.value, (ast.Name, ast.Attribute)) and "cat" in ast.unparse(node.value):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} reaches into the catalogue's connection")
    assert offenders == []


def test_the_sql_check_sees_sql():
    assert SQL.search("SELECT id FROM step_runs WHERE x = 1") and SQL.search("UPDATE sessions SET error = ?")
    assert not SQL.search("select the reference antenna from the data")
