"""Aggregated attention maps, the extra features of Ours-XL-t's SD1.5 part (paper App. B.3, docs/paper.md §2.5).

The paper's ``AttentionStore`` keeps the head-mean maps of every attention layer of one stage and type
(e.g. up-stage cross-attention) whose token grid side s satisfies image/32 ≤ s ≤ image/16, i.e.
latent/4 ≤ s ≤ latent/2 for the factor-8 VAE (SD1.5 at 512 px: the 16² and 32² maps; the 64² maps are
left out). Maps of equal size are averaged, each average is reshaped to B×K×s×s (K = text tokens for
cross-attention), nearest-resized to the latent grid, and the sizes are concatenated: 2 × 77 = 154
channels for SD1.5 at 512 px. Note the paper's text says "averaged over all up-stage cross-attention
layers"; the code (followed here) averages per size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffact.families.catalog import MAP_KINDS, Activation
from diffact.families.unet import walk_unet


def qualifies(side: int, latent_side: int) -> bool:
    """The paper's size rule in latent units: latent/4 ≤ side ≤ latent/2."""
    return latent_side / 4 <= side <= latent_side / 2


def member_maps(unet, name: str) -> list[Activation]:
    """The per-layer map activations that feed aggregate ``attn-<stage>-<type>`` (size rule applied later)."""
    _, stage, kind = name.split("-")
    return [a for a in walk_unet(unet) if a.kind == f"{kind}-map" and a.name.startswith(stage)]


def aggregate(maps: dict[str, torch.Tensor], latent_hw: tuple[int, int]) -> torch.Tensor:
    """Average head-mean maps (each B×K×s×s) per size, keep qualifying sizes, resize, concatenate.

    Returns B×(n_sizes·K)×H×W on the latent grid, sizes in ascending order.
    """
    by_size: dict[int, list[torch.Tensor]] = {}
    for tensor in maps.values():
        side = tensor.shape[-1]
        if qualifies(side, latent_hw[-1]):
            by_size.setdefault(side, []).append(tensor.float())
    if not by_size:
        raise ValueError(f"no attention map has a size between latent/4 and latent/2 (latent {latent_hw})")
    parts = [F.interpolate(torch.stack(group).mean(0), size=latent_hw, mode="nearest")
             for _, group in sorted(by_size.items())]
    return torch.cat(parts, dim=1)


__all__ = ["MAP_KINDS", "aggregate", "member_maps", "qualifies"]
