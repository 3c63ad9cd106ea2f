"""One PNG per operation: tnc's time over the baseline's (and einconv's) per layer, log scale.

``python -m benchmarks.plot [benchmarks/results.json]`` redraws them from saved results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.networks import TITLES
from benchmarks.report import KFAC_REDUCE_MEDIAN, PER_LAYER_LIMIT, by_op, ratio

COLORS = {"general": "#4c72b0", "dense": "#55a868", "down": "#8172b2", "grouped": "#c44e52", "depthwise": "#dd8452", "1xk": "#937860"}


def plot_all(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = results["environment"]
    paths = []
    for op, records in by_op(results).items():
        base = records[0]["baseline"]
        good = [r for r in records if r["ok"] and r.get("time_s")]
        if not good:
            continue
        fig, ax = plt.subplots(figsize=(max(8, 0.42 * len(good) + 4.5), 5.2))
        xs = range(len(good))
        values = [ratio(r, base) for r in good]
        ax.bar(xs, values, color=[COLORS.get(r["kind"], "gray") for r in good], width=0.7, zorder=2)
        for x, v in zip(xs, values):
            ax.annotate(f"{v:.2f}" if v < 10 else f"{v:.0f}", (x, v), textcoords="offset points", xytext=(0, 2 if v >= 1 else -9),
                        ha="center", fontsize=6.5, zorder=4)
        e_values = [(x, ratio(r, "einconv")) for x, r in zip(xs, good) if ratio(r, "einconv") is not None]
        if e_values:
            ax.scatter([x for x, _ in e_values], [v for _, v in e_values], marker="D", s=28, color="black", label="tnc / einconv", zorder=3)
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=1.2, zorder=1)
        limit = PER_LAYER_LIMIT[op]
        if limit != 1:
            ax.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"target ≤ {limit:g}× {base}")
        if op == "kfac_reduce":
            ax.axhline(KFAC_REDUCE_MEDIAN, color="red", linestyle=":", linewidth=1, label="target for the median layer (3× faster)")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{r['layer']} {r['net']}\n{r['kind']}" for r in good], rotation=70, ha="right", fontsize=7.5)
        ax.set_ylabel("time ratio (log scale; < 1: tnc faster)")
        sizes = "real sizes" if env["scale"] == 1 else f"spatial sizes ×{env['scale']}"
        ax.set_title(f"{TITLES[op]}: tnc vs {base} per layer (float32, batch {env['batch']}, {sizes}, torch {env['torch']}, CPU)", fontsize=10)
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter

        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        handles, labels = ax.get_legend_handles_labels()
        kinds = list(dict.fromkeys(r["kind"] for r in good))
        handles = [Patch(facecolor="white", edgecolor="black")] + handles + [Patch(color=COLORS.get(k, "gray")) for k in kinds]
        labels = [f"bar: tnc time / {base} time, by layer class:"] + labels + [f"class: {k}" for k in kinds]
        ax.legend(handles, labels, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
        ax.grid(axis="y", which="both", alpha=0.3, zorder=0)
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, 0.5), max(high, 2))
        fig.tight_layout()
        path = folder / f"plot_{op}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    for p in plot_all(json.loads(source.read_text()), source.parent):
        print(p)
