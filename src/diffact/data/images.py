"""Image file helpers shared by the datasets and the feature extractor.

The paper's extractor (docs/paper.md §2.1, step 3) opens each image with PIL, resizes it to a **square**
``img_size × img_size`` with ``PIL.Image.resize`` (no crop, aspect ratio not kept; Pillow's default
filter for RGB is bicubic) and maps it to [-1, 1]. :func:`to_model_tensor` reproduces exactly that
(resize policy ``square``, the default). Keypoints therefore scale independently in x and y; see
:func:`diffact.tasks.correspondence.matching.keypoints_to_eval_pixels`.

Resize policy ``aspect`` (not the paper's) keeps the aspect ratio: the long side is scaled to S and the
short side is padded, centred, with mid-grey (0 in [-1, 1]) up to S, so the model still sees an S×S
canvas and the latent grid stays S/8 × S/8. Padding rather than a centre crop because a crop throws
away image content: SPair keypoints near the long-side borders (and segmentation labels there) would
have no feature at all, whereas padding only spends some canvas on grey. Where an original pixel lands
on the canvas is a per-axis scale plus an offset (:class:`ResizePolicy`), which is what the
correspondence code uses to map keypoints in and predictions back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffact.utils.errors import DataError
from diffact.utils.io import atomic_path

# Fixed JPEG settings so the demo datasets are byte-identical for a given seed.
JPEG_QUALITY = 95
# The image files every dataset kind accepts where its layout does not fix one suffix (a plain folder, DDPM-seg's
# split folders): the one list of the package, so `diffact check-data` and extraction accept the same files.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (subfolders are not searched), sorted by name. Hidden files are
    skipped: macOS copies leave ``._<name>.jpg`` resource forks beside the images, which are not images."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())


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


RESIZE_POLICIES = ("square", "aspect")
PAD_VALUE = 0.0  # aspect padding in model space [-1, 1]: mid-grey


@dataclass(frozen=True)
class ResizePolicy:
    """How a W×H image becomes the S×S model input, and where each original point lands on that canvas.

    ``square`` (paper §2.1): stretch to S×S, canvas = (x·S/W, y·S/H). ``aspect``: scale by S/max(W, H) to
    w'×h' (rounded, ≥ 1 pixel), centre on the canvas, pad the rest; canvas = (x·w'/W + ⌊(S−w')/2⌋,
    y·h'/H + ⌊(S−h')/2⌋). Coordinates are continuous pixel coordinates, as the keypoints'.
    """

    mode: str = "square"
    size: int = 512

    def __post_init__(self):
        if self.mode not in RESIZE_POLICIES:
            raise DataError(f"resize policy must be one of {RESIZE_POLICIES}, got {self.mode!r}")
        if int(self.size) <= 0:
            raise DataError(f"resize size must be positive, got {self.size}")

    def content_size(self, width: int, height: int) -> tuple[int, int]:
        """(w', h'): the size of the resized image content on the canvas."""
        if self.mode == "square":
            return self.size, self.size
        scale = self.size / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def placement(self, width: int, height: int) -> tuple[float, float, int, int]:
        """(scale_x, scale_y, offset_x, offset_y): canvas point = original point · scale + offset."""
        content_w, content_h = self.content_size(width, height)
        return (content_w / width, content_h / height, (self.size - content_w) // 2, (self.size - content_h) // 2)

    def to_canvas(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """(N, 2) original (x, y) → (N, 2) float64 canvas (x, y) on the S×S model input."""
        scale_x, scale_y, offset_x, offset_y = self.placement(width, height)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return points * np.array([scale_x, scale_y]) + np.array([offset_x, offset_y])

    def from_canvas(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """Inverse of :meth:`to_canvas` (a canvas point in the padding maps outside the image)."""
        scale_x, scale_y, offset_x, offset_y = self.placement(width, height)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (points - np.array([offset_x, offset_y])) / np.array([scale_x, scale_y])


def _to_unit_range(image: np.ndarray):
    """H×W×3 uint8 → 3×H×W float32 in [-1, 1] (``x / 255 * 2 - 1`` as diffusers' ``VaeImageProcessor``)."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(torch.float32) / 255.0
    return tensor * 2.0 - 1.0


def to_model_tensor(image: np.ndarray, size: int, resize: str = "square"):
    """H×W×3 uint8 image → float32 torch tensor of shape (3, size, size) with values in [-1, 1].

    ``square``: resize as in the paper (§2.1 step 3). ``aspect``: bicubic resize to
    :meth:`ResizePolicy.content_size`, centred on a mid-grey size×size canvas.
    """
    import torch
    from PIL import Image

    policy = ResizePolicy(resize, int(size))
    if policy.mode == "square":
        return _to_unit_range(resize_square(image, size))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"expected an H×W×3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    height, width = image.shape[:2]
    content_w, content_h = policy.content_size(width, height)
    _, _, offset_x, offset_y = policy.placement(width, height)
    content = Image.fromarray(image).resize((content_w, content_h), Image.Resampling.BICUBIC)
    canvas = torch.full((3, int(size), int(size)), PAD_VALUE, dtype=torch.float32)
    canvas[:, offset_y:offset_y + content_h, offset_x:offset_x + content_w] = _to_unit_range(np.array(content))
    return canvas


def load_image_tensor(path: str | os.PathLike, size: int, resize: str = "square"):
    """Read an image file and return ``(tensor, (width, height))``: the (3, size, size) model input in
    [-1, 1] (``resize``: see :class:`ResizePolicy`) and the original size, which is needed to map
    keypoints back to original pixels."""
    image = load_rgb(path)
    return to_model_tensor(image, size, resize), (int(image.shape[1]), int(image.shape[0]))


def save_jpeg(image: np.ndarray, path: str | os.PathLike, quality: int = JPEG_QUALITY) -> None:
    """Write an H×W×3 uint8 image as a baseline JPEG with fixed settings (deterministic bytes), atomically."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"expected an H×W×3 uint8 image for {path}, got shape {image.shape} dtype {image.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=int(quality), optimize=False, progressive=False)
