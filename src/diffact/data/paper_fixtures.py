"""Fixture datasets at the paper's real image sizes and in the real on-disk layouts, for a paper-scale rehearsal.

A rehearsal runs the paper profile (``config/paper.yaml``) end to end on full-size random-weight stand-in models
and on these trees, so every loader, checker, shape and code path that the real datasets hit is exercised.
The real datasets cannot be downloaded here, so the pictures are scikit-image's shipped images
(:mod:`diffact.data.shipped`), warped (SPair) or cut into textures and tiled (the segmentation sets), and the
labels are synthetic. Only the folder layouts, file names, file formats and image sizes are those of the releases::

    OUT/SPair-71k/                      JPEGImages/<category>/<image>.jpg (long side 500: 500×375, 333×500, ...),
                                        PairAnnotation/{trn,val,test}/<id>-<src>-<trg>:<category>.json,
                                        ImageAnnotation/<category>/<image>.json, Layout/large/{trn,val,test}.txt,
                                        annotations/spair_71k_{val,test}-360.json (DHF's record format)
    OUT/ddpm-segmentation/horse_21/     real/{train,test}/<stem>.png + <stem>.npy, 256×256, Horse-21 class ids
    OUT/ddpm-segmentation/bedroom_28/   the same with Bedroom-28 class ids (no dataset.json, as in the release)
    OUT/ADEChallengeData2016/           images/{training,validation}/ADE_{train,val}_########.jpg (683×512, ...),
                                        annotations/.../*.png (0 = other, 1..150 = ADE20K's classes)
    OUT/cityscapes/                     leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
                                        (2048×1024), gtFine/.../*_gtFine_{labelIds,instanceIds,color}.png and
                                        *_gtFine_polygons.json (raw ids 0..33), and *_gtFine_labelTrainIds.png
                                        made by :func:`diffact.data.cityscapes.write_train_ids` (optional)

so ``diffact make-paper-fixtures --out data`` gives exactly the roots ``config/paper.yaml`` names. Each dataset
folder also holds ``fixture.json`` (the generator, seed, counts and, for SPair, every image's homography), a
name no loader reads.

SPair ground truth is exact by construction: every category is one shipped image with keypoints on it
(Harris corners); every SPair image renders that base image through a known base→image homography, so image
``i``'s keypoints are the base keypoints mapped through it (kept when they land inside) and every pair (i, j)
of a category's images of one split corresponds exactly (stored to 1/100 pixel). The DHF subset files list
``*-360`` pairs per category drawn from the val / test split; ``test-90`` (the profile's ``spair-screen``) has
no file upstream and is drawn by :func:`diffact.data.spair.subset_pairs` (5 pairs per category) from the test
split, which by default holds 6 pairs per category so the draw really selects. The subset files hold fewer pairs
than DHF's 360, so a profile reading them sets ``official_counts: false`` on its SPair entries (as
``config/rehearsal.yaml`` does): the loader and ``check-data`` then skip the released files' counts.

Everything is drawn from generators seeded by ``seed`` and keyed by dataset and image
(:func:`diffact.utils.seeding.numpy_rng`), files are written with fixed settings, and each dataset folder is
written atomically (:func:`diffact.utils.io.atomic_dir`): the same arguments give byte-identical trees.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from diffact.utils.errors import ConfigError, DataError
from diffact.utils.io import atomic_dir, write_json, write_text
from diffact.utils.seeding import derive_seed, numpy_rng

log = logging.getLogger(__name__)

GENERATOR = "diffact.data.paper_fixtures"
FIXTURE_JSON = "fixture.json"
NOTE = ("fixture tree for a rehearsal: scikit-image's shipped pictures, warped or tiled, with synthetic labels; "
        "only the layout, file formats and image sizes are those of the real release")

# Dataset → folder under OUT (the roots of config/paper.yaml without their leading data/).
FOLDERS: dict[str, str] = {
    "spair": "SPair-71k",
    "horse_21": "ddpm-segmentation/horse_21",
    "bedroom_28": "ddpm-segmentation/bedroom_28",
    "ade20k": "ADEChallengeData2016",
    "cityscapes": "cityscapes",
}
DATASETS: tuple[str, ...] = tuple(FOLDERS)


@dataclasses.dataclass(frozen=True)
class FixtureCounts:
    """How much each fixture holds (rehearsal defaults for a 2-core CPU; the paper's sets are far larger).

    SPair: ``spair_<split>`` images per category and split (every ordered pair of a category's images in a
    split is a pair: n images give n·(n−1) pairs), ``spair_<split>_360`` pairs per category listed in DHF's
    subset file. DDPM-seg (both datasets): images per split (the paper: 30/20 Horse-21, 40/20 Bedroom-28).
    ADE20K / Cityscapes: images per split.
    """

    spair_trn: int = 2
    spair_val: int = 2
    spair_test: int = 3
    spair_val_360: int = 1
    spair_test_360: int = 2
    ddpmseg_train: int = 4
    ddpmseg_test: int = 2
    ade_train: int = 4
    ade_val: int = 2
    cityscapes_train: int = 2
    cityscapes_val: int = 1

    @staticmethod
    def keys() -> list[str]:
        """The ``--counts`` keys: field names with '-' (``spair-test-360``, ``ddpmseg-train``, ...)."""
        return [f.name.replace("_", "-") for f in dataclasses.fields(FixtureCounts)]

    def replace(self, **values: int) -> "FixtureCounts":
        return dataclasses.replace(self, **values).validate()

    def validate(self) -> "FixtureCounts":
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"fixture count {field.name.replace('_', '-')} must be a positive integer, got {value!r}")
        for split in ("trn", "val", "test"):
            if getattr(self, f"spair_{split}") < 2:
                raise ConfigError(f"spair-{split} must be at least 2 (a pair needs two images of a category)")
        for split in ("val", "test"):
            n = getattr(self, f"spair_{split}")
            if getattr(self, f"spair_{split}_360") > n * (n - 1):
                raise ConfigError(f"spair-{split}-360 = {getattr(self, f'spair_{split}_360')} pairs per category, but "
                                  f"{n} images per category give only {n * (n - 1)} {split} pairs")
        return self


def parse_counts(text: str, counts: FixtureCounts | None = None) -> FixtureCounts:
    """``"spair-test=3,ddpmseg-train=30"`` → counts (unnamed ones keep their value in ``counts``)."""
    counts = counts or FixtureCounts()
    values = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in FixtureCounts.keys():
            raise ConfigError(f"--counts expects KEY=N with KEY one of {', '.join(FixtureCounts.keys())}; got {item!r}")
        try:
            values[key.replace("-", "_")] = int(value)
        except ValueError:
            raise ConfigError(f"--counts {key}: {value!r} is not an integer") from None
    return counts.replace(**values)


# ---- shared helpers ------------------------------------------------------------------------------------------

def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _save_png(array: np.ndarray, path: Path, compress_level: int = 6) -> None:
    """PNG with fixed settings (deterministic bytes); the mode follows the array (uint8 H×W: L, H×W×3: RGB,
    H×W×4: RGBA, uint16 H×W: 16-bit grey). Photos use level 1: 3× faster to write, 25% larger."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=compress_level)


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    from diffact.data.images import save_jpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    save_jpeg(image, path)


def _manifest(name: str, seed: int, counts: dict, **extra) -> dict:
    return {"generator": GENERATOR, "dataset": name, "seed": seed, "counts": counts, "note": NOTE, **extra}


def fast_texture_bank():
    """A :class:`diffact.data.demo_seg.TextureBank` that resizes with PIL (bilinear, antialiased) instead of
    skimage: the same random draws and crops, about ten times faster on the large canvases of these fixtures.
    (Built here so that importing this module, which the CLI does for every command, does not import skimage.)"""
    from PIL import Image

    from diffact.data.demo_seg import TextureBank
    from diffact.data.shipped import shipped_image

    class FastTextureBank(TextureBank):
        def _pixels(self, name: str) -> np.ndarray:
            if name not in self._cache:
                self._cache[name] = shipped_image(name)
            return self._cache[name]

        def patch(self, surface: str, size: int, rng: np.random.Generator, tint=(1.0, 1.0, 1.0)) -> np.ndarray:
            img = self._pixels(self.source(surface, rng))
            h, w = img.shape[:2]
            side = int(min(h, w) * rng.uniform(0.25, 0.6))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(img[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
            gain = rng.uniform(0.85, 1.15)
            scaled = np.asarray(crop, dtype=np.float32) * (np.asarray(tint, dtype=np.float32) * (gain / 255.0))
            return np.clip(scaled, 0.0, 1.0)

    return FastTextureBank()


def tiled_texture(bank, surface: str, shape: tuple[int, int], rng: np.random.Generator, tile: int = 512,
                  colour: Sequence[int] | None = None, mix: float = 0.45) -> np.ndarray:
    """An H×W×3 float32 texture: a ``tile``² crop of a shipped image, mirror-tiled to ``shape`` (so large
    images cost one small resize), optionally mixed with a flat ``colour`` (0..255) by ``mix``."""
    patch = bank.patch(surface, tile, rng)
    block = np.concatenate([patch, patch[:, ::-1]], axis=1)
    block = np.concatenate([block, block[::-1]], axis=0)
    height, width = shape
    reps = (math.ceil(height / block.shape[0]), math.ceil(width / block.shape[1]), 1)
    texture = np.tile(block, reps)[:height, :width]
    if colour is not None:
        texture = (1.0 - mix) * texture + mix * (np.asarray(colour, dtype=np.float32) / 255.0)
    return np.ascontiguousarray(texture, dtype=np.float32)


# ---- SPair-71k -----------------------------------------------------------------------------------------------

# SPair category → the shipped image that plays it. The defaults are the two pictures inside the scikit-image
# wheel itself (others may be fetched lazily and be absent offline).
SPAIR_SOURCES: dict[str, str] = {
    "cat": "chelsea",
    "person": "astronaut",
    "aeroplane": "rocket",
    "bottle": "coffee",
    "tvmonitor": "camera",
}
SPAIR_DEFAULT_CATEGORIES: tuple[str, ...] = ("cat", "person")
# PASCAL VOC image sizes (W, H) as they occur in SPair-71k: long side 500.
SPAIR_SIZES: tuple[tuple[int, int], ...] = ((500, 375), (500, 333), (375, 500), (333, 500), (500, 334), (500, 500))
SPAIR_KEYPOINTS = 12            # keypoint ids per category (SPair: 10-30 by category)
SPAIR_MIN_VISIBLE = 0.75        # an image keeps at least this fraction of them (redrawn otherwise)
SPAIR_WARP_STRENGTH = 0.6       # demo_spair's warp ranges × this (rotation ±12°, scale ±14%, perspective)
# Photometric jitter of every SPair image: per-channel gain (colour cast), contrast, brightness, gamma, noise.
SPAIR_MAX_LOG_GAIN = 0.08
SPAIR_MAX_LOG_CONTRAST = 0.15
SPAIR_MAX_BRIGHTNESS = 0.05
SPAIR_MAX_LOG_GAMMA = 0.15
SPAIR_NOISE_STD = 0.01
SPAIR_CROP_FRACTION = (0.8, 1.0)
SPAIR_OBJECT_MARGIN = 0.12      # the category's object box: the base image less this margin on each side
SPAIR_DECIMALS = 2
MAX_ATTEMPTS = 50
SPAIR_SPLITS = ("trn", "val", "test")
# DHF's record keys in the order its files use.
DHF_KEY_ORDER = ("source_path", "target_path", "source_points", "target_points", "category",
                 "target_bounding_box", "source_bounding_box")


@dataclasses.dataclass
class _SPairImage:
    category: str
    split: str
    name: str                  # 2008_000001.jpg
    size: tuple[int, int]      # (W, H)
    base_to_image: np.ndarray  # 3×3
    kps: np.ndarray            # (K, 2) float, rounded to SPAIR_DECIMALS
    visible: np.ndarray        # (K,) bool
    box: list[int]


def _spair_base(category: str, rng: np.random.Generator):
    """(base image float [0, 1], object box [x1, y1, x2, y2], (K, 2) integer keypoints) of one category."""
    from diffact.data.demo_spair import sample_keypoints
    from diffact.data.shipped import shipped_image

    source = SPAIR_SOURCES[category]
    try:
        base = shipped_image(source)
    except Exception as err:  # noqa: BLE001 - a lazily fetched sample may be absent offline
        raise ConfigError(f"SPair category {category!r} needs the shipped image {source!r}, which cannot be loaded "
                          f"here ({err}); pick other categories") from err
    height, width = base.shape[:2]
    box = [int(round(width * SPAIR_OBJECT_MARGIN)), int(round(height * SPAIR_OBJECT_MARGIN)),
           int(round(width * (1 - SPAIR_OBJECT_MARGIN))), int(round(height * (1 - SPAIR_OBJECT_MARGIN)))]
    kps = sample_keypoints(rng, base, box, SPAIR_KEYPOINTS)
    if len(kps) < 4:
        raise ConfigError(f"shipped image {source!r} gives only {len(kps)} keypoints for SPair category {category!r}")
    return base.astype(np.float64) / 255.0, box, kps.astype(np.float64)


def _spair_homography(rng: np.random.Generator, base_shape, size: tuple[int, int]) -> np.ndarray:
    """Base→image: a crop of the base with the image's aspect ratio, scaled to ``size``, then a random warp."""
    from diffact.data.demo_spair import random_warp

    base_h, base_w = base_shape[:2]
    width, height = size
    largest_w = min(base_w, base_h * width / height)
    crop_w = largest_w * rng.uniform(*SPAIR_CROP_FRACTION)
    crop_h = crop_w * height / width
    x0, y0 = rng.uniform(0, base_w - crop_w), rng.uniform(0, base_h - crop_h)
    scale = width / crop_w
    crop = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale], [0.0, 0.0, 1.0]])
    return random_warp(rng, size, size, SPAIR_WARP_STRENGTH) @ crop


