"""The fidelity defaults wired into the stages: optimizer scaling per checkpoint (and in the table
key), learning-rate checkpoint weights (used and recorded), tail-patch confidence per query
(stored in the run, equal to a direct computation), and their settings validated."""

from __future__ import annotations

import copy
import json
import random
import shutil

import pytest
import torch
from sqlalchemy import text

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.register import register
from flows.confidence import draw_seed
from flows.config import Settings
from flows.errors import ConfigurationError
from flows.ingest import ingest
from flows.pipeline import build_checkpoint, valuation_cycle
from flows.valuate import checkpoint_set, set_weights, value_lineage
from valuation.combine import checkpoint_weights


def add(app: App, path, step: int, lineage: str = "tiny") -> CheckpointContext:
    ctx = CheckpointContext(app, register(app, path, lineage, step).checkpoint_id)
    build_checkpoint(ctx)
    return ctx


def bare_copy(path, tmp_path):
    """The checkpoint without its training state (another checkpoint: optimizer.pt is fingerprinted)."""
    out = tmp_path / f"bare-{path.name}"
    shutil.copytree(path, out)
    (out / "optimizer.pt").unlink()
    (out / "trainer_state.json").unlink()
    return out


def queries_of(world) -> list[dict]:
    return [json.loads(line) for line in world["queries"].read_text().splitlines()]


def test_unknown_values_of_the_new_settings_are_refused():
    for key, value in [
        ("optimizer_scaling", "maybe"),
        ("checkpoint_weights", "loss"),
        ("confidence", "bm25"),
        ("tail_patch_lr", 0),
        ("tail_patch_lr", True),
        ("fisher", "true"),
        ("temperature", 0),
        ("temperature", -1.0),
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("temperature", "hot"),
        ("temperature", True),
    ]:
        with pytest.raises(ConfigurationError, match=key if key != "confidence" else "unknown confidence"):
            Settings.build(**{key: value})
    s = Settings.build()
    assert (s.optimizer_scaling, s.checkpoint_weights, s.confidence) == ("auto", "auto", "tail-patch")
    assert s.fisher == "empirical" and "fisher" not in s.valuation_config()
    assert "temperature" not in Settings.build(temperature=1).valuation_config()  # T = 1 keeps the old keys


def test_the_sampled_label_fisher_is_the_second_moment_of_seeded_model_label_gradients(settings, world):
    """``fisher = "sampled"``: the preconditioner's ``H`` is the mean outer product of the logged
    examples' projected gradients under labels drawn from the model (each batch seeded by its
    example ids), not of the stored rows (the data's labels); the setting keys the table apart."""
    from flows.checkpoint.fit import fisher_loss, gradient_loss, load_logra
    from valuation import Preconditioner, ProjectedFisher

    s = settings.replace(fisher="sampled", confidence="off")
    app = App.of(s)
    ingest(app, world["corpus"])
    ctx = add(app, world["checkpoints"][-1], 1)
    assert ctx.config["fisher"] == "sampled"
    empirical = CheckpointContext(App.of(settings.replace(confidence="off")), ctx.checkpoint_id)
    assert "fisher" not in empirical.config and empirical.key != ctx.key
    logra = load_logra(ctx)
    sampled, data = ProjectedFisher(logra.layout), ProjectedFisher(logra.layout)
    for shard in range(s.num_shards):
        for batch, rows in ctx.batches(shard):
            sampled.update(logra.gradients(batch, loss_fn=fisher_loss(s, [r["example_id"] for r in rows])))
            data.update(logra.gradients(batch, loss_fn=gradient_loss(s)))
    state, _ = ctx.load("preconditioner")
    pre = Preconditioner.from_state_dict(logra.layout, state)
    assert int(state["count"]) == sampled.count == ctx.num_examples()
    for name, _ in pre.slices:
        vecs = pre.eigvecs[name]
        h = (vecs * pre.eigvals[name]) @ vecs.T
        torch.testing.assert_close(h, sampled.matrix(name), rtol=1e-5, atol=1e-6 * float(h.abs().max()))
        assert (h - data.matrix(name)).norm() > 1e-3 * h.norm()  # another matrix than the rows' own
    # The same batch seeded twice draws the same labels (a shard redone, or logged elsewhere).
    batch, rows = next(iter(ctx.batches(0)))
    ids = [r["example_id"] for r in rows]
    assert torch.equal(logra.gradients(batch, fisher_loss(s, ids)), logra.gradients(batch, fisher_loss(s, ids)))


