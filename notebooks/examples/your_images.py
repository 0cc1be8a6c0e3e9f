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
# # Features of your own images with the Python API
# `diffact.FeatureExtractor` loads a model (a hub id, a pipeline folder or a single-file checkpoint) and returns
# the named activations of any images as B×C×h×w tensors — the same extraction `diffact extract` runs for the
# workflow. Here: a shipped scikit-image photo through the paper's practical set (Ours) of the model, with each
# activation shown as its first three PCA components in RGB.
#
# With weights in your Hugging Face cache, set `model = "stabilityai/stable-diffusion-xl-base-1.0"` (1024 px) or
# `"stable-diffusion-v1-5/stable-diffusion-v1-5"` (512 px). The default is the demo's tiny SD1.5-shaped model
# (`make reproduce` or `snakemake results/models/sd15-tiny/model_index.json` builds it).

# %% tags=["parameters"]
model = "results/models/sd15-tiny"
layers = "practical"
image_size = 64
t = 50
prompt = ""
out_stem = "results/examples/your_images"

# %%
from pathlib import Path

import matplotlib.pyplot as plt

import diffact
from diffact.data.shipped import shipped_image
from diffact.viz import theme
from diffact.viz.pca import pca_rgb

theme.apply()
print(f"{len(diffact.list_activations(model))} activations in {model}'s catalog (maps left out)")
fx = diffact.FeatureExtractor.from_pretrained(model, layers=layers, t=t, prompt=prompt, image_size=image_size,
                                              device="cpu")
photo = shipped_image("chelsea")            # an H×W×3 uint8 array; paths and PIL images work the same way
features = fx([photo], ids=["chelsea"])     # the id seeds the noise: same id, same features
for name, value in features.items():
    print(f"{name}: {tuple(value.shape)}")

# %%
fig, axes = plt.subplots(1, len(features) + 1, figsize=(2.2 * (len(features) + 1), 2.4))
axes[0].imshow(photo)
axes[0].set_title("image", fontsize=8)
for ax, (name, value) in zip(axes[1:], features.items()):
    ax.imshow(pca_rgb(value[0], size=image_size))
    ax.set_title(name.replace("-vit-block0", "").replace("-repeat", "-r"), fontsize=6)
for ax in axes:
    ax.axis("off")
Path(out_stem).parent.mkdir(parents=True, exist_ok=True)
fig.savefig(f"{out_stem}.png", dpi=150, bbox_inches="tight")
