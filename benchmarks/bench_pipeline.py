"""What a command costs before its work starts, and ``checkpoint add`` against capture alone.

    .venv/bin/python benchmarks/bench_pipeline.py [--before GIT_DIR] [--docs 1200 9600] [--rounds 5]

1. Start-up: wall time of ``dataworth --help``, of a command that reads the ledger
   (``dataworth credits`` on an empty home) and of ``dataworth value`` with nothing pending, each
   the median of ``--rounds`` fresh processes; with ``--before DIR`` (a checkout of an earlier
   commit) the same commands of that code beside them. Plus the import time of each heavy
   dependency in a fresh interpreter.
2. Pipeline: ``dataworth checkpoint add`` end to end on a GPT-2 (4 layers, width 256) and a corpus
   of each ``--docs`` size, tokens/s against LoGra capture + Fisher update alone on the same model,
   examples and settings, measured in the same run, in the pipeline's batches (length-sorted) and
   in stored order (dense-token rate vs padded-token rate). The breakdown (fit, shards, finalize)
   comes from the command's own progress lines. Per-checkpoint fixed costs (start-up, fit on
   ``fit_examples``, finalize) do not grow with the corpus: the sizes show how they amortise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import console, table  # noqa: E402

HEAVY = ["torch", "transformers", "lancedb", "prefect", "sqlmodel", "typer"]


def wall(cmd: list[str], env: dict, cwd: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(rounds: int, before: Path | None) -> list[list]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "DATAWORTH_HOME": str(home), "PYTHONPATH": str(ROOT)}
        env.pop("PREFECT_API_URL", None)
        subprocess.run([sys.executable, "-m", "flows.cli", "init"], env=env, cwd=ROOT, capture_output=True)
        commands = {"--help": ["--help"], "credits (empty home)": ["credits"], "value (nothing pending)": ["value"]}
        for label, args in commands.items():
            after = wall([sys.executable, "-m", "flows.cli", *args], env, ROOT, rounds)
            old = None
            if before is not None:
                benv = {**env, "PYTHONPATH": str(before), "DATAWORTH_HOME": str(Path(tmp) / "before")}
                subprocess.run([sys.executable, "-m", "flows.cli", "init"], env=benv, cwd=before, capture_output=True)
                old = wall([sys.executable, "-m", "flows.cli", *args], benv, before, rounds)
            rows.append([label, f"{old:.2f}" if old is not None else "-", f"{after:.2f}"])
    for module in HEAVY:
        t = wall([sys.executable, "-c", f"import {module}"], dict(os.environ), ROOT, rounds)
        rows.append([f"import {module}", "", f"{t:.2f}"])
    return rows


def make_model_and_corpus(root: Path, docs: int) -> tuple[Path, Path]:
    from flows.demo.corpus import documents, write_jsonl
    from flows.demo.model import TrainArguments, train_demo_model

    per_provider = max(1, docs // 6)
    texts = documents(docs_per_provider=per_provider, fact_repeats=3)
    corpus = write_jsonl(texts, root / "corpus.jsonl")
    args = TrainArguments(vocab_size=2048, n_layer=4, n_embd=256, n_head=4, max_length=128, epochs=1, checkpoints=1)
    [model] = train_demo_model([d["text"] for d in texts], root / "model", args)
    return Path(model), Path(corpus)


def capture_alone(home: Path, stored_order: bool = True) -> dict:
    """Tokens/s of LoGra capture + Fisher update alone over the corpus's examples, the same
    projections and settings: in the pipeline's batches (length-sorted windows) and in stored
    order (how the pipeline batched before), both read before timing."""
    import torch

    from flows.app import App
    from flows.checkpoint.context import EXAMPLE_COLUMNS, CheckpointContext
    from flows.checkpoint.fit import load_logra
    from flows.config import load_settings
    from valuation import ProjectedFisher, pad_batch

    os.environ["DATAWORTH_HOME"] = str(home)
    app = App.of(load_settings())
    [row] = app.checkpoints()
    ctx = CheckpointContext(app, row.checkpoint_id)
    logra = load_logra(ctx)
    _, tokenizer = ctx.model()
    sorted_batches = [b for b, _ in ctx.batches()]
    runs = [("pipeline batches", sorted_batches)]
    if stored_order:
        stored = app.corpus.iter_examples(
            ctx.tokenizer_key, ctx.corpus_version, batch_size=app.settings.batch_size, columns=EXAMPLE_COLUMNS
        )
        runs.append(
            ("stored order", [pad_batch(rb.column("input_ids").to_pylist(), tokenizer.pad_token_id) for rb in stored])
        )
    out = {}
    for name, batches in runs:
        fisher = ProjectedFisher(logra.layout)
        tokens, computed = 0, 0
        start = time.perf_counter()
        for batch in batches:
            fisher.update(logra.gradients(batch))
            tokens += int(batch["attention_mask"].sum())
            computed += batch["input_ids"].numel()
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        seconds = time.perf_counter() - start
        out[name] = {"tokens": tokens, "seconds": seconds, "rate": tokens / seconds, "padding": 1 - tokens / computed}
    return out


def pipeline(docs: int, stored_order: bool = True) -> tuple[list[list], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, corpus = make_model_and_corpus(root, docs)
        home = root / "home"
        env = {**os.environ, "DATAWORTH_HOME": str(home), "PYTHONPATH": str(ROOT)}
        env.pop("PREFECT_API_URL", None)
        cli = [sys.executable, "-m", "flows.cli"]
        subprocess.run([*cli, "init"], env=env, cwd=ROOT, check=True, capture_output=True)
        (home / "dataworth.toml").write_text("max_length = 128\nbatch_size = 16\nnum_shards = 4\n")
        subprocess.run([*cli, "ingest", str(corpus)], env=env, cwd=ROOT, check=True, capture_output=True)
        start = time.perf_counter()
        out = subprocess.run([*cli, "checkpoint", "add", str(model)], env=env, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        assert out.returncode == 0, out.stderr
        cap = capture_alone(home, stored_order)
        same, stored = cap["pipeline batches"], cap.get("stored order")
        end_to_end = same["tokens"] / seconds
        steps = [line for line in out.stderr.splitlines() if " in " in line and "/" in line]
        timed = {line.split(":")[0]: float(line.rsplit(" in ", 1)[1].split()[0]) for line in steps}
        shards = sum(v for k, v in timed.items() if k.startswith("shard"))
        rest = seconds - sum(timed.values())
        rows = [
            ["documents / tokens", f"{docs:,} / {same['tokens']:,}"],
            [
                "capture + Fisher alone, the pipeline's batches",
                f"{same['rate']:,.0f} tokens/s ({same['seconds']:.1f} s, {same['padding']:.0%} padding)",
            ],
            ["the shards inside checkpoint add", f"{same['tokens'] / shards:,.0f} tokens/s ({shards:.1f} s)"],
            *[[f"  {k}", f"{v:.1f} s"] for k, v in timed.items()],
            ["  the rest (start-up, imports, hash, checks, model load, tokenising)", f"{rest:.1f} s"],
            ["checkpoint add, end to end (own process)", f"{end_to_end:,.0f} tokens/s ({seconds:.1f} s)"],
            ["  × capture alone, same batches", f"{end_to_end / same['rate']:.2f}"],
        ]
        if stored is not None:
            rows[2:2] = [
                [
                    "capture + Fisher alone, stored-order batches",
                    f"{stored['rate']:,.0f} tokens/s ({stored['seconds']:.1f} s, {stored['padding']:.0%} padding)",
                ]
            ]
            rows.append(["  × capture alone, stored-order batches", f"{end_to_end / stored['rate']:.2f}"])
        return rows, {"docs": docs, "seconds": seconds, "capture": cap, "steps": timed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, help="a checkout of an earlier commit to compare start-up with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--docs", type=int, nargs="+", default=[1200, 9600, 30000])
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument(
        "--stored-order-max-docs", type=int, default=10_000, help="also time stored-order batches up to this size"
    )
    args = ap.parse_args()
    result = {}
    if not args.skip_startup:
        rows = startup(args.rounds, args.before)
        table("Start-up (median wall seconds of a fresh process)", ["what", "before", "now"], rows)
        result["startup"] = rows
    if not args.skip_pipeline:
        result["pipeline"] = []
        for docs in args.docs:
            prows, raw = pipeline(docs, stored_order=docs <= args.stored_order_max_docs)
            table(f"checkpoint add vs capture alone, {docs:,} documents", ["", ""], prows)
            result["pipeline"].append(raw)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_pipeline.json").write_text(json.dumps(result, indent=1))
    console.print(f"written {out / 'bench_pipeline.json'}")


if __name__ == "__main__":
    main()
