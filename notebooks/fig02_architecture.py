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
# # Figure 2: the U-Net's stages, resolutions and modules, and the inside of one ViT basic block
# Drawn from the model's actual block structure (`diffact.viz.architecture`): the U-Net is built from its config on
# the meta device (no weights) and walked by the activation catalog. Each box is a module; ViT boxes show the number
# of basic blocks, every box its channels; each column is one resolution (fraction of the latent size).

# %% tags=["parameters"]
model_ref = "results/models/sdxl-tiny"
model = "sdxl-tiny"
out_stem = "paper_figures/demo/fig02_architecture_sdxl-tiny"

# %%
import matplotlib.pyplot as plt

from diffact.models.configs import build_unet
from diffact.viz import theme
from diffact.viz.architecture import block_kinds, draw_block, draw_unet, unet_columns, unet_config

theme.apply()
unet = build_unet(unet_config(model_ref), device="meta")
columns = unet_columns(unet)
fig, (left, right) = plt.subplots(1, 2, figsize=(2 + 1.0 * len(columns), 4.2),
                                  gridspec_kw={"width_ratios": [len(columns), 1.6]})
draw_unet(left, columns, title=f"{model}: down → mid → up")
draw_block(right, block_kinds(unet))
theme.save(fig, out_stem)
[(c.label, len(c.modules)) for c in columns]
