"""``dataworth demo``: the whole cycle through the CLI on the bundled corpus, with a report."""

from __future__ import annotations

import html
import json
import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.demo.corpus import PROVIDERS, documents, queries, write_jsonl
from flows.demo.model import TrainArguments, train_demo_model

console = Console()

DEMO_SETTINGS = """# the demo's valuation settings
k_in = 16
k_out = 16
init = "pca"
mode = "cosine"      # see README "How accurate is it?": cosine credits planted facts best here
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
            TrainArguments(),
            progress=lambda step, total, loss: bar.update(task, completed=step, total=total, loss=loss),
        )
    times["train model (tokenizer + GPT-2, CPU)"] = time.perf_counter() - start
    (home / "dataworth.toml").write_text(DEMO_SETTINGS)

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
    final = value_lineage(app_, "demo", checkpoint_set(app_, "demo", "latest"), pending).combined(
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
        attributions = conn.execute(
            text("SELECT query_id, rank, doc_id, provider_id, score FROM query_attribution ORDER BY query_id, rank")
        ).all()
        credit_rows = conn.execute(
            text("SELECT provider_id, SUM(credit) FROM v_provider_credit_daily GROUP BY provider_id ORDER BY 2 DESC")
        ).all()
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
    report = write_report(home / "report.html", credit_rows, attributions, truth, best, set_acc, final_acc)
    console.print(f"report: [bold]{report}[/bold]")
    results = {"accuracy_checkpoint_set": set_acc, "accuracy_final_checkpoint": final_acc, "seconds": times}
    (home / "demo-results.json").write_text(json.dumps(results, indent=2))
    return results


def write_report(path: Path, credit_rows, attributions, truth, best, set_acc, final_acc) -> Path:
    top = max((float(c) for _, c in credit_rows), default=1.0) or 1.0
    bars = []
    for i, (provider, credit) in enumerate(credit_rows):
        w = 520 * float(credit) / top
        y = 10 + i * 30
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="13">{html.escape(provider)}</text>'
            f'<rect x="160" y="{y}" width="{w:.1f}" height="20" fill="#3b82f6"/>'
            f'<text x="{165 + w:.1f}" y="{y + 15}" font-size="12">{float(credit):.3f}</text>'
        )
    svg = f'<svg width="760" height="{20 + 30 * len(credit_rows)}">{"".join(bars)}</svg>'
    by_query: dict[str, list] = {}
    for qid, rank, doc, provider, score in attributions:
        by_query.setdefault(qid, []).append((rank, doc, provider, score))
    sections = []
    for qid in sorted(by_query):
        ok = best.get(qid, (0, None))[1] == truth.get(qid)
        rows = "".join(
            f"<tr><td>{r}</td><td>{html.escape(d)}</td><td>{html.escape(p)}</td><td>{s:.4f}</td></tr>"
            for r, d, p, s in by_query[qid][:5]
        )
        sections.append(
            f"<h3>{html.escape(qid)} {'✔' if ok else '✘'}</h3><p>planted by <b>{html.escape(truth.get(qid, '?'))}</b>, "
            f"credited most: <b>{html.escape(str(best.get(qid, (0, '-'))[1]))}</b></p>"
            f"<table><tr><th>rank</th><th>document</th><th>provider</th><th>score</th></tr>{rows}</table>"
        )
    path.write_text(
        "<!doctype html><meta charset='utf-8'><title>dataworth demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>dataworth demo</h1><p>Planted-fact accuracy: checkpoint set <b>{set_acc:.3f}</b>, "
        f"final checkpoint only {final_acc:.3f}.</p><h2>Credit per provider</h2>{svg}"
        f"<h2>Top examples per query</h2>{''.join(sections)}"
    )
    return path
