"""Prefect flows: thin wiring of the stages (``flows.ingest``, ``flows.checkpoint.*``,
``flows.valuate``, ``flows.credit``). Runs pass references (ids, paths), never tensors, and
settings without credentials (:meth:`Settings.to_params`): the ledger URL is resolved where the
flow runs (its process, environment, ``dataworth.toml`` or a Prefect Secret block)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows import artifacts
from flows.app import App
from flows.checkpoint import finalize as finalize_stage
from flows.checkpoint import fit as fit_stage
from flows.checkpoint import log as log_stage
from flows.checkpoint import register as register_stage
from flows.checkpoint.context import CheckpointContext
from flows.config import Settings, load_settings
from flows.progress import reporter_for_run
from storage.gradients import worker_name

GPU_TAG = "gpu"


def app_of(params: dict | None) -> App:
    """The App of a flow's settings: as passed, or (``None``) from the worker's environment / dataworth.toml."""
    if params is None:
        return App.of(load_settings())
    return App.of(App.resolve_params(params))


def _ctx(params: dict | None, checkpoint_id: str) -> CheckpointContext:
    return CheckpointContext(app_of(params), checkpoint_id)


@task(name="ingest-corpus")
def ingest_task(settings: dict | None, path: str) -> dict:
    from flows.ingest import ingest

    return ingest(app_of(settings), path, reporter_for_run()).__dict__


@task(name="register-checkpoint")
def register_task(
    settings: dict | None, model_dir: str, lineage: str, step: int | None, corpus_version: int | None = None
) -> str:
    return register_stage.register(app_of(settings), model_dir, lineage, step, corpus_version).checkpoint_id


@task(name="fit-checkpoint", tags=[GPU_TAG])
def fit_task(settings: dict | None, checkpoint_id: str) -> str:
    return fit_stage.fit(_ctx(settings, checkpoint_id), reporter_for_run().task("fit", unit="batches"))


@task(name="log-shard", tags=[GPU_TAG], retries=2, retry_delay_seconds=5)
def log_shard_task(settings: dict | None, checkpoint_id: str, shard: int) -> int:
    return log_stage.log_shard(_ctx(settings, checkpoint_id), shard, reporter_for_run())


@task(name="finalize-checkpoint", tags=[GPU_TAG])
def finalize_task(settings: dict | None, checkpoint_id: str) -> str:
    ctx = _ctx(settings, checkpoint_id)
    digest = finalize_stage.finalize(ctx, reporter_for_run())
    artifacts.publish_coverage(ctx)
    return digest


@flow(name="ingest_corpus", flow_run_name="ingest-corpus/{path}")
def ingest_corpus(settings: dict | None, path: str) -> dict:
    return ingest_task(settings, path)


@flow(name="register_checkpoint")
def register_checkpoint(
    settings: dict | None,
    model_dir: str,
    lineage: str = "default",
    step: int | None = None,
    corpus_version: int | None = None,
) -> str:
    return register_task(settings, model_dir, lineage, step, corpus_version)


@flow(name="fit_checkpoint")
def fit_checkpoint(settings: dict | None, checkpoint_id: str) -> str:
    return fit_task(settings, checkpoint_id)


@flow(name="log_shard", flow_run_name="log-shard/{checkpoint_id}#{shard}")
def log_shard(settings: dict | None, checkpoint_id: str, shard: int) -> dict:
    """One shard, as its own flow run: what a worker of the pool runs."""
    rows = log_shard_task(settings, checkpoint_id, shard)
    return {"shard": shard, "rows": rows, "worker": worker_name()}


@flow(name="log_gradients")
def log_gradients(settings: dict | None, checkpoint_id: str) -> int:
    """Every pending shard (committed shards are skipped; a partial one is redone); the rows logged.

    ``shard_dispatch = "local"``: one after another in this process (they share the model and its
    hooks). ``"pool"``: one run of the ``log_shard`` deployment per shard, on whichever workers
    poll the pool, crashed ones resubmitted (flows/dispatch.py, infra/README.md).
    """
    ctx = _ctx(settings, checkpoint_id)
    s = ctx.app.settings
    pending = log_stage.pending_shards(ctx)
    get_run_logger().info("checkpoint %s: %d of %d shards to log", checkpoint_id[:16], len(pending), s.num_shards)
    if s.shard_dispatch == "pool" and pending:
        from flows.dispatch import run_shards_on_pool

        run_shards_on_pool(ctx, pending, log=get_run_logger().info)
        return ctx.table().count_rows()
    return sum(log_shard_task(settings, checkpoint_id, shard) for shard in pending)


@flow(name="finalize_checkpoint")
def finalize_checkpoint(settings: dict | None, checkpoint_id: str) -> str:
    return finalize_task(settings, checkpoint_id)


@flow(name="on_new_checkpoint", flow_run_name="on-new-checkpoint/{lineage}@{step}")
def on_new_checkpoint(
    settings: dict | None,
    model_dir: str,
    lineage: str = "default",
    step: int | None = None,
    checkpoint_id: str | None = None,
    corpus_version: int | None = None,
) -> str:
    """register (unless the caller did) → fit → log → finalize; re-running it resumes where it stopped."""
    if checkpoint_id is None:
        checkpoint_id = register_checkpoint(settings, model_dir, lineage, step, corpus_version)
    ctx = _ctx(settings, checkpoint_id)
    if not ctx.exists("projections"):
        fit_checkpoint(settings, checkpoint_id)
    log_gradients(settings, checkpoint_id)
    if not ctx.finalized:
        finalize_checkpoint(settings, checkpoint_id)
    return checkpoint_id


@task(name="value-queries", tags=[GPU_TAG])
def value_task(
    settings: dict | None, lineage: str, checkpoints: str | list[str], weights: dict | None = None
) -> str | None:
    """Scores of the lineage's pending queries, saved as JSON; returns its path (None: nothing pending)."""
    from flows.valuate import checkpoint_set, valuation_path, value_lineage

    app = app_of(settings)
    queries = app.queries.pending(lineage).to_pylist()
    if not queries:
        return None
    ckset = checkpoint_set(app, lineage, checkpoints)
    val = value_lineage(app, lineage, ckset, queries, reporter_for_run(), weights)
    return str(val.save(valuation_path(app, val)))


