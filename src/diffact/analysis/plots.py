"""Helpers the property notebooks share: grouping kinds, choosing which activations to show, shading the stages,
similarity-to-a-point maps, and the per-model summary of the three numbers (paper §4, Figs 3–18)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the notebooks import these helpers; torch costs them ~2 s of CPU each, for a type hint
    import torch

from diffact.analysis.names import INCREMENT_KINDS, INTER_MODULE_KINDS, SELF_QK_KINDS, parse_name, resolution_label

KIND_GROUPS = ("inter-module", "self-attn q/k", "cross-attn q", "block out", "increment")


def kind_group(kind: str) -> str:
    """The activation families the paper contrasts (Fig 1 upper, §4.3, Fig 16)."""
    if kind in INTER_MODULE_KINDS:
        return "inter-module"
    if kind in SELF_QK_KINDS or kind in ("q", "k"):  # Flux's joint attention q/k (its image part)
        return "self-attn q/k"
    if kind == "cross-q":
        return "cross-attn q"
    if kind == "block-out":
        return "block out"
    if kind in INCREMENT_KINDS:
        return "increment"
    return "other"


def per_layer(table: pd.DataFrame) -> pd.DataFrame:
    """Average the per-scene rows of a properties table into one row per (model, layer), forward order kept."""
    numbers = ["noise_share", "granularity", "cycles_per_image", "locality", "locality_slope", "locality_pixels",
               "locality_excess", "nn_pck"]
    keys = ["model", "layer", "forward_index", "stage", "level", "repeat", "block", "kind", "resolution",
            "channels", "height", "width", "filter_kept"]
    keys = [k for k in keys if k in table.columns]
    out = table.groupby(keys, dropna=False, sort=False)[[c for c in numbers if c in table.columns]].mean().reset_index()
    out["group"] = out["kind"].map(kind_group)
    out = out.sort_values(["model", "forward_index"]).reset_index(drop=True)
    # Position along the forward order in [0, 1], so models of different depth share an axis.
    out["position"] = out.groupby("model")["forward_index"].transform(lambda s: (s - s.min()) / max(s.max() - s.min(), 1))
    return out


def resolution_spans(layers: pd.DataFrame, x: str = "forward_index") -> list[tuple[str, float, float]]:
    """(resolution label, first x, last x) of consecutive runs of one resolution along the forward order."""
    spans = []
    for label, x_value in zip(layers["resolution"], layers[x]):
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1], x_value)
        else:
            spans.append((label, x_value, x_value))
    return spans


STAGE_COLOURS = {"down": "#d8e6f3", "mid": "#eeeeee", "up": "#f6e3d4"}


def shade_resolutions(ax, layers: pd.DataFrame, x: str = "forward_index", labels: bool = True) -> None:
    """Shade the down/mid/up stages and mark where the resolution changes."""
    for label, start, end in resolution_spans(layers, x):
        stage = label.split("-")[0]
        ax.axvspan(start - 0.5, end + 0.5, color=STAGE_COLOURS.get(stage, "white"), alpha=0.6, lw=0, zorder=0)
        ax.axvline(start - 0.5, color="grey", lw=0.4, zorder=0)
        if labels:
            ax.text((start + end) / 2, 1.0, label.replace("-level", "\nL"), transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=6)


def inter_module_along(layers: Sequence[str], per_resolution: int = 1) -> list[str]:
    """Inter-module activations along the forward order: the last ``per_resolution`` of each resolution (the
    resolution's output, as the paper's figure config picks them)."""
    groups: dict[str, list[str]] = {}
    for name in layers:
        p = parse_name(name)
        if p.is_inter_module:
            groups.setdefault(resolution_label(p), []).append(name)
    return [n for names in groups.values() for n in names[-per_resolution:]]


def up_levels_with_vits(layers: Sequence[str]) -> list[int]:
    levels = sorted({p.level for p in map(parse_name, layers) if p.stage == "up" and p.block is not None})
    return levels


def resolution_members(layers: Sequence[str], stage: str, level: int, kinds: Sequence[str]) -> list[str]:
    return [n for n in layers if (p := parse_name(n)).stage == stage and p.level == level and p.kind in kinds]


def store_image_path(store, image_id: str):
    """The input image of a store shard: the path the dataset-kind registry gives the id for the store's dataset
    (kind, root and split are in its settings), so the figure shows the file extraction read; None when the
    dataset cannot be read or does not hold the id. The split's whole image list is read (not the store's subset):
    a subset's images are its split's, and a subset file may be absent where the run drew the subset by rule."""
    return store_image_paths(store, [image_id])[image_id]


def store_image_paths(store, image_ids) -> dict:
    """:func:`store_image_path` of several images, from one listing of the store's dataset."""
    from diffact.data.registry import dataset_images
    from diffact.utils.errors import DiffactError

    dataset = store.settings.get("dataset") or {}
    listed: dict = {}
    if dataset.get("kind") and dataset.get("root"):
        try:
            listed = dict(dataset_images(dataset["kind"], dataset["root"], dataset.get("split")))
        except DiffactError:
            pass
    return {image_id: listed.get(image_id) for image_id in image_ids}


