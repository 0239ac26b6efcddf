"""The catalogue: a SQLite file on local disk, and the only package that speaks SQL.

:class:`Catalogue` gathers named methods by what they touch — sessions and their rows
(:mod:`.sessions`), what the indexer writes (:mod:`.ingest`), step runs and forces (:mod:`.runs`),
products and flux measurements (:mod:`.products`), images (:mod:`.images`), sources found in
images and their reference check (:mod:`.sources`), the daemon's heartbeat (:mod:`.health`).
Schema changes only through the numbered migrations (:mod:`.migrate`).
"""

from __future__ import annotations

from .health import HealthRows
from .images import ImageRows
from .ingest import IngestRows
from .products import FLUX_COLUMNS, ProductRows
from .runs import RunRows
from .sessions import SessionNotFound, SessionRows
from .sources import SourceRows

__all__ = ["Catalogue", "SessionNotFound", "FLUX_COLUMNS"]


class Catalogue(SessionRows, IngestRows, RunRows, ProductRows, ImageRows, SourceRows, HealthRows):
    """Open (creating and migrating if needed) the catalogue at ``path``."""