def test_a_loss_temperature_shapes_every_gradient_and_keys_the_table(settings, world):
    """``temperature = 2``: the preconditioner's ``H`` is the second moment of the logged examples'
    ``LMLoss(2)`` gradients (not of the T = 1 ones), the query vectors are ``LMLoss(2)`` gradients,
    the setting keys the table apart (2 and 2.0 alike), and a valuation runs on it."""
    from flows.checkpoint.fit import load_logra
    from flows.valuate import query_lm_batch, query_vectors
    from valuation import Preconditioner, ProjectedFisher
    from valuation.loss import LMLoss

    s = settings.replace(temperature=2, confidence="off")
    assert s.temperature == 2.0 and s.valuation_config()["temperature"] == 2.0
    app = App.of(s)
    ingest(app, world["corpus"])
    ctx = add(app, world["checkpoints"][-1], 1)
    plain = CheckpointContext(App.of(settings.replace(temperature=1.0, confidence="off")), ctx.checkpoint_id)
    assert "temperature" not in plain.config and plain.key != ctx.key
    same = CheckpointContext(App.of(settings.replace(temperature=2.0, confidence="off")), ctx.checkpoint_id)
    assert same.key == ctx.key
    logra = load_logra(ctx)
    hot, cold = ProjectedFisher(logra.layout), ProjectedFisher(logra.layout)
    for shard in range(s.num_shards):
        for batch, _ in ctx.batches(shard):
            hot.update(logra.gradients(batch, loss_fn=LMLoss(2.0)))
            cold.update(logra.gradients(batch))
    state, _ = ctx.load("preconditioner")
    pre = Preconditioner.from_state_dict(logra.layout, state)
    for name, _ in pre.slices:
        vecs = pre.eigvecs[name]
        h = (vecs * pre.eigvals[name]) @ vecs.T
        torch.testing.assert_close(h, hot.matrix(name), rtol=1e-5, atol=1e-6 * float(h.abs().max()))
        assert (h - cold.matrix(name)).norm() > 1e-3 * h.norm()
    qs = queries_of(world)[: s.batch_size]
    q, _ = query_vectors(ctx, qs)
    _, tokenizer = ctx.model()
    want = logra.gradients(query_lm_batch(tokenizer, qs, s.max_length), loss_fn=LMLoss(2.0)).float()
    torch.testing.assert_close(q, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    val = value_lineage(app, "tiny", [ctx], qs, with_confidence=False)
    assert len(val.combined(normalise=True)) == len(qs)


def test_adam_state_turns_optimizer_scaling_on_and_keys_the_table_apart(settings, world, tmp_path):
    app = App.of(settings.replace(confidence="off"))
    ingest(app, world["corpus"])
    final = world["checkpoints"][-1]
    with_state = add(app, final, 1)
    assert with_state.training_state["optimizer_state"] and with_state.training_state["trainer_state"]
    assert with_state.optimizer_scaling and with_state.config["optimizer_scaling"] is True
    projections, _ = with_state.load("projections")
    assert any(k.endswith("/S_in") for k in projections)
    # The stored vectors are the scaled ones: a LoGra with the Adam state reproduces a row.
    from flows.checkpoint.fit import gradient_loss
    from valuation import LoGra, pad_batch
    from valuation.optimizer import load_hf_optimizer_state

    model, tok = with_state.model()
    logra = LoGra(model, with_state.logra_config()).set_optimizer_state(load_hf_optimizer_state(model, final))
    logra.load_state_dict({k: v for k, v in projections.items() if "/S_" not in k})
    chunk = next(iter(with_state.table().read()))
    rows = {
        r["example_id"]: r["input_ids"]
        for rb in app.corpus.iter_examples(with_state.tokenizer_key, with_state.corpus_version)
        for r in rb.to_pylist()
    }
    want = logra.gradients(pad_batch([rows[chunk.example_ids[0]]], tok.pad_token_id), gradient_loss(app.settings))
    # Stored in the table's dtype (float16 by default): equal to its rounding, ~5e-4 relative.
    tol = 1e-3 if app.settings.dtype == "float16" else 1e-5
    torch.testing.assert_close(chunk.vectors[0:1].float(), want.float(), rtol=tol, atol=tol * float(want.abs().max()))

    off = CheckpointContext(App.of(settings.replace(optimizer_scaling="off")), with_state.checkpoint_id)
    assert not off.optimizer_scaling and "optimizer_scaling" not in off.config and off.key != with_state.key

    bare = add(app, bare_copy(final, tmp_path), 2, "bare")
    assert not bare.training_state["optimizer_state"] and not bare.optimizer_scaling
    assert "optimizer_scaling" not in bare.config
    assert not any(k.endswith("/S_in") for k in bare.load("projections")[0])
    on = CheckpointContext(App.of(settings.replace(optimizer_scaling="on")), bare.checkpoint_id)
    with pytest.raises(ConfigurationError, match="optimizer_scaling = 'on'"):
        on.key  # noqa: B018


def test_an_unusable_optimizer_state_is_recorded_with_its_reason_and_not_used(settings, world, tmp_path):
    app = App.of(settings)
    ingest(app, world["corpus"])
    partial = tmp_path / "partial"
    shutil.copytree(world["checkpoints"][-1], partial)
    state = torch.load(partial / "optimizer.pt", weights_only=True)
    names = state["param_groups"][0]["param_names"]
    del state["state"][names.index("transformer.h.0.mlp.c_fc.weight")]
    torch.save(state, partial / "optimizer.pt")
    broken = tmp_path / "broken"
    shutil.copytree(world["checkpoints"][-1], broken)
    (broken / "optimizer.pt").write_bytes(b"not a torch file")
    for path, why in [(partial, "no Adam state for 1 watched weight"), (broken, "optimizer.pt not usable")]:
        ctx = CheckpointContext(app, register(app, path, "odd", None).checkpoint_id)
        assert not ctx.training_state["optimizer_state"] and why in " ".join(ctx.training_state["notes"])
        assert ctx.training_state["trainer_state"] and not ctx.optimizer_scaling


def test_learning_rate_weights_are_used_and_recorded(settings, world, tmp_path):
    app = App.of(settings.replace(confidence="off"))
    ingest(app, world["corpus"])
    ctxs = [add(app, p, i) for i, p in enumerate(world["checkpoints"])]
    steps = [c.training_state["global_step"] for c in ctxs]
    lr = checkpoint_weights(world["checkpoints"][-1] / "trainer_state.json", steps)
    want = {c.checkpoint_id: w * len(lr) for c, w in zip(ctxs, lr, strict=True)}
    assert set_weights(app, ctxs) == (pytest.approx(want, rel=1e-9), "lr")
    assert len(set(round(w, 6) for w in want.values())) == 2  # really unequal
    assert set_weights(App.of(settings.replace(checkpoint_weights="uniform")), ctxs)[1] == "uniform"
    explicit = {ctxs[0].checkpoint_id: 3.0}
    assert set_weights(app, ctxs, explicit) == ({ctxs[0].checkpoint_id: 3.0, ctxs[1].checkpoint_id: 1.0}, "explicit")

    app.queries.add_file(world["queries"], "tiny")
    assert len(valuation_cycle(app).runs) == 1
    with app.ledger.connect() as conn:
        config = json.loads(conn.execute(text("SELECT config FROM valuation_run")).scalar_one())
        refs = dict(conn.execute(text("SELECT checkpoint_id, weight FROM run_checkpoint")).all())
    assert config["weights_basis"] == "lr" and config["weights"] == pytest.approx(want, rel=1e-9)
    assert config["checkpoint_weights"] == "auto" and config["optimizer_scaling"] == "auto"
    assert refs == pytest.approx(want, rel=1e-9)
    # the combined scores are the lr-weighted ones
    val = value_lineage(app, "tiny", checkpoint_set(app, "tiny"), queries_of(world), with_confidence=False)
    assert val.weights == pytest.approx(want) and val.weights_basis == "lr"
    got, uniform = val.combined(val.weights, normalise=True), val.combined(normalise=True)
    p = got[0].topk[0].provider_id
    assert got[0].provider_scores[p] != pytest.approx(uniform[0].provider_scores[p], rel=1e-6)

    # "lr" refuses a set where a checkpoint has no trainer_state.json; "auto" falls back to uniform
    bare = add(app, bare_copy(world["checkpoints"][-1], tmp_path), 5)
    assert set_weights(app, [ctxs[0], bare]) == ({ctxs[0].checkpoint_id: 1.0, bare.checkpoint_id: 1.0}, "uniform")
    with pytest.raises(ConfigurationError, match=r"trainer_state\.json"):
        set_weights(App.of(settings.replace(checkpoint_weights="lr")), [ctxs[0], bare])


def direct_margin(model, tok, query: dict, top: list[list[int]], drawn: list[list[int]], lr: float, width: int):
    """Explicit tail-patch: summed token cross-entropy, a hand-made SGD step, response log-prob
    (the prompt cut from the left to ``width`` tokens in all)."""
    ids_q = tok(query["prompt"], add_special_tokens=False)["input_ids"]
    ids_r = tok(query["response"], add_special_tokens=False)["input_ids"]
    ids_q = ids_q[max(0, len(ids_q) + len(ids_r) - width) :]

    def log_prob(m) -> float:
        ids = torch.tensor([ids_q + ids_r])
        with torch.no_grad():
            logp = torch.log_softmax(m(input_ids=ids).logits[0].double(), -1)
        return sum(float(logp[len(ids_q) + i - 1, t]) for i, t in enumerate(ids_r))

    def stepped(seqs: list[list[int]]):
        m = copy.deepcopy(model)
        loss = 0.0
        for s in seqs:  # one sequence at a time: no padding to reason about
            logits = m(input_ids=torch.tensor([s])).logits[0]
            loss = loss + torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(s[1:]), reduction="sum")
        loss.backward()
        with torch.no_grad():
            for p in m.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
        return m

    before = log_prob(model)
    return (log_prob(stepped(top)) - before) - (log_prob(stepped(drawn)) - before)


