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
# # The three universal properties as numbers, along the forward order (paper §4; universality §4.4)
# One column per model (and the Fig 15 control U-Net): P1 noise share (variance explained by the diffusion-noise
# draw), P2 granularity (power-weighted spatial frequency of the map, in [0, 1]) and P3 locality (−Spearman ρ of
# feature similarity vs pixel distance among same-label pixels, minus the same index of the image's own pixels at
# that resolution). Definitions: `diffact.analysis.properties`.
# The paper shows these properties only qualitatively; the numbers are our proxies. Reads `results/` only.

# %% tags=["parameters"]
tables = ["results/properties/sd15-tiny/properties.csv"]
out_stem = "paper_figures/demo/properties_numbers"
summary_stem = "paper_figures/demo/properties_summary"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from diffact.analysis.plots import KIND_GROUPS, locality_column, per_layer, shade_resolutions, summary_row
from diffact.utils.io import write_csv, write_text
from diffact.viz import theme

theme.apply()
layers = pd.concat([per_layer(pd.read_csv(t)) for t in tables], ignore_index=True)
models = list(dict.fromkeys(layers["model"]))
palette = dict(zip(KIND_GROUPS, sns.color_palette(theme.PALETTE, len(KIND_GROUPS))))

# %%
p3 = locality_column(layers)
rows = [("noise_share", "P1 noise share"), ("granularity", "P2 granularity"),
        (p3, "P3 locality" + (" − pixels'" if p3 == "locality_excess" else ""))]
fig, axes = plt.subplots(len(rows), len(models), figsize=(4.2 * len(models), 7.5), squeeze=False, sharey="row")
for col, model in enumerate(models):
    sub = layers[(layers["model"] == model) & (layers["group"].isin(KIND_GROUPS))]
    for row, (column, label) in enumerate(rows):
        ax = axes[row, col]
        shade_resolutions(ax, sub, labels=(row == 0))
        sns.scatterplot(data=sub, x="forward_index", y=column, hue="group", hue_order=KIND_GROUPS, palette=palette,
                        s=12, ax=ax, legend=(row == 0 and col == len(models) - 1), zorder=3)
        ax.set_xlabel("activation (forward order)" if row == len(rows) - 1 else "")
        ax.set_ylabel(label if col == 0 else "")
        if row == 0:
            ax.set_title(model, pad=18)
if axes[0, -1].get_legend():
    sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None)
theme.save(fig, out_stem)

# %% [markdown]
# Summary per model: mean noise share of the inter-module activations per stage (P1 expects down > up-early and
# up-late > up-early), the mean within-resolution rank correlation of granularity with position, over all and over
# up-stage resolutions (P2 expects > 0), and mean locality excess per activation family (P3 expects self-attention
# q/k highest).

# %%
summary = pd.DataFrame([summary_row(layers[layers["model"] == m]) for m in models])
write_csv(f"{summary_stem}.csv", summary)
columns = list(summary.columns)
lines = ["# The three properties per model (demo proxies; see diffact.analysis.properties)", "",
         "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
for _, r in summary.iterrows():
    lines.append("| " + " | ".join(str(r[c]) if isinstance(r[c], str) else f"{r[c]:.3f}" for c in columns) + " |")
write_text(f"{summary_stem}.md", "\n".join(lines) + "\n")
print("\n".join(lines))
