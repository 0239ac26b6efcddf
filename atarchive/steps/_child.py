"""Run a step's work in a child process with the step's working directory, log, timeout and
cancellation (the runner is imported lazily so planning never loads it)."""

from __future__ import annotations

from .base import RunContext


def call(func: str, kwargs: dict, ctx: RunContext) -> dict:
    from ..casa.runner import run_in_child

    return run_in_child(
        func,
        kwargs,
        workdir=ctx.workdir,
        log_path=ctx.log_path,
        timeout=ctx.view.cfg.execution.step_timeout_s or None,
        on_start=ctx.on_start,
        cancel=ctx.cancel,
    )