def test_tail_patch_confidence_is_stored_per_query_and_equals_a_direct_computation(settings, world):
    app = App.of(settings)
    ingest(app, world["corpus"])
    ctxs = [add(app, p, i) for i, p in enumerate(world["checkpoints"])]
    app.queries.add_file(world["queries"], "tiny")
    assert len(valuation_cycle(app).runs) == 1
    with app.ledger.connect() as conn:
        stored = dict(conn.execute(text("SELECT query_id, confidence FROM run_query")).all())
        receipt = dict(conn.execute(text("SELECT query_id, confidence FROM v_query_receipt")).all())
        metrics = json.loads(conn.execute(text("SELECT metrics FROM run_info")).scalar_one())
    assert len(stored) == 6 and all(v is not None and v != 0 for v in stored.values()) and receipt == stored
    assert metrics["confidence"]["checkpoint"] == ctxs[-1].checkpoint_id
    assert metrics["confidence"]["method"] == "tail-patch"

    final = ctxs[-1]
    model, tok = final.model()
    examples = {
        r["example_id"]: r["input_ids"]
        for rb in app.corpus.iter_examples(final.tokenizer_key, final.corpus_version)
        for r in rb.to_pylist()
    }
    population = list(examples)
    val = value_lineage(app, "tiny", checkpoint_set(app, "tiny"), queries_of(world), with_confidence=False)
    results = {r.query_id: r for r in val.combined(val.weights, normalise=True)}
    for q in queries_of(world)[:3]:
        top = [e.example_id for e in results[q["query_id"]].topk]
        drawn = random.Random(draw_seed(settings.seed, q["query_id"])).sample(population, len(top))
        want = direct_margin(
            model,
            tok,
            q,
            [examples[e] for e in top],
            [examples[e] for e in drawn],
            settings.tail_patch_lr,
            settings.max_length,
        )
        assert stored[q["query_id"]] == pytest.approx(want, rel=1e-3, abs=1e-6)
