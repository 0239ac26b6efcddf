"""A dask WorkerPlugin giving every worker (of a LocalCluster or of a remote scheduler, including
workers that join later) what the thread executor has: CASA child processes started ahead of need,
refilled as each task ends, so a unit's CASA call takes a child that has already imported
casatools/casatasks (~3.5 s) instead of starting a cold one. Pickled by reference: workers import
this module (atarchive is installed wherever a worker runs)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class WarmCasa(WorkerPlugin):
    name = "atarchive-warm-casa"

    def __init__(self, spares: int = 1):
        self.spares = spares

    def setup(self, worker) -> None:
        from .children import SPARES

        SPARES.limit = self.spares
        SPARES.refill()

    def transition(self, key, start, finish, **kwargs) -> None:
        if start == "executing" and finish in ("memory", "error"):
            from .children import SPARES

            SPARES.refill()  # the task's CASA child is gone: the next task's loads meanwhile

    def teardown(self, worker) -> None:
        from .children import SPARES

        SPARES.close()
