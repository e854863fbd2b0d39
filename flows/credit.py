"""Credit: a valuation → ledger entries (one transaction, idempotent, one credit per query), then
the queries are marked valued. A crash anywhere in between double-credits nothing: the ledger
refuses a second live credit of a query, and the next cycle first marks what the ledger already
credited (:func:`reconcile`)."""

from __future__ import annotations

from flows.app import App
from flows.evidence import lexical_evidence
from flows.failpoints import failpoint
from flows.scores import Valuation
from flows.valuate import digest


def _by_run(credited: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for qid, run in credited.items():
        out.setdefault(run, []).append(qid)
    return out


def reconcile(app: App) -> int:
    """Pending queries that a live run already credited (a crash after posting) → valued; how many."""
    from ledger import live_credits

    credited = live_credits(app.ledger, app.queries.pending().column("query_id").to_pylist())
    for run_id, ids in _by_run(credited).items():
        app.queries.mark_valued(ids, run_id)
    return len(credited)


def _excerpts(app: App, doc_ids: set[str]) -> dict[str, str]:
    if not doc_ids:
        return {}
    t = app.corpus.documents_of(sorted(doc_ids))
    return dict(zip(t.column("doc_id").to_pylist(), t.column("text").to_pylist(), strict=True))


def build_results(app: App, val: Valuation, weights: dict[str, float]) -> list:
    """The run's per-query results with their evidence: query text, document excerpts, and each
    checkpoint's (weighted, normalised) share of every provider sum and top-k score."""
    from ledger import TopKEntry

    normalise = app.settings.checkpoint_combine == "normalised"
    results = val.combined(weights, normalise=normalise)
    texts = app.queries.rows(val.query_ids)
    per_ck: dict[str, list] = {}
    for cs in val.per_checkpoint:
        single = Valuation(val.lineage, val.query_ids, val.values, val.providers, val.scoring, [cs])
        w = {cs.checkpoint_id: weights.get(cs.checkpoint_id, 1.0)}
        per_ck[cs.checkpoint_id] = single.combined(w, normalise=normalise)
    excerpts = _excerpts(app, {e.doc_id for r in results for e in r.topk})
    for qi, r in enumerate(results):
        q = texts.get(r.query_id, {})
        r.prompt, r.response, r.lineage = q.get("prompt"), q.get("response"), val.lineage
        r.confidence = val.confidence.get(r.query_id)
        r.by_checkpoint = {ck: dict(res[qi].provider_scores) for ck, res in per_ck.items()}
        scores_by_ck = {ck: {e.example_id: e.score for e in res[qi].topk} for ck, res in per_ck.items()}
        r.topk = [
            TopKEntry(
                e.example_id,
                e.doc_id,
                e.provider_id,
                e.score,
                excerpts.get(e.doc_id),
                {ck: s[e.example_id] for ck, s in scores_by_ck.items() if e.example_id in s},
            )
            for e in r.topk
        ]
    return results


def post_credits(app: App, val: Valuation, weights: dict | None = None):
    """Policy → ledger (one transaction, idempotent), then mark the queries valued.

    A query the ledger already credited in another live run is left out (and marked valued with
    that run); a query the policy refuses (NaN scores...) is set aside with the reason and the
    others are posted. Returns the :class:`ledger.PostReport`, or None when nothing was left to post.
    """
    from ledger import (
        PolicyInputError,
        QueryAlreadyCreditedError,
        RunCheckpointRef,
        RunRecord,
        RunReversedError,
        live_credits,
        post_run,
    )

    s = app.settings
    # The valuation's own weights (flows.valuate.set_weights) unless the caller gives others.
    explicit = bool(weights)
    weights = weights or val.weights or {}
    results = build_results(app, val, weights)
    refs = [
        RunCheckpointRef(cs.checkpoint_id, cs.table, cs.version, weights.get(cs.checkpoint_id, 1.0))
        for cs in val.per_checkpoint
    ]
    from flows.checkpoint.context import CheckpointContext

    contexts = [CheckpointContext(app, cs.checkpoint_id) for cs in val.per_checkpoint]
    hashes = {
        f"{c.row.checkpoint_id[:16]}/{n}": c.digest(n) for c in contexts for n in ("projections", "preconditioner")
    }
    methods = sorted({cs.topk_method for cs in val.per_checkpoint}) or ["exact"]
    config = val.scoring | {
        "lineage": val.lineage,
        "weights": weights,
        "weights_basis": "explicit" if explicit else val.weights_basis,
        "table_tags": {cs.checkpoint_id: cs.tag for cs in val.per_checkpoint},
    }

    revaluation = 0
    # What the run can say about itself: each checkpoint's coverage of its pinned corpus version,
    # how its top-k was found, and how many train vectors it scored.
    metrics = {
        "checkpoints": {
            c.row.checkpoint_id: {
                **c.manifest("preconditioner").get("extra", {}).get("coverage", {}),
                "scored": cs.examples,
                "topk_method": cs.topk_method,
                "normaliser": cs.normaliser if val.scoring.get("checkpoint_combine") == "normalised" else None,
                "optimizer_scaling": val.optimizer_scaling.get(cs.checkpoint_id),
            }
            for c, cs in zip(contexts, val.per_checkpoint, strict=True)
        },
        "lexical_topk": s.lexical_topk,
        "confidence": val.confidence_details or None,
    }

    def record(rs: list) -> RunRecord:
        return RunRecord(
            batch_id=f"{val.lineage}-batch-" + digest(sorted(r.query_id for r in rs)),
            checkpoints=refs,
            config_hash=digest([repr(sorted(val.scoring.items()))]),
            queries=rs,
            corpus_share=val.corpus_share,
            policy=s.policy,
            config=config,
            artifact_hashes=hashes,
            code_version=app.code_version,
            topk_method=",".join(methods),
            lexical={q: e for q, e in lexical.items() if q in {r.query_id for r in rs}},
            revaluation=revaluation,
            metrics=metrics,
        )

    lexical = lexical_evidence(app, val, s.lexical_topk, val.corpus_version) if val.corpus_version else {}
    # Queries another live run credited are left out (this run's own, if it was posted, stay in:
    # re-posting it is a no-op).
    credited = live_credits(app.ledger, [r.query_id for r in results])
    own = record(results).key()
    elsewhere = {q: run for q, run in credited.items() if run != own}
    results = [r for r in results if r.query_id not in elsewhere]
    report = None
    failpoint("before-post")
    while results:
        try:
            report = post_run(app.ledger, record(results))
            break
        except PolicyInputError as exc:
            if exc.query_id is None:
                raise
            app.queries.set_aside([exc.query_id], str(exc))
            results = [r for r in results if r.query_id != exc.query_id]
        except RunReversedError:
            revaluation += 1  # the same batch valued again after its run was reversed: a new run
        except QueryAlreadyCreditedError as exc:  # another poster credited some of them meanwhile
            elsewhere.update(exc.credited)
            results = [r for r in results if r.query_id not in exc.credited]
    failpoint("after-post")
    for run_id, ids in _by_run(elsewhere).items():
        app.queries.mark_valued(ids, run_id)
    if report is not None:
        app.queries.mark_valued([r.query_id for r in results], report.run_id)
    failpoint("after-mark")
    return report
