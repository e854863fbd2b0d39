"""The stores on an S3-compatible object store (moto's standalone server on 127.0.0.1)."""

from __future__ import annotations

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

from storage import ArtifactError, ArtifactStore, GradientStore
from storage.objectstore import filesystem, is_remote, join, lance_storage_options
from tests.storage.test_gradients import LAYOUT, read_all, rows


@pytest.fixture(scope="module")
def s3():
    from infra.local_services import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3


def test_uris_and_options(monkeypatch, tmp_path):
    assert join("s3://b/p/", "lance", "gradients") == "s3://b/p/lance/gradients"
    assert join(tmp_path, "artifacts") == f"{tmp_path}/artifacts"
    assert is_remote("s3://b/x") and not is_remote(tmp_path)
    assert lance_storage_options(tmp_path) is None
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    opts = lance_storage_options("s3://b/x")
    assert opts["aws_endpoint"] == "http://127.0.0.1:9" and opts["allow_http"] == "true"
    assert opts["aws_access_key_id"] == "key"


def test_artifacts_on_s3(s3_env):
    uri = f"s3://{s3_env.bucket}/t-artifacts"
    store = ArtifactStore(uri)
    tensors = {"m/P_in": torch.randn(3, 5, dtype=torch.float64)}
    digest = store.save("f" * 64, "cfg", "projections", tensors, config={"k": 3})
    got, manifest = store.load("f" * 64, "cfg", "projections")
    assert torch.equal(got["m/P_in"], tensors["m/P_in"]) and manifest["config"] == {"k": 3}
    assert store.digest("f" * 64, "cfg", "projections") == digest and store.exists("f" * 64, "cfg", "projections")
    with pytest.raises(ArtifactError, match="local path"):
        store.path("f" * 64, "cfg", "projections")
    # corrupt the tensors object in the bucket: the load refuses it
    fs, _ = filesystem(uri)
    (name,) = manifest["files"]
    key = store.location("f" * 64, "cfg", "projections") + "/" + name
    with fs.open_output_stream(key) as fh:
        fh.write(b"not the bytes")
    with pytest.raises(ArtifactError, match="corrupted"):
        store.load("f" * 64, "cfg", "projections")


def test_gradient_table_on_s3(s3_env):
    uri = f"s3://{s3_env.bucket}/t-lance/gradients"
    table = GradientStore(uri).table("c" * 32, "cfg", LAYOUT)
    ids, docs, provs, codes, vec = rows(10)
    with table.writer(0) as w:
        w.add(ids[:6], docs[:6], provs[:6], codes[:6], vec[:6])
    with table.writer(1) as w:
        w.add(ids[6:], docs[6:], provs[6:], codes[6:], vec[6:])
    pinned = table.version
    with table.writer(1) as w:  # a redo replaces the shard's rows
        w.add(ids[6:], docs[6:], provs[6:], codes[6:], vec[6:] * 2)
    got_ids, got_vec = read_all(table)
    by_id = dict(zip(got_ids, got_vec, strict=True))
    assert sorted(got_ids) == sorted(ids)
    assert np.array_equal(by_id[ids[7]], vec[7] * 2) and np.array_equal(by_id[ids[0]], vec[0])
    old = dict(zip(*read_all(table, version=pinned), strict=True))
    assert np.array_equal(old[ids[7]], vec[7])  # a pinned version still reads the first write
    fs, base = filesystem(uri)
    assert fs.get_file_info(pafs.FileSelector(base, recursive=True))  # the table lives in the bucket
