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
# # Table 2 (right): label-scarce semantic segmentation, mIoU mean ± std over random splits
# Each named layer set (legacy = Baranchuk-style resolution outputs, practical = "Ours", amalgamation = the
# Ours-XL-t add-on) of each model of the profile, features concatenated, 10-MLP pixel-classifier ensemble
# (DDPM-seg protocol, paper §2.10) on the simple-scene dataset (paper: Horse-21), beside the paper's Table 2 (right).
# Reads `results/` only (and the paper's numbers shipped with diffact).

# %% tags=["parameters"]
plan = []  # [{"model", "family", "layer_set", "unavailable"}], one per (model, layer set) of the profile
results_dir = "results/scarce/table2"
dataset = "seg-simple"
out_stem = "paper_figures/demo/table2_right"

# %%
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from diffact.utils.io import write_csv, write_text

with resources.as_file(resources.files("diffact.data").joinpath("reference", "paper_table2.csv")) as path:
    paper = pd.read_csv(path, comment="#")
paper_by_set = {(r.family, r.layer_set): r for r in paper.itertuples() if isinstance(r.family, str)}
paper_by_method = {r.method: r for r in paper.itertuples()}

# %%
# One row per (model, layer set): our mean ± std and the paper's row for the same family and set.
rows = []
for entry in plan:
    family, layer_set = entry["family"], entry["layer_set"]
    # a combined entry (several models' stores, e.g. Ours-XL-t) names its paper row; a set alone is found by family
    ref = paper_by_method.get(entry.get("paper_method")) or paper_by_set.get((family, layer_set))
    row = {"model": entry["model"], "family": family, "layer_set": layer_set,
           "paper_method": ref.method if ref is not None else "", "channels": np.nan, "layers": "",
           "miou_mean": np.nan, "miou_std": np.nan, "n_splits": 0,
           "paper_miou_mean": ref.miou_mean if ref is not None else np.nan,
           "paper_miou_std": ref.miou_std if ref is not None else np.nan, "note": entry.get("unavailable", "")}
    if not entry.get("unavailable"):
        summary = json.loads(Path(results_dir, entry["model"], f"{layer_set}.json").read_text())
        row.update(channels=summary["channels"], layers=summary["activation"], miou_mean=summary["miou_mean"],
                   miou_std=summary["miou_std"], n_splits=summary["n_splits"])
        parts = " + ".join(f"{m} {ls}" for m, ls in entry.get("parts", []))
        row["note"] = "; ".join(filter(None, [
            parts, entry.get("note", ""),
            f"{dataset}, {summary['size']}² features ({summary.get('upsample', 'bilinear')}), "
            f"pixel rate {summary['pixel_rate']}"]))
    if ref is None:
        row["note"] = "; ".join(filter(None, [row["note"], "no paper row for this set alone"]))
    rows.append(row)
ours = pd.DataFrame(rows)

# Paper rows with no counterpart here: prior work (and a combined set the profile does not configure).
covered = {r["paper_method"] for r in rows if r["paper_method"]}
rest = paper[~paper["method"].isin(covered)]
paper_only = pd.DataFrame({
    "model": "paper only", "family": rest["family"].fillna("").values, "layer_set": rest["layer_set"].fillna("").values,
    "paper_method": rest["method"].values, "paper_miou_mean": rest["miou_mean"].values,
    "paper_miou_std": rest["miou_std"].values,
    "note": [(n if isinstance(n, str) else "") for n in rest["note"]],
})
prior = rest["group"].eq("prior work").values
table = pd.concat([paper_only[prior], ours, paper_only[~prior]], ignore_index=True)
write_csv(f"{out_stem}.csv", table)
table


# %%
def pm(mean, std) -> str:
    return "–" if pd.isna(mean) else f"{mean:.1f} ± {std:.1f}"


def label(row) -> str:
    if row["model"] == "paper only":
        return str(row["paper_method"])
    name = f"{row['model']} / {row['layer_set']}"
    return f"{name} ({row['paper_method']})" if row["paper_method"] else name


shown = pd.DataFrame({
    "method": [label(r) for _, r in table.iterrows()],
    "channels": ["" if pd.isna(c) else str(int(c)) for c in table["channels"]],
    "ours (mIoU %)": [pm(m, s) for m, s in zip(table["miou_mean"], table["miou_std"])],
    "paper, Horse-21 (mIoU %)": [pm(m, s) for m, s in zip(table["paper_miou_mean"], table["paper_miou_std"])],
    "note": table["note"].fillna(""),
})
splits = sorted({int(n) for n in table["n_splits"].dropna() if n})


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table without the optional `tabulate` dependency."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


title = (f"Table 2 (right): label-scarce mIoU (%), ours on `{dataset}` ({'/'.join(map(str, splits)) or '–'} "
         "random splits) beside the paper's Horse-21 (5 random splits)")
write_text(f"{out_stem}.md", f"# {title}\n\n{markdown(shown)}\n")
print(markdown(shown))

# %%
tex = shown.drop(columns="note").to_latex(index=False, escape=True, column_format="lrcc")
write_text(f"{out_stem}.tex", tex.replace("±", r"$\pm$").replace("–", "--"))
