"""The activation catalog of diffusion transformers (DiTs): PixArt-α/Σ, SD3/SD3.5 and Flux.

Names follow the paper code's HEAD (docs/paper.md §2.2): ``vit-block{i}-<kind>`` with the block index ``i``
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

Where a hooked tensor is a joint sequence or a tuple, :class:`~diffact.families.catalog.DiTActivation` says
which part is the image: ``output`` = the element of a tuple output, ``span`` = where the H·W image tokens sit
(``all``, ``head`` = first H·W, ``tail`` = last H·W). Attention maps need the probabilities, which the fused
SDPA processors never form: SD3's and Flux's families supply map-capturing processors for their joint
attention (PixArt's plain ``Attention`` uses :class:`~diffact.families.attention.MapCaptureProcessor`).

This module holds what the three DiT families share; each family's module has its walker.
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterator

import torch.nn as nn

from diffact.families.base import Family
from diffact.families.catalog import Activation, DiTActivation


def entry(name: str, kind: str, module: str, channels: int, patch: int, output: int = 0,
          span: str = "all") -> DiTActivation:
    """A DiT catalog entry on the root transformer's patch grid."""
    kind = "block-out" if kind == "out" else kind
    return DiTActivation(name, kind, module, channels, patch, tokens=True, grid="", patch=patch, output=output,
                         span=span)


def ffn_inner(ff: nn.Module) -> int:
    """Width of the FFN's inner activation (GEGLU/SwiGLU project to twice that)."""
    act = ff.net[0]
    return act.proj.out_features // (2 if type(act).__name__ in ("GEGLU", "SwiGLU") else 1)


class DiTFamily(Family):
    """A diffusion transformer (``pipe.transformer``); subclasses set the walker and the conditioning."""

    denoiser_attr = "transformer"
    walker: Callable[[nn.Module], Iterator[Activation]]

    def walk(self, model: nn.Module) -> Iterator[Activation]:
        return type(self).walker(model)

    def forward(self, pipe, model, model_in, t, cond):
        # PixArt, SD3: B×C×H×W latents, the timestep on the 1000 grid
        return lambda: model(hidden_states=model_in, timestep=t, return_dict=False, **cond)

    def text_tokens(self, read_config) -> int:
        """The ``max_sequence_length`` default of the pipeline's ``encode_prompt`` (PixArt-Σ 300, PixArt-α 120,
        Flux 512), plus :meth:`extra_text_tokens`; SD3 overrides it (its ``T5_TOKENS``, not the default 256)."""
        import diffusers
        from transformers.utils import logging as transformers_logging

        index = read_config("model_index") or {}
        # importing a pipeline class imports its image processors, which warn that torchvision is absent
        level = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            pipeline = getattr(diffusers, index.get("_class_name", ""), None)
        finally:
            transformers_logging.set_verbosity(level)
        param = inspect.signature(pipeline.encode_prompt).parameters.get("max_sequence_length") if pipeline else None
        tokens = param.default if param is not None and isinstance(param.default, int) else 77
        return tokens + self.extra_text_tokens(read_config)

    def extra_text_tokens(self, read_config) -> int:
        return 0
