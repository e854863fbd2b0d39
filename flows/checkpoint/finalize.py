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
    """Saves the ``preconditioner`` artifact (returns its digest). One pass over the table computes
    every example's self-influence and collects the ids that the coverage check compares with the
    pinned corpus version; a table that does not match is refused (nothing is finalized)."""
    import torch

    from valuation import ProjectedFisher, self_influence

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
    progress = reporter.task("self-influence", fisher.count)
    all_ids: list[str] = []
    for shard in range(s.num_shards):
        ids, values = [], []
        for chunk in table.read(chunk_rows=s.chunk_rows, shards=[shard]):
            values.append(self_influence(chunk.vectors.float(), pre).double())
            ids.extend(chunk.example_ids)
            progress.advance(len(chunk.example_ids))
        if ids:
            table.write_self_influence(ids, [shard] * len(ids), torch.cat(values).numpy())
        all_ids.extend(ids)
    progress.finish()
    coverage = verify_coverage(ctx, all_ids)
    table.optimize()
    state = {**pre.state_dict(), "count": torch.tensor(fisher.count)}
    extra = {
        "layout": table.layout,
        "examples": fisher.count,
        "table_version": table.version,
        "coverage": coverage.as_dict(),
    }
    return ctx.save("preconditioner", state, extra=extra)