def _photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Colour cast, contrast, brightness, gamma and noise on a float RGB image in [0, 1] (cheaper than
    demo_spair's HSV jitter, which dominated the build time at 500 px)."""
    gain = np.exp(rng.uniform(-1, 1, size=3) * SPAIR_MAX_LOG_GAIN)
    contrast = math.exp(rng.uniform(-1, 1) * SPAIR_MAX_LOG_CONTRAST)
    brightness = rng.uniform(-1, 1) * SPAIR_MAX_BRIGHTNESS
    gamma = math.exp(rng.uniform(-1, 1) * SPAIR_MAX_LOG_GAMMA)
    out = np.clip((image * gain - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0) ** gamma
    return np.clip(out + rng.standard_normal(image.shape) * SPAIR_NOISE_STD, 0.0, 1.0)


def _spair_image(rng, category, split, name, base, box, base_kps) -> tuple[_SPairImage, np.ndarray]:
    """Draw one SPair image of a category: (its record, H×W×3 uint8 pixels)."""
    from diffact.data.demo_spair import _inside, _render, _warped_box, apply_homography

    need = math.ceil(SPAIR_MIN_VISIBLE * len(base_kps))
    size = SPAIR_SIZES[int(rng.integers(len(SPAIR_SIZES)))]
    for _ in range(MAX_ATTEMPTS):
        matrix = _spair_homography(rng, base.shape, size)
        kps = np.round(apply_homography(matrix, base_kps), SPAIR_DECIMALS)
        visible = _inside(kps, size)
        if visible.sum() >= need:
            break
    else:
        raise ConfigError(f"could not place {need} of {len(base_kps)} keypoints of {category!r} inside a {size} "
                          f"image in {MAX_ATTEMPTS} draws")
    pixels = _photometric(rng, _render(base, matrix, size))
    record = _SPairImage(category, split, name, size, matrix, kps, visible, _warped_box(matrix, box, size))
    return record, _to_uint8(pixels)


def _points(kps: np.ndarray) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in kps]


def _image_annotation(image: _SPairImage) -> dict:
    """ImageAnnotation/<category>/<stem>.json in SPair's field names."""
    return {
        "filename": image.name,
        "src_database": GENERATOR,
        "annotation": "synthetic: keypoints are a shipped image's keypoints mapped through a known homography",
        "image_width": image.size[0],
        "image_height": image.size[1],
        "image_depth": 3,
        "category": image.category,
        "pose": "Unspecified",
        "truncated": 0,
        "occluded": 0,
        "difficult": 0,
        "bndbox": image.box,
        "kps": {str(k): ([float(x), float(y)] if ok else None)
                for k, ((x, y), ok) in enumerate(zip(image.kps, image.visible))},
    }


def _pair_annotation(pair_id: int, src: _SPairImage, trg: _SPairImage) -> dict:
    """PairAnnotation/<split>/<name>.json in SPair's field names: the keypoint ids visible in both images."""
    common = np.flatnonzero(src.visible & trg.visible)
    return {
        "pair_id": pair_id,
        "src_imname": src.name,
        "trg_imname": trg.name,
        "src_imsize": [src.size[0], src.size[1], 3],
        "trg_imsize": [trg.size[0], trg.size[1], 3],
        "src_bndbox": src.box,
        "trg_bndbox": trg.box,
        "category": src.category,
        "src_pose": "Unspecified",
        "trg_pose": "Unspecified",
        "src_kps": _points(src.kps[common]),
        "trg_kps": _points(trg.kps[common]),
        "kps_ids": [str(k) for k in common],
        "mirror": 0,
        "viewpoint_variation": 0,
        "scale_variation": 0,
        "truncation": 0,
        "occlusion": 0,
    }


def _dhf_record(annotation: dict) -> dict:
    """A pair in DHF's subset-file format (``spair_71k_val-360.json``): paths relative to JPEGImages/."""
    category = annotation["category"]
    values = {
        "source_path": f"{category}/{annotation['src_imname']}",
        "target_path": f"{category}/{annotation['trg_imname']}",
        "source_points": annotation["src_kps"],
        "target_points": annotation["trg_kps"],
        "category": category,
        "target_bounding_box": annotation["trg_bndbox"],
        "source_bounding_box": annotation["src_bndbox"],
    }
    return {key: values[key] for key in DHF_KEY_ORDER}


def _check_categories(categories: Sequence[str]) -> list[str]:
    categories = list(categories)
    unknown = [c for c in categories if c not in SPAIR_SOURCES]
    if unknown or len(set(categories)) != len(categories) or not categories:
        raise ConfigError(f"SPair fixture categories must be distinct names from {', '.join(SPAIR_SOURCES)}; "
                          f"got {categories}")
    return categories


def build_spair(root: str | Path, *, seed: int = 0, counts: FixtureCounts = FixtureCounts(),
                categories: Sequence[str] = SPAIR_DEFAULT_CATEGORIES) -> Path:
    """Write the SPair-71k fixture at ``root`` (atomically) and return ``root``."""
    from diffact.data.spair import pair_name

    categories = _check_categories(categories)
    root = Path(root)
    images: list[_SPairImage] = []
    layout: dict[str, list[str]] = {split: [] for split in SPAIR_SPLITS}
    by_split: dict[str, dict[str, list[dict]]] = {split: {c: [] for c in categories} for split in SPAIR_SPLITS}
    bases: dict[str, dict] = {}
    counter = pair_id = 0
    with atomic_dir(root) as tmp:
        for split in SPAIR_SPLITS:
            (tmp / "PairAnnotation" / split).mkdir(parents=True)
        for category in sorted(categories):
            base, box, base_kps = _spair_base(category, numpy_rng(seed, "paper-fixtures", "spair", "base", category))
            bases[category] = {"source": SPAIR_SOURCES[category], "object_box": box,
                               "keypoints": [[int(x), int(y)] for x, y in base_kps]}
            for split in SPAIR_SPLITS:
                members = []
                for i in range(getattr(counts, f"spair_{split}")):
                    counter += 1
                    name = f"{2008 + counter % 4}_{counter:06d}.jpg"
                    rng = numpy_rng(seed, "paper-fixtures", "spair", "image", category, split, i)
                    image, pixels = _spair_image(rng, category, split, name, base, box, base_kps)
                    _save_jpeg(pixels, tmp / "JPEGImages" / category / name)
                    write_json(tmp / "ImageAnnotation" / category / f"{Path(name).stem}.json", _image_annotation(image))
                    members.append(image)
                images.extend(members)
                for src in members:
                    for trg in members:
                        if src is trg:
                            continue
                        pair_id += 1
                        annotation = _pair_annotation(pair_id, src, trg)
                        stem = pair_name(pair_id, src.name, trg.name, category)
                        write_json(tmp / "PairAnnotation" / split / f"{stem}.json", annotation)
                        layout[split].append(stem)
                        by_split[split][category].append(annotation)
        for split in SPAIR_SPLITS:
            write_text(tmp / "Layout" / "large" / f"{split}.txt", "".join(f"{n}\n" for n in layout[split]))
        subsets = {}
        for split in ("val", "test"):
            subset = f"{split}-360"
            records = []
            for category in sorted(categories):
                pairs = by_split[split][category]
                rng = numpy_rng(seed, "paper-fixtures", "spair", subset, category)
                picks = sorted(rng.choice(len(pairs), size=getattr(counts, f"spair_{split}_360"), replace=False).tolist())
                records.extend(_dhf_record(pairs[k]) for k in picks)
            # DHF writes its subset files as one line of JSON in its own key order.
            write_text(tmp / "annotations" / f"spair_71k_{subset}.json", json.dumps(records) + "\n")
            subsets[subset] = [f"{r['source_path']} -> {r['target_path']}" for r in records]
        write_json(tmp / FIXTURE_JSON, _manifest(
            "spair", seed, {k: getattr(counts, k) for k in ("spair_trn", "spair_val", "spair_test",
                                                             "spair_val_360", "spair_test_360")},
            categories=bases,
            pairs={split: len(names) for split, names in layout.items()},
            subsets=subsets,
            images={f"{im.category}/{im.name}": {"split": im.split, "size": list(im.size),
                                                 "base_to_image": np.round(im.base_to_image, 12).tolist()}
                    for im in images},
        ))
    return root


# ---- DDPM-seg (Horse-21, Bedroom-28) ------------------------------------------------------------------------

DDPMSEG_SIZE = 256  # the release's images and label maps are 256×256
# demo_seg's drawn classes → the release's class ids (diffact.data.ddpmseg's tables). The labels are synthetic.
DDPMSEG_SCENES: dict[str, tuple[str, dict[str, str]]] = {
    "horse_21": ("simple", {"background": "background", "body": "barrel", "head": "head", "leg": "leg",
                            "tail": "tail", "ear": "ear"}),
    "bedroom_28": ("complex", {"other": "background", "wall": "wall", "floor": "floor", "window": "window",
                               "table": "table/nightstand/dresser", "ball": "pillow", "animal": "pouf"}),
}


def _class_lut(drawn: Sequence[str], mapping: dict[str, str], target: Sequence[str]) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for index, name in enumerate(drawn):
        lut[index] = target.index(mapping[name])
    return lut


def build_ddpmseg(root: str | Path, name: str, *, seed: int = 0, counts: FixtureCounts = FixtureCounts()) -> Path:
    """Write a DDPM-seg release-layout fixture (``horse_21`` or ``bedroom_28``) at ``root`` (atomically)."""
    from diffact.data.ddpmseg import DDPMSEG_DATASETS
    from diffact.data.demo_seg import KINDS, draw_demo_image

    if name not in DDPMSEG_SCENES:
        raise ConfigError(f"DDPM-seg fixture must be one of {', '.join(DDPMSEG_SCENES)}, got {name!r}")
    kind, mapping = DDPMSEG_SCENES[name]
    info = DDPMSEG_DATASETS[name]
    lut = _class_lut(KINDS[kind], mapping, info.class_names)
    root, bank = Path(root), fast_texture_bank()
    draw_seed = derive_seed(seed, "paper-fixtures", name)
    pixels = np.zeros(info.num_classes, dtype=np.int64)
    splits = (("train", range(counts.ddpmseg_train)),
              ("test", range(counts.ddpmseg_train, counts.ddpmseg_train + counts.ddpmseg_test)))
    with atomic_dir(root) as tmp:
        for split, indices in splits:
            folder = tmp / "real" / split
            folder.mkdir(parents=True)
            for index in indices:
                image, drawn = draw_demo_image(kind, index, DDPMSEG_SIZE, draw_seed, bank)
                label = lut[drawn]
                pixels += np.bincount(label.ravel(), minlength=256)[: info.num_classes]
                _save_png(image, folder / f"img_{index:03d}.png", compress_level=1)
                np.save(folder / f"img_{index:03d}.npy", label)
        write_json(tmp / FIXTURE_JSON, _manifest(
            name, seed, {"train": counts.ddpmseg_train, "test": counts.ddpmseg_test}, size=DDPMSEG_SIZE,
            drawn_scene=kind, classes={drawn_name: mapping[drawn_name] for drawn_name in KINDS[kind]},
            pixel_counts={info.class_names[k]: int(v) for k, v in enumerate(pixels) if v},
        ))
    return root


# ---- ADE20K --------------------------------------------------------------------------------------------------

# (W, H) of ADE20K images as they commonly occur in ADEChallengeData2016 (short side 512 and more).
ADE_SIZES: tuple[tuple[int, int], ...] = ((683, 512), (512, 683), (768, 512), (512, 512), (684, 512), (512, 768))
# demo_seg's complex scene → ADE20K annotation values (1-based index in objectInfo150; 0 = other).
ADE_VALUES: dict[str, int] = {"other": 0, "wall": 1, "floor": 4, "window": 9, "table": 16, "ball": 120, "animal": 127}
ADE_NAMES: dict[int, str] = {1: "wall", 4: "floor", 9: "windowpane", 16: "table", 120: "ball", 127: "animal"}


def build_ade20k(root: str | Path, *, seed: int = 0, counts: FixtureCounts = FixtureCounts()) -> Path:
    """Write the ADEChallengeData2016 fixture at ``root`` (atomically): indoor scenes drawn square at the long
    side by :func:`diffact.data.demo_seg.draw_demo_image`, cropped to an ADE20K size."""
    from diffact.data.demo_seg import COMPLEX_CLASSES, draw_demo_image

    lut = np.full(256, 0, dtype=np.uint8)
    for index, drawn in enumerate(COMPLEX_CLASSES):
        lut[index] = ADE_VALUES[drawn]
    root, bank = Path(root), fast_texture_bank()
    draw_seed = derive_seed(seed, "paper-fixtures", "ade20k")
    sizes = {}
    with atomic_dir(root) as tmp:
        for split, prefix, n in (("training", "train", counts.ade_train), ("validation", "val", counts.ade_val)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "annotations" / split).mkdir(parents=True)
            for i in range(n):
                rng = numpy_rng(seed, "paper-fixtures", "ade20k", split, i)
                width, height = ADE_SIZES[int(rng.integers(len(ADE_SIZES)))]
                side = max(width, height)
                image, drawn = draw_demo_image("complex", i if split == "training" else 10_000 + i, side,
                                               draw_seed, bank)
                x0, y0 = int(rng.integers(side - width + 1)), int(rng.integers(side - height + 1))
                image, drawn = image[y0:y0 + height, x0:x0 + width], drawn[y0:y0 + height, x0:x0 + width]
                stem = f"ADE_{prefix}_{i + 1:08d}"
                _save_jpeg(np.ascontiguousarray(image), tmp / "images" / split / f"{stem}.jpg")
                _save_png(np.ascontiguousarray(lut[drawn]), tmp / "annotations" / split / f"{stem}.png")
                sizes[f"{split}/{stem}"] = [width, height]
        write_json(tmp / FIXTURE_JSON, _manifest(
            "ade20k", seed, {"training": counts.ade_train, "validation": counts.ade_val}, sizes=sizes,
            values={str(v): ADE_NAMES.get(v, "other") for v in sorted(set(ADE_VALUES.values()))},
        ))
    return root


# ---- Cityscapes ----------------------------------------------------------------------------------------------

CITYSCAPES_SIZE = (2048, 1024)  # (W, H) of every leftImg8bit frame
CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
CITYSCAPES_FRAME = 19           # the annotated frame of each 30-frame snippet
# cityscapesscripts/helpers/labels.py: name → (label id, colour) for the classes the street scenes use.
CITYSCAPES_LABELS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "unlabeled": (0, (0, 0, 0)), "ego vehicle": (1, (0, 0, 0)), "rectification border": (2, (0, 0, 0)),
    "out of roi": (3, (0, 0, 0)), "static": (4, (0, 0, 0)), "dynamic": (5, (111, 74, 0)),
    "ground": (6, (81, 0, 81)), "road": (7, (128, 64, 128)), "sidewalk": (8, (244, 35, 232)),
    "parking": (9, (250, 170, 160)), "rail track": (10, (230, 150, 140)), "building": (11, (70, 70, 70)),
    "wall": (12, (102, 102, 156)), "fence": (13, (190, 153, 153)), "guard rail": (14, (180, 165, 180)),
    "bridge": (15, (150, 100, 100)), "tunnel": (16, (150, 120, 90)), "pole": (17, (153, 153, 153)),
    "polegroup": (18, (153, 153, 153)), "traffic light": (19, (250, 170, 30)), "traffic sign": (20, (220, 220, 0)),
    "vegetation": (21, (107, 142, 35)), "terrain": (22, (152, 251, 152)), "sky": (23, (70, 130, 180)),
    "person": (24, (220, 20, 60)), "rider": (25, (255, 0, 0)), "car": (26, (0, 0, 142)), "truck": (27, (0, 0, 70)),
    "bus": (28, (0, 60, 100)), "caravan": (29, (0, 0, 90)), "trailer": (30, (0, 0, 110)), "train": (31, (0, 80, 100)),
    "motorcycle": (32, (0, 0, 230)), "bicycle": (33, (119, 11, 32)),
}
CITYSCAPES_INSTANCE_CLASSES = ("person", "rider", "car", "truck", "bus", "caravan", "trailer", "train",
                               "motorcycle", "bicycle")
