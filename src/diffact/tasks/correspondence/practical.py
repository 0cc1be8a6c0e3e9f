"""A ``practical`` layer set chosen by our own NN PCK screen, for model families the paper gives none (the DiTs:
PixArt-Σ, SD3, Flux; issue #17). The paper's Ours-v1.5 / Ours-XL sets (App. B.1/B.2) came from its screens and
judgement on U-Nets; for a DiT there is no published set, so the workflow composes one from data:

1. screen every activation alone with the hard nearest neighbour on a *validation* split (``pck-screen``),
2. take the best ``top`` activations by PCK@0.1 (image), at most one per transformer block, so that the set
   spans depth instead of repeating one block's q, k and output (our rule: a block's activations are highly
   redundant, and the paper's own sets mix levels),
3. score the concatenated set with the same NN on the *test* images (``corr-evaluate --layers-file``): the set
   is chosen on other images than those it is reported on.

The rule is ours, not the paper's; the written set file says so and names the screen it came from.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from diffact.utils.errors import DataError

if TYPE_CHECKING:  # pandas is imported where a screen is read: the command parser reads the defaults below
    import pandas as pd

DEFAULT_TOP = 4  # the paper's Ours-v1.5 holds 4 activations (App. B.1)
DEFAULT_METRIC = "pck_img@0.10"
_IN_BLOCK = re.compile(r"^(?P<block>.*?vit-block\d+)-")  # DiT vit-block3-..., U-Net up-level1-repeat0-vit-block3-...
_IN_MODULE = re.compile(r"^(?P<block>.*?-(?:res|vit))-")  # U-Net ResModule / ViT module outputs


def block_of(activation: str) -> str:
    """The transformer block (or U-Net module) an activation belongs to: ``vit-block3-self-k`` → ``vit-block3``,
    ``up-level1-repeat0-vit-block0-cross-q`` → ``up-level1-repeat0-vit-block0``, ``up-level1-repeat2-res-out`` →
    ``up-level1-repeat2-res``; any other name is its own block."""
    for pattern in (_IN_BLOCK, _IN_MODULE):
        match = pattern.match(activation)
        if match:
            return match["block"]
    return activation


def choose_practical(screen: pd.DataFrame, top: int = DEFAULT_TOP, metric: str = DEFAULT_METRIC,
                     where: str = "screen") -> list[str]:
    """The ``top`` best activations of a ``pck-screen`` table by ``metric``, at most one per block, in forward
    order. Ties go to the earlier activation (forward order), so the choice is deterministic."""
    for column in ("layer", "forward_index", metric):
        if column not in screen.columns:
            raise DataError(f"{where}: no column {column!r} (expected a diffact pck-screen CSV)")
    if top < 1:
        raise DataError(f"{where}: top must be at least 1, got {top}")
    ranked = screen.sort_values([metric, "forward_index"], ascending=[False, True], kind="mergesort")
    chosen: dict[str, tuple[int, str]] = {}
    for row in ranked.itertuples(index=False):
        block = block_of(row.layer)
        if block not in chosen:
            chosen[block] = (int(row.forward_index), str(row.layer))
        if len(chosen) == top:
            break
    if len(chosen) < top:
        raise DataError(f"{where}: only {len(chosen)} blocks screened, fewer than the {top} activations asked for")
    return [layer for _, layer in sorted(chosen.values())]


def practical_set_spec(layers: list[str], family: str, model: str, screen_path: str | Path, top: int, metric: str,
                       screen: pd.DataFrame) -> dict:
    """The layer-set file (config/layers format) of a screen-chosen practical set, with its provenance."""
    digest = hashlib.sha256(Path(screen_path).read_bytes()).hexdigest()[:16]
    protocol = str(screen["protocol"].iloc[0]) if "protocol" in screen.columns and len(screen) else "?"
    scores = screen.set_index("layer")[metric]
    return {
        "name": "practical",
        "family": family,
        "description": (f"Ours (diffact, not the paper's): the {top} best activations of {model} by NN {metric} "
                        f"on {protocol}, at most one per block"),
        "source": f"diffact.tasks.correspondence.practical; screen {Path(screen_path).as_posix()} (sha256 {digest})",
        "layers": list(layers),
        "screen_scores": {layer: round(float(scores[layer]), 4) for layer in layers},
    }


def write_practical_set(screen_path: str | Path, family: str, model: str, out: str | Path,
                        top: int = DEFAULT_TOP, metric: str = DEFAULT_METRIC) -> dict:
    import pandas as pd

    from diffact.utils.io import write_text

    screen = pd.read_csv(screen_path)
    layers = choose_practical(screen, top, metric, where=str(screen_path))
    spec = practical_set_spec(layers, family, model, screen_path, top, metric, screen)
    write_text(out, yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=200))
    return spec
