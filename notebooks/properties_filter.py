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
# # The qualitative filter (paper §5.1) against the paper's Tables 4–6
# `diffact qualitative-filter` applies the paper's rules (early half of the up-stage, no self-attention q/k there,
# late-half q/k kept, no increments; `diffact.analysis.filter`) to each model's candidate pool and compares the
# survivors with the activations the paper's Tables 4–5 (SDXL, 279 → 63) and Table 6 (SD1.5 → 33) list.
# Reads `results/` only.

# %% tags=["parameters"]
reports = ["results/properties/filter/sdxl_vs_paper.csv"]
out_stem = "paper_figures/demo/properties_filter"

# %%
import pandas as pd

from diffact.utils.io import write_csv, write_text

table = pd.concat([pd.read_csv(r) for r in reports], ignore_index=True)
write_csv(f"{out_stem}.csv", table)
columns = ["family", "candidates", "kept", "paper_tables", "paper_kept", "in_both", "only_ours", "only_paper", "identical"]
lines = ["# Qualitative filter vs the paper's Tables 4-6", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for _, r in table.iterrows()]
write_text(f"{out_stem}.md", "\n".join(lines) + "\n")
print("\n".join(lines))
