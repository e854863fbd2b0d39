"""Valuate: the pending queries of each lineage, scored against that lineage's checkpoint set."""

from __future__ import annotations

import bisect
import hashlib
import json

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.fit import gradient_loss, load_logra, to_device
from flows.errors import ConfigurationError, NotReadyError
from flows.failpoints import failpoint
from flows.fastpath import fast_path_allowed, score_fast
from flows.progress import NULL, Reporter
from flows.scores import CheckpointScores, Valuation


def digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:20]


def in_training_order(app: App, lineage: str | None = None) -> list[CheckpointContext]:
    """Registered checkpoints (of one lineage) in training order: by step, then registration."""
    rows = sorted(
        (c for c in app.checkpoints() if lineage is None or c.lineage == lineage),
        key=lambda c: (c.step is None, c.step, c.registered_at),
    )
    out = []
    for row in rows:
        ctx = CheckpointContext(app, row.checkpoint_id)
        ctx.row = row  # already read
        out.append(ctx)
    return out


def finalized(app: App, lineage: str | None = None) -> list[CheckpointContext]:
    """Finalized checkpoints (of one lineage), in training order."""
    return [ctx for ctx in in_training_order(app, lineage) if ctx.finalized]


def why_waiting(app: App, lineage: str) -> str:
    """Why a lineage has no finalized checkpoint: none registered, one logged under other settings
    (named), or its logging not finished."""
    checkpoints = in_training_order(app, lineage)
    if not checkpoints:
        return f"lineage {lineage!r} has no checkpoint: run `dataworth checkpoint add DIR --lineage {lineage}`"
    latest = checkpoints[-1]
    if not latest.has_table():
        return latest.not_logged_why()
    return f"lineage {lineage!r} has no finalized checkpoint: its logging is not finished (run `checkpoint add` again)"


def checkpoint_set(app: App, lineage: str, which: str | list[str] = "all") -> list[CheckpointContext]:
    """A lineage's finalized checkpoints: ``all``, ``latest``, the last ``N``, or ids (prefixes)."""
    line = finalized(app, lineage)
    if not line:
        raise NotReadyError(
            f"lineage {lineage!r} has no finalized checkpoint: run `dataworth checkpoint add DIR` first"
        )
    if isinstance(which, list):
        chosen = [c for c in line if any(c.row.checkpoint_id.startswith(w) for w in which)]
        if len(chosen) != len(which):
            raise ConfigurationError(f"unknown or unfinalized checkpoint(s) of lineage {lineage!r} among {which}")
        return chosen
    if which == "all":
        return line
    if which == "latest":
        return line[-1:]
    if str(which).isdigit() and int(which) > 0:
        return line[-int(which) :]
    raise ConfigurationError(f"--checkpoints must be latest, all, N or checkpoint ids; got {which!r}")


def query_lm_batch(tokenizer, queries: list[dict], max_length: int) -> dict:
    """The LM batch of ``queries`` (prompt + response; the loss covers the response tokens only)."""
    from valuation import query_batch

    return query_batch(
        [tokenizer(q["prompt"], add_special_tokens=False)["input_ids"] for q in queries],
        [tokenizer(q["response"], add_special_tokens=False)["input_ids"] for q in queries],
        tokenizer.pad_token_id,
        max_length,
    )


def query_vectors(ctx: CheckpointContext, queries: list[dict]):
    """``(n_query, D)`` projected gradients of the queries (loss on the response tokens only)."""
    import torch

    from valuation import default_device

    s = ctx.app.settings
    logra = load_logra(ctx)
    loss = gradient_loss(s)  # the table's: the temperature keys it
    _, tokenizer = ctx.model()
    device = default_device()
    out = []
    for start in range(0, len(queries), s.batch_size):
        batch = query_lm_batch(tokenizer, queries[start : start + s.batch_size], s.max_length)
        with ctx.app.model_lock:
            out.append(logra.gradients(to_device(batch, device), loss_fn=loss))
    return torch.cat(out).float(), logra.layout


def load_query_panel(app: App):
    """The panel of setting ``query_panel`` (:class:`storage.queries.QueryPanel`), or None when off.
    A copy is kept under ``home/panels/<digest>.jsonl``: what a run's recorded digest names."""
    if not app.settings.query_panel:
        return None
    from storage.queries import read_query_panel

    panel = read_query_panel(app.settings.query_panel)
    kept = app.settings.home / "panels" / f"{panel.digest}.jsonl"
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in panel.rows))
        tmp.replace(kept)
    return panel


