"""``value``: the pending queries of every lineage against its checkpoint set, credits posted."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.context import get_app, require_home
from flows.cli.output import print_rows, say
from flows.errors import ConfigurationError


def parse_weights(text: str | None, checkpoint_ids: list[str]) -> dict[str, float] | None:
    """``ID_PREFIX=W,...`` → ``{checkpoint id: weight}`` (each prefix names one checkpoint)."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        prefix, _, w = item.partition("=")
        match = [c for c in checkpoint_ids if c.startswith(prefix.strip())]
        try:
            weight = float(w)
        except ValueError:
            weight = None
        if len(match) != 1 or weight is None:
            raise ConfigurationError(f"--weights {item!r}: expected ID_PREFIX=WEIGHT naming one registered checkpoint")
        out[match[0]] = weight
    return out


def value(
    checkpoints: Annotated[str, typer.Option(help="latest, all (default), N (last N) or comma-separated ids")] = "all",
    weights: Annotated[
        str | None, typer.Option(help="per-checkpoint weights, e.g. 'ab12cd=2,ef34=0.5' (id prefixes; default 1)")
    ] = None,
    lineage: Annotated[str | None, typer.Option(help="only this lineage's queries (default: every lineage)")] = None,
) -> None:
    """Value the pending queries against their lineage's checkpoint set and post the credits."""
    require_home()
    from flows.cli.live import live_progress
    from flows.pipeline import orchestrated, valuation_cycle
    from flows.progress import reporter_for_run

    app = get_app()
    which: str | list[str] = (
        checkpoints if checkpoints in ("latest", "all") or checkpoints.isdigit() else checkpoints.split(",")
    )
    if isinstance(which, list):
        for prefix in which:
            app.checkpoint(prefix)  # an unknown id is named now, not after scoring
    by_id = parse_weights(weights, [c.checkpoint_id for c in app.checkpoints()]) if weights else None
    with live_progress():
        if orchestrated():
            from flows.flows import valuation_cycle as cycle_flow

            runs, waiting = cycle_flow(app.settings.to_params(), which, by_id, lineage), {}
        else:
            result = valuation_cycle(app, which, by_id, lineage, reporter_for_run())
            runs, waiting = result.runs, result.waiting
    for name, why in waiting.items():
        say(f"{name}: queries stay pending ({why})")
    if not runs:
        say("no pending query was valued")
        return
    from ledger import credits

    for r in runs:
        state = "already posted (no-op)" if r["already_posted"] else f"{r['entries']} ledger entries posted"
        say(
            f"run {r['run_id']} ({r['lineage']}): {r['queries']} queries × {len(r['checkpoints'])} checkpoint(s); "
            f"{state}"
        )
        print_rows(credits(app.ledger, r["run_id"]), ["provider_id", "credit"], "table", f"Credit, run {r['run_id']}")


def register(app: typer.Typer) -> None:
    app.command()(value)
