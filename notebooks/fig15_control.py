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
# # Figure 15 analogue: a conventional U-Net, where the properties should be hardly observed (paper App. A)
# The control is a residual U-Net trained briefly as a pixel classifier (`diffact.models.control_unet`), analysed
# with exactly the same functions as the diffusion U-Nets: its input gets the same forward noise as theirs at
# timestep t (P1), its maps the same granularity (P2) and locality (P3) measures. Top: PCA maps of its
# inter-module activations along the forward order. Bottom: the three numbers along the (normalised) forward
# order, control vs diffusion models. Reads `results/` only: the tables, and the maps `diffact property-maps
# --figure-maps` computed from the control's features.

# %% tags=["parameters"]
control = "results/properties/control-unet/properties.csv"
tables = ["results/properties/sd15-tiny/properties.csv"]
maps = "results/properties/control-unet/seg-simple/figure_maps.npz"
image_index = 0
max_columns = 10
out_stem = "paper_figures/demo/fig15_control"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffact.analysis.names import forward_sorted
from diffact.analysis.plots import inter_module_along, locality_column, per_layer
from diffact.viz import theme
from diffact.viz.figure_maps import FigureMaps

theme.apply()
layers = pd.concat([per_layer(pd.read_csv(t)) for t in [control, *tables]], ignore_index=True)
inter = layers[layers["group"] == "inter-module"].copy()
inter["position"] = inter.groupby("model")["forward_index"].transform(lambda s: (s - s.min()) / max(s.max() - s.min(), 1))
fm = FigureMaps(maps)
shown = inter_module_along(forward_sorted(fm.layers), per_resolution=2)
if len(shown) > max_columns:
    shown = [shown[i] for i in np.linspace(0, len(shown) - 1, max_columns).round().astype(int)]
image_id = fm.image_ids[image_index]
size = max(fm.shape(name)[1] for name in shown)

# %%
fig = plt.figure(figsize=(max(12, 1.3 * len(shown)), 6.4))
top = fig.add_gridspec(1, len(shown), top=0.9, bottom=0.66)
bottom = fig.add_gridspec(1, 3, top=0.52, bottom=0.1, wspace=0.3)
control_numbers = layers[layers["model"] == layers["model"].iloc[0]].set_index("layer")
for col, name in enumerate(shown):
    ax = fig.add_subplot(top[0, col])
    ax.imshow(fm.rgb(image_id, name, size), interpolation="nearest")
    ax.set_title(f"{name.replace('-repeat', chr(10) + 'repeat').replace('-down', chr(10) + 'down').replace('-up', chr(10) + 'up')}"
                 f"\nnoise {control_numbers.loc[name, 'noise_share']:.2f}", fontsize=5.5)
    ax.axis("off")
for col, (column, label) in enumerate((("noise_share", "P1 noise share"), ("granularity", "P2 granularity"),
                                       (locality_column(inter), "P3 locality"))):
    ax = fig.add_subplot(bottom[0, col])
    sns.lineplot(data=inter, x="position", y=column, hue="model", marker="o", markersize=3, ax=ax, legend=(col == 2))
    ax.set_xlabel("forward position (0 = first, 1 = last)")
    ax.set_ylabel(label)
    if col == 2:
        sns.move_legend(ax, "best", fontsize=6, title=None)
fig.suptitle(f"control U-Net (no diffusion) — {image_id}", fontsize=9)
theme.save(fig, out_stem)
