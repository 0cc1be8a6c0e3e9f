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
out_stem = "paper_figures/fig01_correspondence"
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
fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.0), sharey=False)
order = ["conventional", "ours"]
for ax, source in zip(axes, ["paper", "ours"]):
    part = bars[bars["source"] == source]
    sns.barplot(data=part, x="model", y="pck", hue="activations", hue_order=order, ax=ax)
    ax.set_title("paper (SPair-71k)" if source == "paper" else "ours (this profile)")
    ax.set_xlabel("")
    ax.set_ylabel(f"PCK@0.1 ({metric.split('_')[1].split('@')[0]})")
    models = list(dict.fromkeys(part["model"]))
    width = 0.8 / len(order)
    for i, model in enumerate(models):
        for j, act in enumerate(order):
            hit = part[(part["model"] == model) & (part["activations"] == act)]
            x = i - 0.4 + width * (j + 0.5)
            if hit.empty or pd.isna(hit["pck"].iloc[0]):
                ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
            else:
                ax.text(x, hit["pck"].iloc[0], f"{hit['pck'].iloc[0]:.1f}", ha="center", va="bottom", fontsize=7)
    ax.legend(fontsize=7, title=None)
fig.tight_layout()
theme.save(fig, out_stem)
