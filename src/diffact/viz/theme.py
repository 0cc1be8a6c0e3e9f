"""The one plotting theme every notebook uses: change it here and `snakemake figures` redraws all."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"
DPI = 150


def apply() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=1.1)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight", "axes.titlesize": 10})


def save(fig, stem: str, formats: tuple[str, ...] = ("png", "pdf")) -> list[str]:
    """Save ``fig`` as ``stem.<fmt>`` for each format, atomically; returns the paths."""
    from diffact.utils.io import save_figure

    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        save_figure(fig, path)
        paths.append(path)
    plt.close(fig)
    return paths
