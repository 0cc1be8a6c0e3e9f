"""Architecture and training settings of the Fig 15 control U-Net (:mod:`diffact.models.control_unet`), in a module
without torch: ``diffact train-control-unet``'s parser takes its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

from diffact.utils.errors import ConfigError


@dataclass(frozen=True)
class ControlConfig:
    """Architecture and training settings of the control U-Net (demo-sized, CPU).

    channels:   width of each resolution level, high → low (3 levels: 64², 32², 16² at 64-px images)
    repeats:    residual units per down level (the up levels get one more, as diffusers' U-Nets do)
    crop:       training crop side (random crops keep CPU training short; the network is fully convolutional,
                so it is analysed on whole ``image_size`` images)
    """

    num_classes: int = 6
    channels: tuple[int, ...] = (8, 16, 32)
    repeats: int = 2
    image_size: int = 64
    crop: int = 32
    steps: int = 60
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0

    def validate(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"control U-Net needs ≥ 2 classes, got {self.num_classes}")
        if len(self.channels) < 2 or any(c < 4 or c % 4 for c in self.channels):
            raise ConfigError(f"control U-Net channels must be ≥ 2 levels of multiples of 4, got {self.channels}")
        for side in (self.image_size, self.crop):
            if side % 2 ** (len(self.channels) - 1) or side > self.image_size:
                raise ConfigError(f"control U-Net image size / crop {side} must divide by "
                                  f"{2 ** (len(self.channels) - 1)} and crop ≤ image size {self.image_size}")
        if self.repeats < 1 or self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("control U-Net needs repeats ≥ 1, steps ≥ 0, batch_size ≥ 1 and lr > 0")
