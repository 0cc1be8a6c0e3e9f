"""Loader for label-scarce segmentation datasets in the DDPM-seg release layout (paper §2.10, §4).

The DDPM-seg release (Baranchuk et al., github.com/yandex-research/ddpm-segmentation, ``datasets.tar.gz``)
stores each dataset as::

    datasets/<name>/real/train/<stem>.png|jpg   + <stem>.npy   (H×W integer class map)
    datasets/<name>/real/test/<stem>.png|jpg    + <stem>.npy

Images are listed in sorted file-name order (DDPM-seg ``_list_image_files_recursively`` + ``sorted``) and the
label of ``x.png`` is ``x.npy`` in the same folder. Our demo datasets (``diffact.data.demo_seg``) use the
same layout and add a ``dataset.json`` beside ``real/`` with the class table.

Image ids: every image is addressed as ``<split>/<stem>`` (e.g. ``train/img_000``), where ``<split>`` is the
*original* release split. Feature stores for these datasets must use the same ids (see
``diffact.tasks.scarce.pipeline.store_key``); random re-splits only regroup these ids.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from diffact.data.images import IMAGE_SUFFIXES, image_files, load_rgb
from diffact.utils.errors import DataError

SPLITS = ("train", "test")
# DDPM-seg marks "do not train / do not evaluate" pixels with 255 (experiments/*/ddpm.json "ignore_label").
IGNORE_LABEL = 255

# Class names as in DDPM-seg src/data_util.py (and the copy in generic-diffusion-feature scarce_segmentation).
HORSE_CLASSES = (
    "background", "person", "back", "barrel", "bridle", "chest", "ear", "eye", "forelock", "head", "hoof", "leg",
    "mane", "muzzle", "neck", "nostril", "tail", "thigh", "saddle", "shoulder", "leg protection",
)
BEDROOM_CLASSES = (
    "background", "bed", "bed***footboard", "bed***headboard", "bed***side rail", "carpet", "ceiling",
    "chandelier / ceiling fan blade", "curtain", "cushion", "floor", "table/nightstand/dresser",
    "table/nightstand/dresser***top", "picture / mirrow", "pillow", "lamp***column", "lamp***shade", "wall", "window",
    "curtain rod", "window***frame", "chair", "picture / mirror***frame", "plinth", "door / door frame", "pouf",
    "wardrobe", "plant", "table staff",
)
FFHQ_CLASSES = (
    "background", "head", "head***cheek", "head***chin", "head***ear", "head***ear***helix", "head***ear***lobule",
    "head***eye***bottom lid", "head***eye***eyelashes", "head***eye***iris", "head***eye***pupil",
    "head***eye***sclera", "head***eye***tear duct", "head***eye***top lid", "head***eyebrow", "head***forehead",
    "head***frown", "head***hair", "head***hair***sideburns", "head***jaw", "head***moustache",
    "head***mouth***inferior lip", "head***mouth***oral commissure", "head***mouth***superior lip",
    "head***mouth***teeth", "head***neck", "head***nose", "head***nose***ala of nose", "head***nose***bridge",
    "head***nose***nose tip", "head***nose***nostril", "head***philtrum", "head***temple", "head***wrinkles",
)
CAT_CLASSES = (
    "background", "back", "belly", "chest", "leg", "paw", "head", "ear", "eye", "mouth", "tongue", "nose", "tail",
    "whiskers", "neck",
)
CELEBA_CLASSES = (
    "background", "cloth", "ear_r", "eye_g", "hair", "hat", "l_brow", "l_ear", "l_eye", "l_lip", "mouth", "neck",
    "neck_l", "nose", "r_brow", "r_ear", "r_eye", "skin", "u_lip",
)
ADE_BEDROOM_30_CLASSES = (
    "wall", "bed", "floor", "table", "lamp", "ceiling", "painting", "windowpane", "pillow", "curtain", "cushion", "door",
    "chair", "cabinet", "chest", "mirror", "rug", "armchair", "book", "sconce", "plant", "wardrobe", "clock", "light",
    "flower", "vase", "fan", "box", "shelf", "television",
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a label-scarce dataset is: its classes and its published split sizes.

    ``num_classes`` counts every class id the label maps may hold (0..K-1); ``ignore_label`` (255) is extra.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    train_count: int | None = None
    test_count: int | None = None
    ignore_label: int = IGNORE_LABEL
    note: str = ""


# Train/test counts: DDPM-seg experiments/<name>/ddpm.json "training_number"/"testing_number" and the DDPM-seg
# paper's dataset table. Bedroom-28 has 28 object classes + background = 29 ids ("number_class": 29).
# DDPM-seg's own bedroom config ignores class 0 (ignore_label 0); the generic-diffusion-feature copy (the paper's
# code, §2.10) uses 255 for every dataset, so background is a trained and evaluated class there and here.
# Horse-21 test count: ddpm.json says "testing_number": 30, which is only an upper cap in ImageLabelDataset;
# the release holds 20 test images (DDPM-seg paper; docs/paper.md §2.10 marks this [I]).
DDPMSEG_DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("horse_21", 21, HORSE_CLASSES, 30, 20, note="LSUN horse; the paper's 'simple' dataset"),
        DatasetInfo("bedroom_28", 29, BEDROOM_CLASSES, 40, 20, note="LSUN bedroom; the paper's 'complex' dataset"),
        DatasetInfo("ffhq_34", 34, FFHQ_CLASSES, 20, 20),
        DatasetInfo("cat_15", 15, CAT_CLASSES, 30, 20),
        DatasetInfo("celeba_19", 19, CELEBA_CLASSES, 20, 500),
        DatasetInfo("ade_bedroom_30", 30, ADE_BEDROOM_30_CLASSES, 50, 650),
    )
}
# Paper spellings ("Horse-21") → release folder names.
DATASET_ALIASES = {
    "horse-21": "horse_21", "bedroom-28": "bedroom_28", "ffhq-34": "ffhq_34", "cat-15": "cat_15",
    "celeba-19": "celeba_19", "ade-bedroom-30": "ade_bedroom_30",
}


def known_dataset(name: str) -> DatasetInfo | None:
    """The table entry for a DDPM-seg dataset name (``horse_21`` or ``Horse-21``), or None."""
    key = name.lower()
    return DDPMSEG_DATASETS.get(DATASET_ALIASES.get(key, key))


@dataclasses.dataclass(frozen=True)
class SegImage:
    """One annotated image: ``id`` = ``<split>/<stem>``, the key used in feature stores."""

    split: str
    stem: str
    image_path: Path
    label_path: Path

    @property
    def id(self) -> str:
        return f"{self.split}/{self.stem}"


@dataclasses.dataclass
class SegDataset:
    """A DDPM-seg style dataset: class table plus the original train and test image lists (sorted by name)."""

    root: Path
    info: DatasetInfo
    train: list[SegImage]
    test: list[SegImage]

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def ignore_label(self) -> int:
        return self.info.ignore_label

    def images(self, split: str | None = None) -> list[SegImage]:
        """Images of one original split, or train followed by test (the pool that re-splits shuffle)."""
        if split is None:
            return [*self.train, *self.test]
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self.train if split == "train" else self.test)

    def by_id(self) -> dict[str, SegImage]:
        return {item.id: item for item in self.images()}


def _split_folder(root: Path) -> Path:
    """``root`` may be the dataset folder (holding ``real/``) or the ``real`` folder itself."""
    if (root / "real").is_dir():
        return root / "real"
    if (root / "train").is_dir() or (root / "test").is_dir():
        return root
    raise DataError(f"{root}: expected a DDPM-seg dataset folder with real/train and real/test (or train/ and test/)")


def _read_dataset_json(root: Path) -> tuple[Path, dict] | None:
    for candidate in (root / "dataset.json", root.parent / "dataset.json"):
        if candidate.is_file():
            try:
                return candidate, json.loads(candidate.read_text())
            except json.JSONDecodeError as err:
                raise DataError(f"{candidate}: not valid JSON ({err})") from err
    return None


def _generic_info(name: str, num_classes: int) -> DatasetInfo:
    return DatasetInfo(name, num_classes, tuple(f"class{i}" for i in range(num_classes)))


def _checked(info: DatasetInfo, num_classes: int | None, where) -> DatasetInfo:
    if num_classes is not None and num_classes != info.num_classes:
        raise DataError(f"{where}: {info.name} has {info.num_classes} classes, not the {num_classes} requested")
    return info


def _info_from_json(path: Path, meta: dict, default_name: str) -> DatasetInfo:
    try:
        k = int(meta["num_classes"])
        names = tuple(meta.get("class_names") or (f"class{i}" for i in range(k)))
        ignore = int(meta.get("ignore_label", IGNORE_LABEL))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: field 'num_classes' (or 'ignore_label') missing or not an integer") from err
    if len(names) != k:
        raise DataError(f"{path}: 'class_names' has {len(names)} entries, expected num_classes={k}")
    return DatasetInfo(str(meta.get("name", default_name)), k, names, meta.get("train_count"),
                       meta.get("test_count"), ignore, str(meta.get("note", "")))


def resolve_info(root: Path, name: str | None = None, num_classes: int | None = None) -> DatasetInfo:
    """Find the class table, first match wins: an explicit known ``name`` (``horse_21``/``Horse-21``), the
    ``dataset.json`` beside ``real/``, the folder name (``datasets/horse_21/real`` → horse_21), an explicit
    ``num_classes``. A given ``num_classes`` must agree with what is found."""
    if name:
        info = known_dataset(name)
        if info is not None:
            return _checked(info, num_classes, root)
        if num_classes is None:
            raise DataError(f"{root}: unknown dataset name {name!r}; expected one of {', '.join(DDPMSEG_DATASETS)} "
                            "or give the number of classes")
        return _generic_info(name, num_classes)
    found = _read_dataset_json(root)
    if found is not None:
        return _checked(_info_from_json(*found, default_name=root.name), num_classes, found[0])
    for candidate in (root.name, root.parent.name):
        info = known_dataset(candidate)
        if info is not None:
            return _checked(info, num_classes, root)
    if num_classes is not None:
        return _generic_info(root.name, num_classes)
    raise DataError(
        f"{root}: unknown dataset; name it (one of {', '.join(DDPMSEG_DATASETS)}), pass the number of classes, "
        "or add a dataset.json with 'num_classes'"
    )


def list_split(folder: Path, split: str) -> list[SegImage]:
    """Images of one split folder in sorted order, each paired with ``<stem>.npy``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: missing split folder (expected {split}/ with images and .npy labels)")
    images = image_files(folder)
    if not images:
        raise DataError(f"{folder}: no images (files ending in {', '.join(IMAGE_SUFFIXES)}) in the {split} split")
    items = []
    stems: set[str] = set()
    for path in images:
        label = path.with_suffix(".npy")
        if not label.is_file():
            raise DataError(f"{path}: no label array {label.name} beside the image")
        if path.stem in stems:
            raise DataError(f"{path}: two images share the stem {path.stem!r}; ids would collide")
        stems.add(path.stem)
        items.append(SegImage(split, path.stem, path, label))
    return items


