"""U-Net configs of the paper's models (diffusers ``unet/config.json`` fields that shape the network).

They let the catalog, the layer sets and the benchmarks work on the real architectures without the
weights: build the U-Net on the ``meta`` device (no memory) or with random weights (benchmarks).
Values copied from the models' hub configs (paper_spec §2.3 lists the resulting shapes).
"""

from __future__ import annotations

import copy

_SD15 = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

_SD21_BASE = {**_SD15, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
              "use_linear_projection": True}

_SDXL = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}

# Hub id → (family, U-Net config). Playground v2 shares SDXL's architecture (paper §6, App. A).
REFERENCE_UNETS: dict[str, tuple[str, dict]] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": ("sd15", _SD15),
    "runwayml/stable-diffusion-v1-5": ("sd15", _SD15),
    "stabilityai/stable-diffusion-2-1-base": ("sd21", _SD21_BASE),
    "stabilityai/stable-diffusion-xl-base-1.0": ("sdxl", _SDXL),
    "playgroundai/playground-v2-1024px-aesthetic": ("sdxl", _SDXL),
}

# Image size the paper extracts at, per family (paper_spec §2.8: 512 for SD1.5/2.1, 1024 for SDXL/PGv2).
PAPER_IMAGE_SIZE = {"sd15": 512, "sd21": 512, "sdxl": 1024}


def reference_unet_config(model_id: str) -> dict | None:
    entry = REFERENCE_UNETS.get(model_id)
    return copy.deepcopy(entry[1]) if entry else None


def build_unet(config: dict, device: str = "meta"):
    """Build a ``UNet2DConditionModel`` from a config; on ``meta`` it costs no memory (shapes only)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel.from_config(config)
