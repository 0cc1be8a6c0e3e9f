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
# # Demo: nearest-neighbour PCK@0.1 per activation (Figure 4a analogue)
# Trained demo model vs the same architecture with random weights vs raw-pixel patches, all scored with the
# paper's correspondence protocol (hard NN on cosine similarity, PCK pooled over keypoints, §2.8).
# Reads `results/` only.

# %% tags=["parameters"]
table = "results/correspondence/nn_pck_table.csv"
out_stem = "paper_figures/demo/demo_nn_pck"
alpha = 0.10

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from diffact.utils.io import write_csv, write_text
from diffact.viz import theme

theme.apply()
df = pd.read_csv(table)
img, bbox = f"pck_img@{alpha:.2f}", f"pck_bbox@{alpha:.2f}"
cols = ["source", "model", "layer", "kind", "channels", "height", img, bbox, "n_keypoints"]
summary = df[cols].sort_values(["source", img], ascending=[True, False])
write_csv(f"{out_stem}.csv", summary)

# %%
best = summary.groupby("source", sort=False).head(5)
lines = [f"# Demo NN PCK@{alpha} (image / bbox thresholds)", "", "Top 5 activations per source:", "",
         "| source | layer | kind | C | PCK img | PCK bbox |", "|---|---|---|---|---|---|"]
lines += [f"| {r.source} | {r.layer} | {r.kind} | {r.channels} | {r[img]:.2f} | {r[bbox]:.2f} |" for _, r in best.iterrows()]
write_text(f"{out_stem}.md", "\n".join(lines) + "\n")
print("\n".join(lines))

# %%
models = df[df["kind"] != "pixels"]
fig, ax = plt.subplots(figsize=(10, 3.2))
sns.lineplot(data=models, x="forward_index", y=img, hue="source", marker="o", markersize=3, ax=ax)
for _, row in df[df["kind"] == "pixels"].iterrows():
    ax.axhline(row[img], color="grey", ls="--", lw=1, label=f"pixels ({row['layer']})")
ax.set_xlabel("activation (forward order)")
ax.set_ylabel(f"PCK@{alpha} (img)")
ax.legend(fontsize=7)
theme.save(fig, f"{out_stem}_forward")
