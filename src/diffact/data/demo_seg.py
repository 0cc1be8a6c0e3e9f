"""Demo label-scarce segmentation datasets in the DDPM-seg layout, drawn from images shipped with scikit-image.

The paper ranks activations on a *simple* dataset (Horse-21: one object with parts) and a *complex* one
(Bedroom-28: many object classes) (paper §5 step 3, Tables 4–6). The real sets cannot be downloaded here, so
``make_demo_seg`` draws stand-ins with exact per-pixel labels:

* ``simple``: one cartoon animal (body, head, legs, tail, ear) built from ellipses and polygons, textured with
  crops of shipped photos (fur from ``chelsea``), on a shipped-photo background.
* ``complex``: a room-like scene (wall, floor, window, table, ball, a small animal) plus clutter polygons labelled
  ``other``; objects appear at random, occlude each other, and differ in texture.

Shapes are rasterised without anti-aliasing and the image is composited with the very masks that define the
labels, so every label is exact. Each image is drawn from its own seeded generator (``numpy_rng(seed, kind, i)``),
so image ``i`` does not depend on how many images are requested. Output (written atomically)::

    OUT/dataset.json
    OUT/real/train/img_000.png + img_000.npy ...
    OUT/real/test/img_008.png  + img_008.npy ...

Stems are numbered across both splits, so ``<stem>`` alone is unique too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from diffact.data.shipped import available_shipped_images, shipped_image
from diffact.utils.errors import ConfigError
from diffact.utils.io import atomic_dir, write_json
from diffact.utils.seeding import numpy_rng

log = logging.getLogger(__name__)

SIMPLE_CLASSES = ("background", "body", "head", "leg", "tail", "ear")
COMPLEX_CLASSES = ("other", "wall", "floor", "window", "table", "ball", "animal")
KINDS = {"simple": SIMPLE_CLASSES, "complex": COMPLEX_CLASSES}

# Texture sources per surface (first available name wins). Several candidates because some scikit-image samples
# are fetched lazily and may be missing offline.
TEXTURES = {
    "fur": ("chelsea", "coffee"),
    "outdoor": ("grass", "gravel", "moon", "rocket", "astronaut"),
    "wall": ("brick", "page", "camera"),
    "floor": ("gravel", "grass", "coffee"),
    "sky": ("hubble_deep_field", "moon", "astronaut", "rocket"),
    "wood": ("coffee", "rocket", "camera"),
    "ball": ("colorwheel", "retina", "astronaut"),
    "clutter": ("camera", "cell", "immunohistochemistry", "retina", "page", "astronaut", "rocket", "coffee"),
}


@dataclasses.dataclass(frozen=True)
class DemoSegConfig:
    """Settings of one demo dataset (defaults: 64-px images, 8 train + 6 test; paper sets are 30/20 and 40/20)."""

    kind: str = "simple"
    size: int = 64
    n_train: int = 8
    n_test: int = 6
    seed: int = 0

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"demo segmentation kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.size < 32:
            raise ConfigError(f"demo segmentation size must be at least 32 px (parts vanish below), got {self.size}")
        if self.n_train < 1 or self.n_test < 1:
            raise ConfigError(f"need at least one train and one test image, got {self.n_train}/{self.n_test}")


class TextureBank:
    """Random crops of shipped images, resized to the canvas, as float RGB in [0, 1]."""

    def __init__(self) -> None:
        self._available = set(available_shipped_images())
        self._cache: dict[str, np.ndarray] = {}

    def source(self, surface: str, rng: np.random.Generator) -> str:
        names = [n for n in TEXTURES[surface] if n in self._available]
        if not names:
            raise ConfigError(f"no shipped image available for the {surface!r} texture (tried {TEXTURES[surface]})")
        # The first name is the surface's "identity" (most draws); others add variety.
        return names[0] if rng.random() < 0.7 or len(names) == 1 else names[int(rng.integers(1, len(names)))]

    def _image(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = shipped_image(name).astype(np.float32) / 255.0
        return self._cache[name]

    def patch(self, surface: str, size: int, rng: np.random.Generator, tint=(1.0, 1.0, 1.0)) -> np.ndarray:
        from skimage.transform import resize

        img = self._image(self.source(surface, rng))
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.25, 0.6))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = resize(img[y : y + side, x : x + side], (size, size), anti_aliasing=True, preserve_range=True)
        gain = rng.uniform(0.85, 1.15)  # mild brightness jitter so no class is one fixed colour
        return np.clip(crop * np.asarray(tint, dtype=np.float32) * gain, 0.0, 1.0).astype(np.float32)


class Canvas:
    """An image and its label map, painted back to front: each shape overwrites pixels and labels alike."""

    def __init__(self, size: int, background: np.ndarray, label: int) -> None:
        self.size = size
        self.image = background.copy()
        self.label = np.full((size, size), label, dtype=np.uint8)

    def paint(self, mask: np.ndarray, texture: np.ndarray, label: int) -> None:
        self.image[mask] = texture[mask]
        self.label[mask] = label


def polygon_mask(size: int, rows, cols) -> np.ndarray:
    from skimage.draw import polygon

    mask = np.zeros((size, size), dtype=bool)
    rr, cc = polygon(np.asarray(rows), np.asarray(cols), shape=(size, size))
    mask[rr, cc] = True
    return mask


def ellipse_mask(size: int, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    from skimage.draw import ellipse

    mask = np.zeros((size, size), dtype=bool)
    rr, cc = ellipse(cy, cx, max(ry, 1.0), max(rx, 1.0), shape=(size, size), rotation=angle)
    mask[rr, cc] = True
    return mask


def bar_mask(size: int, r0: float, c0: float, r1: float, c1: float, width: float) -> np.ndarray:
    """A thick line segment (a limb or a tail) as a quadrilateral."""
    length = math.hypot(r1 - r0, c1 - c0) or 1.0
    nr, nc = -(c1 - c0) / length * width / 2, (r1 - r0) / length * width / 2
    return polygon_mask(size, [r0 + nr, r1 + nr, r1 - nr, r0 - nr], [c0 + nc, c1 + nc, c1 - nc, c0 - nc])


def draw_animal(canvas: Canvas, bank: TextureBank, rng: np.random.Generator, scale: float, cy: float, cx: float,
                labels: dict[str, int]) -> None:
    """Paint a four-legged animal centred at (cy, cx); ``scale`` is the body half-length in pixels.

    Painting order (legs and tail first, then body, head, ear) makes overlaps resolve like a side view.
    """
    s = canvas.size
    facing = 1 if rng.random() < 0.5 else -1
    body_rx, body_ry = scale, scale * rng.uniform(0.45, 0.6)
    tilt = rng.uniform(-0.15, 0.15)
    fur = bank.patch("fur", s, rng)
    dark = bank.patch("fur", s, rng, tint=(0.55, 0.5, 0.45))
    leg_len, leg_w = scale * rng.uniform(0.8, 1.0), max(2.5, scale * 0.22)
    for offset in (-0.7, -0.35, 0.35, 0.7):
        top_c = cx + offset * body_rx
        swing = rng.uniform(-0.25, 0.25) * leg_len
        canvas.paint(bar_mask(s, cy, top_c, cy + body_ry + leg_len, top_c + swing, leg_w), dark, labels["leg"])
    tail_r0, tail_c0 = cy - body_ry * 0.3, cx - facing * body_rx * 0.9
    tail_angle = rng.uniform(0.3, 1.1)
    tail_len = scale * rng.uniform(0.7, 1.0)
    canvas.paint(
        bar_mask(s, tail_r0, tail_c0, tail_r0 - math.sin(tail_angle) * tail_len,
                 tail_c0 - facing * math.cos(tail_angle) * tail_len, max(2.5, scale * 0.18)),
        dark, labels["tail"],
    )
    canvas.paint(ellipse_mask(s, cy, cx, body_ry, body_rx, tilt), fur, labels["body"])
    head_r = scale * rng.uniform(0.42, 0.55)
    head_cy, head_cx = cy - body_ry * rng.uniform(0.6, 1.0), cx + facing * (body_rx + head_r * 0.5)
    head_tex = bank.patch("fur", s, rng, tint=(1.1, 1.0, 0.9))
    canvas.paint(ellipse_mask(s, head_cy, head_cx, head_r * 0.85, head_r), head_tex, labels["head"])
    if "ear" in labels:
        ear_w = head_r * 1.1
        base_r = head_cy - head_r * 0.6
        ear_c = head_cx - facing * head_r * 0.2
        ear = polygon_mask(s, [base_r, base_r - ear_w * 1.1, base_r],
                           [ear_c - ear_w / 2, ear_c + facing * ear_w * 0.1, ear_c + ear_w / 2])
        canvas.paint(ear, bank.patch("fur", s, rng, tint=(1.2, 0.8, 0.8)), labels["ear"])


def draw_simple(rng: np.random.Generator, size: int, bank: TextureBank) -> Canvas:
    """One animal with parts on an outdoor photo background (Horse-21 stand-in)."""
    canvas = Canvas(size, bank.patch("outdoor", size, rng), SIMPLE_CLASSES.index("background"))
    scale = size * rng.uniform(0.2, 0.27)
    cy = size * rng.uniform(0.4, 0.52)
    cx = size * rng.uniform(0.42, 0.58)
    draw_animal(canvas, bank, rng, scale, cy, cx, {name: i for i, name in enumerate(SIMPLE_CLASSES)})
    return canvas


def draw_complex(rng: np.random.Generator, size: int, bank: TextureBank) -> Canvas:
    """A cluttered indoor scene with several object classes (Bedroom-28 stand-in)."""
    ids = {name: i for i, name in enumerate(COMPLEX_CLASSES)}
    canvas = Canvas(size, bank.patch("wall", size, rng), ids["wall"])
    horizon = size * rng.uniform(0.4, 0.62)
    floor_rows = [horizon + rng.uniform(-3, 3), horizon + rng.uniform(-3, 3), size, size]
    canvas.paint(polygon_mask(size, floor_rows, [0, size, size, 0]), bank.patch("floor", size, rng), ids["floor"])
    if rng.random() < 0.8:
        w, h = size * rng.uniform(0.2, 0.35), size * rng.uniform(0.15, 0.25)
        c0, r0 = rng.uniform(2, size - w - 2), rng.uniform(2, max(3.0, horizon - h - 2))
        canvas.paint(polygon_mask(size, [r0, r0, r0 + h, r0 + h], [c0, c0 + w, c0 + w, c0]),
                     bank.patch("sky", size, rng), ids["window"])
    clutter = bank.patch("clutter", size, rng)
    for _ in range(int(rng.integers(1, 4))):
        cr, cc, rad = rng.uniform(0, size), rng.uniform(0, size), size * rng.uniform(0.06, 0.12)
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rad * rng.uniform(0.6, 1.0, n)
        canvas.paint(polygon_mask(size, cr + radii * np.sin(angles), cc + radii * np.cos(angles)), clutter, ids["other"])
    if rng.random() < 0.85:
        w = size * rng.uniform(0.3, 0.45)
        c0 = rng.uniform(0, size - w)
        top = horizon + size * rng.uniform(-0.05, 0.1)
        thick, leg_h = max(3.0, size * 0.06), size * rng.uniform(0.15, 0.22)
        wood = bank.patch("wood", size, rng)
        table = polygon_mask(size, [top, top, top + thick, top + thick], [c0, c0 + w, c0 + w, c0])
        for lc in (c0 + 2, c0 + w - 2):
            table |= bar_mask(size, top, lc, top + thick + leg_h, lc, max(2.5, size * 0.04))
        canvas.paint(table, wood, ids["table"])
    if rng.random() < 0.8:
        rad = size * rng.uniform(0.07, 0.11)
        canvas.paint(ellipse_mask(size, rng.uniform(horizon + rad, size - rad), rng.uniform(rad, size - rad), rad, rad),
                     bank.patch("ball", size, rng), ids["ball"])
    if rng.random() < 0.7:
        animal = Canvas(size, canvas.image, 255)
        scale = size * rng.uniform(0.1, 0.14)
        draw_animal(animal, bank, rng, scale, _uniform(rng, horizon, size - 2.2 * scale),
                    _uniform(rng, 2 * scale, size - 2 * scale),
                    {"leg": ids["animal"], "tail": ids["animal"], "body": ids["animal"], "head": ids["animal"]})
        mask = animal.label != 255
        canvas.paint(mask, animal.image, ids["animal"])
    return canvas


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """rng.uniform that tolerates an empty range (small canvases): then ``low``."""
    return float(rng.uniform(low, high)) if high > low else float(low)


def draw_demo_image(kind: str, index: int, size: int, seed: int, bank: TextureBank | None = None):
    """Image ``index`` of a demo set: (H×W×3 uint8 image, H×W uint8 labels)."""
    bank = bank or TextureBank()
    rng = numpy_rng(seed, "demo_seg", kind, index)
    canvas = (draw_simple if kind == "simple" else draw_complex)(rng, size, bank)
    return (canvas.image * 255).round().astype(np.uint8), canvas.label


def make_demo_seg(out: str | Path, config: DemoSegConfig) -> Path:
    """Write a demo dataset in the DDPM-seg layout (atomically: ``out`` appears complete or not at all)."""
    from PIL import Image

    config.validate()
    out = Path(out)
    bank = TextureBank()
    classes = KINDS[config.kind]
    counts = np.zeros(len(classes), dtype=np.int64)
    with atomic_dir(out) as tmp:
        for split, indices in (("train", range(config.n_train)),
                               ("test", range(config.n_train, config.n_train + config.n_test))):
            folder = tmp / "real" / split
            folder.mkdir(parents=True)
            for index in indices:
                image, label = draw_demo_image(config.kind, index, config.size, config.seed, bank)
                counts += np.bincount(label.ravel(), minlength=len(classes))[: len(classes)]
                stem = f"img_{index:03d}"
                Image.fromarray(image).save(folder / f"{stem}.png")
                np.save(folder / f"{stem}.npy", label)
        write_json(tmp / "dataset.json", {
            "name": f"demo-{config.kind}",
            "kind": config.kind,
            "num_classes": len(classes),
            "class_names": list(classes),
            "ignore_label": 255,
            "train_count": config.n_train,
            "test_count": config.n_test,
            "size": config.size,
            "seed": config.seed,
            "pixel_counts": counts.tolist(),
            "note": "drawn by diffact.data.demo_seg from scikit-image sample photos; labels are exact",
        })
    log.info("wrote %s demo dataset (%d train + %d test, %d px) to %s", config.kind, config.n_train, config.n_test,
             config.size, out)
    return out
