"""The activation catalog of diffusion transformers (DiTs): PixArt-α/Σ, SD3/SD3.5 and Flux.

Names follow the paper code's HEAD (paper_spec §2.2): ``vit-block{i}-<kind>`` with the block index ``i``
counted from 0 in forward order over the whole transformer.

* PixArt (``PixArtTransformer2DModel``; ``BasicTransformerBlock`` with self- and cross-attention):
  ``self-{q,k,v,map}``, ``cross-{q,map}``, ``ffn-inner``, ``out`` — the U-Net ViT block kinds
  (cross-k/v are text tokens and, as in the U-Net catalog, not candidates).
* SD3 (``SD3Transformer2DModel``; MMDiT ``JointTransformerBlock``): one joint attention over
  [image; text] tokens. ``self-{q,k,v}`` are ``to_q/to_k/to_v`` of the image stream, ``self-map`` /
  ``cross-map`` the image-query rows of the joint softmax restricted to image / text keys (each row
  sums to 1 over *both* parts together), ``ffn-inner``, ``out`` (the image stream). SD3.5's second,
  image-only attention (``attn2``, ``dual_attention_layers``) adds ``self2-{q,k,v,map}``.
* Flux (``FluxTransformer2DModel``): the 19 double-stream blocks, then the 38 single-stream blocks,
  numbered continuously (``vit-block19`` is the first single block of FLUX.1). Kinds as HEAD:
  ``norm-out`` (the modulated norm1 output the attention reads), ``q``, ``k``, ``v``, ``self-map``,
  ``cross-map``, ``attn-out`` (the image part of the attention output; after ``to_out`` in double
  blocks, before the fused ``proj_out`` in single blocks), ``out``. Single blocks run on
  [text; image] tokens; only the image part is kept.

Every activation is an image-token tensor reshaped to B×C×H×W on the patch grid, H, W = latent / patch,
with H, W read from the transformer's actual input (:func:`input_grid`), never sqrt(N). ``grid`` is
``""`` (the root transformer) and ``scale`` = ``patch`` (Flux: 2, its 2×2 latent packing).

Where a hooked tensor is a joint sequence or a tuple, :class:`DiTActivation` says which part is the
image: ``output`` = the element of a tuple output, ``span`` = where the H·W image tokens sit
(``all``, ``head`` = first H·W, ``tail`` = last H·W). Attention maps need the probabilities, which the
fused SDPA processors never form, so :func:`dit_map_processor` supplies map-capturing processors for
SD3's and Flux's joint attention (PixArt's plain ``Attention`` uses ``hooks.MapCaptureProcessor``).

:func:`walk_model` dispatches between :func:`~diffact.extract.catalog.walk_unet` and these walkers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn

from diffact.extract.catalog import Activation, walk_unet
from diffact.utils.errors import LayerError, ModelError

UNET_PARTS = ("conv_in", "down_blocks", "mid_block", "up_blocks", "conv_out")
# Transformer class → family (layer-set folder name, ``models.loading.unet_family``).
DIT_FAMILIES = {"PixArtTransformer2DModel": "pixart", "SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux"}
FLUX_PACK = 2  # FluxPipeline packs 2×2 latent patches into one token


@dataclass(frozen=True)
class DiTActivation(Activation):
    """A catalog entry of a DiT: where in the hooked output the image tokens are.

    output: element of a tuple output holding the image stream (JointTransformerBlock and the Flux
            blocks return ``(encoder_hidden_states, hidden_states)``; Flux attention ``(image, text)``)
    span:   where the H·W image tokens sit in the hooked sequence: ``all`` (the whole sequence is the
            image), ``head`` (first H·W: SD3's joint attention) or ``tail`` (last H·W: Flux, text first).
            For maps it applies to queries and keys alike; cross-maps keep the other keys.
    """

    output: int = 0
    span: str = "all"

    def as_row(self, latent_hw: tuple[int, int] | None = None, text_tokens: int | None = None) -> dict:
        row = super().as_row(latent_hw, text_tokens)
        row.pop("output"), row.pop("span")
        return row


def _entry(name: str, kind: str, module: str, channels: int, patch: int, output: int = 0,
           span: str = "all") -> DiTActivation:
    kind = "block-out" if kind == "out" else kind
    return DiTActivation(name, kind, module, channels, patch, tokens=True, grid="", patch=patch, output=output,
                         span=span)


def _ffn_inner(ff: nn.Module) -> int:
    act = ff.net[0]
    return act.proj.out_features // (2 if type(act).__name__ in ("GEGLU", "SwiGLU") else 1)


# ---- walkers ------------------------------------------------------------------------------------
def walk_pixart(model: nn.Module) -> Iterator[Activation]:
    """``PixArtTransformer2DModel``: 8 activations per block (7 without cross-attention)."""
    patch = model.config.patch_size
    for i, block in enumerate(model.transformer_blocks):
        pre, path = f"vit-block{i}", f"transformer_blocks.{i}"
        for proj in ("q", "k", "v"):
            layer = getattr(block.attn1, f"to_{proj}")
            yield _entry(f"{pre}-self-{proj}", f"self-{proj}", f"{path}.attn1.to_{proj}", layer.out_features, patch)
        yield _entry(f"{pre}-self-map", "self-map", f"{path}.attn1", 0, patch)
        if getattr(block, "attn2", None) is not None:
            yield _entry(f"{pre}-cross-q", "cross-q", f"{path}.attn2.to_q", block.attn2.to_q.out_features, patch)
            yield _entry(f"{pre}-cross-map", "cross-map", f"{path}.attn2", 0, patch)
        yield _entry(f"{pre}-ffn-inner", "ffn-inner", f"{path}.ff.net.0", _ffn_inner(block.ff), patch)
        yield _entry(f"{pre}-out", "out", path, block.attn1.to_q.in_features, patch)


def walk_sd3(model: nn.Module) -> Iterator[Activation]:
    """``SD3Transformer2DModel``: 7 activations per joint block, +4 for SD3.5's dual-attention blocks."""
    patch = model.config.patch_size
    for i, block in enumerate(model.transformer_blocks):
        pre, path = f"vit-block{i}", f"transformer_blocks.{i}"
        for proj in ("q", "k", "v"):
            layer = getattr(block.attn, f"to_{proj}")
            yield _entry(f"{pre}-self-{proj}", f"self-{proj}", f"{path}.attn.to_{proj}", layer.out_features, patch)
        # JointAttnProcessor2_0 concatenates [image; text]: the image tokens come first.
        yield _entry(f"{pre}-self-map", "self-map", f"{path}.attn", 0, patch, span="head")
        yield _entry(f"{pre}-cross-map", "cross-map", f"{path}.attn", 0, patch, span="head")
        if getattr(block, "attn2", None) is not None:
            for proj in ("q", "k", "v"):
                layer = getattr(block.attn2, f"to_{proj}")
                yield _entry(f"{pre}-self2-{proj}", f"self-{proj}", f"{path}.attn2.to_{proj}", layer.out_features,
                             patch)
            yield _entry(f"{pre}-self2-map", "self-map", f"{path}.attn2", 0, patch)
        yield _entry(f"{pre}-ffn-inner", "ffn-inner", f"{path}.ff.net.0", _ffn_inner(block.ff), patch)
        yield _entry(f"{pre}-out", "out", path, block.attn.to_q.in_features, patch, output=1)


def walk_flux(model: nn.Module) -> Iterator[Activation]:
    """``FluxTransformer2DModel``: 8 activations per block, double-stream blocks first."""
    patch = FLUX_PACK
    blocks = [(f"transformer_blocks.{j}", b, False) for j, b in enumerate(model.transformer_blocks)]
    blocks += [(f"single_transformer_blocks.{j}", b, True) for j, b in enumerate(model.single_transformer_blocks)]
    for i, (path, block, single) in enumerate(blocks):
        pre, span = f"vit-block{i}", ("tail" if single else "all")  # single blocks see [text; image]
        dim, inner = block.attn.to_q.in_features, block.attn.to_q.out_features
        yield _entry(f"{pre}-norm-out", "norm-out", f"{path}.{'norm' if single else 'norm1'}", dim, patch, span=span)
        for proj in ("q", "k", "v"):
            yield _entry(f"{pre}-{proj}", proj, f"{path}.attn.to_{proj}", inner, patch, span=span)
        yield _entry(f"{pre}-self-map", "self-map", f"{path}.attn", 0, patch, span="tail")
        yield _entry(f"{pre}-cross-map", "cross-map", f"{path}.attn", 0, patch, span="tail")
        yield _entry(f"{pre}-attn-out", "attn-out", f"{path}.attn", inner if single else block.attn.out_dim, patch,
                     span=span)
        yield _entry(f"{pre}-out", "out", path, dim, patch, output=1)


DIT_WALKERS: dict[str, Callable[[nn.Module], Iterator[Activation]]] = {
    "PixArtTransformer2DModel": walk_pixart,
    "SD3Transformer2DModel": walk_sd3,
    "FluxTransformer2DModel": walk_flux,
}


def is_unet(model: nn.Module) -> bool:
    """A ``UNet2DConditionModel``-style U-Net (what :func:`walk_unet` walks)."""
    return all(hasattr(model, a) for a in UNET_PARTS)


def dit_family(model: nn.Module) -> str | None:
    """``pixart`` / ``sd3`` / ``flux`` for a supported transformer, else None."""
    return DIT_FAMILIES.get(type(model).__name__)


def walk_model(model: nn.Module) -> Iterator[Activation]:
    """Every activation of a supported denoiser in forward order: U-Net → walk_unet, DiT → its walker."""
    if is_unet(model):
        return walk_unet(model)
    walker = DIT_WALKERS.get(type(model).__name__)
    if walker is None:
        raise ModelError(f"unsupported denoiser class {type(model).__name__}: expected a UNet2DConditionModel or "
                         f"one of {', '.join(DIT_WALKERS)}")
    return walker(model)


# ---- token bookkeeping (used by hooks) ----------------------------------------------------------
def input_grid(args: tuple, kwargs: dict, patch: int) -> tuple[int, int]:
    """The patch grid (H, W) of one transformer call, from its actual input.

    B×C×H×W latents (PixArt, SD3, and U-Net ViTs with patch 1) give (H/patch, W/patch). Flux receives
    packed B×N×C tokens; its grid is in the positional ids ``img_ids`` (N×3: 0, row, column).
    """
    hidden = args[0] if args else kwargs["hidden_states"]
    if hidden.ndim == 4:
        return hidden.shape[-2] // patch, hidden.shape[-1] // patch
    ids = kwargs.get("img_ids")
    if ids is None:
        raise LayerError(f"cannot tell the token grid of a {tuple(hidden.shape)} input without img_ids")
    ids = ids[0] if ids.ndim == 3 else ids
    return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1


def image_part(tokens: torch.Tensor, n_image: int, span: str, dim: int = 1) -> torch.Tensor:
    """The image tokens of a (joint) sequence along ``dim``."""
    if span == "all":
        return tokens
    if span == "head":
        return tokens.narrow(dim, 0, n_image)
    if span == "tail":
        return tokens.narrow(dim, tokens.shape[dim] - n_image, n_image)
    raise ValueError(f"unknown token span {span!r}")


def map_part(probs: torch.Tensor, n_image: int, span: str, kind: str) -> torch.Tensor:
    """(B, Nq, Nk) head-mean probabilities → image-query rows × (image keys: self-map | others: cross-map)."""
    rows = image_part(probs, n_image, span, dim=1)
    if kind == "self-map" or span == "all":  # span "all": keys are all image (self) or all text (cross)
        return image_part(rows, n_image, span, dim=2)
    n_other = probs.shape[2] - n_image
    return rows[:, :, n_image:] if span == "head" else rows[:, :, :n_other]


# ---- map-capturing processors for joint attention -----------------------------------------------
def _probs(query: torch.Tensor, key: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(QKᵀ·scale) over (B, heads, N, d) inputs, in fp32 (SDPA's semantics for bool/float masks)."""
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    return scores.softmax(dim=-1)


class JointMapCaptureProcessor:
    """SD3's ``JointAttnProcessor2_0`` with the probabilities formed explicitly; ``sink`` gets the
    head-mean map as (B, 1, Nq, Nk) over the joint [image; text] sequence."""

    def __init__(self, sink: Callable[[torch.Tensor], None]):
        self.sink = sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        batch, n_image = hidden_states.shape[:2]
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def split(x):
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = split(query), split(key), split(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if encoder_hidden_states is not None:
            eq, ek, ev = (split(p(encoder_hidden_states)) for p in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            if attn.norm_added_q is not None:
                eq = attn.norm_added_q(eq)
            if attn.norm_added_k is not None:
                ek = attn.norm_added_k(ek)
            query, key, value = torch.cat([query, eq], 2), torch.cat([key, ek], 2), torch.cat([value, ev], 2)
        probs = _probs(query, key, head_dim ** -0.5)
        out = torch.matmul(probs.to(value.dtype), value).transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        self.sink(probs.mean(dim=1, keepdim=True))
        if encoder_hidden_states is not None:
            out, context = out[:, :n_image], out[:, n_image:]
            if not attn.context_pre_only:
                context = attn.to_add_out(context)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, context) if encoder_hidden_states is not None else out


class FluxMapCaptureProcessor:
    """Flux's ``FluxAttnProcessor`` (unfused projections) with explicit probabilities; ``sink`` gets the
    head-mean map as (B, 1, Nq, Nk) over [text; image] tokens."""

    def __init__(self, sink: Callable[[torch.Tensor], None]):
        self.sink = sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        from diffusers.models.embeddings import apply_rotary_emb

        if getattr(attn, "fused_projections", False):
            raise LayerError("attention maps need unfused q/k/v projections (unfuse_qkv_projections())")

        def split(x):
            return x.unflatten(-1, (-1, attn.head_dim))

        query, key, value = (split(p(hidden_states)) for p in (attn.to_q, attn.to_k, attn.to_v))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if encoder_hidden_states is not None and attn.added_kv_proj_dim is not None:
            eq, ek, ev = (split(p(encoder_hidden_states)) for p in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
            query, key, value = torch.cat([eq, query], 1), torch.cat([ek, key], 1), torch.cat([ev, value], 1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        probs = _probs(query.transpose(1, 2), key.transpose(1, 2), attn.head_dim ** -0.5, attention_mask)
        out = torch.matmul(probs.to(value.dtype), value.transpose(1, 2)).transpose(1, 2).flatten(2, 3)
        out = out.to(query.dtype)
        self.sink(probs.mean(dim=1, keepdim=True))
        if encoder_hidden_states is None:
            return out
        n_text = encoder_hidden_states.shape[1]
        context, out = out[:, :n_text], out[:, n_text:]
        out = attn.to_out[1](attn.to_out[0](out.contiguous()))
        return out, attn.to_add_out(context.contiguous())


def dit_map_processor(attn: nn.Module, sink: Callable[[torch.Tensor], None]):
    """A map-capturing processor for a joint-attention module, or None for a classic ``Attention``."""
    if type(attn).__name__ == "FluxAttention":
        return FluxMapCaptureProcessor(sink)
    if "Joint" in type(getattr(attn, "processor", None)).__name__:
        return JointMapCaptureProcessor(sink)
    return None
