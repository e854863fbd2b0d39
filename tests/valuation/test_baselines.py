"""Every method honours the sign convention: a query that repeats a train example scores it highest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.accuracy.digits import all_methods, load, loss_fn, run, train
from valuation import LoGra, LoGraConfig
from valuation.baselines import exact_influence, tfidf_similarity


@pytest.fixture(scope="module")
def small():
    torch.set_num_threads(1)
    xtr, ytr, _, _ = load(n_train=120, n_query=6)
    model = train(xtr, ytr, torch.ones(120, dtype=torch.bool), seed=0, steps=150)
    return model, xtr, ytr


def test_every_method_scores_a_duplicate_as_helpful_and_a_contradiction_as_harmful(small):
    """Query = train example i: i helps (score > 0, above most). Query = x_i with another label:
    example i hurts (score < 0) for every label-aware method."""
    _, xtr, ytr = small
    model = train(xtr, ytr, torch.ones(120, dtype=torch.bool), seed=0, steps=30)  # gradients still large
    picks = [3, 17, 42]
    same = all_methods(model, xtr, ytr, xtr[picks], ytr[picks], ks=(8, 16))
    other = all_methods(model, xtr, ytr, xtr[picks], (ytr[picks] + 1) % 10, ks=(8, 16))
    for name in same:
        for row, i in enumerate(picks):
            assert same[name][row, i] > 0, (name, i)
            assert same[name][row, i] >= same[name][row].quantile(0.9), (name, i)
            if name != "representation similarity":  # label-blind by design
                assert other[name][row, i] < 0, (name, i)


def test_helpful_examples_lower_the_query_loss_when_upweighted(small):
    """Positive = helpful: a gradient step on the top-scored example lowers the query loss."""
    model, xtr, ytr = small
    exact = LoGra(model, LoGraConfig(init="identity", include=("",)))
    g = exact.gradients((xtr, ytr), loss_fn=loss_fn)
    q = exact.gradients((xtr[5:6] + 0.05, ytr[5:6]), loss_fn=loss_fn)
    scores = exact_influence(q, g, 0.1)[0]
    best, worst = int(scores.argmax()), int(scores.argmin())

    def query_loss_after_step(i: int) -> float:
        m = train(xtr, ytr, torch.ones(120, dtype=torch.bool), seed=0, steps=150)
        nn.functional.cross_entropy(m(xtr[i : i + 1]), ytr[i : i + 1], reduction="sum").backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= 1e-2 * p.grad
            return float(nn.functional.cross_entropy(m(xtr[5:6] + 0.05), ytr[5:6]))

    with torch.no_grad():
        base = float(nn.functional.cross_entropy(model(xtr[5:6] + 0.05), ytr[5:6]))
    assert query_loss_after_step(best) < base
    assert scores[worst] < 0 and query_loss_after_step(worst) > query_loss_after_step(best)


def test_tfidf_scores_identical_text_highest():
    train = ["the capital of varnholm is queltrin", "tomatoes like sun", "port 7731 for zentry"]
    s = tfidf_similarity(["capital of varnholm", "zentry port"], train)
    assert s[0].argmax() == 0 and s[1].argmax() == 2 and (s >= 0).all()


def test_digits_suite_smoke(tmp_path):
    """Suite (c): the digits pipeline end to end at a tiny size (well under a minute)."""
    res = run(
        subsets=6, seeds=2, n_train=120, n_query=6, brittle_queries=1, out_dir=tmp_path, brittle_ks=(5, 20), ks=(8, 16)
    )
    assert res["config"]["subsets"] == 6 and 0 < res["ceiling"] <= 1
    assert all(-1 <= r["mean"] <= 1 for r in res["lds"].values())
    assert set(res["brittleness"]) and all(len(b["mean_change"]) == 2 for b in res["brittleness"].values())


def test_lm_suite_smoke_and_sign_convention(tmp_path):
    """Suite (c) for the LM: the demo recipe at a tiny size, LDS + planted facts end to end; then
    every LM method scores a query that repeats a training document as helpful to it."""
    from benchmarks.accuracy.lm import LMSuite, LMSuiteArguments, run
    from valuation import pad_batch
    from valuation.evaluate import LDSArguments

    torch.set_num_threads(1)
    args = LMSuiteArguments.smoke()
    res = run(args, LDSArguments(subsets=4, seeds=2, cache_dir=tmp_path / "cache"), tmp_path / "work")
    assert set(res["ceiling"]) == {"all", "held-out documents", "planted-fact queries"}
    assert "LoGra pca k=8" in res["lds"] and "TF-IDF, character 3-5-grams" in res["lds"]
    assert all(-1 <= r["all"]["mean"] <= 1 for r in res["lds"].values())
    planted = res["planted"]["methods"]
    assert all(0 <= p["topk_share"]["accuracy"] <= 1 for p in planted.values())
    assert res["planted"]["facts"] == 18

    suite = LMSuite(args, tmp_path / "work")  # reuses the trained checkpoints
    picks = [0, 7, 20]
    ids = suite.tokenizer([suite.texts[i] for i in picks], add_special_tokens=False)["input_ids"]
    suite.query_batches = [pad_batch([s[: args.recipe.max_length] for s in ids], suite.tokenizer.pad_token_id)]
    suite.query_texts = [suite.texts[i] for i in picks]
    for name, scores in suite.score_methods().items():
        for row, i in enumerate(picks):
            assert scores[row, i] > 0, (name, i)
            assert scores[row, i] > scores[row].median(), (name, i)
            if any(tag in name for tag in ("cosine", "relatif", "exact", "TF-IDF", "representation")):
                assert int(scores[row].argmax()) == i, (name, i)  # normalised: a duplicate is the best match
