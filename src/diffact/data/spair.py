"""SPair-71k in its official on-disk layout (Min et al. 2019), as used for the paper's semantic
correspondence benchmark (docs/paper.md §2.8, §4).

Layout read here (a real SPair-71k root and the demo tree of :mod:`diffact.data.demo_spair` alike)::

    <root>/JPEGImages/<category>/<image>.jpg
    <root>/PairAnnotation/{trn,val,test}/<pair_id>-<src stem>-<trg stem>:<category>.json
    <root>/ImageAnnotation/<category>/<image stem>.json          (optional here)
    <root>/Layout/large/{trn,val,test}.txt                      (optional: pair stems, one a line)

A pair annotation holds ``src_imname``, ``trg_imname``, ``category``, ``src_kps``/``trg_kps`` (lists of
[x, y] in original pixels, the same count, row i of one matching row i of the other),
``src_bndbox``/``trg_bndbox`` ([x1, y1, x2, y2]) and ``src_imsize``/``trg_imsize`` ([W, H, C]).
Real SPair files carry more fields (poses, ``kps_ids``, difficulty flags); they are ignored.

Conventions used everywhere in diffact: keypoints are float arrays of shape (N, 2) in (x, y) order and
original-image pixels; image sizes are ``(width, height)`` tuples (SPair's ``imsize`` order); a keypoint
is *missing* when a coordinate is NaN/null or negative (then PCK leaves it out of the denominator).
SPair comes from PASCAL VOC, whose coordinates are 1-based, so x == W or y == H is still inside.

The paper evaluates on DHF's ``spair_71k_val-360.json`` (20 pairs for each of the 18 categories;
docs/paper.md §2.8). Without that file (or ``spair_71k_test-360.json``) a run stops with an error naming every place
looked in, unless the dataset entry says ``subset_fallback: draw``: then :func:`subset_pairs` draws a seeded
subset by the same rule, a warning says so and the subset is labelled ``val-360-drawn`` in every result row.
Other ``<split>-<N>`` names (the paper profile's ``test-90``) have no upstream file and are always drawn.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from diffact.utils.errors import ConfigError, DataError
from diffact.utils.paths import checked_join
from diffact.utils.seeding import numpy_rng

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("trn", "val", "test")

# The 18 SPair-71k categories (used to turn a subset name such as "val-360" into pairs per category).
SPAIR_CATEGORIES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "train", "tvmonitor",
)

# DHF's val-360 / test-360 files hold 20 pairs per category (360 = 20 × 18; docs/paper.md §2.8).
PAIRS_PER_CATEGORY_360 = 20

# Fields a pair annotation must have; image sizes are optional (read from the image header if absent).
REQUIRED_PAIR_FIELDS: tuple[str, ...] = (
    "src_imname", "trg_imname", "category", "src_kps", "trg_kps", "src_bndbox", "trg_bndbox",
)

# DHF subset files (e.g. spair_71k_val-360.json) use other key names for the same content.
DHF_RECORD_KEYS: dict[str, str] = {
    "src_imname": "source_path",
    "trg_imname": "target_path",
    "category": "category",
    "src_kps": "source_points",
    "trg_kps": "target_points",
    "src_bndbox": "source_bounding_box",
    "trg_bndbox": "target_bounding_box",
    "src_imsize": "source_size",
    "trg_imsize": "target_size",
}
SPAIR_KEYS: dict[str, str] = {key: key for key in DHF_RECORD_KEYS}

_SUBSET_NAME = re.compile(r"^(trn|val|test)-(\d+)$")

# DHF's released subset files (github.com/diffusion-hyperfeatures/diffusion_hyperfeatures, annotations/):
# (pairs, keypoints annotated in both images, i.e. the PCK denominator). 360 = 20 pairs × 18 categories
# (docs/paper.md §2.8); the keypoint totals are the ones issue 16 gives for the released files (not re-counted here:
# the files are not in this repository). Such a subset is never drawn silently (see SUBSET_FALLBACKS).
DHF_SUBSET_COUNTS: dict[str, tuple[int, int]] = {"val-360": (360, 2615), "test-360": (360, 2529)}

# What happens when a DHF subset file is missing: "error" (stop, the default) or "draw" (a seeded draw by the
# same 20-per-category rule, logged and labelled "<subset>-drawn"); a dataset entry's ``subset_fallback``.
SUBSET_FALLBACKS: tuple[str, ...] = ("error", "draw")
DRAWN_SUFFIX = "-drawn"


@dataclass(frozen=True, eq=False)
class SPairPair:
    """One annotated image pair.

    ``src_kps``/``trg_kps``: float64 arrays of shape (N, 2), (x, y) in original pixels; rows with NaN
    (or negative) coordinates are missing keypoints. ``src_bbox``/``trg_bbox``: float64 arrays
    [x1, y1, x2, y2]. ``src_size``/``trg_size``: (width, height) of the original images.
    """

    name: str
    category: str
    src_path: Path
    trg_path: Path
    src_kps: np.ndarray
    trg_kps: np.ndarray
    src_bbox: np.ndarray
    trg_bbox: np.ndarray
    src_size: tuple[int, int]
    trg_size: tuple[int, int]
    annotation: str = ""  # where the pair came from (json file, or subset file + record index)

    @property
    def n_keypoints(self) -> int:
        return int(self.src_kps.shape[0])


def pair_name(pair_id: int, src_imname: str, trg_imname: str, category: str) -> str:
    """SPair's pair file stem, e.g. ``000001-2008_000585-2008_001546:aeroplane``."""
    return f"{int(pair_id):06d}-{Path(src_imname).stem}-{Path(trg_imname).stem}:{category}"


