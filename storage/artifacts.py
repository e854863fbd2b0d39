"""The artifact store: tensors as safetensors with a JSON manifest of sha256 hashes.

Artifacts (projections, covariances, Fisher sums, eigendecompositions) are keyed by checkpoint
fingerprint, configuration hash and a name. Writes go to a temporary directory renamed into
place, so a reader sees a whole artifact or none; loads verify every hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from storage.errors import ArtifactError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the config and weight files (names and bytes), not the directory path."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise ArtifactError(f"{model_dir}: not a model directory (no config.json)")
    files = sorted(p for p in model_dir.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ArtifactError(f"{model_dir}: no weight files (*.safetensors, *.bin)")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\x00" + sha256_file(p).encode() + b"\x00")
    return digest.hexdigest()


class ArtifactStore:
    """``root/<checkpoint[:16]>/<config_hash>/<name>/`` holding ``*.safetensors`` + ``manifest.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, checkpoint: str, config_hash: str, name: str) -> Path:
        return self.root / checkpoint[:16] / config_hash / name

    def exists(self, checkpoint: str, config_hash: str, name: str) -> bool:
        return (self.path(checkpoint, config_hash, name) / "manifest.json").exists()

    def save(
        self,
        checkpoint: str,
        config_hash: str,
        name: str,
        tensors: dict[str, torch.Tensor],
        config: dict | None = None,
        extra: dict | None = None,
    ) -> str:
        """Write atomically; returns the manifest's sha256 (the artifact's content hash)."""
        target = self.path(checkpoint, config_hash, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        try:
            data = tmp / "tensors.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(data))
            manifest = {
                "name": name,
                "checkpoint": checkpoint,
                "config_hash": config_hash,
                "config": config or {},
                "extra": extra or {},
                "files": {"tensors.safetensors": sha256_file(data)},
                "created_at": time.time(),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
            if target.exists():  # replace: move the old one aside first, then swap in
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=target.parent))
                os.replace(target, old / "x")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return sha256_file(target / "manifest.json")

    def manifest(self, checkpoint: str, config_hash: str, name: str) -> dict:
        path = self.path(checkpoint, config_hash, name) / "manifest.json"
        if not path.exists():
            raise ArtifactError(
                f"artifact {name!r} of checkpoint {checkpoint[:16]} config {config_hash} is missing ({path})"
            )
        return json.loads(path.read_text())

    def load(self, checkpoint: str, config_hash: str, name: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and manifest; raises :class:`ArtifactError` on a hash or key mismatch."""
        manifest = self.manifest(checkpoint, config_hash, name)
        folder = self.path(checkpoint, config_hash, name)
        if manifest.get("checkpoint") != checkpoint or manifest.get("config_hash") != config_hash:
            raise ArtifactError(
                f"{folder}: made for checkpoint {str(manifest.get('checkpoint'))[:16]} config "
                f"{manifest.get('config_hash')}, asked for {checkpoint[:16]} {config_hash}"
            )
        for file, digest in manifest["files"].items():
            actual = sha256_file(folder / file)
            if actual != digest:
                raise ArtifactError(f"{folder / file} is corrupted: sha256 {actual[:12]} != manifest {digest[:12]}")
        return load_file(str(folder / "tensors.safetensors")), manifest
