"""Run one function in a child Python process: its own working directory, CASA log captured to a
file, offline site config, result back as JSON. Crashes and timeouts become TemporaryStepError;
errors the function flags as bad data (PermanentStepError) stay permanent.

python-casacore (used by pyuvdata's write_ms) and casatools must not share a process, and a CASA
segfault must not take the reconciler down: every CASA or conversion call goes through here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import PermanentStepError, StepError, TemporaryStepError
from .site import child_env

TERM_GRACE_S = 10.0


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keep = [ln for ln in lines if "leap second" not in ln.lower()]
    return "\n".join(keep[-n:])


def run_in_child(func: str, kwargs: dict, *, workdir: Path, log_path: Path, timeout: float | None = None,
                 env: dict | None = None, on_start: Callable[[int], None] | None = None,
                 cancel: threading.Event | None = None) -> dict:
    """Call ``module:function(**kwargs)`` in a child process and return its (JSON) result."""
    workdir = Path(workdir)
    log_path = Path(log_path)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd, spec_path = tempfile.mkstemp(prefix="call-", suffix=".json", dir=workdir)
    result_path = spec_path[:-5] + ".result.json"
    with os.fdopen(fd, "w") as fh:
        json.dump({"func": func, "kwargs": kwargs, "result": result_path, "log": str(log_path)}, fh)
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {func} (pid {os.getpid()} → child)\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "atarchive.casa.child", spec_path], cwd=workdir,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(env), start_new_session=True, preexec_fn=_die_with_parent)
    if on_start:
        on_start(proc.pid)
    t0 = time.time()
    killed = None
    while True:
        try:
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            killed = "cancelled"
        elif timeout and time.time() - t0 > timeout:
            killed = f"timed out after {timeout:.0f} s"
        if killed:
            _kill_group(proc)
            break
    rc = proc.returncode
    try:
        if killed:
            raise TemporaryStepError(f"{func} {killed}")
        try:
            with open(result_path) as fh:
                res = json.load(fh)
        except (OSError, ValueError):
            res = None
        if res is None:
            how = f"killed by signal {signal.Signals(-rc).name}" if rc and rc < 0 else f"exited with code {rc}"
            raise TemporaryStepError(f"{func}: child process {how} without a result\n{_tail(log_path)}")
        if res.get("ok"):
            return res["result"]
        kind = res.get("kind")
        msg = res.get("message") or "unknown error"
        if kind == "permanent":
            raise PermanentStepError(msg)
        if kind == "temporary":
            raise TemporaryStepError(msg)
        raise TemporaryStepError(f"{res.get('type', 'Error')}: {msg}\n{_tail(log_path, 10)}")
    finally:
        for p in (spec_path, result_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        for stray in workdir.glob("casa-*.log"):  # CASA ignores nologfile in some paths
            try:
                with open(log_path, "a") as log, open(stray) as s:
                    log.write(s.read())
                stray.unlink()
            except OSError:
                pass


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (e.g. ``kill -9`` of the reconciler),
    so no orphaned CASA process keeps writing after a crash (Linux only; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=TERM_GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


__all__ = ["run_in_child", "StepError"]
