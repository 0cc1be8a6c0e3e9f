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
# # Table 3: generic vs specific feature sets on simple and complex scenes
# *Generic*: per resolution the best activation for complex and for simple scenes, then filled within the channel
# budget (`diffact.analysis.compare.compose_generic`; on the paper's own Tables 4–6 this rule gives exactly Ours-XL,
# the paper's "standard SDXL solution"). *Specific*: chosen from the simple-scene ranking only, the optimal and the
# slightly sub-optimal activation per resolution, same budget (`compose_specific`). Both are then run as one set
# (features concatenated) on the simple and the complex dataset; the paper's Table 3 (SDXL, Horse-21 / Bedroom-28)
# is beside ours. Reads `results/` only (and the paper's numbers shipped with diffact).

# %% tags=["parameters"]
models = ["sdxl-tiny"]
families = {"sdxl-tiny": "sdxl"}  # model → family: the paper's Table 3 is for SDXL only
compare_dir = "results/compare"
out_stem = "paper_figures/table3"

# %%
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from diffact.analysis.compare import generic_vs_specific
from diffact.utils.io import write_csv, write_text

with resources.as_file(resources.files("diffact.data").joinpath("reference", "paper_table3.csv")) as path:
    paper = pd.read_csv(path, comment="#")
SETTINGS, SCENES = ("generic", "specific"), ("simple", "complex")

# %%
frames, sets = [], []
for model in models:
    runs = []
    for setting in SETTINGS:
        for scene in SCENES:
            summary = json.loads(Path(compare_dir, model, "table3", f"{setting}-{scene}.json").read_text())
            runs.append({"setting": setting, "scene": scene, "miou_mean": summary["miou_mean"],
                         "miou_std": summary["miou_std"], "channels": summary["channels"],
                         "n_splits": summary["n_splits"], "layers": summary["activation"]})
    runs = pd.DataFrame(runs)
    table = generic_vs_specific(runs)  # ours per scene (+ specific − generic); paper columns replaced below
    composition = pd.read_csv(Path(compare_dir, model, "composition.csv"))
    ref = paper[paper["family"] == families.get(model)].set_index("setting")  # empty: no paper row
    for scene in SCENES:
        std = runs.pivot_table(index="setting", columns="scene", values="miou_std", aggfunc="first")
        table[f"{scene}_std"] = table["setting"].map(std[scene]) if scene in std else np.nan
        table[f"paper_{scene}"] = table["setting"].map(ref[scene]).astype(float)
        delta = table["setting"] == "specific - generic"
        if delta.any() and {"generic", "specific"} <= set(ref.index):
            table.loc[delta, f"paper_{scene}"] = ref.at["specific", scene] - ref.at["generic", scene]
    table.insert(0, "model", model)
    table["channels"] = table["setting"].map(runs.groupby("setting")["channels"].first())
    table["layers"] = table["setting"].map(runs.groupby("setting")["layers"].first())
    table["n_splits"] = table["setting"].map(runs.groupby("setting")["n_splits"].first())
    frames.append(table)
    sets.append(composition.assign(model=model))
result = pd.concat(frames, ignore_index=True)
result = result[["model", "setting", "channels", "simple", "simple_std", "paper_simple", "complex", "complex_std",
                 "paper_complex", "n_splits", "layers"]]
write_csv(f"{out_stem}.csv", result)
result

# %% [markdown]
# The composed sets (reason = why the composition rule picked each activation):

# %%
composed = pd.concat(sets, ignore_index=True)
composed


# %%
def num(value, digits=2) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def cell(mean, std) -> str:
    return "–" if pd.isna(mean) else (f"{mean:.2f} ± {std:.2f}" if not pd.isna(std) else f"{mean:+.2f}")


shown = pd.DataFrame({
    "model": result["model"],
    "setting": result["setting"],
    "C": result["channels"].map(lambda c: "" if pd.isna(c) else str(int(c))),
    "simple (ours)": [cell(m, s) for m, s in zip(result["simple"], result["simple_std"])],
    "simple (paper)": result["paper_simple"].map(num),
    "complex (ours)": [cell(m, s) for m, s in zip(result["complex"], result["complex_std"])],
    "complex (paper)": result["paper_complex"].map(num),
})


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


splits = "/".join(map(str, sorted({int(n) for n in result["n_splits"].dropna()})))
md = ["# Table 3: generic vs specific sets, label-scarce mIoU (%)", "",
      f"Ours: mean ± std over {splits} random splits on the profile's simple / complex datasets; paper: SDXL on "
      "Horse-21 / Bedroom-28 (no std given).", "", markdown(shown), "", "## Composed sets", "",
      markdown(composed[["model", "set", "activation", "resolution", "channels", "reason", "simple", "complex"]]
               .assign(simple=lambda f: f["simple"].map(num), complex=lambda f: f["complex"].map(num))), ""]
write_text(f"{out_stem}.md", "\n".join(md))
print("\n".join(md))

# %%
tex = shown.to_latex(index=False, escape=True, column_format="llrcccc")
write_text(f"{out_stem}.tex", tex.replace("±", r"$\pm$").replace("–", "--"))