def keypoints_present(kps: np.ndarray) -> np.ndarray:
    """Boolean mask (N,) of keypoints that are annotated: finite and not negative in either coordinate."""
    kps = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        return np.isfinite(kps).all(axis=1) & (kps >= 0).all(axis=1)


# ----------------------------------------------------------------------------------------------
# Parsing and validation of one pair annotation (collects every problem, so check_spair_root can
# list them all and the loader can raise with the first ones).
# ----------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_size(value: Any, where: str, field: str, problems: list[str]) -> tuple[int, int] | None:
    """[W, H] or [W, H, C] → (W, H)."""
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3) or not all(_is_number(v) for v in value):
        problems.append(f"{where}: field '{field}' must be [width, height] or [width, height, channels], got {value!r}")
        return None
    width, height = int(value[0]), int(value[1])
    if width <= 0 or height <= 0:
        problems.append(f"{where}: field '{field}' has a non-positive size {value!r}")
        return None
    return width, height


def _parse_bbox(value: Any, where: str, field: str, problems: list[str]) -> np.ndarray | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(_is_number(v) for v in value):
        problems.append(f"{where}: field '{field}' must be [x1, y1, x2, y2], got {value!r}")
        return None
    box = np.asarray(value, dtype=np.float64)
    if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        problems.append(f"{where}: field '{field}' = {value!r} is not a box with x1 < x2 and y1 < y2")
        return None
    return box


def _parse_keypoints(value: Any, where: str, field: str, problems: list[str]) -> np.ndarray | None:
    """A list of [x, y] (or null for a missing keypoint) → float64 (N, 2) with NaN rows for missing."""
    if not isinstance(value, (list, tuple)):
        problems.append(f"{where}: field '{field}' must be a list of [x, y] keypoints, got {type(value).__name__}")
        return None
    rows = []
    for i, point in enumerate(value):
        if point is None:
            rows.append((math.nan, math.nan))
            continue
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            problems.append(f"{where}: field '{field}'[{i}] must be [x, y], got {point!r}")
            return None
        coords = []
        for v in point:
            if v is None:
                coords.append(math.nan)
            elif _is_number(v):
                coords.append(float(v))
            else:
                problems.append(f"{where}: field '{field}'[{i}] must hold numbers, got {point!r}")
                return None
        rows.append(tuple(coords))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _keypoints_inside(kps: np.ndarray, size: tuple[int, int], where: str, field: str, problems: list[str]) -> None:
    """Annotated keypoints must lie in the image: 0 ≤ x ≤ W, 0 ≤ y ≤ H (1-based VOC coordinates may equal W/H)."""
    width, height = size
    present = keypoints_present(kps)
    outside = present & ((kps[:, 0] > width) | (kps[:, 1] > height))
    for i in np.flatnonzero(outside):
        x, y = kps[i]
        problems.append(
            f"{where}: keypoint '{field}'[{i}] = [{x:g}, {y:g}] lies outside the {width}×{height} image"
        )


def _bbox_inside(box: np.ndarray, size: tuple[int, int], where: str, field: str, problems: list[str]) -> None:
    width, height = size
    if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
        problems.append(f"{where}: field '{field}' = {box.tolist()} extends outside the {width}×{height} image")


