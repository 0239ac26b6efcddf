import os
import shutil
import time

import h5py
import pytest

from atarchive.scanner.discover import Indexer
from conftest import REAL_FILES, REAL_STEM, make_config, put_real_flat, put_real_nested, tree_checksums
from atarchive.catalogue import Catalogue


def scan(cat, cfg, **kw):
    return Indexer(cat, cfg, **kw).scan()


@pytest.mark.parametrize("put", [put_real_nested, put_real_flat])
def test_real_ata_headers_indexed(tmp_path, cfg, cat, put):
    put(tmp_path / "storage")
    rep = scan(cat, cfg)
    assert rep.errors == [] and rep.headers_read == 2
    (s,) = cat.sessions()
    assert s["key"] == "p001/2024-12-12-17:29:25" and s["ingest_state"] == "ready"
    assert s["layout"] == ("nested" if put is put_real_nested else "flat")
    (lo,) = cat.los(s["id"])
    assert lo["name"] == "A" and lo["nchan"] == 32 and lo["nsubbands"] == 2
    assert lo["freq_start_hz"] == pytest.approx(1.252e9) and lo["freq_end_hz"] == pytest.approx(1.2675e9)
    assert lo["channel_width_hz"] == pytest.approx(0.5e6)
    files = cat.files(s["id"])
    assert {f["nants_data"] for f in files} == {28} and {f["nants_telescope"] for f in files} == {42}
    assert {f["npols"] for f in files} == {4} and all(abs(f["integration_s"] - 30.0) < 0.1 for f in files)
    (sc,) = cat.scans(s["id"])
    assert sc["stem"] == REAL_STEM and sc["source"] == "3c286" and sc["field"] == "3c286" and sc["complete"] == 1
    (f,) = cat.fields(s["id"])
    assert f["ra_deg"] == pytest.approx(202.7845, abs=1e-3) and f["dec_deg"] == pytest.approx(30.5092, abs=1e-3)


def test_second_scan_changes_nothing_and_new_scan_is_added(tmp_path, cfg, cat):
    put_real_nested(tmp_path / "storage")
    scan(cat, cfg)
    before = cat.q("SELECT * FROM files ORDER BY id")
    rep = scan(cat, cfg)
    assert rep.headers_read == 0 and rep.new_files == 0 and not rep.sessions_touched
    assert cat.q("SELECT * FROM files ORDER BY id") == before
    stem2 = "uvh5_60647_63965_9760407_J1407+2827_0001"
    put_real_nested(tmp_path / "storage", stem=stem2)
    rep = scan(cat, cfg)
    assert rep.new_files == 2 and rep.headers_read == 2
    assert {s["stem"] for s in cat.scans(1)} == {REAL_STEM, stem2}


def test_growing_file_not_ready_until_stable(tmp_path, cat):
    cfg = make_config(tmp_path, scan={"stable_seconds": 30})
    put_real_nested(tmp_path / "storage")
    rep = scan(cat, cfg)  # files were just written: mtime is now
    assert rep.growing_files == 2 and rep.headers_read == 0
    assert cat.sessions()[0]["ingest_state"] == "incomplete"
    assert cat.scans(1)[0]["complete"] == 0 and "growing" in cat.scans(1)[0]["status_note"]
    rep = scan(cat, cfg, now=time.time() + 31)
    assert rep.headers_read == 2 and cat.sessions()[0]["ingest_state"] == "ready"


def test_file_that_keeps_changing_stays_growing(tmp_path, cat):
    cfg = make_config(tmp_path, scan={"stable_seconds": 5})
    sdir = put_real_nested(tmp_path / "storage", subbands=(352,))
    f = sdir / REAL_STEM / "LoA.C0352" / f"{REAL_STEM}.uvh5"
    os.utime(f, (time.time() - 100, time.time() - 100))
    scan(cat, cfg)
    assert cat.files(1)[0]["status"] == "ready"
    with open(f, "ab") as fh:  # another host appends
        fh.write(b"\0" * 10)
    rep = scan(cat, cfg)
    assert rep.changed_files == 1 and cat.files(1)[0]["status"] == "growing"


