"""`diffact make-paper-fixtures`: fixture trees in the real datasets' layouts and at their real image sizes, for a
rehearsal of the paper profile. check-data's checkers accept them, the loaders read them with the expected counts
and sizes (DHF's subset files included), SPair keypoints are exact, and the same seed gives the same bytes."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def build(out, *args):
    from diffact.cli import main

    return main(["make-paper-fixtures", "--out", str(out), *map(str, args)])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures") / "data"
    assert build(out) == 0
    return out


def paper_config(tree: Path) -> dict:
    """config/paper.yaml with its dataset roots (data/...) moved under ``tree``."""
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for entry in config["datasets"].values():
        entry["root"] = str(tree / Path(entry["root"]).relative_to("data"))
    return config


def error_lines(stderr: str) -> list[str]:
    """The CLI's own error lines (stderr also carries the log)."""
    return [line for line in stderr.splitlines() if line.startswith("diffact make-paper-fixtures: error: ")]


def image_size(path):
    from diffact.data.images import image_size

    return image_size(path)


# ---- check-data ----------------------------------------------------------------------------------------------

COUNT_PROBLEM = re.compile(r": \d+ images, expected (20210|2000|2975|500) \((the official ADEChallengeData2016 "
                           r"release|official release)\)$")
# The fixtures' DHF subset files hold 1 / 2 pairs per category (see SPAIR_COUNTS), not DHF's 360 pairs.
SUBSET_COUNT_PROBLEM = re.compile(r"spair_71k_(val|test)-360\.json: (val|test)-360 holds \d+ pairs and \d+ keypoints, "
                                  r"DHF's file 360 pairs and 2,(615|529) keypoints")


def test_check_data_accepts_every_tree_but_the_official_image_counts(tree, monkeypatch):
    from diffact.checks import check_profile

    monkeypatch.chdir(ROOT)  # the profile's mmseg config paths are relative to the repository
    report = check_profile(paper_config(tree), schema_path=ROOT / "config" / "schema.yaml", models=False)
    # Every check passes except the ones that compare a root with the official release's counts.
    assert len(report.problems) == 6, report.problems
    assert all(COUNT_PROBLEM.search(p) or SUBSET_COUNT_PROBLEM.search(p) for p in report.problems), report.problems
    assert {p.split(" (")[0] for p in report.problems} == {"dataset ade20k", "dataset cityscapes",
                                                           "dataset spair, spair-trn, spair-val, spair-screen, spair-val-screen"}
    # DHF's val-360 file is there; only test-90 and val-36 (no upstream files) are drawn by rule.
    assert len(report.notes) == 2, report.notes
    for subset in ("test-90", "val-36"):
        assert any(f"subset {subset}: no spair_71k_{subset}.json" in note for note in report.notes), report.notes

    # ... and with the counts check off, as the rehearsal profile does for these two entries: no problem at all
    config = paper_config(tree)
    for name in ("ade20k", "cityscapes", "spair", "spair-trn", "spair-val", "spair-screen", "spair-val-screen"):
        config["datasets"][name]["official_counts"] = False
    report = check_profile(config, schema_path=ROOT / "config" / "schema.yaml", models=False)
    assert report.problems == []


def test_the_checkers_themselves_find_nothing(tree):
    from diffact.data.registry import ddpmseg_problems
    from diffact.data.spair import check_spair_root

    assert check_spair_root(tree / "SPair-71k") == []
    assert ddpmseg_problems(str(tree / "ddpm-segmentation" / "horse_21"), "horse_21") == []
    assert ddpmseg_problems(str(tree / "ddpm-segmentation" / "bedroom_28"), "bedroom_28") == []


# ---- SPair-71k ------------------------------------------------------------------------------------------------

