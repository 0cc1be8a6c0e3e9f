"""SDXL / Playground v2: a ``UNet2DConditionModel`` with ``text_time`` added conditions
(StableDiffusionXLPipeline). Playground v2 shares SDXL's architecture (paper §6, App. A), so both use
``config/layers/sdxl/``."""

from __future__ import annotations

import torch

from diffact.families.unet import UNetFamily


class SDXL(UNetFamily):
    name = "sdxl"
    description = "SDXL / Playground v2 U-Net (StableDiffusionXLPipeline)"
    single_file_pipeline = "StableDiffusionXLPipeline"

    def _is_mine(self, config) -> bool:
        return config.get("addition_embed_type") == "text_time"

    def claims_single_file(self, model_type: str) -> bool:
        return model_type.startswith(("xl", "playground"))

    def _added_conditions(self, model, encoded, image_size: int, device) -> dict:
        # Micro-conditioning: original size, crop top-left, target size (the paper code's SDXL call; docs/paper.md).
        embeds = encoded[0]
        time_ids = torch.tensor([[image_size, image_size, 0, 0, image_size, image_size]], dtype=embeds.dtype,
                                device=device)
        return {"added_cond_kwargs": {"text_embeds": encoded[2], "time_ids": time_ids}}
