"""The dataset-kind registry (diffact.data.registry, issue #18 point 4): `diffact check-data` and extraction ask the
same registry, so they see the same images in a folder; an unknown kind is one line naming the known kinds."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from diffact.checks import Report, check_datasets
from diffact.data.registry import dataset_images
from diffact.utils.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(path)


def check_data_problems(kind: str, root: Path) -> list[str]:
    report = Report()
    check_datasets({"datasets": {"d": {"kind": kind, "root": str(root)}}}, report)
    return report.problems


def extraction_view(kind: str, root: Path) -> list[str] | str:
    """The image ids extraction would read, or the one-line error it stops with."""
    try:
        return [image_id for image_id, _ in dataset_images(kind, root)]
    except DataError as err:
        return str(err)


# Folders on which check-data and extraction disagreed before the registry: check-data searched subfolders and
# accepted 3 suffixes, extraction read the top level only and accepted 5.
@pytest.mark.parametrize("files, ids", [
    (["a.webp", "b.bmp"], ["a", "b"]),                   # check-data: "holds no images"; extraction: 2 images
    (["nested/a.jpg"], None),                           # check-data: fine; extraction: no images
    (["a.png", "nested/b.jpg", "c.webp"], ["a", "c"]),  # the top level only, every suffix
    (["a.jpg", "._a.jpg"], ["a"]),                       # a macOS resource fork beside an image is not an image
    (["a.jpg", "a.png"], None),                         # two images, one id: one feature shard written twice
], ids=["webp-and-bmp", "nested-only", "mixed", "resource-fork", "one-stem-twice"])
def test_check_data_and_extraction_see_the_same_images_in_a_folder(tmp_path, files, ids):
    root = tmp_path / "images"
    for name in files:
        write_image(root / name)
    problems, seen = check_data_problems("folder", root), extraction_view("folder", root)
    if ids is None:  # both refuse the folder, with the same line
        assert isinstance(seen, str) and problems == [f"dataset d (folder, {root}): {seen}"]
    else:
        assert problems == [] and seen == ids


def test_a_missing_folder_is_the_same_line_in_both(tmp_path):
    root = tmp_path / "absent"
    assert check_data_problems("folder", root) == [f"dataset d (folder, {root}): {root}: image folder does not exist"]
    assert extraction_view("folder", root) == f"{root}: image folder does not exist"


def test_an_unknown_kind_is_one_line_naming_it_and_the_known_kinds(tmp_path):
    from diffact.data.registry import get_kind

    expected = "unknown dataset kind 'coco'; known kinds: spair, ddpmseg, folder, ade20k, cityscapes"
    with pytest.raises(ConfigError) as err:
        get_kind("coco")
    assert str(err.value) == expected
    with pytest.raises(ConfigError, match=f"^{expected}$"):
        dataset_images("coco", tmp_path)
    assert check_data_problems("coco", tmp_path) == [f"dataset d (coco, {tmp_path}): {expected}"]


def test_the_registry_knows_the_schema_kinds_and_each_declares_layout_lister_and_checker():
    from diffact.data.registry import KINDS

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    schema_kinds = schema["properties"]["datasets"]["additionalProperties"]["properties"]["kind"]["enum"]
    assert list(KINDS) == schema_kinds
    for name, kind in KINDS.items():
        assert kind.name == name and kind.layout and callable(kind.list_images) and callable(kind.check)


def test_an_empty_root_names_the_kind_layout(tmp_path):
    from diffact.data.images import IMAGE_SUFFIXES

    (tmp_path / "notes.txt").write_text("no images here\n")
    with pytest.raises(DataError) as err:
        dataset_images("folder", tmp_path)
    assert str(err.value) == (f"{tmp_path}: this folder dataset has no images (image files end in "
                              f"{', '.join(IMAGE_SUFFIXES)}, directly in the root (subfolders are not searched); "
                              "ids = file stems)")


def test_ddpmseg_split_folders_accept_the_same_image_suffixes(tmp_path):
    root = tmp_path / "seg"
    for split, name in (("train", "a.webp"), ("test", "b.jpg")):
        write_image(root / "real" / split / name)
        np.save(root / "real" / split / f"{Path(name).stem}.npy", np.zeros((8, 8), dtype=np.uint8))
    (root / "dataset.json").write_text('{"name": "mine", "num_classes": 2}')
    assert extraction_view("ddpmseg", root) == ["test/b", "train/a"]
    assert check_data_problems("ddpmseg", root) == []


def test_the_package_has_one_image_suffix_list():
    sources = sorted((REPO / "src" / "diffact").rglob("*.py"))
    defining = [p.relative_to(REPO).as_posix() for p in sources if "IMAGE_SUFFIXES = (" in p.read_text()]
    assert defining == ["src/diffact/data/images.py"]


def test_official_counts_are_checked_unless_every_entry_of_the_root_turns_them_off():
    from diffact.data.registry import RootUse

    assert RootUse("ade20k", "r", {"a": {}, "b": {"official_counts": False}}).official_counts
    assert not RootUse("ade20k", "r", {"a": {"official_counts": False}}).official_counts


def test_figures_find_a_store_image_where_extraction_read_it(tmp_path):
    from types import SimpleNamespace

    from diffact.analysis.plots import store_image_path

    ade = tmp_path / "ade"  # ADE20K's layout: images/<split>/, which the figures' own folder search missed
    write_image(ade / "images" / "training" / "ADE_train_00000001.jpg")
    (ade / "annotations" / "training").mkdir(parents=True)
    Image.fromarray(np.ones((8, 8), dtype=np.uint8)).save(ade / "annotations" / "training" / "ADE_train_00000001.png")
    folder = tmp_path / "folder"  # a .webp image, a suffix the figures' own list lacked
    write_image(folder / "a.webp")

    def store(kind, root, split=None):
        return SimpleNamespace(settings={"dataset": {"kind": kind, "root": str(root), "split": split}})

    assert store_image_path(store("ade20k", ade, "training"), "training/ADE_train_00000001") == \
        ade / "images" / "training" / "ADE_train_00000001.jpg"
    assert store_image_path(store("folder", folder), "a") == folder / "a.webp"
    assert store_image_path(store("folder", folder), "b") is None
    assert store_image_path(store("folder", tmp_path / "absent"), "a") is None


def test_each_demo_build_belongs_to_one_kind_and_check_data_refuses_a_mismatch(tmp_path):
    from diffact import workflow
    from diffact.data.registry import KINDS

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    schema_builds = schema["properties"]["datasets"]["additionalProperties"]["properties"]["build"]["enum"]
    builds = [build for kind in KINDS.values() for build in kind.builds]
    assert sorted(builds) == sorted(schema_builds) and len(set(builds)) == len(builds)
    # the workflow asks the registry which datasets it builds and which file marks them complete
    config = {"datasets": {"horse": {"kind": "ddpmseg", "root": "r/h", "build": "simple"},
                           "real": {"kind": "ddpmseg", "root": "r/x"},
                           "ade": {"kind": "ade20k", "root": "r/a", "build": "ade"},
                           "pairs": {"kind": "spair", "root": "r/s", "build": "demo"}}}
    assert list(workflow.profile.demo_datasets(config, "ddpmseg")) == ["horse"]
    assert list(workflow.profile.demo_datasets(config, "ade20k")) == ["ade"]
    assert workflow.dataset_input(config, "pairs") == [f"r/s/{KINDS['spair'].demo_marker}"]
    assert workflow.dataset_input(config, "real") == []
    assert workflow.segmentation.data_input(config, "ade") == [f"r/a/{KINDS['ade20k'].demo_marker}"]

    root = tmp_path / "seg"
    report = Report()
    check_datasets({"datasets": {"seg": {"kind": "ddpmseg", "root": str(root), "build": "ade"},
                                 "ok": {"kind": "ade20k", "root": str(root), "build": "ade"}}}, report)
    assert report.problems == [f"dataset seg (ddpmseg, {root}): build 'ade' makes a root of kind ade20k; kind "
                               "ddpmseg is built by simple, complex"]
    report = Report()
    check_datasets({"datasets": {"mine": {"kind": "folder", "root": str(root), "build": "demo"}}}, report)
    assert report.problems == [f"dataset mine (folder, {root}): build 'demo' makes a root of kind spair; kind "
                               "folder has no demo builder: give the root of a real dataset and no build"]


def test_a_kind_takes_its_entry_options_and_refuses_others(tmp_path):
    from diffact.data.registry import lister_options

    root = tmp_path / "my-horses"  # a folder name that does not say which DDPM-seg dataset it is
    for split, stem in (("train", "a"), ("test", "b")):
        write_image(root / "real" / split / f"{stem}.png")
        np.save(root / "real" / split / f"{stem}.npy", np.zeros((8, 8), dtype=np.uint8))
    entry = {"kind": "ddpmseg", "root": str(root), "name": "horse_21"}
    with pytest.raises(DataError, match="unknown dataset; name it"):
        dataset_images("ddpmseg", root)
    assert lister_options(entry) == {"name": "horse_21"}
    assert [i for i, _ in dataset_images("ddpmseg", root, **lister_options(entry))] == ["test/b", "train/a"]
    assert check_data_problems("ddpmseg", root) != []  # no name: check-data refuses it as extraction does
    report = Report()
    check_datasets({"datasets": {"d": entry}}, report)
    assert report.problems == []

    assert lister_options({"kind": "spair", "root": "r"}) == {"subset_fallback": "error", "official_counts": True}
    assert lister_options({"kind": "folder", "root": "r", "name": "x"}) == {}
    with pytest.raises(ConfigError, match="^dataset kind ddpmseg takes no option 'subset_fallback'; its options: name$"):
        dataset_images("ddpmseg", root, subset_fallback="draw")
