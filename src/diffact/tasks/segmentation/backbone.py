"""Frozen diffusion activations as an mmsegmentation backbone, and the segmentor around it (paper §2.9).

Registered in mmseg's ``MODELS`` registry when this module is imported; configs do that with::

    custom_imports = dict(imports=['diffact.tasks.segmentation.backbone',
                                   'diffact.tasks.segmentation.mmseg_data'], allow_failed_imports=False)

Nothing is copied into or edited in the installed mmseg (the paper's code copies its segmentor file there).

``DiffusionBackbone`` — for each model part: the crop (already in [-1, 1] from the data preprocessor) is resized
to the part's ``image_size`` (paper: 512 px for SD1.5, 1024 px for SDXL, so an ADE20K 512 crop is upsampled for
SDXL) → :class:`~diffact.extract.pipeline.DiffusionFeatureExtractor` (VAE sample, noise to t = 50, one U-Net pass
with the dataset's prompt, hooks; everything under ``inference_mode``, every weight ``requires_grad=False``, every
module in eval mode) → one zero-initialised :class:`~diffact.tasks.segmentation.blocks.ResBlock` per layer → the
layers of one resolution concatenated → one ResBlock per level. Levels go coarsest first
(:mod:`~diffact.tasks.segmentation.levels`). With several parts (Ours-XL-t, App. B.4) the per-layer block is
``MultiRes(C, 4)``, the per-level block ``MultiRes(sum, 2)``, and level i of all parts is concatenated and passed
through one more ResBlock ("amalgamated"), as the paper's code does.

Features are computed on the fly, not read from the feature cache: training augments every crop (random resize,
random crop, flip, photometric distortion), so the activations of a training step exist only for that step and no
cache can serve them; evaluation slides windows over resized images, which again are not the cached images.

The diffusion pipelines are held outside the module tree (a plain list, not submodules): the optimizer never sees
their parameters, ``model.train()`` cannot switch them to training mode, ``model.to()`` does not move them (each
part is loaded on its own ``device``) and checkpoints hold only the trainable adapters and heads.

Noise: the VAE sample and the diffusion noise of each image are seeded from ``noise_seed``, the part index and a
hash of the image's pixels, so evaluation is deterministic and every distinct training crop gets its own draw.
Because of that, a window evaluated again (the same pixels in the same batch: every validation pass slides the
same windows over the same images) has the same activations, and in eval mode a part keeps them
(:class:`EvalFeatureCache`, up to ``eval_cache_mb`` per part, first come first kept) instead of running the
U-Net again: the demo's three validations ran the frozen model 3 × 16 times for 16 distinct windows.

``level_order='fine_first'`` hands the levels to the head finest first instead (see :mod:`.levels` for what the
paper's coarse-first order does to UPerHead's output resolution).

``DiffusionSegmentor`` is mmseg's ``EncoderDecoder`` (slide inference, losses, auxiliary head) whose heads take
their input widths from the backbone: ``'auto'`` in ``in_channels`` / ``in_index`` / ``pool_scales`` is filled in
from the levels (pool scales (1..n) for n levels, auxiliary head on level 1), and explicit values are checked.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from diffact.tasks.segmentation import levels as lv
from diffact.tasks.segmentation.blocks import MultiRes, ResBlock
from diffact.utils.errors import ConfigError, LayerError

log = logging.getLogger(__name__)

AUTO = "auto"
# Settings a part inherits from the backbone unless it sets its own (paper §2.9: t = 50, one prompt per dataset).
PART_DEFAULTS = {"t": 50, "prompt": "", "noise_seed": 0, "ensemble": 1, "vae_mode": "sample", "dtype": "float32",
                 "device": "auto", "image_size": None, "family": None, "levels": None, "revision": None,
                 "variant": None}
PART_KEYS = {"source", "layers", *PART_DEFAULTS}
# Paper repeats of the shared-weight blocks (diffusion_segmentor.py): single model 1/1, several models 4/2.
SINGLE_REPEATS, MULTI_REPEATS = (1, 1), (4, 2)
# Order of the levels handed to the head: the paper's coarsest first, or finest first (mmseg's usual backbone order).
LEVEL_ORDERS = ("coarse_first", "fine_first")


DEFAULT_EVAL_CACHE_MB = 512  # activations of evaluation windows kept per part (the demo's 16 windows: < 1 MB)


class EvalFeatureCache:
    """The activations of evaluation batches, keyed by their image ids (pixel hashes, :meth:`FrozenPart.image_ids`)
    and shape. Entries are kept first come first kept up to ``max_bytes`` and never evicted: validation passes scan
    the same windows in the same order, where least-recently-used eviction would keep nothing that the next pass
    reaches in time."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.used_bytes = 0
        self.hits = 0
        self._entries: dict[tuple, dict[str, torch.Tensor]] = {}

    def get(self, key: tuple) -> dict[str, torch.Tensor] | None:
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
        return found

    def offer(self, key: tuple, feats: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in feats.values())
        if self.used_bytes + size <= self.max_bytes:
            self._entries[key] = feats
            self.used_bytes += size