@task(name="post-credits")
def post_task(settings: dict | None, valuation: str, weights: dict | None) -> dict | None:
    from flows.credit import post_credits
    from flows.scores import Valuation

    app = app_of(settings)
    val = Valuation.load(valuation)
    report = post_credits(app, val, weights)
    if report is None:
        return None
    result = {
        "run_id": report.run_id,
        "lineage": val.lineage,
        "entries": report.entries_written,
        "already_posted": report.already_posted,
        "queries": len(val.query_ids),
        "checkpoints": [c.checkpoint_id for c in val.per_checkpoint],
    }
    artifacts.publish_run(app, result)
    return result


@flow(name="value_queries")
def value_queries(
    settings: dict | None, lineage: str, checkpoints: str | list[str] = "all", weights: dict | None = None
) -> str | None:
    return value_task(settings, lineage, checkpoints, weights)


@flow(name="post_credits")
def post_credits(settings: dict | None, valuation: str, weights: dict | None = None) -> dict | None:
    return post_task(settings, valuation, weights)


def _cycle_name() -> str:
    from datetime import UTC, datetime

    return "valuation-cycle/" + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@flow(name="valuation_cycle", flow_run_name=_cycle_name)
def valuation_cycle(
    settings: dict | None,
    checkpoints: str | list[str] = "all",
    weights: dict | None = None,
    lineage: str | None = None,
) -> list[dict]:
    """Every lineage with pending queries (or one): value them against its checkpoint set, post the
    credits. A lineage without a finalized checkpoint keeps its queries pending (``query list``
    says why) and never blocks the others."""
    from flows.credit import reconcile
    from flows.valuate import finalized, why_waiting

    app = app_of(settings)
    logger = get_run_logger()
    marked = reconcile(app)
    if marked:
        logger.info("%d queries were already credited (a run posted before a crash): marked valued", marked)
    results = []
    lineages = [lineage] if lineage else app.queries.pending_lineages()
    for name in lineages:
        if not finalized(app, name):
            logger.info("its queries stay pending: %s", why_waiting(app, name))
            continue
        valuation = value_queries(settings, name, checkpoints, weights)
        if valuation is None:
            continue
        result = post_credits(settings, valuation, weights)
        if result is not None:
            logger.info(
                "run %s (%s): %d queries, %d ledger entries",
                result["run_id"],
                name,
                result["queries"],
                result["entries"],
            )
            results.append(result)
    if not results:
        logger.info("no pending query could be valued")
    return results


def settings_params(settings: Settings) -> dict:
    """What a flow run carries: the settings without credentials."""
    return settings.to_params()
