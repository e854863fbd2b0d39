"""The platform's steps as plain functions: the Prefect flows call these, tests call them too.

Each step takes :class:`Settings` and references (paths, fingerprints, shard numbers) and reads
or writes the stores; none passes tensors to another.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from flows.settings import Settings
from ledger import (
    Checkpoint,
    QueryResult,
    RunCheckpointRef,
    RunRecord,
    TopKEntry,
    ensure_providers,
    open_ledger,
    post_run,
    register_checkpoint,
)
from storage import (
    ArtifactError,
    ArtifactStore,
    CorpusStore,
    GradientStore,
    IngestArguments,
    QueryStore,
    checkpoint_fingerprint,
)
from valuation import (
    LoGra,
    Preconditioner,
    ProjectedFisher,
    StreamingScorer,
    default_device,
    pad_batch,
    query_batch,
    self_influence,
)

Progress = Callable[[int], None] | None


class StepError(RuntimeError):
    """A step cannot run as asked (missing corpus, unknown checkpoint, ...): one clear line."""


# stores ------------------------------------------------------------------------------------------
@dataclass
class Stores:
    settings: Settings

    @property
    def corpus(self) -> CorpusStore:
        return CorpusStore(f"{self.settings.lance}/corpus")

    @property
    def gradients(self) -> GradientStore:
        return GradientStore(f"{self.settings.lance}/gradients")

    @property
    def queries(self) -> QueryStore:
        return QueryStore(f"{self.settings.lance}/queries")

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifacts)

    def ledger(self):
        return ledger_engine(self.settings.db_url or f"sqlite:///{(self.settings.home / 'ledger.db').resolve()}")


@lru_cache(maxsize=8)
def ledger_engine(url: str):
    """One engine (and connection pool) per ledger URL for the life of the process: a served
    flow calls the steps every cycle, and an engine per call would leak pools."""
    return open_ledger(url)


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# model loading ---------------------------------------------------------------------------------
# A cached model is shared: its hooks must never be installed by two threads at once.
MODEL_LOCK = threading.RLock()


@lru_cache(maxsize=4)
def _load(model_dir: str, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_model(model_dir: str | Path):
    return _load(str(Path(model_dir).resolve()), str(default_device()))


def checkpoint_row(settings: Settings, checkpoint_id: str) -> Checkpoint:
    from sqlmodel import Session

    with Session(Stores(settings).ledger()) as session:
        row = session.get(Checkpoint, checkpoint_id)
    if row is None:
        raise StepError(f"unknown checkpoint {checkpoint_id[:16]}: run `dataworth checkpoint add DIR` first")
    return row


def list_checkpoints(settings: Settings) -> list[Checkpoint]:
    from sqlmodel import Session, select

    with Session(Stores(settings).ledger()) as session:
        return list(session.exec(select(Checkpoint).order_by(Checkpoint.lineage, Checkpoint.step)).all())


# ingest -----------------------------------------------------------------------------------------
def tokenizer_for_ingest(settings: Settings, tokenizer_dir: str | Path | None):
    from transformers import AutoTokenizer

    if tokenizer_dir is None:
        checkpoints = list_checkpoints(settings)
        if not checkpoints:
            raise StepError(
                "no tokenizer: pass --tokenizer DIR (a model or tokenizer directory) or add a checkpoint first"
            )
        tokenizer_dir = checkpoints[-1].path
    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def ingest(settings: Settings, path: str | Path, tokenizer_dir: str | Path | None = None, progress: Progress = None):
    stores = Stores(settings)
    report = stores.corpus.ingest(
        path, tokenizer_for_ingest(settings, tokenizer_dir), IngestArguments(settings.max_length), progress
    )
    ensure_providers(stores.ledger(), stores.corpus.providers())
    return report


# checkpoints ------------------------------------------------------------------------------------
def register(
    settings: Settings, model_dir: str | Path, lineage: str = "default", step: int | None = None
) -> Checkpoint:
    model_dir = Path(model_dir).resolve()
    try:
        fingerprint = checkpoint_fingerprint(model_dir)
    except ArtifactError as exc:
        raise StepError(str(exc)) from exc
    return register_checkpoint(Stores(settings).ledger(), fingerprint, str(model_dir), lineage, step)


def _example_batches(
    settings: Settings, pad_id: int, shard: int | None = None, num_shards: int | None = None, limit: int | None = None
) -> Iterator[tuple[dict, list[dict]]]:
    """``(LM batch, row metadata)`` over the corpus examples (optionally one shard)."""
    seen = 0
    cols = ["example_id", "doc_id", "provider_id", "provider_code", "input_ids"]
    for rb in Stores(settings).corpus.iter_examples(shard, num_shards, batch_size=settings.batch_size, columns=cols):
        rows = rb.to_pylist()
        if limit is not None:
            rows = rows[: max(0, limit - seen)]
        if not rows:
            return
        seen += len(rows)
        yield pad_batch([r["input_ids"] for r in rows], pad_id), rows


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def fit(settings: Settings, checkpoint_id: str, progress: Progress = None) -> str:
    """KFAC covariances on a corpus sample → projections; saved as the ``projections`` artifact."""
    ck = checkpoint_row(settings, checkpoint_id)
    stores = Stores(settings)
    if stores.corpus.num_examples() == 0:
        raise StepError("the corpus is empty: run `dataworth ingest FILE` first")
    model, tokenizer = load_model(ck.path)
    logra = LoGra(model, settings.logra_config())
    device = default_device()
    batches = (
        _to(b, device) for b, _ in _example_batches(settings, tokenizer.pad_token_id, limit=settings.fit_examples)
    )
    logra.fit(batches, progress=progress)
    return stores.artifacts.save(
        ck.checkpoint_id,
        settings.config_hash(),
        "projections",
        logra.state_dict(),
        settings.valuation_config(),
        extra={"layout": logra.layout},
    )


def _logra(settings: Settings, ck: Checkpoint) -> tuple[LoGra, object]:
    model, tokenizer = load_model(ck.path)
    logra = LoGra(model, settings.logra_config())
    state, _ = Stores(settings).artifacts.load(ck.checkpoint_id, settings.config_hash(), "projections")
    logra.load_state_dict(state)
    return logra, tokenizer


def gradient_table(settings: Settings, ck: Checkpoint, layout=None):
    return Stores(settings).gradients.table(
        ck.checkpoint_id, settings.config_hash(), layout, settings.dtype, settings.valuation_config()
    )


def log_shard(settings: Settings, checkpoint_id: str, shard: int, num_shards: int, progress: Progress = None) -> int:
    """Projected gradients of one shard → gradient table (committed as a unit) + partial Fisher."""
    ck = checkpoint_row(settings, checkpoint_id)
    logra, tokenizer = _logra(settings, ck)
    table = gradient_table(settings, ck, logra.layout)
    fisher = ProjectedFisher(logra.layout)
    device = default_device()
    with table.writer(shard) as writer:
        for batch, rows in _example_batches(settings, tokenizer.pad_token_id, shard, num_shards):
            with MODEL_LOCK:
                g = logra.gradients(_to(batch, device))
            fisher.update(g)
            writer.add(
                [r["example_id"] for r in rows],
                [r["doc_id"] for r in rows],
                [r["provider_id"] for r in rows],
                [r["provider_code"] for r in rows],
                g,
            )
            if progress is not None:
                progress(len(rows))
        # The Fisher part is saved before the shard commits: a committed shard always has one.
        Stores(settings).artifacts.save(
            ck.checkpoint_id,
            settings.config_hash(),
            f"fisher-{shard}-of-{num_shards}",
            fisher.state_dict(),
            settings.valuation_config(),
        )
    return writer.rows


def pending_shards(settings: Settings, checkpoint_id: str, num_shards: int) -> list[int]:
    ck = checkpoint_row(settings, checkpoint_id)
    try:
        done = set(gradient_table(settings, ck).committed_shards())
    except KeyError:
        done = set()
    return [s for s in range(num_shards) if s not in done]


def finalize(settings: Settings, checkpoint_id: str, num_shards: int, progress: Progress = None) -> str:
    """Merge the shard Fishers, damped inverse, self-influence of every example."""
    ck = checkpoint_row(settings, checkpoint_id)
    stores = Stores(settings)
    missing = pending_shards(settings, checkpoint_id, num_shards)
    if missing:
        raise StepError(f"checkpoint {checkpoint_id[:16]}: shards {missing} are not logged yet")
    table = gradient_table(settings, ck)
    fisher = ProjectedFisher(table.layout)
    for shard in range(num_shards):
        state, _ = stores.artifacts.load(ck.checkpoint_id, settings.config_hash(), f"fisher-{shard}-of-{num_shards}")
        fisher.merge(ProjectedFisher.from_state_dict(table.layout, state))
    pre = fisher.preconditioner(damping_ratio=settings.damping_ratio)
    for shard in range(num_shards):
        ids, values = [], []
        for chunk in table.read(chunk_rows=settings.chunk_rows, shards=[shard]):
            values.append(self_influence(chunk.vectors.float(), pre).double())
            ids.extend(chunk.example_ids)
            if progress is not None:
                progress(len(chunk.example_ids))
        if ids:
            table.write_self_influence(ids, [shard] * len(ids), torch.cat(values).numpy())
    table.optimize()
    state = {**pre.state_dict(), "count": torch.tensor(fisher.count)}
    return stores.artifacts.save(
        ck.checkpoint_id,
        settings.config_hash(),
        "preconditioner",
        state,
        settings.valuation_config(),
        extra={"layout": table.layout, "examples": fisher.count, "table_version": table.version},
    )


def is_finalized(settings: Settings, checkpoint_id: str) -> bool:
    return Stores(settings).artifacts.exists(checkpoint_id, settings.config_hash(), "preconditioner")


# valuation --------------------------------------------------------------------------------------
def checkpoint_set(settings: Settings, which: str | list[str] = "all", lineage: str | None = None) -> list[Checkpoint]:
    """Finalized checkpoints of the lineage (the latest's by default): ``all``, ``latest``, ``N`` or ids."""
    finalized = [c for c in list_checkpoints(settings) if is_finalized(settings, c.checkpoint_id)]
    if not finalized:
        raise StepError("no finalized checkpoint: run `dataworth checkpoint add DIR` first")
    if isinstance(which, list):
        chosen = [c for c in finalized if any(c.checkpoint_id.startswith(w) for w in which)]
        if len(chosen) != len(which):
            raise StepError(f"unknown or unfinalized checkpoint(s) among {which}")
        return chosen
    lineage = lineage or max(finalized, key=lambda c: c.registered_at).lineage
    line = sorted(
        (c for c in finalized if c.lineage == lineage), key=lambda c: (c.step is None, c.step, c.registered_at)
    )
    if which == "all":
        return line
    if which == "latest":
        return line[-1:]
    if str(which).isdigit():
        return line[-int(which) :]
    raise StepError(f"--checkpoints must be latest, all, N or checkpoint ids; got {which!r}")


@dataclass
class CheckpointScores:
    """One checkpoint's pass over all train vectors for the query batch."""

    checkpoint_id: str
    table: str
    version: int
    group_sums: torch.Tensor  # (n_query, n_providers) float64
    group_positive: torch.Tensor
    topk: list[list[tuple[str, str, str, float]]]  # per query: (example_id, doc_id, provider_id, score)
    examples: int = 0  # train vectors scored

    def mean_abs(self, query: int) -> float:
        """Mean |score| of ``query`` over the train examples (1.0 when undefined)."""
        total = float((2 * self.group_positive[query] - self.group_sums[query]).sum())
        return total / self.examples if self.examples and total > 0 else 1.0


@dataclass
class Valuation:
    query_ids: list[str]
    values: list[str]
    providers: list[str]  # index = provider code
    per_checkpoint: list[CheckpointScores] = field(default_factory=list)

    def save(self, path: Path) -> Path:
        """JSON next to the run (a reference the posting step reads)."""
        blob = {
            "query_ids": self.query_ids,
            "values": self.values,
            "providers": self.providers,
            "per_checkpoint": [
                {
                    "checkpoint_id": cs.checkpoint_id,
                    "table": cs.table,
                    "version": cs.version,
                    "group_sums": cs.group_sums.tolist(),
                    "group_positive": cs.group_positive.tolist(),
                    "topk": cs.topk,
                    "examples": cs.examples,
                }
                for cs in self.per_checkpoint
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(blob))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Valuation:
        blob = json.loads(Path(path).read_text())
        per = [
            CheckpointScores(
                c["checkpoint_id"],
                c["table"],
                c["version"],
                torch.tensor(c["group_sums"], dtype=torch.float64),
                torch.tensor(c["group_positive"], dtype=torch.float64),
                [[tuple(t) for t in q] for q in c["topk"]],
                c.get("examples", 0),
            )
            for c in blob["per_checkpoint"]
        ]
        return cls(blob["query_ids"], blob["values"], blob["providers"], per)

    def combined(self, weights: dict[str, float] | None = None, normalise: bool = False) -> list[QueryResult]:
        """Per-provider sums add over checkpoints (weighted); top-k lists merge by summed score.

        ``normalise``: each checkpoint's scores for a query are first divided by their mean
        absolute value over the training examples, so every checkpoint has an equal say (raw
        scores grow over training, and the late checkpoints are the least informative ones:
        benchmarks/ACCURACY.md). ``Σ|s| = Σ(2·max(s, 0) − s)`` comes from the stored sums.
        """
        weights = weights or {}
        results = []
        for qi, qid in enumerate(self.query_ids):
            sums: dict[str, float] = {}
            pos: dict[str, float] = {}
            cand: dict[str, list] = {}
            for cs in self.per_checkpoint:
                w = weights.get(cs.checkpoint_id, 1.0)
                if normalise:
                    w /= cs.mean_abs(qi)
                for code, p in enumerate(self.providers):
                    sums[p] = sums.get(p, 0.0) + w * float(cs.group_sums[qi, code])
                    pos[p] = pos.get(p, 0.0) + w * float(cs.group_positive[qi, code])
                for ex, doc, prov, score in cs.topk[qi]:
                    entry = cand.setdefault(ex, [doc, prov, 0.0])
                    entry[2] += w * score
            k = len(self.per_checkpoint[0].topk[qi]) if self.per_checkpoint else 0
            top = sorted(cand.items(), key=lambda kv: -kv[1][2])[:k]
            results.append(
                QueryResult(qid, self.values[qi], [TopKEntry(ex, d, p, s) for ex, (d, p, s) in top], sums, pos)
            )
        return results


def score_checkpoint(
    settings: Settings, ck: Checkpoint, queries: list[dict], providers: list[str], progress: Progress = None
):
    logra, tokenizer = _logra(settings, ck)
    stores = Stores(settings)
    pre_state, _ = stores.artifacts.load(ck.checkpoint_id, settings.config_hash(), "preconditioner")
    # The stored eigendecomposition serves any damping ratio.
    pre = Preconditioner.from_state_dict(logra.layout, pre_state).with_damping_ratio(settings.damping_ratio)
    device = default_device()
    q_vectors = []
    for start in range(0, len(queries), settings.batch_size):
        part = queries[start : start + settings.batch_size]
        batch = query_batch(
            [tokenizer(q["prompt"], add_special_tokens=False)["input_ids"] for q in part],
            [tokenizer(q["response"], add_special_tokens=False)["input_ids"] for q in part],
            tokenizer.pad_token_id,
            settings.max_length,
        )
        with MODEL_LOCK:
            q_vectors.append(logra.gradients(_to(batch, device)))
    q = torch.cat(q_vectors).float()
    q_pre = pre(q)
    table = gradient_table(settings, ck)
    version = table.version
    scorer = StreamingScorer(
        q_pre,
        topk=settings.topk,
        num_groups=len(providers),
        mode=settings.mode,
        query_self=(q_pre * q).sum(1) if settings.mode == "cosine" else None,
    )
    pieces: list[tuple[int, object]] = []  # (first row, Arrow id columns) of every chunk
    self_by_shard: dict[int, dict[str, float]] = {}
    for chunk in table.read(chunk_rows=settings.chunk_rows, version=version, device=device):
        train_self = None
        if settings.mode != "if":
            for s in set(chunk.shards.tolist()) - set(self_by_shard):
                self_by_shard[s] = table.self_influence(s)
            shard_of = chunk.shards.tolist()
            train_self = torch.tensor(
                [self_by_shard[sh][e] for sh, e in zip(shard_of, chunk.example_ids, strict=True)], dtype=torch.float64
            )
        pieces.append((scorer.rows_seen, chunk.columns))
        scorer.update(chunk.vectors.float(), chunk.provider_codes, train_self)
        if progress is not None:
            progress(len(chunk))
    res = scorer.result()
    starts = [start for start, _ in pieces]

    def row(i: int) -> tuple[str, str, str]:
        piece = bisect.bisect_right(starts, i) - 1
        start, columns = pieces[piece]
        r = columns.slice(i - start, 1).to_pylist()[0]
        return r["example_id"], r["doc_id"], r["provider_id"]

    topk = [
        [(*row(i), float(sc)) for i, sc in zip(idx.tolist(), scores.tolist(), strict=True) if i >= 0]
        for idx, scores in zip(res.topk_indices, res.topk_scores, strict=True)
    ]
    return CheckpointScores(
        ck.checkpoint_id,
        table.name,
        version,
        res.group_sums.cpu(),
        res.group_positive_sums.cpu(),
        topk,
        scorer.rows_seen,
    )


def value_queries(
    settings: Settings, checkpoints: list[Checkpoint], queries: list[dict] | None = None, progress: Progress = None
) -> Valuation:
    """Score the pending queries (or ``queries``) against every checkpoint of the set."""
    stores = Stores(settings)
    if queries is None:
        queries = stores.queries.pending().to_pylist()
    codes = stores.corpus.providers()
    providers = [""] * (max(codes.values(), default=-1) + 1)
    for p, c in codes.items():
        providers[c] = p
    val = Valuation([q["query_id"] for q in queries], [str(q.get("value", "1")) for q in queries], providers)
    if not queries:
        return val
    for ck in checkpoints:
        val.per_checkpoint.append(score_checkpoint(settings, ck, queries, providers, progress))
    return val


def valuation_path(settings: Settings, val: Valuation) -> Path:
    return settings.home / "valuations" / f"batch-{_digest(sorted(val.query_ids))}.json"


def post_credits(settings: Settings, val: Valuation, weights: dict | None = None):
    """Policy → ledger (one transaction, idempotent), then mark the queries valued."""
    stores = Stores(settings)
    checkpoints = [checkpoint_row(settings, cs.checkpoint_id) for cs in val.per_checkpoint]
    weights = weights or {}
    share: dict[str, int] = {}
    for rb in stores.corpus.iter_examples(columns=["provider_id"], batch_size=65536):
        for p in rb.column("provider_id").to_pylist():
            share[p] = share.get(p, 0) + 1
    batch_id = "batch-" + _digest(sorted(val.query_ids))
    record = RunRecord(
        batch_id=batch_id,
        checkpoints=[
            RunCheckpointRef(cs.checkpoint_id, cs.table, cs.version, weights.get(cs.checkpoint_id, 1.0))
            for cs in val.per_checkpoint
        ],
        config_hash=settings.config_hash(),
        queries=val.combined(weights, normalise=settings.checkpoint_combine == "normalised"),
        corpus_share=share,
        policy=settings.policy,
        config=settings.valuation_config()
        | {
            "mode": settings.mode,
            "damping_ratio": settings.damping_ratio,
            "checkpoint_combine": settings.checkpoint_combine,
        },
        artifact_hashes={
            f"{c.checkpoint_id[:16]}/{name}": stores.artifacts.digest(c.checkpoint_id, settings.config_hash(), name)
            for c in checkpoints
            for name in ("projections", "preconditioner")
        },
        code_version=code_version(),
    )
    report = post_run(stores.ledger(), record)
    stores.queries.mark_valued(val.query_ids, report.run_id)
    return report


def _digest(items: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:20]