def image_file(root: str | os.PathLike, category: str, imname: str) -> Path:
    """JPEGImages/<category>/<imname> (a name that already contains a folder is taken relative to JPEGImages).

    Names come from annotation files: an absolute name or one with '..' is a DataError, so an annotation
    cannot point diffact at files outside the SPair root."""
    images = Path(root) / "JPEGImages"
    if "/" in imname:
        return checked_join(images, imname, what="image name")
    return checked_join(images, category, imname, what="category/image name")


def parse_pair_record(
    data: Any,
    *,
    root: str | os.PathLike,
    name: str,
    where: str,
    keys: dict[str, str] = SPAIR_KEYS,
    check_images: bool = True,
    read_image_sizes: bool = False,
) -> tuple[SPairPair | None, list[str]]:
    """Validate one pair record and build an :class:`SPairPair`; returns ``(pair or None, problems)``.

    ``keys`` maps diffact's field names to the record's (SPair's own by default, or
    :data:`DHF_RECORD_KEYS`); messages name the record's own field names. ``where`` names the file (and
    record) in every message. Image sizes come from ``*_imsize``; when absent they are read from the image
    header, as they are when ``read_image_sizes`` is set (then a mismatch with ``*_imsize`` is a problem).
    """
    problems: list[str] = []
    if not isinstance(data, dict):
        return None, [f"{where}: expected a JSON object, got {type(data).__name__}"]
    # Missing fields are noted and the remaining fields still checked, so one pass reports everything.
    for field in REQUIRED_PAIR_FIELDS:
        if keys[field] not in data:
            problems.append(f"{where}: field '{keys[field]}' is missing")

    category = data.get(keys["category"])
    if keys["category"] in data and (not isinstance(category, str) or not category):
        problems.append(f"{where}: field '{keys['category']}' must be a non-empty string, got {category!r}")
        category = None
    if isinstance(category, str) and ":" in name and name.rsplit(":", 1)[1] != category:
        problems.append(f"{where}: the file name says category '{name.rsplit(':', 1)[1]}' but field 'category' is '{category}'")

    paths, sizes = {}, {}
    for side in ("src", "trg"):
        name_key, size_key = keys[f"{side}_imname"], keys[f"{side}_imsize"]
        imname = data.get(name_key)
        if name_key in data and (not isinstance(imname, str) or not imname):
            problems.append(f"{where}: field '{name_key}' must be an image file name, got {imname!r}")
            continue
        if imname is None or category is None:
            continue
        try:
            path = image_file(root, category, imname)
        except DataError as err:
            problems.append(f"{where}: field '{name_key}': {err}")
            continue
        paths[side] = path
        exists = path.is_file()
        if not exists and (check_images or size_key not in data):
            problems.append(f"{where}: image file {path} (field '{name_key}') does not exist")
        declared = _parse_size(data[size_key], where, size_key, problems) if size_key in data else None
        actual = None
        if exists and (read_image_sizes or declared is None):
            from diffact.data.images import image_size

            try:
                actual = image_size(path)
            except DataError as err:
                problems.append(f"{where}: {err}")
        if declared is not None and actual is not None and declared != actual:
            problems.append(
                f"{where}: field '{size_key}' says {declared[0]}×{declared[1]} but {path} is {actual[0]}×{actual[1]}"
            )
        size = declared if declared is not None else actual
        if size is not None:
            sizes[side] = size

    kps, boxes = {"src": None, "trg": None}, {"src": None, "trg": None}
    for side in ("src", "trg"):
        kps_key, box_key = keys[f"{side}_kps"], keys[f"{side}_bndbox"]
        if kps_key in data:
            kps[side] = _parse_keypoints(data[kps_key], where, kps_key, problems)
        if box_key in data:
            boxes[side] = _parse_bbox(data[box_key], where, box_key, problems)
        if side in sizes and kps[side] is not None:
            _keypoints_inside(kps[side], sizes[side], where, kps_key, problems)
        if side in sizes and boxes[side] is not None:
            _bbox_inside(boxes[side], sizes[side], where, box_key, problems)
    if kps["src"] is not None and kps["trg"] is not None and len(kps["src"]) != len(kps["trg"]):
        problems.append(
            f"{where}: keypoint count mismatch: '{keys['src_kps']}' has {len(kps['src'])} "
            f"but '{keys['trg_kps']}' has {len(kps['trg'])}"
        )
    if kps["src"] is not None and len(kps["src"]) == 0:
        problems.append(f"{where}: field '{keys['src_kps']}' is empty (a pair needs at least one keypoint)")

    if problems or len(paths) < 2 or len(sizes) < 2:
        return None, problems
    pair = SPairPair(
        name=name,
        category=category,
        src_path=paths["src"],
        trg_path=paths["trg"],
        src_kps=kps["src"],
        trg_kps=kps["trg"],
        src_bbox=boxes["src"],
        trg_bbox=boxes["trg"],
        src_size=sizes["src"],
        trg_size=sizes["trg"],
        annotation=where,
    )
    return pair, []


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"annotation file {path} does not exist") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err


