"""The artifact store: tensors as safetensors with a JSON manifest of sha256 hashes.

Artifacts (projections, covariances, Fisher sums, eigendecompositions) are keyed by checkpoint
fingerprint, configuration hash and a name, under a local directory or an object-store URI
(``s3://bucket/prefix``). The tensors file is named by its content hash and written first; the
manifest that names it is written last in one atomic step (a rename on disk, one PUT on an object
store), so a reader sees a whole artifact or none, and loads verify every hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from storage.errors import ArtifactError
from storage.objectstore import filesystem, is_remote

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


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "added_tokens.json",
)


def tokenizer_fingerprint(model_dir: str | Path) -> str:
    """sha256 (16 hex) over the tokenizer files (names and bytes): checkpoints with the same
    tokenizer share one set of examples."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir() if p.name in TOKENIZER_FILES)
    if not files:
        raise ArtifactError(f"{model_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...)")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\x00" + sha256_file(p).encode() + b"\x00")
    return digest.hexdigest()[:16]


class ArtifactStore:
    """``root/<checkpoint[:16]>/<config_hash>/<name>/`` holding ``manifest.json`` and the
    ``tensors-<sha256[:16]>.safetensors`` it names; ``root`` is a directory or ``s3://...``."""

    def __init__(self, root: str | Path) -> None:
        self.uri = str(root)
        self.fs, self.base = filesystem(self.uri)

    def location(self, checkpoint: str, config_hash: str, name: str) -> str:
        """The artifact's folder inside :attr:`fs` (an absolute path, or ``bucket/prefix/...``)."""
        return f"{self.base}/{checkpoint[:16]}/{config_hash}/{name}"

    def path(self, checkpoint: str, config_hash: str, name: str) -> Path:
        """The artifact's local folder (stores on a local filesystem only)."""
        if is_remote(self.uri):
            raise ArtifactError(f"{self.uri} is an object store: artifacts have no local path")
        return Path(self.location(checkpoint, config_hash, name))

    def _read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _write(self, path: str, data: bytes) -> None:
        """One atomic write: a rename on disk, a single PUT on an object store."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        else:
            with self.fs.open_output_stream(path) as fh:
                fh.write(data)

    def exists(self, checkpoint: str, config_hash: str, name: str) -> bool:
        info = self.fs.get_file_info(self.location(checkpoint, config_hash, name) + "/manifest.json")
        return info.type == pafs.FileType.File

    def save(
        self,
        checkpoint: str,
        config_hash: str,
        name: str,
        tensors: dict[str, torch.Tensor],
        config: dict | None = None,
        extra: dict | None = None,
    ) -> str:
        """Write atomically (replacing any earlier version); returns the manifest's sha256."""
        folder = self.location(checkpoint, config_hash, name)
        self.fs.create_dir(folder, recursive=True)
        data = save_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        digest = hashlib.sha256(data).hexdigest()
        file = f"tensors-{digest[:16]}.safetensors"
        previous = self._read(folder + "/manifest.json")
        self._write(f"{folder}/{file}", data)
        manifest = {
            "name": name,
            "checkpoint": checkpoint,
            "config_hash": config_hash,
            "config": config or {},
            "extra": extra or {},
            "files": {file: digest},
            "created_at": time.time(),
        }
        blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
        self._write(folder + "/manifest.json", blob)
        # Keep the file the previous manifest named (a reader may hold that manifest); drop older ones.
        keep = {file, "manifest.json", *(json.loads(previous)["files"] if previous else {})}
        for info in self.fs.get_file_info(pafs.FileSelector(folder)):
            if info.base_name not in keep and info.base_name.startswith("tensors-"):
                self.fs.delete_file(info.path)
        return hashlib.sha256(blob).hexdigest()

    def digest(self, checkpoint: str, config_hash: str, name: str) -> str:
        """sha256 of the artifact's manifest (which holds the hashes of its files)."""
        return hashlib.sha256(self._manifest_bytes(checkpoint, config_hash, name)).hexdigest()

    def _manifest_bytes(self, checkpoint: str, config_hash: str, name: str) -> bytes:
        path = self.location(checkpoint, config_hash, name) + "/manifest.json"
        blob = self._read(path)
        if blob is None:
            raise ArtifactError(
                f"artifact {name!r} of checkpoint {checkpoint[:16]} config {config_hash} is missing ({path})"
            )
        return blob

    def manifest(self, checkpoint: str, config_hash: str, name: str) -> dict:
        return json.loads(self._manifest_bytes(checkpoint, config_hash, name))

    def load(self, checkpoint: str, config_hash: str, name: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and manifest; raises :class:`ArtifactError` on a hash or key mismatch."""
        manifest = self.manifest(checkpoint, config_hash, name)
        folder = self.location(checkpoint, config_hash, name)
        if manifest.get("checkpoint") != checkpoint or manifest.get("config_hash") != config_hash:
            raise ArtifactError(
                f"{folder}: made for checkpoint {str(manifest.get('checkpoint'))[:16]} config "
                f"{manifest.get('config_hash')}, asked for {checkpoint[:16]} {config_hash}"
            )
        tensors: dict[str, torch.Tensor] = {}
        for file, digest in manifest["files"].items():
            data = self._read(f"{folder}/{file}")
            if data is None:
                raise ArtifactError(f"{folder}/{file} is missing (named by its manifest)")
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest:
                raise ArtifactError(f"{folder}/{file} is corrupted: sha256 {actual[:12]} != manifest {digest[:12]}")
            tensors.update(load_bytes(data))
        return tensors, manifest
