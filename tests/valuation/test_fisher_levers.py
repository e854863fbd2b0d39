"""Second-moment levers against explicit float64 references: sampled-label (true) Fisher, mixed
train/query second moment, spectral damping rules, the unrolled (SOURCE) segment estimate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.valuation.conftest import padded_batch, tiny_gpt2
from tests.valuation.reference import per_example_weight_grads, projected
from valuation import LoGra, LoGraConfig, ProjectedFisher, lm_loss
from valuation.fisher import (
    Preconditioner,
    mixed_fisher,
    panel_preconditioner,
    spectral_damping,
    unrolled_filter,
    unrolled_preconditioner,
)
from valuation.loss import SampledLabelLoss, sample_lm_labels


def test_sampled_label_fisher_of_a_linear_classifier_is_the_gauss_newton_matrix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        p = torch.softmax(model(x), -1)
    # E_y[(p - e_y)(p - e_y)ᵀ] = diag(p) - p pᵀ; DW = (p - e_y) xᵀ, row-major vec -> Kronecker.
    exact = sum(torch.kron(torch.diag(p[i]) - torch.outer(p[i], p[i]), torch.outer(x[i], x[i])) for i in range(5)) / 5
    logra = LoGra(model, LoGraConfig(init="identity", include=("",)))
    fisher = ProjectedFisher(logra.layout)
    draws = 4000
    rows = x.repeat(draws, 1)
    fisher.update(logra.gradients((rows, None), loss_fn=SampledLabelLoss(seed=1, kind="classifier")))
    got = fisher.matrix(logra.layout[0][0])
    assert (got - exact).abs().max() < 0.03 * exact.abs().max()  # Monte Carlo error ~ 1/sqrt(20000)
    y = torch.tensor([0, 1, 2, 3, 0])
    empirical = LoGra(model, LoGraConfig(init="identity", include=("",))).gradients(
        (x, y), loss_fn=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1], reduction="sum")
    )
    assert (empirical.T @ empirical / 5 - exact).abs().max() > 0.1 * exact.abs().max()


def test_sampled_lm_labels_are_seeded_and_give_the_explicit_gradient():
    model = tiny_gpt2()
    batch = padded_batch([8, 5, 3])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = sample_lm_labels(logits, batch["labels"], torch.Generator().manual_seed(3))
    assert torch.equal(labels == -100, batch["labels"] == -100)
    assert torch.equal(labels, sample_lm_labels(logits, batch["labels"], torch.Generator().manual_seed(3)))
    assert not torch.equal(labels[:, 1:], batch["labels"][:, 1:])
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4, seed=2))
    got = logra.gradients(batch, loss_fn=SampledLabelLoss(seed=3))
    names = [n for n, _, _ in logra.layout]
    want = projected(
        per_example_weight_grads(model, {**batch, "labels": labels}), {n: logra.projection(n) for n in names}, names
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


LAYOUT = [("a", 2, 3), ("b", 3, 2)]


def explicit_preconditioned(q: torch.Tensor, matrices: list[torch.Tensor], lambdas: list[float]) -> torch.Tensor:
    out, start = [], 0
    for H, lam in zip(matrices, lambdas, strict=True):
        k = H.shape[0]
        out.append(q[:, start : start + k] @ torch.linalg.inv(H + lam * torch.eye(k, dtype=torch.float64)))
        start += k
    return torch.cat(out, 1)


def blocks(g: torch.Tensor) -> list[torch.Tensor]:
    return [g[:, :6].T @ g[:, :6] / len(g), g[:, 6:].T @ g[:, 6:] / len(g)]


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_mixed_second_moment_equals_the_explicit_mixture(alpha):
    gen = torch.Generator().manual_seed(0)
    g_train = torch.randn(20, 12, generator=gen, dtype=torch.float64)
    shared = torch.randn(12, generator=gen, dtype=torch.float64)  # a direction every query shares
    g_query = torch.randn(4, 12, generator=gen, dtype=torch.float64) + 3 * shared
    train, query = ProjectedFisher(LAYOUT), ProjectedFisher(LAYOUT)
    train.update(g_train)
    query.update(g_query)
    mats = [(1 - alpha) * t + alpha * q for t, q in zip(blocks(g_train), blocks(g_query), strict=True)]
    lambdas = [0.1 * float(torch.linalg.eigvalsh(m).mean()) for m in mats]
    pre = mixed_fisher(train, query, alpha).preconditioner(0.1)
    torch.testing.assert_close(pre(g_query), explicit_preconditioned(g_query, mats, lambdas), rtol=1e-10, atol=1e-12)
    if alpha > 0:  # the shared direction is damped harder than with the train Fisher alone
        plain = train.preconditioner(0.1)
        u = shared[None] / shared.norm()
        assert float((pre(u) * u).sum()) < float((plain(u) * u).sum())


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0])
def test_a_panel_preconditioner_from_a_stored_one_equals_the_explicit_damped_mixture(alpha):
    """What ``value`` does with a query panel: ``H_train`` recovered from the stored
    eigendecomposition (any damping), mixed with the panel's second moment, damped by the mixture's
    mean eigenvalue; the scored queries are not the panel."""
    gen = torch.Generator().manual_seed(1)
    g_train = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    shared = torch.randn(12, generator=gen, dtype=torch.float64)
    panel = torch.randn(6, 12, generator=gen, dtype=torch.float64) + 3 * shared
    q = torch.randn(3, 12, generator=gen, dtype=torch.float64) + 3 * shared
    train = ProjectedFisher(LAYOUT)
    train.update(g_train)
    stored = Preconditioner.from_state_dict(LAYOUT, train.preconditioner(0.3).state_dict()).with_damping_ratio(0.7)
    for (name, _), want in zip(stored.slices, blocks(g_train), strict=True):
        torch.testing.assert_close(stored.matrix(name), want, rtol=1e-10, atol=1e-12)
    mats = [(1 - alpha) * t + alpha * p for t, p in zip(blocks(g_train), blocks(panel), strict=True)]
    lambdas = [0.1 * float(torch.trace(m)) / m.shape[0] for m in mats]
    pre = panel_preconditioner(stored, panel.float(), alpha, 0.1)
    torch.testing.assert_close(pre(q), explicit_preconditioned(q, mats, lambdas), rtol=1e-6, atol=1e-8)
    u = shared[None] / shared.norm()  # the direction the panel shares is damped harder than before
    assert float((pre(u) * u).sum()) < float((train.preconditioner(0.1)(u) * u).sum())
    with pytest.raises(ValueError, match="panel vectors"):
        panel_preconditioner(stored, torch.zeros(0, 12), alpha)
    with pytest.raises(ValueError, match="panel vectors"):
        panel_preconditioner(stored, torch.zeros(2, 11), alpha)


def test_spectral_damping_rules():
    vals = torch.tensor([0.0, 1e-4, 1e-2, 0.5, 1.0, 4.0], dtype=torch.float64)
    assert spectral_damping(vals, "mean_ratio", 0.1) == pytest.approx(0.1 * float(vals.mean()), rel=1e-12)
    assert spectral_damping(vals, "quantile", 0.5) == pytest.approx(float(vals.median() + vals[3]) / 2, rel=1e-12)
    lam = spectral_damping(vals, "effective_rank", 0.4)
    assert float((vals / (vals + lam)).sum()) == pytest.approx(0.4 * len(vals), rel=1e-9)
    with pytest.raises(ValueError, match="damping rule"):
        spectral_damping(vals, "nope", 0.1)


def test_preconditioner_with_a_damping_rule_matches_the_explicit_inverse():
    g = torch.randn(30, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fisher = ProjectedFisher(LAYOUT)
    fisher.update(g)
    mats = blocks(g)
    lambdas = [spectral_damping(torch.linalg.eigvalsh(m), "effective_rank", 0.5) for m in mats]
    want = explicit_preconditioned(g[:3], mats, lambdas)
    torch.testing.assert_close(fisher.preconditioner(0.5, rule="effective_rank")(g[:3]), want, rtol=1e-9, atol=1e-12)
    again = fisher.preconditioner(0.1).with_damping_ratio(0.5, rule="effective_rank")
    torch.testing.assert_close(again(g[:3]), want, rtol=1e-9, atol=1e-12)


def test_lm_loss_shift_is_respected_by_sampling():
    """Position 0 is never a target: its label is kept as given."""
    logits = torch.randn(1, 4, 5, dtype=torch.float64)
    labels = torch.tensor([[7, 1, -100, 2]])
    out = sample_lm_labels(logits, labels, torch.Generator().manual_seed(0))
    assert out[0, 0] == 7 and out[0, 2] == -100
    assert float(lm_loss(logits, out)) > 0


@pytest.mark.parametrize("rank", [6, 4])
def test_unrolled_segment_equals_explicit_gradient_descent_steps(rank):
    """Σ_{t<K} η (I − ηH)^t (K small steps of gradient descent, ηK = T) → (I − e^{−TH}) H⁻¹, also
    on a singular H (there: T in the null space)."""
    torch.manual_seed(0)
    a = torch.randn(6, rank, dtype=torch.float64)
    h = a @ a.T / rank
    layout = [("m", 2, 3)]
    pre = ProjectedFisher.from_matrices(layout, {"m": h}).preconditioner(0.1)
    horizon, steps = 2.0, 40_000
    eta = horizon / steps
    step, power, explicit = torch.eye(6, dtype=torch.float64) - eta * h, torch.eye(6, dtype=torch.float64), 0
    for _ in range(steps):
        explicit = explicit + eta * power
        power = step @ power
    unrolled = unrolled_preconditioner(pre, horizon)
    torch.testing.assert_close(unrolled.inverse("m"), explicit, rtol=2e-3, atol=2e-4)
    q = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(unrolled(q), q @ explicit, rtol=2e-3, atol=2e-4)
    # Long segments resolve every learned direction: the plain inverse there.
    vals = torch.tensor([0.0, 1e-3, 1.0, 50.0], dtype=torch.float64)
    long = unrolled_filter(vals, 1e4)
    assert long[0] == 1e4 and torch.allclose(long[2:], 1 / vals[2:])
    with pytest.raises(ValueError, match="horizon"):
        unrolled_filter(vals, 0.0)


class LogitsModel(nn.Module):
    """Returns fixed logits (a parameter), so a loss's gradient is its gradient in the logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.z = nn.Parameter(logits.clone())

    def forward(self, input_ids=None, attention_mask=None, **_):
        return (self.z,)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0, 7.0])
