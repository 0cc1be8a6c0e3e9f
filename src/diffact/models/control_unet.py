"""The non-diffusion control of Figure 15: a conventional residual U-Net trained for segmentation.

Paper App. A / Fig 15: in a conventional U-Net (a residual U-Net for road extraction, ref. [57]) the three
properties are "hardly observed". The control here is that kind of network at demo size: a plain convolutional
encoder–decoder with residual units and skip connections, no attention, no time or text conditioning, trained
briefly (seeded, CPU, well under a minute) as a pixel classifier on the demo segmentation data.

Its blocks are named in the paper's scheme (``down-level{L}-repeat{R}-res-out``, ``-res-increment``,
``down-level{L}-downsampler-out``, ``mid-repeat0-res-out``, ``up-level{L}-upsampler-out``, ...) so the property
analysis and plots treat it exactly like a diffusion U-Net; :func:`control_catalog` lists them in forward order.
Levels count resolutions as in diffusers: down-level0 is the highest resolution, up-level0 the lowest.

Noise draws for P1: the diffusion models see their input forward-noised to timestep t; the control sees its image
noised the same way, x_t = √ᾱ_t·x + √(1−ᾱ_t)·std(x)·ε (ᾱ_t of SD's scaled-linear schedule), so both get the same
signal-to-noise ratio at the input and the noise share compares how the networks propagate it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The settings live in a module without torch (the command parser reads their defaults); imported here too.
from diffact.models.control_config import ControlConfig
from diffact.utils.errors import ConfigError, DataError, ModelError
from diffact.utils.seeding import torch_generator

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ResidualUnit(nn.Module):
    """Pre-activation residual unit (GroupNorm–SiLU–conv ×2) with a 1×1 shortcut when the width changes.

    ``branch`` is the increment (hooked as ``res-increment``); the module output is ``res-out``.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.branch = nn.Sequential(
            nn.GroupNorm(4, c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(4, c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.shortcut = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        return self.shortcut(x) + self.branch(x)


class Upsampler(nn.Module):
    """Nearest ×2 then a 3×3 convolution (the diffusers ``Upsample2D`` recipe)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ControlUNet(nn.Module):
    """Residual U-Net: stem → down levels (residual units + stride-2 conv) → mid unit → up levels (residual units on
    the concatenated skips + upsampler) → 1×1 classifier."""

    def __init__(self, config: ControlConfig):
        super().__init__()
        config.validate()
        self.config = config
        ch = config.channels
        self.stem = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skips = [ch[0]]
        for level, width in enumerate(ch):
            units, c_in = nn.ModuleList(), (ch[level - 1] if level else ch[0])
            for _ in range(config.repeats):
                units.append(ResidualUnit(c_in, width))
                c_in = width
                skips.append(width)
            self.down.append(units)
            if level < len(ch) - 1:
                self.downsamplers.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skips.append(width)
        self.mid = ResidualUnit(ch[-1], ch[-1])
        self.up = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        c_in = ch[-1]
        for level, width in enumerate(reversed(ch)):
            units = nn.ModuleList()
            for _ in range(config.repeats + 1):
                units.append(ResidualUnit(c_in + skips.pop(), width))
                c_in = width
            self.up.append(units)
            if level < len(ch) - 1:
                self.upsamplers.append(Upsampler(width))
        self.head = nn.Conv2d(ch[0], config.num_classes, 1)

    def forward(self, x):
        h = self.stem(x)
        skips = [h]
        for level, units in enumerate(self.down):
            for unit in units:
                h = unit(h)
                skips.append(h)
            if level < len(self.downsamplers):
                h = self.downsamplers[level](h)
                skips.append(h)
        h = self.mid(h)
        for level, units in enumerate(self.up):
            for unit in units:
                h = unit(torch.cat([h, skips.pop()], dim=1))
            if level < len(self.upsamplers):
                h = self.upsamplers[level](h)
        return self.head(h)


def control_catalog(model: ControlUNet) -> list[tuple[str, str]]:
    """(paper-style name, module path) of every hooked activation, in forward order."""
    entries = []

    def unit(prefix, path):
        entries.append((f"{prefix}-res-increment", f"{path}.branch"))
        entries.append((f"{prefix}-res-out", path))

    for level, units in enumerate(model.down):
        for r in range(len(units)):
            unit(f"down-level{level}-repeat{r}", f"down.{level}.{r}")
        if level < len(model.downsamplers):
            entries.append((f"down-level{level}-downsampler-out", f"downsamplers.{level}"))
    unit("mid-repeat0", "mid")
    for level, units in enumerate(model.up):
        for r in range(len(units)):
            unit(f"up-level{level}-repeat{r}", f"up.{level}.{r}")
        if level < len(model.upsamplers):
            entries.append((f"up-level{level}-upsampler-out", f"upsamplers.{level}"))
    return entries


@torch.no_grad()
def capture_activations(model: ControlUNet, images: torch.Tensor, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Run the control on B×3×S×S images in [-1, 1]; returns {name: B×C×h×w} for ``names`` (default: all)."""
    catalog = dict(control_catalog(model))
    names = list(catalog) if names is None else list(names)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        from diffact.families.catalog import unknown_layer_error

        raise unknown_layer_error(unknown[0], catalog, where="the control U-Net", others=len(unknown) - 1)
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        module = model.get_submodule(catalog[name])
        handles.append(module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach())))
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return {n: captured[n].float().cpu() for n in names}


# ---- forward noise at the diffusion models' SNR ---------------------------------------------------------------

def scaled_linear_alpha_bar(t: int, beta_start: float = 0.00085, beta_end: float = 0.012, steps: int = 1000) -> float:
    """ᾱ_t of Stable Diffusion's ``scaled_linear`` schedule (SD1.5 and SDXL scheduler configs)."""
    if not 0 <= t < steps:
        raise ConfigError(f"timestep t={t} outside 0..{steps - 1}")
    betas = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), steps) ** 2
    return float(np.prod(1.0 - betas[: t + 1]))


