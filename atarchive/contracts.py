"""Named contracts shared by the planner, the reconciler, the steps and the CLI.

The values are the strings stored in the catalogue and printed in ``--json`` output (``StrEnum``
members compare and serialise as those strings), so naming them changes nothing on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable


class StepName(StrEnum):
    """The steps, in run order."""

    COPY = "copy"
    COMPRESS = "compress"
    CONCAT = "concat"
    FIX = "fix"
    CALIBRATE = "calibrate"
    SELFCAL = "selfcal"
    IMAGE = "image"
    SOURCES = "sources"
    REPORT = "report"


STEP_ORDER: tuple[StepName, ...] = tuple(StepName)


class UnitStatus(StrEnum):
    """A planned unit: up to date, to run, running now, failed for good, or waiting for upstream."""

    OK = "ok"
    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    WAITING = "waiting"


class SessionState(StrEnum):
    INCOMPLETE = "incomplete"  # files missing or still growing
    PENDING = "pending"  # work to do
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunStatus(StrEnum):
    """A row of ``step_runs``."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StepSummary(StrEnum):
    """One step of one session, as `status` shows it."""

    DONE = "done"
    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    WAITING = "waiting"
    NONE = "none"


# -- inputs -----------------------------------------------------------------------------------
def input_key(step: str, unit: str = "") -> str:
    """The key of an input in a unit's fingerprint: ``step`` alone for a step's only unit, else
    ``step:unit`` (source files are the pseudo-step ``files``). Stored in every step run: fixed."""
    return f"{step}:{unit}" if unit else str(step)


def parse_input_key(key: str) -> tuple[str, str]:
    """(step, unit) of an input key made by :func:`input_key`."""
    step, _, unit = key.partition(":")
    return step, unit


# -- products and outcomes ----------------------------------------------------------------------
@dataclass(frozen=True)
class Product:
    """A file or directory a unit made. ``field``/``lo``/``role`` name what an image shows."""

    kind: str
    path: Path
    meta: dict = field(default_factory=dict)
    field: str | None = None
    lo: str | None = None
    role: str | None = None

    def row(self, fingerprint: str) -> dict:
        """The products-table row (field/LO/role kept in ``meta``, as earlier releases wrote them)."""
        meta = dict(self.meta)
        for k in ("field", "lo", "role"):
            if getattr(self, k) is not None:
                meta.setdefault(k, getattr(self, k))
        return {"kind": self.kind, "path": str(self.path), "fingerprint": fingerprint, "meta": meta}


@dataclass(frozen=True)
class ChildCall:
    """A function of ``atarchive.casa`` to run in a child process with these keyword arguments."""

    func: Callable[..., Any]
    kwargs: dict

    @property
    def target(self) -> str:
        """``module:function``, as the child process imports it."""
        return f"{self.func.__module__}:{self.func.__qualname__}"


@dataclass(frozen=True)
class Outcome:
    """How one unit's run ended: its products and result, or the error; and its own time span
    (for a unit of a batch, its share of the batch's wall time)."""

    products: tuple[Product, ...] = ()
    result: dict = field(default_factory=dict)
    error: BaseException | None = None
    started: float | None = None
    finished: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started
