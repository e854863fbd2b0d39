"""The ``dataworth`` command line."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.eval_cmd import eval_command

app = typer.Typer(
    help="dataworth: value training data providers with LoGra influence; credits in a SQL ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
checkpoint_app = typer.Typer(help="Register and list model checkpoints.", no_args_is_help=True)
query_app = typer.Typer(help="Queue queries to value.", no_args_is_help=True)
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(query_app, name="query")
app.command("eval")(eval_command)
console = Console()

_state: dict = {}


def _prefect_env(home: Path) -> None:
    """Embedded defaults: Prefect state under DATAWORTH_HOME, no telemetry, quiet logs."""
    os.environ.setdefault("PREFECT_HOME", str((home / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded from a model hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def settings():
    from flows.settings import load_settings

    if "settings" not in _state:
        _state["settings"] = load_settings(_state.get("config"), **_state.get("overrides", {}))
    return _state["settings"]


@app.callback()
def main_options(
    config: Annotated[
        Path | None, typer.Option(help="TOML file of settings (default: $DATAWORTH_HOME/dataworth.toml)")
    ] = None,
    k: Annotated[int | None, typer.Option(help="k_in = k_out of the projections")] = None,
    init: Annotated[str | None, typer.Option(help="projection init: pca or random")] = None,
    damping: Annotated[float | None, typer.Option(help="damping ratio (× mean eigenvalue)")] = None,
    modules: Annotated[str | None, typer.Option(help="comma-separated module-name substrings to watch")] = None,
    policy: Annotated[str | None, typer.Option(help="topk_share, positive_share or fallback_pro_rata")] = None,
    mode: Annotated[str | None, typer.Option(help="scoring mode: if, relatif or cosine")] = None,
) -> None:
    _state.clear()
    _state["config"] = config
    _state["overrides"] = {
        "k_in": k,
        "k_out": k,
        "init": init,
        "damping_ratio": damping,
        "policy": policy,
        "mode": mode,
        "include": tuple(modules.split(",")) if modules else None,
    }
    _prefect_env(Path(os.environ.get("DATAWORTH_HOME", ".dataworth")))


def _print_rows(rows: list[dict], columns: list[str], fmt: str, title: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        print(buf.getvalue(), end="")
    elif fmt == "table":
        t = Table(title=title)
        for c in columns:
            t.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), int | float) else "left")
        for r in rows:
            t.add_row(*[f"{r[c]:.6f}" if isinstance(r[c], float) else str(r[c]) for c in columns])
        console.print(t)
    else:
        raise ValueError(f"--format must be table, csv or json; got {fmt!r}")


def _sql(query: str, params: dict | None = None) -> list[dict]:
    from sqlalchemy import text

    from flows.steps import Stores

    with Stores(settings()).ledger().connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(query), params or {})]


# commands ---------------------------------------------------------------------------------------
@app.command()
def init() -> None:
    """Create $DATAWORTH_HOME with the ledger, the stores and a dataworth.toml to edit."""
    from flows.steps import Stores

    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    stores = Stores(s)
    stores.ledger()
    stores.corpus, stores.queries  # noqa: B018 - opening creates the tables
    toml = s.home / "dataworth.toml"
    if not toml.exists():
        toml.write_text(
            "# dataworth settings (environment variables DATAWORTH_HOME, DATAWORTH_DB_URL, DATAWORTH_LANCE_URI win)\n"
            f'k_in = {s.k_in}\nk_out = {s.k_out}\ninit = "{s.init}"\ninclude = {json.dumps(list(s.include))}\n'
            f'damping_ratio = {s.damping_ratio}\nmode = "{s.mode}"\ntopk = {s.topk}\npolicy = "{s.policy}"\n'
            f"max_length = {s.max_length}\nnum_shards = {s.num_shards}\n"
        )
    console.print(f"dataworth home: [bold]{s.home.resolve()}[/bold] (ledger, LanceDB stores, {toml.name})")


@app.command()
def ingest(
    file: Path,
    tokenizer: Annotated[
        Path | None, typer.Option(help="tokenizer or model dir (default: latest checkpoint's)")
    ] = None,
) -> None:
    """Ingest a corpus file (Parquet / JSONL / CSV with doc_id, provider_id, text)."""
    from flows.flows import ingest_corpus

    report = ingest_corpus(settings().to_dict(), str(file), str(tokenizer) if tokenizer else None)
    console.print(
        f"{file}: {report['rows']} rows, [bold]{report['documents_added']}[/bold] new documents "
        f"({report['examples_added']} examples), {report['already_stored']} already stored, "
        f"{report['duplicates_collapsed']} duplicates collapsed, new providers: {report['new_providers'] or 'none'}"
    )


@checkpoint_app.command("add")
def checkpoint_add(
    directory: Path,
    lineage: Annotated[str, typer.Option(help="training run the checkpoint belongs to")] = "default",
    step: Annotated[int | None, typer.Option(help="training step")] = None,
) -> None:
    """Register a checkpoint (HF model dir with tokenizer) and run on_new_checkpoint for it."""
    from flows.steps import register

    s = settings()
    ck = register(s, directory, lineage, step)
    run_id = _trigger_on_new_checkpoint(s, ck.checkpoint_id, directory, lineage, step)
    console.print(f"checkpoint [bold]{ck.checkpoint_id[:16]}[/bold] ({lineage}, step {step}) ready; flow run {run_id}")


def _trigger_on_new_checkpoint(s, checkpoint_id: str, directory: Path, lineage: str, step: int | None) -> str:
    """With a Prefect server (``PREFECT_API_URL``): emit ``dataworth.checkpoint.registered``; a
    deployment deployed with its event trigger (``dataworth deploy``) runs from it, one without
    (``dataworth serve``) is run directly. Without a server: run the flow here."""
    model_dir = str(Path(directory).resolve())
    params = {"settings": s.to_dict(), "model_dir": model_dir, "lineage": lineage, "step": step}
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


@checkpoint_app.command("list")
def checkpoint_list() -> None:
    """Registered checkpoints and whether they are finalized (valuable)."""
    from flows.steps import is_finalized, list_checkpoints

    s = settings()
    rows = [
        {
            "checkpoint_id": c.checkpoint_id[:16],
            "lineage": c.lineage,
            "step": c.step,
            "path": c.path,
            "registered_at": str(c.registered_at)[:19],
            "finalized": is_finalized(s, c.checkpoint_id),
        }
        for c in list_checkpoints(s)
    ]
    _print_rows(
        rows, ["checkpoint_id", "lineage", "step", "finalized", "registered_at", "path"], "table", "Checkpoints"
    )


@query_app.command("add")
def query_add(file: Path) -> None:
    """Queue queries (JSONL / Parquet with query_id, prompt, response, optional value)."""
    from flows.steps import Stores

    report = Stores(settings()).queries.add_file(file)
    console.print(
        f"{file}: {report.added} queries queued, {report.already_stored} already stored, "
        f"{report.duplicates_collapsed} duplicates collapsed"
    )


@app.command()
def value(
    checkpoints: Annotated[str, typer.Option(help="latest, all (default), N (last N) or comma-separated ids")] = "all",
    weights: Annotated[
        str | None, typer.Option(help="per-checkpoint weights, e.g. 'ab12cd=2,ef34=0.5' (id prefixes; default 1)")
    ] = None,
) -> None:
    """Value the pending queries against the checkpoint set and post the credits."""
    from flows.flows import valuation_cycle
    from flows.steps import checkpoint_set

    which: str | list[str] = (
        checkpoints if checkpoints in ("latest", "all") or checkpoints.isdigit() else checkpoints.split(",")
    )
    by_id = None
    if weights:
        chosen = checkpoint_set(settings(), which)
        by_id = {}
        for item in weights.split(","):
            prefix, _, w = item.partition("=")
            match = [c.checkpoint_id for c in chosen if c.checkpoint_id.startswith(prefix.strip())]
            if len(match) != 1 or not w:
                raise ValueError(f"--weights {item!r}: expected ID_PREFIX=WEIGHT naming one checkpoint of the set")
            by_id[match[0]] = float(w)
    result = valuation_cycle(settings().to_dict(), which, by_id)
    if result is None:
        console.print("no pending query")
        return
    state = "already posted (no-op)" if result["already_posted"] else f"{result['entries']} ledger entries posted"
    console.print(
        f"run [bold]{result['run_id']}[/bold]: {result['queries']} queries × "
        f"{len(result['checkpoints'])} checkpoint(s); {state}"
    )
    credits(fmt="table", run=result["run_id"])


FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json")]


@app.command()
def credits(fmt: FormatOpt = "table", run: Annotated[str | None, typer.Option(help="one run only")] = None) -> None:
    """Credit per provider (all runs, or one)."""
    where, params = ("WHERE run_id = :run", {"run": run}) if run else ("", {})
    rows = _sql(
        f"SELECT provider_id, SUM(amount_micros) AS micros FROM ledger_entry {where} GROUP BY provider_id "
        "ORDER BY SUM(amount_micros) DESC, provider_id",
        params,
    )
    rows = [{"provider_id": r["provider_id"], "credit": r["micros"] / 1_000_000} for r in rows]
    _print_rows(rows, ["provider_id", "credit"], fmt, "Provider credit")


@app.command()
def attributions(
    query: Annotated[str | None, typer.Option(help="one query id")] = None, fmt: FormatOpt = "table"
) -> None:
    """Top training examples per query (latest run of each query)."""
    where, params = ("AND a.query_id = :q", {"q": query}) if query else ("", {})
    rows = _sql(
        "SELECT a.query_id, a.rank, a.doc_id, a.provider_id, a.score FROM query_attribution a "
        "JOIN valuation_run r ON r.run_id = a.run_id "
        f"WHERE r.started_at = (SELECT MAX(r2.started_at) FROM valuation_run r2 JOIN query_attribution a2 "
        f"ON a2.run_id = r2.run_id WHERE a2.query_id = a.query_id) {where} ORDER BY a.query_id, a.rank",
        params,
    )
    _print_rows(rows, ["query_id", "rank", "doc_id", "provider_id", "score"], fmt, "Attributions")


@app.command()
def statement(
    provider: str,
    start: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """A provider's statement: entries, totals, the queries and documents behind them."""
    from flows.steps import Stores
    from ledger import statement as make_statement

    st = make_statement(Stores(settings()).ledger(), provider, start, end)
    if not st.lines:
        raise ValueError(f"no ledger entry for provider {provider!r} in that period")
    if fmt == "json":
        print(st.to_json())
    elif fmt == "csv":
        print(st.to_csv(), end="")
    else:
        console.print(st.to_rich())


