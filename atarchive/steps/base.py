"""The shape every step shares: a unit's spec, its planned state, what it runs with, what it made.

A step plans its units from the session view and the units upstream (``units``), turns one unit
into a child call (``prepare``: a function of ``atarchive.casa`` and its arguments), turns the
child's result into products (``collect``) and writes its own catalogue rows (``record``). The
reconciler drives these; steps never import the planner, the reconciler or the report builder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from ..config import Config
from ..contracts import ChildCall, Outcome, Product, StepName, UnitStatus
from ..view import SessionView

__all__ = ["ChildCall", "PlannedUnit", "Product", "RunContext", "SessionView", "Step", "StepResult", "UnitSpec"]


@dataclass
class UnitSpec:
    """One unit of work of a step (e.g. one scan × LO for copy).

    ``params`` and ``inputs`` (see :func:`atarchive.contracts.input_key`) are digested into the
    fingerprint recorded with every run: their shape is a contract with archives already processed.
    """

    key: str
    params: dict
    inputs: dict[str, str]
    outputs: list[Path]
    payload: dict = field(default_factory=dict)  # what prepare() needs; not part of the fingerprint
    releasable: bool = False  # outputs may be deleted once downstream products exist


@dataclass
class PlannedUnit:
    step: StepName
    spec: UnitSpec
    fingerprint: str
    version: int
    versions: dict
    status: UnitStatus
    reason: str
    attempt: int = 1
    not_before: float = 0.0  # retry backoff
    last_run: dict | None = None
    released: bool = False  # up to date, but its product was deleted after downstream used it

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class RunContext:
    """What one unit runs with: temporary output paths, its log and working directory, and the
    catalogue rows it may read (``products`` by step; ``records``: the session's rows for the report),
    given by the reconciler so the step never opens the catalogue itself."""

    view: SessionView
    unit: PlannedUnit
    tmp: dict[Path, Path]  # final output path → temporary path to write
    log_path: Path
    workdir: Path
    cancel: threading.Event | None
    on_start: Callable[[int], None] | None = None
    products: dict[str, list[dict]] = field(default_factory=dict)  # catalogue products by step
    records: dict | None = None

    def out(self, final: Path) -> Path:
        return self.tmp[final]


@dataclass
class StepResult:
    products: list[Product]
    result: dict[str, Any] = field(default_factory=dict)


class Step:
    """Base class: subclasses set name, version, software and implement units/prepare."""

    name: StepName
    version: int = 1
    software: str = "casa"  # key of fingerprint.SOFTWARE
    batchable: bool = False  # many small units may share one child process
    casa_tools: bool = False  # the child call uses casatools: a spare, already started CASA child may run it
    needs_records: bool = False  # the unit reads the session's catalogue rows (``RunContext.records``)
    # settings that decide how products are kept, not what they are: left out of the fingerprint
    retention: tuple[str, ...] = ()

    def settings(self, cfg: Config) -> BaseModel | None:
        """The step's typed section of the config (``[steps.<name>]``)."""
        return cfg.steps.for_step(self.name)

    def uses_casa_tools(self, cfg: Config) -> bool:
        """Whether this step's child calls use casatools under ``cfg`` (a spare CASA child may run them;
        python-casacore calls must not share its process)."""
        return self.casa_tools

    def params(self, cfg: Config) -> dict:
        """The settings as fingerprinted (retention settings left out)."""
        s = self.settings(cfg)
        return {} if s is None else s.model_dump(exclude=set(self.retention))

    def units(self, view: SessionView, up: dict[str, dict[str, PlannedUnit]]) -> list[UnitSpec]:
        raise NotImplementedError

    def prepare(self, ctx: RunContext) -> ChildCall:
        """Parent-side work before the child runs; returns the child call."""
        raise NotImplementedError

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        """Turn the child's result into products."""
        return StepResult([Product(self.name, ctx.unit.spec.outputs[0], res)], res)

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        """Called after outputs were renamed into place (e.g. to release inputs)."""

    def record(self, cat, session_id: int, run_id: int, outcome: Outcome) -> None:
        """Write step-specific catalogue rows from a successful outcome (runs in the reconciler, the
        single writer)."""
