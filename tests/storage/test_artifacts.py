"""Artifact store: atomic, verified, keyed by checkpoint fingerprint and config."""

from __future__ import annotations

import shutil

import pytest
import torch

from storage import ArtifactError, ArtifactStore, checkpoint_fingerprint, sha256_file


def model_dir(path, weights: bytes = b"weights-1"):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"n_layer": 2}')
    (path / "model.safetensors").write_bytes(weights)
    (path / "README.md").write_text("not part of the fingerprint")
    return path


def test_fingerprint_is_content_not_path(tmp_path):
    a = model_dir(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    (b / "README.md").write_text("changed notes")
    assert checkpoint_fingerprint(a) == checkpoint_fingerprint(b)
    c = model_dir(tmp_path / "c", weights=b"weights-2")
    assert checkpoint_fingerprint(c) != checkpoint_fingerprint(a)
    with pytest.raises(ArtifactError, match=r"config\.json"):
        checkpoint_fingerprint(tmp_path)


def test_round_trip_and_manifest(tmp_path):
    store = ArtifactStore(tmp_path / "art")
    tensors = {"m/P_in": torch.randn(3, 5, dtype=torch.float64), "count": torch.tensor(7)}
    digest = store.save("f" * 64, "cfg", "projections", tensors, config={"k_in": 3})
    got, manifest = store.load("f" * 64, "cfg", "projections")
    assert torch.equal(got["m/P_in"], tensors["m/P_in"]) and int(got["count"]) == 7
    assert manifest["config"] == {"k_in": 3} and len(digest) == 64
    store.save("f" * 64, "cfg", "projections", {"x": torch.zeros(1)})  # replace atomically
    assert set(store.load("f" * 64, "cfg", "projections")[0]) == {"x"}
    store.save("f" * 64, "cfg", "projections", {"y": torch.ones(1)})
    files = sorted((p.name for p in store.path("f" * 64, "cfg", "projections").iterdir()), key=len)
    # the current tensors, the previous manifest's (a reader may still hold it), no temporaries
    assert len(files) == 3 and files[0] == "manifest.json" and all(f.endswith(".safetensors") for f in files[1:])
    assert store.digest("f" * 64, "cfg", "projections") == sha256_file(
        store.path("f" * 64, "cfg", "projections") / "manifest.json"
    )


def test_corruption_and_mismatch_are_detected(tmp_path):
    store = ArtifactStore(tmp_path / "art")
    store.save("f" * 64, "cfg", "fisher", {"s": torch.arange(100.0)})
    (name,) = store.manifest("f" * 64, "cfg", "fisher")["files"]
    data = store.path("f" * 64, "cfg", "fisher") / name
    raw = bytearray(data.read_bytes())
    raw[-3] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="corrupted"):
        store.load("f" * 64, "cfg", "fisher")
    with pytest.raises(ArtifactError, match="missing"):
        store.load("f" * 64, "other-cfg", "fisher")
    # A manifest copied under another checkpoint's key is refused.
    src = store.path("f" * 64, "cfg", "fisher")
    store.save("f" * 64, "cfg", "ok", {"s": torch.ones(2)})
    dst = store.path("e" * 64, "cfg", "ok")
    shutil.copytree(store.path("f" * 64, "cfg", "ok"), dst)
    with pytest.raises(ArtifactError, match="made for checkpoint"):
        store.load("e" * 64, "cfg", "ok")
    assert src.exists()
