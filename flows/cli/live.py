"""Rich progress bars for the stages' :class:`flows.progress.Progress` reports (on stderr)."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def live_progress():
    """Within the block, every stage's progress shows as a bar (or, off a terminal, a line per task
    when it ends): label, count, total, rate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows.cli.output import console
    from flows.progress import set_sink

    bars = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}", markup=False),
        console=console(stderr=True),
        disable=not sys.stderr.isatty(),
        transient=False,
    )
    tasks: dict[str, int] = {}
    started: dict[str, float] = {}

    def sink(label: str, done: int, total: int | None) -> None:
        import time

        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total, rate="")
            started[label] = time.perf_counter()
        elapsed = max(time.perf_counter() - started[label], 1e-9)
        bars.update(tasks[label], completed=done, total=total, rate=f"{done / elapsed:,.0f}/s")
        if not sys.stderr.isatty() and total is not None and done >= total:
            print(f"{label}: {done}/{total} in {elapsed:.1f} s", file=sys.stderr, flush=True)

    set_sink(sink)
    try:
        with bars:
            yield
    finally:
        set_sink(None)
