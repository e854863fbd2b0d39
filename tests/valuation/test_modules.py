"""The default watches every linear layer of every block, on every HF causal-LM family."""

from __future__ import annotations

import pytest
import transformers as tf
from torch import nn

from valuation import BLOCKS, coverage, find_watched_modules

FAMILIES = {
    # family: (config, linear layers per block)
    "gpt2": (lambda: tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64), 4),
    "gpt_neox": (
        lambda: tf.GPTNeoXConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=64
        ),
        4,
    ),
    "llama": (
        lambda: tf.LlamaConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=64
        ),
        7,
    ),
    "opt": (
        lambda: tf.OPTConfig(
            num_hidden_layers=2,
            hidden_size=16,
            num_attention_heads=2,
            ffn_dim=32,
            vocab_size=64,
            word_embed_proj_dim=8,
        ),
        6,
    ),
    "falcon": (lambda: tf.FalconConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, vocab_size=64), 4),
    "phi": (
        lambda: tf.PhiConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=64
        ),
        6,
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_watches_every_block_linear_layer_and_nothing_else(family):
    make_config, per_block = FAMILIES[family]
    model = tf.AutoModelForCausalLM.from_config(make_config())
    watched = find_watched_modules(model, (BLOCKS,))
    cov = coverage(model, watched)
    assert (cov.watched, cov.total, cov.blocks) == (2 * per_block, 2 * per_block, 2)
    assert cov.unwatched == ()
    names = {w.name for w in watched}
    in_blocks = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | tf.pytorch_utils.Conv1D) and n]
    # everything outside the blocks (LM head, OPT's embedding projections) stays unwatched
    assert names == {n for n in in_blocks if "lm_head" not in n and "project_" not in n}


@pytest.mark.parametrize(("family", "missed"), [("gpt_neox", 2), ("opt", 2), ("falcon", 2)])
def test_substring_selection_reports_what_it_leaves_out(family, missed):
    model = tf.AutoModelForCausalLM.from_config(FAMILIES[family][0]())
    cov = coverage(model, find_watched_modules(model, ("attn", "mlp")))
    assert len(cov.unwatched) == missed and cov.watched < cov.total
