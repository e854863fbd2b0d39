"""The peer LogIX on the benchmark model; runs in LogIX's own environment (not ours).

    /path/to/logix-venv/bin/python benchmarks/logix_peer.py --ks 16 64

LogIX watches nn.Linear only, so GPT-2's Conv1D layers are swapped for equivalent nn.Linear.
Measures LogIX's LoGra logging (its LoRA-style random projection, gradient log + covariance
statistic, nothing written to disk) and a plain forward+backward in the same process. Prints
one JSON line of tokens/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D


def model_with_linears(vocab=8192, seq=128):
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=seq,
        n_embd=256,
        n_layer=4,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(cfg).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                linear = nn.Linear(n_in, n_out)
                linear.weight.data.copy_(child.weight.data.T)
                linear.bias.data.copy_(child.bias.data)
                setattr(parent, name, linear)
    return model


def loss_of(model, ids):
    logits = model(input_ids=ids).logits
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import logix
    from logix.config import LoRAConfig

    ids = torch.randint(0, 8192, (8, 128), generator=torch.Generator().manual_seed(0))
    tokens = ids.numel()
    fns = {}
    plain_model = model_with_linears()

    def plain():
        loss_of(plain_model, ids).backward()
        plain_model.zero_grad(set_to_none=True)

    fns["LogIX: its plain forward+backward"] = plain
    for k in args.ks:
        model = model_with_linears()
        run = logix.LogIX(project=f"bench_k{k}", config=None)
        run.log_dir = tempfile.mkdtemp()
        run.watch(model, name_filter=["attn", "mlp"])
        run.add_lora(lora_config=LoRAConfig(init="random", rank=k))
        run.setup({"grad": ["log", "covariance"]})
        run.save(False)

        def step(run=run, model=model, k=k):
            with run(data_id=[f"{k}-{i}" for i in range(ids.shape[0])]):
                model.zero_grad(set_to_none=True)
                loss_of(model, ids).backward()

        fns[f"LogIX LoGra random k={k}"] = step
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(args.rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(args.iters):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / args.iters)
    print(json.dumps({name: tokens / s for name, s in best.items()}))


if __name__ == "__main__":
    main()
