"""Model families: one module per kind of denoiser (``sd15``, ``sdxl``, ``pixart``, ``sd3``, ``flux``), each a
small :class:`~diffact.families.base.Family` with what differs — how to recognise the denoiser, its catalog
walk, prompt encoding and added conditions, the forward call, the attention-map processor.
:mod:`diffact.families.registry` maps names and denoisers to families."""

from diffact.families.registry import (FAMILIES, denoiser_of, family_names, family_of, find_family, get_family,
                                       resolve_layers, walk)

__all__ = ["FAMILIES", "denoiser_of", "family_names", "family_of", "find_family", "get_family", "resolve_layers",
           "walk"]
