"""Named errors. The CLI turns each into one clear line and a non-zero exit code."""


class AtarchiveError(Exception):
    """Base class of every error atarchive reports to users."""


class ConfigError(AtarchiveError):
    """The configuration file is missing, not TOML, or has a wrong key or value."""


class IngestError(AtarchiveError):
    """A file on storage cannot be indexed (truncated, empty, not uvh5, unknown layout)."""


class StepError(AtarchiveError):
    """A pipeline step failed."""


class TemporaryStepError(StepError):
    """Worth retrying: I/O error, disk full, CASA crash, timeout."""


class PermanentStepError(StepError):
    """Bad data or an impossible request: retrying will not help; the session is marked failed."""
