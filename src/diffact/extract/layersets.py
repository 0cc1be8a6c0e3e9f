"""Named layer sets, kept as data in ``config/layers/<family>/<set>.yaml`` (docs/paper.md §2.6).

A set file has ``name``, ``family``, ``description``, ``source`` and either an explicit ``layers`` list
(paper configs such as ``practical`` = Ours) or a ``select`` rule over the model's catalog
(``full``, the paper's candidate ``pool``, ``analysis``):

    select:
      stages: [up]                 # down / mid / up / unet; omitted = all
      kinds: [res-out, block-out]  # catalog kinds; omitted = all but maps
      blocks: [0, 1, 3, 5, 7, 9]   # ViT basic-block indices kept; omitted = all
      include_maps: false

Channel totals are computed against a model's catalog (:func:`channel_total`), never typed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import yaml

from diffact.utils.errors import ConfigError
from diffact.utils.paths import checked_join

if TYPE_CHECKING:
    from diffact.families.catalog import Activation

# The model families (and torch) are imported by the functions that walk a model: a set's file, path and digest
# are read without them (the workflow names stores with them, diffact.extract.settings).

LAYER_DIR = Path(__file__).resolve().parents[3] / "config" / "layers"
_BLOCK = re.compile(r"(?:^|-)vit-block(\d+)-")  # U-Net ...-vit-block3-..., DiT vit-block3-...


def layer_dir(root: str | Path | None = None) -> Path:
    return Path(root) if root else LAYER_DIR


def set_path(family: str, name: str, root: str | Path | None = None) -> Path:
    """``config/layers/<family>/<name>.yaml``; a family or name that would leave that folder is refused."""
    return checked_join(layer_dir(root), family, f"{name}.yaml", what="layer set", error=ConfigError)


def available_sets(family: str, root: str | Path | None = None) -> list[str]:
    return sorted(p.stem for p in (layer_dir(root) / family).glob("*.yaml"))


def load_set_spec(family: str, name: str, root: str | Path | None = None) -> dict:
    path = set_path(family, name, root)
    if not path.is_file():
        sets = available_sets(family, root)
        raise ConfigError(f"no layer set {name!r} for model family {family!r} (looked for {path}); "
                          f"available: {', '.join(sets) or 'none'}")
    return read_set_file(path)


def read_set_file(path: str | Path) -> dict:
    """A layer-set file anywhere (``config/layers`` or one the workflow wrote, e.g. a screen-chosen practical
    set), checked for shape; ``_path`` records where it came from."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a layer set is a mapping with name, family and layers or select")
    if ("layers" in spec) == ("select" in spec):
        raise ConfigError(f"{path}: a layer set needs exactly one of 'layers' (a list) or 'select' (a rule)")
    if "layers" in spec and not (isinstance(spec["layers"], list) and all(isinstance(x, str) for x in spec["layers"])):
        raise ConfigError(f"{path}: 'layers' must be a list of layer names")
    spec["_path"] = str(path)
    return spec


def _stage(name: str) -> str:
    return name.split("-", 1)[0]


def _selected(act: Activation, rule: dict) -> bool:
    from diffact.families.catalog import MAP_KINDS

    stages = rule.get("stages")
    if stages and _stage(act.name) not in stages:
        return False
    kinds = rule.get("kinds")
    if kinds is not None and act.kind not in kinds:
        return False
    if kinds is None and act.kind in MAP_KINDS and not rule.get("include_maps", False):
        return False
    blocks = rule.get("blocks")
    match = _BLOCK.search(act.name)
    if blocks is not None and match and int(match.group(1)) not in blocks:
        return False
    return True


def resolve_set(unet, family: str, name: str, root: str | Path | None = None) -> list[str]:
    """The layer names of set ``name`` for this U-Net, in forward order, checked against its catalog."""
    return resolve_spec(unet, load_set_spec(family, name, root))


def is_set_file(value) -> bool:
    """True when a ``--layers`` value names a layer-set file rather than a set name or layer names."""
    return isinstance(value, (str, Path)) and str(value).endswith((".yaml", ".yml")) and "," not in str(value)


def resolve_set_file(unet, family: str, path: str | Path) -> list[str]:
    """The layers of the set file at ``path`` for this denoiser; its ``family`` must be the model's."""
    if not Path(path).is_file():
        raise ConfigError(f"layer-set file {path} does not exist")
    spec = read_set_file(path)
    if spec.get("family") not in (None, family):
        raise ConfigError(f"{path}: layer set of family {spec.get('family')!r}, but the model is of family {family!r}")
    return resolve_spec(unet, spec)


def resolve_spec(unet, spec: dict) -> list[str]:
    from diffact.families.catalog import AGGREGATE_NAMES, unknown_layer_error
    from diffact.families.registry import walk

    entries = list(walk(unet))
    if "select" in spec:
        return [a.name for a in entries if _selected(a, spec["select"] or {})]
    valid = {a.name for a in entries}
    for layer in spec["layers"]:
        if layer not in valid:
            raise unknown_layer_error(layer, valid, where=spec["_path"])
    order = {a.name: i for i, a in enumerate(entries)}
    names = sorted(dict.fromkeys(spec["layers"]), key=order.__getitem__)
    if spec.get("attention"):  # e.g. ``up_cross`` → the aggregated maps ``attn-up-cross`` (docs/paper.md §2.5)
        aggregate = "attn-" + spec["attention"].replace("_", "-")
        if aggregate not in AGGREGATE_NAMES:
            raise ConfigError(f"{spec['_path']}: attention {spec['attention']!r} is not one of "
                              f"{[n[5:].replace('-', '_') for n in AGGREGATE_NAMES]}")
        names.append(aggregate)
    return names


def resolve_layers_arg(unet, family: str, value: str | list[str], root: str | Path | None = None) -> list[str]:
    """Accept a set name (``practical``), a layer-set file (``results/.../practical.yaml``) or an explicit list /
    comma-separated string of layer names."""
    if is_set_file(value):
        return resolve_set_file(unet, family, value)
    if isinstance(value, str) and "," not in value and set_path(family, value, root).is_file():
        return resolve_set(unet, family, value, root)
    from diffact.families.registry import resolve_layers

    names = value.split(",") if isinstance(value, str) else list(value)
    return [a.name for a in resolve_layers(unet, [n.strip() for n in names if n.strip()])]


def channel_total(unet, names: Iterable[str], image_size: int | None = None, text_tokens: int = 77,
                  vae_factor: int = 8) -> int:
    """Total channels of ``names``; aggregated maps count n_sizes × text_tokens at ``image_size``."""
    from diffact.extract.aggregate import member_maps, qualifies
    from diffact.families.catalog import AGGREGATE_KIND, aggregate_entries
    from diffact.families.registry import walk

    by_name = {a.name: a for a in [*walk(unet), *aggregate_entries()]}
    total = 0
    for name in names:
        act = by_name[name]
        if act.kind != AGGREGATE_KIND:
            total += act.channels
            continue
        latent = (image_size or unet.config.sample_size * vae_factor) // vae_factor
        sides = {m.spatial((latent, latent))[0] for m in member_maps(unet, name)}
        per_map = text_tokens if name.endswith("cross") else None
        total += sum(per_map if per_map else s * s for s in sides if qualifies(s, latent))
    return total