def test_tempered_losses_have_the_explicit_logit_gradient(temperature):
    """``LMLoss(T)``: ∂/∂z_t = (softmax(z_t/T) − e_{y_{t+1}}) / T at every counted position (the
    shift of ``lm_loss``), 0 elsewhere; ``ClassifierLoss(T)`` the same per row; T = 1 is the default loss."""
    from valuation.loss import ClassifierLoss, LMLoss, default_lm_loss

    torch.manual_seed(0)
    z = torch.randn(2, 5, 11, dtype=torch.float64) * 3
    labels = torch.randint(0, 11, (2, 5))
    labels[1, 3:] = -100
    batch = {"input_ids": labels.clamp(min=0), "labels": labels}
    model = LogitsModel(z)
    LMLoss(temperature)(model, batch).backward()
    want = torch.zeros_like(z)
    for b in range(2):
        for t in range(4):
            y = int(labels[b, t + 1])
            if y != -100:
                want[b, t] = (
                    torch.softmax(z[b, t] / temperature, -1) - nn.functional.one_hot(torch.tensor(y), 11)
                ) / temperature
    torch.testing.assert_close(model.z.grad, want, rtol=1e-12, atol=1e-14)
    if temperature == 1.0:
        assert torch.equal(LMLoss(1.0)(model, batch), default_lm_loss(model, batch))
    clf = nn.Linear(1, 11, bias=False).double()  # logits = W x with x = 1: the logit gradient is W's
    with torch.no_grad():
        clf.weight.copy_(z[0, 0][:, None])
    ClassifierLoss(temperature)(clf, (torch.ones(1, 1, dtype=torch.float64), torch.tensor([4]))).backward()
    want = (torch.softmax(z[0, 0] / temperature, -1) - nn.functional.one_hot(torch.tensor(4), 11)) / temperature
    torch.testing.assert_close(clf.weight.grad[:, 0], want, rtol=1e-12, atol=1e-14)