@app.command()
def runs() -> None:
    """Valuation runs (from the v_run_summary view)."""
    rows = _sql("SELECT * FROM v_run_summary ORDER BY run_id")
    for r in rows:
        r["total_credit"] = float(r["total_credit"])
    _print_rows(
        rows, ["run_id", "checkpoints", "queries", "providers_credited", "total_credit", "status"], "table", "Runs"
    )


@app.command()
def serve(cron: Annotated[str, typer.Option(help="schedule of valuation_cycle")] = "0 * * * *") -> None:
    """Serve valuation_cycle on a cron schedule and on_new_checkpoint for ad hoc runs."""
    from prefect import serve as prefect_serve

    from flows.flows import on_new_checkpoint, valuation_cycle

    s = settings().to_dict()
    cycle = valuation_cycle.to_deployment(name="dataworth-valuation-cycle", cron=cron, parameters={"settings": s})
    adhoc = on_new_checkpoint.to_deployment(name="dataworth-on-new-checkpoint", parameters={"settings": s})
    console.print(f"serving valuation_cycle ({cron}) and on_new_checkpoint; Ctrl-C stops")
    prefect_serve(cycle, adhoc, pause_on_shutdown=False)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="work pool the deployments run on (created if missing)")] = "dataworth",
    pool_type: Annotated[str, typer.Option(help="type of a new pool: process, docker, kubernetes, ...")] = "process",
    cron: Annotated[str, typer.Option(help="schedule of valuation_cycle")] = "0 * * * *",
    gpu_slots: Annotated[int, typer.Option(help="GPU tasks running at once (the gpu tag's limit)")] = 1,
    heartbeat_timeout: Annotated[int, typer.Option(help="seconds without heartbeat before a run is Crashed")] = 90,
    no_event_trigger: Annotated[bool, typer.Option(help="on_new_checkpoint only by direct runs")] = False,
    source: Annotated[Path | None, typer.Option(help="the code's directory as the workers see it")] = None,
) -> None:
    """Register the deployments, work pool, GPU limit and automations on the Prefect server."""
    from flows.deploy import REPO_ROOT, DeployArguments
    from flows.deploy import deploy as deploy_all

    if not os.environ.get("PREFECT_API_URL"):
        raise ValueError("PREFECT_API_URL is not set: point it at your Prefect server (http://HOST:4200/api)")
    args = DeployArguments(
        pool, pool_type, cron, gpu_slots, heartbeat_timeout, not no_event_trigger, source or REPO_ROOT
    )
    out = deploy_all(settings(), args)
    table = Table(title=f"deployed to work pool {out['pool']!r} (gpu slots {out['gpu_slots']})")
    table.add_column("deployment")
    table.add_column("id")
    for name, dep_id in out["deployments"].items():
        table.add_row(name, dep_id)
    console.print(table)
    console.print(f"start workers with: prefect worker start --pool {out['pool']}")


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="where the demo's store, ledger and report go (replaced)")] = Path(
        ".dataworth/demo"
    ),
) -> None:
    """Run the whole cycle on the bundled corpus and a small GPT-2 trained here."""
    from flows.demo.run import run_demo

    run_demo(home, app)


def main() -> None:
    from storage import ArtifactError, InputValidationError

    try:
        app(standalone_mode=False)
    except (InputValidationError, ArtifactError, ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
