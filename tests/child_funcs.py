"""Functions the tests run in atarchive's child processes (the tests directory is put on PYTHONPATH)."""

import time
from pathlib import Path


def nap(*, seconds: float, out: str) -> dict:
    """Take ``seconds``, then write ``out``: a unit of known length."""
    time.sleep(seconds)
    Path(out).write_text(f"slept {seconds}\n")
    return {"slept": seconds}
