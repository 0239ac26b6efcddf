"""Several processes opening a new catalogue at once (the daemon starting while `scan` or `run` does;
queries such as `status` never create one) all get a fully migrated catalogue; none fails on a table
another one has just created."""

from __future__ import annotations

from multiprocessing import get_context

from atarchive.catalogue.migrate import migration_files


def _open(path: str) -> list[str]:
    from atarchive.catalogue import Catalogue

    with Catalogue(path) as c:
        return sorted(r["name"] for r in c.q("SELECT name FROM _migrations"))


def test_processes_opening_a_new_catalogue_at_once(tmp_path):
    want = sorted(n for n, _ in migration_files())
    with get_context("spawn").Pool(4) as pool:
        for i in range(3):
            assert pool.map(_open, [str(tmp_path / f"cat{i}.db")] * 4) == [want] * 4
