"""What every stage of one checkpoint needs: its ledger row, pinned corpus version, tokenizer key,
and the key of its stored outputs (gradient table and artifacts)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property

from flows.app import App
from flows.config import OMITTED_KEYS
from flows.errors import ConfigurationError, NotReadyError

EXAMPLE_COLUMNS = ["example_id", "doc_id", "provider_id", "provider_code", "input_ids"]
SORT_WINDOW = 64  # batches per length-sorted window: little padding, bounded memory


@dataclass
class CheckpointContext:
    """One checkpoint under the app's settings. ``config`` is everything its stored vectors depend
    on (LoGra settings, max_length, dtype, fit sample, corpus version, tokenizer); ``key`` hashes
    it: another value of any of them is another table and other artifacts."""

    app: App
    checkpoint_id: str

    @cached_property
    def row(self):
        return self.app.checkpoint(self.checkpoint_id)

    @property
    def model_dir(self) -> str:
        return self.row.path

    @cached_property
    def corpus_version(self) -> int:
        version = self.app.corpus.pinned_version(self.row.checkpoint_id)
        if version is None:
            raise NotReadyError(f"checkpoint {self.checkpoint_id[:16]} has no pinned corpus version: add it again")
        return version

    @cached_property
    def tokenizer_key(self) -> str:
        from storage import tokenizer_fingerprint

        return f"{tokenizer_fingerprint(self.model_dir)}-L{self.app.settings.max_length}"

    @cached_property
    def training_state(self) -> dict:
        """What the checkpoint carries (recorded at registration): ``optimizer_state``,
        ``trainer_state``, ``global_step``, ``lr_mass``, ``notes``."""
        from flows.checkpoint.register import recorded_training_state

        return recorded_training_state(self.app, self.row.checkpoint_id, self.model_dir)

    @cached_property
    def optimizer_scaling(self) -> bool:
        """Whether this checkpoint's gradients are scaled by its Adam state (setting ``optimizer_scaling``)."""
        setting, has = self.app.settings.optimizer_scaling, self.training_state["optimizer_state"]
        if setting == "on" and not has:
            why = "; ".join(self.training_state.get("notes", [])) or "no optimizer.pt in its directory"
            raise ConfigurationError(
                f"checkpoint {self.checkpoint_id[:16]}: optimizer_scaling = 'on' needs Adam's state ({why}); "
                "set optimizer_scaling = 'auto' or 'off'"
            )
        return setting == "on" or (setting == "auto" and has)

    def logra_config(self):
        """The settings' LoGra configuration with this checkpoint's optimizer scaling."""
        return replace(self.app.settings.logra_config(), optimizer_scaling=self.optimizer_scaling)

    @cached_property
    def config(self) -> dict:
        # optimizer_scaling enters only when on (LoGraConfig.to_dict): earlier keys still match
        return (
            self.app.settings.valuation_config()
            | self.logra_config().to_dict()
            | {
                "corpus_version": self.corpus_version,
                "tokenizer": self.tokenizer_key,
            }
        )

    @cached_property
    def key(self) -> str:
        blob = json.dumps(self.config, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # model and examples
    def model(self):
        return self.app.model(self.model_dir)

    def ensure_examples(self, progress=None) -> int:
        _, tokenizer = self.model()
        s = self.app.settings
        return self.app.corpus.ensure_examples(
            self.tokenizer_key, tokenizer, s.max_length, self.corpus_version, progress
        )

    def num_examples(self) -> int:
        return self.app.corpus.num_examples(self.tokenizer_key, self.corpus_version)

    def batches(self, shard: int | None = None, limit: int | None = None) -> Iterator[tuple[dict, list[dict]]]:
        """``(LM batch, row metadata)`` over the pinned version's examples (optionally one shard, or
        the first ``limit`` in stored order).

        Batches are cut from windows of :data:`SORT_WINDOW` batches sorted by length: right-padding
        to a batch's longest example otherwise spends ~30% of the compute on padding (demo corpus,
        29-90 tokens); a per-example gradient does not depend on its batch-mates.
        """
        from valuation import pad_batch

        s = self.app.settings
        _, tokenizer = self.model()
        for window in self._windows(shard, limit, s.batch_size * SORT_WINDOW):
            window.sort(key=lambda r: len(r["input_ids"]))
            for start in range(0, len(window), s.batch_size):
                rows = window[start : start + s.batch_size]
                yield pad_batch([r["input_ids"] for r in rows], tokenizer.pad_token_id), rows

    def _windows(self, shard: int | None, limit: int | None, size: int) -> Iterator[list[dict]]:
        num_shards = self.app.settings.num_shards if shard is not None else None
        seen, window = 0, []
        for rb in self.app.corpus.iter_examples(
            self.tokenizer_key, self.corpus_version, shard, num_shards, batch_size=size, columns=EXAMPLE_COLUMNS
        ):
            rows = rb.to_pylist()
            if limit is not None:
                rows = rows[: max(0, limit - seen)]
            seen += len(rows)
            window.extend(rows)
            if len(window) >= size:
                yield window[:size]
                window = window[size:]
            if limit is not None and seen >= limit:
                break
        if window:
            yield window

    # stored outputs
    def table(self, layout=None):
        """The gradient table (created when ``layout`` is given); refuses another ``num_shards``."""
        s = self.app.settings
        try:
            table = self.app.gradients.table(
                self.row.checkpoint_id, self.key, layout, s.dtype, self.config | {"num_shards": s.num_shards}
            )
        except KeyError as exc:
            raise NotReadyError(self.not_logged_why()) from exc
        logged_with = table.config.get("num_shards", s.num_shards)
        if logged_with != s.num_shards:
            raise ConfigurationError(
                f"checkpoint {self.checkpoint_id[:16]}: its gradient table was logged with num_shards = "
                f"{logged_with}; this run asks for num_shards = {s.num_shards} (set it back to {logged_with})"
            )
        return table

    def not_logged_why(self) -> str:
        """No table under these settings: name the settings its other tables were logged with."""
        ck = self.checkpoint_id[:16]
        # compared as stored (JSON: tuples come back as lists)
        want = json.loads(json.dumps(self.config | {"num_shards": self.app.settings.num_shards}, default=list))
        others = self.app.gradients.tables_of(self.row.checkpoint_id)
        if not others:
            return f"checkpoint {ck}: no gradients logged yet"
        diffs = []
        for t in others:
            keys = sorted(set(want) | set(t.config))
            old = t.config
            # an absent key stands for its value from before the setting existed, not None
            was = {k: old.get(k, OMITTED_KEYS.get(k)) for k in keys}
            now = {k: want.get(k, OMITTED_KEYS.get(k)) for k in keys}
            changed = [f"{k} = {was[k]!r} (now {now[k]!r})" for k in keys if was[k] != now[k]]
            diffs.append(", ".join(changed) or "the same settings (an unfinished log)")
        return (
            f"checkpoint {ck}: no gradients logged with the current settings; it was logged with "
            f"{'; or '.join(diffs)}. Set them back in dataworth.toml, or run `dataworth checkpoint add "
            f"{self.model_dir}` to log it again with the current settings"
        )

    def has_table(self) -> bool:
        try:
            self.table()
        except NotReadyError:
            return False
        return True

    def save(self, name: str, tensors: dict, extra: dict | None = None) -> str:
        return self.app.artifacts.save(self.row.checkpoint_id, self.key, name, tensors, self.config, extra)

    def load(self, name: str):
        return self.app.artifacts.load(self.row.checkpoint_id, self.key, name)

    def manifest(self, name: str) -> dict:
        """An artifact's manifest (what made it, ``extra``), without reading its tensors."""
        return self.app.artifacts.manifest(self.row.checkpoint_id, self.key, name)

    def exists(self, name: str) -> bool:
        return self.app.artifacts.exists(self.row.checkpoint_id, self.key, name)

    def digest(self, name: str) -> str:
        return self.app.artifacts.digest(self.row.checkpoint_id, self.key, name)

    @property
    def finalized(self) -> bool:
        return self.exists("preconditioner")
