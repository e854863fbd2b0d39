"""Log: one shard of projected per-example gradients → the gradient table, plus its partial Fisher
(of the same gradients, or of sampled-label ones with ``fisher = "sampled"``)."""

from __future__ import annotations

from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.fit import fisher_loss, gradient_loss, load_logra, to_device
from flows.failpoints import failpoint
from flows.progress import NULL, Reporter


def fisher_name(shard: int, num_shards: int) -> str:
    return f"fisher-{shard}-of-{num_shards}"


def log_shard(ctx: CheckpointContext, shard: int, reporter: Reporter = NULL) -> int:
    """Rows written; the shard commits as a unit (a killed run leaves nothing a reader sees, and
    its redo replaces the partial rows)."""
    from valuation import ProjectedFisher, default_device

    s = ctx.app.settings
    ctx.ensure_examples()  # a no-op once made (fit made them, unless it ran elsewhere)
    logra = load_logra(ctx)
    table = ctx.table(logra.layout)
    fisher = ProjectedFisher(logra.layout)
    loss = gradient_loss(s)
    device = default_device()
    progress = reporter.task(f"shard {shard + 1}/{s.num_shards}")
    with table.writer(shard) as writer:
        for batch, rows in ctx.batches(shard):
            ids = [r["example_id"] for r in rows]
            batch = to_device(batch, device)
            sampled = fisher_loss(s, ids) if s.fisher == "sampled" else None
            with ctx.app.model_lock:
                g = logra.gradients(batch, loss_fn=loss)
                # The true Fisher: the same examples' gradients under labels drawn from the model.
                f = g if sampled is None else logra.gradients(batch, loss_fn=sampled)
            fisher.update(f)
            writer.add(
                ids,
                [r["doc_id"] for r in rows],
                [r["provider_id"] for r in rows],
                [r["provider_code"] for r in rows],
                g,
            )
            progress.advance(len(rows), tokens=int(batch["attention_mask"].sum()))
            failpoint("logging")
        # The Fisher part is saved before the shard commits: a committed shard always has one.
        ctx.save(fisher_name(shard, s.num_shards), fisher.state_dict())
    progress.finish()
    return writer.rows


def pending_shards(ctx: CheckpointContext) -> list[int]:
    """Shards not committed yet (all of them before the first)."""
    n = ctx.app.settings.num_shards
    done = set(ctx.table().committed_shards()) if ctx.has_table() else set()
    return [s for s in range(n) if s not in done]
