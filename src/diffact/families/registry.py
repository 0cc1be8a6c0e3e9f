"""The registry of model families: names → families, denoisers → their family.

Everything outside ``families/`` asks here (``family_of(denoiser)``, ``get_family(name)``, ``walk``,
``resolve_layers``) instead of branching on a family's name. A new family is one module with a
:class:`~diffact.families.base.Family` subclass, one line in :data:`FAMILIES`, and its layer sets in
``config/layers/<name>/``.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch.nn as nn

from diffact.families.base import Family
from diffact.families.catalog import Activation, unknown_layer_error
from diffact.families.flux import Flux
from diffact.families.pixart import PixArt
from diffact.families.sd3 import SD3
from diffact.families.sd15 import SD15
from diffact.families.sdxl import SDXL
from diffact.utils.errors import ConfigError, ModelError

FAMILIES: dict[str, Family] = {f.name: f for f in (SD15(), SDXL(), PixArt(), SD3(), Flux())}


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    """The family called ``name``; ConfigError listing the known names otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}") from None


def denoiser_attrs() -> list[str]:
    """The pipeline attributes a denoiser may sit in (``unet``, ``transformer``), in registry order."""
    return list(dict.fromkeys(f.denoiser_attr for f in FAMILIES.values()))


def supported_classes() -> str:
    """The denoiser classes some family recognises, for error messages."""
    return ", ".join(dict.fromkeys(c for f in FAMILIES.values() for c in f.denoiser_classes))


def find_family(model: nn.Module) -> Family | None:
    """The family of a denoiser, or None when no family recognises it."""
    return next((f for f in FAMILIES.values() if f.recognises(model)), None)


def family_of(model: nn.Module) -> Family:
    """The family of a denoiser; ModelError naming the supported classes otherwise."""
    family = find_family(model)
    if family is None:
        raise ModelError(f"unsupported denoiser class {type(model).__name__}: expected one of {supported_classes()}")
    return family


def denoiser_of(pipe, where: str | None = None) -> nn.Module:
    """The network whose activations are extracted (``pipe.unet`` or ``pipe.transformer``, as its family says);
    ModelError naming the supported classes otherwise."""
    candidates = [getattr(pipe, attr, None) for attr in denoiser_attrs()]
    for model in candidates:
        if model is not None and find_family(model) is not None:
            return model
    found = next((type(m).__name__ for m in candidates if m is not None), "none")
    raise ModelError(f"{where or 'pipeline'}: unsupported model class {type(pipe).__name__} with denoiser {found} "
                     f"(expected a pipeline whose denoiser is one of {supported_classes()})")


def single_file_family(model_type: str) -> Family | None:
    """The family that loads a single-file checkpoint of diffusers' inferred ``model_type``."""
    return next((f for f in FAMILIES.values() if f.single_file_pipeline and f.claims_single_file(model_type)), None)


def walk(model: nn.Module) -> Iterator[Activation]:
    """Every activation of a supported denoiser in forward order (maps included)."""
    return family_of(model).walk(model)


def resolve_layers(model: nn.Module, names: Iterable[str]) -> list[Activation]:
    """Catalog entries for ``names`` in forward order; unknown names raise LayerError with suggestions.

    ``model`` is the denoiser; a name may be any entry of its family's :meth:`~Family.nameable` (U-Nets: the
    catalog plus the aggregated maps)."""
    by_name = {a.name: a for a in family_of(model).nameable(model)}
    wanted = list(dict.fromkeys(names))
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise unknown_layer_error(missing[0], list(by_name), where=f"{type(model).__name__}",
                                  others=len(missing) - 1)
    order = {n: i for i, n in enumerate(by_name)}
    return [by_name[n] for n in sorted(wanted, key=order.__getitem__)]
