"""Progress of long work, shown to a person (rich, on a terminal) and to Prefect's run logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("dataworth")


@dataclass
class Progress:
    """Counts ``advance(n)`` calls of one task; reports through ``sink`` (the CLI's rich bar)
    and, every ``log_every`` seconds and at the end, a line to the ``dataworth`` logger (which
    reaches the Prefect run's logs when a flow runs)."""

    label: str
    total: int | None = None
    unit: str = "examples"
    sink: Callable[[str, int, int | None], None] | None = None
    log_every: float = 10.0
    done: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    _last_log: float = 0.0
    _logger: logging.Logger | logging.LoggerAdapter | None = None

    def __post_init__(self) -> None:
        self._logger = run_logger()
        if self.sink is not None:  # the bar (and its clock) starts with the task, not at its first step
            self.sink(self.label, 0, self.total)

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        self.done += n
        self.tokens += tokens
        if self.sink is not None:
            self.sink(self.label, self.done, self.total)
        now = time.perf_counter()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            self._logger.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        rate = f", {self.tokens / elapsed:,.0f} tokens/s" if self.tokens else ""
        return f"{self.label}: {self.done}{total} {self.unit} in {elapsed:.1f} s{rate}"

    def finish(self) -> None:
        if self.sink is not None:
            self.sink(self.label, self.done, self.done if self.total is None else self.total)
        self._logger.info("%s (done)", self.line())


def run_logger():
    """The Prefect run's logger inside a flow or task run (its lines reach the run's logs), else ``dataworth``."""
    if "prefect" in sys.modules:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    return log


@dataclass
class Reporter:
    """Makes :class:`Progress` objects for the stages; the CLI gives it a rich sink."""

    sink: Callable[[str, int, int | None], None] | None = None

    def task(self, label: str, total: int | None = None, unit: str = "examples") -> Progress:
        return Progress(label, total, unit, self.sink)


NULL = Reporter()


# The CLI installs its rich sink here; flow runs in the same process report to it, and to the run's logs.
_SINK: list[Callable[[str, int, int | None], None] | None] = [None]


def set_sink(sink: Callable[[str, int, int | None], None] | None) -> None:
    _SINK[0] = sink


def reporter_for_run() -> Reporter:
    """A reporter for a task: this process's sink (if the CLI set one), lines to the run's logs."""
    return Reporter(_SINK[0])