def test_a_high_temperature_gradient_tends_to_minus_the_centred_logit_gradient():
    """``T · ∂CE(z/T)/∂z → 1/V − e_y`` as ``T → ∞``: the gradient of ``−(z_y − mean z)``, which does
    not vanish on a token the model has memorised (where the T = 1 gradient does)."""
    from valuation.loss import LMLoss

    z = torch.zeros(1, 2, 6, dtype=torch.float64)
    z[0, 0, 2] = 40.0  # memorised: p(token 2) = 1 − 1e-17
    batch = {"input_ids": torch.tensor([[0, 2]]), "labels": torch.tensor([[0, 2]])}
    grads = {}
    for t in (1.0, 1e6):
        model = LogitsModel(z)
        LMLoss(t)(model, batch).backward()
        grads[t] = model.z.grad[0, 0] * t
    assert grads[1.0].abs().max() < 1e-15
    torch.testing.assert_close(
        grads[1e6], torch.full((6,), 1 / 6, dtype=torch.float64) - torch.eye(6)[2].double(), rtol=0, atol=1e-4
    )


def test_tempered_lm_gradients_through_logra_equal_explicit_per_example_gradients(model):
    """GPT-2 (Conv1D) and Llama (Linear, gated MLP): the same explicit reference."""
    from valuation.loss import LMLoss

    batch = padded_batch([8, 5, 3])
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4, seed=2))
    got = logra.gradients(batch, loss_fn=LMLoss(2.5))
    names = [n for n, _, _ in logra.layout]

    def one(m, b, i):
        logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        return lm_loss(logits[i : i + 1] / 2.5, b["labels"][i : i + 1])

    want = projected(
        per_example_weight_grads(model, batch, loss_fn=one), {n: logra.projection(n) for n in names}, names
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    assert (got - logra.gradients(batch)).norm() > 0.05 * got.norm()


def test_sampled_labels_at_a_temperature_are_drawn_from_the_softened_model():
    z = torch.tensor([[3.0, 0.0, -1.0]], dtype=torch.float64)
    clf = nn.Linear(1, 3, bias=False).double()
    with torch.no_grad():
        clf.weight.copy_(z.T)
    draws = 20000
    x = torch.ones(draws, 1, dtype=torch.float64)
    for t in (1.0, 3.0):
        loss = SampledLabelLoss(seed=5, kind="classifier", temperature=t)
        clf.zero_grad()
        loss(clf, (x, None)).backward()
        # Σ_i (p_T − e_{y_i}) / T over the draws: the label frequencies are p_T up to Monte Carlo error.
        freq = torch.softmax(z[0] / t, -1) - clf.weight.grad[:, 0] * t / draws
        torch.testing.assert_close(freq, torch.softmax(z[0] / t, -1), rtol=0, atol=0.015)
    from valuation.errors import ConfigurationError
    from valuation.loss import ClassifierLoss, LMLoss

    for bad in (0, -1.0, float("nan"), float("inf"), "hot", None):
        for cls in (LMLoss, ClassifierLoss, lambda t: SampledLabelLoss(temperature=t)):
            with pytest.raises(ConfigurationError, match="temperature"):
                cls(bad)


def test_log_odds_losses_have_the_explicit_logit_gradient():
    """``LMLogOddsLoss``: ∂/∂z_t = (p_t − e_y) / (1 − p_{t,y}) at every counted position (the shift
    of ``lm_loss``), 0 elsewhere; ``ClassifierLogOddsLoss`` per row; the value is −log(p_y / (1 − p_y))."""
    from valuation.loss import ClassifierLogOddsLoss, LMLogOddsLoss

    torch.manual_seed(1)
    z = torch.randn(2, 5, 11, dtype=torch.float64) * 3
    labels = torch.randint(0, 11, (2, 5))
    labels[1, 3:] = -100
    batch = {"input_ids": labels.clamp(min=0), "labels": labels}
    model = LogitsModel(z)
    value = LMLogOddsLoss()(model, batch)
    value.backward()
    want, want_value = torch.zeros_like(z), torch.zeros((), dtype=torch.float64)
    for b in range(2):
        for t in range(4):
            y = int(labels[b, t + 1])
            if y != -100:
                p = torch.softmax(z[b, t], -1)
                want[b, t] = (p - nn.functional.one_hot(torch.tensor(y), 11)) / (1 - p[y])
                want_value -= torch.log(p[y] / (1 - p[y]))
    torch.testing.assert_close(model.z.grad, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(value, want_value, rtol=1e-12, atol=1e-12)
    clf = nn.Linear(1, 11, bias=False).double()
    with torch.no_grad():
        clf.weight.copy_(z[0, 0][:, None])
    ClassifierLogOddsLoss()(clf, (torch.ones(1, 1, dtype=torch.float64), torch.tensor([4]))).backward()
    p = torch.softmax(z[0, 0], -1)
    want = (p - nn.functional.one_hot(torch.tensor(4), 11)) / (1 - p[4])
    torch.testing.assert_close(clf.weight.grad[:, 0], want, rtol=1e-12, atol=1e-14)


def test_a_memorised_token_keeps_a_log_odds_gradient_and_an_unsure_one_keeps_its_cross_entropy_gradient():
    from valuation.loss import LMLogOddsLoss, LMLoss

    z = torch.zeros(1, 3, 6, dtype=torch.float64)
    z[0, 0, 2] = 30.0  # memorised: p(token 2) = 1 − 5e-13
    z[0, 1] = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.2, -0.1], dtype=torch.float64)  # unsure about token 4
    batch = {"input_ids": torch.tensor([[0, 2, 4]]), "labels": torch.tensor([[0, 2, 4]])}
    grads = {}
    for name, loss in (("ce", LMLoss()), ("log_odds", LMLogOddsLoss())):
        model = LogitsModel(z)
        loss(model, batch).backward()
        grads[name] = model.z.grad[0]
    assert grads["ce"][0].norm() < 1e-11 and grads["log_odds"][0].norm() > 1.0
    # the memorised token's log-odds gradient: −e_y + the other tokens' renormalised probabilities
    others = torch.full((6,), 1 / 5, dtype=torch.float64)
    others[2] = -1.0
    torch.testing.assert_close(grads["log_odds"][0], others, rtol=0, atol=1e-10)
    p4 = float(torch.softmax(z[0, 1], -1)[4])
    torch.testing.assert_close(grads["log_odds"][1], grads["ce"][1] / (1 - p4), rtol=1e-12, atol=0)


def test_log_odds_lm_gradients_through_logra_equal_explicit_per_example_gradients(model):
    """GPT-2 (Conv1D) and Llama (Linear, gated MLP): the same explicit reference as the temperature's."""
    from valuation.loss import LMLogOddsLoss, log_odds_loss

    batch = padded_batch([8, 5, 3])
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4, seed=2))
    got = logra.gradients(batch, loss_fn=LMLogOddsLoss())
    names = [n for n, _, _ in logra.layout]

    def one(m, b, i):
        logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[i : i + 1, :-1]
        return log_odds_loss(logits.reshape(-1, logits.shape[-1]), b["labels"][i : i + 1, 1:].reshape(-1))

    want = projected(
        per_example_weight_grads(model, batch, loss_fn=one), {n: logra.projection(n) for n in names}, names
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # an untrained model is unsure of every token (p_y ≈ 1/V): close to, not equal to, the cross-entropy's
    assert 1e-3 * got.norm() < (got - logra.gradients(batch)).norm() < 0.2 * got.norm()
