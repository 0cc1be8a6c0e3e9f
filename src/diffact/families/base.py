"""The interface of a model family: everything about a kind of denoiser that the rest of diffact needs.

A family is one small class (one module per family under :mod:`diffact.families`) registered in
:mod:`diffact.families.registry`. Extraction, loading, listing and layer sets ask the registry for the family
of a denoiser and call these methods; nothing outside ``families/`` branches on a family's name.
Layer sets of a family live in ``config/layers/<name>/``.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn

from diffact.families.catalog import Activation


class Family:
    """One kind of diffusion denoiser.

    name:           the family's id: ``config/layers/<name>/``, ``models.<m>.family`` in a profile
    description:    one line for listings
    denoiser_attr:  the pipeline attribute holding the denoiser (``unet`` or ``transformer``)
    denoiser_classes: diffusers class names of the denoiser
    single_file_pipeline: diffusers pipeline class for single-file checkpoints, or None (not supported)
    """

    name: str = ""
    description: str = ""
    denoiser_attr: str = "unet"
    denoiser_classes: tuple[str, ...] = ()
    single_file_pipeline: str | None = None

    def recognises(self, model: nn.Module) -> bool:
        """Whether ``model`` (a loaded denoiser) is of this family."""
        return type(model).__name__ in self.denoiser_classes

    def claims_single_file(self, model_type: str) -> bool:
        """Whether a single-file checkpoint of diffusers' inferred ``model_type`` loads as this family."""
        return False

    # ---- the catalog -----------------------------------------------------------------------------
    def walk(self, model: nn.Module) -> Iterator[Activation]:
        """Every activation (maps included) in forward-execution order."""
        raise NotImplementedError

    def nameable(self, model: nn.Module) -> Iterator[Activation]:
        """What a layer list may name: the catalog plus any derived entries (U-Nets: aggregated maps)."""
        return self.walk(model)

    def token_grid(self, args: tuple, kwargs: dict, patch: int) -> tuple[int, int]:
        """The token grid (H, W) of one call of a grid module (a U-Net ViT or the whole DiT), from its actual
        B×C×H×W input; never sqrt(N)."""
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden.shape[-2] // patch, hidden.shape[-1] // patch

    def map_processor(self, attn: nn.Module, sink: Callable[[torch.Tensor], None]):
        """An attention processor that hands the (B, heads, Nq, Nk) probabilities of ``attn`` to ``sink``."""
        raise NotImplementedError

    # ---- conditioning and the forward call -------------------------------------------------------
    def encode_prompt(self, pipe, model, prompt: str, image_size: int, device) -> dict:
        """The denoiser's conditioning keyword arguments for one prompt, batch 1 (no classifier-free guidance)."""
        raise NotImplementedError

    def batched_cond(self, cond: dict, batch: int) -> dict:
        """The conditioning of :meth:`encode_prompt` repeated over a batch."""
        def expand(v):
            return v if v is None else v.expand(batch, *v.shape[1:])

        return {key: {k: expand(v) for k, v in value.items()} if isinstance(value, dict) else expand(value)
                for key, value in cond.items()}

    def timestep_shift(self, pipe, scheduler, image_size: int) -> dict:
        """Extra ``set_timesteps`` arguments the family's pipeline uses at this image size (Flux: ``mu``)."""
        return {}

    def forward(self, pipe, model, model_in: torch.Tensor, t: torch.Tensor, cond: dict) -> Callable[[], object]:
        """A zero-argument call of the denoiser on ``model_in`` (B×C×h×w latents) at timesteps ``t``."""
        raise NotImplementedError

    # ---- offline listing -------------------------------------------------------------------------
    def text_tokens(self, read_config: Callable[[str], dict | None]) -> int:
        """Text tokens the pipeline feeds the denoiser by default (the cross-map width), from the pipeline's
        component configs (``read_config(component)``: ``model_index``, ``tokenizer``, ...; None when absent)."""
        return 77
