"""The demo model recipe: a tokenizer trained on the corpus and a small GPT-2 trained on CPU.

Checkpoints of one lineage are saved along the way as Hugging Face model directories (weights,
config and tokenizer), so `dataworth checkpoint add DIR` takes them as they are. Like Hugging Face
Trainer, each also carries the training state: ``optimizer.pt`` (the AdamW ``state_dict``, with
the parameter names recorded; loadable with ``weights_only=True``) and ``trainer_state.json``
(``global_step`` and a ``log_history`` with the learning rate and loss of every step), which the
platform reads for optimizer-scaled gradients and learning-rate checkpoint weights.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from valuation import lm_loss, pad_batch


@dataclass(frozen=True)
class TrainArguments:
    vocab_size: int = 1024
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    max_length: int = 96
    batch_size: int = 16
    epochs: int = 24
    lr: float = 3e-3
    checkpoints: int = 3  # saved at evenly spaced steps, the last at the end
    seed: int = 0
    save_training_state: bool = True  # optimizer.pt and trainer_state.json beside the weights


def save_training_state(path: Path, model, optimizer: torch.optim.Optimizer, log_history: list[dict]) -> None:
    """Hugging Face Trainer's two files in checkpoint ``path``: ``optimizer.pt`` (with each group's
    ``param_names``, so a reader maps state to parameters without guessing the order) and
    ``trainer_state.json`` (``global_step``, ``log_history``)."""
    state = optimizer.state_dict()
    names = [n for n, _ in model.named_parameters()]
    for group in state["param_groups"]:
        group["param_names"] = [names[i] for i in group["params"]]
    torch.save(state, Path(path) / "optimizer.pt")
    blob = {"global_step": len(log_history), "log_history": list(log_history)}
    (Path(path) / "trainer_state.json").write_text(json.dumps(blob))


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        show_progress=False,
        vocab_size=vocab_size,
        special_tokens=["<|pad|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|endoftext|>")


def init_model(args: TrainArguments, tokenizer) -> GPT2LMHeadModel:
    """The recipe's GPT-2 (no dropout) at initialisation, drawn from torch's current random state."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.max_length,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def train_demo_model(
    texts: list[str],
    out_dir: Path,
    args: TrainArguments | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    train_on: list[str] | None = None,
) -> list[Path]:
    """Train, saving ``args.checkpoints`` checkpoint directories ``out_dir/step-XXXXX``.

    ``texts`` train the tokenizer; ``train_on`` (default ``texts``) trains the model.
    """
    args = args or TrainArguments()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tokenizer = train_tokenizer(texts, args.vocab_size)
    model = init_model(args, tokenizer)
    sequences = [
        ids[i : i + args.max_length]
        for ids in tokenizer(train_on or texts, add_special_tokens=False)["input_ids"]
        for i in range(0, len(ids), args.max_length)
    ]
    steps_per_epoch = math.ceil(len(sequences) / args.batch_size)
    total = steps_per_epoch * args.epochs
    save_at = {round(total * (i + 1) / args.checkpoints) for i in range(args.checkpoints)}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1)
    saved, step, log_history = [], 0, []
    model.train()
    for _ in range(args.epochs):
        order = list(range(len(sequences)))
        rng.shuffle(order)
        for start in range(0, len(order), args.batch_size):
            batch = pad_batch([sequences[i] for i in order[start : start + args.batch_size]], tokenizer.pad_token_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            n_tokens = (batch["labels"][:, 1:] != -100).sum()
            loss = lm_loss(logits, batch["labels"]) / n_tokens
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            log_history.append({"step": step, "learning_rate": opt.param_groups[0]["lr"], "loss": loss.item()})
            sched.step()
            if progress is not None:
                progress(step, total, loss.item())
            if step in save_at:
                path = Path(out_dir) / f"step-{step:05d}"
                model.save_pretrained(path)
                tokenizer.save_pretrained(path)
                if args.save_training_state:
                    save_training_state(path, model, opt, log_history)
                saved.append(path)
    model.eval()
    return saved