# Texture source (demo_seg.TEXTURES surface) of each class the scenes paint.
CITYSCAPES_SURFACES = {
    "sky": "sky", "building": "wall", "vegetation": "outdoor", "terrain": "outdoor", "sidewalk": "wall",
    "road": "floor", "pole": "wood", "traffic sign": "ball", "traffic light": "wood", "car": "clutter",
    "person": "fur", "ego vehicle": "wood", "rectification border": "clutter", "fence": "wood",
}


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int = 14) -> list[tuple[int, int]]:
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = radius * rng.uniform(0.65, 1.0, n)
    return [(int(round(cx + r * math.cos(a))), int(round(cy + r * math.sin(a) * 0.8))) for a, r in zip(angles, radii)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[int, int]]:
    x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def street_scene(rng: np.random.Generator) -> list[tuple[str, list[tuple[int, int]]]]:
    """The polygons of one street scene, back to front, in Cityscapes' label names (as in *_polygons.json):
    sky, a skyline of buildings, trees, sidewalk, a road to a vanishing point, poles with signs, cars, people,
    the ego vehicle's bonnet and the rectification border."""
    width, height = CITYSCAPES_SIZE
    horizon = height * rng.uniform(0.46, 0.54)
    vanish = width * rng.uniform(0.42, 0.58)
    objects: list[tuple[str, list[tuple[int, int]]]] = [("sky", _rect(0, 0, width - 1, horizon + 40))]
    skyline, x = [(0, int(horizon + 20))], 0.0
    while x < width - 1:
        top = height * rng.uniform(0.06, 0.36)
        x_next = min(width - 1.0, x + width * rng.uniform(0.07, 0.2))
        skyline += [(int(round(x)), int(round(top))), (int(round(x_next)), int(round(top)))]
        x = x_next
    objects.append(("building", skyline + [(width - 1, int(horizon + 20))]))
    for _ in range(int(rng.integers(2, 4))):
        objects.append(("vegetation", _blob(rng, rng.uniform(0, width), horizon - height * rng.uniform(0.05, 0.2),
                                            height * rng.uniform(0.08, 0.16))))
    objects.append(("sidewalk", _rect(0, horizon, width - 1, height - 1)))
    if rng.random() < 0.7:
        objects.append(("terrain", [(0, int(horizon) + 4), (int(vanish * 0.5), int(horizon) + 4),
                                    (0, int(horizon + height * 0.12))]))
    road_bottom = height * 0.86
    objects.append(("road", [(int(vanish - 60), int(horizon)), (int(vanish + 60), int(horizon)),
                             (width - 1, int(road_bottom)), (width - 1, height - 1), (0, height - 1),
                             (0, int(road_bottom))]))
    if rng.random() < 0.5:
        objects.append(("fence", _rect(width * 0.78, horizon - 40, width - 1, horizon + 30)))
    for side in (-1, 1):
        x_pole = vanish + side * width * rng.uniform(0.22, 0.4)
        foot = horizon + height * rng.uniform(0.08, 0.16)
        objects.append(("pole", _rect(x_pole - 9, height * 0.12, x_pole + 9, foot)))
        kind = "traffic sign" if rng.random() < 0.6 else "traffic light"
        objects.append((kind, _rect(x_pole - 38, height * 0.14, x_pole + 38, height * 0.14 + 70)))
    cars = []
    for _ in range(int(rng.integers(2, 4))):
        bottom = horizon + (road_bottom - horizon) * rng.uniform(0.2, 0.9)
        car_w = (bottom - horizon) * rng.uniform(1.6, 2.3)
        centre = vanish + (bottom - horizon) * rng.uniform(-2.2, 2.2)
        cars.append((bottom, centre, car_w))
    for bottom, centre, car_w in sorted(cars):  # farther cars first: nearer ones occlude them
        x0, x1, car_h = centre - car_w / 2, centre + car_w / 2, car_w * 0.5
        objects.append(("car", [(int(x0), int(bottom)), (int(x0), int(bottom - 0.55 * car_h)),
                                (int(x0 + 0.2 * car_w), int(bottom - car_h)), (int(x1 - 0.2 * car_w), int(bottom - car_h)),
                                (int(x1), int(bottom - 0.55 * car_h)), (int(x1), int(bottom))]))
    for _ in range(int(rng.integers(1, 3))):
        foot = horizon + height * rng.uniform(0.06, 0.2)
        tall = (foot - horizon) * 2.2 + 60
        x_p = width * (rng.uniform(0.02, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 0.98))
        objects.append(("person", [(int(x_p - tall * 0.12), int(foot)), (int(x_p - tall * 0.1), int(foot - tall * 0.8)),
                                   (int(x_p), int(foot - tall)), (int(x_p + tall * 0.1), int(foot - tall * 0.8)),
                                   (int(x_p + tall * 0.12), int(foot))]))
    objects.append(("ego vehicle", [(0, height - 1), (0, height - 70), (int(width * 0.3), height - 95),
                                    (int(width * 0.7), height - 95), (width - 1, height - 70), (width - 1, height - 1)]))
    objects.append(("rectification border", _rect(0, 0, 5, height - 1)))
    objects.append(("rectification border", _rect(width - 6, 0, width - 1, height - 1)))
    # Vertices inside the frame, as in the release's polygons.
    return [(name, [(min(max(x, 0), width - 1), min(max(y, 0), height - 1)) for x, y in polygon])
            for name, polygon in objects]


