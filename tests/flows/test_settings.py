"""Settings: where the stores live, and refusals of unknown values."""

from __future__ import annotations

import pytest

from flows.config import Settings, load_settings


def test_store_uri_places_every_store(monkeypatch, tmp_path):
    s = load_settings(home=str(tmp_path))
    assert s.lance == f"{tmp_path}/lance" and s.artifacts == f"{tmp_path}/artifacts"
    monkeypatch.setenv("DATAWORTH_STORE_URI", "s3://bucket/prefix/")
    monkeypatch.setenv("DATAWORTH_SHARD_DISPATCH", "pool")
    s = load_settings(home=str(tmp_path))
    assert s.lance == "s3://bucket/prefix/lance" and s.artifacts == "s3://bucket/prefix/artifacts"
    assert s.shard_dispatch == "pool"
    assert load_settings(lance_uri=str(tmp_path / "elsewhere")).lance == str(tmp_path / "elsewhere")
    assert Settings.from_dict(s.to_dict()) == s  # what deployments carry as parameters


def test_unknown_dispatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="shard_dispatch"):
        load_settings(home=str(tmp_path), shard_dispatch="everywhere")


def test_every_stage_validates_however_it_is_built(tmp_path):
    from flows.config import FitArguments, ScoreArguments
    from valuation import ConfigurationError

    with pytest.raises(ConfigurationError, match="scoring mode 'fast'"):
        ScoreArguments(mode="fast")
    with pytest.raises(ConfigurationError, match="policy"):
        Settings.from_dict({**load_settings(home=str(tmp_path)).to_dict(), "policy": "everything"})
    with pytest.raises(ConfigurationError, match="k_in and k_out must be >= 1"):
        FitArguments(k_in=0)
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.build(colour="blue")
    s = load_settings(home=str(tmp_path), k_in=8)
    assert (s.fit.k_in, s.k_in, s.score.mode) == (8, 8, "if")


def test_flow_parameters_carry_no_credentials(tmp_path, monkeypatch):
    url = "postgresql+psycopg://dataworth:s3cret@127.0.0.1:5432/ledger"
    s = load_settings(home=str(tmp_path), db_url=url)
    assert "s3cret" not in repr(s.to_params()) and "db_url" not in s.to_params()
    monkeypatch.setenv("DATAWORTH_DB_URL", url)  # the worker's environment
    assert Settings.from_dict(s.to_params()).db_url == url
