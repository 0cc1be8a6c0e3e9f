"""A small correspondence dataset in SPair-71k's own on-disk layout, made from shipped images.

The paper's benchmark is SPair-71k (docs/paper.md §2.8, §4), which cannot be downloaded on the build machines.
This module writes a stand-in that :class:`diffact.data.spair.SPairDataset` reads exactly like the real
thing, with ground truth that is exact by construction:

* every *category* is one shipped image (``diffact.data.shipped``), e.g. "astronaut";
* a *source* image is a random crop of it, resized so its long side is ``image_size``;
* each *target* image renders the same shipped image through a known projective map
  ``A`` (source pixels → target pixels: rotation, scale, shear, translation, perspective), followed by
  photometric jitter (hue, contrast, brightness, gamma, noise);
* source keypoints are Harris corners inside the source's object box (grid points when too few corners);
  the target keypoint is ``A`` applied to the source keypoint, and only keypoints that land inside the
  target are kept; the target bndbox is the box around ``A`` applied to the source box, clipped.

With ``warp_strength=0`` every target is the source geometry (``A`` = identity, same size), so
``trg_kps == src_kps``; with ``photometric_strength=0`` the colours are untouched too.

Everything is drawn from generators seeded by ``seed`` (``diffact.utils.seeding``), JPEGs are written
with fixed settings and the tree is written atomically, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from diffact.data.images import save_jpeg
from diffact.data.spair import SPLITS, pair_name
from diffact.utils.errors import ConfigError
from diffact.utils.io import atomic_dir, write_json, write_text
from diffact.utils.seeding import numpy_rng

DEFAULT_CATEGORIES: tuple[str, ...] = ("astronaut", "chelsea", "coffee")

# Pair k of a source image goes to split SPLIT_CYCLE[k % 3], so with pairs_per_image >= 3 every source
# image (hence every category) appears in every split; test comes first because the demo evaluates on it.
SPLIT_CYCLE: tuple[str, ...] = ("test", "val", "trn")

# Ranges of the random geometry at warp_strength=1 (moderate: SPair pairs differ far more, but the demo
# must stay learnable by tiny models). All ranges scale linearly with warp_strength.
MAX_ROTATION_DEG = 20.0
MAX_LOG_SCALE = math.log(1.25)
MAX_SHEAR = 0.15  # radians
MAX_TRANSLATION = 0.08  # fraction of the target size
MAX_PERSPECTIVE = 0.06  # corner displacement, fraction of the target size

# Photometric jitter at photometric_strength=1.
MAX_HUE_SHIFT = 0.04  # fraction of the hue circle
MAX_LOG_CONTRAST = 0.2
MAX_BRIGHTNESS = 0.08
MAX_LOG_GAMMA = 0.2
NOISE_STD = 0.015

# Crops cover this fraction of the shipped image's usable extent; object boxes cover this fraction of the source.
CROP_FRACTION = (0.45, 0.8)
BOX_FRACTION = (0.7, 0.95)
# The short side of each image is this fraction of the long side (SPair images are not square).
SHORT_SIDE_FRACTION = (0.75, 1.0)

MAX_WARP_ATTEMPTS = 50
KEYPOINT_DECIMALS = 2  # target keypoints are exact transforms, stored to 1/100 pixel


# ----------------------------------------------------------------------------------------------
# Geometry: 3×3 homogeneous matrices acting on (x, y, 1) with pixel centres at integer coordinates
# (skimage's convention, so warp() and the keypoint maths agree exactly).
# ----------------------------------------------------------------------------------------------


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points (x, y) through a 3×3 homography."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(matrix, dtype=np.float64).T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography that maps 4 points ``src`` (4, 2) exactly onto ``dst`` (4, 2) (direct linear solve)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(np.asarray(src, float), np.asarray(dst, float)):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    h = np.linalg.solve(np.asarray(rows), np.asarray(rhs))
    return np.append(h, 1.0).reshape(3, 3)


def random_warp(rng: np.random.Generator, src_size: tuple[int, int], trg_size: tuple[int, int], strength: float) -> np.ndarray:
    """A random source→target homography: about the image centres, rotate, shear, scale (to fit the
    target's size), translate, then displace the four corners a little (perspective). Identity when
    ``strength`` is 0 and the sizes match."""
    (sw, sh), (tw, th) = src_size, trg_size
    angle = math.radians(rng.uniform(-1, 1) * MAX_ROTATION_DEG * strength)
    scale = math.exp(rng.uniform(-1, 1) * MAX_LOG_SCALE * strength) * math.sqrt((tw * th) / (sw * sh))
    shear = rng.uniform(-1, 1) * MAX_SHEAR * strength
    shift = rng.uniform(-1, 1, size=2) * MAX_TRANSLATION * strength * np.array([tw, th])
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    shearing = np.array([[1.0, math.tan(shear), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scaling = np.diag([scale, scale, 1.0])
    centre_src = ((sw - 1) / 2, (sh - 1) / 2)
    centre_trg = ((tw - 1) / 2 + shift[0], (th - 1) / 2 + shift[1])
    affine = _translation(*centre_trg) @ rotation @ shearing @ scaling @ _translation(-centre_src[0], -centre_src[1])
    if strength == 0:
        return affine
    corners = np.array([[0, 0], [sw - 1, 0], [sw - 1, sh - 1], [0, sh - 1]], dtype=np.float64)
    moved = apply_homography(affine, corners) + rng.uniform(-1, 1, size=(4, 2)) * MAX_PERSPECTIVE * strength * np.array([tw, th])
    return homography_from_points(corners, moved)


def _random_size(rng: np.random.Generator, long_side: int) -> tuple[int, int]:
    """(width, height) with the given long side and a random short side; landscape or portrait."""
    short = int(round(long_side * rng.uniform(*SHORT_SIDE_FRACTION)))
    return (long_side, short) if rng.uniform() < 0.5 else (short, long_side)


def _random_crop(rng: np.random.Generator, base_shape: tuple[int, ...], size: tuple[int, int]) -> np.ndarray:
    """Base→source homography of a random crop with the source's aspect ratio, resized to ``size``."""
    base_h, base_w = base_shape[:2]
    width, height = size
    largest_w = min(base_w, base_h * width / height)  # widest crop of this aspect that fits
    crop_w = largest_w * rng.uniform(*CROP_FRACTION)
    crop_h = crop_w * height / width
    x0 = rng.uniform(0, base_w - crop_w)
    y0 = rng.uniform(0, base_h - crop_h)
    sx, sy = width / crop_w, height / crop_h
    return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy], [0.0, 0.0, 1.0]])


