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
# # Tables 4–6 analogue: each filtered activation alone, ranked per resolution
# Label-scarce mIoU of one activation alone on the simple- and the complex-scene dataset (paper §5.2; paper:
# Horse-21 / Bedroom-28), for every activation the qualitative filter (§5.1) keeps, ranked within its resolution
# (1 = best), with the paper's Tables 4–6 values and ranks beside ours where the activation id exists in the paper's
# table. Marks the activations of the composed generic / specific sets (Table 3). Reads `results/` only.

# %% tags=["parameters"]
rank = "results/compare/sdxl-tiny/rank.csv"
composition = "results/compare/sdxl-tiny/composition.csv"
filter_report = "results/compare/sdxl-tiny/filter_vs_paper.csv"
model = "sdxl-tiny"
paper_model = "sdxl"
out_stem = "paper_figures/demo/table4_6_sdxl-tiny"

# %%
import numpy as np
import pandas as pd

from diffact.analysis.compare import rank_agreement
from diffact.utils.io import write_csv, write_text

ranked = pd.read_csv(rank)
composed = pd.read_csv(composition)
pool = pd.read_csv(filter_report).iloc[0]
for scene in ("simple", "complex"):
    for col in (f"paper_{scene}", f"paper_rank_{scene}"):
        if col not in ranked:
            ranked[col] = np.nan
sets = composed.groupby("activation")["set"].agg(lambda s: "+".join(sorted(s)))
ranked["composed"] = ranked["activation"].map(sets).fillna("")
table = ranked[["resolution", "activation", "channels", "simple", "simple_std", "rank_simple", "paper_simple",
                "paper_rank_simple", "complex", "complex_std", "rank_complex", "paper_complex", "paper_rank_complex",
                "composed"]]
write_csv(f"{out_stem}.csv", table)
print(f"{model}: the qualitative filter kept {pool['kept']} of {pool['candidates']} candidates "
      f"(paper pool of {pool['paper_kept']} for {pool['family']}; {pool['in_both']} of ours share a paper id)")
table

# %% [markdown]
# ## Best activation per resolution, ours beside the paper's, and rank agreement (Spearman over shared ids)

# %%
best = []
for res, group in ranked.groupby("resolution", sort=False):
    row = {"resolution": res, "activations": len(group)}
    for scene in ("simple", "complex"):
        ours = group.dropna(subset=[scene]).sort_values(scene, ascending=False)
        row[f"ours best {scene}"] = f"{ours.iloc[0]['activation']} ({ours.iloc[0][scene]:.2f})" if len(ours) else "–"
        ref = group.dropna(subset=[f"paper_{scene}"]).sort_values(f"paper_{scene}", ascending=False)
        row[f"paper best {scene} (shared ids)"] = (f"{ref.iloc[0]['activation']} ({ref.iloc[0][f'paper_{scene}']:.2f})"
                                                  if len(ref) else "–")
    best.append(row)
best = pd.DataFrame(best)
agreement = rank_agreement(ranked) if paper_model != "none" else pd.DataFrame()
print(best.to_string(index=False))
print(agreement.to_string(index=False) if len(agreement) else "no paper values beside ours")


# %%
def num(value, digits=2) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def rk(value) -> str:
    return "" if pd.isna(value) else f" ({int(value)})"


shown = pd.DataFrame({
    "activation": table["activation"],
    "C": table["channels"].map(lambda c: "" if pd.isna(c) else str(int(c))),
    "simple": [f"{num(v)} ± {num(s)}{rk(r)}" if not pd.isna(v) else "–"
               for v, s, r in zip(table["simple"], table["simple_std"], table["rank_simple"])],
    "paper simple": [num(v) + rk(r) for v, r in zip(table["paper_simple"], table["paper_rank_simple"])],
    "complex": [f"{num(v)} ± {num(s)}{rk(r)}" if not pd.isna(v) else "–"
                for v, s, r in zip(table["complex"], table["complex_std"], table["rank_complex"])],
    "paper complex": [num(v) + rk(r) for v, r in zip(table["paper_complex"], table["paper_rank_complex"])],
    "set": table["composed"],
})


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


md = [f"# Tables 4–6 analogue: {model} (paper columns: {paper_model})", "",
      "mIoU (%) of one activation alone, mean ± std over random splits, (rank within the resolution); "
      "the paper's value and rank beside ours where the id exists in the paper's table.", "",
      f"Qualitative filter: {pool['kept']} of {pool['candidates']} candidates kept "
      f"(paper: {pool['paper_kept']} in Table{'s' if '+' in str(pool['paper_tables']) else ''} "
      f"{pool['paper_tables']}). Paper ranks are within the paper's table, ours within this model's activations.", ""]
for res, group in shown.groupby(table["resolution"], sort=False):
    md += [f"## {res}", "", markdown(group), ""]
md += ["## Best per resolution", "", markdown(best), ""]
if len(agreement):
    md += ["## Rank agreement with the paper (Spearman)", "",
           markdown(agreement.assign(spearman=agreement["spearman"].map(num))), ""]
write_text(f"{out_stem}.md", "\n".join(md))

# %%
# LaTeX: one block per resolution (a \midrule and a row naming the resolution between blocks).
body = shown.to_latex(index=False, escape=True, column_format="lrccccl")
lines = body.splitlines()
head_end = lines.index(r"\midrule")
rows = lines[head_end + 1: lines.index(r"\bottomrule")]
out, start = lines[: head_end + 1], 0
for res, group in table.groupby("resolution", sort=False):
    if start:
        out.append(r"\midrule")
    out.append(rf"\multicolumn{{{shown.shape[1]}}}{{l}}{{\textit{{{res}}}}} \\")
    out += rows[start: start + len(group)]
    start += len(group)
out += lines[lines.index(r"\bottomrule"):]
write_text(f"{out_stem}.tex", "\n".join(out).replace("±", r"$\pm$").replace("–", "--") + "\n")