def score_checkpoint(
    ctx: CheckpointContext,
    queries: list[dict],
    n_providers: int,
    tag: str,
    reporter: Reporter = NULL,
    panel=None,
) -> CheckpointScores:
    """One streamed pass over the checkpoint's train vectors (at a version pinned by ``tag``).
    With a query ``panel`` the stored ``H_train`` is mixed with the panel's second moment at this
    checkpoint (:func:`valuation.panel_preconditioner`)."""
    import torch

    from valuation import Preconditioner, StreamingScorer, default_device, panel_preconditioner, self_influence

    s = ctx.app.settings
    # The panel's rows are projected in the same pass as the queries (one LoGra loaded).
    vectors, layout = query_vectors(ctx, queries + (panel.rows if panel is not None else []))
    q = vectors[: len(queries)]
    pre_state, _ = ctx.load("preconditioner")
    # The stored eigendecomposition serves any damping ratio.
    pre = Preconditioner.from_state_dict(layout, pre_state).with_damping_ratio(s.damping_ratio)
    if panel is not None:
        pre = panel_preconditioner(pre, vectors[len(queries) :], s.panel_alpha, s.damping_ratio)
    q_pre = pre(q)
    table = ctx.table()
    version = pin_version(table, tag)
    # The aggregates, the index and the stored self-influence are made with H_train alone.
    if fast_path_allowed(s) and panel is None:
        fast = score_fast(ctx, q, q_pre, pre, n_providers, tag, version)
        if fast is not None:
            return fast
    scorer = StreamingScorer(
        q_pre,
        topk=s.topk,
        num_groups=n_providers,
        mode=s.mode,
        query_self=(q_pre * q).sum(1) if s.mode == "cosine" else None,
    )
    progress = reporter.task(f"checkpoint {ctx.row.checkpoint_id[:12]}", table.count_rows(version), "train vectors")
    pieces: list[tuple[int, object]] = []  # (first row, Arrow id columns) of every chunk
    self_by_shard: dict[int, dict[str, float]] = {}
    for chunk in table.read(chunk_rows=s.chunk_rows, version=version, device=default_device()):
        train_self = None
        if s.mode != "if" and panel is not None:
            train_self = self_influence(chunk.vectors.double().cpu(), pre)
        elif s.mode != "if":
            for sh in set(chunk.shards.tolist()) - set(self_by_shard):
                self_by_shard[sh] = table.self_influence(sh)
            train_self = torch.tensor(
                [self_by_shard[sh][e] for sh, e in zip(chunk.shards.tolist(), chunk.example_ids, strict=True)],
                dtype=torch.float64,
            )
        pieces.append((scorer.rows_seen, chunk.columns))
        scorer.update(chunk.vectors.float(), chunk.provider_codes, train_self)
        progress.advance(len(chunk))
        failpoint("scoring")
    progress.finish()
    res = scorer.result()
    starts = [start for start, _ in pieces]

    def row(i: int) -> tuple[str, str, str]:
        start, columns = pieces[bisect.bisect_right(starts, i) - 1]
        r = columns.slice(i - start, 1).to_pylist()[0]
        return r["example_id"], r["doc_id"], r["provider_id"]

    topk = [
        [(*row(i), float(sc)) for i, sc in zip(idx.tolist(), scores.tolist(), strict=True) if i >= 0]
        for idx, scores in zip(res.topk_indices, res.topk_scores, strict=True)
    ]
    return CheckpointScores(
        ctx.row.checkpoint_id,
        table.name,
        version,
        res.group_sums.cpu(),
        res.group_positive_sums.cpu(),
        topk,
        scorer.rows_seen,
        tag,
        "exact",
    )


def pin_version(table, tag: str) -> int:
    """Tag the table's current version for this valuation (an audit re-reads exactly it; a tag
    survives ``optimize``); a re-run of the same valuation reuses its tag."""
    existing = table.tbl.tags.list()
    if tag in existing:
        return int(existing[tag]["version"])
    return table.tag(tag)


def provider_list(app: App) -> list[str]:
    """Provider ids by code (index = code)."""
    codes = app.corpus.providers()
    providers = [""] * (max(codes.values(), default=-1) + 1)
    for p, c in codes.items():
        providers[c] = p
    return providers


