"""Parse the paper's activation names into their parts (stage, level, repeat, block, kind).

The names are the ones :mod:`diffact.extract.catalog` gives (paper_spec §2.2, paper App. B):
``up-level1-repeat2-vit-block0-self-k`` = stage ``up``, level 1, repeat 2, ViT basic block 0, kind ``self-k``.
Kinds are the catalog's (``res-out``, ``res-increment``, ``vit-out``, ``block-out``, ``self-q``, ``cross-q``,
``ffn-inner``, ``upsampler-out``, ...), so the analysis code can reason about names without building a U-Net.
The control U-Net (:mod:`diffact.models.control_unet`) names its blocks in the same scheme.
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
        """Inter-module activations: what earlier work (DDPM-seg) evaluated (paper §3, Fig 1 upper)."""
        return self.kind in INTER_MODULE_KINDS


def parse_name(name: str) -> ActivationName:
    """Split a paper-style activation id; unknown shapes raise :class:`LayerError` naming the id."""
    if name in _UNET_KINDS:
        return ActivationName(name, "unet", None, None, None, _UNET_KINDS[name])
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


def resolution_label(parsed: ActivationName) -> str:
    """Short label of an activation's resolution group, e.g. ``up-level1`` or ``mid``."""
    if parsed.stage in ("mid", "unet"):
        return parsed.stage
    return f"{parsed.stage}-level{parsed.level}"
