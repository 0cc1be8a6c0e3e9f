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
# (docs/paper.md §6). Reads a feature store from `results/` only.

# %% tags=["parameters"]
store = "results/features/spair/sd15-tiny/screen-000000000000"
layers = []
n_images = 2
out_stem = "paper_figures/demo/fig03_pca_demo"
title = ""

# %%
import matplotlib.pyplot as plt

from diffact.analysis.plots import store_image_path
from diffact.data.images import load_rgb
from diffact.extract.store import FeatureStore
from diffact.viz import theme
from diffact.viz.pca import pca_rgb

theme.apply()
fs = FeatureStore.open(store)
layers = list(layers) or fs.layers
image_ids = fs.image_ids()[:n_images]

# %%
fig, axes = plt.subplots(len(image_ids), len(layers) + 1, figsize=(1.6 * (len(layers) + 1), 1.7 * len(image_ids)),
                         squeeze=False)
for row, image_id in enumerate(image_ids):
    feats = fs.read(image_id, layers)
    size = max(t.shape[-1] for t in feats.values())
    axes[row, 0].set_title("image" if row == 0 else "")
    axes[row, 0].set_ylabel(image_id, fontsize=7)
    for col, name in enumerate(layers, start=1):
        axes[row, col].imshow(pca_rgb(feats[name], size), interpolation="nearest")
        if row == 0:
            axes[row, col].set_title(name.replace("-vit-", "\nvit-").replace("-repeat", "\nrepeat"), fontsize=6)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])

# %% [markdown]
# The first column shows the input image (when the store's dataset can be read from its settings).

# %%
for row, image_id in enumerate(image_ids):
    path = store_image_path(fs, image_id)
    if path is not None:
        axes[row, 0].imshow(load_rgb(path))
if title:
    fig.suptitle(title)
theme.save(fig, out_stem)