def _raise_problems(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 3} more problems)" if len(problems) > 3 else ""
        raise DataError("; ".join(problems[:3]) + more)


def read_pair_annotation(path: str | os.PathLike, root: str | os.PathLike | None = None, *, check_images: bool = True) -> SPairPair:
    """Read and validate ``PairAnnotation/<split>/<name>.json``; raises DataError naming the file and field.

    ``root`` defaults to the SPair root three folders above the file.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent.parent
    pair, problems = parse_pair_record(_read_json(path), root=root, name=path.stem, where=str(path), check_images=check_images)
    _raise_problems(problems)
    assert pair is not None
    return pair


# ----------------------------------------------------------------------------------------------
# Listing pairs of a split, subsets
# ----------------------------------------------------------------------------------------------


def layout_file(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / "Layout" / "large" / f"{split}.txt"


def _read_layout(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_pair_names(root: str | os.PathLike, split: str) -> list[str]:
    """Pair stems of a split: the official ``Layout/large/<split>.txt`` order when present, else the
    sorted ``*.json`` stems of ``PairAnnotation/<split>``."""
    root = Path(root)
    check_split(split)
    if not root.is_dir():
        raise DataError(f"SPair root {root} does not exist (expected a folder with JPEGImages/ and PairAnnotation/)")
    folder = root / "PairAnnotation" / split
    if not folder.is_dir():
        raise DataError(f"SPair split folder {folder} does not exist (expected PairAnnotation/{split}/ under {root})")
    layout = layout_file(root, split)
    if layout.is_file():
        return _read_layout(layout)
    return sorted(p.stem for p in folder.glob("*.json"))


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown SPair split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def subset_pairs(pairs: Sequence[SPairPair], per_category: int = PAIRS_PER_CATEGORY_360, seed: int = 0) -> list[SPairPair]:
    """A deterministic subset with at most ``per_category`` pairs of every category (DHF's val-360 rule:
    20 per category; docs/paper.md §2.8), for when the subset file itself is not available.

    Categories are visited in sorted order and pairs are sorted by name before a seeded draw without
    replacement (seed keyed by category, so adding a category does not change the others). The result is
    ordered by category, then name. Categories with fewer pairs keep all of them.
    """
    if per_category <= 0:
        raise ConfigError(f"per_category must be positive, got {per_category}")
    by_category: dict[str, list[SPairPair]] = {}
    for pair in pairs:
        by_category.setdefault(pair.category, []).append(pair)
    chosen: list[SPairPair] = []
    for category in sorted(by_category):
        members = sorted(by_category[category], key=lambda p: p.name)
        if len(members) > per_category:
            picks = numpy_rng(seed, "spair-subset", category).choice(len(members), size=per_category, replace=False)
            members = [members[i] for i in sorted(picks.tolist())]
        chosen.extend(members)
    return chosen


def _subset_split(subset: str | None) -> str | None:
    if subset is None:
        return None
    match = _SUBSET_NAME.match(str(subset))
    return match.group(1) if match else None


def subset_file_candidates(root: str | os.PathLike, subset: str) -> list[Path]:
    """Where a named subset's file is looked for, in this order: ``<root>/spair_71k_<subset>.json``,
    ``<root>/annotations/`` (where DHF's repository keeps it) and ``<root>/JPEGImages/`` (where GDF's README
    says to put it)."""
    root = Path(root)
    filename = f"spair_71k_{subset}.json"
    return [root / filename, root / "annotations" / filename, root / "JPEGImages" / filename]


def check_subset_fallback(fallback: str) -> str:
    if fallback not in SUBSET_FALLBACKS:
        raise ConfigError(f"unknown subset_fallback {fallback!r}; expected one of {', '.join(SUBSET_FALLBACKS)}")
    return fallback


def drawn_per_category(subset: str) -> int:
    """Pairs per category of a drawn ``<split>-<N>`` subset: N // 18 (20 for 360), at least 1."""
    match = _SUBSET_NAME.match(subset)
    if match is None:
        raise ConfigError(f"subset {subset!r} is not a subset name like 'val-360'")
    return max(1, int(match.group(2)) // len(SPAIR_CATEGORIES))


def missing_subset_message(root: str | os.PathLike, subset: str) -> str:
    """One line: the DHF subset file is in none of the places looked in, and the two ways on."""
    looked = ", ".join(str(p) for p in subset_file_candidates(root, subset))
    return (f"SPair subset {subset}: DHF's spair_71k_{subset}.json is in none of {looked}; put it there, or set "
            f"'subset_fallback: draw' on the dataset entry (--subset-fallback draw) to draw "
            f"{drawn_per_category(subset)} pairs per category instead")


def subset_keypoint_count(pairs: Iterable[SPairPair]) -> int:
    """Keypoints annotated in both images over all pairs (what PCK scores; DHF's records hold only those)."""
    return int(sum((keypoints_present(p.src_kps) & keypoints_present(p.trg_kps)).sum() for p in pairs))


def subset_count_problems(path: str | os.PathLike, subset: str, pairs: Sequence[SPairPair]) -> list[str]:
    """A DHF subset file read from disk must hold the released file's pairs and keypoints
    (:data:`DHF_SUBSET_COUNTS`); other subsets are not counted. One message, or none."""
    expected = DHF_SUBSET_COUNTS.get(subset)
    if expected is None:
        return []
    found = (len(pairs), subset_keypoint_count(pairs))
    if found == expected:
        return []
    return [f"{path}: {subset} holds {found[0]} pairs and {found[1]:,} keypoints, DHF's file {expected[0]} pairs and "
            f"{expected[1]:,} keypoints (a fixture tree: set 'official_counts: false' on the dataset entry)"]


def read_subset_file(path: str | os.PathLike, root: str | os.PathLike, pairs_by_name: dict[str, SPairPair] | None = None) -> list[SPairPair]:
    """Read a subset file: either a JSON list of pair names (stems in the split) or DHF's list of records
    (``source_path``, ``target_path``, ``source_points``, ``target_points``, ``*_bounding_box``,
    ``category``). Raises DataError naming the file and record."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: a subset file must be a non-empty JSON list of pair names or pair records")
    pairs: list[SPairPair] = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            if pairs_by_name is None or item not in pairs_by_name:
                raise DataError(f"{path}: entry {i} names pair {item!r}, which is not in the split")
            pairs.append(pairs_by_name[item])
            continue
        where = f"{path} record {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected a pair name or a pair record, got {type(item).__name__}")
        keys = DHF_RECORD_KEYS if "source_path" in item else SPAIR_KEYS
        src = item.get(keys["src_imname"], "?")
        trg = item.get(keys["trg_imname"], "?")
        category = item.get(keys["category"], "?")
        name = pair_name(i + 1, str(src), str(trg), str(category))
        pair, problems = parse_pair_record(item, root=root, name=name, where=where, keys=keys)
        _raise_problems(problems)
        pairs.append(pair)
    return pairs


def subset_options(entry: dict) -> dict:
    """A dataset config entry's subset policy as :class:`SPairDataset` keywords: ``subset_fallback``
    (default "error") and ``official_counts`` (default true; false for fixture trees, as for ADE20K)."""
    return {"subset_fallback": check_subset_fallback(entry.get("subset_fallback", "error")),
            "official_counts": entry.get("official_counts", True) is not False}


def add_subset_policy_args(parser) -> None:
    """``--subset-fallback`` and ``--no-official-counts``: a dataset entry's subset policy on the command line
    (:func:`diffact.workflow.spair_subset_args` writes them)."""
    parser.add_argument("--subset-fallback", default="error", choices=SUBSET_FALLBACKS,
                        help="without DHF's val-360/test-360 file: error (default) or draw a labelled subset")
    parser.add_argument("--no-official-counts", dest="official_counts", action="store_false",
                        help="do not check a DHF subset file's pair and keypoint counts (fixture trees)")


def subset_options_from_args(args) -> dict:
    """:func:`add_subset_policy_args`' values as :class:`SPairDataset` keywords."""
    return {"subset_fallback": getattr(args, "subset_fallback", "error"),
            "official_counts": getattr(args, "official_counts", True)}


class SPairDataset:
    """The annotated pairs of one SPair-71k split (or a subset of it), read from the official layout.

    ``split``: "trn", "val" or "test" (default "test", or the split a subset name implies).
    ``subset``: None / "all" for every pair; "val-360" / "test-360" for DHF's subset, read from
    ``spair_71k_<subset>.json`` (:func:`subset_file_candidates`) and checked against the released file's
    counts unless ``official_counts`` is False (fixture trees); without the file a DataError names every place
    looked in, unless ``subset_fallback`` is "draw": then :func:`subset_pairs` draws N // 18 pairs per
    category with ``subset_seed`` (logged as a warning). Any other "<split>-<N>" reads its file when there is
    one and is drawn otherwise. Or a path to a subset file (list of pair names, or DHF records).
    ``subset_label`` names what was used, e.g. "val-360", "val-360-drawn" or "all".

    Iterating yields :class:`SPairPair` objects; ``len()`` is the number of pairs.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        subset: str | os.PathLike | None = None,
        *,
        subset_seed: int = 0,
        check_images: bool = True,
        subset_fallback: str = "error",
        official_counts: bool = True,
    ) -> None:
        self.root = Path(root)
        implied = _subset_split(None if subset is None else str(subset))
        if split is not None and implied is not None and split != implied:
            raise ConfigError(f"subset {subset!r} belongs to split '{implied}', but split '{split}' was requested")
        self.split = check_split(split or implied or "test")
        self.subset = None if subset in (None, "all") else str(subset)
        self.subset_fallback = check_subset_fallback(subset_fallback)
        self.official_counts = bool(official_counts)
        self.drawn = False

        names = split_pair_names(self.root, self.split)
        folder = self.root / "PairAnnotation" / self.split
        all_pairs = []
        for name in names:
            path = checked_join(folder, f"{name}.json", what=f"pair name in {layout_file(self.root, self.split)}")
            if not path.is_file():
                raise DataError(f"{layout_file(self.root, self.split)} lists pair {name!r} but {path} does not exist")
            all_pairs.append(read_pair_annotation(path, self.root, check_images=check_images))
        self.pairs: list[SPairPair] = self._select(all_pairs, subset_seed)

    @property
    def subset_label(self) -> str:
        """The subset as result rows name it: "all", the subset name or file, "<name>-drawn" when drawn."""
        if self.subset is None:
            return "all"
        return f"{self.subset}{DRAWN_SUFFIX}" if self.drawn else self.subset

    def _select(self, all_pairs: list[SPairPair], seed: int) -> list[SPairPair]:
        if self.subset is None:
            return all_pairs
        by_name = {p.name: p for p in all_pairs}
        match = _SUBSET_NAME.match(self.subset)
        if match is None:
            path = Path(self.subset)
            if not path.is_file():
                raise ConfigError(
                    f"subset {self.subset!r} is neither a subset name like 'val-360' nor an existing subset file"
                )
            return read_subset_file(path, self.root, by_name)
        for candidate in subset_file_candidates(self.root, self.subset):
            if candidate.is_file():
                pairs = read_subset_file(candidate, self.root, by_name)
                if self.official_counts:
                    _raise_problems(subset_count_problems(candidate, self.subset, pairs))
                return pairs
        if self.subset in DHF_SUBSET_COUNTS and self.subset_fallback != "draw":
            raise DataError(missing_subset_message(self.root, self.subset))
        per_category = drawn_per_category(self.subset)
        report = log.warning if self.subset in DHF_SUBSET_COUNTS else log.info
        report("SPair subset %s: no spair_71k_%s.json under %s; drawing %d pairs per category (seed %d) instead, "
               "labelled %s%s", self.subset, self.subset, self.root, per_category, seed, self.subset, DRAWN_SUFFIX)
        self.drawn = True
        return subset_pairs(all_pairs, per_category=per_category, seed=seed)

    @property
    def categories(self) -> list[str]:
        return sorted({p.category for p in self.pairs})

    @property
    def n_keypoints(self) -> int:
        """Annotated keypoints over all pairs (the PCK denominator)."""
        return int(sum(keypoints_present(p.trg_kps).sum() for p in self.pairs))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> SPairPair:
        return self.pairs[index]

    def __iter__(self) -> Iterator[SPairPair]:
        return iter(self.pairs)

    def __repr__(self) -> str:
        return f"SPairDataset(root={str(self.root)!r}, split={self.split!r}, subset={self.subset!r}, pairs={len(self)})"


# ----------------------------------------------------------------------------------------------
# Whole-root check (for `diffact check-spair`)
# ----------------------------------------------------------------------------------------------

IMAGE_ANNOTATION_FIELDS: tuple[str, ...] = ("filename", "image_width", "image_height", "bndbox", "kps")


def _image_annotation_problems(path: Path, root: Path) -> list[str]:
    try:
        data = _read_json(path)
    except DataError as err:
        return [str(err)]
    if not isinstance(data, dict):
        return [f"{path}: expected a JSON object"]
    problems = [f"{path}: field '{f}' is missing" for f in IMAGE_ANNOTATION_FIELDS if f not in data]
    if problems:
        return problems
    category = path.parent.name
    try:
        image = image_file(root, category, str(data["filename"]))
    except DataError as err:
        return [f"{path}: field 'filename': {err}"]
    if not image.is_file():
        return [f"{path}: image file {image} (field 'filename') does not exist"]
    size = _parse_size([data["image_width"], data["image_height"]], str(path), "image_width/image_height", problems)
    if size is None:
        return problems
    from diffact.data.images import image_size

    try:
        actual = image_size(image)
    except DataError as err:
        return [f"{path}: {err}"]
    if actual != size:
        problems.append(f"{path}: fields 'image_width'/'image_height' say {size[0]}×{size[1]} but {image} is {actual[0]}×{actual[1]}")
    box = _parse_bbox(data["bndbox"], str(path), "bndbox", problems)
    if box is not None:
        _bbox_inside(box, actual, str(path), "bndbox", problems)
    kps = data["kps"]
    if not isinstance(kps, dict):
        problems.append(f"{path}: field 'kps' must map keypoint ids to [x, y] or null")
    else:
        points = _parse_keypoints(list(kps.values()), str(path), "kps", problems)
        if points is not None:
            _keypoints_inside(points, actual, str(path), "kps", problems)
    return problems


def check_spair_root(root: str | os.PathLike, splits: Iterable[str] = SPLITS) -> list[str]:
    """Every problem found in an SPair-71k root, as one message each (an empty list means it is valid).

    Checks: the root, JPEGImages/ and PairAnnotation/<split>/ exist; every pair annotation parses and
    passes :func:`parse_pair_record` (fields, keypoint counts, keypoints and boxes inside the images,
    images present and of the declared size, category matching the file name); Layout/large/<split>.txt,
    when present, lists exactly the split's annotation files; ImageAnnotation/ files, when present, have
    their fields and images.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"SPair root {root} does not exist"]
    problems: list[str] = []
    for folder in ("JPEGImages", "PairAnnotation"):
        if not (root / folder).is_dir():
            problems.append(f"{root / folder} does not exist (an SPair-71k root has JPEGImages/ and PairAnnotation/)")
    for split in splits:
        folder = root / "PairAnnotation" / split
        if not folder.is_dir():
            if (root / "PairAnnotation").is_dir():
                problems.append(f"split folder {folder} does not exist")
            continue
        files = sorted(folder.glob("*.json"))
        for path in files:
            try:
                data = _read_json(path)
            except DataError as err:
                problems.append(str(err))
                continue
            _, found = parse_pair_record(data, root=root, name=path.stem, where=str(path), read_image_sizes=True)
            problems.extend(found)
        layout = layout_file(root, split)
        if layout.is_file():
            listed = _read_layout(layout)
            on_disk = {p.stem for p in files}
            for name in sorted(set(listed) - on_disk):
                problems.append(f"{layout} lists pair {name!r} but {folder / (name + '.json')} does not exist")
            for name in sorted(on_disk - set(listed)):
                problems.append(f"{layout} does not list pair {name!r} that is in {folder}")
            duplicates = sorted({n for n in listed if listed.count(n) > 1})
            if duplicates:
                problems.append(f"{layout} lists pairs more than once: {', '.join(duplicates[:5])}")
        elif (root / "Layout").is_dir():
            problems.append(f"layout file {layout} does not exist")
    image_annotations = root / "ImageAnnotation"
    if image_annotations.is_dir():
        for path in sorted(image_annotations.glob("*/*.json")):
            problems.extend(_image_annotation_problems(path, root))
    return problems
