"""The dataset kinds (a ``datasets`` entry's ``kind``): for each, where its images and annotations live, which
images a split holds, and how `diffact check-data` checks a root.

Extraction (:func:`dataset_images`) and `diffact check-data` (:func:`diffact.checks.check_datasets`) both ask
this registry, and a kind's checker reads the root with the same lister extraction uses (or with its loader's
own checker, which reads the same files), so the two cannot disagree about a folder: one list of image suffixes
(:data:`diffact.data.images.IMAGE_SUFFIXES`), one search of the folders.

Image ids name the feature-store shards: ``<category>/<stem>`` for SPair-71k, ``<split>/<stem>`` for the
DDPM-seg layout, ``<stem>`` for a plain folder, ``<split>/<stem>`` (ADE20K) and ``<split>/<city>/<frame>``
(Cityscapes) for the mmseg segmentation layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from diffact.data.images import IMAGE_SUFFIXES, image_files
from diffact.utils.errors import ConfigError, DataError, DiffactError

ImageList = list[tuple[str, Path]]
Findings = tuple[list[str], list[str]]  # (problems, notes)


@dataclass(frozen=True)
class RootUse:
    """Everything a profile reads from one dataset root: the entries naming it (name → entry) and, for SPair,
    the named subsets read from it (subset → policy of :func:`diffact.data.spair.subset_options`)."""

    kind: str
    root: str
    entries: dict[str, dict]
    subsets: dict[str, dict] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return sorted({str(entry.get("split", "test")) for entry in self.entries.values()})

    @property
    def official_counts(self) -> bool:
        """Compare with the official release's counts unless every entry says ``official_counts: false``."""
        return any(entry.get("official_counts", True) is not False for entry in self.entries.values())

    @property
    def dataset_name(self) -> str | None:
        """DDPM-seg: the entries' ``name`` (horse_21, ...), the first one given."""
        return next((str(e["name"]) for e in self.entries.values() if e.get("name")), None)


@dataclass(frozen=True)
class DatasetKind:
    """One dataset kind. ``list_images(root, split, subset, options)``: the (id, path) pairs of a split
    (``split`` None or "all": every split), sorted by id; ``options``: the entry keys the lister reads (SPair's
    subset policy, DDPM-seg's ``name``), taken from an entry by ``read_options`` (default: those present);
    ``check(use)``: (problems, notes) of one root.
    ``builds``: the demo builders (a ``datasets`` entry's ``build``) that make a root of this kind from shipped
    images; ``demo_marker``: the file such a builder writes last, so its presence means the root is complete."""

    name: str
    layout: str  # where the images and annotations of a split live; shown when a root holds no images
    list_images: Callable[[str | Path, str | None, str | None, dict], ImageList]
    check: Callable[[RootUse], Findings]
    options: tuple[str, ...] = ()
    read_options: Callable[[dict], dict] | None = None
    builds: tuple[str, ...] = ()
    demo_marker: str | None = None

    def entry_options(self, entry: dict) -> dict:
        if self.read_options is not None:
            return self.read_options(entry)
        return {key: entry[key] for key in self.options if entry.get(key) is not None}


# ---- SPair-71k ---------------------------------------------------------------------------------------------

def spair_image_id(category: str, path: str | Path) -> str:
    """Feature-store id of an SPair image: ``<category>/<stem>``."""
    return f"{category}/{Path(path).stem}"


def spair_images(root: str | Path, split: str | None = "test", subset: str | None = None,
                 options: dict | None = None) -> ImageList:
    """The images of a split's pairs (default test); ``options``: :class:`diffact.data.spair.SPairDataset`'s
    ``subset_fallback`` / ``official_counts``."""
    from diffact.data.spair import SPairDataset

    images: dict[str, Path] = {}
    for pair in SPairDataset(root, split=split or "test", subset=subset, **(options or {})):
        for path in (pair.src_path, pair.trg_path):
            images[spair_image_id(pair.category, path)] = path
    return sorted(images.items())


