"""Plots for benchmarks/ACCURACY.md from the suites' JSON results.

.venv/bin/python -m benchmarks.accuracy.report
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
PLOTS = HERE.parent / "plots"


def lds_vs_k(res: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for init, color in (("pca", "tab:blue"), ("random", "tab:orange")):
        pts = sorted(
            (int(m.group(1)), v["mean"], v["se"])
            for name, v in res["lds"].items()
            if (m := re.fullmatch(rf"LoGra {init} k=(\d+)", name))
        )
        ks, means, ses = zip(*pts, strict=True)
        ax.errorbar(ks, means, yerr=ses, marker="o", capsize=3, label=f"LoGra {init}", color=color)
    for name, style in (
        ("exact influence, layer-wise Fisher, damping 0.1", "--"),
        ("gradient dot product", ":"),
        ("representation similarity", "-."),
    ):
        if name in res["lds"]:
            ax.axhline(res["lds"][name]["mean"], linestyle=style, color="gray", label=name)
    ax.axhline(res["ceiling"], color="black", linewidth=0.8, label="ground-truth split-half ceiling")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (k_in = k_out)")
    ax.set_ylabel("LDS (Spearman)")
    ax.set_title("Digits MLP: LDS vs projection size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def brittleness_vs_k(res: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, b in res.get("brittleness", {}).items():
        ax.plot(b["ks"], b["mean_change"], marker="o", label=name)
    ax.set_xlabel("top-k training examples removed")
    ax.set_ylabel("mean change of the query margin after retraining")
    ax.set_title("Digits MLP: brittleness (lower = the method found what mattered)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    PLOTS.mkdir(exist_ok=True)
    res = json.loads((HERE / "out" / "digits.json").read_text())
    lds_vs_k(res, PLOTS / "digits_lds_vs_k.png")
    brittleness_vs_k(res, PLOTS / "digits_brittleness_vs_k.png")
    rows = sorted(res["lds"].items(), key=lambda kv: -kv[1]["mean"])
    print("| method | LDS (mean ± s.e.) |\n| --- | ---: |")
    for name, v in rows:
        print(f"| {name} | {v['mean']:.3f} ± {v['se']:.3f} |")
    print(f"\nceiling {res['ceiling']:.3f}")
    for name, b in res.get("brittleness", {}).items():
        print(name, b)


if __name__ == "__main__":
    main()
