"""Seeding helpers: every random draw in diffact comes from a generator seeded from config."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported where a torch generator is made: the data builders and the workflow derive seeds without it.


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (for library code that draws from them)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(base: int, *keys: object) -> int:
    """A stable 63-bit seed derived from a base seed and any keys (e.g. an image id), independent of
    Python's per-process hash randomisation."""
    text = "/".join([str(base), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def torch_generator(base: int, *keys: object) -> torch.Generator:
    import torch

    return torch.Generator().manual_seed(derive_seed(base, *keys))


def numpy_rng(base: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(base, *keys))
