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
# # Table 2 (left): semantic segmentation with mmsegmentation, mIoU (%)
# Each named layer set (legacy = the output of each up-stage resolution, practical = "Ours", amalgamation = the
# Ours-XL-t add-on) of each model of the profile, and the multi-model run, as a UPerHead segmentor on frozen
# activations at t = 50 (paper §2.9), single-scale mIoU on the validation split, beside the paper's Table 2 (left)
# (ADE20K or Cityscapes column, by the dataset's layout) and the constant-class baseline (most frequent training
# class everywhere). Reads `results/` only (and the paper's numbers shipped with diffact).
#
# Two numbers per run: **last**, the model after the last iteration (its validation, which is also the test), and
# **best**, the highest of the validations during training (every 2000 iterations in the paper's configs, every 100
# in the demo's; the run's `.history.csv` has them all) with its iteration. Which one the paper's column compares
# with, the paper does not say. Its code (GDF: `segmentation/train.py` only trains; `configs/ade_sdxl.py` and the
# others validate every 2000 of 80k iterations; no best-checkpoint selection, no separate test) leaves the numbers
# in those validation logs: **last** compares with the paper if it reports the final model, **best** if it reports
# the highest validation, as its correspondence code does (the maximum over evaluations, docs/paper.md §2.8).

# %% tags=["parameters"]
plan = []  # [{"dataset", "kind", "model", "family", "layer_set", "unavailable", "csv", "history", "baseline", ...}]
out_stem = "paper_figures/demo/table2_left"

# %%
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from diffact.utils.io import write_csv, write_text

with resources.as_file(resources.files("diffact.data").joinpath("reference", "paper_table2_left.csv")) as path:
    paper = pd.read_csv(path, comment="#")
paper_by_set = {(r.family, r.layer_set): r for r in paper.itertuples() if isinstance(r.family, str)}
paper_by_method = {r.method: r for r in paper.itertuples()}
DATASET_NAMES = {"ade20k": "ADE20K", "cityscapes": "Cityscapes"}


# %%
def paper_row(entry):
    if entry["model"] == "combined":
        return paper_by_method.get(entry.get("paper_method", ""))
    return paper_by_set.get((entry["family"], entry["layer_set"]))


def baseline(path):
    return pd.read_csv(path).iloc[0] if path and Path(path).is_file() else None


rows = []
for entry in plan:
    ref = paper_row(entry)
    kind = entry["kind"]
    row = {"dataset": entry["dataset"], "kind": kind, "model": entry["model"], "family": entry["family"],
           "layer_set": entry["layer_set"], "paper_method": ref.method if ref is not None else "",
           "channels": np.nan, "level_channels": "", "iters": np.nan, "sec_per_iter": np.nan,
           "cpu_sec_per_iter": np.nan, "miou": np.nan, "miou_best": np.nan, "best_iter": np.nan,
           "validations": np.nan, "macc": np.nan, "aacc": np.nan,
           "paper_miou": getattr(ref, kind) if ref is not None else np.nan,
           "note": entry.get("unavailable") or entry.get("note", "")}
    if not entry.get("unavailable"):
        run = pd.read_csv(entry["csv"]).iloc[0]
        row.update({k: run[k] for k in ("channels", "level_channels", "iters", "sec_per_iter", "cpu_sec_per_iter",
                                         "miou", "macc", "aacc")})
        # (a run CSV written before runs kept their validation history has no best)
        row.update({k: run.get(k, np.nan) for k in ("miou_best", "best_iter")})
        history = entry.get("history")
        row["validations"] = len(pd.read_csv(history)) if history and Path(history).is_file() else np.nan
    if ref is None:
        row["note"] = "; ".join(filter(None, [row["note"], "no paper row for this set"]))
    rows.append(row)
ours = pd.DataFrame(rows)

