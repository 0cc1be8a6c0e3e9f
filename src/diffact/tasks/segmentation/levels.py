"""Which activation goes into which UPerHead level, and the head layout that follows (paper §2.9).

The paper's segmentation configs list ``feature_layers`` as levels of (layer, channels): the layers of one spatial
resolution are concatenated into one level, levels go in forward order, i.e. from the coarsest up-stage resolution
to the finest (Ours-XL: [block7-out + block5-out = 2560 @ 32², cross-q + block0-out = 1280 @ 64²]; Legacy-v1.5:
[1280 @ 16², 1280 @ 32², 640 + 320 @ 64²]). :func:`group_by_resolution` derives exactly these groups from the
catalog, so a config names a layer set and the levels follow. The multi-model variant (Ours-XL-t, App. B.4)
concatenates level i of every model (:func:`combine_levels`); its models must agree on the sizes.

UPerHead then takes ``in_channels`` = the level widths, ``in_index`` = 0..n−1 and ``pool_scales`` = (1, …, n)
(the paper: (1, 2) for 2 levels, (1, 2, 3) for 3), and the FCN auxiliary head reads level 1 (:func:`head_layout`).
Note the consequence of the coarse-to-fine order, kept from the paper: UPerHead's pyramid pooling runs on its
*last* input, here the finest level, and its fused output has the size of the first, the coarsest (Ours-XL at
1024 px: 32² logits for a 512² crop, 16 px per cell; the finer levels are resized down to it). The backbone's
``level_order='fine_first'`` gives mmseg's usual order instead (pooling on the coarsest, logits at the finest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from diffact.utils.errors import ConfigError, LayerError


@dataclass(frozen=True)
class LayerInfo:
    """One requested activation: its name, channels and square spatial side at the extraction size."""

    name: str
    channels: int
    side: int


def layer_infos(unet, names: Iterable[str], image_size: int, vae_factor: int, text_tokens: int = 77) -> list[LayerInfo]:
    """Channels and spatial side of each layer at ``image_size`` (aggregated maps: on the latent grid)."""
    from diffact.families.catalog import AGGREGATE_KIND, aggregate_entries
    from diffact.families.registry import walk as walk_model
    from diffact.extract.layersets import channel_total

    by_name = {a.name: a for a in [*walk_model(unet), *aggregate_entries()]}
    latent = image_size // vae_factor
    infos = []
    for name in names:
        if name not in by_name:
            raise LayerError(f"unknown layer {name!r} for segmentation (see `diffact layers`)")
        act = by_name[name]
        channels = (channel_total(unet, [name], image_size, text_tokens, vae_factor) if act.kind == AGGREGATE_KIND
                    else act.channels)
        infos.append(LayerInfo(name, int(channels), act.spatial((latent, latent))[0]))
    return infos


def group_by_resolution(infos: Sequence[LayerInfo]) -> list[list[LayerInfo]]:
    """Levels = layers of equal spatial side, coarsest first; within a level, the given (forward) order."""
    sides = sorted({i.side for i in infos})
    return [[i for i in infos if i.side == side] for side in sides]


def explicit_levels(infos: Sequence[LayerInfo], levels: Sequence[Sequence[str]], where: str) -> list[list[LayerInfo]]:
    """Levels as a config lists them (the paper's ``feature_layers``); each layer once, one size per level."""
    by_name = {i.name: i for i in infos}
    named = [name for level in levels for name in level]
    unknown = [n for n in named if n not in by_name]
    if unknown:
        raise ConfigError(f"{where}: levels name {unknown[0]!r}, which is not among the layers {sorted(by_name)}")
    if sorted(named) != sorted(by_name):
        left = sorted(set(by_name) - set(named)) or sorted(n for n in named if named.count(n) > 1)
        raise ConfigError(f"{where}: levels must list every layer exactly once; check {left}")
    grouped = [[by_name[n] for n in level] for level in levels]
    for index, level in enumerate(grouped):
        if not level:
            raise ConfigError(f"{where}: level {index} is empty")
        if len({i.side for i in level}) > 1:
            sizes = ", ".join(f"{i.name} {i.side}²" for i in level)
            raise ConfigError(f"{where}: level {index} mixes spatial sizes ({sizes}); concatenation needs one size")
    return grouped


def level_channels(levels: Sequence[Sequence[LayerInfo]]) -> list[int]:
    return [sum(i.channels for i in level) for level in levels]


def combine_levels(parts: Sequence[Sequence[Sequence[LayerInfo]]], names: Sequence[str]) -> list[int]:
    """Channels per level of several models concatenated level by level (Ours-XL-t, paper App. B.4).

    Every model needs the same number of levels, and level i the same spatial size in every model.
    """
    counts = {len(levels) for levels in parts}
    if len(counts) != 1:
        detail = ", ".join(f"{n}: {len(levels)}" for n, levels in zip(names, parts))
        raise ConfigError(f"multi-model segmentation needs the same number of levels in every model ({detail})")
    for index in range(counts.pop()):
        sides = {n: levels[index][0].side for n, levels in zip(names, parts)}
        if len(set(sides.values())) > 1:
            detail = ", ".join(f"{n} {s}²" for n, s in sides.items())
            raise ConfigError(f"multi-model level {index}: spatial sizes differ ({detail}); "
                              "change image_size or levels")
    return [sum(level_channels([levels[i]])[0] for levels in parts) for i in range(len(parts[0]))]


def pool_scales(n_levels: int) -> tuple[int, ...]:
    """UPerHead pool scales by number of levels, the paper's rule: (1, 2) for 2 levels, (1, 2, 3) for 3."""
    return tuple(range(1, n_levels + 1))


def aux_index(n_levels: int) -> int:
    """The FCN auxiliary head reads level 1 (paper configs), or level 0 when there is only one."""
    return 1 if n_levels > 1 else 0


def head_layout(channels: Sequence[int]) -> dict:
    """UPerHead / FCNHead arguments for levels of these widths."""
    n = len(channels)
    if n < 1:
        raise ConfigError("segmentation needs at least one feature level")
    return {"in_channels": list(channels), "in_index": list(range(n)), "pool_scales": pool_scales(n),
            "aux_in_index": aux_index(n), "aux_in_channels": int(channels[aux_index(n)])}
