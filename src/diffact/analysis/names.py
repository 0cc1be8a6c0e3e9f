"""Parse the paper's activation names into their parts (stage, level, repeat, block, kind).

The names are the ones :mod:`diffact.extract.catalog` gives (docs/paper.md §2.2, paper App. B):
``up-level1-repeat2-vit-block0-self-k`` = stage ``up``, level 1, repeat 2, ViT basic block 0, kind ``self-k``.
Kinds are the catalog's (``res-out``, ``res-increment``, ``vit-out``, ``block-out``, ``self-q``, ``cross-q``,
``ffn-inner``, ``upsampler-out``, ...), so the analysis code can reason about names without building a U-Net.
The control U-Net (:mod:`diffact.models.control_unet`) names its blocks in the same scheme.

DiT names (``vit-block{i}-<kind>``, :mod:`diffact.families.dit`) parse as stage ``dit``, block ``i``, no level or
repeat: a DiT has one resolution, so its only position is the depth. Their inter-module activations (what runs
between modules, as ResModule/ViT outputs do in a U-Net) are the block outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diffact.utils.errors import LayerError

_NAME = re.compile(
    r"^(?P<stage>down|mid|up)"
    r"(?:-level(?P<level>\d+))?"
    r"(?:-repeat(?P<repeat>\d+))?"
    r"(?P<vit>-vit(?:-block(?P<block>\d+))?)?"
    r"-(?P<rest>[a-z-]+)$"
)
_DIT_NAME = re.compile(r"^vit-block(?P<block>\d+)-(?P<rest>[a-z0-9-]+)$")
# Every DiT family's in-block names in forward order (PixArt, SD3/SD3.5 and Flux each use a subsequence).
DIT_REST_ORDER = ("norm-out", "q", "k", "v", "self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map",
                  "attn-out", "self2-q", "self2-k", "self2-v", "self2-map", "ffn-inner", "out")
_UNET_KINDS = {"unet-in": "unet-in", "unet-after-conv-in": "after-conv-in", "unet-out": "unet-out"}
INTER_MODULE_KINDS = ("res-out", "vit-out", "downsampler-out", "upsampler-out")
SELF_QK_KINDS = ("self-q", "self-k")
INCREMENT_KINDS = ("res-increment", "ffn-inner", "self-v")


@dataclass(frozen=True)
class ActivationName:
    """The parts of one activation id; ``level``/``repeat``/``block`` are None where the name has none."""

    name: str
    stage: str
    level: int | None
    repeat: int | None
    block: int | None
    kind: str

    @property
    def resolution_key(self) -> tuple[str, int | None]:
        """(stage, level): activations of one resolution within one stage (mid counts as its own stage)."""
        return (self.stage, self.level)

    @property
    def is_inter_module(self) -> bool:
        """Inter-module activations: what earlier work (DDPM-seg) evaluated (paper §3, Fig 1 upper); in a DiT the
        block outputs."""
        return self.kind in INTER_MODULE_KINDS or (self.stage == "dit" and self.kind == "block-out")


def parse_name(name: str) -> ActivationName:
    """Split a paper-style activation id; unknown shapes raise :class:`LayerError` naming the id."""
    if name in _UNET_KINDS:
        return ActivationName(name, "unet", None, None, None, _UNET_KINDS[name])
    dit = _DIT_NAME.match(name)
    if dit:
        rest = dit.group("rest")
        if rest not in DIT_REST_ORDER:
            raise LayerError(f"cannot parse DiT activation name {name!r}: unknown kind {rest!r} "
                             f"(known: {', '.join(DIT_REST_ORDER)})")
        # the catalog's kinds: `out` is a block output, SD3.5's second attention has the self-attention kinds
        kind = "block-out" if rest == "out" else rest.replace("self2-", "self-")
        return ActivationName(name, "dit", None, None, int(dit.group("block")), kind)
    match = _NAME.match(name)
    if not match:
        raise LayerError(f"cannot parse activation name {name!r} (expected e.g. 'up-level1-repeat0-vit-block0-cross-q')")
    parts = match.groupdict()
    rest = parts["rest"]
    if parts["block"] is not None:
        kind = "block-out" if rest == "out" else rest
    elif parts["vit"]:
        kind = "vit-out" if rest == "out" else rest
    else:
        kind = rest
    as_int = lambda v: None if v is None else int(v)  # noqa: E731
    return ActivationName(name, parts["stage"], as_int(parts["level"]), as_int(parts["repeat"]),
                          as_int(parts["block"]), kind)


_STAGE_RANK = {"down": 1, "mid": 2, "up": 3}
_UNET_RANK = {"unet-in": -2, "after-conv-in": -1, "unet-out": 9}
_RES_RANK = {"res-increment": 0, "res-out": 1}
# Inside a basic block, the catalog's order (diffact.extract.catalog.BLOCK_KINDS).
_BLOCK_RANK = {k: i for i, k in enumerate(
    ("self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "ffn-inner", "block-out"))}


def forward_key(name: str) -> tuple:
    """A sort key that puts activation ids in forward-execution order without building the U-Net.

    Feature stores list their layers alphabetically (``meta.json`` is written with sorted keys), so the analyses
    order layers with this key; it agrees with :func:`diffact.families.unet.walk_unet` (tests check both demo
    layouts and the control U-Net). Within a level: each repeat's ResModule (increment, output), then its ViT
    (blocks in order, kinds in catalog order, then the ViT output); the level's sampler comes last. The mid block's
    ViT ``mid-vit`` / ``mid-repeat{R}-vit`` follows ResModule R (0 for ``mid-vit``).
    """
    p = parse_name(name)
    if p.stage == "unet":
        return (_UNET_RANK[p.kind],)
    if p.stage == "dit":  # depth, then the block's own order
        return (1, p.block, DIT_REST_ORDER.index(name.split("-", 2)[2]))
    repeat = p.repeat if p.repeat is not None else 0
    if p.kind in _RES_RANK:
        inner = (repeat, 0, _RES_RANK[p.kind])
    elif p.block is not None:
        inner = (repeat, 1, p.block, _BLOCK_RANK.get(p.kind, len(_BLOCK_RANK)))
    elif p.kind == "vit-out":
        inner = (repeat, 2)
    else:  # down/upsampler: after every repeat of its level
        inner = (float("inf"),)
    return (0, _STAGE_RANK[p.stage], p.level if p.level is not None else 0, inner)


def forward_sorted(names) -> list[str]:
    return sorted(names, key=forward_key)


def resolution_label(parsed: ActivationName) -> str:
    """Short label of an activation's resolution group, e.g. ``up-level1`` or ``mid``."""
    if parsed.stage in ("mid", "unet", "dit"):
        return parsed.stage
    return f"{parsed.stage}-level{parsed.level}"
