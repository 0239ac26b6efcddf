from pathlib import PurePath

import pytest

from atarchive.scanner.layout import LayoutError, parse_data_path, parse_stem

P = PurePath("/s/projects")


@pytest.mark.parametrize("source", ["3c286", "J1331+3030", "my_target_2", "NGC 1234", "it's;odd", "A_B+C D"])
def test_stem_source_parsed_from_both_ends(source):
    s = parse_stem(f"uvh5_60647_62965_9760406_{source}_0001")
    assert (s.mjd, s.sec_of_day, s.block, s.source, s.seq) == (60647, 62965, 9760406, source, 1)


def test_bad_stem():
    with pytest.raises(LayoutError):
        parse_stem("uvh5_notanumber_1_2_x_0001")


def test_nested_and_flat_paths():
    stem = "uvh5_60647_62965_9760406_3c286_0001"
    n = parse_data_path(P, P / "p1" / "2024-12-12-17:29:25" / stem / "LoB.C0544" / f"{stem}.uvh5")
    assert (n.project, n.session, n.lo, n.subband, n.layout) == ("p1", "2024-12-12-17:29:25", "B", 544, "nested")
    f = parse_data_path(P, P / "p1" / "2024-12-12-17:29:25" / f"ata.LoA.C0352.{stem}.uvh5")
    assert (f.lo, f.subband, f.layout, f.stem.source) == ("A", 352, "flat", "3c286")


def test_old_layout_project_is_session():
    stem = "uvh5_60647_62965_9760406_3c286_0001"
    d = parse_data_path(P, P / "p007" / stem / "LoA.C0352" / f"{stem}.uvh5")
    assert d.project == "p007" and d.session == "" and d.session_path == str(P / "p007")


def test_unknown_layout_is_an_error():
    with pytest.raises(LayoutError, match="unknown layout"):
        parse_data_path(P, P / "p1" / "sess" / "random" / "file.uvh5")
