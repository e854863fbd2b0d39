"""Prefect flows: thin wiring of :mod:`flows.steps`; references pass between tasks, never tensors."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows import steps
from flows.settings import Settings, load_settings
from storage.gradients import worker_name

GPU_TAG = "gpu"


def _s(settings: dict | None) -> Settings:
    """The flow's settings: as passed, or (``None``) from the worker's environment / dataworth.toml."""
    return load_settings() if settings is None else Settings.from_dict(settings)


@task(name="ingest-corpus")
def ingest_task(settings: dict | None, path: str, tokenizer_dir: str | None = None) -> dict:
    report = steps.ingest(_s(settings), path, tokenizer_dir)
    return report.__dict__


@task(name="register-checkpoint")
def register_task(settings: dict | None, model_dir: str, lineage: str, step: int | None) -> str:
    return steps.register(_s(settings), model_dir, lineage, step).checkpoint_id


@task(name="fit-checkpoint", tags=[GPU_TAG])
def fit_task(settings: dict | None, checkpoint_id: str) -> str:
    return steps.fit(_s(settings), checkpoint_id)


@task(name="log-shard", tags=[GPU_TAG], retries=2, retry_delay_seconds=5)
def log_shard_task(settings: dict | None, checkpoint_id: str, shard: int, num_shards: int) -> int:
    return steps.log_shard(_s(settings), checkpoint_id, shard, num_shards)


@task(name="finalize-checkpoint", tags=[GPU_TAG])
def finalize_task(settings: dict | None, checkpoint_id: str, num_shards: int) -> str:
    return steps.finalize(_s(settings), checkpoint_id, num_shards)


@flow(name="ingest_corpus")
def ingest_corpus(settings: dict | None, path: str, tokenizer_dir: str | None = None) -> dict:
    return ingest_task(settings, path, tokenizer_dir)


@flow(name="register_checkpoint")
def register_checkpoint(
    settings: dict | None, model_dir: str, lineage: str = "default", step: int | None = None
) -> str:
    return register_task(settings, model_dir, lineage, step)


@flow(name="fit_checkpoint")
def fit_checkpoint(settings: dict | None, checkpoint_id: str) -> str:
    if steps.Stores(_s(settings)).artifacts.exists(checkpoint_id, _s(settings).config_hash(), "projections"):
        return "exists"
    return fit_task(settings, checkpoint_id)


@flow(name="log_shard")
def log_shard(settings: dict | None, checkpoint_id: str, shard: int, num_shards: int) -> dict:
    """One shard, as its own flow run: what a worker of the pool runs."""
    rows = log_shard_task(settings, checkpoint_id, shard, num_shards)
    return {"shard": shard, "rows": rows, "worker": worker_name()}


@flow(name="log_gradients")
def log_gradients(settings: dict | None, checkpoint_id: str) -> int:
    """Every pending shard (committed shards are skipped; a partial one is redone); the rows logged.

    ``shard_dispatch = "local"``: one after another in this process (they share the model and its
    hooks). ``"pool"``: one run of the ``log_shard`` deployment per shard, on whichever workers
    poll the pool, crashed ones resubmitted (see flows/dispatch.py and infra/README.md).
    """
    s = _s(settings)
    logger = get_run_logger()
    pending = steps.pending_shards(s, checkpoint_id, s.num_shards)
    logger.info("checkpoint %s: %d of %d shards to log", checkpoint_id[:16], len(pending), s.num_shards)
    if s.shard_dispatch == "pool" and pending:
        from flows.dispatch import run_shards_on_pool

        run_shards_on_pool(s, checkpoint_id, pending, log=logger.info)
        return steps.gradient_table(s, steps.checkpoint_row(s, checkpoint_id)).count_rows()
    return sum(log_shard_task(s.to_dict(), checkpoint_id, shard, s.num_shards) for shard in pending)


@flow(name="finalize_checkpoint")
def finalize_checkpoint(settings: dict | None, checkpoint_id: str) -> str:
    return finalize_task(settings, checkpoint_id, _s(settings).num_shards)


@flow(name="on_new_checkpoint")
def on_new_checkpoint(settings: dict | None, model_dir: str, lineage: str = "default", step: int | None = None) -> str:
    """register → fit → log → finalize; re-running it resumes where it stopped."""
    checkpoint_id = register_checkpoint(settings, model_dir, lineage, step)
    fit_checkpoint(settings, checkpoint_id)
    log_gradients(settings, checkpoint_id)
    finalize_checkpoint(settings, checkpoint_id)
    return checkpoint_id


@task(name="value-queries", tags=[GPU_TAG])
def value_task(settings: dict | None, checkpoints: str | list[str]) -> str | None:
    """Scores of every pending query, saved as JSON; returns its path (or None: nothing pending)."""
    s = _s(settings)
    val = steps.value_queries(s, steps.checkpoint_set(s, checkpoints))
    if not val.query_ids:
        return None
    return str(val.save(steps.valuation_path(s, val)))


@task(name="post-credits")
def post_task(settings: dict | None, valuation: str, weights: dict | None) -> dict:
    s = _s(settings)
    val = steps.Valuation.load(valuation)
    report = steps.post_credits(s, val, weights)
    return {
        "run_id": report.run_id,
        "entries": report.entries_written,
        "already_posted": report.already_posted,
        "queries": len(val.query_ids),
        "checkpoints": [c.checkpoint_id for c in val.per_checkpoint],
    }


@flow(name="value_queries")
def value_queries(settings: dict | None, checkpoints: str | list[str] = "all") -> str | None:
    return value_task(settings, checkpoints)


@flow(name="post_credits")
def post_credits(settings: dict | None, valuation: str, weights: dict | None = None) -> dict:
    return post_task(settings, valuation, weights)


@flow(name="valuation_cycle")
def valuation_cycle(
    settings: dict | None, checkpoints: str | list[str] = "all", weights: dict | None = None
) -> dict | None:
    """Value every pending query against the checkpoint set, then post the credits."""
    valuation = value_queries(settings, checkpoints)
    logger = get_run_logger()
    if valuation is None:
        logger.info("no pending query")
        return None
    result = post_credits(settings, valuation, weights)
    logger.info("run %s: %d queries, %d ledger entries", result["run_id"], result["queries"], result["entries"])
    return result
