"""LoGra capture and fit against explicit float64 references on tiny GPT-2 and Llama."""

from __future__ import annotations

import pytest
import torch

from tests.valuation.conftest import padded_batch
from tests.valuation.reference import per_example_weight_grads, projected
from valuation import LoGra, LoGraConfig, lm_loss

LENGTHS = [8, 5, 3]


def capture(logra: LoGra, model, batch) -> torch.Tensor:
    with logra.capture() as cap:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        lm_loss(out.logits, batch["labels"]).backward()
    return cap.gradients


def test_watches_attention_and_mlp_linears_but_not_the_head(model):
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4))
    names = [name for name, _, _ in logra.layout]
    assert len(names) == (8 if "gpt2" in type(model).__name__.lower() else 14)
    assert not any("lm_head" in n for n in names)
    head = LoGra(model, LoGraConfig(k_in=3, k_out=4, include=("lm_head",)))
    assert [n for n, _, _ in head.layout] == ["lm_head"]


def test_projected_gradients_equal_explicit_kronecker_projection(model):
    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4, init="random", seed=7))
    got = capture(logra, model, batch)
    names = [n for n, _, _ in logra.layout]
    grads = per_example_weight_grads(model, batch)
    want = projected(grads, {n: logra.projection(n) for n in names}, names)
    assert got.shape == (3, logra.dim) == want.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_identity_projection_is_the_exact_per_example_gradient(model):
    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(init="identity"))
    got = capture(logra, model, batch)
    grads = per_example_weight_grads(model, batch)
    want = torch.stack([torch.cat([g[n].reshape(-1) for n, _, _ in logra.layout]) for g in grads])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_capture_leaves_outputs_weights_and_grads_untouched(model):
    batch = padded_batch(LENGTHS)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=3))
    seen_requires_grad = []
    with logra.capture() as cap:
        seen_requires_grad = [p.requires_grad for p in model.parameters()]
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lm_loss(out, batch["labels"]).backward()
    torch.testing.assert_close(out.detach(), plain, rtol=0, atol=0)
    assert not any(seen_requires_grad), "weights must not require grad while capturing"
    for n, p in model.named_parameters():
        assert p.grad is None, f"{n} got a weight gradient"
        assert torch.equal(p, before[n])
        assert p.requires_grad == flags[n]
    assert cap.gradients.shape == (3, logra.dim)
    # Hooks exist only inside the block.
    assert all(not m._forward_hooks for m in model.modules())


def test_padding_does_not_change_an_example_gradient(model):
    """An example's vector is the same alone and right-padded inside a longer batch."""
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4))
    batch = padded_batch(LENGTHS)
    together = capture(logra, model, batch)
    alone = {k: v[1:2, :5] for k, v in batch.items()}
    torch.testing.assert_close(capture(logra, model, alone)[0], together[1], rtol=1e-9, atol=1e-12)


def test_kfac_covariances_count_non_padding_tokens_only(model):
    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=3)).fit([batch])
    # Reference: raw inputs and output gradients of every watched module, masked by hand.
    store = {}

    def keep(name):
        def hook(module, args, output):
            output.retain_grad()
            store[name] = (args[0].detach(), output)

        return hook

    handles = [wm.module.register_forward_hook(keep(wm.name)) for wm in logra.modules]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    lm_loss(out, batch["labels"]).backward()
    for h in handles:
        h.remove()
    model.zero_grad(set_to_none=True)
    mask = batch["attention_mask"].bool()
    for name, _, _ in logra.layout:
        x, y = store[name]
        xs, dys = x[mask], y.grad[mask]
        c_f, c_b = logra.covariances(name)
        torch.testing.assert_close(c_f, xs.T @ xs / mask.sum(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(c_b, dys.T @ dys / mask.sum(), rtol=1e-10, atol=1e-14)


def test_fit_in_two_calls_equals_one_call(model):
    a, b = padded_batch(LENGTHS, seed=1), padded_batch([6, 6, 2], seed=2)
    one = LoGra(model, LoGraConfig(k_in=3, k_out=3)).fit([a, b])
    two = LoGra(model, LoGraConfig(k_in=3, k_out=3)).fit([a]).fit([b])
    for name, _, _ in one.layout:
        for x, y in zip(one.covariances(name), two.covariances(name), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-14)


def test_pca_projections_are_the_top_eigenvectors(model):
    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4, init="pca")).fit([batch])
    for name, k_out, k_in in logra.layout:
        for cov, p, k in zip(logra.covariances(name), logra.projection(name), (k_in, k_out), strict=True):
            vals = torch.linalg.eigvalsh(cov)
            top = vals.flip(0)[:k]
            # Rows are orthonormal eigenvectors whose eigenvalues are the k largest.
            torch.testing.assert_close(p @ p.T, torch.eye(k, dtype=p.dtype), atol=1e-10, rtol=0)
            torch.testing.assert_close(p @ cov @ p.T, torch.diag(top), atol=1e-9 * vals.max(), rtol=0)


