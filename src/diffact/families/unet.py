"""What the U-Net families (SD1.5/SD2.1 and SDXL/Playground v2) share: the catalog walk of a
``UNet2DConditionModel``, the prompt encoding of ``StableDiffusion[XL]Pipeline`` and the forward call.

Names follow ``components/feature_extractor.py`` of the paper's code (paper App. B; docs/paper.md):
``<module_id>-<feat_id>`` with module ids ``down-level{L}-repeat{R}``, ``mid-repeat{R}`` / ``mid-vit``,
``up-level{L}-repeat{R}``, ``...-vit-block{B}`` and ``{down,up}-level{L}-{down,up}sampler``. Levels count
resolutions in forward order within a stage, so ``up-level0`` is the lowest resolution. Spatial sizes are
derived from the module structure (a down block with a downsampler halves the resolution after it, an up
block with an upsampler doubles it), never from sqrt(tokens).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn

from diffact.families.attention import MapCaptureProcessor
from diffact.families.base import Family
from diffact.families.catalog import BLOCK_KINDS, MAP_KINDS, Activation, aggregate_entries
from diffact.utils.errors import ModelError

UNET_PARTS = ("conv_in", "down_blocks", "mid_block", "up_blocks", "conv_out")


def is_unet(model: nn.Module) -> bool:
    """A ``UNet2DConditionModel``-style U-Net (what :func:`walk_unet` walks)."""
    return all(hasattr(model, a) for a in UNET_PARTS)


def _block_kind(kind: str) -> str:
    return "block-out" if kind == "out" else kind


def _resnet_entries(prefix: str, path: str, resnet: nn.Module, scale: int) -> Iterator[Activation]:
    channels = resnet.conv2.out_channels
    yield Activation(f"{prefix}-res-increment", "res-increment", f"{path}.conv2", channels, scale)
    yield Activation(f"{prefix}-res-out", "res-out", path, channels, scale)


def _transformer_entries(prefix: str, path: str, vit: nn.Module, scale: int) -> Iterator[Activation]:
    for b, block in enumerate(vit.transformer_blocks):
        bprefix, bpath = f"{prefix}-vit-block{b}", f"{path}.transformer_blocks.{b}"
        width = block.attn1.to_q.out_features
        geglu = block.ff.net[0]
        inner = geglu.proj.out_features // (2 if type(geglu).__name__ in ("GEGLU", "SwiGLU") else 1)
        cross = getattr(block, "attn2", None) is not None
        for kind in BLOCK_KINDS:
            if kind.startswith("cross") and not cross:
                continue
            if kind in ("self-q", "self-k", "self-v", "cross-q"):
                attn, proj = ("attn1" if kind.startswith("self") else "attn2"), "to_" + kind[-1]
                channels = getattr(getattr(block, attn), proj).out_features
                module = f"{bpath}.{attn}.{proj}"
            elif kind in MAP_KINDS:
                channels = 0  # depends on resolution / prompt length; see Activation.as_row
                module = f"{bpath}.{'attn1' if kind == 'self-map' else 'attn2'}"
            elif kind == "ffn-inner":
                channels, module = inner, f"{bpath}.ff.net.0"
            else:
                channels, module = width, bpath
            yield Activation(f"{bprefix}-{kind}", _block_kind(kind), module, channels, scale, tokens=True, grid=path)
    yield Activation(f"{prefix}-vit-out", "vit-out", path, vit.config.in_channels if hasattr(vit, "config") else width, scale)


def walk_unet(unet: nn.Module) -> Iterator[Activation]:
    """Every activation of a ``UNet2DConditionModel`` in forward-execution order (maps included)."""
    if not is_unet(unet):
        raise ModelError(f"{type(unet).__name__} is not a UNet2DConditionModel-style U-Net "
                         "(needs conv_in, down_blocks, mid_block, up_blocks, conv_out)")
    yield Activation("unet-in", "unet-in", "conv_in", unet.conv_in.in_channels, 1)
    yield Activation("unet-after-conv-in", "after-conv-in", "conv_in", unet.conv_in.out_channels, 1)
    scale = 1
    for level, block in enumerate(unet.down_blocks):
        yield from _stage_block_entries(f"down-level{level}", f"down_blocks.{level}", block, scale)
        if getattr(block, "downsamplers", None):
            scale *= 2
            sampler = block.downsamplers[0]
            yield Activation(f"down-level{level}-downsampler-out", "downsampler-out",
                             f"down_blocks.{level}.downsamplers.0", sampler.out_channels, scale)
    mid = unet.mid_block
    if mid is not None:
        attentions = list(getattr(mid, "attentions", []) or [])
        yield from _resnet_entries("mid-repeat0", "mid_block.resnets.0", mid.resnets[0], scale)
        for r, resnet in enumerate(mid.resnets[1:], start=1):
            vit = attentions[r - 1] if r - 1 < len(attentions) else None
            if vit is not None:
                vit_prefix = "mid" if len(attentions) == 1 else f"mid-repeat{r - 1}"
                yield from _transformer_entries(vit_prefix, f"mid_block.attentions.{r - 1}", vit, scale)
            yield from _resnet_entries(f"mid-repeat{r}", f"mid_block.resnets.{r}", resnet, scale)
    for level, block in enumerate(unet.up_blocks):
        yield from _stage_block_entries(f"up-level{level}", f"up_blocks.{level}", block, scale)
        if getattr(block, "upsamplers", None):
            scale //= 2
            sampler = block.upsamplers[0]
            yield Activation(f"up-level{level}-upsampler-out", "upsampler-out",
                             f"up_blocks.{level}.upsamplers.0", sampler.out_channels, scale)
    yield Activation("unet-out", "unet-out", "conv_out", unet.conv_out.out_channels, 1)


def _stage_block_entries(prefix: str, path: str, block: nn.Module, scale: int) -> Iterator[Activation]:
    attentions = list(getattr(block, "attentions", []) or [])
    for r, resnet in enumerate(block.resnets):
        yield from _resnet_entries(f"{prefix}-repeat{r}", f"{path}.resnets.{r}", resnet, scale)
        if r < len(attentions):
            yield from _transformer_entries(f"{prefix}-repeat{r}", f"{path}.attentions.{r}", attentions[r], scale)


def walk_all_unet(unet: nn.Module) -> Iterator[Activation]:
    """The catalog plus the aggregated attention-map entries (what a layer list may name)."""
    yield from walk_unet(unet)
    yield from aggregate_entries()


def catalog(unet: nn.Module, include_maps: bool = True) -> list[Activation]:
    """The catalog as a list; ``include_maps=False`` drops self-/cross-attention maps."""
    return [a for a in walk_unet(unet) if include_maps or a.kind not in MAP_KINDS]


def candidate_count(unet: nn.Module, include_maps: bool = False, include_unet_out: bool = False) -> int:
    """Count candidates the way the paper's code does (docs/paper.md §2.3).

    The paper's counts are not consistent about ``unet-out`` (the noise prediction): its SD1.5 tally
    164 excludes it, its SDXL tally 472 includes it, and both "full" configs (197 / 612) include it and the
    maps. This function makes the choice explicit instead of hiding it.
    """
    return sum(1 for a in walk_unet(unet)
               if (include_maps or a.kind not in MAP_KINDS) and (include_unet_out or a.kind != "unet-out"))


class UNetFamily(Family):
    """A ``UNet2DConditionModel`` in a StableDiffusion(XL)Pipeline; subclasses say which U-Nets are theirs and
    what conditioning they add."""

    denoiser_attr = "unet"
    denoiser_classes = ("UNet2DConditionModel",)

    def recognises(self, model: nn.Module) -> bool:
        return type(model).__name__ in self.denoiser_classes and self._is_mine(model.config)

    def _is_mine(self, config) -> bool:
        raise NotImplementedError

    def walk(self, model: nn.Module) -> Iterator[Activation]:
        return walk_unet(model)

    def nameable(self, model: nn.Module) -> Iterator[Activation]:
        return walk_all_unet(model)

    def map_processor(self, attn: nn.Module, sink: Callable[[torch.Tensor], None]):
        return MapCaptureProcessor(sink)

    def encode_prompt(self, pipe, model, prompt: str, image_size: int, device) -> dict:
        encoded = pipe.encode_prompt(prompt=prompt, device=device, num_images_per_prompt=1,
                                     do_classifier_free_guidance=False)
        return {"encoder_hidden_states": encoded[0], **self._added_conditions(model, encoded, image_size, device)}

    def _added_conditions(self, model, encoded, image_size: int, device) -> dict:
        return {}

    def forward(self, pipe, model, model_in: torch.Tensor, t: torch.Tensor, cond: dict) -> Callable[[], object]:
        return lambda: model(model_in, t, return_dict=False, **cond)

    def text_tokens(self, read_config: Callable[[str], dict | None]) -> int:
        """CLIP's 77 positions, or what the pipeline's tokenizer says."""
        tokenizer = read_config("tokenizer") or {}
        return int(tokenizer.get("model_max_length", 77))
