"""Figure 2 drawn from a model's actual block structure, not typed by hand.

The paper's Figure 2 is a diagram of the SDXL U-Net: down / mid / up stages, one column per resolution, each holding
ResModules, ViT modules (several basic blocks each) and a down- or upsampler; beside it, the inside of one ViT basic
block (self-attention, cross-attention, FFN, residuals). Here the columns and their contents come from walking the
U-Net (:func:`diffact.families.unet.walk_unet`, on the meta device, so no weights are needed) and the inside of
the basic block from the activation kinds the catalog finds in the first one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from diffact.analysis.names import parse_name
from diffact.utils.errors import ModelError

BOX_COLOURS = {"res": "#9ecae1", "vit": "#fdae6b", "downsampler": "#d9d9d9", "upsampler": "#d9d9d9"}


@dataclass
class Module:
    """One module of a resolution column: a ResModule, a ViT module (with its basic-block count) or a sampler."""

    kind: str  # res | vit | downsampler | upsampler
    repeat: int | None
    channels: int
    blocks: int = 0


@dataclass
class Column:
    """All modules of one (stage, level): one resolution of one stage, in forward order."""

    stage: str
    level: int | None
    scale: int
    modules: list[Module] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.stage if self.level is None else f"{self.stage}-level{self.level}"


def unet_config(reference: str | Path) -> dict:
    """The U-Net config of a model folder (``<folder>/unet/config.json``) or of a paper model's hub id."""
    from diffact.models.configs import reference_unet_config

    folder = Path(reference)
    if folder.is_dir():
        path = folder / "unet" / "config.json"
        if not path.is_file():
            raise ModelError(f"{folder}: no unet/config.json (expected a diffusers pipeline folder)")
        return json.loads(path.read_text())
    config = reference_unet_config(str(reference))
    if config is None:
        raise ModelError(f"{reference}: neither a model folder nor a paper model with a known U-Net config")
    return config


def unet_columns(unet) -> list[Column]:
    """Group the catalog of ``unet`` into resolution columns (paper Fig. 2 layout), in forward order."""
    from diffact.families.unet import walk_unet

    columns: list[Column] = []
    for act in walk_unet(unet):
        if act.name.startswith("unet-"):
            continue
        parsed = parse_name(act.name)
        if not columns or (columns[-1].stage, columns[-1].level) != (parsed.stage, parsed.level):
            columns.append(Column(parsed.stage, parsed.level, act.scale))
        _add_module(columns[-1], parsed, act.channels)
    return columns


def _add_module(column: Column, parsed, channels: int) -> None:
    kind = parsed.kind
    if kind in ("res-out", "res-increment"):
        key = ("res", parsed.repeat)
    elif "sampler" in kind:
        key = (kind.removesuffix("-out"), None)
    elif parsed.block is not None or kind == "vit-out":
        key = ("vit", parsed.repeat)
    else:
        return
    module = next((m for m in column.modules if (m.kind, m.repeat) == key), None)
    if module is None:
        module = Module(key[0], key[1], channels)
        column.modules.append(module)
    if key[0] == "vit" and parsed.block is not None:
        module.blocks = max(module.blocks, parsed.block + 1)


def block_kinds(unet) -> list[str]:
    """Activation kinds inside the first ViT basic block, in forward order (self-attn, cross-attn, FFN, output)."""
    from diffact.families.unet import walk_all_unet as walk_all

    kinds, prefix = [], None
    for act in walk_all(unet):
        parsed = parse_name(act.name) if not act.name.startswith(("unet-", "attn-")) else None
        if parsed is None or parsed.block is None:
            continue
        this = act.name[: act.name.index(f"block{parsed.block}") + len(f"block{parsed.block}")]
        prefix = prefix or this
        if this == prefix:
            kinds.append(parsed.kind)
    return kinds


def draw_unet(ax, columns: list[Column], title: str = "") -> None:
    """Columns left to right (down → mid → up), modules top to bottom; box text = module, channels, ViT blocks."""
    from matplotlib.patches import FancyBboxPatch

    height = max(len(c.modules) for c in columns)
    for x, column in enumerate(columns):
        ax.text(x, 0.6, f"{column.label}\n1/{column.scale} latent", ha="center", va="bottom", fontsize=6)
        for y, module in enumerate(column.modules):
            label = {"res": "Res", "vit": "ViT", "downsampler": "Down", "upsampler": "Up"}[module.kind]
            if module.kind == "vit":
                label += f" ×{module.blocks}"
            ax.add_patch(FancyBboxPatch((x - 0.4, -y - 0.4), 0.8, 0.8, boxstyle="round,pad=0.02",
                                        facecolor=BOX_COLOURS[module.kind], edgecolor="black", linewidth=0.5))
            ax.text(x, -y, f"{label}\n{module.channels}", ha="center", va="center", fontsize=5.5)
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(-height + 0.4, 1.6)
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def draw_block(ax, kinds: list[str]) -> None:
    """The inside of one ViT basic block as a chain of the activation kinds the catalog captures there."""
    from matplotlib.patches import FancyBboxPatch

    for y, kind in enumerate(kinds):
        colour = "#c7e9c0" if kind.startswith("self") else "#dadaeb" if kind.startswith("cross") else "#fdd0a2"
        ax.add_patch(FancyBboxPatch((-0.45, -y - 0.35), 0.9, 0.7, boxstyle="round,pad=0.02", facecolor=colour,
                                    edgecolor="black", linewidth=0.5))
        ax.text(0, -y, kind, ha="center", va="center", fontsize=6.5)
        if y:
            ax.annotate("", xy=(0, -y + 0.35), xytext=(0, -y + 0.65), arrowprops={"arrowstyle": "->", "lw": 0.6})
    ax.set_xlim(-0.6, 0.6)
    ax.set_ylim(-len(kinds) + 0.4, 0.8)
    ax.set_axis_off()
    ax.set_title("one ViT basic block", fontsize=8)
