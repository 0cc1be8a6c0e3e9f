"""The activation catalog: every candidate feature of a diffusion U-Net, named as the paper's code names it.

Names follow ``components/feature_extractor.py`` of the paper's code (paper_spec §2.2; paper App. B):
``<module_id>-<feat_id>`` with module ids ``down-level{L}-repeat{R}``, ``mid-repeat{R}`` / ``mid-vit``,
``up-level{L}-repeat{R}``, ``...-vit-block{B}`` and ``{down,up}-level{L}-{down,up}sampler``. Levels count
resolutions in forward order within a stage, so ``up-level0`` is the lowest resolution.

One walk over the module tree (:func:`walk_unet`) yields, in forward-execution order, each activation's
name, kind, the module to hook and its channel count and spatial scale. The same walk serves listing
(``diffact layers``), counting (tests against the paper's 164/197 and 472/612) and the extractor's hooks,
so the names cannot drift apart.

Spatial sizes are derived from the module structure (a down block with a downsampler halves the
resolution after it, an up block with an upsampler doubles it), never from sqrt(tokens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import torch.nn as nn

# Activation kinds, as the suffix of the name (paper_spec §2.2–2.5).
RES_KINDS = ("res-increment", "res-out")
AGGREGATE_KIND = "attn-aggregate"
# Aggregated attention maps (paper_spec §2.5, the paper's ``--attention up_cross``): ``attn-<stage>-<type>``.
AGGREGATE_NAMES = tuple(f"attn-{stage}-{kind}" for stage in ("down", "mid", "up") for kind in ("cross", "self"))
BLOCK_KINDS = ("self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "ffn-inner", "out")
MAP_KINDS = ("self-map", "cross-map")


@dataclass(frozen=True)
class Activation:
    """One catalog entry.

    name:     paper-style id, e.g. ``up-level1-repeat1-vit-block0-cross-q``
    kind:     e.g. ``res-out``, ``vit-out``, ``block-out``, ``self-q``, ``cross-map``, ``upsampler-out``
    module:   dotted path of the module whose output is hooked (``unet.get_submodule(module)``);
              for maps the ``Attention`` module that gets the map-capturing processor
    channels: C of the B×C×H×W feature (maps: number of keys, i.e. H·W for self-maps, text tokens for cross-maps)
    scale:    spatial downsampling relative to the latent (1, 2, 4, ...)
    tokens:   True where the raw activation is B×(H·W)×C and must be reshaped
    grid:     for token activations, the module whose input (B×C×H×W) fixes the token grid: the
              enclosing Transformer2DModel in a U-Net, the whole transformer in a DiT
    patch:    the grid is the input's H×W divided by this (DiT patch size; 1 in U-Nets)
    """

    name: str
    kind: str
    module: str
    channels: int
    scale: int
    tokens: bool = False
    grid: str = ""
    patch: int = 1

    def spatial(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) at a latent size, with the ceil rounding of diffusers' stride-2 convolutions."""
        h, w = latent_hw
        return (-(-h // self.scale), -(-w // self.scale))

    def as_row(self, latent_hw: tuple[int, int] | None = None, text_tokens: int | None = None) -> dict:
        row = asdict(self)
        row.pop("grid"), row.pop("patch")
        if latent_hw is not None:
            h, w = self.spatial(latent_hw)
            row["height"], row["width"] = h, w
            if self.kind == "self-map":
                row["channels"] = h * w
        if self.kind == "cross-map" and text_tokens is not None:
            row["channels"] = text_tokens
        return row


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
    if not all(hasattr(unet, a) for a in ("conv_in", "down_blocks", "mid_block", "up_blocks", "conv_out")):
        from diffact.utils.errors import ModelError

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


def aggregate_entries() -> Iterator[Activation]:
    """The aggregated attention-map features (not candidates; requested by name, e.g. ``attn-up-cross``).

    Channels depend on the prompt length and on how many map sizes qualify (see
    :mod:`diffact.extract.aggregate`); scale 1 = the latent grid, where the paper resizes them to.
    """
    for name in AGGREGATE_NAMES:
        yield Activation(name, AGGREGATE_KIND, "", 0, 1, tokens=True)


def walk_all(unet: nn.Module) -> Iterator[Activation]:
    """The catalog plus the aggregated attention-map entries (what a layer list may name)."""
    yield from walk_unet(unet)
    yield from aggregate_entries()


def catalog(unet: nn.Module, include_maps: bool = True) -> list[Activation]:
    """The catalog as a list; ``include_maps=False`` drops self-/cross-attention maps."""
    return [a for a in walk_unet(unet) if include_maps or a.kind not in MAP_KINDS]


def candidate_count(unet: nn.Module, include_maps: bool = False, include_unet_out: bool = False) -> int:
    """Count candidates the way the paper's code does (paper_spec §2.3).

    The paper's counts are not consistent about ``unet-out`` (the noise prediction): its SD1.5 tally
    164 excludes it, its SDXL tally 472 includes it, and both "full" configs (197 / 612) include it and the
    maps. This function makes the choice explicit instead of hiding it.
    """
    return sum(1 for a in walk_unet(unet)
               if (include_maps or a.kind not in MAP_KINDS) and (include_unet_out or a.kind != "unet-out"))
