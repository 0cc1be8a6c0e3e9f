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
# # Demo models: training loss curves
# Reads the loss CSVs written by `diffact build-demo-model` (results/models/*.loss.csv).

# %% tags=["parameters"]
curves = []
out_stem = "paper_figures/demo/demo_loss_curves"

# %%
from pathlib import Path

import pandas as pd
import seaborn as sns

from diffact.viz import theme

theme.apply()
frames = []
for path in curves:
    frame = pd.read_csv(path)
    frame["model"] = Path(path).name.removesuffix(".loss.csv")
    frames.append(frame)
df = pd.concat(frames, ignore_index=True)
loss_col = "loss"
phase_col = next(c for c in ("component", "phase", "stage") if c in df.columns)
g = sns.relplot(data=df, x="step", y=loss_col, hue="model", col=phase_col, kind="line", height=2.8, aspect=1.3,
                facet_kws={"sharey": False, "sharex": False})
g.set(yscale="log")
theme.save(g.figure, out_stem)
