"""SD1.5 / SD2.1: a ``UNet2DConditionModel`` conditioned on CLIP text tokens only (StableDiffusionPipeline).

The paper's SD1.5 and SD2.1-base share this layout (4 levels, one ViT block per ViT; paper App. A), so they
share the layer sets in ``config/layers/sd15/``."""

from __future__ import annotations

from diffact.families.unet import UNetFamily


class SD15(UNetFamily):
    name = "sd15"
    description = "SD1.5 / SD2.1 U-Net (StableDiffusionPipeline)"
    single_file_pipeline = "StableDiffusionPipeline"

    def _is_mine(self, config) -> bool:
        return config.get("addition_embed_type") != "text_time"

    def claims_single_file(self, model_type: str) -> bool:
        # diffusers' inferred types of the original SD1.x/2.x checkpoints: v1, v2, inpainting(_v2), upscale, ...
        return model_type.startswith(("v1", "v2", "inpainting", "upscale"))