def query_point(labels: np.ndarray, background: int = 0, ignore: int = 255) -> tuple[int, int]:
    """A foreground pixel on the object's boundary, near its centre row: where Fig 3c's orange circle sits
    (a point of the object whose neighbours include background)."""
    fg = (labels != background) & (labels != ignore)
    if not fg.any():
        return labels.shape[0] // 2, labels.shape[1] // 2
    padded = np.pad(fg, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    boundary = np.argwhere(fg & ~interior)
    centre = np.argwhere(fg).mean(axis=0)
    y, x = boundary[np.argmin(((boundary - centre) ** 2).sum(axis=1))]
    return int(y), int(x)


def similarity_map(feature: torch.Tensor, point: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of every pixel's (channel-centred) feature to the feature at ``point`` (h×w)."""
    from diffact.analysis.properties import unit_pixel_vectors

    c, h, w = feature.shape
    vectors = unit_pixel_vectors(feature)
    return (vectors @ vectors[point[0] * w + point[1]]).reshape(h, w)


def within_resolution_trend(layers: pd.DataFrame, column: str = "granularity", stage: str | None = None) -> float:
    """Mean over resolutions (with ≥ 3 ResModule/ViT outputs) of Spearman ρ between position and ``column``:
    > 0 means the number rises along each resolution (P2: coarse → fine)."""
    from diffact.analysis.properties import rank_correlation

    values = []
    # Samplers are left out: their map has the next resolution's size, so they do not belong to the trend. A DiT has
    # one resolution: its block outputs along the depth are the trend.
    inter = layers[layers["kind"].isin(["res-out", "vit-out"]) | ((layers["stage"] == "dit")
                                                                  & (layers["kind"] == "block-out"))]
    if stage is not None:
        inter = inter[inter["stage"] == stage]
    for _, group in inter.groupby("resolution", sort=False):
        if len(group) >= 3 and group[column].notna().all():
            values.append(rank_correlation(group["forward_index"].to_numpy(float), group[column].to_numpy(float)))
    return float(np.mean(values)) if values else float("nan")


def trunk_activations(layers: pd.DataFrame) -> pd.DataFrame:
    """What runs between a model's modules: the inter-module activations of a U-Net (ResModule/ViT outputs,
    samplers), the block outputs of a DiT (stage ``dit``)."""
    dit = layers["stage"] == "dit"
    return layers[(~dit & (layers["group"] == "inter-module")) | (dit & (layers["kind"] == "block-out"))]


def locality_column(layers: pd.DataFrame) -> str:
    """``locality_excess`` where the pixel baseline was measured, else the raw ``locality``."""
    if "locality_excess" in layers and layers["locality_excess"].notna().any():
        return "locality_excess"
    return "locality"


def summary_row(layers: pd.DataFrame) -> dict:
    """The three properties of one model in a few numbers (paper §4.1–4.3 expectations in the comments)."""
    inter = trunk_activations(layers)
    up = inter[inter["stage"] == "up"]
    half = up["forward_index"].median() if len(up) else np.nan
    depth_half = inter["forward_index"].median() if len(inter) else np.nan

    def mean(frame, column):
        return float(frame[column].mean()) if len(frame) else float("nan")

    row = {
        "model": layers["model"].iloc[0],
        # P1: noisy down-stage, clean early up-stage, noise again late in the up-stage.
        "noise_down": mean(inter[inter["stage"] == "down"], "noise_share"),
        "noise_mid": mean(inter[inter["stage"] == "mid"], "noise_share"),
        "noise_up_early": mean(up[up["forward_index"] <= half], "noise_share"),
        "noise_up_late": mean(up[up["forward_index"] > half], "noise_share"),
        # the same along the whole depth (the only axis of a DiT): first and second half of the forward order
        "noise_depth_early": mean(inter[inter["forward_index"] <= depth_half], "noise_share"),
        "noise_depth_late": mean(inter[inter["forward_index"] > depth_half], "noise_share"),
        # P2: granularity rises within each resolution (the paper shows it in the up-stage, Figs 17-18).
        "granularity_trend": within_resolution_trend(layers),
        "granularity_trend_up": within_resolution_trend(layers, stage="up"),
    }
    # P3: self-attention q/k are the most local; cross-attention q the least. The excess over the image's own
    # locality (when measured) compares groups that live at different resolutions.
    column = locality_column(layers)
    for group in ("self-attn q/k", "cross-attn q", "block out", "inter-module"):
        row[f"{column}_{group.replace(' ', '_').replace('/', '')}"] = mean(layers[layers["group"] == group], column)
    if "nn_pck" in layers and layers["nn_pck"].notna().any():
        row["best_nn_pck"] = float(layers["nn_pck"].max())
    return row
