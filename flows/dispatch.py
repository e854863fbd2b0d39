"""Shards on a work pool: one flow run of the ``log_shard`` deployment per shard.

Whichever worker polls the pool picks a shard up. A shard run that ends Crashed or Failed (its
worker died: the server's zombie automation marks a run whose heartbeats stopped as Crashed)
is submitted again, up to ``Settings.shard_attempts`` times; the gradient store's shard
attempts guarantee the retry replaces, never duplicates, the dead attempt's rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.log import pending_shards
from flows.errors import DataworthError


class ShardDispatchError(DataworthError):
    """The shard deployment is missing, or a shard failed every attempt."""


def run_shards_on_pool(
    ctx: CheckpointContext,
    shards: list[int],
    log: Callable[[str], None] = print,
    poll_seconds: float = 2.0,
) -> dict[int, str]:
    """Submit one run per shard, wait, resubmit crashed ones; ``{shard: flow run id}`` of the
    runs that completed. Raises :class:`ShardDispatchError` when a shard fails every attempt."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    settings, checkpoint_id = ctx.app.settings, ctx.row.checkpoint_id

    def submit(shard: int, attempt: int) -> UUID:
        try:
            run = run_deployment(
                settings.shard_deployment,
                parameters={
                    "settings": settings.to_params(),
                    "checkpoint_id": checkpoint_id,
                    "shard": shard,
                },
                timeout=0,
                as_subflow=False,
                tags=[f"shard-{shard}", f"attempt-{attempt}"],
            )
        except ObjectNotFound as exc:
            raise ShardDispatchError(
                f"shard deployment {settings.shard_deployment!r} is not on the Prefect server: run `dataworth deploy`"
            ) from exc
        return run.id

    running = {shard: submit(shard, 1) for shard in shards}
    attempts = dict.fromkeys(shards, 1)
    done: dict[int, str] = {}
    log(f"{len(shards)} shard runs submitted to {settings.shard_deployment}")
    with get_client(sync_client=True) as client:
        while running:
            time.sleep(poll_seconds)
            for shard, run_id in list(running.items()):
                state = client.read_flow_run(run_id).state
                if state is None or not state.is_final():
                    continue
                del running[shard]
                if state.is_completed():
                    done[shard] = str(run_id)
                    continue
                if attempts[shard] >= settings.shard_attempts:
                    raise ShardDispatchError(
                        f"shard {shard} of checkpoint {checkpoint_id[:16]} failed {attempts[shard]} times "
                        f"(last run {run_id}: {state.type.value} {state.message or ''})"
                    )
                attempts[shard] += 1
                log(f"shard {shard}: run {run_id} ended {state.type.value}; attempt {attempts[shard]}")
                running[shard] = submit(shard, attempts[shard])
    missing = pending_shards(ctx)
    if missing:
        raise ShardDispatchError(f"checkpoint {checkpoint_id[:16]}: shards {missing} not committed after their runs")
    return done
