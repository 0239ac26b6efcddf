"""Named errors. The CLI turns each into one clear line and a non-zero exit code; :func:`error_line`
makes the one line stored for a failed unit, :func:`is_temporary` decides whether it is retried."""

import errno as _errno
import re as _re


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


# -- one-line errors and what is worth retrying -------------------------------------------------
ERROR_LINE_MAX = 300

#: OS errors that can go away by themselves (disk full, a flaky mount, a busy table): retried.
TRANSIENT_ERRNOS = frozenset({_errno.ENOSPC, _errno.EDQUOT, _errno.EIO, _errno.EAGAIN, _errno.EBUSY,
                              _errno.ETIMEDOUT, _errno.ESTALE, _errno.EINTR, _errno.ENOMEM, _errno.EMFILE,
                              _errno.ENFILE, _errno.ECONNRESET, _errno.ECONNREFUSED, _errno.EHOSTUNREACH,
                              _errno.EROFS, _errno.EACCES})  # a mount remounted read-only, then fixed

#: Messages of errors raised in a CASA child that are worth retrying (another process holds a table).
_TRANSIENT_TEXT = _re.compile(r"\block(ed)?\b|resource temporarily unavailable|cannot be locked|"
                              r"no space left on device|disk quota exceeded|stale file handle", _re.I)


def is_temporary(err: BaseException) -> bool:
    """Whether a failed unit is worth retrying. Named step errors say so themselves; an OS error is
    temporary only for a transient errno (a work root that is a file is not); any other exception
    (a bug, bad data) is permanent: retrying gives the same result."""
    if isinstance(err, TemporaryStepError):
        return True
    if isinstance(err, StepError):
        return False
    if isinstance(err, OSError):
        return err.errno in TRANSIENT_ERRNOS
    return False


def transient_message(type_name: str, message: str) -> bool:
    """An exception of an unknown type raised in a child (only its name and text cross back):
    worth retrying when its text says a table is locked or the disk is full."""
    return bool(_TRANSIENT_TEXT.search(f"{type_name}: {message}"))


_EXC_LINE = _re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure|Warning)"
                        r"|KeyError|StopIteration)(?::\s*(.*))?$")
_CASA_LOG = _re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?\s+(?:(?:INFO|WARN|SEVERE|DEBUG\d*|"
                        r"ERROR|WARNING)\s+)?(?:\S+::\S*\s+)?")
_NOISE = _re.compile(r"^\s*(?:[\^~]+\s*)+$|^Traceback \(most recent call last\)|^\s*File \"|^During handling of|"
                     r"^The above exception was the direct cause|^\s*\+\s|^===|leap second|^-+$", _re.I)
_LONG_PATH = _re.compile(r"(?<![\w.])/[^\s'\"]{40,}")
_OWN_ERRORS = {"StepError", "TemporaryStepError", "PermanentStepError", "AtarchiveError"}


def _clean(line: str) -> str:
    line = _CASA_LOG.sub("", line.strip())
    line = _re.sub(r"^Exception Reported:\s*", "", line)
    return " ".join(line.split())


def error_cause(text: str) -> str:
    """The cause in an error's text (a message, a child's stderr, a multi-KB CASA traceback): the
    last exception line of the last traceback (``RuntimeError: …``, our own step errors without
    their class name), else the first line that is not noise (CASA log prefixes, ``^^^^`` markers,
    ``File "…"`` frames stripped)."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        start = max(i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last)"))
        for ln in reversed(lines[start:]):
            m = _EXC_LINE.match(ln.strip())
            if m and not ln.startswith((" ", "\t")):
                name, msg = m.group(1), _clean(m.group(2) or "")
                if name in _OWN_ERRORS:
                    return msg or name
                return f"{name}: {msg}" if msg else name
    for ln in lines:
        if _NOISE.search(ln):
            continue
        c = _clean(ln)
        if c:
            m = _EXC_LINE.match(c)
            if m and m.group(1) in _OWN_ERRORS:
                return _clean(m.group(2) or "") or m.group(1)
            return c
    return "unknown error"


def error_line(step: str, unit: str, text: str, log_path: str | None = None, *, note: str = "",
               limit: int = ERROR_LINE_MAX) -> str:
    """The one line stored for a failed unit (``sessions.error``, the run row): ``step unit: cause
    (log: path)``, at most ``limit`` characters. Only the cause is shortened (ending in "…"): the
    step, the unit, the ``note`` (e.g. "after 3 attempts") and the log path always show whole. The
    full text stays in the step log."""
    head = f"{step} {unit}".strip() + ": "
    tail = (f" ({note})" if note else "") + (f" (log: {log_path})" if log_path else "")
    cause = error_cause(text)
    room = max(20, limit - len(head) - len(tail))
    if len(cause) > room:  # first, long paths in the cause keep only their last part
        cause = _LONG_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], cause)
    if len(cause) > room:
        cause = cause[:room - 1].rstrip() + "…"
    return head + cause + tail
