"""The DDPM-seg layout loader (validation errors name the file) and the demo dataset generator."""

import json

import numpy as np
import pytest
from PIL import Image

from diffact.data.ddpmseg import DDPMSEG_DATASETS, known_dataset, open_ddpmseg
from diffact.data.demo_seg import COMPLEX_CLASSES, SIMPLE_CLASSES, DemoSegConfig, draw_demo_image, make_demo_seg
from diffact.utils.errors import ConfigError, DataError


def _write(folder, stem, shape=(8, 8), label=None, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), 128, dtype=np.uint8)).save(folder / f"{stem}{suffix}")
    np.save(folder / f"{stem}.npy", np.zeros(shape, dtype=np.uint8) if label is None else label)


@pytest.fixture
def horse_tree(tmp_path):
    """A Horse-21-shaped tree: datasets/horse_21/real/{train,test}/<stem>.png + <stem>.npy."""
    real = tmp_path / "datasets" / "horse_21" / "real"
    for stem in ("b", "a", "c"):
        _write(real / "train", stem, label=np.full((8, 8), 20, dtype=np.uint8))
    _write(real / "test", "z", suffix=".jpg")
    return tmp_path / "datasets" / "horse_21"


def test_loader_reads_the_release_layout(horse_tree):
    ds = open_ddpmseg(horse_tree)
    assert ds.info.name == "horse_21" and ds.num_classes == 21 and ds.ignore_label == 255
    assert [i.id for i in ds.train] == ["train/a", "train/b", "train/c"]  # sorted, like DDPM-seg
    assert [i.id for i in ds.test] == ["test/z"]
    assert [i.id for i in ds.images()] == ["train/a", "train/b", "train/c", "test/z"]
    assert open_ddpmseg(horse_tree / "real").info.name == "horse_21"  # the real/ folder works too


def test_known_dataset_table():
    assert known_dataset("Horse-21").train_count == 30 and known_dataset("horse_21").test_count == 20
    assert known_dataset("Bedroom-28").num_classes == 29  # 28 objects + background
    assert {name: info.num_classes for name, info in DDPMSEG_DATASETS.items()} == {
        "horse_21": 21, "bedroom_28": 29, "ffhq_34": 34, "cat_15": 15, "celeba_19": 19, "ade_bedroom_30": 30}
    assert all(len(info.class_names) == info.num_classes for info in DDPMSEG_DATASETS.values())


def test_wrong_label_shape_names_the_file(horse_tree):
    np.save(horse_tree / "real" / "train" / "b.npy", np.zeros((8, 7), dtype=np.uint8))
    with pytest.raises(DataError, match=r"b\.npy.*\(8, 7\).*b\.png"):
        open_ddpmseg(horse_tree)


def test_class_out_of_range_names_the_file(horse_tree):
    np.save(horse_tree / "real" / "train" / "c.npy", np.full((8, 8), 21, dtype=np.uint8))
    with pytest.raises(DataError, match=r"c\.npy.*\[21\]"):
        open_ddpmseg(horse_tree)
    np.save(horse_tree / "real" / "train" / "c.npy", np.full((8, 8), 255, dtype=np.uint8))
    open_ddpmseg(horse_tree)  # 255 = ignore is allowed


def test_missing_label_empty_folder_and_truncated_image(horse_tree):
    (horse_tree / "real" / "test" / "z.npy").unlink()
    with pytest.raises(DataError, match=r"z\.jpg.*z\.npy"):
        open_ddpmseg(horse_tree)
    (horse_tree / "real" / "test" / "z.jpg").unlink()
    with pytest.raises(DataError, match="no images"):
        open_ddpmseg(horse_tree)
    _write(horse_tree / "real" / "test", "z")
    png = horse_tree / "real" / "train" / "a.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(DataError, match=r"a\.png"):
        open_ddpmseg(horse_tree)


def test_unknown_dataset_needs_a_class_count(tmp_path):
    _write(tmp_path / "mine" / "real" / "train", "a")
    _write(tmp_path / "mine" / "real" / "test", "b")
    with pytest.raises(DataError, match="unknown dataset"):
        open_ddpmseg(tmp_path / "mine")
    assert open_ddpmseg(tmp_path / "mine", num_classes=2).num_classes == 2


def test_demo_dataset_layout_and_exact_labels(tmp_path):
    out = make_demo_seg(tmp_path / "simple", DemoSegConfig(kind="simple", size=32, n_train=2, n_test=1, seed=3))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["class_names"] == list(SIMPLE_CLASSES) and meta["num_classes"] == 6
    ds = open_ddpmseg(out)  # validates every image/label pair
    assert [i.id for i in ds.images()] == ["train/img_000", "train/img_001", "test/img_002"]
    image, label = draw_demo_image("simple", 2, 32, seed=3)
    np.testing.assert_array_equal(np.load(ds.test[0].label_path), label)  # PNG is lossless: same pixels too
    np.testing.assert_array_equal(np.asarray(Image.open(ds.test[0].image_path)), image)
    assert set(np.unique(label)) == set(range(6))  # every part drawn
    again, _ = draw_demo_image("simple", 2, 32, seed=3)
    other, _ = draw_demo_image("simple", 2, 32, seed=4)
    assert np.array_equal(again, image) and not np.array_equal(other, image)


def test_demo_complex_has_several_object_classes():
    labels = np.concatenate([draw_demo_image("complex", i, 48, seed=0)[1].ravel() for i in range(3)])
    present = set(np.unique(labels).tolist())
    assert {COMPLEX_CLASSES.index(n) for n in ("wall", "floor")} <= present and len(present) >= 5


def test_demo_config_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        make_demo_seg(tmp_path / "x", DemoSegConfig(kind="medium"))
    assert not (tmp_path / "x").exists()


def test_class_table_sources_and_conflicts(horse_tree, tmp_path):
    assert open_ddpmseg(horse_tree, name="Horse-21").info.name == "horse_21"
    with pytest.raises(DataError, match="21 classes, not the 5"):
        open_ddpmseg(horse_tree, num_classes=5)
    _write(tmp_path / "mine" / "real" / "train", "a")
    _write(tmp_path / "mine" / "real" / "test", "b")
    (tmp_path / "mine" / "dataset.json").write_text(json.dumps({"num_classes": 3, "class_names": ["x", "y"]}))
    with pytest.raises(DataError, match=r"dataset\.json.*2 entries"):
        open_ddpmseg(tmp_path / "mine")
