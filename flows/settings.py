"""Configuration: environment variables, an optional TOML file, then explicit overrides."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from storage.objectstore import join
from valuation import LoGraConfig


@dataclass(frozen=True)
class Settings:
    """Where things live and how valuation runs (``DATAWORTH_*`` variables or ``dataworth.toml``)."""

    home: Path = Path(".dataworth")
    db_url: str | None = None  # default: SQLite file under home
    store_uri: str | None = None  # gradients, corpus, queries and artifacts: a directory or s3://bucket/prefix
    lance_uri: str | None = None  # default: store_uri/lance (or home/lance)
    # valuation
    k_in: int = 16
    k_out: int = 16
    init: str = "pca"
    include: tuple[str, ...] = ("attn", "mlp")
    damping_ratio: float = 0.1
    mode: str = "if"
    topk: int = 10
    policy: str = "topk_share"
    # how a checkpoint set's scores add up: "normalised" (each checkpoint's per-query scores
    # divided by their mean |score|, so each has an equal say) or "sum" (raw scores)
    checkpoint_combine: str = "normalised"
    dtype: str = "float32"
    # data
    max_length: int = 96
    batch_size: int = 16
    num_shards: int = 4
    fit_examples: int = 256
    chunk_rows: int = 8192
    # scale-out: "local" logs the shards one after another in the flow's process; "pool" runs
    # each shard as a run of the ``shard_deployment`` on whichever worker polls the work pool
    shard_dispatch: str = "local"
    shard_deployment: str = "log_shard/dataworth-log-shard"
    shard_attempts: int = 3
    extra: dict = field(default_factory=dict)

    @property
    def store(self) -> str:
        return self.store_uri or str(self.home)

    @property
    def lance(self) -> str:
        return self.lance_uri or join(self.store, "lance")

    @property
    def artifacts(self) -> str:
        return join(self.store, "artifacts")

    def logra_config(self) -> LoGraConfig:
        return LoGraConfig(k_in=self.k_in, k_out=self.k_out, init=self.init, include=tuple(self.include))

    def valuation_config(self) -> dict:
        """What the stored vectors depend on (their table key), plus max_length."""
        return {**self.logra_config().to_dict(), "max_length": self.max_length, "dtype": self.dtype}

    def config_hash(self) -> str:
        import hashlib
        import json

        blob = json.dumps(self.valuation_config(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["home"] = str(self.home)
        d["include"] = list(self.include)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        d = dict(d)
        d["home"] = Path(d["home"])
        d["include"] = tuple(d["include"])
        return cls(**d)


ENV = {
    "home": "DATAWORTH_HOME",
    "db_url": "DATAWORTH_DB_URL",
    "store_uri": "DATAWORTH_STORE_URI",
    "shard_dispatch": "DATAWORTH_SHARD_DISPATCH",
    "lance_uri": "DATAWORTH_LANCE_URI",
}


def load_settings(config_file: str | Path | None = None, **overrides) -> Settings:
    """Defaults ← ``dataworth.toml`` in home (or ``config_file``) ← environment ← ``overrides``."""
    values: dict = {}
    home = Path(os.environ.get("DATAWORTH_HOME", ".dataworth"))
    path = Path(config_file) if config_file else home / "dataworth.toml"
    if path.exists():
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        known = {f.name for f in fields(Settings)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        values.update(data)
    elif config_file:
        raise FileNotFoundError(f"config file {config_file} does not exist")
    for name, var in ENV.items():
        if os.environ.get(var):
            values[name] = os.environ[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "home" in values:
        values["home"] = Path(values["home"])
    if "include" in values:
        values["include"] = tuple(values["include"])
    settings = replace(Settings(), **values)
    settings.logra_config()  # validates k and init
    if settings.policy not in ("topk_share", "positive_share", "fallback_pro_rata"):
        raise ValueError(f"unknown policy {settings.policy!r}")
    if settings.checkpoint_combine not in ("normalised", "sum"):
        raise ValueError(f"unknown checkpoint_combine {settings.checkpoint_combine!r}: 'normalised' or 'sum'")
    if settings.shard_dispatch not in ("local", "pool"):
        raise ValueError(f"unknown shard_dispatch {settings.shard_dispatch!r}: 'local' or 'pool'")
    if settings.mode not in ("if", "relatif", "cosine"):
        raise ValueError(f"unknown scoring mode {settings.mode!r}")
    return settings