def noised_images(images: torch.Tensor, image_ids: Sequence[str], t: int, seed: int, draw: int) -> torch.Tensor:
    """x_t = √ᾱ_t·x + √(1−ᾱ_t)·std(x)·ε, ε seeded per (image id, draw) (see the module docstring)."""
    alpha_bar = scaled_linear_alpha_bar(t)
    eps = torch.stack([torch.randn(images.shape[1:], generator=torch_generator(seed, "control-noise", i, draw))
                       for i in image_ids])
    scale = images.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None, None]
    return math.sqrt(alpha_bar) * images + math.sqrt(1 - alpha_bar) * scale * eps


# ---- training, saving, loading --------------------------------------------------------------------------------

def training_batches(images: torch.Tensor, labels: torch.Tensor, config: ControlConfig):
    """Endless seeded mini-batches of random ``crop``² crops with random horizontal flips (255 = ignored label)."""
    gen = torch_generator(config.seed, "control-batches")
    n, side = images.shape[0], images.shape[-1]
    while True:
        idx = torch.randint(0, n, (config.batch_size,), generator=gen)
        top, left = (int(v) for v in torch.randint(0, side - config.crop + 1, (2,), generator=gen))
        window = (slice(top, top + config.crop), slice(left, left + config.crop))
        x, y = images[idx][..., window[0], window[1]], labels[idx][..., window[0], window[1]]
        flip = torch.rand(config.batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None, None], y.flip(-1), y)
        yield x, y


def train_control(images: torch.Tensor, labels: torch.Tensor, config: ControlConfig) -> tuple[ControlUNet, list[dict]]:
    """Train the control as a pixel classifier (cross-entropy, Adam); returns the model and the loss curve."""
    if images.ndim != 4 or labels.shape != (images.shape[0], *images.shape[2:]):
        raise DataError(f"expected images N×3×S×S and labels N×S×S, got {tuple(images.shape)} / {tuple(labels.shape)}")
    torch.manual_seed(config.seed)  # parameter init draws from the global generator
    model = ControlUNet(config)
    optim = torch.optim.Adam(model.parameters(), lr=config.lr)
    curve, start = [], time.time()
    batches = training_batches(images, labels.long(), config)
    model.train()
    for step in range(config.steps):
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        optim.zero_grad()
        loss.backward()
        optim.step()
        curve.append({"step": step, "loss": float(loss.detach())})
    model.eval()
    log.info("trained the control U-Net: %d steps in %.1f s, final loss %.3f", config.steps, time.time() - start,
             curve[-1]["loss"] if curve else float("nan"))
    return model, curve


def save_control(model: ControlUNet, out: str | Path, extra: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into the folder ``out`` atomically."""
    from safetensors.torch import save_file

    from diffact.utils.io import atomic_dir, write_json

    out = Path(out)
    with atomic_dir(out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        write_json(tmp / CONFIG, {**asdict(model.config), **(extra or {})})
    return out


def load_control(folder: str | Path) -> ControlUNet:
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise ModelError(f"{folder}: not a control U-Net folder (needs {CONFIG} and {WEIGHTS})")
    raw = json.loads((folder / CONFIG).read_text())
    fields = ControlConfig.__dataclass_fields__
    config = ControlConfig(**{k: (tuple(v) if k == "channels" else v) for k, v in raw.items() if k in fields})
    model = ControlUNet(config)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as err:
        raise ModelError(f"{folder / WEIGHTS}: weights do not fit {CONFIG} ({str(err).splitlines()[0]})") from err
    return model.eval()


def load_segmentation_arrays(items, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N×3×S×S in [-1, 1]) and nearest-resized labels (N×S×S uint8) of DDPM-seg items."""
    from diffact.data.ddpmseg import resize_labels
    from diffact.data.ddpmseg import load_label
    from diffact.data.images import load_image_tensor

    images = torch.stack([load_image_tensor(item.image_path, size)[0] for item in items])
    labels = torch.stack([torch.from_numpy(resize_labels(load_label(item.label_path), size, size).astype(np.int64))
                          for item in items])
    return images, labels
