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
# # The three properties, U-Nets vs DiTs (beyond the paper; issue #17)
# The paper calls its three properties universal but shows them on U-Nets only. A DiT has one resolution and no
# down/up stages, so each property is defined along what both architectures have: the forward order (depth).
# Definitions (the numbers themselves: `diffact.analysis.properties`):
# * **P1, noise share** — per activation, as for U-Nets (the share of feature variance that changes with the
#   diffusion-noise draw). U-Net expectation: high in the down-stage, low early in the up-stage, higher again late.
# * **P2, granularity change** — per activation the power-weighted mean DCT frequency, as for U-Nets. The U-Net
#   property is a rise *within a resolution*; a DiT keeps one resolution through its depth, so for it the same
#   statistic (Spearman ρ of granularity with position over the trunk activations) runs along the whole depth.
# * **P3, locality** — per activation, as for U-Nets: −Spearman ρ(similarity, distance) over same-label pixel
#   pairs, minus the image's own pixels' value on the same pairs (`locality_excess`).
# The *trunk* of a model is what runs between its modules: ResModule/ViT outputs and samplers in a U-Net, block
# outputs in a DiT. Reads `results/` only.

# %% tags=["parameters"]
tables = ["results/properties/sd15-tiny/properties.csv"]
out_stem = "paper_figures/demo/properties_unet_vs_dit"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from diffact.analysis.plots import locality_column, per_layer, trunk_activations, within_resolution_trend
from diffact.analysis.properties import rank_correlation
from diffact.utils.io import write_csv, write_text
from diffact.viz import theme

theme.apply()
layers = pd.concat([per_layer(pd.read_csv(t)) for t in tables], ignore_index=True)
layers["architecture"] = layers.groupby("model")["stage"].transform(lambda s: "DiT" if (s == "dit").any() else "U-Net")
trunk = trunk_activations(layers).copy()
trunk["depth"] = trunk.groupby("model")["forward_index"].transform(lambda s: (s - s.min()) / max(s.max() - s.min(), 1))
p3 = locality_column(layers)
PROPERTIES = [("noise_share", "P1 noise share"), ("granularity", "P2 granularity"),
              (p3, "P3 locality" + (" − pixels'" if p3 == "locality_excess" else ""))]
# the NN PCK screen (Fig 4 analogue) along the same trunk, where the profile screens correspondence
SHOWN = PROPERTIES + ([("nn_pck", "NN PCK@0.1 img (%)")] if trunk["nn_pck"].notna().any() else [])

# %%
rows = []
for model, sub in trunk.groupby("model", sort=False):
    arch = sub["architecture"].iloc[0]
    early, late = sub[sub["depth"] <= 0.5], sub[sub["depth"] > 0.5]
    for column, label in SHOWN:
        values = sub[column].to_numpy(float)
        ok = ~np.isnan(values)
        rows.append({"model": model, "architecture": arch, "property": label.split(" ")[0] if column != "nn_pck"
                     else "NN PCK", "measure": column,
                     "trunk_activations": int(ok.sum()), "mean": float(np.nanmean(values)) if ok.any() else np.nan,
                     "first_half": float(early[column].mean()), "second_half": float(late[column].mean()),
                     "depth_trend": rank_correlation(sub["depth"].to_numpy(float)[ok], values[ok])})
    every = layers[layers["model"] == model]
    # P2 as the paper states it: the rise of granularity within each resolution (a DiT's one resolution: its depth)
    rows.append({"model": model, "architecture": arch, "property": "P2", "measure": "granularity within-resolution ρ",
                 "trunk_activations": int(len(sub)), "mean": within_resolution_trend(every), "first_half": np.nan,
                 "second_half": np.nan, "depth_trend": np.nan})
    # P3 by activation family over every activation (not only the trunk): self-attention q/k vs the rest
    for group in ("self-attn q/k", "cross-attn q", "block out", "inter-module"):
        values = every.loc[every["group"] == group, p3]
        if len(values):
            rows.append({"model": model, "architecture": arch, "property": "P3", "measure": f"{p3} {group}",
                         "trunk_activations": int(values.notna().sum()), "mean": float(values.mean()),
                         "first_half": np.nan, "second_half": np.nan, "depth_trend": np.nan})
comparison = pd.DataFrame(rows)
write_csv(f"{out_stem}.csv", comparison)

# %%
fig, axes = plt.subplots(1, len(SHOWN), figsize=(4.2 * len(SHOWN), 3.2))
styles = {"U-Net": "-", "DiT": "--"}
for ax, (column, label) in zip(axes, SHOWN):
    for model, sub in trunk.groupby("model", sort=False):
        arch = sub["architecture"].iloc[0]
        ax.plot(sub["depth"], sub[column], styles[arch], marker="o", ms=2.5, lw=1, label=f"{model} ({arch})")
    ax.set_xlabel("trunk position (0 = first, 1 = last)")
    ax.set_title(label)
axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
theme.save(fig, out_stem)

# %%
lines = ["# The three properties along depth, U-Nets vs DiTs (demo proxies; definitions in the notebook)", "",
         "| model | architecture | property | measure | n | mean | first half | second half | depth trend ρ |",
         "|---|---|---|---|---|---|---|---|---|"]
fmt = lambda v: "–" if pd.isna(v) else f"{v:.3f}"  # noqa: E731
for _, r in comparison.iterrows():
    lines.append(f"| {r.model} | {r.architecture} | {r.property} | {r.measure} | {r.trunk_activations} | "
                 f"{fmt(r['mean'])} | {fmt(r.first_half)} | {fmt(r.second_half)} | {fmt(r.depth_trend)} |")
write_text(f"{out_stem}.md", "\n".join(lines) + "\n")
print("\n".join(lines))
