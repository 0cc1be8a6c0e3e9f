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
# # Figure 3 style: PCA → RGB maps of activations
# Each activation of one image is projected on its first three principal components and shown as RGB
# (docs/paper.md §6). Reads the maps `diffact figure-maps` computed from the features (`results/figure_maps/`), not
# the feature store.

# %% tags=["parameters"]
maps = "results/figure_maps/pca_sd15-tiny.npz"
out_stem = "paper_figures/demo/fig03_pca_demo"
title = ""

# %%
import matplotlib.pyplot as plt

from diffact.data.images import load_rgb
from diffact.viz import theme
from diffact.viz.figure_maps import FigureMaps

theme.apply()
fm = FigureMaps(maps)
layers = fm.layers  # the figure's activations, in the configured order (figures.pca_layers)
image_ids = fm.image_ids

# %%
fig, axes = plt.subplots(len(image_ids), len(layers) + 1, figsize=(1.6 * (len(layers) + 1), 1.7 * len(image_ids)),
                         squeeze=False)
for row, image_id in enumerate(image_ids):
    size = max(fm.shape(name)[1] for name in layers)
    axes[row, 0].set_title("image" if row == 0 else "")
    axes[row, 0].set_ylabel(image_id, fontsize=7)
    for col, name in enumerate(layers, start=1):
        axes[row, col].imshow(fm.rgb(image_id, name, size), interpolation="nearest")
        if row == 0:
            axes[row, col].set_title(name.replace("-vit-", "\nvit-").replace("-repeat", "\nrepeat"), fontsize=6)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])

# %% [markdown]
# The first column shows the input image (when the store's dataset could be read when the maps were made).

# %%
for row, image_id in enumerate(image_ids):
    path = fm.image_path(image_id)
    if path is not None:
        axes[row, 0].imshow(load_rgb(path))
if title:
    fig.suptitle(title)
theme.save(fig, out_stem)
