"""The trainable adapters between the frozen activations and UPerHead (paper §2.9, the paper's
``segmentation/models/diffusion_segmentor.py``).

``ResBlock(C)``: x + BN(conv3×3(ReLU(BN(conv3×3(x))))), zero-initialised so that it starts as the identity.

``init="paper"`` zeroes every weight and bias (convolutions *and* batch norms), as the paper's code does. A
consequence worth knowing: then the inner convolution's output is constant, the batch norms normalise it to zero,
and no gradient ever reaches either convolution or the batch-norm scales; only the last batch norm's shift learns,
so the block stays ``x + b`` (a learned per-channel offset) for the whole training. ``init="last_norm"`` keeps the
identity start but zeroes only the last batch norm (scale and shift), the usual zero-γ residual init, so both
convolutions train once that scale has moved.

``MultiRes(C, n)``: the paper's ``nn.ModuleList([ResBlock(dim)] * n)``, i.e. ONE block (shared weights) applied n
times; the multi-model variant uses n = 4 per layer and n = 2 per level.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffact.utils.errors import ConfigError

INITS = ("paper", "last_norm")


class ResBlock(nn.Module):
    def __init__(self, channels: int, init: str = "paper"):
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"ResBlock init must be one of {', '.join(INITS)}, got {init!r}")
        self.conv1 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels))
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels))
        zeroed = self.modules() if init == "paper" else [self.conv2[1]]
        for module in zeroed:
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MultiRes(nn.Module):
    """One ResBlock applied ``repeats`` times (shared weights, as the paper's ``[ResBlock(dim)] * n``)."""

    def __init__(self, channels: int, repeats: int, init: str = "paper"):
        super().__init__()
        if repeats < 1:
            raise ConfigError(f"MultiRes repeats must be ≥ 1, got {repeats}")
        self.block = ResBlock(channels, init)
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.repeats):
            x = self.block(x)
        return x
