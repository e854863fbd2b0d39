"""The application's named failures. Every expected failure is a :class:`DataworthError`
(storage, ledger and valuation define their own subclasses); the CLI prints those in one line
and exits 2. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

from valuation.errors import ConfigurationError, DataworthError

__all__ = [
    "CheckpointRejectedError",
    "ConfigurationError",
    "DataworthError",
    "HomeNotInitialisedError",
    "NotReadyError",
    "ServiceUnavailableError",
    "UnknownCheckpointError",
]


class HomeNotInitialisedError(DataworthError):
    """A command that needs a home ran before ``dataworth init``."""


class UnknownCheckpointError(DataworthError):
    """No registered checkpoint has that id (or prefix)."""


class CheckpointRejectedError(DataworthError):
    """A model directory failed the checks before registration (weights, tokenizer, vocabulary)."""


class NotReadyError(DataworthError):
    """A stage's inputs are not there yet (empty corpus, shards not logged, nothing finalized)."""


class ServiceUnavailableError(DataworthError):
    """The ledger database or the Prefect API cannot be reached."""
