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
# # Figure 1 (lower bars): conventional vs our activations, PCK@0.1 on SPair-71k
# The paper's bars (SDv1.5 66.7 → 69.8, SDXL 59.2 → 75.2; equal to Table 1's bbox column) beside ours:
# `legacy` = the conventional (inter-module) activations, `practical` = the paper's choice, both with the
# trained aggregation under the paper's protocol (max over checkpoints on val-360). Entries the profile
# cannot run are marked "n/a". Reads `results/` only (and the paper's numbers shipped with diffact).

# %% tags=["parameters"]
table = "results/correspondence/table1.csv"
out_stem = "paper_figures/demo/fig01_correspondence"
metric = "pck_bbox@0.10"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffact.tasks.correspondence.table1 import paper_reference
from diffact.utils.io import write_csv
from diffact.viz import theme

theme.apply()
df = pd.read_csv(table)
paper = paper_reference("paper_figure1.csv")
ACTIVATIONS = {"legacy": "conventional", "practical": "ours"}

# %%
ours = df[(df["method"] == "trained") & (df["protocol"] == "paper") & df["layer_set"].isin(list(ACTIVATIONS))
          & ~df["models"].astype(str).str.contains(r"\+")]
bars = pd.concat([
    pd.DataFrame({"source": "paper", "model": paper["model"], "activations": paper["activations"],
                  "pck": paper[metric], "status": "ok"}),
    pd.DataFrame({"source": "ours", "model": ours["models"], "activations": ours["layer_set"].map(ACTIVATIONS),
                  "pck": ours[metric], "status": ours["status"]}),
], ignore_index=True)
write_csv(f"{out_stem}.csv", bars)
bars

# %%
# Bars drawn by hand so a missing (n/a) bar keeps its slot beside the other one.
fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2))
order = ["conventional", "ours"]
colors = dict(zip(order, sns.color_palette(theme.PALETTE, len(order))))
width = 0.38
for ax, source in zip(axes, ["paper", "ours"]):
    part = bars[bars["source"] == source]
    models = list(dict.fromkeys(part["model"]))
    top = np.nanmax(part["pck"].to_numpy(dtype=float)) if part["pck"].notna().any() else 1.0
    for j, act in enumerate(order):
        for i, model in enumerate(models):
            hit = part[(part["model"] == model) & (part["activations"] == act)]
            value = float(hit["pck"].iloc[0]) if len(hit) else np.nan
            x = i + (j - 0.5) * width
            if np.isnan(value):
                ax.text(x, 0.02 * top, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
                continue
            ax.bar(x, value, width, color=colors[act], label=act if i == 0 or act not in ax.get_legend_handles_labels()[1] else None)
            ax.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(models)), models)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, top * 1.15)
    ax.set_title("paper (SPair-71k)" if source == "paper" else "ours (this profile)")
    ax.set_ylabel(f"PCK@0.1 ({metric.split('_')[1].split('@')[0]})")
handles = [plt.Rectangle((0, 0), 1, 1, color=colors[a]) for a in order]
fig.legend(handles, [f"{a} activations" for a in order], loc="lower center", ncol=2, fontsize=8, frameon=False)
fig.tight_layout(rect=(0, 0.08, 1, 1))
theme.save(fig, out_stem)
