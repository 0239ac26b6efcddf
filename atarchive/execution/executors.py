"""Where step units run: threads of this process (default) or dask.distributed workers.

Both hand back ``concurrent.futures.Future`` objects, so the reconciler's loop is the same. Each
unit still runs its CASA work in a child process of whichever process executes it; the catalogue
stays single-writer (results flow back to the reconciler). With dask, workers on several machines
must share the storage and the work root at the same paths.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from ..config import Config
from ..errors import ConfigError


class ThreadExecutor:
    name = "threads"
    remote = False

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unit")

    def submit(self, fn: Callable, *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def shutdown(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


class DaskExecutor:
    """dask.distributed: a scheduler address, or a LocalCluster of ``workers`` single-threaded
    worker processes (no home-made scheduling: dask places the units)."""

    name = "dask"
    remote = True

    def __init__(self, workers: int, address: str = "", spares: int = 1):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError('execution.executor = "dask" needs dask.distributed: pip install "atarchive[dask]"') \
                from None
        self._cluster = None
        if address:
            try:
                self.client = Client(address, timeout="20s")
            except OSError as err:
                raise ConfigError(f"execution.dask_scheduler {address!r}: cannot connect ({err})") from None
        else:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
        if spares > 0:
            from .warm import WarmCasa

            self.client.register_plugin(WarmCasa(spares))
        self._pending: dict[Future, Any] = {}

    def submit(self, fn: Callable, *args: Any) -> Future:
        cf: Future = Future()
        df = self.client.submit(fn, *args, pure=False)
        self._pending[cf] = df

        def done(f) -> None:
            self._pending.pop(cf, None)
            if cf.done():
                return
            try:
                cf.set_result(f.result())
            except BaseException as err:  # noqa: BLE001 - handed to the reconciler as the unit's outcome
                cf.set_exception(err)

        df.add_done_callback(done)
        return cf

    def shutdown(self, *, wait: bool = True) -> None:
        if wait:
            for cf in list(self._pending):
                try:
                    cf.result()
                except BaseException:  # noqa: BLE001 - outcomes are read by the reconciler
                    pass
        else:
            for cf, df in list(self._pending.items()):
                df.cancel()
                if not cf.done():
                    cf.cancel()
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(cfg: Config):
    ex = cfg.execution
    if ex.executor == "dask":
        return DaskExecutor(ex.n_workers(), ex.dask_scheduler, spares=1 if ex.n_spares() else 0)
    return ThreadExecutor(ex.n_workers())