def test_scan_missing_a_subband_is_incomplete(tmp_path, cfg, cat):
    root = tmp_path / "storage"
    put_real_nested(root)
    put_real_nested(root, stem="uvh5_60647_63965_9760407_J1407+2827_0001", subbands=(352,))
    scan(cat, cfg)
    s = cat.sessions()[0]
    assert s["ingest_state"] == "incomplete"
    notes = {x["stem"]: x["status_note"] for x in cat.scans(s["id"])}
    assert "missing subbands: LoA.C0544" in notes["uvh5_60647_63965_9760407_J1407+2827_0001"]


def _bad_file(sdir, kind):
    """One bad input of the given kind, in its own scan of the session."""
    def stem(i):
        return f"uvh5_60647_6{i}000_1_bad{i}_0001"
    bad = {}
    p = sdir / stem(1) / "LoA.C0352" / f"{stem(1)}.uvh5"
    p.parent.mkdir(parents=True)
    p.write_bytes(REAL_FILES[352].read_bytes()[:50_000])
    bad["truncated"] = p
    p = sdir / stem(2) / "LoA.C0352" / f"{stem(2)}.uvh5"
    p.parent.mkdir(parents=True)
    p.touch()
    bad["empty"] = p
    p = sdir / stem(3) / "LoA.C0352" / f"{stem(3)}.uvh5"
    p.parent.mkdir(parents=True)
    with h5py.File(p, "w") as h:
        h["something"] = [1, 2, 3]
    bad["not uvh5"] = p
    p = sdir / "weird" / "place.uvh5"
    p.parent.mkdir(parents=True)
    shutil.copy(REAL_FILES[352], p)
    bad["layout"] = p
    for k, q in bad.items():
        if k != kind:
            q.unlink()
    return bad[kind]


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated"), ("empty", "empty file (0 bytes)"), ("not uvh5", "not uvh5"),
    ("layout", "unknown layout"),
])
def test_bad_input_fails_its_session_only(tmp_path, cfg, cat, kind, message):
    root = tmp_path / "storage"
    put_real_nested(root, session="2024-12-12-17:29:25")
    bad_sdir = root / "projects" / "p001" / "2024-12-13-00:00:00"
    put_real_nested(root, session="2024-12-13-00:00:00")
    path = _bad_file(bad_sdir, kind)
    before = tree_checksums(root)
    rep = scan(cat, cfg)
    errs = dict(rep.errors)
    assert message in errs[str(path)]
    good = cat.session("p001/2024-12-12-17:29:25")
    bad = cat.session("p001/2024-12-13-00:00:00")
    assert good["ingest_state"] == "ready" and good["error"] is None
    assert bad["ingest_state"] == "failed" and str(path) in bad["error"]
    row = cat.one("SELECT * FROM files WHERE path = ?", [str(path)])
    assert row["status"] == "error" and message in row["error"]
    assert tree_checksums(root) == before  # source untouched


def test_fixed_file_clears_the_error(tmp_path, cfg, cat):
    root = tmp_path / "storage"
    sdir = put_real_nested(root)
    bad = sdir / REAL_STEM / "LoA.C0544" / f"{REAL_STEM}.uvh5"
    bad.write_bytes(b"")
    scan(cat, cfg)
    assert cat.sessions()[0]["ingest_state"] == "failed"
    shutil.copy(REAL_FILES[544], bad)
    scan(cat, cfg)
    s = cat.sessions()[0]
    assert s["ingest_state"] == "ready" and s["error"] is None


