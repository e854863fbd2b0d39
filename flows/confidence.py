"""Confidence per credited query: the tail-patch check (:func:`valuation.evaluate.tail_patch`).

On the final checkpoint of the set, one SGD step (``tail_patch_lr``, summed token loss) on the
query's credited top-k training examples, and the same step on as many examples drawn at random
from the checkpoint's pinned corpus version (seeded by the ``seed`` setting and the query id);
each measured as the change of the query's response log-probability. The confidence figure is
``Δ top-k − Δ random`` (nats): above 0 when the examples the ledger credits move the answer more
than arbitrary ones do. Nothing is retrained and the model itself is left untouched: the steps
are taken on one working copy, reset to the model's weights before each.
"""

from __future__ import annotations

import hashlib
import random
import time

from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.fit import to_device


def draw_seed(seed: int, query_id: str) -> int:
    """The random draw of one query: the same for the query whichever batch it is valued in."""
    return int(hashlib.sha256(f"{seed}:{query_id}".encode()).hexdigest()[:16], 16)


def _example_ids(ctx: CheckpointContext) -> list[str]:
    return [
        e
        for rb in ctx.app.corpus.iter_examples(ctx.tokenizer_key, ctx.corpus_version, columns=["example_id"])
        for e in rb.column("example_id").to_pylist()
    ]


def _input_ids(ctx: CheckpointContext, wanted: set[str]) -> dict[str, list[int]]:
    t = ctx.app.corpus.examples_of(ctx.tokenizer_key, ctx.corpus_version, sorted(wanted), ["example_id", "input_ids"])
    return dict(zip(t.column("example_id").to_pylist(), t.column("input_ids").to_pylist(), strict=True))


def tail_patch_confidence(
    ctx: CheckpointContext, queries: list[dict], credited: dict[str, list[str]]
) -> tuple[dict[str, float], dict]:
    """``({query_id: top − random}, details)`` for the queries with credited examples
    (``credited``: query id → its top-k example ids, best first); ``details`` says how it was made."""
    import torch

    from flows.valuate import query_lm_batch
    from valuation import default_device, default_lm_loss, pad_batch
    from valuation.evaluate import TailPatcher

    s = ctx.app.settings
    start = time.perf_counter()
    population = _example_ids(ctx)
    drawn = {
        q: random.Random(draw_seed(s.seed, q)).sample(population, min(len(ids), len(population)))
        for q, ids in credited.items()
        if ids
    }
    tokens = _input_ids(ctx, {e for ids in [*credited.values(), *drawn.values()] for e in ids})
    model, tokenizer = ctx.model()
    device = default_device()

    def batch_of(ids: list[str]) -> dict:
        return to_device(pad_batch([tokens[e] for e in ids], tokenizer.pad_token_id), device)

    out: dict[str, float] = {}
    with ctx.app.model_lock:
        patcher = TailPatcher(model, default_lm_loss, s.tail_patch_lr)  # one working copy for every query
    # A credited row whose example is not in the checkpoint's corpus version (a table filled from
    # elsewhere) leaves its query without a figure rather than failing the run.
    unknown = {q for q, ids in credited.items() if any(e not in tokens for e in [*ids, *drawn.get(q, [])])}
    for q in queries:
        qid = q["query_id"]
        if qid not in drawn or qid in unknown:
            continue
        query = to_device(query_lm_batch(tokenizer, [q], s.max_length), device)

        def log_prob(m, query=query):
            with torch.no_grad():
                return -default_lm_loss(m, query)

        with ctx.app.model_lock:
            top = patcher.delta(batch_of(credited[qid]), log_prob)
            rand = patcher.delta(batch_of(drawn[qid]), log_prob)
        out[qid] = float(top - rand)
    details = {
        "method": "tail-patch",
        "checkpoint": ctx.row.checkpoint_id,
        "lr": s.tail_patch_lr,
        "seed": s.seed,
        "queries": len(out),
        "without_corpus_examples": len(unknown),
        "seconds": round(time.perf_counter() - start, 3),
    }
    return out, details
