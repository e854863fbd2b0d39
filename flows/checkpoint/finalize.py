"""Finalize: merged Fisher → preconditioner, self-influence of every example, coverage verified
against the pinned corpus version. A checkpoint is valuable once its preconditioner exists."""

from __future__ import annotations

from dataclasses import dataclass

from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.log import fisher_name, pending_shards
from flows.errors import DataworthError, NotReadyError
from flows.progress import NULL, Reporter


class CoverageMismatchError(DataworthError):
    """A gradient table does not hold exactly the examples of its pinned corpus version."""


@dataclass(frozen=True)
class Coverage:
    corpus_version: int
    examples: int  # in the pinned corpus version
    rows: int  # in the gradient table
    documents: int

    def as_dict(self) -> dict:
        return {
            "corpus_version": self.corpus_version,
            "examples": self.examples,
            "rows": self.rows,
            "documents": self.documents,
        }


def verify_coverage(ctx: CheckpointContext, got: list[str]) -> Coverage:
    """The table's example ids (``got``) equal the pinned version's (counts and ids); refused otherwise."""
    expected = {
        e
        for rb in ctx.app.corpus.iter_examples(ctx.tokenizer_key, ctx.corpus_version, columns=["example_id"])
        for e in rb.column("example_id").to_pylist()
    }
    extra, missing = set(got) - expected, expected - set(got)
    if len(got) != len(set(got)) or extra or missing:
        raise CoverageMismatchError(
            f"checkpoint {ctx.checkpoint_id[:16]}: gradient table has {len(got)} rows for {len(expected)} examples of "
            f"corpus version {ctx.corpus_version} ({len(got) - len(set(got))} doubled, {len(missing)} missing, "
            f"{len(extra)} foreign)"
        )
    return Coverage(ctx.corpus_version, len(expected), len(got), ctx.app.corpus.num_documents(ctx.corpus_version))


def finalize(ctx: CheckpointContext, reporter: Reporter = NULL) -> str:
    """Saves the ``preconditioner`` artifact (returns its digest).

    After the merged Fisher: the table is compacted, indexed when it is large
    (``index_min_rows``), and one pass builds the provider and document aggregate vectors and
    every example's self-influence (:mod:`flows.fastpath`); the table's ids are then checked
    against the pinned corpus version, and a table that does not match is refused (nothing is
    finalized).
    """
    import torch

    from flows.fastpath import build_at_finalize
    from valuation import ProjectedFisher

    s = ctx.app.settings
    missing = pending_shards(ctx)
    if missing:
        raise NotReadyError(f"checkpoint {ctx.checkpoint_id[:16]}: shards {missing} are not logged yet")
    table = ctx.table()
    fisher = ProjectedFisher(table.layout)
    for shard in range(s.num_shards):
        state, _ = ctx.load(fisher_name(shard, s.num_shards))
        fisher.merge(ProjectedFisher.from_state_dict(table.layout, state))
    pre = fisher.preconditioner(damping_ratio=s.damping_ratio)
    table.optimize()
    progress = reporter.task("aggregates and self-influence", None, "passes")
    built = build_at_finalize(ctx, table, pre)
    progress.advance(1)
    progress.finish()
    ids = table.tbl.to_lance().to_table(columns=["example_id"]).column("example_id").to_pylist()
    coverage = verify_coverage(ctx, ids)
    state = {**pre.state_dict(), "count": torch.tensor(fisher.count)}
    extra = {
        "layout": table.layout,
        "examples": fisher.count,
        "table_version": table.version,
        "coverage": coverage.as_dict(),
        **built,
    }
    return ctx.save("preconditioner", state, extra=extra)
