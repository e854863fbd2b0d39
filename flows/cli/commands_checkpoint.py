"""``checkpoint add|list``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.context import get_app, require_home
from flows.cli.output import print_rows, say

checkpoint_app = typer.Typer(help="Register and list model checkpoints.", no_args_is_help=True, rich_markup_mode=None)
FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json")]


@checkpoint_app.command("add")
def checkpoint_add(
    directory: Path,
    lineage: Annotated[str, typer.Option(help="training run the checkpoint belongs to")] = "default",
    step: Annotated[int | None, typer.Option(help="training step")] = None,
    corpus_version: Annotated[
        int | None, typer.Option(help="corpus version it was trained on (default: the latest)")
    ] = None,
) -> None:
    """Check and register a checkpoint (HF model dir with tokenizer), then fit, log and finalize it."""
    require_home()
    from flows.checkpoint.context import CheckpointContext
    from flows.checkpoint.register import register
    from flows.cli.live import live_progress
    from flows.pipeline import build_checkpoint, orchestrated
    from flows.progress import reporter_for_run
    from valuation import coverage, find_watched_modules

    app = get_app()
    ck = register(app, directory, lineage, step, corpus_version)
    ctx = CheckpointContext(app, ck.checkpoint_id)
    model, _ = ctx.model()
    cov = coverage(model, find_watched_modules(model, app.settings.include))
    say(
        f"checkpoint {ck.checkpoint_id[:16]} ({lineage}, step {step}): corpus version {ctx.corpus_version}, "
        f"watching {cov.per_block}"
    )
    state = ctx.training_state
    scaling = "on" if ctx.optimizer_scaling else "off"
    say(f"training state: {describe_training_state(state)}; optimizer scaling {scaling}")
    for note in state.get("notes", []):
        say(f"warning: {note}", stderr=True)
    if cov.unwatched:
        say(
            f"warning: include = {list(app.settings.include)} leaves {', '.join(cov.unwatched)} unwatched in every "
            "block (the default @blocks watches them all)",
            stderr=True,
        )
    with live_progress():
        if orchestrated():
            from flows.trigger import start_on_new_checkpoint

            started = start_on_new_checkpoint(app, ck.checkpoint_id, ck.path, lineage, step)
            say(f"flow run: {started}")
        else:
            build_checkpoint(ctx, reporter_for_run())
    if ctx.finalized:
        say(f"checkpoint {ck.checkpoint_id[:16]} ready: {ctx.table().count_rows()} examples logged")


def describe_training_state(state: dict) -> str:
    """``optimizer.pt (Adam), trainer_state.json (step N)`` or ``none``: what a checkpoint carries."""
    parts = ["optimizer.pt (Adam)"] if state.get("optimizer_state") else []
    if state.get("trainer_state"):
        parts.append(f"trainer_state.json (step {state.get('global_step')})")
    return ", ".join(parts) or "none"


@checkpoint_app.command("list")
def checkpoint_list(fmt: FormatOpt = "table") -> None:
    """Registered checkpoints: lineage, step, pinned corpus version, coverage, finalized."""
    require_home()
    from flows.checkpoint.context import CheckpointContext

    app = get_app()
    rows = []
    for c in app.checkpoints():
        ctx = CheckpointContext(app, c.checkpoint_id)
        ctx.row = c
        version = app.corpus.pinned_version(c.checkpoint_id)
        examples = logged = None
        if version is not None and ctx.finalized:
            cov = ctx.manifest("preconditioner").get("extra", {}).get("coverage", {})
            examples, logged = cov.get("examples"), cov.get("rows")
        rows.append(
            {
                "checkpoint_id": c.checkpoint_id[:16],
                "lineage": c.lineage,
                "step": c.step,
                "corpus_version": version,
                "examples": examples,
                "logged": logged,
                "finalized": version is not None and ctx.finalized,
                "training_state": describe_training_state(ctx.training_state),
                "registered_at": c.registered_at.isoformat(timespec="seconds"),
                "path": c.path,
            }
        )
    columns = [
        "checkpoint_id",
        "lineage",
        "step",
        "corpus_version",
        "examples",
        "logged",
        "finalized",
        "training_state",
        "registered_at",
        "path",
    ]
    print_rows(rows, columns, fmt, "Checkpoints")


def register(app: typer.Typer) -> None:
    app.add_typer(checkpoint_app, name="checkpoint")
