"""Shared helpers of the benchmarks: the benchmark model, timing under a noisy machine, tables."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

console = Console()


def bench_gpt2(n_layer: int = 4, n_embd: int = 256, n_head: int = 4, vocab: int = 8192, seq: int = 128):
    """The benchmark model of the valuation issue: GPT-2, 4 layers, width 256, vocab 8192."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=seq,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(cfg).eval()


def lm_batch(batch: int, seq: int, vocab: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def best_seconds(fns: dict[str, Callable[[], object]], iters: int, rounds: int, warmup: int = 1) -> dict[str, float]:
    """Best seconds per call of each fn; methods are interleaved round by round so that a busy
    neighbour on a shared machine slows them all alike, and the best round is kept."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / iters)
    return best


def table(title: str, columns: list[str], rows: list[list]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c != columns[0] else "left")
    for r in rows:
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in r])
    console.print(t)
