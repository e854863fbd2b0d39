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


BASELINES = (  # name, line style, colour
    ("exact influence, layer-wise Fisher, damping 0.1", "--", "gray"),
    ("EKFAC (kronfluence), true Fisher", (0, (5, 1, 1, 1)), "gray"),
    ("EKFAC (kronfluence), empirical Fisher", (0, (3, 1, 1, 1, 1, 1)), "gray"),
    ("gradient dot product", ":", "gray"),
    ("representation similarity", "-.", "gray"),
    ("TF-IDF, character 3-5-grams", (0, (1, 3)), "gray"),
    ("LoGra pca k=16 if, checkpoint set", "-", "tab:green"),
    ("gradient dot product, checkpoint set", ":", "tab:red"),
)


def _lds_axes(ax, lds: dict[str, dict], ceiling: float, title: str) -> None:
    """LoGra PCA and random vs k, baselines as horizontal lines; ``lds``: name → {mean, se}."""
    for init, color in (("pca", "tab:blue"), ("random", "tab:orange")):
        pts = sorted(
            (int(m.group(1)), v["mean"], v["se"])
            for name, v in lds.items()
            if (m := re.fullmatch(rf"LoGra {init} k=(\d+)", name))
        )
        ks, means, ses = zip(*pts, strict=True)
        ax.errorbar(ks, means, yerr=ses, marker="o", capsize=3, label=f"LoGra {init}", color=color)
    for name, style, color in BASELINES:
        if name in lds:
            ax.axhline(lds[name]["mean"], linestyle=style, color=color, label=name)
    ax.axhline(ceiling, color="black", linewidth=0.8, label="ground-truth split-half ceiling")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (k_in = k_out)")
    ax.set_ylabel("LDS (Spearman)")
    ax.set_title(title)
    ax.legend(fontsize=6)


def lds_vs_k(res: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    _lds_axes(ax, res["lds"], res["ceiling"], "Digits MLP: LDS vs projection size")
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


def lm_lds_vs_k(res: dict, path: Path) -> None:
    groups = [g for g in res["ceiling"] if g != "all"]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        lds = {name: v[group] for name, v in res["lds"].items()}
        _lds_axes(ax, lds, res["ceiling"][group], f"demo GPT-2: {group}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def digits_tables(res: dict) -> None:
    rows = sorted(res["lds"].items(), key=lambda kv: -kv[1]["mean"])
    print("| method | LDS (mean ± s.e.) |\n| --- | ---: |")
    for name, v in rows:
        print(f"| {name} | {v['mean']:.3f} ± {v['se']:.3f} |")
    print(f"\nceiling {res['ceiling']:.3f}, seconds {res.get('seconds', 0):.0f}\n")
    for name, b in res.get("brittleness", {}).items():
        cells = " | ".join(f"{c:+.2f}" for c in b["mean_change"])
        print(f"| {name} | {cells} | flipped {b['flipped']} of {b['queries']} |")


def lm_tables(res: dict) -> None:
    groups = list(res["ceiling"])
    planted = "planted top-1 (topk_share) | planted, learned facts | planted (sum)"
    print("| method | " + " | ".join(groups) + f" | {planted} |")
    print("| --- | " + " | ".join("---:" for _ in groups) + " | ---: | ---: | ---: |")
    for name, v in sorted(res["lds"].items(), key=lambda kv: -kv[1]["all"]["mean"]):
        p = res["planted"]["methods"][name]
        lds_cells = " | ".join(f"{v[g]['mean']:.3f} ± {v[g]['se']:.3f}" for g in groups)
        planted = f"{p['topk_share']['accuracy']:.3f} | {p['topk_share']['accuracy_learned']:.3f}"
        print(f"| {name} | {lds_cells} | {planted} | {p['sum']['accuracy']:.3f} |")
    ceil = " | ".join(f"{res['ceiling'][g]:.3f}" for g in groups)
    print(f"| *split-half ceiling* | {ceil} | | | |")
    print(f"\nlearned facts {res['planted']['learned']} of {res['planted']['facts']}; seconds {res['seconds']:.0f}")


def main() -> None:
    PLOTS.mkdir(exist_ok=True)
    digits = HERE / "out" / "digits.json"
    if digits.exists():
        res = json.loads(digits.read_text())
        lds_vs_k(res, PLOTS / "digits_lds_vs_k.png")
        brittleness_vs_k(res, PLOTS / "digits_brittleness_vs_k.png")
        digits_tables(res)
    lm = HERE / "out" / "lm.json"
    if lm.exists():
        res = json.loads(lm.read_text())
        lm_lds_vs_k(res, PLOTS / "lm_lds_vs_k.png")
        lm_tables(res)


if __name__ == "__main__":
    main()