def test_spair_splits_subsets_and_sizes(tree):
    from diffact.data.paper_fixtures import SPAIR_SIZES
    from diffact.data.registry import dataset_images
    from diffact.data.spair import SPAIR_CATEGORIES, SPairDataset

    root = tree / "SPair-71k"
    assert {len(SPairDataset(root, split)) for split in ("trn",)} == {4}
    assert len(SPairDataset(root, "val")) == 4 and len(SPairDataset(root, "test")) == 12
    for subset, n in (("val-360", 2), ("test-360", 4)):
        pairs = SPairDataset(root, subset=subset, official_counts=False)  # fewer than DHF's 360 pairs
        assert len(pairs) == n and pairs.categories == ["cat", "person"]
        # read from DHF's file, not drawn by rule
        assert all(p.annotation.startswith(str(root / "annotations" / f"spair_71k_{subset}.json")) for p in pairs)
    screen = SPairDataset(root, subset="test-90")  # the profile's spair-screen: 5 per category drawn from 6
    assert len(screen) == 10 and {p.name for p in screen} < {p.name for p in SPairDataset(root, "test")}
    assert set(SPairDataset(root, "test").categories) <= set(SPAIR_CATEGORIES)

    jpegs = sorted((root / "JPEGImages").rglob("*.jpg"))
    assert len(jpegs) == 2 * (2 + 2 + 3)
    assert all(image_size(p) in SPAIR_SIZES for p in jpegs)  # long side 500, VOC sizes
    assert len(list((root / "ImageAnnotation").rglob("*.json"))) == len(jpegs)
    assert len(dataset_images("spair", root, "test", "test-90")) == 6
    assert len(dataset_images("spair", root, "val", "val-360", official_counts=False)) <= 4

    record = json.loads((root / "annotations" / "spair_71k_val-360.json").read_text())[0]
    assert list(record) == ["source_path", "target_path", "source_points", "target_points", "category",
                            "target_bounding_box", "source_bounding_box"]  # DHF's record format
    pair_file = json.loads(sorted((root / "PairAnnotation" / "trn").glob("*.json"))[0].read_text())
    assert {"src_imname", "trg_imname", "src_kps", "trg_kps", "src_bndbox", "trg_bndbox", "category", "kps_ids",
            "viewpoint_variation", "src_imsize", "trg_imsize"} <= set(pair_file)


def test_spair_keypoints_are_exact_correspondences(tree):
    """Every stored keypoint is its category's base keypoint mapped through the image's known homography
    (to 1/100 pixel), so every pair's src_kps[i] and trg_kps[i] are the same point."""
    from diffact.data.demo_spair import apply_homography
    from diffact.data.spair import SPairDataset

    root = tree / "SPair-71k"
    manifest = json.loads((root / "fixture.json").read_text())
    homographies = {name: np.array(entry["base_to_image"]) for name, entry in manifest["images"].items()}
    checked = 0
    for split in ("trn", "val", "test"):
        for pair in SPairDataset(root, split):
            ids = [int(k) for k in json.loads(Path(pair.annotation).read_text())["kps_ids"]]
            base = np.array(manifest["categories"][pair.category]["keypoints"], dtype=np.float64)[ids]
            for path, kps in ((pair.src_path, pair.src_kps), (pair.trg_path, pair.trg_kps)):
                exact = apply_homography(homographies[f"{pair.category}/{path.name}"], base)
                assert np.abs(exact - kps).max() <= 0.005 + 1e-9
            assert pair.n_keypoints >= 6
            checked += 1
    assert checked == 20


# ---- DDPM-seg ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, classes", [("horse_21", 21), ("bedroom_28", 29)])
def test_ddpmseg_release_layout(tree, name, classes):
    from diffact.data.ddpmseg import load_label, open_ddpmseg
    from diffact.data.registry import dataset_images

    root = tree / "ddpm-segmentation" / name
    assert not list((tree / "ddpm-segmentation").rglob("dataset.json"))  # the release has none
    dataset = open_ddpmseg(root)  # class table from the folder name
    assert dataset.info.name == name and dataset.num_classes == classes
    assert (len(dataset.train), len(dataset.test)) == (4, 2)
    present = set()
    for item in dataset.images():
        assert image_size(item.image_path) == (256, 256)
        label = load_label(item.label_path, classes)
        assert label.shape == (256, 256)
        present |= set(np.unique(label).tolist())
    assert len(present) >= 4 and max(present) < classes
    assert len(dataset_images("ddpmseg", root)) == 6


# ---- ADE20K --------------------------------------------------------------------------------------------------

def test_ade20k_layout_sizes_and_labels(tree):
    from diffact.data.ade20k import ade20k_pairs, load_ade20k_label, _read_label
    from diffact.data.paper_fixtures import ADE_VALUES
    from diffact.data.registry import dataset_images

    root = tree / "ADEChallengeData2016"
    assert not (root / "dataset.json").exists()  # a real root: checked against the release, 150 classes
    train, val = ade20k_pairs(root, "training"), ade20k_pairs(root, "validation")
    assert (len(train), len(val)) == (4, 2)
    assert train[0].image.name == "ADE_train_00000001.jpg" and val[0].label.name == "ADE_val_00000001.png"
    for pair in train + val:
        width, height = image_size(pair.image)
        assert min(width, height) >= 512 and image_size(pair.label) == (width, height)
        raw = _read_label(pair.label)
        assert set(np.unique(raw).tolist()) <= set(ADE_VALUES.values())
        reduced = np.unique(load_ade20k_label(pair.label)).tolist()
        assert all(v < 150 or v == 255 for v in reduced) and len(reduced) >= 3
    assert len(dataset_images("ade20k", root)) == 6


# ---- Cityscapes ----------------------------------------------------------------------------------------------