def spair_problems(root: str, splits: list[str], subsets: dict[str, dict]) -> Findings:
    """(problems, notes) of one SPair-71k root, for the splits and named subsets the profile uses.

    ``subsets``: subset name → its policy (:func:`diffact.data.spair.subset_options`). A subset file that is
    there is read as the run would read it (DHF's val-360/test-360 checked against the released counts unless
    ``official_counts`` is false); a missing DHF file is a problem naming every place looked in, unless the
    policy says ``subset_fallback: draw``; other missing subsets (test-90) are drawn by rule: a note."""
    from diffact.data.spair import (
        DHF_SUBSET_COUNTS,
        DRAWN_SUFFIX,
        SPairDataset,
        check_spair_root,
        drawn_per_category,
        missing_subset_message,
        subset_file_candidates,
    )

    problems = check_spair_root(root, splits=sorted(set(splits)))
    notes: list[str] = []
    if not Path(root).is_dir():
        return problems, notes
    for subset, policy in sorted(subsets.items()):
        candidates = subset_file_candidates(root, subset)
        if any(p.is_file() for p in candidates):
            try:
                SPairDataset(root, subset=subset, **policy)
            except DiffactError as err:
                problems.append(str(err))
            continue
        if subset in DHF_SUBSET_COUNTS and policy["subset_fallback"] != "draw":
            problems.append(missing_subset_message(root, subset))
            continue
        folders = ", ".join(str(p.parent) for p in candidates)
        try:
            per_category = drawn_per_category(subset)
        except DiffactError as err:
            problems.append(str(err))
            continue
        notes.append(f"subset {subset}: no {candidates[0].name} (looked in {folders}); a deterministic draw "
                     f"of {per_category} pairs per category stands in for it, labelled {subset}{DRAWN_SUFFIX}")
    return problems, notes


def _spair_options(entry: dict) -> dict:
    from diffact.data.spair import subset_options

    return subset_options(entry)  # with its defaults, and subset_fallback checked


def _check_spair(use: RootUse) -> Findings:
    return spair_problems(use.root, use.splits, use.subsets)


# ---- DDPM-seg ----------------------------------------------------------------------------------------------

def ddpmseg_images(root: str | Path, split: str | None = None, subset: str | None = None,
                   options: dict | None = None) -> ImageList:
    """``options``: the entry's ``name`` (horse_21, ...) when the folder's name does not say which dataset it is:
    the class table checks every label, as check-data does."""
    from diffact.data.ddpmseg import open_ddpmseg

    dataset = open_ddpmseg(root, name=(options or {}).get("name"))
    return sorted((item.id, item.image_path) for item in dataset.images(None if split in (None, "all") else split))


def ddpmseg_problems(root: str, name: str | None = None) -> list[str]:
    """Every problem of a DDPM-seg dataset folder: layout, class table, and each image/label pair."""
    from diffact.data.ddpmseg import open_ddpmseg, validate_item

    try:
        dataset = open_ddpmseg(root, name=name, validate=False)
    except DiffactError as err:
        return [str(err)]
    problems = []
    for item in dataset.images():
        try:
            validate_item(item, dataset.info)
        except DiffactError as err:
            problems.append(str(err))
    return problems


def _check_ddpmseg(use: RootUse) -> Findings:
    return ddpmseg_problems(use.root, use.dataset_name), []


# ---- a plain folder of images ------------------------------------------------------------------------------