def rasterize_polygons(objects: Sequence[tuple[str, Sequence[Sequence[int]]]], size: tuple[int, int]) -> np.ndarray:
    """H×W uint16 map of object index + 1 (0 = no object), polygons drawn in order with PIL's ImageDraw, the
    way cityscapesscripts' json2labelImg draws *_polygons.json (so labelIds and polygons agree exactly)."""
    from PIL import Image, ImageDraw

    if len(objects) > 65535:
        raise DataError(f"too many polygons ({len(objects)}) for one frame")
    canvas = Image.new("I", size, 0)
    drawer = ImageDraw.Draw(canvas)
    for index, (_, polygon) in enumerate(objects):
        drawer.polygon([tuple(map(int, p)) for p in polygon], fill=index + 1)
    return np.asarray(canvas, dtype=np.int32).astype(np.uint16)


def build_cityscapes(root: str | Path, *, seed: int = 0, counts: FixtureCounts = FixtureCounts(),
                     train_ids: bool = True) -> Path:
    """Write the Cityscapes fixture at ``root`` (atomically); with ``train_ids`` also the labelTrainIds maps
    (:func:`diffact.data.cityscapes.write_train_ids`, as ``diffact cityscapes-train-ids`` makes them)."""
    from diffact.data.cityscapes import write_train_ids

    width, height = CITYSCAPES_SIZE
    root, bank = Path(root), fast_texture_bank()
    frames = {}
    with atomic_dir(root) as tmp:
        for split, n in (("train", counts.cityscapes_train), ("val", counts.cityscapes_val)):
            cities = CITYSCAPES_CITIES[split]
            for i in range(n):
                city = cities[i % len(cities)]
                stem = f"{city}_{i // len(cities):06d}_{CITYSCAPES_FRAME:06d}"
                rng = numpy_rng(seed, "paper-fixtures", "cityscapes", split, i)
                objects = street_scene(rng)
                index = rasterize_polygons(objects, CITYSCAPES_SIZE)
                label_ids = np.zeros(len(objects) + 1, dtype=np.uint8)
                instance_ids = np.zeros(len(objects) + 1, dtype=np.int32)
                image = np.zeros((height, width, 3), dtype=np.float32)
                per_class: dict[str, int] = {}
                for k, (name, _) in enumerate(objects):
                    label_id, colour = CITYSCAPES_LABELS[name]
                    label_ids[k + 1] = label_id
                    if name in CITYSCAPES_INSTANCE_CLASSES:
                        instance_ids[k + 1] = label_id * 1000 + per_class.get(name, 0)
                        per_class[name] = per_class.get(name, 0) + 1
                    else:
                        instance_ids[k + 1] = label_id
                    # the texture only over the polygon's bounding box: most objects are small
                    xs, ys = [p[0] for p in objects[k][1]], [p[1] for p in objects[k][1]]
                    x0, x1, y0, y1 = min(xs), max(xs) + 1, min(ys), max(ys) + 1
                    mask = index[y0:y1, x0:x1] == k + 1
                    if mask.any():
                        texture = tiled_texture(bank, CITYSCAPES_SURFACES[name], (y1 - y0, x1 - x0), rng, colour=colour)
                        image[y0:y1, x0:x1][mask] = texture[mask]
                labels = label_ids[index]
                palette = np.zeros((256, 4), dtype=np.uint8)
                for label_id, colour in CITYSCAPES_LABELS.values():
                    palette[label_id] = (*colour, 255)
                image_dir = tmp / "leftImg8bit" / split / city
                label_dir = tmp / "gtFine" / split / city
                _save_png(_to_uint8(image), image_dir / f"{stem}_leftImg8bit.png", compress_level=1)
                _save_png(labels, label_dir / f"{stem}_gtFine_labelIds.png")
                _save_png(instance_ids[index].astype(np.uint16), label_dir / f"{stem}_gtFine_instanceIds.png")
                _save_png(palette[labels], label_dir / f"{stem}_gtFine_color.png")
                write_json(label_dir / f"{stem}_gtFine_polygons.json", {
                    "imgHeight": height, "imgWidth": width,
                    "objects": [{"label": name, "polygon": [list(map(int, p)) for p in polygon]}
                                for name, polygon in objects],
                }, sort_keys=False)
                frames[f"{split}/{city}/{stem}"] = sorted({name for name, _ in objects})
        if train_ids:
            write_train_ids(tmp)
        write_json(tmp / FIXTURE_JSON, _manifest(
            "cityscapes", seed, {"train": counts.cityscapes_train, "val": counts.cityscapes_val},
            size=list(CITYSCAPES_SIZE), train_ids=train_ids, frames=frames,
        ))
    return root