def open_ddpmseg(
    root: str | Path, name: str | None = None, num_classes: int | None = None, validate: bool = True
) -> SegDataset:
    """Open a DDPM-seg style dataset folder; with ``validate`` every image and label is checked once
    (see :func:`validate_item`), so bad files fail here with their path, not mid-training."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    folder = _split_folder(root)
    info = resolve_info(root if (root / "real").is_dir() else folder, name, num_classes)
    dataset = SegDataset(root, info, list_split(folder / "train", "train"), list_split(folder / "test", "test"))
    if validate:
        for item in dataset.images():
            validate_item(item, info)
    return dataset


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an H×W label map to height×width (pixel centres)."""
    rows = ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(int).clip(0, labels.shape[0] - 1)
    cols = ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(int).clip(0, labels.shape[1] - 1)
    return labels[rows][:, cols]


def load_label(path: Path, num_classes: int | None = None, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """Read a label array as H×W uint8. Must be 2-D with integer values in [0, K) or ``ignore_label``."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read label array ({err})") from err
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataError(f"{path}: label array has shape {arr.shape}, expected H×W")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{path}: label array holds non-integer values; expected class ids")
    elif arr.dtype.kind not in "iub":
        raise DataError(f"{path}: label array has dtype {arr.dtype}, expected integers")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DataError(f"{path}: label values span {arr.min()}..{arr.max()}, expected 0..255")
    labels = arr.astype(np.uint8)
    if num_classes is not None:
        bad = np.unique(labels[(labels >= num_classes) & (labels != ignore_label)])
        if bad.size:
            raise DataError(
                f"{path}: class ids {bad.tolist()} out of range; expected 0..{num_classes - 1} or {ignore_label} (ignore)"
            )
    return labels


def validate_item(item: SegImage, info: DatasetInfo) -> None:
    """Check one image/label pair: the image decodes, the label is H×W like the image, and ids are < K."""
    h, w = load_rgb(item.image_path).shape[:2]  # full decode: a truncated file fails here, naming itself
    label = load_label(item.label_path, info.num_classes, info.ignore_label)
    if label.shape != (h, w):
        raise DataError(
            f"{item.label_path}: label shape {label.shape} does not match its image {item.image_path.name} ({h}, {w})"
        )
