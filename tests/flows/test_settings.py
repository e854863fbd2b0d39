"""Settings: where the stores live, and refusals of unknown values."""

from __future__ import annotations

import pytest

from flows.settings import Settings, load_settings


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
