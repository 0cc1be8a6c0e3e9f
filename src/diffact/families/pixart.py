"""PixArt-α / PixArt-Σ (``PixArtTransformer2DModel``; ``BasicTransformerBlock`` with self- and cross-attention).

Kinds per block: ``self-{q,k,v,map}``, ``cross-{q,map}``, ``ffn-inner``, ``out`` — the U-Net ViT block kinds
(cross-k/v are text tokens and, as in the U-Net catalog, not candidates). Conditioning: T5 embeddings and their
attention mask; PixArt-α 1024 adds resolution / aspect-ratio conditions (PixArtAlphaPipeline's rule).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from diffact.families.attention import MapCaptureProcessor
from diffact.families.catalog import Activation
from diffact.families.dit import DiTFamily, entry, ffn_inner


def walk_pixart(model: nn.Module) -> Iterator[Activation]:
    """``PixArtTransformer2DModel``: 8 activations per block (7 without cross-attention)."""
    patch = model.config.patch_size
    for i, block in enumerate(model.transformer_blocks):
        pre, path = f"vit-block{i}", f"transformer_blocks.{i}"
        for proj in ("q", "k", "v"):
            layer = getattr(block.attn1, f"to_{proj}")
            yield entry(f"{pre}-self-{proj}", f"self-{proj}", f"{path}.attn1.to_{proj}", layer.out_features, patch)
        yield entry(f"{pre}-self-map", "self-map", f"{path}.attn1", 0, patch)
        if getattr(block, "attn2", None) is not None:
            yield entry(f"{pre}-cross-q", "cross-q", f"{path}.attn2.to_q", block.attn2.to_q.out_features, patch)
            yield entry(f"{pre}-cross-map", "cross-map", f"{path}.attn2", 0, patch)
        yield entry(f"{pre}-ffn-inner", "ffn-inner", f"{path}.ff.net.0", ffn_inner(block.ff), patch)
        yield entry(f"{pre}-out", "out", path, block.attn1.to_q.in_features, patch)


class PixArt(DiTFamily):
    name = "pixart"
    description = "PixArt-α / PixArt-Σ DiT (PixArt[Alpha|Sigma]Pipeline)"
    denoiser_classes = ("PixArtTransformer2DModel",)
    walker = staticmethod(walk_pixart)

    def map_processor(self, attn, sink):
        return MapCaptureProcessor(sink)

    def encode_prompt(self, pipe, model, prompt, image_size, device):
        embeds, mask, *_ = pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                              num_images_per_prompt=1, device=device)
        extra = {"resolution": None, "aspect_ratio": None}
        if getattr(model, "use_additional_conditions", False):
            extra = {"resolution": torch.tensor([[image_size, image_size]], dtype=embeds.dtype, device=device),
                     "aspect_ratio": torch.tensor([[1.0]], dtype=embeds.dtype, device=device)}
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask, "added_cond_kwargs": extra}
