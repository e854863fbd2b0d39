"""Named points where a fault-injection test kills this process (``DATAWORTH_FAILPOINT=name[:n]``:
SIGKILL at the n-th time ``name`` is reached, default the first). Unset, a failpoint costs one
dictionary lookup. The names mark the windows a crash must never turn into a wrong credit."""

from __future__ import annotations

import os
import signal

_HITS: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("DATAWORTH_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
