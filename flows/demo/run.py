"""``dataworth demo``: the whole cycle through the CLI on the bundled corpus, with a report."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.demo.corpus import PROVIDERS, documents, panel_queries, queries, write_jsonl
from flows.demo.model import TrainArguments, train_demo_model

console = Console()

# Saved and registered checkpoints, evenly spaced (the recipe's default is 3): a denser checkpoint
# set credits better (benchmarks/ACCURACY.md, "Denser checkpoint sets": the demo's planted facts
# 0.741 with 3 of the same checkpoints, 0.981 with 6; LM suite LDS 0.214 -> 0.358 with 12).
DEMO_CHECKPOINTS = 12

DEMO_SETTINGS = """# the demo's valuation settings
k_in = 16
k_out = 16
init = "pca"
mode = "if"          # with Adam scaling and learning-rate weights (the defaults) cosine loses here
                     # (benchmarks/ACCURACY.md, "The demo's own queries over three seeds")
damping_ratio = 0.1
topk = 10
policy = "topk_share"
max_length = 96
num_shards = 2
"""


def top_provider_by_policy(result, providers: list[str]) -> str | None:
    """The provider the ledger would credit most for one query under topk_share."""
    from ledger import split_query

    share = dict.fromkeys(providers, 1)
    parts, _ = split_query(result, "topk_share", set(providers), share, set(providers))
    return max(sorted(parts), key=parts.get) if parts else None


def run_demo(home: Path, app) -> dict:
    home = Path(home).resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["DATAWORTH_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ.pop("DATAWORTH_DB_URL", None)
    os.environ.pop("DATAWORTH_LANCE_URI", None)
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def cli(*args: str) -> None:
        console.rule(f"[bold]dataworth {' '.join(args)}")
        start = time.perf_counter()
        app(list(args), standalone_mode=False)
        label = " ".join(args[:2]) if args[0] in ("checkpoint", "query") else args[0]
        times[label] = times.get(label, 0.0) + time.perf_counter() - start

    assets = home / "assets"
    docs = documents()
    corpus = write_jsonl(docs, assets / "corpus.jsonl")
    qs = queries()
    truth = {q["query_id"]: q.pop("planted_by") for q in qs}
    qfile = write_jsonl(qs, assets / "queries.jsonl")
    console.print(f"corpus: {len(docs)} documents from {len(PROVIDERS)} providers; {len(qs)} queries on planted facts")
    start = time.perf_counter()
    with Progress(
        TextColumn("training GPT-2"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"))
        checkpoints = train_demo_model(
            [d["text"] for d in docs],
            assets / "model",
            TrainArguments(checkpoints=DEMO_CHECKPOINTS),
            progress=lambda step, total, loss: bar.update(task, completed=step, total=total, loss=loss),
        )
    times["train model (tokenizer + GPT-2, CPU)"] = time.perf_counter() - start
    # The lineage's query panel: questions of the queries' template, none of them valued here
    # (README, "The query panel"; benchmarks/ACCURACY.md, "The query panel").
    panel = write_jsonl(panel_queries(), assets / "panel.jsonl")
    (home / "dataworth.toml").write_text(DEMO_SETTINGS + f"query_panel = {json.dumps(str(panel))}\npanel_alpha = 0.5\n")

    cli("init")
    cli("ingest", str(corpus))
    for step, path in enumerate(checkpoints):
        cli("checkpoint", "add", str(path), "--lineage", "demo", "--step", str(step))
    cli("query", "add", str(qfile))

    # Final checkpoint alone: valued without posting, for comparison.
    from flows.app import App
    from flows.config import load_settings
    from flows.valuate import checkpoint_set, value_lineage

    start = time.perf_counter()
    app_ = App.of(load_settings())
    s = app_.settings
    pending = app_.queries.pending("demo").to_pylist()
    latest = checkpoint_set(app_, "demo", "latest")
    final = value_lineage(app_, "demo", latest, pending, with_confidence=False).combined(
        normalise=s.checkpoint_combine == "normalised"
    )
    providers = list(PROVIDERS)
    final_top = {r.query_id: top_provider_by_policy(r, providers) for r in final}
    times["value (final checkpoint only, not posted)"] = time.perf_counter() - start
    cli("value")  # the checkpoint set; posts the credits
    cli("credits")
    from sqlalchemy import text

    with app_.ledger.connect() as conn:
        rows = conn.execute(text("SELECT query_id, provider_id, credit FROM v_query_provider_credit")).all()
    best: dict[str, tuple[float, str]] = {}
    for qid, provider, credit in rows:
        if qid not in best or float(credit) > best[qid][0]:
            best[qid] = (float(credit), provider)
    set_acc = sum(best.get(q, (0, None))[1] == p for q, p in truth.items()) / len(truth)
    final_acc = sum(final_top.get(q) == p for q, p in truth.items()) / len(truth)
    times["total"] = time.perf_counter() - t0

    t = Table(title="Planted-fact accuracy (top-credited provider = planting provider)")
    t.add_column("checkpoints")
    t.add_column("accuracy", justify="right")
    t.add_row("final checkpoint only", f"{final_acc:.3f}")
    t.add_row(f"checkpoint set ({len(checkpoints)} of the lineage)", f"[bold]{set_acc:.3f}[/bold]")
    t.add_row("chance", f"{1 / len(PROVIDERS):.3f}")
    console.print(t)
    tt = Table(title="Stage times (s)")
    tt.add_column("stage")
    tt.add_column("seconds", justify="right")
    for k, v in times.items():
        tt.add_row(k, f"{v:.1f}")
    console.print(tt)
    report = write_demo_report(app_.ledger, home / "report.html", truth, best, set_acc, final_acc, len(checkpoints))
    console.print(f"report: [bold]{report}[/bold]")
    results = {"accuracy_checkpoint_set": set_acc, "accuracy_final_checkpoint": final_acc, "seconds": times}
    (home / "demo-results.json").write_text(json.dumps(results, indent=2))
    return results


def write_demo_report(engine, path: Path, truth, best, set_acc, final_acc, n_checkpoints: int) -> Path:
    """The ledger's HTML statement of every run (:mod:`flows.report`) plus the demo's planted-fact accuracy."""
    from flows.report import ReportArguments, ReportSection, write_report

    accuracy = ReportSection(
        "Planted-fact accuracy (the demo only)",
        ["checkpoints", "accuracy"],
        [
            ["final checkpoint only", f"{final_acc:.3f}"],
            [f"checkpoint set ({n_checkpoints} of the lineage)", f"{set_acc:.3f}"],
            ["chance", f"{1 / len(PROVIDERS):.3f}"],
        ],
        note="a query is right when its top-credited provider is the provider that planted its fact",
    )
    per_query = ReportSection(
        "Planted against credited, per query",
        ["query_id", "planted by", "credited most", "right"],
        [
            [q, p, best.get(q, (0, ""))[1] or "", "yes" if best.get(q, (0, None))[1] == p else "no"]
            for q, p in sorted(truth.items())
        ],
    )
    return write_report(engine, path, ReportArguments(), [accuracy, per_query])
