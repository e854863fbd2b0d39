"""A small ledger with everything the analyst's pages show: several days, two checkpoints of
different influence, prompts, responses, excerpts, lexical evidence, a reversal, a provider whose
id is HTML and rich markup, display names and metadata."""

from __future__ import annotations

from ledger import ensure_providers, post_run, reverse_run, set_provider
from tests.ledger.helpers import PROVIDERS, query, record, setup_ledger, with_evidence

EVIL = "<b>evil</b>[red]&co"  # must show as these characters, never as markup
BULK = [f"bulk-{i:02d}" for i in range(30)]  # small providers: the providers page has a second page
ALL_PROVIDERS = [*PROVIDERS, EVIL, *BULK]
DAYS = ["2026-11-02", "2026-11-09", "2026-11-20", "2026-12-01"]


def fill(engine) -> dict:
    """Post four runs on four days (the third reversed) and one paying the small providers on the first
    day; returns ``{"runs": [...], "reversed": run_id}``."""
    setup_ledger(engine, checkpoints=("ck1", "ck2"))
    ensure_providers(engine, [EVIL, *BULK])
    set_provider(engine, "alpha", name="Alpha Press", metadata={"licence": "CC-BY", "contact": "a@example.org"})
    set_provider(engine, EVIL, name="<i>Evil</i> Corp")
    two = (("ck1", 1.0), ("ck2", 1.0))
    runs = []
    for i, day in enumerate(DAYS):
        p = f"d{i}-"
        queries = [
            query(f"{p}q1", "1", [("alpha", 3.0), ("beta", 1.0), (EVIL, 0.5)]),
            query(f"{p}q2", "2.5", [("beta", 0.5), ("beta", 0.25), ("gamma", 0.25)]),
            query(f"{p}q3", "0.333333", [("gamma", -1.0)]),  # no positive score: fallback
        ]
        rec = record(batch=f"b{i}", queries=queries, checkpoints=two, day=day)
        rec.corpus_share[EVIL] = 5
        rec = with_evidence(rec, influence={"ck1": 3.0, "ck2": 1.0} if i % 2 else {"ck1": 1.0, "ck2": 2.0})
        runs.append(post_run(engine, rec).run_id)
    reverse_run(engine, runs[2], day=DAYS[3], by="analyst: bad checkpoint")
    bulk = [query(f"bulk-q{i}", f"0.0{i + 1:02d}", [(p, 1.0)]) for i, p in enumerate(BULK)]
    rec = record(batch="bulk", queries=bulk, checkpoints=two, day=DAYS[0])
    rec.corpus_share.update(dict.fromkeys(BULK, 1))
    post_run(engine, with_evidence(rec))
    return {"runs": runs, "reversed": runs[2]}
