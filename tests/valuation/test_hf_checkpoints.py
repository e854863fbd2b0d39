"""The demo recipe saves Hugging Face-style checkpoints: optimizer.pt and trainer_state.json
are read back by the optimizer lever and the trajectory weights."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from transformers import GPT2LMHeadModel

from flows.demo.model import TrainArguments, train_demo_model
from valuation import LoGra, LoGraConfig
from valuation.combine import checkpoint_weights
from valuation.optimizer import load_hf_optimizer_state


def test_saved_optimizer_state_and_learning_rates_round_trip(tmp_path):
    texts = [f"document {i} says the lamp is {c}." for i, c in enumerate(["red", "blue", "green", "gold"] * 3)]
    recipe = TrainArguments(vocab_size=300, n_layer=1, n_embd=16, n_head=2, max_length=32, epochs=3, batch_size=4)
    paths = train_demo_model(texts, tmp_path, recipe)
    assert torch.optim.AdamW.__name__ == "AdamW"  # nothing patched
    assert len(paths) == 3 and all((p / "optimizer.pt").exists() for p in paths)
    model = GPT2LMHeadModel.from_pretrained(paths[-1])
    moments = load_hf_optimizer_state(model, paths[-1])
    assert set(moments) == {n for n, _ in model.named_parameters()}
    state = torch.load(paths[-1] / "optimizer.pt", weights_only=True)
    steps = int(state["state"][0]["step"])
    first = next(iter(model.named_parameters()))[0]
    torch.testing.assert_close(moments[first], state["state"][0]["exp_avg_sq"].double() / (1 - 0.999**steps))
    logra = LoGra(model, LoGraConfig(k_in=4, k_out=4, optimizer_scaling=True)).set_optimizer_state(moments)
    assert logra.optimizer_scales("transformer.h.0.mlp.c_fc") is not None
    log = json.loads((paths[-1] / "trainer_state.json").read_text())["log_history"]
    assert len(log) == steps == 9
    ck_steps = [int(p.name.split("-")[1]) for p in paths]
    lrs = [e["learning_rate"] for e in log]
    want = [sum(lrs[a:b]) for a, b in zip([0, *ck_steps], ck_steps, strict=False)]
    assert checkpoint_weights(paths[-1] / "trainer_state.json", ck_steps) == pytest.approx(
        [w / sum(want) for w in want], rel=1e-12
    )


def test_the_training_state_can_be_left_out(tmp_path):
    texts = [f"document {i} says the lamp is {c}." for i, c in enumerate(["red", "blue"] * 3)]
    recipe = TrainArguments(vocab_size=300, n_layer=1, n_embd=16, n_head=2, max_length=32, epochs=1, batch_size=4)
    [path] = train_demo_model(texts, tmp_path, replace(recipe, checkpoints=1, save_training_state=False))
    assert not (path / "optimizer.pt").exists() and not (path / "trainer_state.json").exists()
