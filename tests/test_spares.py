"""Spare CASA children: started ahead of need so a CASA step does not wait for casatools to import;
only CASA calls may take one, it runs the call in the call's work dir with the call's log, and
spares left idle go away when told (the reconciler does when it has nothing to run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atarchive.execution.children import SPARES, run_batch_in_child

REPO = str(Path(__file__).resolve().parent.parent)


def _call(tmp_path: Path, i: int, casa_tools: bool) -> dict:
    (out,) = run_batch_in_child([{"func": "tests.casa_probe:whoami", "kwargs": {"tag": f"call {i}"},
                                  "log_path": tmp_path / f"call{i}.log"}],
                                workdir=tmp_path / f"w{i}", casa_tools=casa_tools)
    assert not isinstance(out, Exception), out
    return out


@pytest.mark.casa
def test_a_spare_runs_the_next_casa_call_and_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO)  # the children import tests.casa_probe
    monkeypatch.setattr(SPARES, "limit", 1)
    try:
        first = _call(tmp_path, 1, casa_tools=True)
        assert first["casa_before_call"] is False and SPARES._idle == []  # no spare: a child started for it
        SPARES.refill()  # what the reconciler does while CASA work is ahead and a core is free
        (spare,) = SPARES._idle
        second = _call(tmp_path, 2, casa_tools=True)
        assert second["pid"] == spare.pid and second["casa_before_call"] is True
        assert second["cwd"] == str(tmp_path / "w2")
        assert "call 2" in (tmp_path / "call2.log").read_text()
        assert SPARES._idle == []
        SPARES.refill()
        (refill,) = SPARES._idle
        assert refill.pid != spare.pid and refill.poll() is None
        # a call that may use python-casacore never gets a child with casatools loaded
        third = _call(tmp_path, 3, casa_tools=False)
        assert third["pid"] != refill.pid and third["casa_before_call"] is False
        assert SPARES._idle == [refill]
    finally:
        SPARES.close()
    assert SPARES._idle == [] and refill.wait(timeout=10) == 0  # told to go: it exits cleanly


def test_no_spare_when_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO)
    monkeypatch.setattr(SPARES, "limit", 0)
    SPARES.refill()
    out = _call(tmp_path, 1, casa_tools=True)
    assert out["casa_before_call"] is False and SPARES._idle == []