def test_pca_requires_fit(model):
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=3, init="pca"))
    with pytest.raises(RuntimeError, match="fit"):
        logra.capture().__enter__()


def test_random_projections_are_seeded_and_reproducible(model):
    a = LoGra(model, LoGraConfig(k_in=3, k_out=4, seed=5))
    b = LoGra(model, LoGraConfig(k_in=3, k_out=4, seed=5))
    c = LoGra(model, LoGraConfig(k_in=3, k_out=4, seed=6))
    name = a.layout[0][0]
    assert torch.equal(a.projection(name)[0], b.projection(name)[0])
    assert not torch.equal(a.projection(name)[0], c.projection(name)[0])


def test_state_dict_round_trip(model):
    batch = padded_batch(LENGTHS)
    a = LoGra(model, LoGraConfig(k_in=3, k_out=4, init="pca")).fit([batch])
    b = LoGra(model, LoGraConfig(k_in=3, k_out=4, init="pca"))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(capture(a, model, batch), capture(b, model, batch), rtol=0, atol=0)


def test_mlp_with_flat_inputs_through_loss_fn():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)
    ).double()
    x, y = torch.randn(7, 6, dtype=torch.float64), torch.randint(0, 3, (7,))

    def loss_fn(model, batch):
        inputs, targets = batch
        return torch.nn.functional.cross_entropy(model(inputs), targets, reduction="sum")

    logra = LoGra(mlp, LoGraConfig(k_in=3, k_out=2, init="pca", include=("",))).fit([(x, y)], loss_fn=loss_fn)
    assert [n for n, _, _ in logra.layout] == ["0", "2", "4"]
    got = logra.gradients((x, y), loss_fn=loss_fn)
    grads = per_example_weight_grads(
        mlp,
        (x, y),
        include=("",),
        loss_fn=lambda m, batch, b: loss_fn(m, (batch[0][b : b + 1], batch[1][b : b + 1])),
    )
    names = [n for n, _, _ in logra.layout]
    want = projected(grads, {n: logra.projection(n) for n in names}, names)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # C_F over the 7 rows, exactly.
    torch.testing.assert_close(logra.covariances("0")[0], x.T @ x / 7, rtol=1e-12, atol=1e-14)


def test_capture_is_safe_under_bf16_autocast():
    from tests.valuation.conftest import tiny_gpt2

    model = tiny_gpt2().float()
    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(k_in=4, k_out=4))
    exact = capture(logra, model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16), logra.capture() as cap:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lm_loss(out, batch["labels"]).backward()
    got = cap.gradients
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    cos = torch.nn.functional.cosine_similarity(got, exact, dim=1)
    assert (cos > 0.98).all(), cos


@pytest.mark.parametrize("spectrum", ["decaying", "flat"])
def test_top_eigenvectors_of_a_large_matrix_equal_the_full_eigh(spectrum):
    # 1024 dims take the subspace-iteration path; a flat spectrum (no gap after the 16th
    # eigenvalue) does not converge there and must fall back to the full eigh.
    from valuation.logra import subspace_top_eigenvectors, top_eigenvectors

    gen = torch.Generator().manual_seed(3)
    n, k = 1024, 16
    q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))[0]
    lam = (
        1 / (1 + torch.arange(n, dtype=torch.float64)) ** 1.2
        if spectrum == "decaying"
        else 1 + 1e-3 * torch.rand(n, generator=gen, dtype=torch.float64)
    )
    cov = (q * lam) @ q.T
    assert (subspace_top_eigenvectors(cov, k) is None) == (spectrum == "flat")
    _, vecs = torch.linalg.eigh(cov)
    ref = vecs[:, -k:].flip(1).T
    got = top_eigenvectors(cov, k)
    if spectrum == "decaying":  # distinct eigenvalues: each vector equals eigh's up to sign
        torch.testing.assert_close(
            (got @ ref.T).abs().diagonal(), torch.ones(k, dtype=torch.float64), rtol=0, atol=1e-10
        )
    else:  # nearly equal eigenvalues: the same k-dimensional subspace
        torch.testing.assert_close(got.T @ got, ref.T @ ref, rtol=0, atol=1e-8)
    assert torch.all(got.gather(1, got.abs().argmax(1, keepdim=True)) > 0)
