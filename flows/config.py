"""Configuration: one arguments dataclass per stage, validated on construction, composed in :class:`Settings`.

Sources, later wins: defaults ← ``$DATAWORTH_HOME/dataworth.toml`` (or ``--config FILE``) ←
``DATAWORTH_*`` environment variables ← explicit overrides (CLI flags). Keys are flat in TOML and
in :meth:`Settings.build`; each belongs to exactly one stage. The lists of valid policies and
modes are read from where they are defined (:data:`ledger.POLICIES`, :data:`valuation.MODES`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from flows.checks import check as _check
from flows.checks import number as _number
from flows.checks import positive as _positive
from ledger.policies import POLICIES
from storage.objectstore import join
from valuation.config import BLOCKS, MODES, LoGraConfig
from valuation.errors import ConfigurationError

DTYPES = ("float32", "float16")
COMBINES = ("normalised", "sum")
DISPATCHES = ("local", "pool")
OPTIMIZER_SCALINGS = ("auto", "on", "off")
FISHERS = ("empirical", "sampled")
# What a key that valuation_config() leaves out stands for (tables logged before the setting existed).
OMITTED_KEYS = {"fisher": "empirical", "temperature": 1.0}
CHECKPOINT_WEIGHTS = ("auto", "uniform", "lr")
CONFIDENCES = ("tail-patch", "off")
PANEL_KEYS = ("query_panel", "panel_alpha")


@dataclass(frozen=True)
class StoreArguments:
    """Where things live. ``db_url`` is a credential: it never leaves the process (see
    :meth:`Settings.to_params`); a worker resolves it from its environment or a Prefect Secret
    block named ``db_secret_block``."""

    home: Path = Path(".dataworth")
    db_url: str | None = None  # default: SQLite file under home
    db_secret_block: str | None = None  # Prefect Secret block holding the ledger URL
    store_uri: str | None = None  # corpus, queries, gradients, artifacts: a directory or s3://bucket/prefix
    lance_uri: str | None = None  # default: store_uri/lance

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))


@dataclass(frozen=True)
class FitArguments:
    """How projections are fitted (with :class:`LogArguments`' dtype and max_length: what stored vectors depend on)."""

    k_in: int = 16
    k_out: int = 16
    init: str = "pca"
    include: tuple[str, ...] = (BLOCKS,)
    seed: int = 0
    fit_examples: int = 256
    # Gradients scaled by Adam's factored 1/sqrt(v) (valuation/optimizer.py): "auto" when the
    # checkpoint carries an optimizer.pt with Adam moments, "on" (refused without one), "off".
    # Per checkpoint it shapes the stored vectors, so the effective value keys their table.
    optimizer_scaling: str = "auto"
    # The second moment behind the projections and the preconditioner: "empirical" (the data's
    # labels) or "sampled" (labels drawn from the model: the true Fisher / Gauss-Newton; one more
    # backward pass per logged batch; benchmarks/ACCURACY.md, "Denser checkpoint sets").
    fisher: str = "empirical"
    # Every gradient (fit, logged rows, Fisher, queries) is of softmax(logits / temperature): above 1
    # a memorised token's gradient no longer vanishes (valuation.loss.LMLoss; benchmarks/ACCURACY.md,
    # "Loss temperature"). 1 is the model's own loss (and keys tables as before the setting existed).
    # Tail-patch confidence always measures the model's own loss.
    temperature: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", tuple(self.include))
        self.logra_config()  # validates k and init
        _positive("fit_examples", self.fit_examples)
        _check(self.optimizer_scaling, OPTIMIZER_SCALINGS, "optimizer_scaling")
        _check(self.fisher, FISHERS, "fisher")
        _number("temperature", self.temperature)
        if not math.isfinite(self.temperature):
            raise ConfigurationError(f"temperature must be finite, got {self.temperature!r}")
        object.__setattr__(self, "temperature", float(self.temperature))  # 2 and 2.0 key one table

    def logra_config(self) -> LoGraConfig:
        return LoGraConfig(k_in=self.k_in, k_out=self.k_out, init=self.init, include=self.include, seed=self.seed)


@dataclass(frozen=True)
class LogArguments:
    """How examples are made and logged."""

    max_length: int = 96
    batch_size: int = 16
    num_shards: int = 4
    dtype: str = "float16"
    chunk_rows: int = 8192
    # "local": shards one after another in the flow's process; "pool": one run of
    # ``shard_deployment`` per shard on whichever worker polls the work pool
    shard_dispatch: str = "local"
    shard_deployment: str = "log_shard/dataworth-log-shard"
    shard_attempts: int = 3
    # finalize builds a vector index (top-k without a full scan) on tables of at least this many rows
    index_min_rows: int = 200_000

    def __post_init__(self) -> None:
        for name in ("max_length", "batch_size", "num_shards", "chunk_rows", "shard_attempts", "index_min_rows"):
            _positive(name, getattr(self, name))
        _check(self.dtype, DTYPES, "dtype")
        _check(self.shard_dispatch, DISPATCHES, "shard_dispatch")


@dataclass(frozen=True)
class ScoreArguments:
    """How queries are scored and credited."""

    damping_ratio: float = 0.1
    mode: str = "if"
    topk: int = 10
    policy: str = "topk_share"
    # "normalised": each checkpoint's per-query scores divided by their mean |score| before adding
    # (equal say per checkpoint); "sum": raw scores
    checkpoint_combine: str = "normalised"
    # BM25 top-k per query stored beside the influence top-k as lexical evidence (0: off); never credited
    lexical_topk: int = 10
    # Checkpoint weights after normalisation: "lr" = learning rate summed over the segment each
    # ends (trainer_state.json), "uniform", "auto" = lr when all carry it; `value --weights` wins
    checkpoint_weights: str = "auto"
    # Per credited query, stored with the run (flows/confidence.py): "tail-patch" = Δ log p(response)
    # after one SGD step on its top-k minus that on as many random examples (seeded); "off"
    confidence: str = "tail-patch"
    tail_patch_lr: float = 1e-4
    # An indexed table serves a batch from its index while queries × topk × refine ≤ this fraction
    # of its rows; a larger batch streams the table once, which is faster (benchmarks/RESULTS.md)
    index_batch_fraction: float = 0.05
    # A query panel (a query file: prompt and response per row, e.g. past queries of the lineage's
    # kind): its projected second moment is mixed into the train one per checkpoint,
    # H = (1 - panel_alpha) H_train + panel_alpha H_panel, which down-weights the directions every
    # query shares (prompt template, answer format; benchmarks/ACCURACY.md). "" = off. Runs record
    # the panel's content digest (in their key), not its path. Scores by the streamed scan.
    query_panel: str = ""
    panel_alpha: float = 0.5

    def __post_init__(self) -> None:
        _check(self.mode, MODES, "scoring mode")
        _number("panel_alpha", self.panel_alpha)
        if self.panel_alpha > 1:
            raise ConfigurationError(f"panel_alpha must be in (0, 1], got {self.panel_alpha!r}")
        _number("index_batch_fraction", self.index_batch_fraction, strict=False)
        _check(self.checkpoint_weights, CHECKPOINT_WEIGHTS, "checkpoint_weights")
        _check(self.confidence, CONFIDENCES, "confidence")
        if not isinstance(self.query_panel, str):
            raise ConfigurationError(f"query_panel must be a file path, got {self.query_panel!r}")
        _number("tail_patch_lr", self.tail_patch_lr)
        _positive("lexical_topk", self.lexical_topk, minimum=0)
        _check(self.policy, POLICIES, "policy")
        _check(self.checkpoint_combine, COMBINES, "checkpoint_combine")
        _positive("topk", self.topk)
        _number("damping_ratio", self.damping_ratio)


STAGES = {"stores": StoreArguments, "fit": FitArguments, "log": LogArguments, "score": ScoreArguments}
_STAGE_OF = {f.name: stage for stage, cls in STAGES.items() for f in fields(cls)}
SECRET_KEYS = ("db_url",)


@dataclass(frozen=True)
class Settings:
    """The whole configuration: ``stores``, ``fit``, ``log``, ``score``; flat attribute access
    (``settings.k_in``) reads the stage that owns the name."""

    stores: StoreArguments = field(default_factory=StoreArguments)
    fit: FitArguments = field(default_factory=FitArguments)
    log: LogArguments = field(default_factory=LogArguments)
    score: ScoreArguments = field(default_factory=ScoreArguments)

    def __getattr__(self, name: str):
        stage = _STAGE_OF.get(name)
        if stage is None:
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, stage), name)

    @classmethod
    def build(cls, **flat) -> Settings:
        """From flat keys (TOML, environment, flags); unknown keys are refused."""
        unknown = set(flat) - set(_STAGE_OF)
        if unknown:
            raise ConfigurationError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(_STAGE_OF)}")
        parts: dict[str, dict] = {stage: {} for stage in STAGES}
        for key, value in flat.items():
            parts[_STAGE_OF[key]][key] = value
        try:
            return cls(**{stage: STAGES[stage](**kw) for stage, kw in parts.items()})
        except TypeError as exc:  # a value of the wrong kind
            raise ConfigurationError(str(exc)) from exc

    def replace(self, **flat) -> Settings:
        return Settings.build(**{**self.to_dict(), **flat})

    # where the stores live
    @property
    def store(self) -> str:
        return self.stores.store_uri or str(self.home)

    @property
    def lance(self) -> str:
        return self.stores.lance_uri or join(self.store, "lance")

    @property
    def artifacts(self) -> str:
        return join(self.store, "artifacts")

    def ledger_url(self) -> str:
        """The ledger database: ``db_url``, else the Prefect Secret block, else SQLite under home."""
        if self.db_url:
            return self.db_url
        if self.stores.db_secret_block:
            from prefect.blocks.system import Secret

            return Secret.load(self.stores.db_secret_block).get()
        return f"sqlite:///{(self.home / 'ledger.db').resolve()}"

    # what shapes stored outputs
    def logra_config(self) -> LoGraConfig:
        return self.fit.logra_config()

    def valuation_config(self) -> dict:
        """Everything the stored vectors depend on (with the checkpoint and the corpus version): their table key."""
        return {
            **self.logra_config().to_dict(),
            "max_length": self.max_length,
            "dtype": self.dtype,
            "fit_examples": self.fit_examples,
            # only when not the value from before the setting, so that tables logged then keep their key
            **{k: getattr(self, k) for k, v in OMITTED_KEYS.items() if getattr(self, k) != v},
        }

    def config_hash(self) -> str:
        blob = json.dumps(self.valuation_config(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def scoring_config(self) -> dict:
        """Every setting that shapes a valuation run's numbers (recorded with the run, in its key)."""
        score = asdict(self.score)
        # The panel enters a run's config as its content digest (flows.valuate.value_lineage), never
        # as a path; without one the config is what it was before the setting existed.
        for name in PANEL_KEYS:
            score.pop(name)
        return {**self.valuation_config(), "optimizer_scaling": self.optimizer_scaling, **score}

    # serialisation
    def to_dict(self) -> dict:
        """Flat, JSON-ready; includes credentials (never pass it to Prefect: use :meth:`to_params`)."""
        out: dict = {}
        for stage in STAGES:
            out.update(asdict(getattr(self, stage)))
        out["home"] = str(self.home)
        out["include"] = list(self.include)
        return out

    def to_params(self) -> dict:
        """What flow runs and deployments carry: :meth:`to_dict` without credentials."""
        return {k: v for k, v in self.to_dict().items() if k not in SECRET_KEYS}

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        """Inverse of :meth:`to_dict` / :meth:`to_params`; validated. A missing ``db_url`` is
        resolved from this process's environment (the worker's), never from the parameters."""
        d = dict(d)
        if d.get("db_url") is None and os.environ.get("DATAWORTH_DB_URL"):
            d["db_url"] = os.environ["DATAWORTH_DB_URL"]
        return cls.build(**d)


ENV = {
    "home": "DATAWORTH_HOME",
    "db_url": "DATAWORTH_DB_URL",
    "store_uri": "DATAWORTH_STORE_URI",
    "shard_dispatch": "DATAWORTH_SHARD_DISPATCH",
    "lance_uri": "DATAWORTH_LANCE_URI",
}


def home_from_env() -> Path:
    return Path(os.environ.get("DATAWORTH_HOME", ".dataworth"))


def load_settings(config_file: str | Path | None = None, **overrides) -> Settings:
    """Defaults ← ``dataworth.toml`` in home (or ``config_file``) ← environment ← ``overrides``."""
    values: dict = {}
    home = Path(overrides["home"]) if overrides.get("home") else home_from_env()
    path = Path(config_file) if config_file else home / "dataworth.toml"
    if path.exists():
        with open(path, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
        unknown = set(data) - set(_STAGE_OF)
        if unknown:
            raise ConfigurationError(f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(_STAGE_OF)}")
        values.update(data)
    elif config_file:
        raise ConfigurationError(f"config file {config_file} does not exist")
    for name, var in ENV.items():
        if os.environ.get(var):
            values[name] = os.environ[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.build(**values)


def settings_toml(settings: Settings) -> str:
    """The ``dataworth.toml`` that ``dataworth init`` writes: every setting but the credentials."""
    lines = ["# dataworth settings; DATAWORTH_HOME, DATAWORTH_DB_URL, DATAWORTH_STORE_URI, DATAWORTH_LANCE_URI win"]
    for stage, cls in STAGES.items():
        lines.append(f"\n# {stage}: {cls.__doc__.splitlines()[0]}")
        for f in fields(cls):
            value = getattr(settings, f.name)
            if f.name in SECRET_KEYS or f.name == "home" or value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            lines.append(f"{f.name} = {json.dumps(value) if not isinstance(value, Path) else json.dumps(str(value))}")
    return "\n".join(lines) + "\n"
