"""The real ``dataworth`` CLI in subprocesses: usage errors and expected failures are one line and
exit 2, a bug keeps its traceback, and the whole cycle prints progress and ids as they are."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(home: Path, *args: str, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DATAWORTH_HOME": str(home), **env}
    environ.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_failure(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    assert needle in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["frobnicate"], "No such command"),
        (["ingest"], "Missing argument"),
        (["--k", "x", "init"], "Invalid value"),
        (["credits", "--format"], "requires an argument"),
    ],
)
def test_usage_errors_print_usage_and_exit_2(tmp_path, args, needle):
    out = run(tmp_path / "home", *args)
    one_line_failure(out, needle)
    assert "Error:" in out.stderr and len(out.stderr.splitlines()) <= 4


def test_version_and_help(tmp_path):
    out = run(tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.startswith("dataworth ")
    assert run(tmp_path, "--help").returncode == 0


@pytest.mark.parametrize(
    "args", [["ingest", "corpus.jsonl"], ["value"], ["credits"], ["query", "add", "q.jsonl"], ["checkpoint", "list"]]
)
def test_commands_before_init_say_so(tmp_path, args):
    one_line_failure(run(tmp_path / "nowhere", *args), "run `dataworth init` first")
    assert not (tmp_path / "nowhere").exists()


def test_expected_failures_are_one_line(tmp_path):
    home = tmp_path / "home"
    assert run(home, "init").returncode == 0
    one_line_failure(run(home, "ingest", str(tmp_path / "missing.jsonl")), "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc_id": "a", "provider_id": "p", "text": "ok"}\n{"doc_id": "b", "text": "no provider"}\n')
    one_line_failure(run(home, "ingest", str(bad)), "row 2, field 'provider_id': missing")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_line_failure(run(home, "query", "add", str(empty), "--lineage", "m"), "no rows")
    one_line_failure(run(home, "--mode", "fast", "credits"), "unknown scoring mode 'fast'")
    one_line_failure(run(home, "reverse", "run-nope"), "run-nope")
    one_line_failure(run(home, "checkpoint", "add", str(tmp_path)), "not a model directory")
    one_line_failure(run(home, "value", "--checkpoints", "zzz"), "unknown checkpoint zzz")
    one_line_failure(
        run(home, "credits", DATAWORTH_DB_URL="postgresql+psycopg://x@127.0.0.1:1/none"), "cannot reach the ledger"
    )


def test_a_bug_keeps_its_traceback(tmp_path):
    home = tmp_path / "home"
    assert run(home, "init").returncode == 0
    code = (
        "import sys, ledger; ledger.credits = lambda *a, **k: 1 / 0; "
        "sys.argv = ['dataworth', 'credits']; from flows.cli import main; main()"
    )
    env = {**os.environ, "DATAWORTH_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" in out.stderr and "ZeroDivisionError" in out.stderr


MARKUP_IDS = ["acme[/]", "[bold]x[/bold]"]


def test_the_cycle_through_the_cli_with_progress_and_markup_ids(tmp_path, world):
    home = tmp_path / "home"
    docs = [json.loads(line) for line in world["corpus"].read_text().splitlines()]
    originals = sorted({d["provider_id"] for d in docs})
    rename = dict(zip(originals[:2], MARKUP_IDS, strict=True))
    for d in docs:
        d["provider_id"] = rename.get(d["provider_id"], d["provider_id"])
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    settings = ["--k", "4"]
    toml_overrides = "num_shards = 2\nbatch_size = 8\nmax_length = 48\nfit_examples = 32\n"
    assert run(home, *settings, "init").returncode == 0
    (home / "dataworth.toml").write_text(toml_overrides)  # the rest at their defaults
    out = run(home, *settings, "ingest", str(corpus))
    assert out.returncode == 0, out.stderr
    assert "corpus version 1" in out.stdout and "acme[/]" in out.stdout and "[bold]x[/bold]" in out.stdout
    out = run(home, *settings, "checkpoint", "add", str(world["checkpoints"][0]), "--lineage", "tiny", "--step", "0")
    assert out.returncode == 0, out.stderr
    assert "watching 4 of 4 linear layers per block" in out.stdout
    assert "shard 1/2" in out.stderr and "self-influence" in out.stderr  # progress lines off a terminal
    assert "ready" in out.stdout
    out = run(home, *settings, "query", "add", str(world["queries"]))  # the only lineage: tiny
    assert out.returncode == 0, out.stderr
    bad_panel = tmp_path / "panel.jsonl"
    bad_panel.write_text('{"prompt": "Q: a?", "response": " b"}\n{"prompt": "Q: c?"}\n')
    one_line_failure(run(home, *settings, "--query-panel", str(bad_panel), "value"), "row 2, field 'response': missing")
    out = run(home, *settings, "value")
    assert out.returncode == 0, out.stderr
    assert "checkpoint " in out.stderr  # scoring progress
    rows = list(csv.DictReader(io.StringIO(run(home, *settings, "credits", "--format", "csv").stdout)))
    credited = {r["provider_id"] for r in rows}
    assert credited <= {rename.get(p, p) for p in originals}
    as_json = json.loads(run(home, *settings, "credits", "--format", "json").stdout)
    assert {r["provider_id"] for r in as_json} == credited and all(isinstance(r["credit"], str) for r in as_json)
    table = run(home, *settings, "credits").stdout
    for pid in MARKUP_IDS:
        if pid in credited:
            assert pid in table
            statement = run(home, *settings, "statement", pid, "--format", "json")
            assert statement.returncode == 0 and json.loads(statement.stdout)["provider_id"] == pid
            assert pid in run(home, *settings, "statement", pid).stdout  # the table's title, not read as markup
    listed = json.loads(run(home, *settings, "checkpoint", "list", "--format", "json").stdout)
    assert listed[0]["corpus_version"] == 1 and listed[0]["examples"] == listed[0]["logged"] > 0
    assert listed[0]["finalized"] is True
    runs = json.loads(run(home, *settings, "runs", "--format", "json").stdout)
    assert len(runs) == 1 and runs[0]["queries"] == 6
    assert run(home, *settings, "ledger", "verify").returncode == 0
    out = run(home, *settings, "reverse", runs[0]["run_id"])
    assert out.returncode == 0, out.stderr
    total = sum(float(r["credit"]) for r in json.loads(run(home, *settings, "credits", "--format", "json").stdout))
    assert total == pytest.approx(0.0, abs=1e-9)


def broken_checkpoints(src: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """Copies of a good checkpoint, each broken one way, with the message ``checkpoint add`` gives."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    out = {}

    def copy(name: str) -> Path:
        dst = root / name
        shutil.copytree(src, dst)
        return dst

    d = copy("truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    out["truncated"] = (d, "the weights do not load")
    d = copy("nan")
    tensors = load_file(d / "model.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    out["nan"] = (d, "NaN or infinite")
    d = copy("no-tokenizer")
    for f in d.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    out["no-tokenizer"] = (d, "tokenizer")
    d = copy("pickle")
    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    out["pickle"] = (d, "pickled weights are refused")
    d = copy("small-vocab")
    config = json.loads((d / "config.json").read_text())
    tensors = load_file(d / "model.safetensors")
    keep = 8
    for name in list(tensors):
        if tensors[name].shape[0] == config["vocab_size"]:
            tensors[name] = tensors[name][:keep].clone()
    config["vocab_size"] = keep
    (d / "config.json").write_text(json.dumps(config))
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    out["small-vocab"] = (d, "embedding")
    return out


def test_a_failed_checkpoint_add_registers_nothing(tmp_path, world):
    home = tmp_path / "home"
    assert run(home, "init").returncode == 0
    assert run(home, "ingest", str(world["corpus"])).returncode == 0
    for name, (directory, needle) in broken_checkpoints(world["checkpoints"][0], tmp_path).items():
        out = run(home, "checkpoint", "add", str(directory), "--lineage", name)
        one_line_failure(out, needle)
    assert json.loads(run(home, "checkpoint", "list", "--format", "json").stdout) == []