def _random_box(rng: np.random.Generator, size: tuple[int, int]) -> list[int]:
    """The source's "object" box [x1, y1, x2, y2] (integer pixel coordinates inside the image)."""
    width, height = size
    box_w = int(round(width * rng.uniform(*BOX_FRACTION)))
    box_h = int(round(height * rng.uniform(*BOX_FRACTION)))
    x1 = int(rng.integers(0, width - box_w + 1))
    y1 = int(rng.integers(0, height - box_h + 1))
    return [x1, y1, min(x1 + box_w, width - 1), min(y1 + box_h, height - 1)]


def _render(base: np.ndarray, base_to_image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Render the (anti-aliased) base image through a base→image homography; float RGB in [0, 1]."""
    from skimage.transform import ProjectiveTransform, warp

    width, height = size
    inverse = ProjectiveTransform(matrix=np.linalg.inv(base_to_image))
    # mode="reflect" fills the few out-of-base pixels with texture instead of black borders.
    return warp(base, inverse_map=inverse, output_shape=(height, width), order=1, mode="reflect")


def _antialiased(base: np.ndarray, base_to_image: np.ndarray) -> np.ndarray:
    """Blur the base before a downscaling warp (sigma = (factor − 1) / 2, skimage's rescale rule)."""
    from skimage.filters import gaussian

    factor = 1.0 / float(base_to_image[0, 0])
    if factor <= 1.0:
        return base
    return gaussian(base, sigma=(factor - 1.0) / 2.0, channel_axis=-1, preserve_range=True)


def photometric_jitter(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Hue shift, contrast, brightness, gamma and Gaussian noise on a float RGB image in [0, 1]."""
    from skimage.color import hsv2rgb, rgb2hsv

    hue = rng.uniform(-1, 1) * MAX_HUE_SHIFT * strength
    contrast = math.exp(rng.uniform(-1, 1) * MAX_LOG_CONTRAST * strength)
    brightness = rng.uniform(-1, 1) * MAX_BRIGHTNESS * strength
    gamma = math.exp(rng.uniform(-1, 1) * MAX_LOG_GAMMA * strength)
    noise = rng.standard_normal(image.shape) * NOISE_STD * strength
    if strength == 0:
        return image
    hsv = rgb2hsv(np.clip(image, 0, 1))
    hsv[..., 0] = (hsv[..., 0] + hue) % 1.0
    out = hsv2rgb(hsv)
    out = np.clip((out - 0.5) * contrast + 0.5 + brightness, 0, 1) ** gamma
    return np.clip(out + noise, 0, 1)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def harris_response(gray: np.ndarray, sigma: float = 1.0, k: float = 0.05) -> np.ndarray:
    """Harris corner response det(M) − k·trace(M)² of the Gaussian-smoothed structure tensor M
    (as skimage's ``corner_harris``; written with scipy.ndimage to avoid importing skimage.feature,
    which pulls in scipy.stats and costs seconds per process)."""
    from scipy import ndimage

    ix = ndimage.sobel(gray, axis=1, mode="reflect")
    iy = ndimage.sobel(gray, axis=0, mode="reflect")
    axx = ndimage.gaussian_filter(ix * ix, sigma, mode="constant")
    ayy = ndimage.gaussian_filter(iy * iy, sigma, mode="constant")
    axy = ndimage.gaussian_filter(ix * iy, sigma, mode="constant")
    return axx * ayy - axy**2 - k * (axx + ayy) ** 2


def corner_points(response: np.ndarray, min_distance: int, threshold_rel: float = 0.02, border: int = 2) -> np.ndarray:
    """(K, 2) integer (x, y) local maxima of ``response`` above ``threshold_rel``·max, at least
    ``min_distance`` (Chebyshev) apart and ``border`` pixels from the edge; strongest first."""
    from scipy import ndimage

    peak = response == ndimage.maximum_filter(response, size=2 * min_distance + 1, mode="nearest")
    peak &= response > threshold_rel * max(float(response.max()), 0.0)
    peak[:border], peak[-border:], peak[:, :border], peak[:, -border:] = False, False, False, False
    rows, cols = np.nonzero(peak)
    order = np.lexsort((cols, rows, -response[rows, cols]))  # strongest first, ties by position
    kept: list[tuple[int, int]] = []
    for r, c in zip(rows[order], cols[order]):
        # Plateaus give several equal maxima; keep one per min_distance neighbourhood.
        if all(max(abs(int(c) - x), abs(int(r) - y)) >= min_distance for x, y in kept):
            kept.append((int(c), int(r)))
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def sample_keypoints(rng: np.random.Generator, image: np.ndarray, box: Sequence[int], max_keypoints: int) -> np.ndarray:
    """Up to ``max_keypoints`` integer (x, y) keypoints on textured places inside ``box``.

    Harris corners are preferred, because flat regions have no well-defined match; when there are too
    few, points of a 4×4 grid over the box that are not next to a corner fill in. Sorted by (y, x).
    """
    x1, y1, x2, y2 = box
    spacing = max(2, min(image.shape[0], image.shape[1]) // 12)
    gray = image.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721]) / 255.0
    peaks = corner_points(harris_response(gray), spacing)
    inside = (peaks[:, 0] >= x1 + 1) & (peaks[:, 0] <= x2 - 1) & (peaks[:, 1] >= y1 + 1) & (peaks[:, 1] <= y2 - 1)
    corners = peaks[inside]
    if len(corners) >= max_keypoints:
        chosen = corners[np.sort(rng.choice(len(corners), size=max_keypoints, replace=False))]
    else:
        xs = np.round(np.linspace(x1, x2, 6)[1:-1]).astype(np.int64)
        ys = np.round(np.linspace(y1, y2, 6)[1:-1]).astype(np.int64)
        grid = np.array([(x, y) for y in ys for x in xs], dtype=np.int64)
        if len(corners):
            far = np.min(np.abs(grid[:, None, :] - corners[None, :, :]).max(axis=2), axis=1) >= spacing
            grid = grid[far]
        need = min(max_keypoints - len(corners), len(grid))
        fill = grid[np.sort(rng.choice(len(grid), size=need, replace=False))] if need > 0 else grid[:0]
        chosen = np.concatenate([corners, fill])
    order = np.lexsort((chosen[:, 0], chosen[:, 1]))
    return chosen[order]


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    return (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)


def _warped_box(matrix: np.ndarray, box: Sequence[int], size: tuple[int, int]) -> list[int]:
    """Integer bounding box of a warped box, clipped to the image (rounded outwards)."""
    x1, y1, x2, y2 = box
    corners = apply_homography(matrix, np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64))
    width, height = size
    bx1 = int(np.clip(math.floor(corners[:, 0].min()), 0, width - 2))
    by1 = int(np.clip(math.floor(corners[:, 1].min()), 0, height - 2))
    bx2 = int(np.clip(math.ceil(corners[:, 0].max()), bx1 + 1, width - 1))
    by2 = int(np.clip(math.ceil(corners[:, 1].max()), by1 + 1, height - 1))
    return [bx1, by1, bx2, by2]


def _image_annotation(filename: str, category: str, size: tuple[int, int], box: list[int], kps: dict[str, list | None]) -> dict:
    """ImageAnnotation/<category>/<stem>.json in SPair's field names."""
    return {
        "filename": filename,
        "src_database": "diffact-demo",
        "annotation": "diffact-demo (exact keypoints from known warps)",
        "image_width": size[0],
        "image_height": size[1],
        "image_depth": 3,
        "category": category,
        "pose": "Unspecified",
        "truncated": 0,
        "occluded": 0,
        "difficult": 0,
        "bndbox": box,
        "kps": kps,
    }


def _check_arguments(n_images, pairs_per_image, image_size, categories, max_keypoints, min_keypoints, warp_strength, photometric_strength) -> None:
    from diffact.data.shipped import SHIPPED_IMAGE_NAMES

    if n_images < 1:
        raise ConfigError(f"n_images must be at least 1, got {n_images}")
    if pairs_per_image < 1:
        raise ConfigError(f"pairs_per_image must be at least 1, got {pairs_per_image}")
    if image_size < 16:
        raise ConfigError(f"image_size must be at least 16 pixels, got {image_size}")
    if not categories:
        raise ConfigError("categories must name at least one shipped image")
    unknown = [c for c in categories if c not in SHIPPED_IMAGE_NAMES]
    if unknown:
        raise ConfigError(f"unknown categories {unknown}: each category must be a shipped image, one of {', '.join(SHIPPED_IMAGE_NAMES)}")
    bad = [c for c in categories if "-" in c or ":" in c or "/" in c]
    if bad:
        raise ConfigError(f"category names must not contain '-', ':' or '/' (SPair pair names use them): {bad}")
    if len(set(categories)) != len(categories):
        raise ConfigError(f"categories must be distinct, got {list(categories)}")
    if not 1 <= min_keypoints <= max_keypoints:
        raise ConfigError(f"need 1 <= min_keypoints <= max_keypoints, got {min_keypoints} and {max_keypoints}")
    if warp_strength < 0 or photometric_strength < 0:
        raise ConfigError(f"warp_strength and photometric_strength must be >= 0, got {warp_strength}, {photometric_strength}")


def build_demo_spair(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    n_images: int = 6,
    pairs_per_image: int = 4,
    image_size: int = 96,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    max_keypoints: int = 8,
    min_keypoints: int = 3,
    warp_strength: float = 1.0,
    photometric_strength: float = 1.0,
) -> Path:
    """Write a demo SPair-71k tree at ``root`` (replacing it atomically) and return ``root``.

    ``n_images`` source images are spread round-robin over ``categories`` (shipped image names); each gets
    ``pairs_per_image`` warped targets; pair k of a source goes to split ``SPLIT_CYCLE[k % 3]``
    (test, val, trn). Images have long side ``image_size``. Pairs keep between ``min_keypoints`` and
    ``max_keypoints`` keypoints (a warp that leaves fewer inside the target is redrawn).
    Besides the SPair files, ``demo_manifest.json`` records the arguments and each pair's source→target
    homography (3×3, acting on (x, y, 1)).
    """
    from diffact.data.shipped import shipped_image

    categories = list(categories)
    _check_arguments(n_images, pairs_per_image, image_size, categories, max_keypoints, min_keypoints, warp_strength, photometric_strength)
    bases = {}
    for category in categories[: min(len(categories), n_images)]:
        try:
            bases[category] = shipped_image(category).astype(np.float64) / 255.0
        except Exception as err:  # noqa: BLE001 - a lazily-fetched sample may be absent offline
            raise ConfigError(f"shipped image {category!r} cannot be loaded here ({err}); pick another category") from err

    root = Path(root)
    layout: dict[str, list[str]] = {split: [] for split in SPLITS}
    manifest_pairs: dict[str, dict] = {}
    image_counter = 0
    pair_counter = 0

    def next_image_name() -> str:
        nonlocal image_counter
        image_counter += 1
        return f"demo_{image_counter:06d}"

    with atomic_dir(root) as tmp:
        for split in SPLITS:
            (tmp / "PairAnnotation" / split).mkdir(parents=True)
        for i in range(n_images):
            category = categories[i % len(categories)]
            base = bases[category]
            rng = numpy_rng(seed, "demo-spair", "source", i)
            src_size = _random_size(rng, image_size)
            base_to_src = _random_crop(rng, base.shape, src_size)
            smooth_base = _antialiased(base, base_to_src)
            source = _to_uint8(_render(smooth_base, base_to_src, src_size))
            src_box = _random_box(rng, src_size)
            src_kps = sample_keypoints(rng, source, src_box, max_keypoints)
            if len(src_kps) < min_keypoints:
                raise ConfigError(f"source image {i} ({category}) has only {len(src_kps)} keypoints; lower min_keypoints")
            src_stem = next_image_name()
            src_imname = f"{src_stem}.jpg"
            save_jpeg(source, tmp / "JPEGImages" / category / src_imname)
            kps_ids = [str(j) for j in range(len(src_kps))]
            write_json(
                tmp / "ImageAnnotation" / category / f"{src_stem}.json",
                _image_annotation(src_imname, category, src_size, src_box, {k: [int(x), int(y)] for k, (x, y) in zip(kps_ids, src_kps)}),
            )

            for k in range(pairs_per_image):
                for attempt in range(MAX_WARP_ATTEMPTS):
                    trng = numpy_rng(seed, "demo-spair", "target", i, k, attempt)
                    trg_size = src_size if warp_strength == 0 else _random_size(trng, image_size)
                    warp_matrix = random_warp(trng, src_size, trg_size, warp_strength)
                    warped = np.round(apply_homography(warp_matrix, src_kps), KEYPOINT_DECIMALS)
                    inside = _inside(warped, trg_size)
                    if inside.sum() >= min_keypoints:
                        break
                else:
                    raise ConfigError(
                        f"could not warp source image {i} ({category}) keeping {min_keypoints} keypoints in "
                        f"{MAX_WARP_ATTEMPTS} attempts; lower warp_strength or min_keypoints"
                    )
                target = _render(smooth_base, warp_matrix @ base_to_src, trg_size)
                target = _to_uint8(photometric_jitter(trng, target, photometric_strength))
                trg_box = _warped_box(warp_matrix, src_box, trg_size)
                trg_stem = next_image_name()
                trg_imname = f"{trg_stem}.jpg"
                save_jpeg(target, tmp / "JPEGImages" / category / trg_imname)
                trg_kps_all = {
                    kid: ([float(x), float(y)] if ok else None) for kid, (x, y), ok in zip(kps_ids, warped, inside)
                }
                write_json(
                    tmp / "ImageAnnotation" / category / f"{trg_stem}.json",
                    _image_annotation(trg_imname, category, trg_size, trg_box, trg_kps_all),
                )

                pair_counter += 1
                split = SPLIT_CYCLE[k % len(SPLIT_CYCLE)]
                name = pair_name(pair_counter, src_imname, trg_imname, category)
                keep = np.flatnonzero(inside)
                write_json(
                    tmp / "PairAnnotation" / split / f"{name}.json",
                    {
                        "pair_id": pair_counter,
                        "src_imname": src_imname,
                        "trg_imname": trg_imname,
                        "src_imsize": [src_size[0], src_size[1], 3],
                        "trg_imsize": [trg_size[0], trg_size[1], 3],
                        "src_bndbox": src_box,
                        "trg_bndbox": trg_box,
                        "category": category,
                        "src_pose": "Unspecified",
                        "trg_pose": "Unspecified",
                        "src_kps": [[int(x), int(y)] for x, y in src_kps[keep]],
                        "trg_kps": [[float(x), float(y)] for x, y in warped[keep]],
                        "kps_ids": [kps_ids[j] for j in keep],
                        "mirror": 0,
                        "viewpoint_variation": 0,
                        "scale_variation": 0,
                        "truncation": 0,
                        "occlusion": 0,
                    },
                )
                layout[split].append(name)
                manifest_pairs[name] = {
                    "split": split,
                    "source_to_target": np.round(warp_matrix, 12).tolist(),
                }
        for split in SPLITS:
            write_text(tmp / "Layout" / "large" / f"{split}.txt", "".join(f"{n}\n" for n in layout[split]))
        write_json(
            tmp / "demo_manifest.json",
            {
                "generator": "diffact.data.demo_spair.build_demo_spair",
                "seed": seed,
                "n_images": n_images,
                "pairs_per_image": pairs_per_image,
                "image_size": image_size,
                "categories": categories,
                "max_keypoints": max_keypoints,
                "min_keypoints": min_keypoints,
                "warp_strength": warp_strength,
                "photometric_strength": photometric_strength,
                "pairs": manifest_pairs,
            },
        )
    return root
