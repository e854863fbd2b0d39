"""The query panel (settings ``query_panel``, ``panel_alpha``): each checkpoint's preconditioner
becomes ``(H_mix + λI)^-1`` with ``H_mix = (1 − α) H_train + α H_panel`` (checked against an
explicit float64 computation from the logged examples' and the panel's gradients), the panel's
content digest is recorded in the run's config (not its path), and bad panels are refused."""

from __future__ import annotations

import json

import pytest
import torch

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.register import register
from flows.config import Settings
from flows.errors import ConfigurationError
from flows.ingest import ingest
from flows.pipeline import build_checkpoint
from flows.valuate import provider_list, query_lm_batch, value_lineage
from storage.errors import QueryValidationError
from storage.queries import read_query_panel


def queries_of(world) -> list[dict]:
    return [json.loads(line) for line in world["queries"].read_text().splitlines()]


def write_panel(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def explicit_mixed_inverse(ctx: CheckpointContext, panel: list[dict], alpha: float, ratio: float) -> list:
    """Per module ``(H_mix + λI)^-1`` in float64 from explicit gradients: ``H_train`` the mean outer
    product of every logged example's projected gradient, ``H_panel`` the panel's, ``λ`` = ratio ×
    mean eigenvalue (trace / k) of the mixture."""
    from flows.checkpoint.fit import gradient_loss, load_logra
    from valuation import layout_slices

    s = ctx.app.settings
    logra = load_logra(ctx)
    train = torch.cat(
        [
            logra.gradients(batch, loss_fn=gradient_loss(s)).double()
            for sh in range(s.num_shards)
            for batch, _ in ctx.batches(sh)
        ]
    )
    _, tokenizer = ctx.model()
    p = logra.gradients(query_lm_batch(tokenizer, panel, s.max_length), loss_fn=gradient_loss(s)).double()
    out = []
    for _, sl in layout_slices(logra.layout):
        h = (1 - alpha) * train[:, sl].T @ train[:, sl] / len(train) + alpha * p[:, sl].T @ p[:, sl] / len(p)
        lam = ratio * torch.trace(h) / h.shape[0]
        out.append((sl, torch.linalg.inv(h + lam * torch.eye(h.shape[0], dtype=torch.float64))))
    return out


def stored_rows(ctx: CheckpointContext):
    chunks = list(ctx.table().read(chunk_rows=10_000))
    g = torch.cat([c.vectors.double() for c in chunks])
    codes = torch.cat([torch.as_tensor(c.provider_codes) for c in chunks])
    ids = [e for c in chunks for e in c.example_ids]
    return g, codes, ids


@pytest.mark.parametrize("mode", ["if", "cosine"])
def test_a_query_panel_mixes_its_second_moment_into_each_checkpoints_preconditioner(settings, world, tmp_path, mode):
    qs = queries_of(world)
    valued, panel_rows = qs[:3], qs[3:]
    panel = write_panel(
        tmp_path / "panel.jsonl", [{"prompt": q["prompt"], "response": q["response"]} for q in panel_rows]
    )
    s = settings.replace(query_panel=str(panel), panel_alpha=0.5, mode=mode, confidence="off", topk=5)
    app = App.of(s)
    ingest(app, world["corpus"])
    ctx = CheckpointContext(app, register(app, world["checkpoints"][-1], "tiny", 1).checkpoint_id)
    build_checkpoint(ctx)
    val = value_lineage(app, "tiny", [ctx], valued, with_confidence=False)

    inv = explicit_mixed_inverse(ctx, panel_rows, 0.5, s.damping_ratio)
    from flows.checkpoint.fit import gradient_loss, load_logra

    logra = load_logra(ctx)
    _, tokenizer = ctx.model()
    q = logra.gradients(query_lm_batch(tokenizer, valued, s.max_length), loss_fn=gradient_loss(s)).double()
    q_pre = torch.zeros_like(q)
    for sl, m in inv:
        q_pre[:, sl] = q[:, sl] @ m
    g, codes, ids = stored_rows(ctx)
    scores = q_pre @ g.T
    if mode == "cosine":
        g_pre = torch.zeros_like(g)
        for sl, m in inv:
            g_pre[:, sl] = g[:, sl] @ m
        scores = scores / (g_pre * g).sum(1).sqrt()[None, :] / (q_pre * q).sum(1).sqrt()[:, None]
    got = val.per_checkpoint[0]
    want_sums = torch.zeros(len(valued), len(provider_list(app)), dtype=torch.float64).index_add_(1, codes, scores)
    scale = float(want_sums.abs().max())
    torch.testing.assert_close(got.group_sums, want_sums, rtol=1e-4, atol=1e-5 * scale)
    assert got.topk_method == "exact"  # the aggregates and the index hold H_train's numbers: the scan serves
    for qi, top in enumerate(got.topk):
        best = scores[qi].topk(5)
        assert [e for e, *_ in top] == [ids[i] for i in best.indices.tolist()]
        torch.testing.assert_close(
            torch.tensor([sc for *_, sc in top], dtype=torch.float64), best.values, rtol=1e-4, atol=1e-5 * scale
        )
    # Without the panel the same checkpoint scores differently (the mixture is not a no-op here).
    plain = value_lineage(App.of(s.replace(query_panel="")), "tiny", [ctx], valued, with_confidence=False)
    assert (plain.per_checkpoint[0].group_sums - got.group_sums).abs().max() > 1e-3 * scale


def test_a_run_records_the_panels_digest_not_its_path_and_keeps_the_old_config_without_one(settings, tmp_path):
    rows = [{"prompt": "Q: a?\nA:", "response": " b"}, {"prompt": "Q: c?\nA:", "response": " d"}]
    one = read_query_panel(write_panel(tmp_path / "one.jsonl", rows))
    moved = read_query_panel(write_panel(tmp_path / "two.jsonl", rows[::-1] + rows[:1]))  # reordered, repeated
    assert one.digest == moved.digest and len(moved.rows) == 2
    changed = read_query_panel(write_panel(tmp_path / "three.jsonl", [rows[0], {**rows[1], "response": " e"}]))
    assert changed.digest != one.digest
    base = Settings.build()
    assert base.query_panel == "" and base.panel_alpha == 0.5
    assert "query_panel" not in base.scoring_config() and "panel_alpha" not in base.scoring_config()
    assert Settings.build(query_panel=str(tmp_path / "one.jsonl")).scoring_config() == base.scoring_config()


def test_the_digest_enters_the_valuations_config(settings, world, tmp_path):
    qs = queries_of(world)
    panel = write_panel(tmp_path / "panel.jsonl", qs[3:])  # a query file serves as a panel (extra fields ignored)
    app = App.of(settings.replace(query_panel=str(panel), panel_alpha=0.25, confidence="off"))
    ingest(app, world["corpus"])
    ctx = CheckpointContext(app, register(app, world["checkpoints"][-1], "tiny", 1).checkpoint_id)
    build_checkpoint(ctx)
    val = value_lineage(app, "tiny", [ctx], qs[:2], with_confidence=False)
    digest = read_query_panel(panel).digest
    assert val.scoring["query_panel"] == {"digest": digest, "queries": len(qs[3:]), "alpha": 0.25}
    kept = app.settings.home / "panels" / f"{digest}.jsonl"
    assert [json.loads(line) for line in kept.read_text().splitlines()] == [
        {"prompt": q["prompt"], "response": q["response"]} for q in qs[3:]
    ]


def test_bad_panels_and_alphas_are_refused_with_file_row_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "Q", "response": " ok"})
        + "\n"
        + json.dumps({"prompt": "Q"})
        + "\n"
        + json.dumps({"prompt": 3, "response": "   "})
        + "\n"
    )
    with pytest.raises(QueryValidationError) as err:
        read_query_panel(bad)
    text = str(err.value)
    assert f"{bad}, row 2, field 'response': missing" in text
    assert f"{bad}, row 3, field 'prompt': must be a string" in text
    assert f"{bad}, row 3, field 'response': empty" in text
    with pytest.raises(QueryValidationError, match="no such file"):
        read_query_panel(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(QueryValidationError, match="no rows"):
        read_query_panel(tmp_path / "empty.jsonl")
    for alpha in (0, -0.5, 1.5, "half", True):
        with pytest.raises(ConfigurationError, match="panel_alpha"):
            Settings.build(panel_alpha=alpha)
    with pytest.raises(ConfigurationError, match="query_panel"):
        Settings.build(query_panel=3)


def test_the_demo_panel_has_the_queries_template_and_none_of_their_facts(tmp_path):
    from flows.demo.corpus import facts, panel_queries, queries, write_jsonl

    rows = panel_queries()
    panel = read_query_panel(write_jsonl(rows, tmp_path / "panel.jsonl"))
    assert len(panel.rows) == len(rows) == 24  # four per provider, all distinct
    asked = {q["prompt"] for q in queries()}
    for r in rows:
        assert r["prompt"].startswith("Question: ") and r["prompt"].endswith(" Answer:")
        assert r["prompt"] not in asked
        assert not any(f.response in r["response"] for f in facts())
    assert panel_queries() == rows  # seeded
