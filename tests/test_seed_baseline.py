"""The frozen seed-style baseline (bench/seed_baseline) is its own code: nothing in it imports atarchive,
so no change to atarchive's steps, executor or CASA helpers can move the figure it is compared with."""

from __future__ import annotations

import ast

from conftest import REPO


def test_seed_baseline_imports_nothing_from_atarchive():
    files = sorted((REPO / "bench" / "seed_baseline").glob("*.py"))
    assert {f.name for f in files} >= {"run.py", "stages.py"}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "atarchive" or n.startswith("atarchive.") for n in names), (f.name, names)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
                assert "atarchive" not in ast.unparse(node), f.name
