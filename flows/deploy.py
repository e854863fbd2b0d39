"""``dataworth deploy``: the deployments, work pool, GPU limit and automations on a Prefect server.

What it registers (idempotent: re-running it updates them in place):

- work pool ``pool`` (type ``process`` unless it exists already with another type);
- task concurrency limit on the ``gpu`` tag (``gpu_slots``: how many GPU tasks run at once);
- ``valuation_cycle/dataworth-valuation-cycle`` on ``cron``;
- ``on_new_checkpoint/dataworth-on-new-checkpoint``, run ad hoc by ``dataworth checkpoint add``
  and triggered by the ``dataworth.checkpoint.registered`` event it emits;
- ``log_shard/dataworth-log-shard``: one run per shard, submitted by ``log_gradients``;
- automation ``dataworth: crash flow runs without heartbeats``: a flow run whose heartbeats stop
  (its worker died) is marked Crashed, so ``log_gradients`` resubmits its shard elsewhere.

The deployments carry the resolved settings (stores, ledger, valuation config) as their default
parameters with ``shard_dispatch = "pool"``; workers need only the code, the credentials of the
object store and ``PREFECT_API_URL``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flows.config import Settings

EVENT = "dataworth.checkpoint.registered"
EVENT_TRIGGERED_TAG = "dataworth:event-triggered"
ZOMBIE_AUTOMATION = "dataworth: crash flow runs without heartbeats"
DEPLOYMENTS = {
    "valuation_cycle": "dataworth-valuation-cycle",
    "on_new_checkpoint": "dataworth-on-new-checkpoint",
    "log_shard": "dataworth-log-shard",
}
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DeployArguments:
    """How ``dataworth deploy`` registers the platform on a server."""

    pool: str = "dataworth"
    pool_type: str = "process"
    cron: str = "0 * * * *"
    gpu_slots: int = 1
    heartbeat_timeout_s: int = 90  # flow runs heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY (>= 30 s)
    event_trigger: bool = True
    source: Path = REPO_ROOT  # the code's location as the workers see it


def deployment_name(flow: str) -> str:
    return f"{flow}/{DEPLOYMENTS[flow]}"


def deploy(settings: Settings, args: DeployArguments = DeployArguments()) -> dict:
    """Register everything; returns ``{"pool", "deployments": {name: id}, "automation", "gpu_slots"}``."""
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.events import DeploymentEventTrigger
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=args.pool, type=args.pool_type))
        client.create_concurrency_limit(tag="gpu", concurrency_limit=args.gpu_slots)  # upserts
    s = settings.replace(shard_dispatch="pool", shard_deployment=deployment_name("log_shard"))
    params = {"settings": s.to_params()}  # no credentials: workers resolve the ledger URL themselves
    ids: dict[str, str] = {}
    for flow_name, dep_name in DEPLOYMENTS.items():
        flow = Flow.from_source(source=str(args.source), entrypoint=f"flows/flows.py:{flow_name}")
        extra: dict = {}
        tags = ["dataworth"]
        if flow_name == "valuation_cycle":
            extra["cron"] = args.cron
        if flow_name == "on_new_checkpoint" and args.event_trigger:
            tags.append(EVENT_TRIGGERED_TAG)
            extra["triggers"] = [
                DeploymentEventTrigger(
                    name="on checkpoint registered",
                    expect={EVENT},
                    match={"prefect.resource.id": "dataworth.checkpoint.*"},
                    parameters={
                        **params,
                        "model_dir": "{{ event.payload.model_dir }}",
                        "lineage": "{{ event.payload.lineage }}",
                        "step": "{{ event.payload.step }}",
                        "checkpoint_id": "{{ event.payload.checkpoint_id }}",
                    },
                )
            ]
        ids[f"{flow_name}/{dep_name}"] = str(
            flow.deploy(
                name=dep_name,
                work_pool_name=args.pool,
                parameters=params if flow_name != "log_shard" else {},
                tags=tags,
                # Heartbeats every 30 s (the minimum) so the zombie automation can tell a dead run.
                job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}},
                build=False,
                push=False,
                print_next_steps=False,
                ignore_warnings=True,
                **extra,
            )
        )
    automation = ensure_zombie_automation(args.heartbeat_timeout_s)
    return {"pool": args.pool, "deployments": ids, "automation": automation, "gpu_slots": args.gpu_slots}


def ensure_zombie_automation(timeout_s: int) -> str:
    """Mark a flow run Crashed when no heartbeat (nor final state) came for ``timeout_s``."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(ZOMBIE_AUTOMATION):
            client.delete_automation(old.id)
    auto = Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=timeout_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, message=f"no heartbeat for {timeout_s} s: its worker is presumed dead"
            )
        ],
    ).create()
    return str(auto.id)


def emit_checkpoint_registered(checkpoint_id: str, model_dir: str, lineage: str, step: int | None) -> None:
    """The event ``on_new_checkpoint``'s trigger listens for (needs ``PREFECT_API_URL``)."""
    from prefect.events import emit_event

    emit_event(
        EVENT,
        resource={"prefect.resource.id": f"dataworth.checkpoint.{checkpoint_id}"},
        payload={"checkpoint_id": checkpoint_id, "model_dir": model_dir, "lineage": lineage, "step": step},
    )


def deployment_is_event_triggered(flow: str = "on_new_checkpoint") -> bool | None:
    """Whether the deployed ``flow`` listens for the event (``None``: not deployed)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(deployment_name(flow))
        except ObjectNotFound:
            return None
    return EVENT_TRIGGERED_TAG in (dep.tags or [])
