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
# # Figures 5–13 analogue: the properties on other scenes and models (paper §4.4, App. A)
# The paper repeats Figure 3 on simple/complex, indoor/outdoor photos with SDXL (Figs 5–11), with Playground v2
# (Fig 12) and with SDv1.5 (Fig 13). Here: every configured scene (demo: a simple one-object scene and a complex
# room-like scene), a few images each, PCA → RGB maps of the inter-module activations along the forward order.
# Reads `results/` only: the maps `diffact property-maps --figure-maps` computed on each scene (not the feature stores).

# %% tags=["parameters"]
maps = ["results/properties/sd15-tiny/seg-simple/figure_maps.npz"]
scenes = ["seg-simple"]
model = "sd15-tiny"
images_per_scene = 2
max_columns = 10
out_stem = "paper_figures/demo/fig05_13_scenes_sd15-tiny"

# %%
import matplotlib.pyplot as plt
import numpy as np

from diffact.analysis.names import forward_sorted
from diffact.analysis.plots import inter_module_along
from diffact.data.images import load_rgb
from diffact.viz import theme
from diffact.viz.figure_maps import FigureMaps

theme.apply()
opened = [FigureMaps(m) for m in maps]
layers = inter_module_along(forward_sorted(opened[0].layers), per_resolution=2)
if len(layers) > max_columns:
    layers = [layers[i] for i in np.linspace(0, len(layers) - 1, max_columns).round().astype(int)]


# %%
rows = [(scene, fm, image_id) for scene, fm in zip(scenes, opened) for image_id in fm.image_ids[:images_per_scene]]
fig, axes = plt.subplots(len(rows), len(layers) + 1, figsize=(1.35 * (len(layers) + 1), 1.5 * len(rows)), squeeze=False)
for r, (scene, fm, image_id) in enumerate(rows):
    size = max(fm.shape(name)[1] for name in layers)
    path = fm.image_path(image_id)
    if path is not None:
        axes[r, 0].imshow(load_rgb(path))
    axes[r, 0].set_ylabel(f"{scene}\n{image_id}", fontsize=6)
    for c, name in enumerate(layers, start=1):
        axes[r, c].imshow(fm.rgb(image_id, name, size), interpolation="nearest")
        if r == 0:
            axes[r, c].set_title(name.replace("-repeat", "\nrepeat").replace("-level", " L"), fontsize=5.5)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"{model}: inter-module activations along the forward order (down → mid → up)", fontsize=9)
theme.save(fig, out_stem)