# ---- all -----------------------------------------------------------------------------------------------------

def _nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def build_paper_fixtures(out: str | Path, *, seed: int = 0, counts: FixtureCounts | None = None,
                         datasets: Iterable[str] = DATASETS, spair_categories: Sequence[str] = SPAIR_DEFAULT_CATEGORIES,
                         train_ids: bool = True, force: bool = False) -> dict[str, Path]:
    """Write the fixture trees of ``datasets`` under ``out`` ({dataset: folder}, folders as in :data:`FOLDERS`).

    A dataset folder that exists and is not empty is an error unless ``force`` (then it is replaced); every
    folder is checked before anything is written.
    """
    counts = (counts or FixtureCounts()).validate()
    datasets = list(dict.fromkeys(datasets))
    unknown = [d for d in datasets if d not in FOLDERS]
    if unknown or not datasets:
        raise ConfigError(f"unknown fixture datasets {unknown}; expected some of {', '.join(DATASETS)}")
    if "spair" in datasets:
        _check_categories(spair_categories)
    out = Path(out)
    targets = {name: out / FOLDERS[name] for name in DATASETS if name in datasets}
    existing = [str(path) for path in targets.values() if _nonempty(path)]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} and "
                        f"{'is' if len(existing) == 1 else 'are'} not empty; pass --force to replace")
    for name, path in targets.items():
        log.info("writing the %s fixture to %s", name, path)
        if name == "spair":
            build_spair(path, seed=seed, counts=counts, categories=spair_categories)
        elif name in DDPMSEG_SCENES:
            build_ddpmseg(path, name, seed=seed, counts=counts)
        elif name == "ade20k":
            build_ade20k(path, seed=seed, counts=counts)
        else:
            build_cityscapes(path, seed=seed, counts=counts, train_ids=train_ids)
    return targets


def tree_summary(folder: str | Path) -> tuple[int, int]:
    """(files, bytes) under a folder."""
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)
