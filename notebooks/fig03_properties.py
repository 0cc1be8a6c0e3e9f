# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: diffact
#     language: python
#     name: diffact
# ---

# %% [markdown]
# # Figure 3 analogue: the three universal properties on one image (paper §4, Fig 3)
# (a) **asymmetric diffusion noise**: PCA → RGB maps of inter-module activations along the forward order
# (down → mid → up), titled with their noise share; (b) **in-resolution granularity change**: the consecutive
# inter-module activations of one up-stage resolution, titled with their granularity; (c) **locality without
# positional embeddings**: self-attention q/k vs cross-attention q vs block output of one ViT block, PCA maps and
# the cosine similarity of every pixel to one point on the object's boundary (the paper's orange circle), titled
# with their locality. Reads `results/` only: the property table and the maps `diffact property-maps --figure-maps`
# computed from the features while it measured them (not the feature store).

# %% tags=["parameters"]
table = "results/properties/sd15-tiny/properties.csv"
maps = "results/properties/sd15-tiny/seg-simple/figure_maps.npz"
image_index = 0
max_columns = 8
out_stem = "paper_figures/demo/fig03_properties_sd15-tiny"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from diffact.analysis.names import forward_sorted, parse_name
from diffact.analysis.plots import inter_module_along, per_layer, resolution_members, up_levels_with_vits
from diffact.data.images import load_rgb
from diffact.viz import theme
from diffact.viz.figure_maps import FigureMaps

theme.apply()
numbers = per_layer(pd.read_csv(table)).set_index("layer")
fm = FigureMaps(maps)
layers = forward_sorted(fm.layers)
image_id = fm.image_ids[image_index]
labels = fm.labels(image_id)


def evenly(names, k):
    """At most k names, evenly spread, first and last kept."""
    if len(names) <= k:
        return list(names)
    return [names[i] for i in np.linspace(0, len(names) - 1, k).round().astype(int)]


def short(name):
    return name.replace("-repeat", " r").replace("-vit-block", " b").replace("-level", " L")


# %% [markdown]
# Which activations: (a) the output of each resolution along the forward order; (b) every inter-module
# activation of the lowest-resolution up-level that has ViTs; (c) block 0 of the middle ViT of that level.

# %%
row_a = evenly(inter_module_along(layers), max_columns)
vit_level = up_levels_with_vits(layers)[0]
row_b = evenly(resolution_members(layers, "up", vit_level, ("res-out", "vit-out", "upsampler-out")), max_columns)
repeats = sorted({parse_name(n).repeat for n in layers if parse_name(n).stage == "up" and parse_name(n).level == vit_level
                  and parse_name(n).block is not None})
prefix = f"up-level{vit_level}-repeat{repeats[len(repeats) // 2]}-vit-block0"
row_c = [n for n in (f"{prefix}-self-q", f"{prefix}-self-k", f"{prefix}-cross-q", f"{prefix}-out") if n in layers]

size = max(fm.shape(name)[1] for name in set(row_a + row_b + row_c))
n_cols = 1 + max(len(row_a), len(row_b), 2 * len(row_c))
fig, axes = plt.subplots(3, n_cols, figsize=(1.5 * n_cols, 5.4), squeeze=False)
for ax in axes.flat:
    ax.axis("off")
# Column 0: the input image, its labels, and the query point of (c) on the image.
path = fm.image_path(image_id)
photo = load_rgb(path) if path is not None else None
if photo is not None:
    axes[0, 0].imshow(photo)
axes[1, 0].imshow(labels, cmap="tab20", interpolation="nearest")
axes[1, 0].set_title("labels", fontsize=6)
for col, name in enumerate(row_a, start=1):
    axes[0, col].imshow(fm.rgb(image_id, name, size), interpolation="nearest")
    axes[0, col].set_title(f"{short(name)}\nnoise {numbers.loc[name, 'noise_share']:.2f}", fontsize=6)
for col, name in enumerate(row_b, start=1):
    axes[1, col].imshow(fm.rgb(image_id, name, size), interpolation="nearest")
    axes[1, col].set_title(f"{short(name)}\ngran. {numbers.loc[name, 'granularity']:.2f}", fontsize=6)
for i, name in enumerate(row_c):
    y, x = fm.point(image_id, name)  # the object's boundary point at this map's resolution (Fig 3c's circle)
    axes[2, 2 * i + 1].imshow(fm.rgb(image_id, name, size), interpolation="nearest")
    axes[2, 2 * i + 1].set_title(f"{parse_name(name).kind}\nlocality {numbers.loc[name, 'locality']:.2f}", fontsize=6)
    sim = fm.similarity(image_id, name)
    axes[2, 2 * i + 2].imshow(sim, cmap="magma", vmin=-1, vmax=1, interpolation="nearest")
    axes[2, 2 * i + 2].scatter([x], [y], s=30, facecolors="none", edgecolors="orange", linewidths=1.5)
    axes[2, 2 * i + 2].set_title("similarity to ○", fontsize=6)
if photo is not None and row_c:
    h, w = fm.shape(row_c[0])
    axes[2, 0].imshow(photo)
    axes[2, 0].scatter([(x + 0.5) * photo.shape[1] / w], [(y + 0.5) * photo.shape[0] / h], s=60, facecolors="none",
                       edgecolors="orange", linewidths=1.5)
for row, text in enumerate(("(a) noise", f"(b) granularity, up-level{vit_level}", f"(c) locality, {short(prefix)}")):
    axes[row, 0].text(-0.08, 0.5, text, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center",
                      fontsize=7)
fig.suptitle(f"{numbers['model'].iloc[0]} — {image_id}", fontsize=9)
theme.save(fig, out_stem)