def set_weights(
    app: App, checkpoints: list[CheckpointContext], explicit: dict[str, float] | None = None
) -> tuple[dict[str, float], str]:
    """``({checkpoint id: weight}, basis)`` of a checkpoint set, basis ``explicit``, ``lr`` or ``uniform``.

    Explicit weights win (a checkpoint they leave out weighs 1). Otherwise the setting
    ``checkpoint_weights``: ``lr`` weighs each checkpoint by the learning rate summed over the
    steps of the segment it ends (after the previous checkpoint of the set;
    :func:`valuation.combine.checkpoint_weights`, from the ``lr_mass`` its ``trainer_state.json``
    gave at registration), scaled to mean 1 so that scores stay comparable with uniform ones;
    ``auto`` does so when every checkpoint carries it, and is uniform otherwise.
    """
    ids = [c.row.checkpoint_id for c in checkpoints]
    if explicit:
        return {c: float(explicit.get(c, 1.0)) for c in ids}, "explicit"
    setting = app.settings.checkpoint_weights
    if setting == "uniform":
        return {c: 1.0 for c in ids}, "uniform"
    states = [c.training_state for c in checkpoints]
    steps = [st.get("global_step") for st in states]
    masses = [st.get("lr_mass") for st in states]
    why = None
    if not all(st.get("trainer_state") for st in states):
        why = "a checkpoint of the set has no usable trainer_state.json"
    elif any(b <= a for a, b in zip([0, *steps], steps, strict=False)):
        why = f"the checkpoints' global steps {steps} do not increase in training order"
    else:
        segments = [b - a for a, b in zip([0.0, *masses], masses, strict=False)]
        if any(w < 0 for w in segments) or sum(segments) <= 0:
            why = "the learning rates give no positive weight"
    if why is not None:
        if setting == "lr":
            raise ConfigurationError(f"checkpoint_weights = 'lr': {why}; set it to 'auto' or 'uniform'")
        return {c: 1.0 for c in ids}, "uniform"
    total = sum(segments)
    return {c: w * len(ids) / total for c, w in zip(ids, segments, strict=True)}, "lr"


def confidence(app: App, val: Valuation, checkpoints: list[CheckpointContext], queries: list[dict]) -> None:
    """Fill ``val.confidence`` per query (setting ``confidence``) from its credited top-k under
    the valuation's own weights, on the final checkpoint of the set (:mod:`flows.confidence`)."""
    if app.settings.confidence == "off" or not checkpoints:
        return
    from flows.confidence import tail_patch_confidence

    results = val.combined(val.weights, normalise=app.settings.checkpoint_combine == "normalised")
    credited = {r.query_id: [e.example_id for e in r.topk] for r in results}
    val.confidence, val.confidence_details = tail_patch_confidence(checkpoints[-1], queries, credited)


def value_lineage(
    app: App,
    lineage: str,
    checkpoints: list[CheckpointContext],
    queries: list[dict],
    reporter: Reporter = NULL,
    weights: dict[str, float] | None = None,
    with_confidence: bool = True,
) -> Valuation:
    """Score ``queries`` of ``lineage`` against every checkpoint of the set; the set's weights
    (:func:`set_weights`; ``weights`` explicit) and, unless ``with_confidence`` is False, each
    query's confidence figure are recorded in the valuation."""
    providers = provider_list(app)
    batch = digest(sorted(q["query_id"] for q in queries))
    panel = load_query_panel(app)
    scoring = app.settings.scoring_config()
    if panel is not None:
        scoring["query_panel"] = {"digest": panel.digest, "queries": len(panel.rows), "alpha": app.settings.panel_alpha}
    val = Valuation(
        lineage,
        [q["query_id"] for q in queries],
        [str(q.get("value", "1")) for q in queries],
        providers,
        scoring,
    )
    newest = max(checkpoints, key=lambda c: c.corpus_version)
    val.corpus_share = app.corpus.example_counts(newest.tokenizer_key, newest.corpus_version)
    val.corpus_version = newest.corpus_version
    val.weights, val.weights_basis = set_weights(app, checkpoints, weights)
    val.optimizer_scaling = {c.row.checkpoint_id: c.optimizer_scaling for c in checkpoints}
    for ctx in checkpoints:
        val.per_checkpoint.append(score_checkpoint(ctx, queries, len(providers), f"valuation-{batch}", reporter, panel))
    if with_confidence:
        confidence(app, val, checkpoints, queries)
    return val


def valuation_path(app: App, val: Valuation):
    return app.settings.home / "valuations" / f"{val.lineage}-batch-{digest(sorted(val.query_ids))}.json"
