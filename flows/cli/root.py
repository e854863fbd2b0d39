"""The typer application: global options, ``--version``, and the command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import (
    commands_checkpoint,
    commands_corpus,
    commands_dashboard,
    commands_ledger,
    commands_ops,
    commands_value,
)
from flows.cli.context import set_options

app = typer.Typer(
    help="dataworth: value training data providers with LoGra influence; credits in a SQL ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # usage errors as click prints them: "Usage: ...", "Error: ..."
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"dataworth {version('dataworth')}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: Annotated[
        Path | None, typer.Option(help="TOML file of settings (default: $DATAWORTH_HOME/dataworth.toml)")
    ] = None,
    k: Annotated[int | None, typer.Option(help="k_in = k_out of the projections")] = None,
    init: Annotated[str | None, typer.Option(help="projection init: pca or random")] = None,
    damping: Annotated[float | None, typer.Option(help="damping ratio (× mean eigenvalue)")] = None,
    modules: Annotated[
        str | None, typer.Option(help="comma-separated module-name substrings to watch (default: @blocks, all)")
    ] = None,
    policy: Annotated[str | None, typer.Option(help="topk_share, positive_share or fallback_pro_rata")] = None,
    mode: Annotated[str | None, typer.Option(help="scoring mode: if, relatif or cosine")] = None,
    query_panel: Annotated[
        Path | None,
        typer.Option(help="query file whose second moment is mixed into the train one (setting query_panel)"),
    ] = None,
    panel_alpha: Annotated[float | None, typer.Option(help="weight of the query panel's second moment")] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    set_options(
        config,
        {
            "k_in": k,
            "k_out": k,
            "init": init,
            "damping_ratio": damping,
            "policy": policy,
            "mode": mode,
            "query_panel": str(query_panel) if query_panel else None,
            "panel_alpha": panel_alpha,
            "include": tuple(modules.split(",")) if modules else None,
        },
    )


for module in (commands_corpus, commands_checkpoint, commands_value, commands_ledger, commands_ops, commands_dashboard):
    module.register(app)
