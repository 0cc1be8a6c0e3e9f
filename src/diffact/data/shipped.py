"""Images that ship inside installed packages (scikit-image's sample data), the raw material of every
demo dataset and of the demo models' training set. Nothing is downloaded."""

from __future__ import annotations

import numpy as np
from skimage import color, data

# Natural RGB (or greyscale promoted to RGB) images bundled in the scikit-image wheel itself.
# Loaded by name through skimage.data so no path is hard-coded.
SHIPPED_IMAGE_NAMES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "camera",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "motorcycle_left",
    "page",
    "retina",
    "cell",
    "moon",
    "hubble_deep_field",
)


def shipped_image(name: str) -> np.ndarray:
    """Return a shipped image as an H×W×3 uint8 array."""
    if name not in SHIPPED_IMAGE_NAMES:
        raise KeyError(f"unknown shipped image {name!r}; expected one of {', '.join(SHIPPED_IMAGE_NAMES)}")
    img = getattr(data, name)()
    if img.ndim == 2:
        img = color.gray2rgb(img)
    if img.shape[-1] == 4:
        img = img[..., :3]
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype.kind == "f" else img.astype(np.uint8)
    return np.ascontiguousarray(img)


def available_shipped_images() -> list[str]:
    """Names that load in this installation (some sample files are fetched lazily by skimage and may be
    absent offline; those are skipped)."""
    names = []
    for name in SHIPPED_IMAGE_NAMES:
        try:
            shipped_image(name)
        except Exception:  # noqa: BLE001 - a missing optional sample is not an error here
            continue
        names.append(name)
    return names
