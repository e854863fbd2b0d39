"""Loading a model directory, and the checks a checkpoint passes before it is registered."""

from __future__ import annotations

from pathlib import Path

from flows.errors import CheckpointRejectedError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")


def load_model_dir(model_dir: str, device: str):
    """``(model in eval mode on device, tokenizer with a pad token)``; :class:`CheckpointRejectedError`
    naming the directory when either does not load."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded from a model hub
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors...
        raise CheckpointRejectedError(f"{model_dir}: the weights do not load ({type(exc).__name__}: {exc})") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:
        raise CheckpointRejectedError(
            f"{model_dir}: the tokenizer does not load ({type(exc).__name__}: {exc})"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def check_model_dir(model_dir: Path, model, tokenizer, sample_texts: list[str]) -> None:
    """Everything ``checkpoint add`` verifies before it registers anything.

    Safetensors weights (a pickle can run code), finite weights, a real tokenizer (its files are in
    the directory, and sample corpus text survives an encode/decode round trip), and an embedding
    matrix that covers every id the tokenizer can produce.
    """
    names = {p.name for p in model_dir.iterdir()}
    if not names & set(WEIGHT_FILES):
        pickled = " (pickled weights are refused: they can run code; save with safe_serialization=True)"
        raise CheckpointRejectedError(f"{model_dir}: no model.safetensors{pickled if names & set(PICKLED) else ''}")
    if not names & set(TOKENIZER_FILES):
        raise CheckpointRejectedError(
            f"{model_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the tokenizer beside the model"
        )
    for name, p in model.named_parameters():
        if not bool(p.detach().isfinite().all()):
            raise CheckpointRejectedError(f"{model_dir}: weight {name} has NaN or infinite values")
    vocab = len(tokenizer)
    if vocab < 2:
        raise CheckpointRejectedError(f"{model_dir}: the tokenizer has {vocab} token(s): not a real tokenizer")
    n_embed = model.get_input_embeddings().weight.shape[0]
    if n_embed < vocab:
        raise CheckpointRejectedError(
            f"{model_dir}: the embedding has {n_embed} rows but the tokenizer has {vocab} tokens"
        )
    for text in sample_texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids and max(ids) >= n_embed:
            raise CheckpointRejectedError(f"{model_dir}: token id {max(ids)} is outside the embedding ({n_embed} rows)")
        back = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        if _squash(back) != _squash(text):
            raise CheckpointRejectedError(
                f"{model_dir}: the tokenizer does not cover the corpus text (round trip of {text[:40]!r} "
                f"gave {back[:40]!r})"
            )


def _squash(text: str) -> str:
    # Tokenizers may normalise whitespace; a lost character is what matters.
    return "".join(text.split())


def training_state(model_dir: Path, model, include: tuple[str, ...] = ("@blocks",)) -> dict:
    """What a checkpoint carries beside its weights, as Hugging Face Trainer saves it.

    ``optimizer_state``: ``optimizer.pt`` loads (``weights_only=True``) with Adam's second moment
    for the weight of every module ``include`` watches; ``trainer_state``: ``trainer_state.json``
    has learning rates, with ``global_step`` and ``lr_mass`` (the learning rate summed over steps
    ``1..global_step``, from which a checkpoint set's weights follow). A file that is present but
    unusable is recorded as absent with the reason in ``notes`` (the checkpoint is not refused).
    """
    import json

    from valuation import find_watched_modules
    from valuation.combine import TrainerStateError, checkpoint_weights
    from valuation.optimizer import load_hf_optimizer_state

    out: dict = {"optimizer_state": False, "trainer_state": False, "global_step": None, "lr_mass": None, "notes": []}
    if (model_dir / "optimizer.pt").exists():
        try:
            moments = load_hf_optimizer_state(model, model_dir)
            missing = [m.name for m in find_watched_modules(model, include) if f"{m.name}.weight" not in moments]
            if missing:
                why = f"optimizer.pt has no Adam state for {len(missing)} watched weight(s): {missing[:3]}"
                out["notes"].append(why)
            out["optimizer_state"] = bool(moments) and not missing
        except Exception as exc:  # torch.load: UnpicklingError, RuntimeError, EOFError...; OptimizerStateError
            out["notes"].append(f"optimizer.pt not usable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    path = model_dir / "trainer_state.json"
    if path.exists():
        try:
            blob = json.loads(path.read_text())
            log = blob["log_history"]
            steps = [int(e["step"]) for e in log if "learning_rate" in e]
            step = int(blob.get("global_step") or max(steps, default=0))
            out["lr_mass"] = checkpoint_weights(log, [step], normalise=False)[0]
            out["trainer_state"], out["global_step"] = True, step
        except (OSError, KeyError, TypeError, ValueError, TrainerStateError) as exc:
            out["notes"].append(f"trainer_state.json not usable: {type(exc).__name__}: {exc}")
    return out
