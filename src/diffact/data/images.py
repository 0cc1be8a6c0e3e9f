"""Image file helpers shared by the datasets and the feature extractor.

The paper's extractor (spec §2.1, step 3) opens each image with PIL, resizes it to a **square**
``img_size × img_size`` with ``PIL.Image.resize`` (no crop, aspect ratio not kept; Pillow's default
filter for RGB is bicubic) and maps it to [-1, 1]. :func:`to_model_tensor` reproduces exactly that.
Keypoints therefore scale independently in x and y; see
:func:`diffact.tasks.correspondence.matching.keypoints_to_eval_pixels`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffact.utils.errors import DataError
from diffact.utils.io import atomic_path

# Fixed JPEG settings so the demo datasets are byte-identical for a given seed.
JPEG_QUALITY = 95


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an H×W×3 uint8 array (greyscale/RGBA/palette images are converted to RGB).

    Raises DataError (naming the file) when it is missing, is not an image, or is truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            # load() forces full decoding: a truncated JPEG only fails here, not at open().
            img.load()
            rgb = img.convert("RGB")
    except UnidentifiedImageError as err:
        raise DataError(f"image file {path} is not a readable image ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"image file {path} is truncated or corrupt ({err})") from err
    return np.asarray(rgb, dtype=np.uint8).copy()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only (cheap; used by dataset checks)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"image file {path} is not a readable image ({err})") from err


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an H×W×3 uint8 image to size×size with PIL's bicubic filter (paper §2.1: square, no crop)."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"expected an H×W×3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    if int(size) <= 0:
        raise DataError(f"resize size must be positive, got {size}")
    resized = Image.fromarray(image).resize((int(size), int(size)), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8).copy()


def to_model_tensor(image: np.ndarray, size: int):
    """H×W×3 uint8 image → float32 torch tensor of shape (3, size, size) with values in [-1, 1].

    Square resize as in the paper (§2.1 step 3), then ``x / 255 * 2 - 1`` as diffusers'
    ``VaeImageProcessor.preprocess`` does.
    """
    import torch

    square = resize_square(image, size)
    tensor = torch.from_numpy(square).permute(2, 0, 1).to(torch.float32) / 255.0
    return tensor * 2.0 - 1.0


def load_image_tensor(path: str | os.PathLike, size: int):
    """Read an image file and return ``(tensor, (width, height))``: the (3, size, size) model input in
    [-1, 1] and the original size, which is needed to map keypoints back to original pixels."""
    image = load_rgb(path)
    return to_model_tensor(image, size), (int(image.shape[1]), int(image.shape[0]))


def save_jpeg(image: np.ndarray, path: str | os.PathLike, quality: int = JPEG_QUALITY) -> None:
    """Write an H×W×3 uint8 image as a baseline JPEG with fixed settings (deterministic bytes), atomically."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"expected an H×W×3 uint8 image for {path}, got shape {image.shape} dtype {image.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=int(quality), optimize=False, progressive=False)
