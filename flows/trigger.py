"""How ``checkpoint add`` starts ``on_new_checkpoint`` when Prefect orchestrates: with a server
(``PREFECT_API_URL``) it emits ``dataworth.checkpoint.registered`` (a deployment made by
``dataworth deploy`` runs from its trigger) or runs the served deployment; otherwise the flow runs
in this process."""

from __future__ import annotations

import os

from flows.app import App


def start_on_new_checkpoint(app: App, checkpoint_id: str, model_dir: str, lineage: str, step: int | None) -> str:
    """What started the work: a flow run id, or the event's name."""
    params = {
        "settings": app.settings.to_params(),
        "model_dir": model_dir,
        "lineage": lineage,
        "step": step,
        "checkpoint_id": checkpoint_id,
    }
    if os.environ.get("PREFECT_API_URL"):
        from prefect.deployments import run_deployment
        from prefect.events.worker import EventsWorker

        from flows.deploy import deployment_is_event_triggered, deployment_name, emit_checkpoint_registered

        emit_checkpoint_registered(checkpoint_id, model_dir, lineage, step)
        EventsWorker.drain_all(timeout=30)  # deliver before this short-lived process exits
        triggered = deployment_is_event_triggered()
        if triggered:
            return "started by event dataworth.checkpoint.registered"
        if triggered is False:
            run = run_deployment(deployment_name("on_new_checkpoint"), parameters=params, timeout=0)
            return f"{run.id} (deployment run)"
    from flows.flows import on_new_checkpoint

    state = on_new_checkpoint(**params, return_state=True)
    state.result()  # raises the flow's error, if any
    return str(state.state_details.flow_run_id)
