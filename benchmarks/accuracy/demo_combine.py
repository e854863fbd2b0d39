"""Planted-fact accuracy of the demo's checkpoint set, raw vs normalised combination, per mode.

    make demo && PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.demo_combine

Re-values the demo's 18 queries against its stores in ``.dataworth/demo`` (nothing is posted).
"""

from __future__ import annotations

import os

from flows.app import App
from flows.config import load_settings
from flows.demo.corpus import PROVIDERS, queries
from flows.demo.run import top_provider_by_policy
from flows.valuate import checkpoint_set, value_lineage


def main() -> None:
    os.environ.setdefault("DATAWORTH_HOME", ".dataworth/demo")
    qs = queries()
    truth = {q["query_id"]: q.pop("planted_by") for q in qs}
    print("| mode | raw sum | normalised |\n| --- | ---: | ---: |")
    for mode in ("if", "relatif", "cosine"):
        app = App.of(load_settings(mode=mode))
        val = value_lineage(app, "demo", checkpoint_set(app, "demo", "all"), qs, with_confidence=False)
        acc = []
        for normalise in (False, True):
            res = val.combined(normalise=normalise)
            acc.append(sum(top_provider_by_policy(r, list(PROVIDERS)) == truth[r.query_id] for r in res) / len(res))
        print(f"| {mode} | {acc[0]:.3f} | {acc[1]:.3f} |")


if __name__ == "__main__":
    main()
