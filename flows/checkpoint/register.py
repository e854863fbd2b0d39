"""Register a checkpoint: checked first, registered only when every check passed."""

from __future__ import annotations

from pathlib import Path

from flows.app import App
from flows.checkpoint.loading import check_model_dir, training_state
from flows.errors import CheckpointRejectedError, NotReadyError

SAMPLE_DOCUMENTS = 32
# The training state a checkpoint carries is recorded once, keyed by the checkpoint alone.
REGISTERED, TRAINING_STATE = "registered", "training-state"


def register(
    app: App,
    model_dir: str | Path,
    lineage: str = "default",
    step: int | None = None,
    corpus_version: int | None = None,
):
    """Validate the directory (weights, tokenizer, vocabulary vs corpus), pin the corpus version it
    was trained on (default: the latest), record the training state it carries (``optimizer.pt``,
    ``trainer_state.json``: :func:`recorded_training_state`), then register it.

    Returns the ledger's :class:`ledger.Checkpoint` row. A failed check raises
    :class:`CheckpointRejectedError` and leaves nothing behind.
    """
    from ledger import register_checkpoint
    from storage import ArtifactError, checkpoint_fingerprint

    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise CheckpointRejectedError(f"{model_dir}: not a directory")
    try:
        fingerprint = checkpoint_fingerprint(model_dir)
    except ArtifactError as exc:
        raise CheckpointRejectedError(str(exc)) from exc
    model, tokenizer = app.model(model_dir)
    check_model_dir(model_dir, model, tokenizer, app.corpus.sample_texts(SAMPLE_DOCUMENTS))
    if app.corpus.version() == 0:
        raise NotReadyError("the corpus is empty: ingest the documents this checkpoint was trained on first")
    app.corpus.pin(fingerprint, corpus_version)
    if not app.artifacts.exists(fingerprint, REGISTERED, TRAINING_STATE):  # the first registration wins
        state = training_state(model_dir, model, app.settings.include)
        app.artifacts.save(fingerprint, REGISTERED, TRAINING_STATE, {}, extra=state)
    return register_checkpoint(app.ledger, fingerprint, str(model_dir), lineage, step)


def recorded_training_state(app: App, checkpoint_id: str, model_dir: str | Path) -> dict:
    """What ``checkpoint add`` recorded of the checkpoint's training state (for a checkpoint added
    before it was recorded: read from its directory now)."""
    if app.artifacts.exists(checkpoint_id, REGISTERED, TRAINING_STATE):
        return app.artifacts.manifest(checkpoint_id, REGISTERED, TRAINING_STATE)["extra"]
    model, _ = app.model(model_dir)
    return training_state(Path(model_dir), model, app.settings.include)