base_rows = []
for dataset, kind, path in dict.fromkeys((e["dataset"], e["kind"], e.get("baseline")) for e in plan):
    b = baseline(path)
    if b is not None:
        base_rows.append({"dataset": dataset, "kind": kind, "model": "constant class", "layer_set": "",
                          "miou": b["miou"], "macc": b["macc"], "aacc": b["aacc"],
                          "note": f"predicts '{b['class_name']}' ({100 * b['train_share']:.0f}% of training pixels)"})
baselines = pd.DataFrame(base_rows)

# Paper rows with no run here: prior work, and sets the profile does not run.
covered = {m for m in ours["paper_method"] if m} if len(ours) else set()
rest = paper[~paper["method"].isin(covered)]
paper_only = pd.DataFrame({"model": "paper only", "paper_method": rest["method"].values,
                           "family": rest["family"].fillna("").values, "layer_set": rest["layer_set"].fillna("").values,
                           "paper_miou_ade20k": rest["ade20k"].values,
                           "paper_miou_cityscapes": rest["cityscapes"].values,
                           "note": rest["note"].fillna("").values})
table = pd.concat([ours, baselines, paper_only], ignore_index=True)
write_csv(f"{out_stem}.csv", table)
table


# %%
def fmt(value, digits=1) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def label(row) -> str:
    if row["model"] == "paper only":
        return str(row["paper_method"])
    if row["model"] == "constant class":
        return f"constant class ({row['dataset']})"
    name = f"{row['model']} / {row['layer_set']}" if row["model"] != "combined" else f"combined {row['layer_set']}"
    return f"{name} ({row['paper_method']})" if row.get("paper_method") else name


kinds = list(dict.fromkeys(e["kind"] for e in plan)) or ["ade20k"]
shown = pd.DataFrame({
    "method": [label(r) for _, r in table.iterrows()],
    "dataset": table["dataset"].fillna(""),
    "channels": ["" if pd.isna(c) else str(int(c)) for c in table["channels"]],
    "iters": ["" if pd.isna(i) else str(int(i)) for i in table["iters"]],
    "s/iter": [fmt(s, 2) if not pd.isna(s) else "" for s in table["sec_per_iter"]],
    "CPU s/iter": [fmt(s, 2) if not pd.isna(s) else "" for s in table["cpu_sec_per_iter"]],
    "ours, last (mIoU %)": [fmt(m) for m in table["miou"]],
    "ours, best (mIoU %)": [fmt(m) if pd.isna(i) else f"{fmt(m)} (iter {int(i)} of {int(n) if not pd.isna(n) else '?'})"
                            for m, i, n in zip(table["miou_best"], table["best_iter"], table["validations"])],
    **{f"paper, {DATASET_NAMES[k]} (mIoU %)": [
        fmt(r[f"paper_miou_{k}"]) if r["model"] == "paper only"
        else (fmt(r["paper_miou"]) if r.get("kind") == k else "") for _, r in table.iterrows()] for k in kinds},
    "note": table["note"].fillna(""),
})


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table without the optional `tabulate` dependency."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


datasets = ", ".join(f"`{d}` ({DATASET_NAMES[k]} layout)" for d, k in dict.fromkeys((e["dataset"], e["kind"])
                                                                                    for e in plan)) or "–"
title = (f"Table 2 (left): segmentation mIoU (%), ours on {datasets}, single scale, beside the paper's "
         f"{' / '.join(DATASET_NAMES[k] for k in kinds)} numbers")
which = ("*last*: the model after the last iteration; *best*: the highest validation during training (iteration, of "
         "how many validations). The paper does not say which of the two its numbers are: its code validates every "
         "2000 of 80k iterations and selects no checkpoint, so *last* compares with it if it reports the final model, "
         "*best* if it reports the highest validation (as its correspondence numbers are).")
write_text(f"{out_stem}.md", f"# {title}\n\n{markdown(shown)}\n\n{which}\n")
print(markdown(shown))

# %%
tex = shown.drop(columns="note").to_latex(index=False, escape=True, column_format="ll" + "r" * (len(shown.columns) - 3))
write_text(f"{out_stem}.tex", tex.replace("–", "--"))