def test_unreadable_directory_reported_and_rest_indexed(tmp_path, cfg, cat, monkeypatch):
    # Tests run as root, for whom chmod 000 does not deny access: inject EACCES for one directory.
    root = tmp_path / "storage"
    put_real_nested(root, session="2024-12-12-17:29:25")
    locked = put_real_nested(root, session="2024-12-14-00:00:00") / REAL_STEM
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rep = scan(cat, cfg)
    assert any("unreadable directory" in e for p, e in rep.errors if p == str(locked))
    assert cat.session("p001/2024-12-12-17:29:25")["ingest_state"] == "ready"
    assert cat.session("p001/2024-12-14-00:00:00")["ingest_state"] == "failed"


def test_names_with_spaces_quotes_semicolons(tmp_path, cfg, cat):
    root = tmp_path / "storage"
    for src in ["NGC 1234", "it's", "a;rm -rf x", 'say "hi"']:
        put_real_nested(root, session="2024-12-15-00:00:00", stem=f"uvh5_60647_62965_9760406_{src}_0001")
    rep = scan(cat, cfg)
    assert rep.errors == []
    assert sorted(s["source"] for s in cat.scans(1)) == sorted(["NGC 1234", "it's", "a;rm -rf x", 'say "hi"'])


def test_vanished_files_are_forgotten(tmp_path, cfg, cat):
    root = tmp_path / "storage"
    sdir = put_real_nested(root)
    put_real_nested(root, stem="uvh5_60647_63965_9760407_J1407+2827_0001")
    scan(cat, cfg)
    shutil.rmtree(sdir / "uvh5_60647_63965_9760407_J1407+2827_0001")
    scan(cat, cfg)
    assert [s["stem"] for s in cat.scans(1)] == [REAL_STEM]


def test_catalogue_reopens_without_reapplying_migrations(tmp_path, cfg):
    c = Catalogue(cfg.catalogue)
    n = c.one("SELECT COUNT(*) AS n FROM _migrations")["n"]
    c.close()
    c = Catalogue(cfg.catalogue)
    assert c.one("SELECT COUNT(*) AS n FROM _migrations")["n"] == n >= 1
    assert c.one("PRAGMA journal_mode")["journal_mode"] == "wal"
    c.close()


def test_many_headers_read_in_worker_processes_give_the_same_catalogue(tmp_path, monkeypatch):
    from atarchive.scanner import discover

    root = tmp_path / "storage"
    for i in range(3):
        put_real_nested(root, session=f"2024-12-1{i}-00:00:00")
    bad = root / "projects" / "p001" / "2024-12-19-00:00:00" / REAL_STEM / "LoA.C0352"
    bad.mkdir(parents=True)
    (bad / f"{REAL_STEM}.uvh5").write_bytes(REAL_FILES[352].read_bytes()[:50_000])
    rows, prefetched = {}, []
    orig = discover.Indexer._prefetch_headers

    def spy(self, *args):
        out = orig(self, *args)
        prefetched.append(len(out))
        return out

    monkeypatch.setattr(discover.Indexer, "_prefetch_headers", spy)
    monkeypatch.setattr(discover, "HEADER_CHUNK", 2)
    # one by one; in worker processes only; in workers and this process (which takes chunks no
    # worker has begun)
    for how, parallel_from, main_too in (("serial", 10_000, True), ("workers", 2, False), ("both", 2, True)):
        monkeypatch.setattr(discover, "PARALLEL_HEADERS_FROM", parallel_from)
        monkeypatch.setattr(discover, "MAIN_READS_TOO", main_too)
        cfg = make_config(tmp_path / how)
        cfg.storage_roots = [root]
        with Catalogue(cfg.catalogue) as c:
            rep = scan(c, cfg)
            assert rep.headers_read == 6 and len(rep.errors) == 1 and "truncated" in rep.errors[0][1]
            rows[how] = [{k: v for k, v in f.items() if k not in ("id", "stable_since")}
                         for f in c.q("SELECT * FROM files ORDER BY path")]
    assert prefetched == [0, 7, 7] and rows["workers"] == rows["serial"] == rows["both"]
