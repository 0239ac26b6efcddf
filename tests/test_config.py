from pathlib import Path

import pytest

from atarchive import config
from atarchive.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["atarchive.toml", "demo.toml"])
def test_example_configs_load(name):
    cfg = config.load(REPO / "examples" / name)
    assert cfg.catalogue.is_absolute() and cfg.work_root.is_absolute()
    assert cfg.steps.compress.chanbin >= 1
    assert cfg.source == (REPO / "examples" / name).resolve()


def test_relative_paths_resolve_against_config_dir(tmp_path):
    p = tmp_path / "sub" / "a.toml"
    p.parent.mkdir()
    p.write_text('storage_roots = ["data"]\nwork_root = "w"\ncatalogue = "c.db"\n')
    cfg = config.load(p)
    assert cfg.storage_roots == [tmp_path / "sub" / "data"]
    assert cfg.catalogue == tmp_path / "sub" / "c.db"


@pytest.mark.parametrize("text, expect", [
    ("[steps.compress]\nchanbinn = 4\n", "steps.compress.chanbinn: unknown key"),
    ("[steps.compress]\nchanbin = 0\n", "steps.compress.chanbin"),
    ("[steps.compress]\nflagger = 'magic'\n", "steps.compress.flagger"),
    ("bogus = 1\n", "bogus: unknown key"),
    ("[scan\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, expect):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert expect in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml")


def test_env_var_is_used(tmp_path, monkeypatch):
    p = tmp_path / "x.toml"
    p.write_text('catalogue = "env.db"\n')
    monkeypatch.setenv("ATARCHIVE_CONFIG", str(p))
    assert config.load().catalogue == tmp_path / "env.db"


def test_session_override_parses(tmp_path):
    p = tmp_path / "o.toml"
    p.write_text('[sessions."p1/2024-01-01-00:00:00"]\nflux_cals = ["my cal"]\nrefant = "2a"\n')
    cfg = config.load(p)
    assert cfg.sessions["p1/2024-01-01-00:00:00"].refant == "2a"


def test_casa_bound_strings_are_checked_when_the_config_is_read(tmp_path):
    """A value CASA would reject mid-run (after retries) is a one-line config error naming the key."""
    bad = {
        "[steps.calibrate]\nsolint_short = \"bogus\"\n": ("steps.calibrate.solint_short", "'bogus' is not a CASA solution interval"),
        "[steps.image]\nweighting = \"nat\"\n": ("steps.image.weighting", "'nat' is not a tclean weighting"),
        '[sessions."p/s"]\nrefant = "1c; rm -rf"\n': ("sessions.p/s.refant", "is not an antenna name"),
        '[sessions."p/s"]\nexclude_antennas = ["2b", "x y"]\n': ("sessions.p/s.exclude_antennas", "'x y'"),
        '[sessions."p/s"]\nflux_cals = ["3C286,3C48"]\n': ("sessions.p/s.flux_cals", "without commas"),
        '[sessions."p/s"]\ntargets = [""]\n': ("sessions.p/s.targets", "non-empty"),
    }
    for text, (key, words) in bad.items():
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(ConfigError) as e:
            config.load(p)
        msg = str(e.value)
        assert f": {key}: " in msg and words in msg and "Value error" not in msg and "\n" not in msg, msg
    good = tmp_path / "good.toml"
    good.write_text('[steps.calibrate]\nsolint_short = "30s"\n[steps.image]\nweighting = "natural"\n'
                    '[sessions."p/s"]\nrefant = "1c"\ntargets = ["my target (north)"]\n')
    cfg = config.load(good)
    assert cfg.steps.calibrate.solint_short == "30s" and cfg.sessions["p/s"].targets == ["my target (north)"]
