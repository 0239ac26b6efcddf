"""Run one function in a child Python process: its own working directory, CASA log captured to a
file, offline site config, result back as JSON. Crashes, timeouts and locked tables become
TemporaryStepError; errors the function flags as bad data (PermanentStepError) and any other
exception stay permanent.

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

from ..errors import PermanentStepError, StepError, TemporaryStepError, transient_message
from ..casa.site import child_env

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
    (out,) = run_batch_in_child([{"func": func, "kwargs": kwargs, "log_path": log_path}], workdir=workdir,
                                timeout=timeout, env=env, on_start=on_start, cancel=cancel)
    if isinstance(out, Exception):
        raise out
    return out


class Spares:
    """CASA child processes started ahead of need: casatools/casatasks take ~3.5 s to import, so a
    child that has already imported them waits (idle, on its stdin) for the next CASA call. Only
    for calls that use casatools (never python-casacore: the two must not share a process). The
    reconciler decides when to start them (``refill``: up to ``limit``, when a core is free)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[subprocess.Popen] = []
        self.limit = 0

    def take(self) -> subprocess.Popen | None:
        with self._lock:
            while self._idle:
                proc = self._idle.pop(0)
                if proc.poll() is None:
                    return proc
        return None

    def refill(self) -> None:
        with self._lock:
            self._idle = [p for p in self._idle if p.poll() is None]
            try:
                while len(self._idle) < self.limit:
                    self._idle.append(subprocess.Popen(
                        [sys.executable, "-m", "atarchive.casa.child", "--warm"], cwd=tempfile.gettempdir(),
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env=child_env(None), start_new_session=True, preexec_fn=_die_with_parent))
            except OSError:  # no spare now (e.g. out of processes): calls start their own children
                pass

    def close(self) -> None:
        """Let the idle spares go (EOF on stdin: they exit)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for proc in idle:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()


SPARES = Spares()


def _hand_over(proc: subprocess.Popen, spec_path: str, workdir: Path) -> bool:
    """Give a spare child its call: its output goes to the call's log from here on (the child
    redirects it per call)."""
    try:
        job = {"spec": spec_path, "cwd": str(workdir), "t": time.time()}
        proc.stdin.write((json.dumps(job) + "\n").encode())
        proc.stdin.close()
        return True
    except OSError:  # it died meanwhile
        proc.kill()
        proc.wait()
        return False


def run_batch_in_child(calls: list[dict], *, workdir: Path, timeout: float | None = None, env: dict | None = None,
                       on_start: Callable[[int], None] | None = None,
                       cancel: threading.Event | None = None, casa_tools: bool = False) -> list:
    """Run several calls ({func, kwargs, log_path}) one after the other in ONE child process (imports
    of pyuvdata/CASA are paid once). Returns, per call, its result or the StepError it raised.
    ``timeout`` is per call. ``casa_tools``: the calls use casatools, so a spare child may take them."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fd, spec_path = tempfile.mkstemp(prefix="call-", suffix=".json", dir=workdir)
    items = []
    for i, c in enumerate(calls):
        log = Path(c["log_path"])
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {c['func']} (pid {os.getpid()} → child)\n")
        items.append({"func": c["func"], "kwargs": c["kwargs"], "log": str(log),
                      "result": spec_path[:-5] + f".result{i}.json"})
    with os.fdopen(fd, "w") as fh:
        json.dump({"calls": items}, fh)
    proc = SPARES.take() if casa_tools and env is None else None
    if proc is not None and not _hand_over(proc, spec_path, workdir):
        proc = None
    warm = proc is not None
    if proc is None:
        first_log = open(items[0]["log"], "a")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "atarchive.casa.child", spec_path], cwd=workdir,
                                    stdout=first_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=child_env(env), start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            first_log.close()
    if on_start:
        on_start(proc.pid)
    t0 = time.time()
    killed = None
    limit = timeout * len(calls) if timeout else None
    while True:
        try:
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            killed = "cancelled"
        elif limit and time.time() - t0 > limit:
            killed = f"timed out after {limit:.0f} s"
        if killed:
            _kill_group(proc)
            break
    rc = proc.returncode
    outs = []
    try:
        for it in items:
            try:
                with open(it["result"]) as fh:
                    res = json.load(fh)
            except (OSError, ValueError):
                res = None
            out = _outcome(it, res, rc, killed)
            if warm and isinstance(out, dict):
                out = {**out, "_warm_child": True}  # ran in a spare that had CASA loaded already
            outs.append(out)
        return outs
    finally:
        for p in [spec_path] + [it["result"] for it in items]:
            try:
                os.unlink(p)
            except OSError:
                pass
        for stray in workdir.glob("casa-*.log"):  # CASA ignores nologfile in some paths
            try:
                with open(items[-1]["log"], "a") as log, open(stray) as s:
                    log.write(s.read())
                stray.unlink()
            except OSError:
                pass


def _outcome(it: dict, res: dict | None, rc: int | None, killed: str | None):
    func, log_path = it["func"], Path(it["log"])
    if res is None:
        if killed:
            return TemporaryStepError(f"{func} {killed}")
        how = f"killed by signal {signal.Signals(-rc).name}" if rc and rc < 0 else f"exited with code {rc}"
        return TemporaryStepError(f"{func}: child process {how} without a result\n{_tail(log_path)}")
    if res.get("ok"):
        out = res["result"]
        if isinstance(out, dict) and res.get("seconds") is not None:
            out = {**out, "_call_seconds": round(res["seconds"], 3)}  # time inside the CASA/pyuvdata call
        return out
    kind = res.get("kind")
    msg = res.get("message") or "unknown error"
    if kind == "permanent":
        return PermanentStepError(msg)
    if kind == "temporary":
        return TemporaryStepError(msg)
    # Any other exception (CASA's RuntimeError, a bug): permanent unless its text says a table is locked
    # or the disk is full. Its traceback is in the step log.
    kind_cls = TemporaryStepError if transient_message(res.get("type", "Error"), msg) else PermanentStepError
    return kind_cls(f"{res.get('type', 'Error')}: {msg}")


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