class FrozenPart:
    """One diffusion model of the backbone: its extractor and its levels. Deliberately not an ``nn.Module``."""

    def __init__(self, index: int, spec: dict, pipelines: dict, eval_cache_mb: float = DEFAULT_EVAL_CACHE_MB):
        from diffact.extract.layersets import resolve_layers_arg
        from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings
        from diffact.models.loading import load_pipeline, unet_family

        self.index = index
        where = f"model.backbone.models[{index}]"
        key = pipeline_key(spec)
        if key not in pipelines:
            pipelines[key] = freeze(load_pipeline(spec["source"], dtype=spec["dtype"], device=spec["device"],
                                                  revision=spec["revision"], variant=spec["variant"]))
        pipe = pipelines[key]
        unet = pipe.unet
        self.source = spec["source"]
        self.family = spec["family"] or unet_family(unet)
        self.vae_factor = int(getattr(pipe, "vae_scale_factor", 8))
        self.image_size = int(spec["image_size"] or unet.config.sample_size * self.vae_factor)
        names = resolve_layers_arg(unet, self.family, spec["layers"])
        infos = lv.layer_infos(unet, names, self.image_size, self.vae_factor)
        self.levels = (lv.explicit_levels(infos, spec["levels"], where) if spec["levels"]
                       else lv.group_by_resolution(infos))
        settings = ExtractionSettings(t=int(spec["t"]), prompt=str(spec["prompt"]), image_size=self.image_size,
                                      noise_seed=int(spec["noise_seed"]), ensemble=int(spec["ensemble"]),
                                      vae_mode=spec["vae_mode"], dtype=spec["dtype"])
        self.noise_seed = settings.noise_seed
        self.extractor = DiffusionFeatureExtractor(pipe, [i.name for i in infos], settings)
        self.eval_cache = EvalFeatureCache(int(eval_cache_mb * 2**20))

    @property
    def layer_names(self) -> list[str]:
        return [i.name for level in self.levels for i in level]

    def image_ids(self, images: torch.Tensor) -> list[str]:
        """Per-image seed keys: part index + a hash of the pixels (see the module docstring)."""
        flat = images.detach().to("cpu", torch.float32).contiguous()
        return [f"m{self.index}-" + hashlib.blake2b(x.numpy().tobytes(), digest_size=8).hexdigest() for x in flat]

    def features(self, images: torch.Tensor, reuse: bool = False) -> dict[str, torch.Tensor]:
        """name → B×C×h×w float32 activations of images B×3×H×W in [-1, 1] (resized to ``image_size``).
        ``reuse``: an evaluation batch; the same batch again gets the kept activations (:class:`EvalFeatureCache`).
        The returned tensors may be shared with later calls: never modify them in place."""
        ids = self.image_ids(images)
        key = (tuple(ids), tuple(images.shape))
        if reuse and (kept := self.eval_cache.get(key)) is not None:
            return kept
        size = (self.image_size, self.image_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        # Inference mode, not just no_grad: the frozen pass skips autograd's version counters and view tracking too
        # (~4 % of a demo U-Net call). Its tensors cannot be saved for the trainable blocks' backward, so the
        # activations leave it as plain copies (they are small next to the pass that made them).
        with torch.inference_mode():
            feats = self.extractor(images.detach().float(), ids)
        feats = {name: value.clone() for name, value in feats.items()}
        for level in self.levels:
            for info in level:
                got = tuple(feats[info.name].shape[-2:])
                if got != (info.side, info.side):
                    raise LayerError(f"{self.source}: {info.name} came out {got[0]}×{got[1]}, expected "
                                     f"{info.side}² at image size {self.image_size}")
        if reuse:
            self.eval_cache.offer(key, feats)
        return feats

    def describe(self) -> str:
        return "; ".join(f"level {k} ({lvl[0].side}²): " + " + ".join(f"{i.name} {i.channels}" for i in lvl)
                         for k, lvl in enumerate(self.levels))


def pipeline_key(spec: dict) -> tuple:
    """Parts with the same key share one loaded pipeline."""
    return spec["source"], spec["dtype"], spec["device"], spec["revision"], spec["variant"]


def freeze(pipe):
    """Every module of the pipeline in eval mode with requires_grad False (the paper's frozen U-Net)."""
    for component in pipe.components.values():
        if isinstance(component, nn.Module):
            component.eval()
            component.requires_grad_(False)
    return pipe


def _block_key(*parts) -> str:
    # ModuleDict keys may not contain '.'; layer names have none, but keep the key readable and safe.
    return "/".join(str(p) for p in parts).replace(".", "_")


@MODELS.register_module()
class DiffusionBackbone(BaseModule):
    """Frozen diffusion activations + trainable zero-init ResBlocks → a list of feature levels, coarsest first.

    models:        one dict per diffusion model: ``source`` (hub id or pipeline folder), ``layers`` (a layer-set
                   name such as ``practical``, a list, or a comma-separated string), optional ``family``,
                   ``image_size``, ``levels`` (explicit grouping: lists of layer names) and any of ``PART_DEFAULTS``
    resblock_init: ``paper`` (every weight zero, as the paper) or ``last_norm`` (see :mod:`.blocks`)
    layer_repeats, level_repeats: shared-weight repeats of the per-layer / per-level blocks (default: the paper's,
                   1/1 for one model, 4/2 for several)
    level_order:   ``coarse_first`` (the paper: UPerHead then predicts at the coarsest level's resolution) or
                   ``fine_first`` (mmseg's usual order: pyramid pooling on the coarsest, prediction at the finest)
    eval_cache_mb: activations of evaluation windows each part keeps for the next validation (0: none)
    other keys:    defaults for every part (``t``, ``prompt``, ``noise_seed``, ``dtype``, ``device``, ...)
    """

    def __init__(self, models: Sequence[dict], resblock_init: str = "paper", layer_repeats: int | None = None,
                 level_repeats: int | None = None, level_order: str = "coarse_first",
                 eval_cache_mb: float = DEFAULT_EVAL_CACHE_MB, init_cfg=None, **defaults):
        super().__init__(init_cfg=init_cfg)
        if level_order not in LEVEL_ORDERS:
            raise ConfigError(f"model.backbone.level_order must be one of {', '.join(LEVEL_ORDERS)}, "
                              f"got {level_order!r}")
        self.level_order = level_order
        unknown = set(defaults) - set(PART_DEFAULTS)
        if unknown:
            raise ConfigError(f"model.backbone: unknown keys {sorted(unknown)}; expected models, resblock_init, "
                              f"layer_repeats, level_repeats, level_order, eval_cache_mb or part defaults "
                              f"{sorted(PART_DEFAULTS)}")
        if not eval_cache_mb >= 0:
            raise ConfigError(f"model.backbone.eval_cache_mb must be ≥ 0, got {eval_cache_mb!r}")
        if not models:
            raise ConfigError("model.backbone.models is empty: name at least one diffusion model "
                              "(source + layers), e.g. via `diffact seg-train --model ... --layers ...`")
        from diffact.models.loading import release_text_encoders

        specs = [part_spec(i, spec, defaults) for i, spec in enumerate(models)]
        keys = [pipeline_key(spec) for spec in specs]
        pipelines: dict = {}
        self._parts = []
        for i, spec in enumerate(specs):
            self._parts.append(FrozenPart(i, spec, pipelines, eval_cache_mb))
            if keys[i] not in keys[i + 1:]:  # its last part: free the text encoders before the next model loads
                release_text_encoders(pipelines[keys[i]])
        multi = len(self._parts) > 1
        default_layer, default_level = MULTI_REPEATS if multi else SINGLE_REPEATS
        layer_repeats = layer_repeats or default_layer
        level_repeats = level_repeats or default_level
        if multi:
            channels = lv.combine_levels([p.levels for p in self._parts], [p.source for p in self._parts])
        else:
            channels = lv.level_channels(self._parts[0].levels)
        # Blocks are built and named in coarse-first order; only the list handed to the head is reordered.
        self._coarse_channels = list(channels)
        self.level_channels = self._ordered(channels)
        self.layer_blocks = nn.ModuleDict()
        self.level_blocks = nn.ModuleDict()
        for part in self._parts:
            for k, level in enumerate(part.levels):
                for info in level:
                    self.layer_blocks[_block_key(part.index, info.name)] = MultiRes(info.channels, layer_repeats,
                                                                                    resblock_init)
                self.level_blocks[_block_key(part.index, k)] = MultiRes(sum(i.channels for i in level), level_repeats,
                                                                        resblock_init)
        self.merge_blocks = nn.ModuleDict(
            {str(k): ResBlock(c, resblock_init) for k, c in enumerate(self._coarse_channels)} if multi else {})
        for part in self._parts:
            log.info("segmentation backbone part %d (%s, %s, %d px): %s", part.index, part.source, part.family,
                     part.image_size, part.describe())

    @property
    def parts(self) -> list[FrozenPart]:
        return list(self._parts)

    def describe_levels(self) -> str:
        order = "" if self.level_order == "coarse_first" else " (handed to the head finest first)"
        return " | ".join(f"model {p.index} {p.describe()}" for p in self._parts) + order

    def _ordered(self, levels: list) -> list:
        return list(levels) if self.level_order == "coarse_first" else list(reversed(levels))

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        device = next(self.parameters()).device
        per_part = []
        for part in self._parts:
            feats = part.features(inputs, reuse=not self.training)
            outs = []
            for k, level in enumerate(part.levels):
                maps = [self.layer_blocks[_block_key(part.index, i.name)](feats[i.name].to(device)) for i in level]
                outs.append(self.level_blocks[_block_key(part.index, k)](torch.cat(maps, dim=1)))
            per_part.append(outs)
        if not self.merge_blocks:
            return self._ordered(per_part[0])
        return self._ordered([self.merge_blocks[str(k)](torch.cat([outs[k] for outs in per_part], dim=1))
                              for k in range(len(self._coarse_channels))])


def part_spec(index: int, spec, defaults: dict) -> dict:
    """A part's settings: the backbone defaults overridden by the part's own keys; checks names and required keys."""
    spec = dict(spec)
    where = f"model.backbone.models[{index}]"
    unknown = set(spec) - PART_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected {sorted(PART_KEYS)}")
    for key in ("source", "layers"):
        if not spec.get(key):
            raise ConfigError(f"{where}: '{key}' is required (hub id / pipeline folder, and a layer set or list)")
    merged = {**PART_DEFAULTS, **defaults, **spec}
    if isinstance(merged["layers"], (list, tuple)):
        merged["layers"] = [str(x) for x in merged["layers"]]
    if merged["levels"]:
        merged["levels"] = [[str(x) for x in level] for level in merged["levels"]]
    from diffact.models.loading import resolve_dtype

    merged["dtype"] = resolve_dtype(merged["dtype"], merged["device"])  # `auto`: one name per machine, for the keys
    return merged


def _filled(value, auto, explicit_check=None):
    """``auto`` where the config says 'auto' (or nothing), else the config's value after ``explicit_check``."""
    if value == AUTO or value is None:
        return auto
    if explicit_check is not None:
        explicit_check(value)
    return value


@MODELS.register_module()
class DiffusionSegmentor(EncoderDecoder):
    """mmseg's EncoderDecoder with a :class:`DiffusionBackbone`; head widths follow the backbone's levels."""

    def _check_channels(self, value, expected, where: str) -> None:
        got = list(value) if isinstance(value, (list, tuple)) else value
        if got != expected:
            raise ConfigError(f"{where} = {got} does not match the backbone's levels {self.backbone.level_channels} "
                              f"({self.backbone.describe_levels()}); set it to 'auto' or fix the config")

    def _init_decode_head(self, decode_head) -> None:
        layout = lv.head_layout(self.backbone.level_channels)
        head = decode_head.copy()
        head["in_channels"] = _filled(head.get("in_channels"), layout["in_channels"],
                                      lambda v: self._check_channels(v, layout["in_channels"],
                                                                     "model.decode_head.in_channels"))
        head["in_index"] = _filled(head.get("in_index"), layout["in_index"])
        if "pool_scales" in head:
            head["pool_scales"] = _filled(head.get("pool_scales"), layout["pool_scales"])
        super()._init_decode_head(head)

    def _init_auxiliary_head(self, auxiliary_head) -> None:
        if auxiliary_head is None:
            return super()._init_auxiliary_head(None)
        if isinstance(auxiliary_head, list):
            raise ConfigError("model.auxiliary_head: give one head (the paper's FCN head on level 1), not a list")
        layout = lv.head_layout(self.backbone.level_channels)
        head = auxiliary_head.copy()
        head["in_index"] = _filled(head.get("in_index"), layout["aux_in_index"])
        index = int(head["in_index"])
        if not 0 <= index < len(self.backbone.level_channels):
            raise ConfigError(f"model.auxiliary_head.in_index = {index}, but the backbone has "
                              f"{len(self.backbone.level_channels)} level(s)")
        expected = self.backbone.level_channels[index]
        head["in_channels"] = _filled(head.get("in_channels"), expected,
                                      lambda v: self._check_channels(v, expected, "model.auxiliary_head.in_channels"))
        super()._init_auxiliary_head(head)
