"""The application object: one per home per process, owning the stores, the ledger engine and the
model cache, so a stage never reopens what another stage of the same process already opened."""

from __future__ import annotations

import subprocess
import threading
from functools import cached_property
from pathlib import Path

from flows.config import Settings
from flows.errors import ServiceUnavailableError, UnknownCheckpointError

_APPS: dict[tuple, App] = {}
_APPS_LOCK = threading.Lock()
# Ledger URLs known to this process, by home: a flow run in this process gets its settings without
# credentials and finds the URL here (other processes: environment, dataworth.toml, Secret block).
_LEDGER_URLS: dict[str, str] = {}


class App:
    """Stores, ledger and models of one home. Build with :meth:`of` (cached per settings)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # A cached model is shared: its hooks must never be installed by two threads at once.
        self.model_lock = threading.RLock()
        self._models: dict[tuple[str, str], tuple] = {}

    @classmethod
    def of(cls, settings: Settings) -> App:
        key = (settings, settings.ledger_url())
        with _APPS_LOCK:
            app = _APPS.get(key)
            if app is None:
                app = _APPS[key] = cls(settings)
            if settings.db_url:
                _LEDGER_URLS[str(settings.home)] = settings.db_url
        return app

    @staticmethod
    def resolve_params(params: dict) -> Settings:
        """Settings of a flow run's parameters, the ledger URL resolved here (never carried in them)."""
        settings = Settings.from_dict(params)
        if settings.db_url is None:
            url = _LEDGER_URLS.get(str(settings.home))
            if url is None:
                from flows.config import load_settings

                url = load_settings(home=str(settings.home)).db_url
            if url:
                settings = settings.replace(db_url=url)
        return settings

    # stores
    @cached_property
    def corpus(self):
        from storage import CorpusStore

        return CorpusStore(f"{self.settings.lance}/corpus")

    @cached_property
    def gradients(self):
        from storage import GradientStore

        return GradientStore(f"{self.settings.lance}/gradients")

    @cached_property
    def queries(self):
        from storage import QueryStore

        return QueryStore(f"{self.settings.lance}/queries")

    def pending_query_count(self) -> int:
        """Pending queries, counted without opening the query store through LanceDB (fast start-up)."""
        from storage.peek import pending_query_count

        return pending_query_count(f"{self.settings.lance}/queries")

    @cached_property
    def artifacts(self):
        from storage import ArtifactStore

        return ArtifactStore(self.settings.artifacts)

    @cached_property
    def ledger(self):
        """The SQLAlchemy engine of the ledger (upgraded to the head revision on first use)."""
        from sqlalchemy.exc import OperationalError

        from ledger import open_ledger

        try:
            return open_ledger(self.settings.ledger_url())
        except OperationalError as exc:
            raise ServiceUnavailableError(f"cannot reach the ledger database: {exc.orig}".strip()) from exc

    # models
    def model(self, model_dir: str | Path):
        """``(model, tokenizer)`` on the default device, loaded once per process."""
        from valuation import default_device

        key = (str(Path(model_dir).resolve()), str(default_device()))
        with self.model_lock:
            if key not in self._models:
                from flows.checkpoint.loading import load_model_dir

                self._models[key] = load_model_dir(key[0], key[1])
            return self._models[key]

    # checkpoints in the ledger
    def checkpoint(self, checkpoint_id: str):
        """The ledger row of a checkpoint, by id or unique prefix."""
        from sqlmodel import Session, select

        from ledger import Checkpoint

        with Session(self.ledger) as session:
            row = session.get(Checkpoint, checkpoint_id)
            if row is None and checkpoint_id:
                rows = session.exec(select(Checkpoint).where(Checkpoint.checkpoint_id.startswith(checkpoint_id))).all()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise UnknownCheckpointError(
                f"unknown checkpoint {checkpoint_id[:16]}: run `dataworth checkpoint add DIR` first"
            )
        return row

    def checkpoints(self) -> list:
        from sqlmodel import Session, select

        from ledger import Checkpoint

        with Session(self.ledger) as session:
            return list(session.exec(select(Checkpoint).order_by(Checkpoint.lineage, Checkpoint.step)).all())

    @cached_property
    def code_version(self) -> str:
        try:
            out = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            )
            return out.stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            return "unknown"