def test_cityscapes_layout_sizes_and_labels(tree):
    from diffact.data.ade20k import _read_label
    from diffact.data.cityscapes import cityscapes_pairs, load_cityscapes_label
    from diffact.data.paper_fixtures import CITYSCAPES_LABELS, rasterize_polygons
    from diffact.data.registry import dataset_images

    root = tree / "cityscapes"
    train, val = cityscapes_pairs(root, "train"), cityscapes_pairs(root, "val")
    assert (len(train), len(val)) == (2, 1)
    assert train[0].image.name == "aachen_000000_000019_leftImg8bit.png"
    for pair in train + val:
        assert image_size(pair.image) == (2048, 1024) and image_size(pair.label) == (2048, 1024)
        stem = pair.label.name[: -len("_gtFine_labelTrainIds.png")]
        label_ids = _read_label(pair.label.with_name(f"{stem}_gtFine_labelIds.png"))
        assert label_ids.max() <= 33
        # the polygons file rasterises (as cityscapesscripts does) to the labelIds map
        polygons = json.loads(pair.label.with_name(f"{stem}_gtFine_polygons.json").read_text())
        objects = [(o["label"], o["polygon"]) for o in polygons["objects"]]
        index = rasterize_polygons(objects, (polygons["imgWidth"], polygons["imgHeight"]))
        lut = np.array([0] + [CITYSCAPES_LABELS[name][0] for name, _ in objects], dtype=np.uint8)
        assert np.array_equal(lut[index], label_ids)
        from PIL import Image

        with Image.open(pair.label.with_name(f"{stem}_gtFine_instanceIds.png")) as img:
            instances = np.asarray(img, dtype=np.int64)
        assert np.all(instances[label_ids == 26] // 1000 == 26)  # car instances: 26000, 26001, ...
        train_ids = load_cityscapes_label(pair.label)
        assert set(np.unique(train_ids).tolist()) <= set(range(19)) | {255}
        # a 1024² training crop holds several classes, none above mmseg's cat_max_ratio 0.75
        crop = train_ids[:, 512:1536]
        counts = np.bincount(crop[crop != 255].ravel(), minlength=19)
        assert (counts > 0).sum() >= 5 and counts.max() / counts.sum() < 0.75
    assert len(dataset_images("cityscapes", root)) == 3


# ---- the command ---------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_and_another_seed_differs(tree, tmp_path):
    """A second full build with the same (default) arguments is byte-identical."""
    again = tmp_path / "again"
    assert build(again) == 0
    files = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    differing = [str(f) for f in files if (tree / f).read_bytes() != (again / f).read_bytes()]
    assert not differing
    other = tmp_path / "other"
    assert build(other, "--seed", 1, "--datasets", "horse_21") == 0
    first = sorted((tree / "ddpm-segmentation" / "horse_21" / "real" / "train").iterdir())[0]
    assert (other / first.relative_to(tree)).read_bytes() != first.read_bytes()


def test_existing_folders_are_refused_without_force(tree, tmp_path, cli):
    before = {p: p.stat().st_mtime_ns for p in (tree / "cityscapes").rglob("*")}
    done = cli("make-paper-fixtures", "--out", tree)
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert "already exist" in line and "--force" in line and "Traceback" not in done.stderr, done.stderr
    assert {p: p.stat().st_mtime_ns for p in (tree / "cityscapes").rglob("*")} == before

    # the label-scarce job at the paper's scale: 30 training images of 256²; --force replaces the folder
    out = tmp_path / "data"
    assert cli("make-paper-fixtures", "--out", out, "--datasets", "horse_21", "--ddpmseg-train", 30).returncode == 0
    horse = out / "ddpm-segmentation" / "horse_21"
    assert len(list((horse / "real" / "train").glob("*.png"))) == 30
    assert cli("make-paper-fixtures", "--out", out, "--datasets", "horse_21").returncode == 2
    done = cli("make-paper-fixtures", "--out", out, "--datasets", "horse_21", "--counts", "ddpmseg-train=2", "--force")
    assert done.returncode == 0 and "horse_21: " in done.stdout
    assert len(list((horse / "real" / "train").glob("*.png"))) == 2
    assert not (out / "SPair-71k").exists()


@pytest.mark.parametrize("args, message", [
    (["--counts", "spair-test=1"], "spair-test must be at least 2"),
    (["--counts", "spair-val-360=3"], "spair-val-360 = 3 pairs per category"),
    (["--counts", "nope=3"], "--counts expects KEY=N"),
    (["--datasets", "pascal"], "unknown fixture datasets ['pascal']"),
    (["--spair-categories", "dog"], "SPair fixture categories must be"),
    (["--ddpmseg-train", "0"], "ddpmseg-train must be a positive integer"),
])
def test_bad_arguments_fail_with_one_line(tmp_path, cli, args, message):
    done = cli("make-paper-fixtures", "--out", tmp_path / "data", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = error_lines(done.stderr)
    assert message in line, line
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
