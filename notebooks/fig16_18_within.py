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
# # Figures 16–18 analogues: increments, and granularity within one resolution (paper App. E)
# **Fig 16** — increments carry high-frequency noise: ResModule increment vs its output, FFN inner vs the block
# output, self-attention value vs query (PCA maps titled with noise share and granularity).
# **Fig 17** — all inter-module activations of one resolution go from coarse to fine, with slight noise at the end.
# **Fig 18** — the ViTs of one resolution: each one's internal granularity change overlaps the previous one and
# shifts finer (block outputs of every ViT; with one block per ViT, as SD1.5, each ViT's internal activations).
# Reads `results/` only: the property table and the maps `diffact property-maps --figure-maps` computed from the
# features (not the feature store).

# %% tags=["parameters"]
table = "results/properties/sd15-tiny/properties.csv"
maps = "results/properties/sd15-tiny/seg-simple/figure_maps.npz"
scene = "seg-simple"
model = "sd15-tiny"
image_index = 0
out_dir = "paper_figures/demo"

# %%
import matplotlib.pyplot as plt
import pandas as pd

from diffact.analysis.names import forward_sorted, parse_name
from diffact.analysis.plots import per_layer, resolution_members, up_levels_with_vits
from diffact.viz import theme
from diffact.viz.figure_maps import FigureMaps

theme.apply()
numbers = per_layer(pd.read_csv(table))
numbers = numbers.set_index("layer")
fm = FigureMaps(maps)
layers = forward_sorted(fm.layers)
image_id = fm.image_ids[image_index]
level = up_levels_with_vits(layers)[0]
parsed = {n: parse_name(n) for n in layers}


def show(ax, name, size, text=""):
    ax.imshow(fm.rgb(image_id, name, size), interpolation="nearest")
    ax.set_title(f"{text or parsed[name].kind}\nnoise {numbers.loc[name, 'noise_share']:.2f} "
                 f"gran. {numbers.loc[name, 'granularity']:.2f}", fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])


def short(name):
    return name.replace("-repeat", " r").replace("-vit-block", " b").replace("-level", " L")


# %% [markdown]
# ## Figure 16: increments (ResModule increment, FFN inner, self-attention v) beside their outputs

# %%
repeat = 1 if any(parsed[n].repeat == 1 for n in resolution_members(layers, "up", level, ("res-out",))) else 0
base = f"up-level{level}-repeat{repeat}"
pairs = [(f"{base}-res-increment", f"{base}-res-out"), (f"{base}-vit-block0-ffn-inner", f"{base}-vit-block0-out"),
         (f"{base}-vit-block0-self-v", f"{base}-vit-block0-self-q")]
pairs = [p for p in pairs if all(n in parsed for n in p)]
fig, axes = plt.subplots(2, len(pairs), figsize=(2.2 * len(pairs), 4.4), squeeze=False)
size = max(fm.shape(n)[1] for p in pairs for n in p)
for col, (increment, output) in enumerate(pairs):
    show(axes[0, col], increment, size, f"increment: {parsed[increment].kind}")
    show(axes[1, col], output, size, f"beside it: {parsed[output].kind}")
fig.suptitle(f"{model} {short(base)} — {image_id}", fontsize=8)
theme.save(fig, f"{out_dir}/fig16_increments_{model}")

# %% [markdown]
# ## Figure 17: every inter-module activation of one resolution, in forward order

# %%
members = resolution_members(layers, "up", level, ("res-out", "vit-out", "upsampler-out"))
fig = plt.figure(figsize=(1.5 * len(members), 4.2))
grid = fig.add_gridspec(2, len(members), height_ratios=[1, 1.1])
size = max(fm.shape(n)[1] for n in members)
for col, name in enumerate(members):
    show(fig.add_subplot(grid[0, col]), name, size, short(name).split(" ", 2)[-1])
ax = fig.add_subplot(grid[1, :])
ax.plot(range(len(members)), [numbers.loc[n, "granularity"] for n in members], "o-", label="granularity")
ax.plot(range(len(members)), [numbers.loc[n, "noise_share"] for n in members], "s--", label="noise share")
ax.set_xticks(range(len(members)), [short(n).split(" ", 2)[-1] for n in members], fontsize=6, rotation=30)
ax.set_ylim(0, None)
ax.legend(fontsize=7)
fig.suptitle(f"{model} up-level{level}: coarse → fine within one resolution — {image_id}", fontsize=8)
theme.save(fig, f"{out_dir}/fig17_resolution_{model}")

# %% [markdown]
# ## Figure 18: the ViTs of one resolution

# %%
repeats = sorted({parsed[n].repeat for n in layers if parsed[n].stage == "up" and parsed[n].level == level
                  and parsed[n].block is not None})
grid_rows = []
for r in repeats:
    vit = [n for n in layers if parsed[n].stage == "up" and parsed[n].level == level and parsed[n].repeat == r
           and (parsed[n].block is not None or parsed[n].kind == "vit-out")]
    outs = [n for n in vit if parsed[n].kind == "block-out"]
    # With one basic block per ViT (SD1.5) show its internal activations instead of a single block output.
    grid_rows.append(outs if len(outs) > 1 else [n for n in vit if parsed[n].kind in
                                                  ("self-q", "self-k", "cross-q", "block-out", "vit-out")])
n_cols = max(len(r) for r in grid_rows)
fig, axes = plt.subplots(len(grid_rows) + 1, n_cols, figsize=(1.6 * n_cols, 1.7 * (len(grid_rows) + 1)), squeeze=False)
for ax in axes.flat:
    ax.axis("off")
size = max(fm.shape(n)[1] for row in grid_rows for n in row)
for r, row in enumerate(grid_rows):
    for c, name in enumerate(row):
        axes[r, c].axis("on")
        show(axes[r, c], name, size, short(name).split(" ", 2)[-1])
ax = fig.add_subplot(len(grid_rows) + 1, 1, len(grid_rows) + 1)
offset = 0
for r, row in zip(repeats, grid_rows):
    ax.plot(range(offset, offset + len(row)), [numbers.loc[n, "granularity"] for n in row], "o-", label=f"ViT repeat{r}")
    offset += len(row)
ax.set_xlabel("activation inside the resolution's ViTs (forward order)")
ax.set_ylabel("granularity")
ax.legend(fontsize=6)
fig.suptitle(f"{model} up-level{level}: the ViTs of one resolution — {image_id}", fontsize=8)
theme.save(fig, f"{out_dir}/fig18_vits_{model}")
