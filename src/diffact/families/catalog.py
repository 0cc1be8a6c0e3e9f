"""The activation catalog's data model, shared by every model family: what one candidate feature is.

Each family (:mod:`diffact.families`) walks its denoiser's module tree once and yields, in forward-execution
order, one :class:`Activation` per candidate: name, kind, the module to hook, channels and spatial scale.
The same walk serves listing (``diffact layers``), counting, layer sets and the extractor's hooks, so the
names cannot drift apart. DiTs add where the image tokens sit in a joint sequence (:class:`DiTActivation`).

Also here, because every caller of the catalog needs them: the aggregated attention-map entries (U-Nets),
:func:`unknown_layer_error` (a bad name with the closest valid ones) and the token bookkeeping of joint
sequences (:func:`image_part`, :func:`map_part`).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import torch

from diffact.utils.errors import LayerError

# Activation kinds, as the suffix of the name (docs/paper.md §2.2–2.5).
RES_KINDS = ("res-increment", "res-out")
AGGREGATE_KIND = "attn-aggregate"
# Aggregated attention maps (docs/paper.md §2.5, the paper's ``--attention up_cross``): ``attn-<stage>-<type>``.
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


def aggregate_entries() -> Iterator[Activation]:
    """The aggregated attention-map features (not candidates; requested by name, e.g. ``attn-up-cross``).

    Channels depend on the prompt length and on how many map sizes qualify (see
    :mod:`diffact.extract.aggregate`); scale 1 = the latent grid, where the paper resizes them to.
    """
    for name in AGGREGATE_NAMES:
        yield Activation(name, AGGREGATE_KIND, "", 0, 1, tokens=True)



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


def unknown_layer_error(name: str, valid: Iterable[str], where: str, others: int = 0) -> LayerError:
    """A LayerError for ``name`` that lists the closest valid names."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; closest valid names: {', '.join(close)}" if close else f"; {len(valid)} valid names (see `diffact layers`)"
    more = f" (and {others} more unknown)" if others else ""
    return LayerError(f"unknown layer {name!r} in {where}{more}{hint}")


# ---- token bookkeeping of joint sequences (used by the hooks) ----------------------------------
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
