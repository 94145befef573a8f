"""Report charts drawn with matplotlib (Agg) as standalone SVG strings (text as paths, so
the SVG needs no fonts or other assets)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

import numpy as np

from semsearch.errors import require


def _plt():  # noqa: ANN202
    mpl = require("matplotlib", "eval")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "path"
    plt.rcParams["svg.hashsalt"] = "semsearch"  # deterministic ids
    return plt


def _svg(fig) -> str:  # noqa: ANN001
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    s = buf.getvalue()
    s = s[s.index("<svg") :]
    # drop the RDF metadata block (namespaced URIs, creator string): not needed to render
    return re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)


def metric_bars(means: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> str:
    plt = _plt()
    names = list(means)
    cols = 4
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(names)) % 10)
    for ax, m in zip(axes.flat, metrics, strict=False):
        vals = [means[n][m] for n in names]
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_title(m, fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, max(1e-9, max(vals)) * 1.15)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return _svg(fig)


def recall_curve(curves: Mapping[str, Mapping[int, float]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, c in curves.items():
        ks = sorted(c)
        ax.plot(ks, [c[k] for k in ks], marker="o", markersize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def delta_histogram(per_query: Mapping[str, Mapping[str, float]], baseline: str, metric: str) -> str:
    """Histogram of per-query ``metric`` differences of each config minus the baseline."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    base = per_query[baseline]
    bins = np.linspace(-1, 1, 41)
    for name, pq in per_query.items():
        if name == baseline:
            continue
        d = np.array([pq[q] - base[q] for q in base])
        # unchanged queries (usually most) are counted in the legend, not drawn
        ax.hist(d[d != 0], bins=bins, histtype="step", linewidth=1.5,
                label=f"{name} (better {int((d > 0).sum())}, worse {int((d < 0).sum())}, same {int((d == 0).sum())})")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"{metric}(config) - {metric}({baseline}) per query")
    ax.set_ylabel("queries (unchanged ones omitted)")
    if len(per_query) > 1:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "only the baseline was run", transform=ax.transAxes, ha="center")
    return _svg(fig)