def folder_images(root: str | Path, split: str | None = None, subset: str | None = None,
                  options: dict | None = None) -> ImageList:
    """The images directly in ``root``, id = file stem; two images with one stem (``a.jpg``, ``a.png``) would
    write one feature shard twice, so they are an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    images: dict[str, Path] = {}
    for path in image_files(root):
        if path.stem in images:
            raise DataError(f"{root}: images {images[path.stem].name} and {path.name} share the id {path.stem!r} "
                            "(ids are file stems)")
        images[path.stem] = path
    return sorted(images.items())


def _check_folder(use: RootUse) -> Findings:
    # The checker is the lister: check-data accepts exactly the folders extraction can read.
    try:
        dataset_images("folder", use.root)
    except DataError as err:
        return [str(err)], []
    return [], []


# ---- ADE20K and Cityscapes (mmseg layouts) -----------------------------------------------------------------

def _segmentation_module(kind: str):
    from diffact.data import ade20k, cityscapes

    return ade20k if kind == "ade20k" else cityscapes


def _segmentation_lister(kind: str) -> Callable[..., ImageList]:
    def list_images(root: str | Path, split: str | None = None, subset: str | None = None,
                    options: dict | None = None) -> ImageList:
        """Ids ``<split>/<stem>`` (ADE20K) / ``<split>/<city>/<frame>`` (Cityscapes); no split = every split."""
        module = _segmentation_module(kind)
        pairs = module.ade20k_pairs if kind == "ade20k" else module.cityscapes_pairs
        splits = [split] if split not in (None, "all") else list(module.SPLITS)
        return sorted((pair.id, pair.image) for s in splits for pair in pairs(root, s))
    return list_images


def _segmentation_checker(kind: str) -> Callable[[RootUse], Findings]:
    def check(use: RootUse) -> Findings:
        """The loader's own checker; ``official_counts`` False (fixture trees) skips the release's image counts."""
        module = _segmentation_module(kind)
        checker = module.check_ade20k if kind == "ade20k" else module.check_cityscapes
        try:
            return list(checker(use.root, official_counts=use.official_counts)), []
        except DataError as err:
            return [str(err)], []
    return check


# ---- the registry ------------------------------------------------------------------------------------------

KINDS: dict[str, DatasetKind] = {kind.name: kind for kind in (
    DatasetKind("spair", "JPEGImages/<category>/<image>.jpg; a split's pairs in PairAnnotation/<split>/*.json "
                "(splits trn, val, test); ids <category>/<stem>", spair_images, _check_spair,
                options=("subset_fallback", "official_counts"), read_options=_spair_options,
                builds=("demo",), demo_marker="Layout/large/test.txt"),  # make-demo-spair
    DatasetKind("ddpmseg", "real/<split>/<stem>.<image suffix> (or <split>/ in the root), each beside <stem>.npy; "
                f"splits train, test; image suffixes {', '.join(IMAGE_SUFFIXES)}; ids <split>/<stem>",
                ddpmseg_images, _check_ddpmseg, options=("name",), builds=("simple", "complex"),
                demo_marker="dataset.json"),  # make-demo-seg
    DatasetKind("folder", f"image files end in {', '.join(IMAGE_SUFFIXES)}, directly in the root (subfolders are "
                "not searched); ids = file stems", folder_images, _check_folder),
    DatasetKind("ade20k", "images/<split>/*.jpg with annotations/<split>/*.png; splits training, validation; "
                "ids <split>/<stem>", _segmentation_lister("ade20k"), _segmentation_checker("ade20k"),
                builds=("ade",), demo_marker="dataset.json"),  # make-demo-ade
    DatasetKind("cityscapes", "leftImg8bit/<split>/<city>/*_leftImg8bit.png with "
                "gtFine/<split>/<city>/*_gtFine_labelTrainIds.png; splits train, val; ids <split>/<city>/<frame>",
                _segmentation_lister("cityscapes"), _segmentation_checker("cityscapes")),
)}


def get_kind(name: str) -> DatasetKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset kind {name!r}; known kinds: {', '.join(KINDS)}") from None


def build_problems(kind: str, build: str) -> list[str]:
    """A demo entry's ``build`` must make a root of the entry's kind: the workflow picks its builder by ``build``
    alone, so a mismatch would build one layout and read it as another."""
    dataset_kind = get_kind(kind)
    if build in dataset_kind.builds:
        return []
    makes = next((k.name for k in KINDS.values() if build in k.builds), None)
    what = f"makes a root of kind {makes}" if makes else "is no demo builder"
    allowed = (f"kind {kind} is built by {', '.join(dataset_kind.builds)}" if dataset_kind.builds
               else f"kind {kind} has no demo builder: give the root of a real dataset and no build")
    return [f"build {build!r} {what}; {allowed}"]


def lister_options(entry: dict) -> dict:
    """The options of a ``datasets`` entry that its kind's lister reads (SPair's subset policy with its defaults,
    checked; DDPM-seg's ``name``): what a caller holding the entry passes to :func:`dataset_images`."""
    return get_kind(str(entry.get("kind"))).entry_options(entry)


def dataset_images(kind: str, root: str | Path, split: str | None = None, subset: str | None = None,
                   **options) -> ImageList:
    """All images of a dataset split, sorted by id; an empty dataset is an error. ``options``: the kind's
    (:func:`lister_options`): SPair's ``subset_fallback`` / ``official_counts``, DDPM-seg's ``name``."""
    dataset_kind = get_kind(kind)
    unknown = sorted(set(options) - set(dataset_kind.options))
    if unknown:
        raise ConfigError(f"dataset kind {kind} takes no option {', '.join(map(repr, unknown))}; its options: "
                          f"{', '.join(dataset_kind.options) or 'none'}")
    images = dataset_kind.list_images(root, split, subset, options)
    if not images:
        what = f"split {split!r} of this {kind} dataset" if split else f"this {kind} dataset"
        raise DataError(f"{root}: {what} has no images ({dataset_kind.layout})")
    return images
